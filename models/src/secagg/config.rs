//! The group's SecAgg+ settings under Flower's names (`SecAggPlusWorkflow`), and the values a
//! round derives from them once it knows how many clients it selected.

use serde::{Deserialize, Serialize};

use super::SecAggError;

/// A count given either as a number of clients/shares (`7`) or as a proportion (`0.5`), as
/// Flower accepts for `num_shares` and `reconstruction_threshold`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ShareCount {
    Count(u32),
    Proportion(f64),
}

/// A secure group's settings, stored with the group and published in every round's config.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecAggConfig {
    /// Shares each client's secrets are split into (its graph degree + 1: one share stays with
    /// the client). A proportion is of the round's selected clients. Capped at the selected count
    /// (then every pair of clients masks: Bonawitz et al.'s complete graph). Default 255.
    #[serde(default = "default_num_shares")]
    pub num_shares: ShareCount,
    /// Shares needed to rebuild a secret; a proportion is of `num_shares`. Must be more than half
    /// of `num_shares` (then no answer of honest clients gives the server both secrets of one
    /// client) and at least 2. Default: the proportion 0.51 (a strict majority).
    #[serde(default = "default_threshold")]
    pub reconstruction_threshold: ShareCount,
    /// Update values (the change from the round's base model) are clipped to `[-c, c]`.
    #[serde(default = "default_clipping")]
    pub clipping_range: f64,
    /// Quantization levels over `[-c, c]` (Flower's `quantization_range`), default 2^22.
    #[serde(default = "default_quantization")]
    pub quantization_range: u64,
    /// Masked vectors live in the integers modulo this power of two (default 2^32, at most
    /// 2^62); it sets the width of their entries on the wire (8, 16, 32 or 64 bits).
    #[serde(default = "default_modulus")]
    pub modulus_range: u64,
    /// A client's weight factor is `min(num_samples / max_weight, 1)` (Flower's `max_weight`,
    /// default 1000): clients with more samples count as much as `max_weight` samples.
    #[serde(default = "default_max_weight")]
    pub max_weight: f64,
    /// Deadline of each key stage (advertise, share, unmask), in seconds; training keeps the
    /// group's `round_deadline_secs`. Default 120.
    #[serde(default = "default_stage_deadline")]
    pub stage_deadline_secs: u32,
}

fn default_num_shares() -> ShareCount {
    ShareCount::Count(255)
}
fn default_threshold() -> ShareCount {
    ShareCount::Proportion(0.51)
}
fn default_clipping() -> f64 {
    8.0
}
fn default_quantization() -> u64 {
    1 << 22
}
fn default_modulus() -> u64 {
    1 << 32
}
fn default_max_weight() -> f64 {
    1000.0
}
fn default_stage_deadline() -> u32 {
    120
}

impl Default for SecAggConfig {
    fn default() -> Self {
        SecAggConfig {
            num_shares: default_num_shares(),
            reconstruction_threshold: default_threshold(),
            clipping_range: default_clipping(),
            quantization_range: default_quantization(),
            modulus_range: default_modulus(),
            max_weight: default_max_weight(),
            stage_deadline_secs: default_stage_deadline(),
        }
    }
}

