//! Wire types: history (see the module docs of `models::protocol`): `GET /api/history/runs`,
//! the caller's federated runs with each round's outcome and the newest model's downloads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{GroupRole, MemberStatus, ModelKind, Phase, RoundState};

/// `GET /api/history/runs`: every group the caller owns or has been a member of, newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunList {
    pub runs: Vec<Run>,
}

/// One federated run: a group and how it went for the caller.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub group_id: i64,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `None` when the stored template cannot be read.
    #[serde(default)]
    pub model_kind: Option<ModelKind>,
    pub phase: Phase,
    /// The group's last round is over.
    pub finished: bool,
    /// The caller's role in its own right (administrators see only their own runs here).
    pub role: Option<GroupRole>,
    /// The caller's active membership, if any.
    #[serde(default)]
    pub member_id: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// When the caller first joined; `None` for an owner that never was a member.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub joined_at: Option<String>,
    pub total_rounds: i64,
    /// Rounds whose update from the caller was accepted.
    pub rounds_contributed: u64,
    pub rounds: Vec<RunRound>,
    /// The newest model version (the initial one before round 1 closes).
    #[serde(default)]
    pub latest_version: Option<RunVersion>,
    /// The model training ended with; `None` while training goes on.
    #[serde(default)]
    pub final_version_id: Option<i64>,
}

/// One round of a run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRound {
    pub round: i64,
    pub state: RoundState,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub opened_at: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub closed_at: Option<String>,
    #[serde(default)]
    pub failure: Option<String>,
    /// The strategy's aggregate of the clients' training metrics.
    #[serde(default)]
    pub metrics: Option<BTreeMap<String, f64>>,
    /// Sample-weighted mean of the members' evaluations of the round's model, if any.
    #[serde(default)]
    pub evaluation: Option<BTreeMap<String, f64>>,
    pub selected: i64,
    pub reported: i64,
    /// The caller's place in the round; `None` when not selected.
    #[serde(default)]
    pub your_status: Option<MemberStatus>,
    #[serde(default)]
    pub result_version_id: Option<i64>,
}

/// The newest model version of a run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunVersion {
    pub id: i64,
    pub round: i64,
    /// The strategy's aggregate of the round's training metrics (empty for the initial model).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    pub downloads: Downloads,
}

/// Download links of a model version.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downloads {
    /// The safetensors weights (`/api/versions/{id}/weights`).
    pub weights: String,
    /// The ONNX export (`/api/versions/{id}/onnx`), when there is one.
    #[serde(default)]
    pub onnx: Option<String>,
}

impl Downloads {
    /// The links of version `version_id`: weights always, ONNX when it was exported.
    pub fn of(version_id: i64, has_onnx: bool) -> Downloads {
        Downloads {
            weights: format!("/api/versions/{version_id}/weights"),
            onnx: has_onnx.then(|| format!("/api/versions/{version_id}/onnx")),
        }
    }
}
