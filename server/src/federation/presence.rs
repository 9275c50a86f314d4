//! Who is connected now (issue #21): a training client (the browser's training worker,
//! `b3o client`) follows its group's event stream with `?trainer=true` and, while it trains,
//! posts heartbeats with its progress (`POST .../rounds/{n}/progress`). A member whose last
//! trainer stream closed [`GRACE`] ago (its tab closed, its program stopped) is **gone**: it
//! is not selected again until it returns, and a round stops waiting for it
//! ([`super::rounds::check_round`]). A member never seen by this process (a client that only
//! polls) is **unseen** and treated as before: selected, waited for until the deadline.
//!
//! In memory only: after a restart every member is unseen until its client reconnects,
//! which the clients do at once (`EventSource` reconnects by itself). Replicas on one
//! Postgres tell each other about the streams they hold and the heartbeats they receive
//! (`crate::cluster`): a stream on another replica counts while that replica is alive.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use b3o_models::protocol::Presence;

use crate::cluster::{Notice, Outbox, REPLICA_TTL, ReplicaId};

/// How long a member stays connected after its last trainer stream closed: an
/// `EventSource` reconnects within a few seconds after a network blip or a server restart.
pub const GRACE: Duration = Duration::from_secs(8);
/// How long a heartbeat alone keeps a member connected.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(30);
/// The least time between two progress events of one member on the group's stream.
const PROGRESS_EVENT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Entry {
    /// Open trainer streams on this replica.
    streams: u32,
    /// Open trainer streams on other replicas, by replica.
    remote: HashMap<ReplicaId, u32>,
    /// When the last trainer stream closed (`None` while one is open or if none ever was).
    closed_at: Option<Instant>,
    had_stream: bool,
    last_heartbeat: Option<Instant>,
    /// (round, fraction) of the newest heartbeat.
    progress: Option<(i64, f64)>,
    last_progress_event: Option<Instant>,
}

impl Entry {
    fn presence(&self, now: Instant, replicas: &HashMap<ReplicaId, Instant>) -> Presence {
        let remote_open = self.remote.iter().any(|(r, &n)| {
            n > 0
                && replicas
                    .get(r)
                    .is_some_and(|&seen| now.duration_since(seen) < REPLICA_TTL)
        });
        if self.streams > 0
            || remote_open
            || self
                .last_heartbeat
                .is_some_and(|t| now.duration_since(t) < HEARTBEAT_TTL)
            || self
                .closed_at
                .is_some_and(|t| now.duration_since(t) < GRACE)
        {
            Presence::Connected
        } else if self.had_stream {
            Presence::Gone
        } else {
            Presence::Unseen
        }
    }
}

/// The members' presence, by member id (member ids are unique across groups).
#[derive(Debug, Default)]
pub struct PresenceMap {
    members: Mutex<HashMap<i64, Entry>>,
    /// When each other replica was last heard from (locked after `members`).
    replicas: Mutex<HashMap<ReplicaId, Instant>>,
    /// Other replicas' maps (`crate::cluster`).
    outbox: Outbox,
}

impl PresenceMap {
    /// Runs `f` on the member's entry with the replicas' liveness.
    fn with<R>(
        &self,
        member_id: i64,
        f: impl FnOnce(&mut Entry, &HashMap<ReplicaId, Instant>) -> R,
    ) -> R {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let replicas = self.replicas.lock().unwrap_or_else(|e| e.into_inner());
        f(members.entry(member_id).or_default(), &replicas)
    }

    /// A trainer stream of `member_id` opened. True when the member was not connected.
    pub fn stream_opened(&self, member_id: i64) -> bool {
        self.outbox.send(Notice::Stream {
            member: member_id,
            open: true,
        });
        let now = Instant::now();
        self.with(member_id, |e, replicas| {
            let was = e.presence(now, replicas);
            e.streams += 1;
            e.had_stream = true;
            e.closed_at = None;
            was != Presence::Connected
        })
    }

    /// A trainer stream of `member_id` closed.
    pub fn stream_closed(&self, member_id: i64) {
        self.outbox.send(Notice::Stream {
            member: member_id,
            open: false,
        });
        self.with(member_id, |e, _| {
            e.streams = e.streams.saturating_sub(1);
            e.note_if_closed();
        })
    }

