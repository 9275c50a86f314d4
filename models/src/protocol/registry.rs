//! Wire types: registry (see the module docs of `models::protocol`): model versions
//! (`/api/versions/...`, `/api/groups/{id}/versions`), deployments (`/api/deployments/...`)
//! and their sharing settings.
//!
//! A version's own view, [`super::VersionView`], stays in the parent module, where the FL
//! client has always read it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The schema of a body that is not JSON but a file's bytes (weights, an ONNX model, an
/// image): `{"type": "string", "format": "binary"}` in the OpenAPI document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, format = Binary))]
pub struct Binary(pub Vec<u8>);

/// One update aggregated into a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Contributor {
    pub member_id: i64,
    pub num_samples: i64,
}

/// `PUT /api/deployments/{name}`: point the deployment at a version (created if the name is
/// free: `201`; moved if the caller's group holds it: `200`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Promote {
    pub version_id: i64,
    /// Promote even though the deployment's [`PromotionGate`] refuses the version; recorded
    /// in the deployment's history as an `override`, with the numbers and `reason`. Absent:
    /// `false`.
    #[serde(default)]
    pub override_gate: bool,
    /// Why, in the history (at most [`MAX_REASON_CHARS`] characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The longest [`Promote::reason`].
pub const MAX_REASON_CHARS: usize = 500;
/// The longest [`PromotionGate::metric`].
pub const MAX_GATE_METRIC_CHARS: usize = 64;

/// Whether a smaller value of metric `name` is better: `loss`, `mse`, `mae`, `rmse`,
/// `log_loss` and any name ending in `_loss`; for every other metric (accuracy, ROC AUC, ...)
/// a larger value is. The promotion gate's one rule for which way is worse.
pub fn lower_is_better(name: &str) -> bool {
    matches!(name, "loss" | "mse" | "mae" | "rmse" | "log_loss") || name.ends_with("_loss")
}

/// A deployment's promotion gate: a new version's federated evaluation of `metric` (the
/// sample-weighted mean of its members' held-out metrics) may be worse than the deployed
/// version's by at most `max_drop`. Lower is better for `loss`, `mse`, `mae`, `rmse`,
/// `log_loss` and names ending in `_loss`; higher for any other metric ([`lower_is_better`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PromotionGate {
    /// The metric compared, as members report it (e.g. `accuracy`, `loss`): 1 to 64
    /// characters.
    pub metric: String,
    /// How much worse the new version may be, in the metric's units (e.g. `0.02`): finite,
    /// at least 0.
    pub max_drop: f64,
}

/// `PUT /api/deployments/{name}/gate`: `{"gate": {"metric", "max_drop"}}` sets the gate,
/// `{"gate": null}` removes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetGate {
    /// The gate, or `null` to remove it. Required (a body without it is a 400, so that a
    /// typo never removes a gate).
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<PromotionGate>, required = true))]
    pub gate: Option<Option<PromotionGate>>,
}

/// `Some(value)` for a field that is present, `null` included (`Some(None)`); a missing
/// field stays `None` (its `default`).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// What changed a deployment, in its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentAction {
    /// Pointed at a version (the gate, if any, passed).
    Promote,
    /// Pointed at a version the promotion gate refused, by the owner's explicit choice.
    Override,
    /// Pointed back at the version served before.
    Rollback,
    /// The promotion gate was set or removed (the version is the one served then).
    Gate,
    /// An action this client does not know.
    #[serde(other)]
    Unknown,
}

impl DeploymentAction {
    /// Every action a server writes (not [`DeploymentAction::Unknown`]).
    pub const KNOWN: [DeploymentAction; 4] = [
        DeploymentAction::Promote,
        DeploymentAction::Override,
        DeploymentAction::Rollback,
        DeploymentAction::Gate,
    ];

    /// The wire (and database) name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentAction::Promote => "promote",
            DeploymentAction::Override => "override",
            DeploymentAction::Rollback => "rollback",
            DeploymentAction::Gate => "gate",
            DeploymentAction::Unknown => "unknown",
        }
    }

    /// From its name; [`DeploymentAction::Unknown`] for any other.
    pub fn parse(name: &str) -> DeploymentAction {
        DeploymentAction::KNOWN
            .into_iter()
            .find(|a| a.as_str() == name)
            .unwrap_or(DeploymentAction::Unknown)
    }
}

known_values_schema!(
    DeploymentAction,
    "What changed a deployment: promote, override (promoted past the promotion gate), \
     rollback, gate (the gate set or removed)."
);

/// One change of a deployment, in its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentEvent {
    /// The version served after the change.
    pub version_id: i64,
    pub action: DeploymentAction,
    /// When (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub at: String,
    /// Who (the account's display name then); `null` for changes recorded before accounts
    /// were named in the history.
    #[serde(default)]
    pub by: Option<String>,
    /// The promotion gate's numbers and the reason given, in words.
    #[serde(default)]
    pub note: Option<String>,
}

