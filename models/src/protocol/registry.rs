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
}
