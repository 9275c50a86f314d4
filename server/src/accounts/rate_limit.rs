//! Login and registration rate limits, in a sliding window per account and per client address.
//!
//! In memory, per process: a restart forgets the counts, and several server processes would
//! each count on their own. That is enough for one `b3o serve` per database (the deployment
//! we support); a shared store would be needed to run several behind a load balancer.
//!
//! The account limit stops guessing one person's password from many addresses; the address
//! limit (higher, since offices share one) stops spraying one password over many accounts. A
//! locked account stays locked even for the right password until the window passes, which lets
//! a stranger lock someone out for [`LoginLimits::window`]: the usual trade-off, accepted.
//! IPv6 clients are counted per /64, since one host can hold a whole /64.
//!
//! **Check and reserve are one step.** Verifying a password takes tens of milliseconds of
//! argon2, so "check, verify, then record the failure" let a burst of parallel guesses all pass
//! the check before the first failure was recorded (issue #19: 20 parallel wrong passwords, 20
//! answers 401). [`LoginLimiter::begin`] therefore counts the attempts still being verified
//! against the limit and reserves a slot under the same lock; the returned [`LoginAttempt`]
//! turns the slot into a failure, clears it on success, or releases it when dropped (a request
//! cancelled before its answer learns nothing). Registrations work the same way
//! ([`RegistrationLimiter`]): a slot is reserved before the password is hashed.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures per account within `window` before it is locked.
    pub per_account: u32,
    /// Failures per client address within `window` before it is refused.
    pub per_ip: u32,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_account: 5,
            per_ip: 50,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// Above this many keys, entries with nothing counted and nothing in flight are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// What a refused caller is told to wait when only attempts still in flight fill its window:
/// they resolve within about a second (one argon2 verification, queued behind a few others).
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(1);

/// One key's sliding window.
#[derive(Debug, Default)]
struct Window {
    /// When each counted event (failure, registration) happened, oldest first; at most the
    /// key's limit of them, since older ones cannot matter.
    times: VecDeque<Instant>,
    /// Reserved attempts not yet resolved.
    in_flight: u32,
}

impl Window {
    fn expire(&mut self, now: Instant, window: Duration) {
        while self
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.times.pop_front();
        }
    }

    /// `Some(wait)` when the counted events and the attempts in flight fill `limit`.
    fn refusal(&self, limit: u32, now: Instant, window: Duration) -> Option<Duration> {
        let used = self.times.len().saturating_add(self.in_flight as usize);
        let excess = used.checked_sub(limit as usize)?;
        // A slot frees when the `excess + 1` oldest counted events have left the window; if
        // in-flight attempts are what fills it, they resolve shortly.
        Some(match self.times.get(excess) {
            Some(t) => (*t + window)
                .saturating_duration_since(now)
                .max(Duration::from_secs(1)),
            None => IN_FLIGHT_WAIT,
        })
    }

    fn is_empty(&self) -> bool {
        self.times.is_empty() && self.in_flight == 0
    }
}

/// Sliding windows per key, with reservations (the shared core of both limiters).
#[derive(Debug)]
struct Windows<K> {
    window: Duration,
    map: Mutex<HashMap<K, Window>>,
}

