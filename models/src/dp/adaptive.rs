//! Adaptive clipping (Andrew, Thakkar, McMahan and Ramaswamy 2021, "Differentially Private
//! Learning with Adaptive Clipping"): each member reports whether its update was within the
//! clipping norm (`b = 1` when `‖Δ‖ ≤ C`); the server adds `N(0, σ_b²)` to the count and moves
//! the norm geometrically, `C ← C · exp(-η (b̄ - γ))`, with `b̄` the noisy share of unclipped
//! updates and `γ` the target quantile. `C` converges to the `γ`-quantile of the update norms.
//!
//! Flower's wrappers count the *clipped* bits with the same sign, which moves the norm away from
//! the target (more clipped updates shrink it further); this follows the paper.

use super::DpError;

/// The update's noise multiplier once the noisy count takes its share of the privacy budget:
/// `(z^-2 - (2 σ_b)^-2)^(-1/2)` (the paper's Theorem 1 split, Flower's
/// `compute_adaptive_noise_params`). Refused when `σ_b` is too small for `z`: `z ≥ 2 σ_b`.
pub fn update_noise_multiplier(
    noise_multiplier: f64,
    clipped_count_stddev: f64,
) -> Result<f64, DpError> {
    let (z, s) = (noise_multiplier, clipped_count_stddev);
    if z >= 2.0 * s {
        return Err(DpError::InvalidConfig {
            param: "adaptive.clipped_count_stddev",
            reason: format!(
                "{s} is too small for the noise multiplier {z:.4}: it must be more than half of \
                 it (default: clients per round / 20; give a larger one, or sample more \
                 clients per round)"
            ),
        });
    }
    Ok((z.powi(-2) - (2.0 * s).powi(-2)).powf(-0.5))
}

/// The next round's clipping norm from this round's noisy count of unclipped updates among
/// `reported` updates. The noisy share is used as it is (it may fall outside [0, 1]).
pub fn next_clipping_norm(
    clipping_norm: f64,
    noisy_unclipped: f64,
    reported: usize,
    target_quantile: f64,
    lr: f64,
) -> f64 {
    if reported == 0 {
        return clipping_norm;
    }
    let share = noisy_unclipped / reported as f64;
    clipping_norm * (-lr * (share - target_quantile)).exp()
}
