//! `GET /api/groups/{id}/events`: Server-Sent Events for those who may follow a group: its
//! owner, its active members and administrators (a member who left gets 403; it can still
//! read the group's rounds and models). The first event is a `snapshot` of the group; then
//! `round_opened`, `round_closed`, ... as they happen, with a keep-alive comment every 15 s.
//! Browsers' `EventSource` sends the session cookie (same origin); programs their API token.
//!
//! A stream lives no longer than the right to open it (issue #19): it ends at once when the
//! membership it was opened through leaves the group (the hub's [`Message::MemberLeft`]), and
//! within [`RECHECK_EVERY`] when its session signs out or its API token is revoked or
//! expires, or the caller no longer sees the group. An `EventSource` reconnects after the
//! end, and its new request is refused: it stops there.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::events::{GroupEvent, Message};
use super::model::{ErrorBody, Phase, RoundState};
use crate::accounts::CurrentUser;
use crate::accounts::extract::ApiPath;
use crate::error::ApiError;
use crate::membership::{self, GroupRole};
use crate::state::AppState;

/// How often an open stream checks that its caller may still follow the group.
pub const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// The group's live events as Server-Sent Events: a `snapshot` first, then changes.
#[utoipa::path(
    get,
    path = "/api/groups/{id}/events",
    operation_id = "group_events",
    tag = "groups",
    params(("id" = i64, Path, description = "The group")),
    responses(
        (status = 200, description = "A Server-Sent Events stream. Each event is named by its `type` (`snapshot` first, then `phase_changed`, `round_opened`, `round_closed`, `round_failed`, `member_joined`) and its `data` is that GroupEvent as JSON; a `lagged` event (data `{}`) tells a client that fell behind to read the group again. A comment every 15 s keeps the connection alive. The stream ends when the caller leaves the group or its session or token ends.",
            content_type = "text/event-stream", body = GroupEvent),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The caller left the group", body = ErrorBody),
        (status = 404, description = "No such group, or the caller may not see it", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn events(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let access = membership::group_access(&state.db, &user, group_id).await?;
    if access.role == GroupRole::Left {
        return Err(ApiError::Forbidden(
            "you have left this group; its live events are for its members".into(),
        ));
    }
    // Subscribe before reading the snapshot so that nothing falls between them.
    let rx = state.federation.events.subscribe(group_id);
    let phase: Option<String> = sqlx::query_scalar("SELECT phase FROM groups WHERE id = ?")
        .bind(group_id)
        .fetch_optional(&state.db)
        .await?;
    let phase = phase.ok_or_else(membership::not_found)?;
    let current: Option<(i64, String)> = sqlx::query_as(
        "SELECT number, state FROM rounds WHERE group_id = ? ORDER BY number DESC LIMIT 1",
    )
    .bind(group_id)
    .fetch_optional(&state.db)
    .await?;
    let snapshot = GroupEvent::Snapshot {
        phase: Phase::parse(&phase),
        current_round: current.as_ref().map(|c| c.0),
        round_state: current.map(|c| RoundState::parse(&c.1)),
    };
    let mut recheck = tokio::time::interval_at(Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
    recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let follower = Follower {
        member_id: access.active_member().map(|m| m.id),
        state,
        user,
        group_id,
        rx,
        recheck,
    };
    let stream =
        futures_util::stream::unfold((Some(snapshot), follower), |(first, mut f)| async move {
            if let Some(event) = first {
                return Some((Ok(to_sse(&event)), (None, f)));
            }
            let event = f.next().await?;
            Some((Ok(event), (None, f)))
        });
    // Safe to poll after its end, whatever layer wraps the body.
    let stream = futures_util::StreamExt::fuse(stream);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// One open stream: what it follows and on whose behalf.
struct Follower {
    state: AppState,
    user: CurrentUser,
    group_id: i64,
    /// The membership the stream was opened through, if any (owners who left and
    /// administrators follow without one).
    member_id: Option<i64>,
    rx: broadcast::Receiver<Message>,
    recheck: Interval,
}

impl Follower {
    /// The next event to send, or `None` when the stream must end.
    async fn next(&mut self) -> Option<Event> {
        loop {
            tokio::select! {
                message = self.rx.recv() => match message {
                    Ok(Message::Event(event)) => return Some(to_sse(&event)),
                    Ok(Message::MemberLeft { member_id }) => {
                        if Some(member_id) == self.member_id && !self.may_follow().await {
                            return None;
                        }
                    }
                    // A slow reader missed events: tell it to re-read the group.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return Some(Event::default().event("lagged").data("{}"));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.recheck.tick() => {
                    if !self.may_follow().await {
                        return None;
                    }
                }
            }
        }
    }

    /// Whether the caller's credentials are still live and it may still follow the group. A
    /// database error ends the stream too: the client reconnects and is checked afresh.
    async fn may_follow(&self) -> bool {
        let db = &self.state.db;
        match self.user.auth.is_live(db).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "re-checking an event stream's credentials");
                return false;
            }
        }
        match membership::group_access(db, &self.user, self.group_id).await {
            Ok(access) => access.role != GroupRole::Left,
            Err(ApiError::NotFound(_)) => false,
            Err(e) => {
                tracing::warn!(error = %e, "re-checking an event stream's access");
                false
            }
        }
    }
}

fn to_sse(event: &GroupEvent) -> Event {
    Event::default()
        .event(event.kind())
        .data(serde_json::to_string(event).unwrap_or_default())
}