impl<K: Eq + Hash + Clone> Windows<K> {
    fn new(window: Duration) -> Self {
        Windows {
            window,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Window>> {
        // A panic elsewhere while holding the lock leaves plain counters: still usable.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves one slot under every key, or none when any key is full: `Err(wait)` with the
    /// longest wait among the full keys.
    fn reserve(&self, keys: &[(K, u32)], now: Instant) -> Result<(), Duration> {
        let mut map = self.lock();
        if map.len() > PRUNE_ABOVE {
            let window = self.window;
            map.retain(|_, w| {
                w.expire(now, window);
                !w.is_empty()
            });
        }
        let mut refused: Option<Duration> = None;
        for (key, limit) in keys {
            if let Some(w) = map.get_mut(key) {
                w.expire(now, self.window);
                if let Some(wait) = w.refusal(*limit, now, self.window) {
                    refused = Some(refused.map_or(wait, |r| r.max(wait)));
                }
            }
        }
        if let Some(wait) = refused {
            return Err(wait);
        }
        for (key, _) in keys {
            let w = map.entry(key.clone()).or_default();
            w.in_flight = w.in_flight.saturating_add(1);
        }
        Ok(())
    }

    /// Ends a reservation of `keys`: counts it as an event at `counted` if given.
    fn resolve(&self, keys: &[(K, u32)], counted: Option<Instant>) {
        let mut map = self.lock();
        for (key, limit) in keys {
            let Some(w) = map.get_mut(key) else { continue };
            w.in_flight = w.in_flight.saturating_sub(1);
            if let Some(at) = counted {
                w.expire(at, self.window);
                w.times.push_back(at);
                while w.times.len() > *limit as usize {
                    w.times.pop_front();
                }
            }
            if w.is_empty() {
                map.remove(key);
            }
        }
    }

    /// Forgets the counted events of `key` (its reservations in flight stay).
    fn clear(&self, key: &K) {
        let mut map = self.lock();
        if let Some(w) = map.get_mut(key) {
            w.times.clear();
            if w.is_empty() {
                map.remove(key);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Ip(IpAddr),
}

/// Failed sign-ins (and wrong current passwords) per account and per client address.
#[derive(Debug)]
pub struct LoginLimiter {
    limits: LoginLimits,
    windows: Windows<Key>,
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        LoginLimiter {
            limits,
            windows: Windows::new(limits.window),
        }
    }

    pub fn limits(&self) -> LoginLimits {
        self.limits
    }

    /// Reserves a slot for one password check of `account` from `ip`, before the (slow)
    /// verification: `Err(retry_after)` while the account or the address has used up its
    /// failures, counting the checks still in flight as failures to come.
    pub fn begin(&self, account: &str, ip: Option<IpAddr>) -> Result<LoginAttempt<'_>, Duration> {
        self.begin_at(account, ip, Instant::now())
    }

    pub fn begin_at(
        &self,
        account: &str,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<LoginAttempt<'_>, Duration> {
        let mut keys = vec![(Key::Account(account.to_string()), self.limits.per_account)];
        if let Some(ip) = ip {
            keys.push((Key::Ip(bucket(ip)), self.limits.per_ip));
        }
        self.windows.reserve(&keys, now)?;
        Ok(LoginAttempt {
            limiter: self,
            keys,
            resolved: false,
        })
    }
}

/// A reserved password check (see [`LoginLimiter::begin`]). Dropped without
/// [`failed`](Self::failed) or [`succeeded`](Self::succeeded) (an error, a cancelled request),
/// it gives its slot back.
#[derive(Debug)]
#[must_use = "an attempt must be resolved as failed or succeeded"]
pub struct LoginAttempt<'a> {
    limiter: &'a LoginLimiter,
    keys: Vec<(Key, u32)>,
    resolved: bool,
}

impl LoginAttempt<'_> {
    /// The password was wrong: the slot becomes a failure in the window.
    pub fn failed(self) {
        self.failed_at(Instant::now());
    }

    pub fn failed_at(mut self, now: Instant) {
        self.limiter.windows.resolve(&self.keys, Some(now));
        self.resolved = true;
    }

    /// The password was right: clears the account's failures (not the address's: otherwise an
    /// attacker could reset its address count by signing in to its own account now and then).
    pub fn succeeded(mut self) {
        self.limiter.windows.resolve(&self.keys, None);
        if let Some((account, _)) = self.keys.first() {
            self.limiter.windows.clear(account);
        }
        self.resolved = true;
    }
}

impl Drop for LoginAttempt<'_> {
    fn drop(&mut self) {
        if !self.resolved {
            self.limiter.windows.resolve(&self.keys, None);
        }
    }
}

/// Account registrations per client address per hour (`--max-registrations-per-hour`).
/// Requests without a known address (in-process tests) and a limit of 0 are not limited.
#[derive(Debug)]
pub struct RegistrationLimiter {
    windows: Windows<IpAddr>,
}

impl Default for RegistrationLimiter {
    fn default() -> Self {
        RegistrationLimiter::new(Duration::from_secs(3600))
    }
}

impl RegistrationLimiter {
    pub fn new(window: Duration) -> Self {
        RegistrationLimiter {
            windows: Windows::new(window),
        }
    }

    /// Reserves a registration from `ip` before its password is hashed: `Err(retry_after)`
    /// when `per_window` registrations (completed or in flight) already came from there.
    pub fn begin(
        &self,
        ip: Option<IpAddr>,
        per_window: u32,
    ) -> Result<RegistrationSlot<'_>, Duration> {
        self.begin_at(ip, per_window, Instant::now())
    }

    pub fn begin_at(
        &self,
        ip: Option<IpAddr>,
        per_window: u32,
        now: Instant,
    ) -> Result<RegistrationSlot<'_>, Duration> {
        let key = ip
            .filter(|_| per_window > 0)
            .map(|ip| (bucket(ip), per_window));
        if let Some(key) = &key {
            self.windows.reserve(std::slice::from_ref(key), now)?;
        }
        Ok(RegistrationSlot { limiter: self, key })
    }
}

