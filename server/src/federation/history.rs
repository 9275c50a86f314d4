//! `GET /api/history/runs`: the caller's federated runs — every group it owns or has been a
//! member of (administrators too see only their own here) — with each round's outcome and
//! metrics, and the newest model version with its download links.
//!
//! Inference jobs have their own history (`/api/jobs`); the app shows both.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::State;
use b3o_models::protocol::history::{Downloads, Run, RunList, RunRound, RunVersion};

use super::groups::model_kind;
use super::model::{ErrorBody, MemberStatus, Phase, RoundState};
use crate::accounts::{CurrentUser, rfc3339};
use crate::error::ApiError;
use crate::membership::GroupRole;
use crate::state::AppState;
use crate::strategy::{self, EvalRes};

#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    name: String,
    description: String,
    phase: String,
    total_rounds: i64,
    template_json: String,
    created_at: String,
    owner_user_id: Option<i64>,
    member_id: Option<i64>,
    was_member: bool,
    joined_at: Option<String>,
}

#[derive(sqlx::FromRow)]
struct RoundRow {
    id: i64,
    number: i64,
    state: String,
    opened_at: i64,
    closed_at: Option<i64>,
    failure: Option<String>,
    metrics_json: Option<String>,
    result_version_id: Option<i64>,
    selected: i64,
    reported: i64,
    your_status: Option<String>,
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    id: i64,
    round: i64,
    metrics_json: String,
    has_onnx: bool,
    created_at: String,
}

/// A metrics map as stored; an unreadable one reads as none.
fn metrics(json: &str) -> Option<BTreeMap<String, f64>> {
    serde_json::from_str(json).ok()
}

/// The caller's federated runs, newest first.
#[utoipa::path(
    get,
    path = "/api/history/runs",
    operation_id = "list_runs",
    tag = "history",
    responses(
        (status = 200, description = "Every group the caller owns or has been a member of, newest first", body = RunList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn runs(
    user: CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<RunList>, ApiError> {
    let db = &state.db;
    let groups: Vec<RunRow> = sqlx::query_as(
        "SELECT g.id, g.name, g.description, g.phase, g.total_rounds, g.template_json,
                g.created_at, g.owner_user_id,
                (SELECT id FROM members WHERE group_id = g.id AND user_id = $1
                    AND left_at IS NULL) AS member_id,
                EXISTS (SELECT 1 FROM members WHERE group_id = g.id AND user_id = $1)
                    AS was_member,
                (SELECT MIN(joined_at) FROM members WHERE group_id = g.id AND user_id = $1)
                    AS joined_at
         FROM groups g
         WHERE g.owner_user_id = $1
            OR EXISTS (SELECT 1 FROM members WHERE group_id = g.id AND user_id = $1)
         ORDER BY g.id DESC",
    )
    .bind(user.id)
    .fetch_all(db)
    .await?;
    let mut runs = Vec::with_capacity(groups.len());
    for g in groups {
        let membership = g.member_id.map(|_| true).or(g.was_member.then_some(false));
        // `is_admin: false`: the caller is in the group in its own right here.
        let role = GroupRole::of(g.owner_user_id == Some(user.id), membership, false);
        let rounds: Vec<RoundRow> = sqlx::query_as(
            "SELECT r.id, r.number, r.state, r.opened_at, r.closed_at, r.failure, r.metrics_json,
                    r.result_version_id,
                    (SELECT COUNT(*) FROM round_members WHERE round_id = r.id) AS selected,
                    (SELECT COUNT(*) FROM round_members WHERE round_id = r.id
                        AND status = 'reported') AS reported,
                    (SELECT rm.status FROM round_members rm JOIN members m ON m.id = rm.member_id
                        WHERE rm.round_id = r.id AND m.user_id = $1
                        ORDER BY rm.member_id DESC LIMIT 1) AS your_status
             FROM rounds r WHERE r.group_id = $2 ORDER BY r.number",
        )
        .bind(user.id)
        .bind(g.id)
        .fetch_all(db)
        .await?;
        let evaluations: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT e.round_id, e.num_samples, e.metrics_json FROM evaluations e
             JOIN rounds r ON r.id = e.round_id WHERE r.group_id = $1",
        )
        .bind(g.id)
        .fetch_all(db)
        .await?;
        let mut by_round: HashMap<i64, Vec<EvalRes>> = HashMap::new();
        for (round_id, n, metrics) in evaluations {
            by_round.entry(round_id).or_default().push(EvalRes {
                num_samples: n.max(0) as u64,
                metrics: serde_json::from_str(&metrics).unwrap_or_default(),
            });
        }
        let latest: Option<VersionRow> = sqlx::query_as(
            "SELECT id, round, metrics_json, onnx_path IS NOT NULL AS has_onnx, created_at
             FROM model_versions WHERE group_id = $1 ORDER BY round DESC LIMIT 1",
        )
        .bind(g.id)
        .fetch_optional(db)
        .await?;
        let your_status = |r: &RoundRow| r.your_status.as_deref().map(MemberStatus::parse);
        let contributed = rounds
            .iter()
            .filter(|r| your_status(r) == Some(MemberStatus::Reported))
            .count();
        let phase = Phase::parse(&g.phase);
        let finished = phase == Phase::Finished;
        let rounds: Vec<RunRound> = rounds
            .iter()
            .map(|r| RunRound {
                round: r.number,
                state: RoundState::parse(&r.state),
                opened_at: rfc3339(r.opened_at),
                closed_at: r.closed_at.map(rfc3339),
                failure: r.failure.clone(),
                metrics: r.metrics_json.as_deref().and_then(metrics),
                evaluation: by_round
                    .get(&r.id)
                    .map(|e| strategy::math::weighted_metrics(e)),
                selected: r.selected,
                reported: r.reported,
                your_status: your_status(r),
                result_version_id: r.result_version_id,
            })
            .collect();
        runs.push(Run {
            group_id: g.id,
            model_kind: model_kind(&g.template_json),
            name: g.name,
            description: g.description,
            phase,
            finished,
            role,
            member_id: g.member_id,
            created_at: g.created_at,
            joined_at: g.joined_at,
            total_rounds: g.total_rounds,
            rounds_contributed: contributed as u64,
            rounds,
            // The model training ended with; null while training goes on.
            final_version_id: latest.as_ref().filter(|_| finished).map(|v| v.id),
            latest_version: latest.map(|v| RunVersion {
                id: v.id,
                round: v.round,
                metrics: metrics(&v.metrics_json).unwrap_or_default(),
                created_at: v.created_at,
                downloads: Downloads::of(v.id, v.has_onnx),
            }),
        });
    }
    Ok(Json(RunList { runs }))
}
