//! The server's side: summing masked vectors, removing the masks with the shares survivors
//! return, and turning the sum into the weighted mean.

use super::keys::{Context, PublicKeys};
use super::{EffectiveConfig, SecAggError, UnmaskShare};

/// The running sum of masked vectors modulo the modulus; O(model size) memory.
pub struct Aggregator {
    modulus: u64,
    sum: Vec<u64>,
    count: usize,
}

impl Aggregator {
    pub fn new(len: usize, modulus: u64) -> Aggregator {
        todo!()
    }

    /// Adds one masked vector; checks its length and that every entry is below the modulus.
    pub fn add(&mut self, masked: &[u64]) -> Result<(), SecAggError> {
        todo!()
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn into_sum(self) -> Vec<u64> {
        self.sum
    }
}

/// What the server knows of one selected client at the unmask stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub member_id: i64,
    /// Advertised in stage 1; `None` if it never did.
    pub keys: Option<PublicKeys>,
    /// Completed stage 2 (its encrypted shares were accepted).
    pub shared: bool,
    /// Its masked vector is in the sum.
    pub survived: bool,
}

/// Everything [`unmask`] needs.
pub struct UnmaskInputs<'a> {
    pub ctx: Context,
    pub cfg: &'a EffectiveConfig,
    /// The round's clients in ring order.
    pub ring: &'a [i64],
    pub clients: &'a [ClientRecord],
    /// `(holder, share)`: what each survivor answered in stage 4.
    pub shares: &'a [(i64, UnmaskShare)],
}

/// The sum without masks: rebuilds each survivor's seed `b` and subtracts `PRG(b)`; rebuilds
/// each dropped-after-sharing client's mask key `s`, checks it against its advertised public
/// key, and removes the pairwise masks its surviving neighbours (those that completed stage 2)
/// added for it. Shares from a holder that is not a neighbour of the client, or that
/// do not parse, are ignored; `NotEnoughShares` when fewer than the threshold remain for a
/// secret, `Inconsistent` when a rebuilt key does not match.
pub fn unmask(sum: Vec<u64>, inputs: &UnmaskInputs<'_>) -> Result<Vec<u64>, SecAggError> {
    todo!()
}

/// The weighted mean of the updates from an unmasked sum of `clients` vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanDelta {
    /// The weighted mean change, one value per parameter.
    pub values: Vec<f32>,
    /// The sum of the clients' weight factors, as the last entry gives it.
    pub weight: f64,
    pub clients: usize,
}

/// Dequantizes: `mean_k = 2c * sum_k / sum_last - c`. `ZeroWeight` when the last entry is 0.
pub fn dequantize_mean(
    unmasked: &[u64],
    cfg: &EffectiveConfig,
    clients: usize,
) -> Result<MeanDelta, SecAggError> {
    todo!()
}

/// The largest difference between [`dequantize_mean`]'s values and the exact weighted mean of
/// the clipped updates, for `clients` vectors whose unmasked weight entry is `T * weight`
/// ([`MeanDelta::weight`]): stochastic rounding moves each of the `n` entries summed by less
/// than 1 and each weight entry by less than 1, so the error is below `4 c n / (T * weight)`
/// (derivation in the function's comment), plus the `f32` rounding of the result.
pub fn error_bound(cfg: &EffectiveConfig, clients: usize, weight: f64) -> f64 {
    todo!()
}
