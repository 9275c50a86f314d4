//! Read endpoints of rounds: the latest global weights, one round, all rounds, the current
//! round as a member sees it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::model::{
    ClientMetrics, ErrorBody, MemberStatus, RoundBuffer, RoundConfig, RoundEvaluation, RoundList,
    RoundState, RoundView, RoundYou,
};
use crate::accounts::extract::ApiPath;
use crate::accounts::{CurrentUser, rfc3339};
use crate::db::Db;
use crate::error::ApiError;
use crate::membership;
use crate::registry;
use crate::state::AppState;
use crate::strategy::{self, EvalRes};

/// The latest global model (the newest version) as safetensors.
#[utoipa::path(
    get,
    path = "/api/groups/{id}/weights",
    operation_id = "get_group_weights",
    tag = "rounds",
    params(("id" = i64, Path, description = "The group")),
    responses(
        (status = 200, description = "The newest version's weights: a safetensors file in the `b3o-update/1` format",
            content_type = "application/octet-stream", body = b3o_models::protocol::registry::Binary,
            headers(
                ("x-b3o-version-id" = i64, description = "The version these weights are"),
                ("x-b3o-round" = i64, description = "The round that produced it (0: the initial model)"),
            )),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such group, the caller may not see it, or training has not started", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn global_weights(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    membership::group_access(&state.db, &user, group_id).await?;
    let row: Option<(i64, i64, String)> = sqlx::query_as(
        "SELECT id, round, weights_path FROM model_versions WHERE group_id = $1
         ORDER BY round DESC LIMIT 1",
    )
    .bind(group_id)
    .fetch_optional(&state.db)
    .await?;
    let (version_id, round, path) = row.ok_or_else(|| {
        ApiError::NotFound("this group has no model yet: training has not started".into())
    })?;
    registry::weights_response(&state, version_id, round, &path).await
}

/// A metrics map as stored; an unreadable one reads as none.
fn metrics(json: &str) -> Option<BTreeMap<String, f64>> {
    serde_json::from_str(json).ok()
}

/// One round. Without `detail` the per-client lists (`client_metrics`, `evaluation`) are left
/// out: a client polling `rounds/current?brief=true` then costs O(1), not O(members).
pub(crate) async fn round_view(
    db: &Db,
    group_id: i64,
    number: i64,
    detail: bool,
) -> Result<RoundView, ApiError> {
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
        crate::db::Flag,
    );
    // The last round: the group's last by count, or the newest of a cancelled group that is
    // no longer live.
    let row: Option<Row> = sqlx::query_as(
        "SELECT r.id, r.state, r.base_version_id, r.result_version_id, r.config_json, r.opened_at,
            r.deadline_at, r.closed_at, r.failure, r.metrics_json,
            r.number >= g.total_rounds OR (g.cancelled_at IS NOT NULL
                AND r.state NOT IN ('open', 'collecting', 'aggregating')
                AND r.number = (SELECT MAX(number) FROM rounds WHERE group_id = g.id))
         FROM rounds r JOIN groups g ON g.id = r.group_id WHERE r.group_id = $1 AND r.number = $2",
    )
    .bind(group_id)
    .bind(number)
    .fetch_optional(db)
    .await?;
    let r =
        row.ok_or_else(|| ApiError::NotFound(format!("group {group_id} has no round {number}")))?;
    let (selected, reported): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(CASE WHEN status = 'reported' THEN 1 END) FROM round_members WHERE round_id = $1",
    )
    .bind(r.0)
    .fetch_one(db)
    .await?;
    // An asynchronous group's round is a buffer (`super::buffered`).
    let buffer = match super::buffered::load(db, group_id).await? {
        Some(config) => {
            let (filled, stale): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COUNT(CASE WHEN staleness > 0 THEN 1 END) FROM updates
                 WHERE round_id = $1",
            )
            .bind(r.0)
            .fetch_one(db)
            .await?;
            Some(RoundBuffer {
                size: i64::from(config.buffer_size),
                filled,
                stale,
            })
        }
        None => None,
    };
    let config: RoundConfig = serde_json::from_str(&r.4).map_err(|e| {
        ApiError::Internal(format!(
            "group {group_id} round {number}: stored config unreadable: {e}"
        ))
    })?;
    let (client_metrics, evaluation) = if detail {
        let (client_metrics, evaluation) = per_client(db, r.0).await?;
        (Some(client_metrics), Some(evaluation))
    } else {
        (None, None)
    };
    let (secagg, privacy) = {
        let mut conn = db.acquire().await?;
        let delta = config.dp().map(|d| d.delta);
        let privacy = match delta {
            Some(delta) => super::privacy::round_view(&mut conn, r.0, delta).await?,
            None => None,
        };
        (super::secagg::summary(&mut conn, r.0).await?, privacy)
    };
    Ok(RoundView {
        round: number,
        state: RoundState::parse(&r.1),
        base_version_id: r.2,
        result_version_id: r.3,
        config,
        opened_at: rfc3339(r.5),
        deadline_at: rfc3339(r.6),
        closed_at: r.7.map(rfc3339),
        failure: r.8,
        metrics: r.9.as_deref().and_then(metrics),
        selected,
        reported,
        client_metrics,
        evaluation,
        you: None,
        final_round: r.10.0,
        secagg,
        privacy,
        buffer,
    })
}