    /// A trainer stream of `member_id` opened or closed on replica `replica`.
    pub(crate) fn remote_stream(&self, replica: ReplicaId, member_id: i64, open: bool) {
        self.with(member_id, |e, _| {
            let n = e.remote.entry(replica).or_default();
            if open {
                *n += 1;
                e.had_stream = true;
                e.closed_at = None;
            } else {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    e.remote.remove(&replica);
                }
                e.note_if_closed();
            }
        })
    }

    /// Replica `replica` was heard from now.
    pub(crate) fn replica_seen(&self, replica: ReplicaId) {
        let now = Instant::now();
        let mut replicas = self.replicas.lock().unwrap_or_else(|e| e.into_inner());
        replicas.insert(replica, now);
        // Forget replicas silent for long (a replica's identity never comes back).
        replicas.retain(|_, seen| now.duration_since(*seen) < REPLICA_TTL * 8);
    }

    /// A heartbeat of `member_id` training `round`, `fraction` done, received here: other
    /// replicas learn it. Returns (was not connected, whether to publish a progress event
    /// now).
    pub fn heartbeat(&self, member_id: i64, round: i64, fraction: f64) -> (bool, bool) {
        self.outbox.send(Notice::Heartbeat {
            member: member_id,
            round,
            fraction,
        });
        self.record_heartbeat(member_id, round, fraction)
    }

    /// A heartbeat another replica received.
    pub(crate) fn remote_heartbeat(&self, member_id: i64, round: i64, fraction: f64) {
        self.record_heartbeat(member_id, round, fraction);
    }

    fn record_heartbeat(&self, member_id: i64, round: i64, fraction: f64) -> (bool, bool) {
        let now = Instant::now();
        self.with(member_id, |e, replicas| {
            let was = e.presence(now, replicas);
            e.last_heartbeat = Some(now);
            e.progress = Some((round, fraction));
            let publish = e
                .last_progress_event
                .is_none_or(|t| now.duration_since(t) >= PROGRESS_EVENT_EVERY)
                || fraction >= 1.0;
            if publish {
                e.last_progress_event = Some(now);
            }
            (was != Presence::Connected, publish)
        })
    }

    pub fn presence(&self, member_id: i64) -> Presence {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let replicas = self.replicas.lock().unwrap_or_else(|e| e.into_inner());
        members
            .get(&member_id)
            .map_or(Presence::Unseen, |e| e.presence(Instant::now(), &replicas))
    }

    pub fn is_gone(&self, member_id: i64) -> bool {
        self.presence(member_id) == Presence::Gone
    }

    /// The member's training progress in `round`, from its newest heartbeat.
    pub fn progress(&self, member_id: i64, round: i64) -> Option<f64> {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members
            .get(&member_id)
            .and_then(|e| e.progress)
            .filter(|(r, _)| *r == round)
            .map(|(_, f)| f)
    }

    /// Forgets a member (it left or was removed); the other replicas forget it when they
    /// learn that it left (`EventHub::member_left`).
    pub fn forget(&self, member_id: i64) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.remove(&member_id);
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

impl Entry {
    /// Starts the grace when no stream of the member is open anywhere any more.
    fn note_if_closed(&mut self) {
        if self.streams == 0 && self.remote.is_empty() {
            self.closed_at = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_gone_only_after_its_trainer_stream_closed_and_the_grace_passed() {
        let map = PresenceMap::default();
        assert_eq!(map.presence(1), Presence::Unseen);
        assert!(map.stream_opened(1));
        assert!(!map.stream_opened(1), "a second stream changes nothing");
        map.stream_closed(1);
        assert_eq!(
            map.presence(1),
            Presence::Connected,
            "one stream is still open"
        );
        map.stream_closed(1);
        assert_eq!(map.presence(1), Presence::Connected, "within the grace");
        map.with(1, |e, _| e.closed_at = Some(Instant::now() - GRACE));
        assert_eq!(map.presence(1), Presence::Gone);
        assert!(map.is_gone(1));
        assert!(map.stream_opened(1), "it came back");
        assert_eq!(map.presence(1), Presence::Connected);
    }

    #[test]
    fn a_stream_on_another_live_replica_keeps_a_member_connected() {
        let map = PresenceMap::default();
        map.replica_seen(7);
        assert!(map.stream_opened(1));
        map.remote_stream(7, 1, true);
        map.stream_closed(1);
        map.with(1, |e, _| {
            assert_eq!(e.closed_at, None, "still open on replica 7")
        });
        assert_eq!(map.presence(1), Presence::Connected);
        // Replica 7 falls silent: its stream no longer counts.
        map.replicas
            .lock()
            .unwrap()
            .insert(7, Instant::now() - REPLICA_TTL);
        assert_eq!(map.presence(1), Presence::Gone);
        map.replica_seen(7);
        assert_eq!(map.presence(1), Presence::Connected);
        // Its stream closes there: the grace starts, then the member is gone.
        map.remote_stream(7, 1, false);
        assert_eq!(map.presence(1), Presence::Connected, "within the grace");
        map.with(1, |e, _| e.closed_at = Some(Instant::now() - GRACE));
        assert!(map.is_gone(1));
        // A member first seen on another replica is connected here too.
        map.remote_stream(7, 2, true);
        assert_eq!(map.presence(2), Presence::Connected);
        // Another replica's heartbeat counts like one received here.
        map.remote_heartbeat(3, 1, 0.5);
        assert_eq!(map.presence(3), Presence::Connected);
        assert_eq!(map.progress(3, 1), Some(0.5));
    }

    #[test]
    fn heartbeats_alone_never_make_a_member_gone() {
        let map = PresenceMap::default();
        let (was_away, publish) = map.heartbeat(2, 3, 0.25);
        assert!(was_away && publish);
        assert_eq!(map.presence(2), Presence::Connected);
        assert_eq!(map.progress(2, 3), Some(0.25));
        assert_eq!(map.progress(2, 4), None, "another round");
        let (_, publish) = map.heartbeat(2, 3, 0.5);
        assert!(!publish, "progress events are rate limited");
        assert!(
            map.heartbeat(2, 3, 1.0).1,
            "the end of training is always published"
        );
        map.with(2, |e, _| {
            e.last_heartbeat = Some(Instant::now() - HEARTBEAT_TTL)
        });
        assert_eq!(map.presence(2), Presence::Unseen);
        map.forget(2);
        assert_eq!(map.progress(2, 3), None);
    }
}
