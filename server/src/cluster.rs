//! What replicas on one Postgres database tell each other, over Postgres `LISTEN`/`NOTIFY`
//! (issue #15): the group events their Server-Sent Events streams carry, that a membership
//! ended, that a deployment changed (so every replica's inference cache re-reads it), and
//! which members' training clients are connected to them (presence).
//!
//! Each process owns the in-memory structures that need this ([`EventHub`], [`Changes`],
//! [`PresenceMap`]); each holds an [`Outbox`] that forwards what it does locally. A sender task
//! turns the outbox into `pg_notify` calls, in order; a listener task applies what other
//! replicas sent, skipping its own. On SQLite (one process per database) the outboxes stay
//! unconnected and nothing is sent.
//!
//! Delivery is best effort, as an SSE stream's is: a notice sent while a replica's listening
//! connection is down is lost, so after a reconnection the replica treats every cached
//! deployment as stale. Durable state (rounds, updates, versions, deployments) lives in the
//! database; nothing here decides a round.
//!
//! [`EventHub`]: crate::federation::events::EventHub
//! [`Changes`]: crate::registry::deployments::Changes
//! [`PresenceMap`]: crate::federation::presence::PresenceMap

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use b3o_models::protocol::GroupEvent;

use crate::state::AppState;

/// The Postgres channel.
pub const CHANNEL: &str = "b3o_cluster";
/// `NOTIFY`'s payload limit is 8000 bytes; larger notices are dropped (logged).
const MAX_PAYLOAD: usize = 7900;
/// Notices waiting for the sender task; past this, new ones are dropped (logged).
const OUTBOX_CAPACITY: usize = 4096;
/// How often a replica says it is alive; its presence reports count for [`REPLICA_TTL`].
pub const ALIVE_EVERY: Duration = Duration::from_secs(5);
/// A replica not heard from for this long is taken for dead: its training streams no longer
/// count a member as connected.
pub const REPLICA_TTL: Duration = Duration::from_secs(16);

/// A replica's random identity, for the life of the process.
pub type ReplicaId = u64;

/// This process's identity ([`ReplicaId`]): random, drawn once.
pub fn replica_id() -> ReplicaId {
    static ID: OnceLock<ReplicaId> = OnceLock::new();
    *ID.get_or_init(rand::random)
}

/// [`replica_id`] as rows store it (`jobs.claimed_by`).
pub fn replica_tag() -> String {
    format!("{:016x}", replica_id())
}

/// What one replica tells the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// An event for a group's SSE streams.
    Event { group: i64, event: GroupEvent },
    /// A membership ended: streams opened through it re-check their access.
    MemberLeft { group: i64, member: i64 },
    /// A deployment changed (promote, rollback, sharing, new deployment).
    Deployments,
    /// A member's training stream opened (`open`) or closed on the sender.
    Stream { member: i64, open: bool },
    /// A member's training heartbeat reached the sender.
    Heartbeat {
        member: i64,
        round: i64,
        fraction: f64,
    },
    /// A batch job was deleted: the replica running it stops.
    JobDeleted { id: i64 },
    /// The sender runs.
    Alive,
}

/// What travels in a `NOTIFY` payload.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: ReplicaId,
    notice: Notice,
}

/// Where a local structure forwards what other replicas must learn: nowhere until
/// [`start`] connects it.
#[derive(Debug, Default, Clone)]
pub struct Outbox(Arc<OnceLock<mpsc::Sender<Notice>>>);

impl Outbox {
    /// Queues `notice` for the other replicas (no-op when unconnected; never blocks).
    pub fn send(&self, notice: Notice) {
        if let Some(tx) = self.0.get()
            && tx.try_send(notice).is_err()
        {
            tracing::warn!(
                "cluster outbox full or closed: a notice for other replicas was dropped"
            );
        }
    }

    fn connect(&self, tx: mpsc::Sender<Notice>) {
        let _ = self.0.set(tx);
    }
}

