//! Quantization of an update for secure aggregation (as Flower's `quantize`, stochastic
//! rounding), with the client's weight factor folded in, so that the sum of the vectors gives
//! the weighted mean.
//!
//! A client with update `x` (length `P`) and factor `f` sends `P + 1` integers: entry `k` is
//! `sround(f * (clip(x_k) + c) * T / (2c))`, the last is `sround(f * T)`, where `c` is
//! `clipping_range`, `T` `quantization_range` and `sround` rounds up with probability equal to
//! the fractional part (unbiased). Each entry is at most `T`.

use super::EffectiveConfig;

/// `min(num_samples / max_weight, 1)`.
pub fn weight_factor(num_samples: u64, max_weight: f64) -> f64 {
    todo!()
}

/// The `P + 1` quantized, weighted entries of `values` (non-finite values are clipped: NaN to
/// 0). Each is at most `quantization_range`.
pub fn quantize_weighted<R: rand::Rng + ?Sized>(
    values: &[f32],
    factor: f64,
    cfg: &EffectiveConfig,
    rng: &mut R,
) -> Vec<u64> {
    todo!()
}
