//! The promotion gate: a deployment may require that a new version's federated evaluation
//! (the members' held-out metric, weighted by their rows: [`super::evaluation`]) is no worse
//! than the deployed version's by more than a margin. Set and removed by the deployment's
//! owner with `PUT /api/deployments/{name}/gate` ([`set_gate`]); applied by `promote`
//! ([`super::promote`]) through [`check`] and [`decide`], pure functions of the numbers.
//!
//! Rules, in order: no gate, or the version already served: nothing to decide. The candidate
//! has no member evaluation of the metric: refused (nothing shows it is not worse). The
//! deployed version has none: passes (nothing to compare; the history says so). Otherwise
//! refused when the candidate is worse by more than `max_drop` ([`lower_is_better`] says which
//! way is worse). The owner may promote a refused version anyway (`override_gate`); the
//! history records it as an `override` with the numbers and the reason. Rollbacks are not
//! gated: they return to a version that was served.

use axum::Json;
use axum::extract::State;
use b3o_models::protocol::ErrorBody;
use b3o_models::protocol::registry::{
    DeploymentAction, DeploymentView, FederatedEvaluation, GateCheck, MAX_GATE_METRIC_CHARS,
    PromotionGate, SetGate, lower_is_better,
};

use crate::accounts::CurrentUser;
use crate::accounts::extract::{ApiJson, ApiPath};
use crate::db::Conn;
use crate::error::ApiError;
use crate::state::AppState;

/// Differences this small are rounding, not a drop (0.8 - 0.78 is 0.020000000000000018).
const TOLERANCE: f64 = 1e-9;

/// The gate of deployment `name`, if it has one.
pub(super) async fn gate_of(
    conn: &mut Conn,
    name: &str,
) -> Result<Option<PromotionGate>, ApiError> {
    let row: Option<(Option<String>, Option<f64>)> =
        sqlx::query_as("SELECT gate_metric, gate_max_drop FROM deployments WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match row {
        Some((Some(metric), Some(max_drop))) => Some(PromotionGate { metric, max_drop }),
        _ => None,
    })
}

/// The numbers of the gate's decision on promoting `candidate_id` over `deployed_id`.
pub(super) fn check(
    gate: &PromotionGate,
    candidate_id: i64,
    candidate: &FederatedEvaluation,
    deployed_id: i64,
    deployed: &FederatedEvaluation,
) -> GateCheck {
    let lower = lower_is_better(&gate.metric);
    let c = candidate.metric(&gate.metric);
    let d = deployed.metric(&gate.metric);
    let drop = match (c, d) {
        (Some((c, ..)), Some((d, ..))) => Some(if lower { c - d } else { d - c }),
        _ => None,
    };
    GateCheck {
        metric: gate.metric.clone(),
        lower_is_better: lower,
        max_drop: gate.max_drop,
        candidate_version_id: candidate_id,
        candidate: c.map(|c| c.0),
        candidate_members: c.map_or(0, |c| c.1),
        deployed_version_id: deployed_id,
        deployed: d.map(|d| d.0),
        deployed_members: d.map_or(0, |d| d.1),
        drop,
    }
}

/// What the gate says, in words: the history's note when it passes; when it refuses, the
/// refusal's message and the note an override records.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verdict {
    Passed(String),
    Refused { message: String, note: String },
}

