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
    let f = num_samples as f64 / max_weight;
    if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) }
}

/// The `P + 1` quantized, weighted entries of `values` (non-finite values are clipped: NaN to
/// 0). Each is at most `quantization_range`.
pub fn quantize_weighted<R: rand::Rng + ?Sized>(
    values: &[f32],
    factor: f64,
    cfg: &EffectiveConfig,
    rng: &mut R,
) -> Vec<u64> {
    let factor = if factor.is_nan() {
        0.0
    } else {
        factor.clamp(0.0, 1.0)
    };
    let c = cfg.clipping_range;
    let levels = cfg.quantization_range;
    let t = levels as f64;
    let scale = factor * t / (2.0 * c);
    let mut out = Vec::with_capacity(values.len() + 1);
    for &v in values {
        let x = if v.is_nan() {
            0.0
        } else {
            f64::from(v).clamp(-c, c)
        };
        out.push(stochastic_round((x + c) * scale, levels, rng));
    }
    out.push(stochastic_round(factor * t, levels, rng));
    out
}

/// `floor(v)`, plus one with probability `v - floor(v)`; in `0..=max`.
fn stochastic_round<R: rand::Rng + ?Sized>(v: f64, max: u64, rng: &mut R) -> u64 {
    if v.is_nan() || v <= 0.0 {
        return 0;
    }
    let floor = v.floor();
    let up = rng.random::<f64>() < v - floor;
    // `as` saturates; `min` keeps rounding noise (v a hair above max) inside the range.
    (floor as u64).saturating_add(u64::from(up)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn cfg() -> EffectiveConfig {
        crate::secagg::SecAggConfig::default()
            .for_round(10)
            .unwrap()
    }

    #[test]
    fn weight_factor_caps_at_one() {
        assert_eq!(weight_factor(500, 1000.0), 0.5);
        assert_eq!(weight_factor(5000, 1000.0), 1.0);
        assert_eq!(weight_factor(0, 1000.0), 0.0);
        assert_eq!(weight_factor(0, 0.0), 0.0);
    }

    #[test]
    fn entries_are_bounded_and_unbiased() {
        let cfg = cfg();
        let t = cfg.quantization_range;
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let values = [
            -100.0f32,
            -8.0,
            0.0,
            8.0,
            1e30,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let q = quantize_weighted(&values, 1.0, &cfg, &mut rng);
        assert_eq!(q, vec![0, 0, t / 2, t, t, t / 2, t, 0, t]);
        let q = quantize_weighted(&values, 0.25, &cfg, &mut rng);
        assert_eq!(q, vec![0, 0, t / 8, t / 4, t / 4, t / 8, t / 4, 0, t / 4]);
        // A value between two levels rounds up as often as its fraction says.
        let level = 2.0 * cfg.clipping_range / t as f64;
        let x = (-cfg.clipping_range + 10.3 * level) as f32;
        let exact = (f64::from(x) + cfg.clipping_range) / level;
        let n = 20_000;
        let values = vec![x; n];
        let q = quantize_weighted(&values, 1.0, &cfg, &mut rng);
        assert!(
            q[..n]
                .iter()
                .all(|&v| v == exact.floor() as u64 || v == exact.ceil() as u64)
        );
        let mean = q[..n].iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        assert!((mean - exact).abs() < 0.02, "mean {mean}, exact {exact}");
    }
}
