//! The owner's controls of a group's training (issue #21), also an administrator's for any
//! group: pause, resume, cancel, close the live round now, remove a member; and the training
//! members' heartbeat (`progress`), which tells the owner how far each is and keeps it
//! counted as connected ([`super::presence`]).

use axum::Json;
use axum::extract::State;

use super::events::GroupEvent;
use super::model::{
    ErrorBody, MemberLeft, MemberStatus, Phase, Presence, Progress, ProgressAccepted, RoundState,
    TrainingControl,
};
use super::rounds;
use crate::accounts::CurrentUser;
use crate::accounts::extract::{ApiJson, ApiPath};
use crate::error::ApiError;
use crate::membership::{self, GroupAccess};
use crate::state::AppState;

/// Where training stands now, as the controls answer it.
async fn control_view(state: &AppState, group_id: i64) -> Result<TrainingControl, ApiError> {
    let (phase, paused, cancelled): (String, bool, bool) = sqlx::query_as(
        "SELECT phase, paused_at IS NOT NULL, cancelled_at IS NOT NULL FROM groups WHERE id = $1",
    )
    .bind(group_id)
    .fetch_one(&state.db)
    .await?;
    let current: Option<(i64, String)> = sqlx::query_as(
        "SELECT number, state FROM rounds WHERE group_id = $1 ORDER BY number DESC LIMIT 1",
    )
    .bind(group_id)
    .fetch_optional(&state.db)
    .await?;
    Ok(TrainingControl {
        group_id,
        phase: Phase::parse(&phase),
        paused,
        cancelled,
        current_round: current.as_ref().map(|c| c.0),
        current_round_state: current.map(|c| RoundState::parse(&c.1)),
    })
}

async fn owner_access(
    state: &AppState,
    user: &CurrentUser,
    group_id: i64,
) -> Result<GroupAccess, ApiError> {
    let access = membership::group_access(&state.db, user, group_id).await?;
    access.require_owner()?;
    Ok(access)
}

/// Who acted, in the words the members read.
fn actor(access: &GroupAccess) -> &'static str {
    if access.role == super::model::GroupRole::Owner {
        "the group's owner"
    } else {
        "an administrator"
    }
}

/// Pauses training: the live round still finishes (its updates are kept), then no new round
/// opens until the owner resumes.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/pause",
    operation_id = "pause_training",
    tag = "groups",
    params(("id" = i64, Path, description = "The group")),
    responses(
        (status = 200, description = "Paused (a repeat changes nothing)", body = TrainingControl),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not the group's owner or an administrator, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "Training has not started, is over or was cancelled", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn pause(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
) -> Result<Json<TrainingControl>, ApiError> {
    owner_access(&state, &user, group_id).await?;
    rounds::set_paused(&state, group_id, true).await?;
    Ok(Json(control_view(&state, group_id).await?))
}

/// Resumes paused training: the next round opens at once if none is live.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/resume",
    operation_id = "resume_training",
    tag = "groups",
    params(("id" = i64, Path, description = "The group")),
    responses(
        (status = 200, description = "Resumed (a repeat changes nothing)", body = TrainingControl),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not the group's owner or an administrator, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "Training has not started, is over or was cancelled", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn resume(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
) -> Result<Json<TrainingControl>, ApiError> {
    owner_access(&state, &user, group_id).await?;
    rounds::set_paused(&state, group_id, false).await?;
    Ok(Json(control_view(&state, group_id).await?))
}

/// Cancels training: the live round fails with the reason, no round follows and the group
/// is finished (`cancelled: true`). Versions already stored stay, and can be deployed.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/cancel",
    operation_id = "cancel_training",
    tag = "groups",
    params(("id" = i64, Path, description = "The group")),
    responses(
        (status = 200, description = "Cancelled", body = TrainingControl),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not the group's owner or an administrator, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "Training has not started or is over", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn cancel(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
) -> Result<Json<TrainingControl>, ApiError> {
    let access = owner_access(&state, &user, group_id).await?;
    rounds::cancel(&state, group_id, actor(&access)).await?;
    Ok(Json(control_view(&state, group_id).await?))
}

/// Closes the live round now, with the updates that arrived (at least `min_clients`):
/// members still training are marked failed and their late updates refused.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/rounds/current/close",
    operation_id = "close_round",
    tag = "rounds",
    params(("id" = i64, Path, description = "The group")),
    responses(
        (status = 200, description = "The round aggregates now", body = TrainingControl),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not the group's owner or an administrator, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "No round is taking updates, or fewer than `min_clients` updates arrived (named in the message)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn close_round(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
) -> Result<Json<TrainingControl>, ApiError> {
    owner_access(&state, &user, group_id).await?;
    rounds::close_now(&state, group_id).await?;
    Ok(Json(control_view(&state, group_id).await?))
}