/// A deployment: a name (the model's URL) serving one version of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentView {
    pub name: String,
    /// The version served now.
    pub version_id: i64,
    /// The group whose model it is.
    pub group_id: i64,
    /// The round that produced the version served (0: initial or published weights).
    pub round: i64,
    /// The served version's metrics.
    #[serde(default)]
    pub metrics: Option<BTreeMap<String, f64>>,
    /// Last promote, rollback or sharing change (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub updated_at: String,
    /// The versions served, newest first (the current one first): what a rollback walks.
    #[serde(default)]
    pub history: Vec<i64>,
    /// Anyone may use it without an account (its sharing setting): listed for everyone.
    #[serde(default)]
    pub public: bool,
    /// What a new version's members' evaluation must reach to be promoted; none: any version
    /// may be.
    #[serde(default)]
    pub gate: Option<PromotionGate>,
    /// Drift monitoring's verdict on the latest window of inputs: `true` when the share of
    /// drifted features reached the deployment's threshold; `None` before any monitored input
    /// (or for a version without a training summary). The numbers are in
    /// `GET /api/deployments/{name}/drift`, for the group.
    #[serde(default)]
    pub drifting: Option<bool>,
}

/// `GET /api/deployments/{name}/events`: the deployment's audit trail, for those who may see
/// its group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentEvents {
    pub name: String,
    /// Every change, newest first (the newest 200): promotions, overrides of the gate (with
    /// the numbers and the reason), rollbacks and gate changes, with who made them. Unlike
    /// `DeploymentView::history`, a rollback removes nothing from it.
    pub events: Vec<DeploymentEvent>,
}

/// One member's evaluation of a version on its own held-out rows (only these metrics left
/// the member).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberEvaluation {
    pub member_id: i64,
    /// The name the member gave when joining.
    pub name: String,
    /// Rows it evaluated on.
    pub num_samples: i64,
    pub metrics: BTreeMap<String, f64>,
}

/// A version's federated evaluation: each member's metrics on its held-out rows and their
/// sample-weighted mean.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FederatedEvaluation {
    /// By member id.
    #[serde(default)]
    pub members: Vec<MemberEvaluation>,
    /// Per metric, the mean over the members who reported it, weighted by their rows.
    #[serde(default)]
    pub weighted: BTreeMap<String, f64>,
    /// How many members evaluated it.
    #[serde(default)]
    pub num_members: i64,
    /// Their rows, all together.
    #[serde(default)]
    pub num_samples: i64,
}

impl FederatedEvaluation {
    /// From the members' reports (by member id): the weighted means and counts.
    pub fn from_members(members: Vec<MemberEvaluation>) -> FederatedEvaluation {
        let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for m in &members {
            let w = m.num_samples.max(0) as f64;
            for (k, v) in &m.metrics {
                if v.is_finite() && w > 0.0 {
                    let e = sums.entry(k.clone()).or_default();
                    e.0 += w * v;
                    e.1 += w;
                }
            }
        }
        FederatedEvaluation {
            weighted: sums
                .into_iter()
                .map(|(k, (sum, weight))| (k, sum / weight))
                .collect(),
            num_members: members.len() as i64,
            num_samples: members.iter().map(|m| m.num_samples.max(0)).sum(),
            members,
        }
    }

    /// Metric `name`'s weighted mean, with the members and rows it counts; `None` when no
    /// member reported it.
    pub fn metric(&self, name: &str) -> Option<(f64, i64, i64)> {
        let value = *self.weighted.get(name)?;
        let with: Vec<&MemberEvaluation> = self
            .members
            .iter()
            .filter(|m| m.metrics.contains_key(name))
            .collect();
        Some((
            value,
            with.len() as i64,
            with.iter().map(|m| m.num_samples).sum(),
        ))
    }
}

/// A model version with its federated evaluation (`GET /api/versions/{id}`, `GET
/// /api/groups/{id}/versions`): the fields of [`super::VersionView`], whose `metrics` are the
/// trainers' own (on their training split), plus `federated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionDetail {
    #[serde(flatten)]
    pub version: super::VersionView,
    /// The members' evaluation of this version on their held-out rows (empty for versions no
    /// member evaluated, and for round 0).
    #[serde(default)]
    pub federated: FederatedEvaluation,
}

/// `GET /api/groups/{id}/versions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionDetailList {
    pub versions: Vec<VersionDetail>,
}

