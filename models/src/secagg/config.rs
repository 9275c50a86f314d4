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
        todo!()
    }

    /// How many clients a round may select at most: the sum of their entries (each at most
    /// `quantization_range`) must stay below `modulus_range`.
    pub fn max_clients(&self) -> usize {
        todo!()
    }

    /// The values for a round that selected `selected` clients: checks `selected` is at least
    /// 2 and at most [`SecAggConfig::max_clients`], resolves proportions (rounded up), makes
    /// `num_shares` `selected` when it is at least that (complete graph) and odd otherwise
    /// (rounded down, at least 3), and checks the threshold against the resolved `num_shares`
    /// (2 <= t <= num_shares, and t > num_shares / 2).
    pub fn for_round(&self, selected: usize) -> Result<EffectiveConfig, SecAggError> {
        todo!()
    }
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