/// Ends membership `member_id` (it left, or its owner removed it): never selected again, the
/// live round stops waiting for it, its event streams end.
pub(super) async fn end_membership(
    state: &AppState,
    group_id: i64,
    member_id: i64,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    sqlx::query("UPDATE members SET left_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = $1")
        .bind(member_id)
        .execute(&state.db)
        .await?;
    sqlx::query(
        "UPDATE round_members SET status = 'dropped', failure = $1
         WHERE member_id = $2 AND status = 'selected'",
    )
    .bind(reason)
    .bind(member_id)
    .execute(&state.db)
    .await?;
    let federation = &state.federation;
    federation.presence.forget(member_id);
    // Event streams opened through this membership end.
    federation.events.member_left(group_id, member_id);
    federation
        .events
        .publish(group_id, GroupEvent::MemberLeft { member_id });
    if let Some(round_id) = rounds::live_round_id(&state.db, group_id).await? {
        rounds::check_round(state, round_id).await?;
    }
    Ok(())
}

/// Removes a member from the group (its tab is closed for good, it left the organisation):
/// it is never selected again, the live round stops waiting for it, its event streams end
/// and its calls are refused (403) from now on. Its past updates stay in the versions.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/members/{member_id}/remove",
    operation_id = "remove_member",
    tag = "groups",
    params(
        ("id" = i64, Path, description = "The group"),
        ("member_id" = i64, Path, description = "The membership to end (`member_list[].member_id`)"),
    ),
    responses(
        (status = 200, description = "Removed", body = MemberLeft),
        (status = 400, description = "The id or member id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not the group's owner or an administrator, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group or active member of it, or the caller may not see the group", body = ErrorBody),
        (status = 409, description = "The owner's own membership (the owner leaves instead)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn remove_member(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath((group_id, member_id)): ApiPath<(i64, i64)>,
) -> Result<Json<MemberLeft>, ApiError> {
    let access = owner_access(&state, &user, group_id).await?;
    let row: Option<bool> = sqlx::query_scalar(
        "SELECT m.user_id IS NOT NULL AND m.user_id IS g.owner_user_id
         FROM members m JOIN groups g ON g.id = m.group_id
         WHERE m.id = $1 AND m.group_id = $2 AND m.left_at IS NULL",
    )
    .bind(member_id)
    .bind(group_id)
    .fetch_optional(&state.db)
    .await?;
    let is_owner = row.ok_or_else(|| {
        ApiError::NotFound(format!("group {group_id} has no active member {member_id}"))
    })?;
    if is_owner {
        return Err(ApiError::Conflict(
            "this is the owner's own membership: the owner leaves the group instead".into(),
        ));
    }
    let reason = format!("removed by {}", actor(&access));
    end_membership(&state, group_id, member_id, Some(&reason)).await?;
    Ok(Json(MemberLeft {
        member_id,
        left: true,
    }))
}

/// A training member's heartbeat: how much of round `number`'s local training is done. The
/// owner's page shows it; it also keeps the member counted as connected.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/rounds/{number}/progress",
    operation_id = "report_progress",
    tag = "rounds",
    params(
        ("id" = i64, Path, description = "The group"),
        ("number" = i64, Path, description = "The round being trained"),
    ),
    request_body = Progress,
    responses(
        (status = 200, description = "Recorded", body = ProgressAccepted),
        (status = 400, description = "Malformed body, a fraction outside 0..1, or the id or number is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an active member, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group or round, or the caller may not see the group", body = ErrorBody),
        (status = 409, description = "The round takes no more updates, or the caller is not expected to send one", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn progress(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath((group_id, number)): ApiPath<(i64, i64)>,
    ApiJson(req): ApiJson<Progress>,
) -> Result<Json<ProgressAccepted>, ApiError> {
    let access = membership::group_access(&state.db, &user, group_id).await?;
    let member = access.require_member()?;
    if !(req.fraction.is_finite() && (0.0..=1.0).contains(&req.fraction)) {
        return Err(ApiError::BadRequest(
            "fraction must be a number from 0 to 1".into(),
        ));
    }
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT r.state, rm.status FROM rounds r
         LEFT JOIN round_members rm ON rm.round_id = r.id AND rm.member_id = $1
         WHERE r.group_id = $2 AND r.number = $3",
    )
    .bind(member.id)
    .bind(group_id)
    .bind(number)
    .fetch_optional(&state.db)
    .await?;
    let (round_state, status) =
        row.ok_or_else(|| ApiError::NotFound(format!("group {group_id} has no round {number}")))?;
    let round_state = RoundState::parse(&round_state);
    let status = status.as_deref().map(MemberStatus::parse);
    if !round_state.is_live() || status != Some(MemberStatus::Selected) {
        return Err(ApiError::Conflict(format!(
            "round {number} is {} and you are {}",
            round_state.as_str(),
            status.map_or("not selected", MemberStatus::as_str)
        )));
    }
    let federation = &state.federation;
    let (returned, publish) = federation
        .presence
        .heartbeat(member.id, number, req.fraction);
    if returned {
        federation.events.publish(
            group_id,
            GroupEvent::MemberPresence {
                member_id: member.id,
                presence: Presence::Connected,
            },
        );
    }
    if publish {
        federation.events.publish(
            group_id,
            GroupEvent::MemberProgress {
                member_id: member.id,
                round: number,
                fraction: req.fraction,
            },
        );
    }
    Ok(Json(ProgressAccepted {
        round: number,
        member_id: member.id,
        fraction: req.fraction,
    }))
}