impl SecAggConfig {
    /// Checks every field on its own (ranges, power of two, quantization below the modulus),
    /// naming the first bad one.
    pub fn validate(&self) -> Result<(), SecAggError> {
        let bad =
            |param: &'static str, reason: String| Err(SecAggError::InvalidConfig { param, reason });
        match self.num_shares {
            ShareCount::Count(n) if n < 3 => {
                return bad("num_shares", format!("{n} shares; at least 3"));
            }
            ShareCount::Proportion(p) if !proportion_ok(p) => {
                return bad(
                    "num_shares",
                    format!("proportion {p}; it must be in (0, 1]"),
                );
            }
            _ => {}
        }
        match self.reconstruction_threshold {
            ShareCount::Count(t) if t < 2 => {
                return bad(
                    "reconstruction_threshold",
                    format!("{t} shares; at least 2"),
                );
            }
            ShareCount::Proportion(p) if !proportion_ok(p) => {
                return bad(
                    "reconstruction_threshold",
                    format!("proportion {p}; it must be in (0, 1]"),
                );
            }
            _ => {}
        }
        if !(self.clipping_range.is_finite() && self.clipping_range > 0.0) {
            return bad(
                "clipping_range",
                format!(
                    "{}; it must be a finite number above 0",
                    self.clipping_range
                ),
            );
        }
        if self.quantization_range < 2 {
            return bad(
                "quantization_range",
                format!("{}; at least 2 levels", self.quantization_range),
            );
        }
        let m = self.modulus_range;
        if !m.is_power_of_two() || !(MIN_MODULUS..=MAX_MODULUS).contains(&m) {
            return bad(
                "modulus_range",
                format!("{m}; it must be a power of two from 2^8 to 2^62"),
            );
        }
        if m <= self.quantization_range {
            return bad(
                "modulus_range",
                format!(
                    "{m}; it must be above quantization_range ({})",
                    self.quantization_range
                ),
            );
        }
        if !(self.max_weight.is_finite() && self.max_weight > 0.0) {
            return bad(
                "max_weight",
                format!("{}; it must be a finite number above 0", self.max_weight),
            );
        }
        if !(1..=MAX_STAGE_DEADLINE_SECS).contains(&self.stage_deadline_secs) {
            return bad(
                "stage_deadline_secs",
                format!(
                    "{}; it must be 1 to {MAX_STAGE_DEADLINE_SECS} seconds",
                    self.stage_deadline_secs
                ),
            );
        }
        Ok(())
    }

    /// How many clients a round may select at most: the sum of their entries (each at most
    /// `quantization_range`) must stay below `modulus_range`.
    pub fn max_clients(&self) -> usize {
        let most = self
            .modulus_range
            .saturating_sub(1)
            .checked_div(self.quantization_range)
            .unwrap_or(0);
        usize::try_from(most).unwrap_or(usize::MAX)
    }

    /// The values for a round that selected `selected` clients: checks `selected` is at least
    /// 2 and at most [`SecAggConfig::max_clients`], resolves proportions (rounded up), makes
    /// `num_shares` `selected` when it is at least that (complete graph) and odd otherwise
    /// (rounded down, at least 3), and checks the threshold against the resolved `num_shares`
    /// (2 <= t <= num_shares, and t > num_shares / 2).
    pub fn for_round(&self, selected: usize) -> Result<EffectiveConfig, SecAggError> {
        self.validate()?;
        if selected < 2 {
            return Err(SecAggError::InvalidConfig {
                param: "selected",
                reason: format!("{selected} clients; secure aggregation needs at least 2"),
            });
        }
        if selected > self.max_clients() {
            return Err(SecAggError::Capacity(selected));
        }
        // max_clients <= 2^61, and u32 covers any realistic round; refuse the rest.
        let n = u32::try_from(selected).map_err(|_| SecAggError::Capacity(selected))?;
        let wanted = match self.num_shares {
            ShareCount::Count(c) => c,
            ShareCount::Proportion(p) => proportion_of(p, n),
        };
        let num_shares = if wanted >= n {
            n
        } else {
            let odd = if wanted % 2 == 0 { wanted - 1 } else { wanted };
            odd.max(3).min(n)
        };
        let threshold = match self.reconstruction_threshold {
            ShareCount::Count(t) => t,
            ShareCount::Proportion(p) => proportion_of(p, num_shares),
        };
        if threshold < 2
            || threshold > num_shares
            || u64::from(threshold) * 2 <= u64::from(num_shares)
        {
            return Err(SecAggError::InvalidConfig {
                param: "reconstruction_threshold",
                reason: format!(
                    "{threshold} of {num_shares} shares; it must be at least 2, at most the \
                     number of shares, and more than half of them"
                ),
            });
        }
        Ok(EffectiveConfig {
            selected: n,
            num_shares,
            reconstruction_threshold: threshold,
            clipping_range: self.clipping_range,
            quantization_range: self.quantization_range,
            modulus_range: self.modulus_range,
            max_weight: self.max_weight,
        })
    }
}

