//! Exponential backoff with jitter for requests that got no answer or a temporary refusal
//! (5xx, 429).

use std::time::Duration;

/// How long to wait between attempts: `initial`, then twice as long each time up to `max`,
/// each delay spread by ±`jitter` (a fraction) so that many clients losing the server at
/// once do not come back in lockstep. Gives up once the delays add up to `give_up_after`
/// (`None`: never).
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub jitter: f64,
    pub give_up_after: Option<Duration>,
}

impl Default for Backoff {
    /// 250 ms doubling to 30 s, ±25%, giving up after 15 minutes without an answer.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            jitter: 0.25,
            give_up_after: Some(Duration::from_secs(15 * 60)),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based), jittered with `seed`.
    pub fn delay(&self, attempt: u32, seed: u64) -> Duration {
        let base = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)))
            .min(self.max);
        // splitmix64: a cheap deterministic spread; no clock or OS randomness needed in wasm.
        let mut z = seed
            .wrapping_add(attempt as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let factor = 1.0 + self.jitter.clamp(0.0, 1.0) * (2.0 * unit - 1.0);
        base.mul_f64(factor.max(0.0))
    }

    /// Whether another attempt is allowed after `waited` in delays so far.
    pub fn allows(&self, waited: Duration) -> bool {
        self.give_up_after.is_none_or(|limit| waited < limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter() {
        let b = Backoff::default();
        for attempt in 1..=20 {
            let base = (250u64 << (attempt - 1).min(20)).min(30_000) as f64;
            let d = b.delay(attempt, 42).as_millis() as f64;
            assert!(
                d >= base * 0.75 - 1.0 && d <= base * 1.25 + 1.0,
                "{attempt}: {d}"
            );
        }
        assert_ne!(b.delay(3, 1), b.delay(3, 2), "jitter spreads clients");
        assert!(b.allows(Duration::from_secs(60)));
        assert!(!b.allows(Duration::from_secs(3600)));
    }
}
