//! Group lifecycle: create, join, list, ready, leave, statistics and start (the event stream
//! is [`super::event_stream`]). Every handler takes the signed-in [`CurrentUser`] and checks
//! its access with [`auth`]; creation and joining are bounded by [`quotas`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use b3o_models::stats::Summary;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::GroupEvent;
use crate::membership;
// The wire types are shared with the clients (`b3o_models::protocol`).
use super::model::{
    CreateGroup, Created, ErrorBody, GroupList, GroupMember, GroupSummary, GroupView,
    Hyperparameters, Join, Joined, MemberLeft, MemberReady, MemberRole, MemberStatus, ModelKind,
    ModelTemplate, Phase, Ready, RoundState, StatisticsAccepted, TrainingStarted,
};
use super::{quotas, rounds};
use crate::accounts::extract::{ApiJson, ApiPath};
use crate::accounts::{ClientIp, CurrentUser};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /api/groups`: the caller becomes the group's owner and its first member. Refused
/// when the model would be over `--max-model-parameters` (413, counted from the template
/// before anything is allocated) or the caller already owns `--max-groups-per-account`
/// groups (403; administrators are exempt).
#[utoipa::path(
    post,
    path = "/api/groups",
    operation_id = "create_group",
    tag = "groups",
    request_body(content = CreateGroup, description = "What the group trains, how, and with how many members"),
    responses(
        (status = 201, description = "Created: the caller owns the group and is its first member", body = Created),
        (status = 400, description = "A field is missing, unknown or invalid (named in the message)", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The caller owns `--max-groups-per-account` groups already, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 413, description = "The model would have more than `--max-model-parameters` parameters", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn create(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateGroup>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    // Before the template's own checks, so that any model over the limit gets the same 413.
    quotas::check_model_size(quotas::template_params(&req.model), &state.limits)?;
    req.validate().map_err(ApiError::BadRequest)?;
    if req.secagg.is_some()
        && crate::strategy::build(&req.strategy).accumulation()
            != crate::strategy::Accumulation::RunningMean
    {
        return Err(ApiError::BadRequest(format!(
            "strategy `{}` needs every client's update, which secure aggregation hides from the \
             server; a secure group takes a mean-type strategy (fedavg, fedprox, fedavgm, \
             fedadam, fedyogi, fedadagrad)",
            crate::strategy::build(&req.strategy).name()
        )));
    }
    if req.dp.is_some()
        && crate::strategy::build(&req.strategy).accumulation()
            != crate::strategy::Accumulation::RunningMean
    {
        return Err(ApiError::BadRequest(format!(
            "strategy `{}` is not a mean of the updates, which the privacy analysis of \
             differential privacy assumes; a DP group takes a mean-type strategy (fedavg, \
             fedprox, fedavgm, fedadam, fedyogi, fedadagrad)",
            crate::strategy::build(&req.strategy).name()
        )));
    }
    if req.asynchronous.is_some()
        && crate::strategy::build(&req.strategy).accumulation()
            != crate::strategy::Accumulation::RunningMean
    {
        return Err(ApiError::BadRequest(format!(
            "strategy `{}` needs every client's update of one round, which an asynchronous \
             group never has (its buffer is a running mean); async takes a mean-type strategy \
             (fedavg, fedprox, fedavgm, fedadam, fedyogi, fedadagrad)",
            crate::strategy::build(&req.strategy).name()
        )));
    }
    let layout = req.model.layout();
    for _ in 0..8 {
        let join_code = new_join_code();
        let mut tx = crate::db::begin_write(&state.db).await?;
        // In the write transaction: concurrent creations by one account are serialised.
        let owned: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM groups WHERE owner_user_id = $1")
            .bind(user.id)
            .fetch_one(&mut *tx)
            .await?;
        quotas::check_group_quota(owned, user.is_admin(), &state.limits)?;
        let result = sqlx::query_scalar::<_, i64>(
            "INSERT INTO groups (name, description, join_code, owner_token_hash, owner_user_id,
                template_json, hyper_json, strategy_json, layout_json, total_rounds, min_clients,
                fraction_fit, round_deadline_secs, max_update_norm, secagg_json)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
        )
        .bind(req.name.trim())
        .bind(&req.description)
        .bind(&join_code)
        .bind(membership::unusable_token_hash())
        .bind(user.id)
        .bind(to_json(&req.model))
        .bind(to_json(&req.hyperparameters))
        .bind(to_json(&req.strategy))
        .bind(layout.as_ref().map(to_json))
        .bind(req.hyperparameters.rounds as i64)
        .bind(req.min_clients as i64)
        .bind(req.fraction_fit)
        .bind(req.round_deadline_secs as i64)
        .bind(req.max_update_norm)
        .bind(req.secagg.as_ref().map(to_json))
        .fetch_one(&mut *tx)
        .await;
        let group_id = match result {
            Ok(id) => id,
            // A join code collision: draw another.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
            Err(e) => return Err(e.into()),
        };
        super::encoding::store(&mut tx, group_id, req.update_encoding).await?;
        if let Some(config) = &req.asynchronous {
            super::buffered::store(&mut tx, group_id, config).await?;
        }
        if let Some(dp) = &req.dp {
            super::privacy::store(
                &mut tx,
                group_id,
                dp,
                req.hyperparameters.rounds,
                req.fraction_fit,
                req.min_clients,
            )
            .await?;
        }
        let member_id: i64 = sqlx::query_scalar(
            "INSERT INTO members (group_id, name, token_hash, user_id) VALUES ($1, $2, $3, $4)
             RETURNING id",
        )
        .bind(group_id)
        .bind(membership::default_member_name(&user))
        .bind(membership::unusable_token_hash())
        .bind(user.id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok((
            StatusCode::CREATED,
            Json(Created {
                group_id,
                join_code,
                member_id,
            }),
        ));
    }
    Err(ApiError::Internal(
        "could not draw a unique join code".into(),
    ))
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// 10 characters from an alphabet without look-alikes (no 0/O, 1/I/L): ~49 bits.
fn new_join_code() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    (0..10)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// `POST /api/groups/join`: the caller becomes a member (201). Idempotent: a caller who is
/// already an active member gets its membership back (200), whatever `name` says. Wrong codes
/// are limited per account and per client address (`--max-join-failures`, 429).
#[utoipa::path(
    post,
    path = "/api/groups/join",
    operation_id = "join_group",
    tag = "groups",
    request_body = Join,
    responses(
        (status = 200, description = "Already an active member: its membership", body = Joined),
        (status = 201, description = "Joined", body = Joined),
        (status = 400, description = "Malformed body, or a name that is not 1 to 200 characters", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "A missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No group has this join code", body = ErrorBody),
        (status = 409, description = "The group has finished training, or joining raced with leaving", body = ErrorBody),
        (status = 429, description = "Too many wrong join codes (`Retry-After`)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn join(
    user: CurrentUser,
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<Join>,
) -> Result<(StatusCode, Json<Joined>), ApiError> {
    let name = match req.name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => membership::default_member_name(&user),
    };
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::BadRequest(
            "name must be 1 to 200 characters".into(),
        ));
    }
    let code = req.join_code.trim().to_ascii_uppercase();
    // Reserved before the lookup, so that the answer to a guess past the limit reveals
    // nothing, a right code included.
    let attempt = state
        .federation
        .join_limiter(&state.limits)
        .begin(&state.db, user.id, ip)
        .await?;
    let group: Option<(i64, String)> =
        sqlx::query_as("SELECT id, phase FROM groups WHERE join_code = $1")
            .bind(&code)
            .fetch_optional(&state.db)
            .await?;
    let Some((group_id, phase)) = group else {
        attempt.failed().await;
        return Err(ApiError::NotFound("no group has this join code".into()));
    };
    attempt.release().await;
    if let Some((member_id, name)) = active_membership(&state.db, group_id, user.id).await? {
        return Ok((
            StatusCode::OK,
            Json(Joined {
                group_id,
                member_id,
                name,
            }),
        ));
    }
    if Phase::parse(&phase) == Phase::Finished {
        return Err(ApiError::Conflict(
            "this group has finished training".into(),
        ));
    }
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO members (group_id, name, token_hash, user_id) VALUES ($1, $2, $3, $4)
         RETURNING id",
    )
    .bind(group_id)
    .bind(&name)
    .bind(membership::unusable_token_hash())
    .bind(user.id)
    .fetch_one(&state.db)
    .await;
    let member_id = match inserted {
        Ok(id) => id,
        // A concurrent join of the same account won the race: answer with its membership.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            let (member_id, name) = active_membership(&state.db, group_id, user.id)
                .await?
                .ok_or_else(|| ApiError::Conflict("joining raced with leaving; retry".into()))?;
            return Ok((
                StatusCode::OK,
                Json(Joined {
                    group_id,
                    member_id,
                    name,
                }),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    state
        .federation
        .events
        .publish(group_id, GroupEvent::MemberJoined { member_id });
    Ok((
        StatusCode::CREATED,
        Json(Joined {
            group_id,
            member_id,
            name,
        }),
    ))
}

#[derive(sqlx::FromRow)]
struct ListRow {
    id: i64,
    name: String,
    description: String,
    phase: String,
    total_rounds: i64,
    template_json: String,
    created_at: String,
    owner_user_id: Option<i64>,
    members: i64,
    member_id: Option<i64>,
    #[sqlx(try_from = "crate::db::Flag")]
    was_member: bool,
    current_round: Option<i64>,
    current_round_state: Option<String>,
}

/// The `kind` of a stored template, read without the rest of it.
pub(super) fn model_kind(template_json: &str) -> Option<ModelKind> {
    #[derive(Deserialize)]
    struct Kind {
        kind: ModelKind,
    }
    serde_json::from_str::<Kind>(template_json)
        .ok()
        .map(|k| k.kind)
}

/// `GET /api/groups`: the groups the caller owns or has joined (administrators: every group),
/// newest first, with the caller's role in each.
#[utoipa::path(
    get,
    path = "/api/groups",
    operation_id = "list_groups",
    tag = "groups",
    responses(
        (status = 200, description = "The caller's groups, newest first", body = GroupList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn list(
    user: CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<GroupList>, ApiError> {
    let rows: Vec<ListRow> = sqlx::query_as(
        "SELECT g.id, g.name, g.description, g.phase, g.total_rounds, g.template_json,
                g.created_at, g.owner_user_id,
                (SELECT COUNT(*) FROM members WHERE group_id = g.id AND left_at IS NULL)
                    AS members,
                (SELECT id FROM members WHERE group_id = g.id AND user_id = $1
                    AND left_at IS NULL) AS member_id,
                EXISTS (SELECT 1 FROM members WHERE group_id = g.id AND user_id = $1)
                    AS was_member,
                (SELECT number FROM rounds WHERE group_id = g.id ORDER BY number DESC LIMIT 1)
                    AS current_round,
                (SELECT state FROM rounds WHERE group_id = g.id ORDER BY number DESC LIMIT 1)
                    AS current_round_state
         FROM groups g
         WHERE $2 OR g.owner_user_id = $1
            OR EXISTS (SELECT 1 FROM members WHERE group_id = g.id AND user_id = $1)
         ORDER BY g.id DESC",
    )
    .bind(user.id)
    .bind(user.is_admin())
    .fetch_all(&state.db)
    .await?;
    let groups = rows
        .into_iter()
        .filter_map(|r| {
            let membership = r.member_id.map(|_| true).or(r.was_member.then_some(false));
            let role = membership::GroupRole::of(
                r.owner_user_id == Some(user.id),
                membership,
                user.is_admin(),
            )?;
            Some(GroupSummary {
                id: r.id,
                model_kind: model_kind(&r.template_json),
                name: r.name,
                description: r.description,
                phase: Phase::parse(&r.phase),
                rounds: r.total_rounds,
                current_round: r.current_round,
                current_round_state: r.current_round_state.as_deref().map(RoundState::parse),
                members: r.members,
                role,
                member_id: r.member_id,
                created_at: r.created_at,
            })
        })
        .collect();
    Ok(Json(GroupList { groups }))
}

/// The account's active membership of the group: id and name.
async fn active_membership(
    db: &crate::db::Db,
    group_id: i64,
    user_id: i64,
) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name FROM members WHERE group_id = $1 AND user_id = $2 AND left_at IS NULL",
    )
    .bind(group_id)
    .bind(user_id)
    .fetch_optional(db)
    .await
}

/// The caller's membership has loaded its data and can train (`num_samples` rows); a resend
/// replaces the count.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/ready",
    operation_id = "mark_ready",
    tag = "groups",
    params(("id" = i64, Path, description = "The group")),
    request_body = Ready,
    responses(
        (status = 200, description = "Ready", body = MemberReady),
        (status = 400, description = "Malformed body, `num_samples` 0, or the id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an active member (left, or an administrator or owner who is not one), or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group, or the caller may not see it", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn ready(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
    ApiJson(req): ApiJson<Ready>,
) -> Result<Json<MemberReady>, ApiError> {
    let access = membership::group_access(&state.db, &user, group_id).await?;
    let member = access.require_member()?;
    if req.num_samples == 0 || req.num_samples > i64::MAX as u64 {
        return Err(ApiError::BadRequest(
            "num_samples must be at least 1".into(),
        ));
    }
    sqlx::query(
        "UPDATE members SET num_samples = $1, ready_at = $3
         WHERE id = $2",
    )
    .bind(req.num_samples as i64)
    .bind(member.id)
    .bind(crate::db::now_text())
    .execute(&state.db)
    .await?;
    Ok(Json(MemberReady {
        member_id: member.id,
        ready: true,
        num_samples: req.num_samples,
    }))
}

/// A member leaves: it is never selected again, and rounds stop waiting for it.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/leave",
    operation_id = "leave_group",
    tag = "groups",
    params(("id" = i64, Path, description = "The group")),
    responses(
        (status = 200, description = "Left; event streams opened through this membership end", body = MemberLeft),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an active member, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group, or the caller may not see it", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn leave(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
) -> Result<Json<MemberLeft>, ApiError> {
    let access = membership::group_access(&state.db, &user, group_id).await?;
    let member = access.require_member()?;
    super::control::end_membership(&state, group_id, member.id, None).await?;
    Ok(Json(MemberLeft {
        member_id: member.id,
        left: true,
    }))
}

/// Column summaries of a member's local data (before round 1), in
/// `b3o_models::stats::Summary` form: never rows. Tabular groups: the owner's start merges
/// them into the global preprocessing spec (and every member must send them). Image groups:
/// per-image statistics and label counts (`b3o_models::monitor::image_reference`), merged
/// into the first version's drift reference (optional). A resend replaces the member's
/// earlier summaries.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/statistics",
    operation_id = "post_statistics",
    tag = "groups",
    params(("id" = i64, Path, description = "The group")),
    request_body(content = Summary, description = "Per-column summaries of the member's table, or an image group's image statistics and label counts (`b3o_models::stats::Summary`): counts, sums, minimum, maximum, sketches, category counts; never rows"),
    responses(
        (status = 202, description = "Accepted; the group enters its statistics phase", body = StatisticsAccepted),
        (status = 400, description = "Not a column summary, not the group's kind of statistics (an image group's: image statistics and known labels), or the id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an active member, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "The group's model needs no statistics (a custom layout), or training has started", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn post_statistics(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
    ApiJson(summary): ApiJson<Value>,
) -> Result<(StatusCode, Json<StatisticsAccepted>), ApiError> {
    let access = membership::group_access(&state.db, &user, group_id).await?;
    let member = access.require_member()?;
    let (template, phase): (String, String) =
        sqlx::query_as("SELECT template_json, phase FROM groups WHERE id = $1")
            .bind(group_id)
            .fetch_one(&state.db)
            .await?;
    let template: ModelTemplate = serde_json::from_str(&template)
        .map_err(|e| ApiError::Internal(format!("group {group_id} template: {e}")))?;
    if matches!(template, ModelTemplate::Custom { .. }) {
        return Err(ApiError::Conflict(
            "this group's model needs no column statistics".into(),
        ));
    }
    let phase = Phase::parse(&phase);
    if !matches!(phase, Phase::Enrolling | Phase::Statistics) {
        return Err(ApiError::Conflict(format!(
            "statistics are collected before training; the group is {}",
            phase.as_str()
        )));
    }
    // Checked against the models crate's summary format; merged at start.
    let summary: Summary = serde_json::from_value(summary)
        .map_err(|e| ApiError::BadRequest(format!("statistics: {e}")))?;
    match &template {
        // An image group's statistics are its drift reference: image statistics and labels.
        ModelTemplate::ImageCnn { labels } => {
            b3o_models::monitor::check_image_reference(&summary, labels)
        }
        _ => b3o_models::monitor::check_sketches(&summary),
    }
    .map_err(|e| ApiError::BadRequest(format!("statistics: {e}")))?;
    let summary = serde_json::to_string(&summary)
        .map_err(|e| ApiError::Internal(format!("statistics: {e}")))?;
    sqlx::query(
        "INSERT INTO column_summaries (group_id, member_id, summary_json) VALUES ($1, $2, $3)
         ON CONFLICT (group_id, member_id) DO UPDATE SET summary_json = excluded.summary_json,
             received_at = $4",
    )
    .bind(group_id)
    .bind(member.id)
    .bind(summary)
    .bind(crate::db::now_text())
    .execute(&state.db)
    .await?;
    let entered =
        sqlx::query("UPDATE groups SET phase = 'statistics' WHERE id = $1 AND phase = 'enrolling'")
            .bind(group_id)
            .execute(&state.db)
            .await?
            .rows_affected();
    if entered > 0 {
        state.federation.events.publish(
            group_id,
            GroupEvent::PhaseChanged {
                phase: Phase::Statistics,
            },
        );
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(StatisticsAccepted {
            member_id: member.id,
            accepted: true,
        }),
    ))
}

/// The owner (or an administrator) starts training: version 0 (initial weights) and round 1.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/start",
    operation_id = "start_training",
    tag = "groups",
    params(("id" = i64, Path, description = "The group")),
    responses(
        (status = 200, description = "Training started: round 1 is open", body = TrainingStarted),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not the group's owner or an administrator, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "Training has started already, too few members are ready, column statistics are missing, or the model cannot be built from them", body = ErrorBody),
        (status = 413, description = "The model would have more than `--max-model-parameters` parameters", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn start(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
) -> Result<Json<TrainingStarted>, ApiError> {
    membership::group_access(&state.db, &user, group_id)
        .await?
        .require_owner()?;
    let round = rounds::start_training(&state, group_id).await?;
    Ok(Json(TrainingStarted {
        group_id,
        phase: Phase::Training,
        round,
    }))
}

/// A stored JSON column of group `group_id`; unreadable means a corrupt database (500).
fn stored<T: DeserializeOwned>(group_id: i64, what: &str, json: &str) -> Result<T, ApiError> {
    serde_json::from_str(json)
        .map_err(|e| ApiError::Internal(format!("group {group_id}: stored {what} unreadable: {e}")))
}

/// A group as its owner and members see it (the join code for those who manage it only).
#[utoipa::path(
    get,
    path = "/api/groups/{id}",
    operation_id = "get_group",
    tag = "groups",
    params(("id" = i64, Path, description = "The group")),
    responses(
        (status = 200, description = "The group, its members and where training stands", body = GroupView),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such group, or the caller may not see it", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn get_group(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
) -> Result<Json<GroupView>, ApiError> {
    let access = membership::group_access(&state.db, &user, group_id).await?;
    type Row = (
        String,
        String,
        String,
        String,
        String,
        i64,
        i64,
        f64,
        i64,
        Option<f64>,
        String,
        String,
        crate::db::Flag,
        crate::db::Flag,
        Option<String>,
    );
    let row: Row = sqlx::query_as(
        "SELECT name, description, template_json, hyper_json, strategy_json, total_rounds,
                min_clients, fraction_fit, round_deadline_secs, max_update_norm, phase, created_at,
                paused_at IS NOT NULL, cancelled_at IS NOT NULL, secagg_json
             FROM groups WHERE id = $1",
    )
    .bind(group_id)
    .fetch_one(&state.db)
    .await?;
    let members: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(ready_at) FROM members
         WHERE group_id = $1 AND left_at IS NULL",
    )
    .bind(group_id)
    .fetch_one(&state.db)
    .await?;
    let current: Option<(i64, String, i64)> = sqlx::query_as(
        "SELECT number, state, deadline_at FROM rounds WHERE group_id = $1
         ORDER BY number DESC LIMIT 1",
    )
    .bind(group_id)
    .fetch_optional(&state.db)
    .await?;
    let mut member_list = member_list(&state.db, group_id).await?;
    let presence = &state.federation.presence;
    for m in member_list.iter_mut().filter(|m| !m.left) {
        m.presence = Some(presence.presence(m.member_id));
        if m.round_status == Some(MemberStatus::Selected) {
            m.progress = current
                .as_ref()
                .and_then(|c| presence.progress(m.member_id, c.0));
        }
    }
    let current_round_deadline_at = current
        .as_ref()
        .filter(|c| RoundState::parse(&c.1).is_live())
        .map(|c| crate::accounts::rfc3339(c.2));
    // Only those who manage the group see the join code again, to invite more members.
    let join_code: Option<String> = if access.can_manage() {
        sqlx::query_scalar("SELECT join_code FROM groups WHERE id = $1")
            .bind(group_id)
            .fetch_optional(&state.db)
            .await?
    } else {
        None
    };
    let model: ModelTemplate = stored(group_id, "template", &row.2)?;
    let hyperparameters: Hyperparameters = stored(group_id, "hyperparameters", &row.3)?;
    Ok(Json(GroupView {
        id: group_id,
        name: row.0,
        description: row.1,
        model,
        hyperparameters,
        strategy: serde_json::from_str(&row.4).unwrap_or(Value::Null),
        phase: Phase::parse(&row.10),
        rounds: row.5,
        min_clients: row.6,
        fraction_fit: row.7,
        round_deadline_secs: row.8,
        max_update_norm: row.9,
        update_encoding: super::encoding::load(&state.db, group_id).await?,
        created_at: row.11,
        members: members.0,
        ready_members: members.1,
        current_round: current.as_ref().map(|c| c.0),
        current_round_state: current.map(|c| RoundState::parse(&c.1)),
        join_code,
        role: Some(access.role),
        member_id: access.active_member().map(|m| m.id),
        member_list,
        current_round_deadline_at,
        paused: row.12.into(),
        cancelled: row.13.into(),
        secagg: row.14.as_deref().and_then(|j| serde_json::from_str(j).ok()),
        dp: super::privacy::group_view(&state.db, group_id).await?,
        asynchronous: super::buffered::load(&state.db, group_id).await?,
    }))
}

/// The group's memberships with where each stands in the latest round, in one query: active
/// ones first, then those who left (less a left membership whose account joined again).
/// Names only, as given when joining: never an account's email.
async fn member_list(db: &crate::db::Db, group_id: i64) -> Result<Vec<GroupMember>, ApiError> {
    type Row = (
        i64,
        String,
        crate::db::Flag,
        crate::db::Flag,
        crate::db::Flag,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "WITH current AS (
             SELECT id FROM rounds WHERE group_id = $1 ORDER BY number DESC LIMIT 1)
         SELECT m.id, m.name,
                CASE WHEN m.user_id IS NOT NULL AND m.user_id = g.owner_user_id THEN 1 ELSE 0 END,
                m.ready_at IS NOT NULL, m.left_at IS NOT NULL, rm.status
         FROM members m
         JOIN groups g ON g.id = m.group_id
         LEFT JOIN round_members rm
             ON rm.member_id = m.id AND rm.round_id = (SELECT id FROM current)
         WHERE m.group_id = $1
           AND NOT (m.left_at IS NOT NULL AND m.user_id IS NOT NULL AND EXISTS (
               SELECT 1 FROM members n
               WHERE n.group_id = m.group_id AND n.user_id = m.user_id AND n.id > m.id))
         ORDER BY m.left_at IS NOT NULL, m.id",
    )
    .bind(group_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(member_id, name, owner, ready, left, round_status)| GroupMember {
                member_id,
                name,
                role: if owner.0 {
                    MemberRole::Owner
                } else {
                    MemberRole::Member
                },
                ready: ready.0,
                left: left.0,
                round_status: round_status.as_deref().map(MemberStatus::parse),
                presence: None,
                progress: None,
            },
        )
        .collect())
}
