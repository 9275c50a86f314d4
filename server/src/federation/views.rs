//! Read endpoints of rounds: the latest global weights, one round, all rounds, the current
//! round as a member sees it.

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::Response;
use serde_json::{Value, json};

use super::auth;
use crate::accounts::CurrentUser;
use crate::accounts::extract::ApiPath;
use crate::blobs;
use crate::db::Db;
use crate::error::ApiError;
use crate::state::AppState;
use crate::strategy::{self, EvalRes};

/// The latest global model (the newest version) as safetensors.
pub async fn global_weights(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    auth::group_access(&state.db, &user, group_id).await?;
    let row: Option<(i64, i64, String)> = sqlx::query_as(
        "SELECT id, round, weights_path FROM model_versions WHERE group_id = ?
         ORDER BY round DESC LIMIT 1",
    )
    .bind(group_id)
    .fetch_optional(&state.db)
    .await?;
    let (version_id, round, path) = row.ok_or_else(|| {
        ApiError::NotFound("this group has no model yet: training has not started".into())
    })?;
    weights_response(state, version_id, round, &path).await
}

pub(crate) async fn weights_response(
    state: AppState,
    version_id: i64,
    round: i64,
    path: &str,
) -> Result<Response, ApiError> {
    let bytes = blobs::read(&state.data_dir, path)
        .await
        .map_err(|e| ApiError::Internal(format!("reading {path}: {e}")))?;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("x-b3o-version-id", version_id)
        .header("x-b3o-round", round)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"version-{version_id}.safetensors\""),
        )
        .body(Body::from(bytes))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// One round as JSON. Without `detail` the per-client lists (`client_metrics`, `evaluation`)
/// are left out: a client polling `rounds/current?brief=true` then costs O(1), not O(members).
pub(crate) async fn round_json(
    db: &Db,
    group_id: i64,
    number: i64,
    detail: bool,
) -> Result<Value, ApiError> {
    type Row = (
        i64,
        String,
        i64,
        Option<i64>,
        String,
        i64,
        i64,
        Option<i64>,
        Option<String>,
        Option<String>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, state, base_version_id, result_version_id, config_json, opened_at,
            deadline_at, closed_at, failure, metrics_json
         FROM rounds WHERE group_id = ? AND number = ?",
    )
    .bind(group_id)
    .bind(number)
    .fetch_optional(db)
    .await?;
    let r =
        row.ok_or_else(|| ApiError::NotFound(format!("group {group_id} has no round {number}")))?;
    let (selected, reported): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(status = 'reported'), 0) FROM round_members WHERE round_id = ?",
    )
    .bind(r.0)
    .fetch_one(db)
    .await?;
    // (member, samples, metrics JSON) of the updates and of the evaluations.
    type PerClient = Vec<(i64, i64, String)>;
    let (client_metrics, evaluations): (PerClient, PerClient) = if detail {
        let client_metrics = sqlx::query_as(
            "SELECT member_id, num_samples, metrics_json FROM updates WHERE round_id = ?
                 ORDER BY id",
        )
        .bind(r.0)
        .fetch_all(db)
        .await?;
        let evaluations = sqlx::query_as(
            "SELECT member_id, num_samples, metrics_json FROM evaluations WHERE round_id = ?
                 ORDER BY member_id",
        )
        .bind(r.0)
        .fetch_all(db)
        .await?;
        (client_metrics, evaluations)
    } else {
        Default::default()
    };
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    let evaluation_aggregate = strategy::math::weighted_metrics(
        &evaluations
            .iter()
            .map(|(_, n, j)| EvalRes {
                num_samples: *n as u64,
                metrics: serde_json::from_str(j).unwrap_or_default(),
            })
            .collect::<Vec<_>>(),
    );
    let mut round = json!({
        "evaluation": {
            "clients": evaluations.iter().map(|(m, n, j)| json!({
                "member_id": m, "num_samples": n, "metrics": parse(j)
            })).collect::<Vec<_>>(),
            "aggregate": evaluation_aggregate,
        },
        "round": number,
        "state": r.1,
        "base_version_id": r.2,
        "result_version_id": r.3,
        "config": parse(&r.4),
        "opened_at": r.5,
        "deadline_at": r.6,
        "closed_at": r.7,
        "failure": r.8,
        "metrics": r.9.as_deref().map(parse),
        "selected": selected,
        "reported": reported,
        "client_metrics": client_metrics.iter().map(|(m, n, j)| json!({
            "member_id": m, "num_samples": n, "metrics": parse(j)
        })).collect::<Vec<_>>(),
    });
    if !detail && let Some(fields) = round.as_object_mut() {
        fields.remove("client_metrics");
        fields.remove("evaluation");
    }
    Ok(round)
}

pub async fn list(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    auth::group_access(&state.db, &user, group_id).await?;
    let numbers: Vec<i64> =
        sqlx::query_scalar("SELECT number FROM rounds WHERE group_id = ? ORDER BY number")
            .bind(group_id)
            .fetch_all(&state.db)
            .await?;
    let mut rounds = Vec::with_capacity(numbers.len());
    for n in numbers {
        rounds.push(round_json(&state.db, group_id, n, true).await?);
    }
    Ok(Json(json!({ "rounds": rounds })))
}

pub async fn get_round(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath((group_id, number)): ApiPath<(i64, i64)>,
) -> Result<Json<Value>, ApiError> {
    auth::group_access(&state.db, &user, group_id).await?;
    Ok(Json(round_json(&state.db, group_id, number, true).await?))
}

/// The newest round, with `you` (selected, status) for a caller that is an active member.
/// `?brief=true` leaves out the per-client lists (what polling clients ask for).
pub async fn current(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let brief = query.as_deref().is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "brief" | "brief=true" | "brief=1"))
    });
    let access = auth::group_access(&state.db, &user, group_id).await?;
    let number: Option<i64> =
        sqlx::query_scalar("SELECT MAX(number) FROM rounds WHERE group_id = ?")
            .bind(group_id)
            .fetch_one(&state.db)
            .await?;
    let number = number.ok_or_else(|| ApiError::NotFound("training has not started yet".into()))?;
    let mut round = round_json(&state.db, group_id, number, !brief).await?;
    if let Some(m) = access.active_member() {
        let status: Option<String> = sqlx::query_scalar(
            "SELECT rm.status FROM round_members rm JOIN rounds r ON r.id = rm.round_id
             WHERE r.group_id = ? AND r.number = ? AND rm.member_id = ?",
        )
        .bind(group_id)
        .bind(number)
        .bind(m.id)
        .fetch_optional(&state.db)
        .await?;
        round["you"] = json!({
            "member_id": m.id,
            "selected": status.is_some(),
            "status": status,
        });
    }
    Ok(Json(round))
}