/// A reserved registration; [`completed`](Self::completed) counts it, dropping it gives the
/// slot back (the email was taken, the database failed).
#[derive(Debug)]
#[must_use = "a registration slot must be completed or dropped"]
pub struct RegistrationSlot<'a> {
    limiter: &'a RegistrationLimiter,
    key: Option<(IpAddr, u32)>,
}

impl RegistrationSlot<'_> {
    /// The account was created: the registration counts for the next hour.
    pub fn completed(self) {
        self.completed_at(Instant::now());
    }

    pub fn completed_at(mut self, now: Instant) {
        if let Some(key) = self.key.take() {
            self.limiter
                .windows
                .resolve(std::slice::from_ref(&key), Some(now));
        }
    }
}

impl Drop for RegistrationSlot<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.limiter
                .windows
                .resolve(std::slice::from_ref(&key), None);
        }
    }
}

/// IPv4 addresses as they are; IPv6 by /64 (IPv4-mapped ones as IPv4).
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> LoginLimiter {
        LoginLimiter::new(LoginLimits {
            per_account: 5,
            per_ip: 8,
            window: Duration::from_secs(900),
        })
    }

    #[test]
    fn five_failures_lock_the_account_until_the_window_passes() {
        let l = limiter();
        let t0 = Instant::now();
        for i in 0..5 {
            let attempt = l
                .begin_at("ada", None, t0)
                .unwrap_or_else(|_| panic!("{i}"));
            attempt.failed_at(t0 + Duration::from_secs(i));
        }
        let wait = l
            .begin_at("ada", None, t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(890));
        assert!(
            l.begin_at("bob", None, t0).is_ok(),
            "other accounts unaffected"
        );
        assert!(
            l.begin_at("ada", None, t0 + Duration::from_secs(900))
                .is_ok()
        );
    }

    #[test]
    fn attempts_in_flight_count_against_the_limit() {
        let l = limiter();
        let t0 = Instant::now();
        let held: Vec<_> = (0..5)
            .map(|_| l.begin_at("ada", None, t0).unwrap())
            .collect();
        assert_eq!(l.begin_at("ada", None, t0).unwrap_err(), IN_FLIGHT_WAIT);
        // Given back (an error, a cancelled request): the slots are free again.
        drop(held);
        let held: Vec<_> = (0..5)
            .map(|_| l.begin_at("ada", None, t0).unwrap())
            .collect();
        for attempt in held {
            attempt.failed_at(t0);
        }
        let wait = l.begin_at("ada", None, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(900));
    }

    #[test]
    fn success_clears_the_account_count() {
        let l = limiter();
        let t0 = Instant::now();
        for _ in 0..4 {
            l.begin_at("ada", None, t0).unwrap().failed_at(t0);
        }
        l.begin_at("ada", None, t0).unwrap().succeeded();
        l.begin_at("ada", None, t0).unwrap().failed_at(t0);
        assert!(l.begin_at("ada", None, t0).is_ok());
    }

    #[test]
    fn an_address_spraying_many_accounts_is_refused() {
        let l = limiter();
        let t0 = Instant::now();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for i in 0..8 {
            l.begin_at(&format!("user{i}"), Some(ip), t0)
                .unwrap()
                .failed_at(t0);
        }
        assert!(l.begin_at("fresh", Some(ip), t0).is_err());
        assert!(
            l.begin_at("fresh", Some("203.0.113.8".parse().unwrap()), t0)
                .is_ok()
        );
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let l = limiter();
        let t0 = Instant::now();
        for i in 0..8 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            l.begin_at(&format!("user{i}"), Some(ip), t0)
                .unwrap()
                .failed_at(t0);
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.begin_at("fresh", Some(same_64), t0).is_err());
        assert!(l.begin_at("fresh", Some(other_64), t0).is_ok());
    }

    #[test]
    fn registrations_are_counted_per_address_and_freed_when_abandoned() {
        let r = RegistrationLimiter::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        let ip: IpAddr = "198.51.100.4".parse().unwrap();
        r.begin_at(Some(ip), 2, t0).unwrap().completed_at(t0);
        // Abandoned (the email was taken): not counted.
        drop(r.begin_at(Some(ip), 2, t0).unwrap());
        let pending = r.begin_at(Some(ip), 2, t0).unwrap();
        assert!(r.begin_at(Some(ip), 2, t0).is_err(), "in flight counts");
        pending.completed_at(t0);
        let wait = r
            .begin_at(Some(ip), 2, t0 + Duration::from_secs(600))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(3000));
        assert!(
            r.begin_at(Some("198.51.100.5".parse().unwrap()), 2, t0)
                .is_ok()
        );
        assert!(r.begin_at(None, 2, t0).is_ok(), "unknown address");
        assert!(r.begin_at(Some(ip), 0, t0).is_ok(), "0 turns the limit off");
    }
}
