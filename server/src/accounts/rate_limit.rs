//! Login, join-code and registration rate limits, in a sliding window per account and per
//! client address, kept in the database so that every replica counts the same attempts.
//!
//! Each counted event (a failed sign-in, a wrong join code, a registration) is a row of
//! `rate_limit_events`; so is each attempt still being checked. A restart forgets nothing, and
//! replicas behind one load balancer share one count (issue #15): three replicas do not allow
//! three times the attempts.
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
//! against the limit and reserves a slot (a `pending` row) in one transaction, serialised with
//! every other reservation on the database (on Postgres an advisory lock of its own, so that
//! sign-ins never wait for round commits); the returned [`LoginAttempt`] turns the slot into a
//! failure, clears it on success, or gives it back ([`LoginAttempt::release`], or when
//! dropped: a request cancelled before its answer learns nothing). A slot whose replica died
//! stops counting after [`PENDING_TTL_MS`]. Registrations work the same way
//! ([`RegistrationLimiter`]): a slot is reserved before the password is hashed.
//!
//! Rows per key are bounded by its limit (a reservation past it is refused, not stored), and
//! rows older than their window are deleted as reservations arrive.

use std::net::IpAddr;
use std::time::Duration;

use crate::db::Db;

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

/// What a refused caller is told to wait when only attempts still in flight fill its window:
/// they resolve within about a second (one argon2 verification, queued behind a few others).
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(1);

/// How long a reserved attempt counts without being resolved: long past any verification, so
/// only the slots of a replica that died mid-check expire this way.
pub const PENDING_TTL_MS: i64 = 60_000;

/// The advisory lock (Postgres) that serialises reservations: "b3or" in ASCII.
const RATE_LOCK: i64 = 0x6233_6f72;

/// Why an attempt was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The window is full: try again after this long.
    #[error("rate limited: try again in {0:?}")]
    Refused(Duration),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl LimitError {
    /// The refusal as the caller words it; a database failure as such.
    pub fn into_api(
        self,
        refused: impl FnOnce(Duration) -> crate::error::ApiError,
    ) -> crate::error::ApiError {
        match self {
            LimitError::Refused(wait) => refused(wait),
            LimitError::Db(e) => e.into(),
        }
    }
}

/// Milliseconds since the Unix epoch: the clock every replica shares (near enough).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One key's window as read from its rows.
#[derive(Debug, Default)]
struct Window {
    /// When each counted event happened (ms), oldest first, within the window.
    times: Vec<i64>,
    /// Reserved attempts not yet resolved (and not expired).
    in_flight: usize,
}

impl Window {
    /// `Some(wait)` when the counted events and the attempts in flight fill `limit`.
    fn refusal(&self, limit: u32, now: i64, window: i64) -> Option<Duration> {
        let used = self.times.len().saturating_add(self.in_flight);
        let excess = used.checked_sub(limit as usize)?;
        // A slot frees when the `excess + 1` oldest counted events have left the window; if
        // in-flight attempts are what fills it, they resolve shortly.
        Some(match self.times.get(excess) {
            Some(t) => {
                let left = t.saturating_add(window).saturating_sub(now).max(1000);
                Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX))
            }
            None => IN_FLIGHT_WAIT,
        })
    }
}

/// Sliding windows of one limiter (`scope`), with reservations: the shared core of the
/// limiters below.
#[derive(Debug, Clone)]
struct Windows {
    scope: &'static str,
    window: i64,
}

/// Reserved slots (row ids) of one attempt.
#[derive(Debug)]
struct Slots {
    db: Db,
    ids: Vec<i64>,
}

impl Windows {
    fn new(scope: &'static str, window: Duration) -> Self {
        Windows {
            scope,
            window: millis(window),
        }
    }

    /// Reserves one slot under every key, or none when any key is full: `Refused(wait)` with
    /// the longest wait among the full keys.
    async fn reserve(
        &self,
        db: &Db,
        keys: &[(String, u32)],
        now: i64,
    ) -> Result<Slots, LimitError> {
        let mut tx = crate::db::begin_exclusive(db, RATE_LOCK).await?;
        sqlx::query("DELETE FROM rate_limit_events WHERE scope = $1 AND at_ms < $2")
            .bind(self.scope)
            .bind(now.saturating_sub(self.window.max(PENDING_TTL_MS)))
            .execute(&mut *tx)
            .await?;
        let mut refused: Option<Duration> = None;
        for (key, limit) in keys {
            let rows: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT at_ms, pending FROM rate_limit_events WHERE scope = $1 AND bucket = $2
                 ORDER BY at_ms",
            )
            .bind(self.scope)
            .bind(key)
            .fetch_all(&mut *tx)
            .await?;
            let mut w = Window::default();
            for (at, pending) in rows {
                if pending != 0 {
                    w.in_flight += usize::from(now.saturating_sub(at) < PENDING_TTL_MS);
                } else if now.saturating_sub(at) < self.window {
                    w.times.push(at);
                }
            }
            if let Some(wait) = w.refusal(*limit, now, self.window) {
                refused = Some(refused.map_or(wait, |r| r.max(wait)));
            }
        }
        if let Some(wait) = refused {
            tx.rollback().await?;
            return Err(LimitError::Refused(wait));
        }
        let mut ids = Vec::with_capacity(keys.len());
        for (key, _) in keys {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO rate_limit_events (scope, bucket, at_ms, pending)
                 VALUES ($1, $2, $3, 1) RETURNING id",
            )
            .bind(self.scope)
            .bind(key)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(Slots {
            db: db.clone(),
            ids,
        })
    }
}

