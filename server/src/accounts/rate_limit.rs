//! Login rate limits: failed sign-ins per account and per client address in a sliding window.
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

use std::collections::{HashMap, VecDeque};
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

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Ip(IpAddr),
}

/// Above this many keys, entries without a recent failure are dropped.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug)]
pub struct LoginLimiter {
    limits: LoginLimits,
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        LoginLimiter {
            limits,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` while the account or the address has used up its failures.
    pub fn check(&self, account: &str, ip: Option<IpAddr>) -> Result<(), Duration> {
        self.check_at(account, ip, Instant::now())
    }

    pub fn record_failure(&self, account: &str, ip: Option<IpAddr>) {
        self.record_failure_at(account, ip, Instant::now());
    }

    /// A successful sign-in clears the account's failures (not the address's: otherwise an
    /// attacker could reset its address count by signing in to its own account now and then).
    pub fn record_success(&self, account: &str) {
        self.lock().remove(&Key::Account(account.to_string()));
    }

    pub fn check_at(
        &self,
        account: &str,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut map = self.lock();
        let mut wait = Duration::ZERO;
        let mut keys = vec![(Key::Account(account.to_string()), self.limits.per_account)];
        if let Some(ip) = ip {
            keys.push((Key::Ip(bucket(ip)), self.limits.per_ip));
        }
        for (key, limit) in keys {
            if let Some(times) = map.get_mut(&key) {
                expire(times, now, self.limits.window);
                if times.len() >= limit as usize
                    && let Some(oldest) = times.front()
                {
                    wait = wait.max((*oldest + self.limits.window).saturating_duration_since(now));
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    pub fn record_failure_at(&self, account: &str, ip: Option<IpAddr>, now: Instant) {
        let mut map = self.lock();
        if map.len() > PRUNE_ABOVE {
            let window = self.limits.window;
            map.retain(|_, times| {
                expire(times, now, window);
                !times.is_empty()
            });
        }
        let mut keys = vec![Key::Account(account.to_string())];
        if let Some(ip) = ip {
            keys.push(Key::Ip(bucket(ip)));
        }
        for key in keys {
            let times = map.entry(key).or_default();
            expire(times, now, self.limits.window);
            times.push_back(now);
            // Only the newest `limit` failures matter; keep memory per key bounded.
            while times.len() > self.limits.per_ip.max(self.limits.per_account) as usize {
                times.pop_front();
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, VecDeque<Instant>>> {
        // A panic elsewhere while holding the lock leaves plain counters: still usable.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn expire(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        times.pop_front();
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
            assert!(l.check_at("ada", None, t0).is_ok(), "attempt {i}");
            l.record_failure_at("ada", None, t0 + Duration::from_secs(i));
        }
        let wait = l
            .check_at("ada", None, t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(890));
        assert!(
            l.check_at("bob", None, t0).is_ok(),
            "other accounts unaffected"
        );
        assert!(
            l.check_at("ada", None, t0 + Duration::from_secs(900))
                .is_ok()
        );
    }

    #[test]
    fn success_clears_the_account_count() {
        let l = limiter();
        let t0 = Instant::now();
        for _ in 0..4 {
            l.record_failure_at("ada", None, t0);
        }
        l.record_success("ada");
        l.record_failure_at("ada", None, t0);
        assert!(l.check_at("ada", None, t0).is_ok());
    }

    #[test]
    fn an_address_spraying_many_accounts_is_refused() {
        let l = limiter();
        let t0 = Instant::now();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for i in 0..8 {
            l.record_failure_at(&format!("user{i}"), Some(ip), t0);
        }
        assert!(l.check_at("fresh", Some(ip), t0).is_err());
        assert!(
            l.check_at("fresh", Some("203.0.113.8".parse().unwrap()), t0)
                .is_ok()
        );
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let l = limiter();
        let t0 = Instant::now();
        for i in 0..8 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            l.record_failure_at(&format!("user{i}"), Some(ip), t0);
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.check_at("fresh", Some(same_64), t0).is_err());
        assert!(l.check_at("fresh", Some(other_64), t0).is_ok());
    }
}