/// The numbers of a promotion gate's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GateCheck {
    pub metric: String,
    /// Which way is better for this metric ([`lower_is_better`]).
    pub lower_is_better: bool,
    pub max_drop: f64,
    pub candidate_version_id: i64,
    /// The candidate's sample-weighted members' evaluation; `null`: no member evaluated it.
    pub candidate: Option<f64>,
    /// Members counted for `candidate`.
    pub candidate_members: i64,
    pub deployed_version_id: i64,
    /// The deployed version's; `null`: no member evaluated it (the gate passes).
    pub deployed: Option<f64>,
    /// Members counted for `deployed`.
    pub deployed_members: i64,
    /// How much worse the candidate is (`null` when one side has no evaluation); negative
    /// when it is better.
    pub drop: Option<f64>,
}

/// A refused promotion's body: `409` with `error.code` `promotion_gate_failed` and the
/// numbers in `error.gate` (other refusals have the plain error body, without `gate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GateRefusal {
    pub error: GateRefusalDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GateRefusalDetail {
    pub code: String,
    pub message: String,
    /// Present when `code` is `promotion_gate_failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateCheck>,
}

/// `GET /api/deployments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentList {
    pub deployments: Vec<DeploymentView>,
}

/// `PUT /api/deployments/{name}/sharing`: who may use a deployed model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Sharing {
    /// Anyone may use the model, without an account: in this app and through the API.
    /// Private (`false`): the members of its group, plus the visitors of the sites in
    /// `allowed_origins` through those sites' pages (the `<b3o-predict>` widget).
    pub public: bool,
    /// Other sites whose pages may embed it (CORS), e.g. `https://partner.example`: their
    /// visitors use it without an account, private or public. Our own origin always may. At
    /// most 64. Browsers send the `Origin`; other programs can forge it, so for a private
    /// model this keeps it off other sites and out of the app, but is not authentication.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// A public model may be embedded by any site, not only the listed ones. Only with
    /// `public` (400 otherwise). Absent: `false`, listed sites only (what settings stored
    /// before this field meant).
    #[serde(default)]
    pub embed_anywhere: bool,
}

/// `GET` and `PUT /api/deployments/{name}/sharing`: the settings as stored (origins
/// normalised: lower case, no default port, no duplicates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SharingView {
    pub name: String,
    pub public: bool,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Any site may embed it (public models only); absent from older servers: `false`.
    #[serde(default)]
    pub embed_anywhere: bool,
    /// The caller may change them (the group's owner or an administrator).
    #[serde(default)]
    pub can_change: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_name_unknown_fields_and_sharing_defaults_its_origins() {
        let e = serde_json::from_value::<Promote>(json!({ "version": 3 })).unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
        let s: Sharing = serde_json::from_value(json!({ "public": true })).unwrap();
        assert!(s.public && s.allowed_origins.is_empty());
        // Settings from before `embed_anywhere`: the listed sites only.
        assert!(!s.embed_anywhere);
        let e = serde_json::from_value::<Sharing>(json!({ "public": true, "origins": [] }));
        assert!(e.unwrap_err().to_string().contains("origins"));
    }

    #[test]
    fn promote_defaults_to_no_override_and_set_gate_needs_its_field() {
        let p: Promote = serde_json::from_value(json!({ "version_id": 3 })).unwrap();
        assert!(!p.override_gate && p.reason.is_none());
        let clear: SetGate = serde_json::from_value(json!({ "gate": null })).unwrap();
        assert_eq!(clear.gate, Some(None));
        let missing: SetGate = serde_json::from_value(json!({})).unwrap();
        assert_eq!(missing.gate, None);
        let set: SetGate =
            serde_json::from_value(json!({ "gate": { "metric": "loss", "max_drop": 0.1 } }))
                .unwrap();
        assert_eq!(set.gate.flatten().unwrap().metric, "loss");
    }

    #[test]
    fn losses_and_errors_are_better_lower_everything_else_higher() {
        for name in [
            "loss",
            "mse",
            "mae",
            "rmse",
            "log_loss",
            "val_loss",
            "cross_entropy_loss",
        ] {
            assert!(lower_is_better(name), "{name}");
        }
        for name in ["accuracy", "roc_auc", "f1", "precision", "lossless", "r2"] {
            assert!(!lower_is_better(name), "{name}");
        }
    }

    #[test]
    fn the_federated_mean_weights_members_by_their_rows_per_metric() {
        let member = |id, n, metrics: &[(&str, f64)]| MemberEvaluation {
            member_id: id,
            name: format!("m{id}"),
            num_samples: n,
            metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        let f = FederatedEvaluation::from_members(vec![
            member(1, 10, &[("accuracy", 0.5), ("loss", 1.0)]),
            member(2, 30, &[("accuracy", 0.9)]),
        ]);
        assert!((f.weighted["accuracy"] - 0.8).abs() < 1e-12);
        assert_eq!(f.metric("loss"), Some((1.0, 1, 10)));
        assert_eq!(f.metric("roc_auc"), None);
        assert_eq!((f.num_members, f.num_samples), (2, 40));
    }
}