impl Slots {
    /// Counts the reserved slots as events at `at`.
    async fn count(&mut self, at: i64) {
        for id in std::mem::take(&mut self.ids) {
            let done =
                sqlx::query("UPDATE rate_limit_events SET pending = 0, at_ms = $1 WHERE id = $2")
                    .bind(at)
                    .bind(id)
                    .execute(&self.db)
                    .await;
            if let Err(e) = done {
                tracing::warn!(error = %e, "could not count a rate-limited attempt");
            }
        }
    }

    /// Gives the reserved slots back.
    async fn release(&mut self) {
        for id in std::mem::take(&mut self.ids) {
            if let Err(e) = delete(&self.db, id).await {
                tracing::warn!(error = %e, "could not free a rate-limit slot (it expires)");
            }
        }
    }
}

async fn delete(db: &Db, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM rate_limit_events WHERE id = $1 AND pending = 1")
        .bind(id)
        .execute(db)
        .await
        .map(drop)
}

impl Drop for Slots {
    /// Slots neither counted nor released (a request cancelled mid-check) are given back in
    /// the background; without a runtime they expire after [`PENDING_TTL_MS`].
    fn drop(&mut self) {
        let ids = std::mem::take(&mut self.ids);
        if ids.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let db = self.db.clone();
            rt.spawn(async move {
                for id in ids {
                    let _ = delete(&db, id).await;
                }
            });
        }
    }
}

/// Failed sign-ins (and wrong current passwords) per account and per client address.
#[derive(Debug)]
pub struct LoginLimiter {
    limits: LoginLimits,
    windows: Windows,
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        Self::scoped("login", limits)
    }

    /// A limiter whose counts are kept apart from other limiters' under `scope`.
    pub fn scoped(scope: &'static str, limits: LoginLimits) -> Self {
        LoginLimiter {
            limits,
            windows: Windows::new(scope, limits.window),
        }
    }

    pub fn limits(&self) -> LoginLimits {
        self.limits
    }

    /// Reserves a slot for one password check of `account` from `ip`, before the (slow)
    /// verification: `Refused(retry_after)` while the account or the address has used up its
    /// failures, counting the checks still in flight (on any replica) as failures to come.
    pub async fn begin(
        &self,
        db: &Db,
        account: &str,
        ip: Option<IpAddr>,
    ) -> Result<LoginAttempt, LimitError> {
        self.begin_at(db, account, ip, now_ms()).await
    }

    async fn begin_at(
        &self,
        db: &Db,
        account: &str,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<LoginAttempt, LimitError> {
        let mut keys = vec![(format!("account:{account}"), self.limits.per_account)];
        if let Some(ip) = ip {
            keys.push((format!("ip:{}", bucket(ip)), self.limits.per_ip));
        }
        let slots = self.windows.reserve(db, &keys, now).await?;
        Ok(LoginAttempt {
            windows: self.windows.clone(),
            account: keys.swap_remove(0).0,
            slots,
        })
    }
}

/// A reserved password check (see [`LoginLimiter::begin`]). Dropped without
/// [`failed`](Self::failed) or [`succeeded`](Self::succeeded) (an error, a cancelled request),
/// it gives its slot back.
#[derive(Debug)]
#[must_use = "an attempt must be resolved as failed or succeeded"]
pub struct LoginAttempt {
    windows: Windows,
    account: String,
    slots: Slots,
}

impl LoginAttempt {
    /// The password was wrong: the slot becomes a failure in the window.
    pub async fn failed(self) {
        self.failed_at(now_ms()).await;
    }

    async fn failed_at(mut self, now: i64) {
        self.slots.count(now).await;
    }

    /// The password was right: clears the account's failures (not the address's: otherwise an
    /// attacker could reset its address count by signing in to its own account now and then).
    pub async fn succeeded(mut self) {
        self.slots.release().await;
        let cleared = sqlx::query(
            "DELETE FROM rate_limit_events WHERE scope = $1 AND bucket = $2 AND pending = 0",
        )
        .bind(self.windows.scope)
        .bind(&self.account)
        .execute(&self.slots.db)
        .await;
        if let Err(e) = cleared {
            tracing::warn!(error = %e, "could not clear an account's failed sign-ins");
        }
    }

