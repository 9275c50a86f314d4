//! Clipping and Gaussian noise (the Gaussian mechanism on a flattened update).

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// L2 norm of `values`, accumulated in f64.
pub fn l2_norm(values: &[f32]) -> f64 {
    values
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

/// What clipping did to an update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clipped {
    /// The norm before clipping.
    pub norm: f64,
    /// It was scaled down to the bound (Flower's `norm_bit`).
    pub clipped: bool,
}

/// Scales `values` so that their L2 norm is at most `clip_norm` (FlatClip, McMahan et al.
/// 2018); a non-finite vector becomes zeros (it is clipped, and nothing of it leaks), and so
/// does any vector when the bound itself is NaN or negative.
pub fn clip(values: &mut [f32], clip_norm: f64) -> Clipped {
    let norm = l2_norm(values);
    if !norm.is_finite() || clip_norm.is_nan() || clip_norm < 0.0 {
        values.fill(0.0);
        return Clipped {
            norm,
            clipped: true,
        };
    }
    if norm <= clip_norm {
        return Clipped {
            norm,
            clipped: false,
        };
    }
    let scale = clip_norm / norm;
    for v in values.iter_mut() {
        *v = (f64::from(*v) * scale) as f32;
    }
    // f32 rounding can leave the norm a hair above the bound: step every value one ulp toward
    // zero (at least 2^-24 of it; multiplying by `1 - f32::EPSILON` would leave subnormal values
    // as they are, so a bound below ~1e-38 could stay exceeded).
    for _ in 0..8 {
        if l2_norm(values) <= clip_norm {
            break;
        }
        for v in values.iter_mut() {
            if *v != 0.0 {
                *v = f32::from_bits(v.to_bits() - 1);
            }
        }
    }
    if l2_norm(values) > clip_norm {
        // Not reached in practice; the bound is what the privacy guarantee rests on.
        values.fill(0.0);
    }
    Clipped {
        norm,
        clipped: true,
    }
}

/// One draw of `N(0, 1)`.
pub fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    StandardNormal.sample(rng)
}

/// Adds independent `N(0, std^2)` noise to every value.
pub fn add_gaussian<R: Rng + ?Sized>(values: &mut [f32], std: f64, rng: &mut R) {
    if std <= 0.0 {
        return;
    }
    for v in values.iter_mut() {
        *v = (f64::from(*v) + std * standard_normal(rng)) as f32;
    }
}
