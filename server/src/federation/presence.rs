//! Who is connected now (issue #21): a training client (the browser's training worker,
//! `b3o client`) follows its group's event stream with `?trainer=true` and, while it trains,
//! posts heartbeats with its progress (`POST .../rounds/{n}/progress`). A member whose last
//! trainer stream closed [`GRACE`] ago (its tab closed, its program stopped) is **gone**: it
//! is not selected again until it returns, and a round stops waiting for it
//! ([`super::rounds::check_round`]). A member never seen by this process (a client that only
//! polls) is **unseen** and treated as before: selected, waited for until the deadline.
//!
//! In memory only: after a restart every member is unseen until its client reconnects,
//! which the clients do at once (`EventSource` reconnects by itself).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use b3o_models::protocol::Presence;

/// How long a member stays connected after its last trainer stream closed: an
/// `EventSource` reconnects within a few seconds after a network blip or a server restart.
pub const GRACE: Duration = Duration::from_secs(8);
/// How long a heartbeat alone keeps a member connected.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(30);
/// The least time between two progress events of one member on the group's stream.
const PROGRESS_EVENT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Entry {
    /// Open trainer streams.
    streams: u32,
    /// When the last trainer stream closed (`None` while one is open or if none ever was).
    closed_at: Option<Instant>,
    had_stream: bool,
    last_heartbeat: Option<Instant>,
    /// (round, fraction) of the newest heartbeat.
    progress: Option<(i64, f64)>,
    last_progress_event: Option<Instant>,
}

impl Entry {
    fn presence(&self, now: Instant) -> Presence {
        if self.streams > 0
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
}

impl PresenceMap {
    fn with<R>(&self, member_id: i64, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        f(members.entry(member_id).or_default())
    }

    /// A trainer stream of `member_id` opened. True when the member was not connected.
    pub fn stream_opened(&self, member_id: i64) -> bool {
        let now = Instant::now();
        self.with(member_id, |e| {
            let was = e.presence(now);
            e.streams += 1;
            e.had_stream = true;
            e.closed_at = None;
            was != Presence::Connected
        })
    }

    /// A trainer stream of `member_id` closed.
    pub fn stream_closed(&self, member_id: i64) {
        self.with(member_id, |e| {
            e.streams = e.streams.saturating_sub(1);
            if e.streams == 0 {
                e.closed_at = Some(Instant::now());
            }
        })
    }

    /// A heartbeat of `member_id` training `round`, `fraction` done. Returns (was not
    /// connected, whether to publish a progress event now).
    pub fn heartbeat(&self, member_id: i64, round: i64, fraction: f64) -> (bool, bool) {
        let now = Instant::now();
        self.with(member_id, |e| {
            let was = e.presence(now);
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
        members
            .get(&member_id)
            .map_or(Presence::Unseen, |e| e.presence(Instant::now()))
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

    /// Forgets a member (it left or was removed).
    pub fn forget(&self, member_id: i64) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.remove(&member_id);
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
        map.with(1, |e| e.closed_at = Some(Instant::now() - GRACE));
        assert_eq!(map.presence(1), Presence::Gone);
        assert!(map.is_gone(1));
        assert!(map.stream_opened(1), "it came back");
        assert_eq!(map.presence(1), Presence::Connected);
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
        map.with(2, |e| {
            e.last_heartbeat = Some(Instant::now() - HEARTBEAT_TTL)
        });
        assert_eq!(map.presence(2), Presence::Unseen);
        map.forget(2);
        assert_eq!(map.progress(2, 3), None);
    }
}
