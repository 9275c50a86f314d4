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
//!
//! A training client opens it with `?trainer=true`: while such a stream of an active member
//! is open the member is connected, and when the last one closes it is gone after
//! [`presence::GRACE`] (issue #21, [`super::presence`]): the group hears `member_presence`
//! and the live round stops waiting for it.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::events::{GroupEvent, Message};
use super::model::{ErrorBody, Phase, Presence, RoundState};
use super::{presence, rounds};
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
    params(
        ("id" = i64, Path, description = "The group"),
        ("trainer" = Option<bool>, Query, description = "`true` from a member's training client: while the stream is open the member counts as connected; when it closes the member is gone (not selected, not waited for) until it returns"),
    ),
    responses(
        (status = 200, description = "A Server-Sent Events stream. Each event is named by its `type` (`snapshot` first, then `phase_changed`, `round_opened`, `round_closed`, `round_failed`, `member_joined`, `member_left`, `member_presence`, `member_progress`, `paused`) and its `data` is that GroupEvent as JSON; a `lagged` event (data `{}`) tells a client that fell behind to read the group again. A comment every 15 s keeps the connection alive. The stream ends when the caller leaves the group or its session or token ends.",
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
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let trainer = query.as_deref().is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "trainer" | "trainer=true" | "trainer=1"))
    });
    let access = membership::group_access(&state.db, &user, group_id).await?;
    if access.role == GroupRole::Left {
        return Err(ApiError::Forbidden(
            "you have left this group; its live events are for its members".into(),
        ));
    }
    // Subscribe before reading the snapshot so that nothing falls between them.
    let rx = state.federation.events.subscribe(group_id);
    let phase: Option<String> = sqlx::query_scalar("SELECT phase FROM groups WHERE id = $1")
        .bind(group_id)
        .fetch_optional(&state.db)
        .await?;
    let phase = phase.ok_or_else(membership::not_found)?;
    let current: Option<(i64, String)> = sqlx::query_as(
        "SELECT number, state FROM rounds WHERE group_id = $1 ORDER BY number DESC LIMIT 1",
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
    let member_id = access.active_member().map(|m| m.id);
    let trainer = match member_id {
        Some(member_id) if trainer => Some(TrainerGuard::open(&state, group_id, member_id)),
        _ => None,
    };
    let follower = Follower {
        member_id,
        _trainer: trainer,
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
    /// A training client's stream: its member is connected while the stream lives.
    _trainer: Option<TrainerGuard>,
}

/// Counts a member as connected from its trainer stream's opening to its end (drop).
struct TrainerGuard {
    state: AppState,
    group_id: i64,
    member_id: i64,
}

impl TrainerGuard {
    fn open(state: &AppState, group_id: i64, member_id: i64) -> Self {
        let federation = &state.federation;
        if federation.presence.stream_opened(member_id) {
            federation.events.publish(
                group_id,
                GroupEvent::MemberPresence {
                    member_id,
                    presence: Presence::Connected,
                },
            );
        }
        TrainerGuard {
            state: state.clone(),
            group_id,
            member_id,
        }
    }
}

impl Drop for TrainerGuard {
    fn drop(&mut self) {
        self.state.federation.presence.stream_closed(self.member_id);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (state, group_id, member_id) = (self.state.clone(), self.group_id, self.member_id);
        // After the grace, if it did not come back: tell the group, and let the live round
        // stop waiting for it.
        runtime.spawn(async move {
            tokio::time::sleep(presence::GRACE + Duration::from_millis(250)).await;
            if !state.federation.presence.is_gone(member_id) {
                return;
            }
            state.federation.events.publish(
                group_id,
                GroupEvent::MemberPresence {
                    member_id,
                    presence: Presence::Gone,
                },
            );
            match rounds::live_round_id(&state.db, group_id).await {
                Ok(Some(round_id)) => {
                    if let Err(e) = rounds::check_round(&state, round_id).await {
                        tracing::warn!(group_id, error = %e, "checking a round after a member went away");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(group_id, error = %e, "reading the live round"),
            }
        });
    }
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