    /// Neither: the check did not happen (a right join code; an error). Counts nothing.
    pub async fn release(mut self) {
        self.slots.release().await;
    }
}

/// Account registrations per client address per hour (`--max-registrations-per-hour`).
/// Requests without a known address (in-process tests) and a limit of 0 are not limited.
#[derive(Debug)]
pub struct RegistrationLimiter {
    windows: Windows,
}

impl Default for RegistrationLimiter {
    fn default() -> Self {
        RegistrationLimiter::new(Duration::from_secs(3600))
    }
}

impl RegistrationLimiter {
    pub fn new(window: Duration) -> Self {
        RegistrationLimiter {
            windows: Windows::new("registration", window),
        }
    }

    /// Reserves a registration from `ip` before its password is hashed: `Refused(retry_after)`
    /// when `per_window` registrations (completed or in flight) already came from there.
    pub async fn begin(
        &self,
        db: &Db,
        ip: Option<IpAddr>,
        per_window: u32,
    ) -> Result<RegistrationSlot, LimitError> {
        self.begin_at(db, ip, per_window, now_ms()).await
    }

    async fn begin_at(
        &self,
        db: &Db,
        ip: Option<IpAddr>,
        per_window: u32,
        now: i64,
    ) -> Result<RegistrationSlot, LimitError> {
        let slots = match ip.filter(|_| per_window > 0) {
            Some(ip) => Some(
                self.windows
                    .reserve(db, &[(format!("ip:{}", bucket(ip)), per_window)], now)
                    .await?,
            ),
            None => None,
        };
        Ok(RegistrationSlot { slots })
    }
}

/// A reserved registration; [`completed`](Self::completed) counts it, dropping it gives the
/// slot back (the email was taken, the database failed).
#[derive(Debug)]
#[must_use = "a registration slot must be completed or dropped"]
pub struct RegistrationSlot {
    slots: Option<Slots>,
}

impl RegistrationSlot {
    /// The account was created: the registration counts for the next hour.
    pub async fn completed(self) {
        self.completed_at(now_ms()).await;
    }

    async fn completed_at(mut self, now: i64) {
        if let Some(mut slots) = self.slots.take() {
            slots.count(now).await;
        }
    }