/// Smallest and largest `modulus_range`.
const MIN_MODULUS: u64 = 1 << 8;
const MAX_MODULUS: u64 = 1 << 62;
/// Longest key stage: a day.
const MAX_STAGE_DEADLINE_SECS: u32 = 86_400;

fn proportion_ok(p: f64) -> bool {
    p.is_finite() && p > 0.0 && p <= 1.0
}

/// `ceil(p * n)`, at least 1; a hair of slack so that `0.3 * 10` (3.0000000000000004 in
/// floating point) gives 3.
fn proportion_of(p: f64, n: u32) -> u32 {
    let v = (p * f64::from(n) - 1e-9).ceil();
    // p is in (0, 1] (validated): v is in [0, n].
    (v as u32).clamp(1, n.max(1))
}

/// A round's resolved settings: what clients and server compute with.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectiveConfig {
    pub selected: u32,
    pub num_shares: u32,
    pub reconstruction_threshold: u32,
    pub clipping_range: f64,
    pub quantization_range: u64,
    pub modulus_range: u64,
    pub max_weight: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_of(r: Result<(), SecAggError>) -> &'static str {
        match r {
            Err(SecAggError::InvalidConfig { param, .. }) => param,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let d = SecAggConfig::default();
        assert_eq!(d.clipping_range, 8.0);
        assert_eq!(d.quantization_range, 1 << 22);
        assert_eq!(d.modulus_range, 1 << 32);
        assert_eq!(d.max_weight, 1000.0);
        assert_eq!(d.num_shares, ShareCount::Count(255));
        assert_eq!(d.reconstruction_threshold, ShareCount::Proportion(0.51));
        assert_eq!(d.stage_deadline_secs, 120);
        d.validate().unwrap();
        // serde fills defaults and reads both forms of a count.
        let parsed: SecAggConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, d);
        let parsed: SecAggConfig =
            serde_json::from_str(r#"{"num_shares": 0.5, "reconstruction_threshold": 4}"#).unwrap();
        assert_eq!(parsed.num_shares, ShareCount::Proportion(0.5));
        assert_eq!(parsed.reconstruction_threshold, ShareCount::Count(4));
        assert!(serde_json::from_str::<SecAggConfig>(r#"{"bogus": 1}"#).is_err());
    }

    #[test]
    fn validation_names_the_parameter() {
        let with = |f: &dyn Fn(&mut SecAggConfig)| {
            let mut c = SecAggConfig::default();
            f(&mut c);
            param_of(c.validate())
        };
        assert_eq!(with(&|c| c.clipping_range = 0.0), "clipping_range");
        assert_eq!(with(&|c| c.clipping_range = f64::NAN), "clipping_range");
        assert_eq!(
            with(&|c| c.clipping_range = f64::INFINITY),
            "clipping_range"
        );
        assert_eq!(with(&|c| c.quantization_range = 1), "quantization_range");
        assert_eq!(with(&|c| c.modulus_range = 3 << 20), "modulus_range");
        assert_eq!(with(&|c| c.modulus_range = 1 << 7), "modulus_range");
        assert_eq!(with(&|c| c.modulus_range = 1 << 63), "modulus_range");
        assert_eq!(with(&|c| c.modulus_range = 1 << 22), "modulus_range");
        assert_eq!(with(&|c| c.max_weight = -1.0), "max_weight");
        assert_eq!(with(&|c| c.max_weight = f64::NAN), "max_weight");
        assert_eq!(with(&|c| c.stage_deadline_secs = 0), "stage_deadline_secs");
        assert_eq!(
            with(&|c| c.stage_deadline_secs = 86_401),
            "stage_deadline_secs"
        );
        assert_eq!(with(&|c| c.num_shares = ShareCount::Count(2)), "num_shares");
        assert_eq!(
            with(&|c| c.num_shares = ShareCount::Proportion(0.0)),
            "num_shares"
        );
        assert_eq!(
            with(&|c| c.num_shares = ShareCount::Proportion(1.5)),
            "num_shares"
        );
        assert_eq!(
            with(&|c| c.reconstruction_threshold = ShareCount::Count(1)),
            "reconstruction_threshold"
        );
        assert_eq!(
            with(&|c| c.reconstruction_threshold = ShareCount::Proportion(f64::NAN)),
            "reconstruction_threshold"
        );
        // The edges that are fine.
        let c = SecAggConfig {
            modulus_range: 1 << 62,
            stage_deadline_secs: 86_400,
            num_shares: ShareCount::Proportion(1.0),
            ..SecAggConfig::default()
        };
        c.validate().unwrap();
    }

    #[test]
    fn for_round_resolution() {
        let d = SecAggConfig::default();
        let r = d.for_round(3).unwrap();
        assert_eq!(
            (r.selected, r.num_shares, r.reconstruction_threshold),
            (3, 3, 2)
        );
        let r = d.for_round(2).unwrap();
        assert_eq!((r.num_shares, r.reconstruction_threshold), (2, 2));
        let mut c = SecAggConfig {
            num_shares: ShareCount::Count(11),
            ..SecAggConfig::default()
        };
        let r = c.for_round(100).unwrap();
        assert_eq!((r.num_shares, r.reconstruction_threshold), (11, 6));
        // Even counts round down to odd; at least 3.
        c.num_shares = ShareCount::Count(12);
        assert_eq!(c.for_round(100).unwrap().num_shares, 11);
        c.num_shares = ShareCount::Proportion(0.01);
        let r = c.for_round(100).unwrap();
        assert_eq!((r.num_shares, r.reconstruction_threshold), (3, 2));
        // Proportions round up: 0.3 * 10 is 3 (not 4 from floating-point noise).
        c.num_shares = ShareCount::Proportion(0.3);
        assert_eq!(c.for_round(10).unwrap().num_shares, 3);
        c.num_shares = ShareCount::Proportion(0.25);
        assert_eq!(c.for_round(100).unwrap().num_shares, 25);
        c.num_shares = ShareCount::Proportion(0.26);
        assert_eq!(c.for_round(100).unwrap().num_shares, 25); // 26, rounded down to odd
        // Thresholds: a count too small for a majority, too large, or 2 of 3.
        c.num_shares = ShareCount::Count(11);
        c.reconstruction_threshold = ShareCount::Count(5);
        assert_eq!(
            param_of(c.for_round(100).map(|_| ())),
            "reconstruction_threshold"
        );
        c.reconstruction_threshold = ShareCount::Count(12);
        assert_eq!(
            param_of(c.for_round(100).map(|_| ())),
            "reconstruction_threshold"
        );
        c.reconstruction_threshold = ShareCount::Count(11);
        assert_eq!(c.for_round(100).unwrap().reconstruction_threshold, 11);
        // Half of 11 rounds up to 6, a majority; half of 10 (complete graph of 10) does not.
        c.reconstruction_threshold = ShareCount::Proportion(0.5);
        assert_eq!(c.for_round(100).unwrap().reconstruction_threshold, 6);
        assert_eq!(
            param_of(c.for_round(10).map(|_| ())),
            "reconstruction_threshold"
        );
        assert_eq!(param_of(d.for_round(1).map(|_| ())), "selected");
        assert_eq!(param_of(d.for_round(0).map(|_| ())), "selected");
        // An invalid config is refused by for_round too.
        let bad = SecAggConfig {
            clipping_range: -1.0,
            ..SecAggConfig::default()
        };
        assert_eq!(param_of(bad.for_round(5).map(|_| ())), "clipping_range");
    }

    #[test]
    fn capacity() {
        let d = SecAggConfig::default();
        assert_eq!(d.max_clients(), 1023);
        let r = d.for_round(1023).unwrap();
        assert_eq!(r.num_shares, 255);
        assert_eq!(r.reconstruction_threshold, 131);
        assert_eq!(d.for_round(1024), Err(SecAggError::Capacity(1024)));
        let small = SecAggConfig {
            modulus_range: 1 << 8,
            quantization_range: 100,
            ..SecAggConfig::default()
        };
        assert_eq!(small.max_clients(), 2);
        assert!(small.for_round(2).is_ok());
        assert_eq!(small.for_round(3), Err(SecAggError::Capacity(3)));
    }
}