/// The numbers of a round's updates, and its members' evaluations of the round's model.
async fn per_client(
    db: &Db,
    round_id: i64,
) -> Result<(Vec<ClientMetrics>, RoundEvaluation), ApiError> {
    // (member, samples, metrics JSON, staleness) of the updates and of the evaluations.
    type PerClient = Vec<(i64, i64, String, Option<i64>)>;
    let updates: PerClient = sqlx::query_as(
        "SELECT member_id, num_samples, metrics_json,
            CASE WHEN trained_from IS NULL THEN NULL ELSE staleness END
         FROM updates WHERE round_id = $1 ORDER BY id",
    )
    .bind(round_id)
    .fetch_all(db)
    .await?;
    let evaluations: PerClient = sqlx::query_as(
        "SELECT member_id, num_samples, metrics_json, CAST(NULL AS BIGINT) FROM evaluations WHERE round_id = $1
             ORDER BY member_id",
    )
    .bind(round_id)
    .fetch_all(db)
    .await?;
    let clients = |rows: PerClient| -> Vec<ClientMetrics> {
        rows.into_iter()
            .map(|(member_id, num_samples, json, staleness)| ClientMetrics {
                staleness,
                member_id,
                num_samples,
                metrics: metrics(&json)
                    .map(|mut m| {
                        super::privacy::strip_metrics(&mut m);
                        m
                    })
                    .unwrap_or_default(),
            })
            .collect()
    };
    let evaluations = clients(evaluations);
    let aggregate = strategy::math::weighted_metrics(
        &evaluations
            .iter()
            .map(|c| EvalRes {
                num_samples: c.num_samples.max(0) as u64,
                metrics: c.metrics.clone(),
            })
            .collect::<Vec<_>>(),
    );
    Ok((
        clients(updates),
        RoundEvaluation {
            clients: evaluations,
            aggregate,
        },
    ))
}

/// Every round of the group, oldest first, with the per-client lists.
#[utoipa::path(
    get,
    path = "/api/groups/{id}/rounds",
    operation_id = "list_rounds",
    tag = "rounds",
    params(("id" = i64, Path, description = "The group")),
    responses(
        (status = 200, description = "The group's rounds, oldest first", body = RoundList),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such group, or the caller may not see it", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn list(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
) -> Result<Json<RoundList>, ApiError> {
    membership::group_access(&state.db, &user, group_id).await?;
    let numbers: Vec<i64> =
        sqlx::query_scalar("SELECT number FROM rounds WHERE group_id = $1 ORDER BY number")
            .bind(group_id)
            .fetch_all(&state.db)
            .await?;
    let mut rounds = Vec::with_capacity(numbers.len());
    for n in numbers {
        rounds.push(round_view(&state.db, group_id, n, true).await?);
    }
    Ok(Json(RoundList { rounds }))
}

/// One round, with the per-client lists.
#[utoipa::path(
    get,
    path = "/api/groups/{id}/rounds/{number}",
    operation_id = "get_round",
    tag = "rounds",
    params(
        ("id" = i64, Path, description = "The group"),
        ("number" = i64, Path, description = "The round, from 1"),
    ),
    responses(
        (status = 200, description = "The round", body = RoundView),
        (status = 400, description = "The id or number is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such group or round, or the caller may not see the group", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn get_round(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath((group_id, number)): ApiPath<(i64, i64)>,
) -> Result<Json<RoundView>, ApiError> {
    membership::group_access(&state.db, &user, group_id).await?;
    Ok(Json(round_view(&state.db, group_id, number, true).await?))
}

/// The newest round, with `you` (selected, status) for a caller that is an active member.
/// `?brief=true` leaves out the per-client lists (what polling clients ask for).
#[utoipa::path(
    get,
    path = "/api/groups/{id}/rounds/current",
    operation_id = "get_current_round",
    tag = "rounds",
    params(
        ("id" = i64, Path, description = "The group"),
        ("brief" = Option<bool>, Query, description = "`true` (or `1`, or present without a value): leave out `client_metrics` and `evaluation`, so that polling costs the server the same however many members the group has"),
    ),
    responses(
        (status = 200, description = "The newest round, with `you` for an active member", body = RoundView),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such group, the caller may not see it, or training has not started", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn current(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
    RawQuery(query): RawQuery,
) -> Result<Json<RoundView>, ApiError> {
    let brief = query.as_deref().is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "brief" | "brief=true" | "brief=1"))
    });
    let access = membership::group_access(&state.db, &user, group_id).await?;
    let number: Option<i64> =
        sqlx::query_scalar("SELECT MAX(number) FROM rounds WHERE group_id = $1")
            .bind(group_id)
            .fetch_one(&state.db)
            .await?;
    let number = number.ok_or_else(|| ApiError::NotFound("training has not started yet".into()))?;
    let mut round = round_view(&state.db, group_id, number, !brief).await?;
    if let Some(m) = access.active_member() {
        let status: Option<String> = sqlx::query_scalar(
            "SELECT rm.status FROM round_members rm JOIN rounds r ON r.id = rm.round_id
             WHERE r.group_id = $1 AND r.number = $2 AND rm.member_id = $3",
        )
        .bind(group_id)
        .bind(number)
        .bind(m.id)
        .fetch_optional(&state.db)
        .await?;
        round.you = Some(RoundYou {
            member_id: m.id,
            selected: status.is_some(),
            status: status.as_deref().map(MemberStatus::parse),
        });
    }
    Ok(Json(round))
}