/// A number as people read it: at most 6 decimals, no trailing zeros.
fn number(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn members(n: i64) -> String {
    if n == 1 {
        "1 member".into()
    } else {
        format!("{n} members")
    }
}

/// The gate's decision on `c` (see the module's rules) for deployment `name`.
pub(super) fn decide(name: &str, c: &GateCheck) -> Verdict {
    let metric = &c.metric;
    let better = if c.lower_is_better { "lower" } else { "higher" };
    let (cv, dv) = (c.candidate_version_id, c.deployed_version_id);
    let Some(candidate) = c.candidate else {
        let deployed = c.deployed.map_or(String::new(), |d| {
            format!(
                ", which has {metric} {} from {}",
                number(d),
                members(c.deployed_members)
            )
        });
        let why = format!(
            "no member has evaluated `{metric}` of version {cv} yet, so it cannot be compared \
             with version {dv}, the deployed one{deployed}"
        );
        return Verdict::Refused {
            message: format!(
                "the promotion gate of `{name}` refuses version {cv}: {why}. Members report it \
                 after each round, or with `b3o client --evaluate-version {cv}`; or promote it \
                 anyway with `override_gate` and a reason"
            ),
            note: format!("promoted past the promotion gate: {why}"),
        };
    };
    let (Some(deployed), Some(drop)) = (c.deployed, c.drop) else {
        return Verdict::Passed(format!(
            "promotion gate: version {dv} (deployed) has no member evaluation of {metric}, so \
             there was nothing to compare; version {cv} has {metric} {} from {}",
            number(candidate),
            members(c.candidate_members)
        ));
    };
    let numbers = format!(
        "{metric} ({better} is better) {} from {} for version {cv} against {} from {} for \
         version {dv}",
        number(candidate),
        members(c.candidate_members),
        number(deployed),
        members(c.deployed_members),
    );
    if drop > c.max_drop + TOLERANCE {
        let why = format!(
            "{numbers}, the deployed one; it may be worse by at most {} but is worse by {}",
            number(c.max_drop),
            number(drop)
        );
        Verdict::Refused {
            message: format!(
                "the promotion gate of `{name}` refuses version {cv}: its members' evaluation \
                 gives {why}. Promote it with `override_gate` (and a reason) to deploy it anyway"
            ),
            note: format!("promoted past the promotion gate: {why}"),
        }
    } else {
        let how = if drop > 0.0 {
            format!("worse by {}", number(drop))
        } else {
            "not worse".into()
        };
        Verdict::Passed(format!(
            "promotion gate passed: {numbers}; {how}, at most {} allowed",
            number(c.max_drop)
        ))
    }
}

/// The rule for a gate, as a 400 naming what is wrong.
fn validate(gate: &PromotionGate) -> Result<(), ApiError> {
    let chars = gate.metric.chars().count();
    if chars == 0 || chars > MAX_GATE_METRIC_CHARS || gate.metric.trim() != gate.metric {
        return Err(ApiError::BadRequest(format!(
            "gate.metric must be a metric name of 1 to {MAX_GATE_METRIC_CHARS} characters \
             without surrounding spaces (as members report it, e.g. `accuracy` or `loss`)"
        )));
    }
    if !gate.max_drop.is_finite() || gate.max_drop < 0.0 {
        return Err(ApiError::BadRequest(format!(
            "gate.max_drop must be a finite number of at least 0 (how much worse, in the \
             metric's units, a new version may be), got {}",
            gate.max_drop
        )));
    }
    Ok(())
}

/// Sets or removes a deployment's promotion gate: afterwards, promoting a version whose
/// members' evaluation of `metric` (sample-weighted over the members who reported it) is
/// worse than the deployed version's by more than `max_drop` is refused (409
/// `promotion_gate_failed`, with the numbers), unless the owner overrides it. Lower is better
/// for `loss`, `mse`, `mae`, `rmse`, `log_loss` and any metric named `*_loss`; higher for every
/// other. A version no member evaluated is refused; when the deployed version has no
/// evaluation, any version passes. Recorded in the deployment's history (`gate`).
#[utoipa::path(
    put,
    operation_id = "set_promotion_gate",
    path = "/api/deployments/{name}/gate",
    tag = "registry",
    params(("name" = String, Path, description = "Deployment name")),
    request_body(content = SetGate, content_type = "application/json"),
    responses(
        (status = 200, description = "The deployment with its gate", body = DeploymentView),
        (status = 400, description = "Malformed body: no `gate` field, a metric name of 0 or more than 64 characters, or a `max_drop` below 0", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not the group's owner or an administrator, or a missing X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see it", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub(super) async fn set_gate(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<SetGate>,
) -> Result<Json<DeploymentView>, ApiError> {
    let deployment = super::visible_deployment(&state.db, &user, &name).await?;
    deployment.access.require_owner()?;
    let gate = req.gate.ok_or_else(|| {
        ApiError::BadRequest(
            "the body needs `gate`: {\"metric\", \"max_drop\"} to set the gate, or null to \
             remove it"
                .into(),
        )
    })?;
    if let Some(g) = &gate {
        validate(g)?;
    }
    let mut tx = crate::db::begin_write(&state.db).await?;
    let version_id: Option<i64> =
        sqlx::query_scalar("SELECT version_id FROM deployments WHERE name = $1")
            .bind(&name)
            .fetch_optional(&mut *tx)
            .await?;
    let version_id = version_id.ok_or_else(super::deployment_not_found)?;
    let now = crate::db::now_text();
    sqlx::query(
        "UPDATE deployments SET gate_metric = $1, gate_max_drop = $2, updated_at = $3
         WHERE name = $4",
    )
    .bind(gate.as_ref().map(|g| g.metric.clone()))
    .bind(gate.as_ref().map(|g| g.max_drop))
    .bind(&now)
    .bind(&name)
    .execute(&mut *tx)
    .await?;
    let note = match &gate {
        Some(g) => format!(
            "promotion gate set: {} ({} is better) may be worse by at most {}",
            g.metric,
            if lower_is_better(&g.metric) {
                "lower"
            } else {
                "higher"
            },
            number(g.max_drop)
        ),
        None => "promotion gate removed".to_string(),
    };
    super::deployments::record_event(
        &mut tx,
        &name,
        version_id,
        DeploymentAction::Gate,
        Some(&user),
        Some(&note),
    )
    .await?;
    tx.commit().await?;
    state.registry.bump();
    Ok(Json(super::deployment_view(&state.db, &name).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use b3o_models::protocol::registry::MemberEvaluation;

    fn evaluated(metric: &str, values: &[(i64, f64)]) -> FederatedEvaluation {
        FederatedEvaluation::from_members(
            values
                .iter()
                .enumerate()
                .map(|(i, &(n, v))| MemberEvaluation {
                    member_id: i as i64,
                    name: format!("m{i}"),
                    num_samples: n,
                    metrics: [(metric.to_string(), v)].into(),
                })
                .collect(),
        )
    }

    fn gate(metric: &str, max_drop: f64) -> PromotionGate {
        PromotionGate {
            metric: metric.into(),
            max_drop,
        }
    }

    #[test]
    fn a_drop_beyond_the_margin_is_refused_with_the_numbers() {
        let g = gate("accuracy", 0.02);
        let c = check(
            &g,
            7,
            &evaluated("accuracy", &[(10, 0.7), (30, 0.8)]),
            5,
            &evaluated("accuracy", &[(10, 0.8), (30, 0.9)]),
        );
        assert_eq!(c.candidate_members, 2);
        assert!((c.drop.unwrap() - 0.1).abs() < 1e-12, "{c:?}");
        let Verdict::Refused { message: m, note } = decide("churn", &c) else {
            panic!("{c:?}")
        };
        assert!(
            m.contains("0.775") && m.contains("0.875") && m.contains("0.02"),
            "{m}"
        );
        assert!(m.contains("worse by 0.1"), "{m}");
        assert!(
            note.contains("0.775") && note.contains("worse by 0.1"),
            "{note}"
        );
        assert!(!note.contains("override_gate"), "{note}");
    }

    #[test]
    fn the_margin_is_inclusive_despite_rounding() {
        // 0.8 - 0.78 is 0.020000000000000018 in f64.
        let c = check(
            &gate("accuracy", 0.02),
            2,
            &evaluated("accuracy", &[(5, 0.78)]),
            1,
            &evaluated("accuracy", &[(5, 0.8)]),
        );
        assert!(matches!(decide("m", &c), Verdict::Passed(_)), "{c:?}");
    }

    #[test]
    fn losses_are_worse_when_they_grow() {
        let g = gate("loss", 0.1);
        let deployed = evaluated("loss", &[(10, 0.5)]);
        let worse = check(&g, 2, &evaluated("loss", &[(10, 0.65)]), 1, &deployed);
        assert!(
            matches!(decide("m", &worse), Verdict::Refused { .. }),
            "{worse:?}"
        );
        let better = check(&g, 2, &evaluated("loss", &[(10, 0.2)]), 1, &deployed);
        assert!(better.drop.unwrap() < 0.0);
        assert!(matches!(decide("m", &better), Verdict::Passed(_)));
    }

    #[test]
    fn no_candidate_evaluation_refuses_and_no_deployed_one_passes() {
        let g = gate("accuracy", 0.0);
        let none = FederatedEvaluation::default();
        let some = evaluated("accuracy", &[(3, 0.5)]);
        let c = check(&g, 2, &none, 1, &some);
        let Verdict::Refused { message: m, .. } = decide("m", &c) else {
            panic!()
        };
        assert!(m.contains("no member has evaluated"), "{m}");
        let c = check(&g, 2, &some, 1, &none);
        let Verdict::Passed(note) = decide("m", &c) else {
            panic!()
        };
        assert!(note.contains("nothing to compare"), "{note}");
    }

    #[test]
    fn gates_are_validated() {
        assert!(validate(&gate("accuracy", 0.0)).is_ok());
        assert!(validate(&gate("", 0.1)).is_err());
        assert!(validate(&gate(&"m".repeat(65), 0.1)).is_err());
        assert!(validate(&gate("accuracy", -0.1)).is_err());
        assert!(validate(&gate("accuracy", f64::INFINITY)).is_err());
        assert_eq!(number(0.09999999999999998), "0.1");
        assert_eq!(number(2.0), "2");
    }
}