    /// Not completed: gives the slot back at once.
    pub async fn release(mut self) {
        if let Some(mut slots) = self.slots.take() {
            slots.release().await;
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

    const S: i64 = 1000;

    async fn db() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        (crate::db::connect(&url).await.unwrap(), dir)
    }

    fn limiter() -> LoginLimiter {
        LoginLimiter::new(LoginLimits {
            per_account: 5,
            per_ip: 8,
            window: Duration::from_secs(900),
        })
    }

    fn wait(e: LimitError) -> Duration {
        match e {
            LimitError::Refused(wait) => wait,
            LimitError::Db(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn five_failures_lock_the_account_until_the_window_passes() {
        let (db, _dir) = db().await;
        let l = limiter();
        let t0 = 1_700_000_000_000;
        for i in 0..5 {
            let attempt = l.begin_at(&db, "ada", None, t0).await.unwrap();
            attempt.failed_at(t0 + i * S).await;
        }
        let refused = l.begin_at(&db, "ada", None, t0 + 10 * S).await.unwrap_err();
        assert_eq!(wait(refused), Duration::from_secs(890));
        let bob = l.begin_at(&db, "bob", None, t0).await;
        assert!(bob.is_ok(), "other accounts unaffected");
        assert!(l.begin_at(&db, "ada", None, t0 + 900 * S).await.is_ok());
    }

    #[tokio::test]
    async fn attempts_in_flight_count_against_the_limit_until_given_back_or_expired() {
        let (db, _dir) = db().await;
        let l = limiter();
        let t0 = 1_700_000_000_000;
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(l.begin_at(&db, "ada", None, t0).await.unwrap());
        }
        let refused = l.begin_at(&db, "ada", None, t0).await.unwrap_err();
        assert_eq!(wait(refused), IN_FLIGHT_WAIT);
        // Given back (an error): the slots are free again.
        for attempt in held {
            attempt.release().await;
        }
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(l.begin_at(&db, "ada", None, t0).await.unwrap());
        }
        // Dropped (a cancelled request): given back in the background.
        drop(held);
        let mut freed = false;
        for _ in 0..100 {
            if l.begin_at(&db, "ada", None, t0).await.is_ok() {
                freed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(freed, "dropped attempts were never given back");
        // Slots of a replica that died mid-check stop counting after the TTL (another
        // account: ada's dropped slots may still be on their way out).
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(l.begin_at(&db, "cat", None, t0).await.unwrap());
        }
        std::mem::forget(held);
        assert!(l.begin_at(&db, "cat", None, t0).await.is_err());
        assert!(
            l.begin_at(&db, "cat", None, t0 + PENDING_TTL_MS)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn failures_fill_the_window() {
        let (db, _dir) = db().await;
        let l = limiter();
        let t0 = 1_700_000_000_000;
        for _ in 0..5 {
            l.begin_at(&db, "ada", None, t0)
                .await
                .unwrap()
                .failed_at(t0)
                .await;
        }
        let refused = l.begin_at(&db, "ada", None, t0).await.unwrap_err();
        assert_eq!(wait(refused), Duration::from_secs(900));
    }

    #[tokio::test]
    async fn success_clears_the_account_count() {
        let (db, _dir) = db().await;
        let l = limiter();
        let t0 = now_ms();
        for _ in 0..4 {
            l.begin_at(&db, "ada", None, t0)
                .await
                .unwrap()
                .failed_at(t0)
                .await;
        }
        l.begin_at(&db, "ada", None, t0)
            .await
            .unwrap()
            .succeeded()
            .await;
        l.begin_at(&db, "ada", None, t0)
            .await
            .unwrap()
            .failed_at(t0)
            .await;
        assert!(l.begin_at(&db, "ada", None, t0).await.is_ok());
    }

    #[tokio::test]
    async fn an_address_spraying_many_accounts_is_refused() {
        let (db, _dir) = db().await;
        let l = limiter();
        let t0 = 1_700_000_000_000;
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for i in 0..8 {
            l.begin_at(&db, &format!("user{i}"), Some(ip), t0)
                .await
                .unwrap()
                .failed_at(t0)
                .await;
        }
        assert!(l.begin_at(&db, "fresh", Some(ip), t0).await.is_err());
        let other: IpAddr = "203.0.113.8".parse().unwrap();
        assert!(l.begin_at(&db, "fresh", Some(other), t0).await.is_ok());
    }

    #[tokio::test]
    async fn ipv6_is_counted_per_64() {
        let (db, _dir) = db().await;
        let l = limiter();
        let t0 = 1_700_000_000_000;
        for i in 0..8 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            l.begin_at(&db, &format!("user{i}"), Some(ip), t0)
                .await
                .unwrap()
                .failed_at(t0)
                .await;
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.begin_at(&db, "fresh", Some(same_64), t0).await.is_err());
        assert!(l.begin_at(&db, "fresh", Some(other_64), t0).await.is_ok());
    }

    #[tokio::test]
    async fn limiters_count_apart_and_old_rows_are_deleted() {
        let (db, _dir) = db().await;
        let login = limiter();
        let join = LoginLimiter::scoped("join", login.limits());
        let t0 = 1_700_000_000_000;
        for _ in 0..5 {
            login
                .begin_at(&db, "ada", None, t0)
                .await
                .unwrap()
                .failed_at(t0)
                .await;
        }
        assert!(join.begin_at(&db, "ada", None, t0).await.is_ok());
        // A reservation long after the window deletes what no longer counts.
        login
            .begin_at(&db, "bob", None, t0 + 901 * S)
            .await
            .unwrap()
            .release()
            .await;
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM rate_limit_events WHERE scope = 'login'")
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn registrations_are_counted_per_address_and_freed_when_abandoned() {
        let (db, _dir) = db().await;
        let r = RegistrationLimiter::new(Duration::from_secs(3600));
        let t0 = 1_700_000_000_000;
        let ip: IpAddr = "198.51.100.4".parse().unwrap();
        r.begin_at(&db, Some(ip), 2, t0)
            .await
            .unwrap()
            .completed_at(t0)
            .await;
        // Abandoned (the email was taken): not counted.
        r.begin_at(&db, Some(ip), 2, t0)
            .await
            .unwrap()
            .release()
            .await;
        let pending = r.begin_at(&db, Some(ip), 2, t0).await.unwrap();
        assert!(
            r.begin_at(&db, Some(ip), 2, t0).await.is_err(),
            "in flight counts"
        );
        pending.completed_at(t0).await;
        let refused = r
            .begin_at(&db, Some(ip), 2, t0 + 600 * S)
            .await
            .unwrap_err();
        assert_eq!(wait(refused), Duration::from_secs(3000));
        let other: IpAddr = "198.51.100.5".parse().unwrap();
        assert!(r.begin_at(&db, Some(other), 2, t0).await.is_ok());
        assert!(
            r.begin_at(&db, None, 2, t0).await.is_ok(),
            "unknown address"
        );
        assert!(
            r.begin_at(&db, Some(ip), 0, t0).await.is_ok(),
            "0 turns the limit off"
        );
    }
}