/// Connects this replica's outboxes to the database at `url` and applies other replicas'
/// notices, for as long as the process runs. Postgres only: the caller skips it on SQLite.
pub fn start(state: &AppState, url: &str) -> ReplicaId {
    let me = replica_id();
    let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
    state.federation.events.outbox().connect(tx.clone());
    state.federation.presence.outbox().connect(tx.clone());
    state.registry.outbox().connect(tx.clone());
    state.jobs.outbox().connect(tx.clone());
    tokio::spawn(send_loop(state.clone(), me, rx));
    tokio::spawn(listen_loop(state.clone(), me, url.to_string()));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ALIVE_EVERY);
        loop {
            tick.tick().await;
            if tx.send(Notice::Alive).await.is_err() {
                return;
            }
        }
    });
    me
}

async fn send_loop(state: AppState, me: ReplicaId, mut rx: mpsc::Receiver<Notice>) {
    while let Some(notice) = rx.recv().await {
        let Some(payload) = encode(me, notice) else {
            continue;
        };
        if let Err(e) = sqlx::query("SELECT 1 FROM pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&state.db)
            .await
        {
            tracing::warn!(error = %e, "telling other replicas failed");
        }
    }
}

/// The payload of `notice`, `None` (logged) if too large for `NOTIFY`.
fn encode(me: ReplicaId, notice: Notice) -> Option<String> {
    let payload = serde_json::to_string(&Envelope { from: me, notice }).ok()?;
    if payload.len() > MAX_PAYLOAD {
        tracing::warn!(
            bytes = payload.len(),
            "a notice too large for NOTIFY was not sent to other replicas"
        );
        return None;
    }
    Some(payload)
}

async fn listen_loop(state: AppState, me: ReplicaId, url: String) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "connecting the cluster listener failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Anything may have changed while this replica was not listening.
        state.registry.bump_local();
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => apply(&state, me, n.payload()),
                // The connection was lost; `try_recv` reconnects (and re-listens) on the
                // next call. Notices sent meanwhile are lost.
                Ok(None) => state.registry.bump_local(),
                Err(e) => {
                    tracing::warn!(error = %e, "the cluster listener failed; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
        }
    }
}

/// Applies another replica's notice to this replica's structures (never forwarded again).
fn apply(state: &AppState, me: ReplicaId, payload: &str) {
    let Ok(Envelope { from, notice }) = serde_json::from_str::<Envelope>(payload) else {
        tracing::warn!("an unreadable cluster notice was ignored");
        return;
    };
    if from == me {
        return;
    }
    let federation = &state.federation;
    federation.presence.replica_seen(from);
    match notice {
        Notice::Event { group, event } => {
            federation.events.deliver_event(group, event);
        }
        Notice::MemberLeft { group, member } => {
            federation.presence.forget(member);
            federation.events.deliver_member_left(group, member);
        }
        Notice::Deployments => state.registry.bump_local(),
        Notice::Stream { member, open } => federation.presence.remote_stream(from, member, open),
        Notice::Heartbeat {
            member,
            round,
            fraction,
        } => federation
            .presence
            .remote_heartbeat(member, round, fraction),
        Notice::JobDeleted { id } => state.jobs.cancel_local(id),
        Notice::Alive => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_oversized_ones_are_not_sent() {
        let notice = Notice::Event {
            group: 7,
            event: GroupEvent::RoundClosed {
                round: 2,
                version_id: 9,
            },
        };
        let payload = encode(42, notice.clone()).unwrap();
        let back: Envelope = serde_json::from_str(&payload).unwrap();
        assert_eq!(back.from, 42);
        assert_eq!(back.notice, notice);
        let huge = Notice::Event {
            group: 7,
            event: GroupEvent::RoundFailed {
                round: 2,
                reason: "x".repeat(MAX_PAYLOAD),
            },
        };
        assert!(encode(42, huge).is_none());
    }

    #[tokio::test]
    async fn an_unconnected_outbox_sends_nothing_and_a_full_one_never_blocks() {
        let outbox = Outbox::default();
        outbox.send(Notice::Alive);
        let (tx, mut rx) = mpsc::channel(1);
        outbox.connect(tx);
        outbox.send(Notice::Deployments);
        outbox.send(Notice::Alive);
        assert_eq!(rx.recv().await, Some(Notice::Deployments));
        assert!(rx.try_recv().is_err(), "the second notice was dropped");
    }
}
