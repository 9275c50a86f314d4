//! The RDP accountant of the sampled Gaussian mechanism (SGM): a round samples each member with
//! probability `q` and adds Gaussian noise of `z` times the sensitivity.
//!
//! Formulas as TensorFlow Privacy's `rdp_accountant` and Opacus's `analysis/rdp` compute them
//! (Mironov 2017, "Rényi Differential Privacy"; Mironov, Talwar and Zhang 2019, "Rényi
//! Differential Privacy of the Sampled Gaussian Mechanism"): the RDP of one step at integer
//! orders by the binomial expansion, at fractional orders by the two-series expansion with
//! `erfc`, composed by addition over steps, and converted to (epsilon, delta) with the bound of
//! Balle et al. 2020 / Canonne, Kamath and Steinke 2020 that both libraries use today.

use super::DpError;

/// Most terms of the fractional-order series before the order is given up (its RDP counted as
/// infinite, which only removes it from the minimum over orders). TensorFlow Privacy loops
/// without a bound; `dp_accounting` stops at 1000 terms.
const MAX_FRAC_TERMS: usize = 100_000;

/// Largest integer order whose binomial expansion is summed (`alpha + 1` terms); larger ones
/// are counted as infinite (the accountant's own orders stop at 512).
const MAX_INT_ORDER: f64 = 1e6;

/// The orders (alpha) the accountant tracks: Opacus's `DEFAULT_ALPHAS` plus TensorFlow
/// Privacy's large ones: `1.1, 1.2, ..., 10.9`, `12, ..., 63`, `128, 256, 512`.
pub fn default_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (1..100).map(|x| 1.0 + f64::from(x) / 10.0).collect();
    orders.extend((12..64).map(f64::from));
    orders.extend([128.0, 256.0, 512.0]);
    orders
}

/// `ln(e^x + e^y)` (`_log_add`).
fn log_add(x: f64, y: f64) -> f64 {
    let (a, b) = if x < y { (x, y) } else { (y, x) };
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::INFINITY {
        return b;
    }
    (a - b).exp().ln_1p() + b
}

/// `ln(e^x - e^y)` (`_log_sub`); `None` when the difference would be negative (the reference
/// raises).
fn log_sub(x: f64, y: f64) -> Option<f64> {
    if x < y {
        return None;
    }
    if y == f64::NEG_INFINITY {
        return Some(x);
    }
    if x == y {
        return Some(f64::NEG_INFINITY);
    }
    let d = (x - y).exp_m1();
    if d.is_infinite() {
        // Python's `math.expm1` raises OverflowError here and the reference returns `x`.
        return Some(x);
    }
    Some(d.ln() + y)
}

/// `ln |C(n, k)|` and whether `C(n, k)` is positive, for real `n > -1` and integer `k >= 0`.
fn log_binom(n: f64, k: f64) -> (f64, bool) {
    let (a, _) = libm::lgamma_r(n + 1.0);
    let (b, _) = libm::lgamma_r(k + 1.0);
    let (c, sign) = libm::lgamma_r(n - k + 1.0);
    // Gamma(n + 1) and Gamma(k + 1) are positive; the sign is Gamma(n - k + 1)'s.
    (a - b - c, sign >= 0)
}

/// `ln(erfc(x))`, accurate for large `x` (`_log_erfc`): `erfc` itself while it is a normal
/// number, then the asymptotic (Laurent) series of TensorFlow Privacy's fallback, whose first
/// neglected term is below `1e-12` there.
fn log_erfc(x: f64) -> f64 {
    if x < 25.0 {
        return libm::erfc(x).ln();
    }
    let (x2, x4) = (x * x, x.powi(4));
    -core::f64::consts::PI.ln() / 2.0 - x.ln() - x2 - 0.5 / x2 + 0.625 / x4
        - 37.0 / 24.0 / (x4 * x2)
        + 353.0 / 64.0 / (x4 * x4)
}

/// `ln(A_alpha)` for an integer order, `0 < q < 1` (`_compute_log_a_int`): the binomial
/// expansion `sum_i C(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i) / (2 sigma^2))`.
fn compute_log_a_int(q: f64, sigma: f64, alpha: f64) -> f64 {
    if alpha > MAX_INT_ORDER {
        return f64::INFINITY;
    }
    let (ln_q, ln_1mq) = (q.ln(), (-q).ln_1p());
    let two_s2 = 2.0 * sigma * sigma;
    let mut log_a = f64::NEG_INFINITY;
    let n = alpha as u64;
    for i in 0..=n {
        let i = i as f64;
        let log_coef = log_binom(alpha, i).0 + i * ln_q + (alpha - i) * ln_1mq;
        log_a = log_add(log_a, log_coef + (i * i - i) / two_s2);
    }
    log_a
}

/// `ln(A_alpha)` for a fractional order, `0 < q < 1` (`_compute_log_a_frac`, Mironov, Talwar
/// and Zhang 2019, Section 3.3): the two series over `(-inf, z0]` and `[z0, inf)`, with the
/// signed binomial coefficients of a real order. Infinite when it does not settle.
fn compute_log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let (ln_q, ln_1mq) = (q.ln(), (-q).ln_1p());
    let s2 = sigma * sigma;
    let z0 = s2 * (1.0 / q - 1.0).ln() + 0.5;
    let sqrt2_sigma = core::f64::consts::SQRT_2 * sigma;
    let ln_half = 0.5f64.ln();
    let (mut last_s0, mut last_s1) = (f64::INFINITY, f64::INFINITY);
    for i in 0..MAX_FRAC_TERMS {
        let i = i as f64;
        let (log_coef, positive) = log_binom(alpha, i);
        let j = alpha - i;

        let log_t0 = log_coef + i * ln_q + j * ln_1mq;
        let log_t1 = log_coef + j * ln_q + i * ln_1mq;

        let log_e0 = ln_half + log_erfc((i - z0) / sqrt2_sigma);
        let log_e1 = ln_half + log_erfc((z0 - j) / sqrt2_sigma);

        let log_s0 = log_t0 + (i * i - i) / (2.0 * s2) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * s2) + log_e1;
        if log_s0.is_nan() || log_s1.is_nan() {
            return f64::INFINITY;
        }

        if positive {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            match (log_sub(log_a0, log_s0), log_sub(log_a1, log_s1)) {
                (Some(a0), Some(a1)) => (log_a0, log_a1) = (a0, a1),
                _ => return f64::INFINITY,
            }
        }

        let largest = log_s0.max(log_s1);
        // The reference's stopping rule: both terms below e^-30.
        if largest < -30.0 {
            return log_add(log_a0, log_a1);
        }
        // Past `alpha` the coefficients alternate in sign, so once the terms shrink the
        // remainder is below the last term: stop when that is e^-30 of the sum (the same
        // rule relative to `A_alpha >= 1`, reached sooner when the tail is a slow power law).
        if i > alpha
            && log_s0 < last_s0
            && log_s1 < last_s1
            && largest < log_add(log_a0, log_a1) - 30.0
        {
            return log_add(log_a0, log_a1);
        }
        (last_s0, last_s1) = (log_s0, log_s1);
    }
    f64::INFINITY
}

/// RDP of one step at order `alpha` (`_compute_rdp`).
fn rdp_one(q: f64, sigma: f64, alpha: f64) -> f64 {
    // Anything malformed costs infinitely much: never a finite, optimistic, bound from it.
    if !(0.0..=1.0).contains(&q) || sigma.is_nan() || sigma < 0.0 || alpha.is_nan() || alpha < 1.0 {
        return f64::INFINITY;
    }
    if q == 0.0 {
        return 0.0;
    }
    if alpha.is_infinite() || sigma == 0.0 {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    if alpha == 1.0 {
        // `log_a / (alpha - 1)` is 0/0 at order 1 (the KL divergence, which the series does not
        // give): count it as unusable.
        return f64::INFINITY;
    }
    let log_a = if alpha.fract() == 0.0 {
        compute_log_a_int(q, sigma, alpha)
    } else {
        compute_log_a_frac(q, sigma, alpha)
    };
    let rdp = log_a / (alpha - 1.0);
    if rdp.is_nan() {
        f64::INFINITY
    } else {
        // Divergences are never negative: what falls below 0 is rounding (q^2 / z^2 ~ 1e-26).
        rdp.max(0.0)
    }
}

/// RDP of `steps` compositions of the SGM with sampling rate `q` and noise multiplier `z`, at
/// each of `orders` (TensorFlow Privacy's `compute_rdp`). `z = 0` gives infinity; `q = 0` zero.
///
/// Orders below 1 (and order 1 itself when `0 < q < 1`), `q` outside `[0, 1]` and a negative
/// `z` give infinity (the reference raises). An order whose series does not settle is infinite
/// too, which only drops it from the minimum in [`epsilon`]. No steps cost nothing.
pub fn compute_rdp(q: f64, noise_multiplier: f64, steps: u32, orders: &[f64]) -> Vec<f64> {
    orders
        .iter()
        .map(|&alpha| {
            if steps == 0 {
                0.0
            } else {
                rdp_one(q, noise_multiplier, alpha) * f64::from(steps)
            }
        })
        .collect()
}

/// The smallest epsilon at `delta` over the orders, and the order that gives it
/// (`get_privacy_spent`). Never negative; infinite when no order gives a finite bound.
///
/// The conversion of Balle et al. 2020 / Canonne, Kamath and Steinke 2020 (TensorFlow
/// Privacy's and `dp_accounting`'s `compute_epsilon`): at order `a` with RDP `r`,
/// `eps = r + ln(1 - 1/a) - ln(delta a) / (a - 1)` for `a > 1.01`, and `0` when
/// `delta^2 + expm1(-r) >= 0` (the KL bound already gives delta). The first order reaching the
/// minimum is returned; `NaN` when `orders` is empty or does not match `rdp` (then epsilon is
/// infinite).
pub fn epsilon(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    if orders.is_empty() || orders.len() != rdp.len() || delta.is_nan() || delta < 0.0 {
        return (f64::INFINITY, f64::NAN);
    }
    if delta == 0.0 {
        // Only a mechanism that costs nothing at all is (0, 0)-DP.
        return if rdp.iter().all(|&r| r == 0.0) {
            (0.0, orders[0])
        } else {
            (f64::INFINITY, orders[0])
        };
    }
    let mut best = (f64::INFINITY, orders[0]);
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = if r.is_nan() || a.is_nan() {
            f64::INFINITY
        } else if delta * delta + (-r).exp_m1() >= 0.0 {
            0.0
        } else if a > 1.01 {
            r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
        } else {
            f64::INFINITY
        };
        if eps < best.0 {
            best = (eps, a);
        }
    }
    (best.0.max(0.0), best.1)
}

/// A running composition of SGM steps, possibly with different `q` and `z`.
#[derive(Debug, Clone, PartialEq)]
pub struct Accountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
}

impl Default for Accountant {
    fn default() -> Self {
        Self::new()
    }
}

impl Accountant {
    /// An empty composition over [`default_orders`].
    pub fn new() -> Self {
        let orders = default_orders();
        let rdp = vec![0.0; orders.len()];
        Accountant { orders, rdp }
    }

    /// Adds `steps` steps of the SGM with rate `q` and noise multiplier `z`.
    pub fn compose(&mut self, q: f64, noise_multiplier: f64, steps: u32) {
        let step = compute_rdp(q, noise_multiplier, steps, &self.orders);
        for (total, r) in self.rdp.iter_mut().zip(step) {
            *total += r;
        }
    }

    /// The orders tracked.
    pub fn orders(&self) -> &[f64] {
        &self.orders
    }

    /// The RDP composed so far, at each of [`Accountant::orders`].
    pub fn rdp(&self) -> &[f64] {
        &self.rdp
    }

    /// Epsilon at `delta` of everything composed so far.
    pub fn epsilon(&self, delta: f64) -> f64 {
        epsilon(&self.orders, &self.rdp, delta).0
    }
}

/// The smallest noise multiplier (to 0.1% relative) with which `steps` SGM steps at rate `q`
/// stay within (`epsilon`, `delta`) (Opacus's `get_noise_multiplier`, by bisection).
pub fn calibrate_noise(epsilon: f64, delta: f64, q: f64, steps: u32) -> Result<f64, DpError> {
    let invalid = |param: &'static str, reason: String| DpError::InvalidConfig { param, reason };
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(invalid(
            "epsilon",
            format!("must be a number > 0, got {epsilon}"),
        ));
    }
    if !(delta > 0.0 && delta < 1.0) {
        return Err(invalid("delta", format!("must be in (0, 1), got {delta}")));
    }
    if !(q > 0.0 && q <= 1.0) {
        return Err(invalid(
            "sampling_rate",
            format!("must be in (0, 1], got {q}"),
        ));
    }
    if steps == 0 {
        return Err(invalid("rounds", "must be at least 1".into()));
    }
    let max = super::MAX_NOISE_MULTIPLIER;
    let orders = default_orders();
    let eps_at = |z: f64| {
        let rdp = compute_rdp(q, z, steps, &orders);
        self::epsilon(&orders, &rdp, delta).0
    };
    // Upper bracket by doubling; `lo` always misses the target (or is 0), `hi` reaches it.
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while eps_at(hi) > epsilon {
        if hi >= max {
            return Err(DpError::Unreachable {
                epsilon,
                delta,
                rounds: steps,
                max,
            });
        }
        lo = hi;
        hi = (2.0 * hi).min(max);
    }
    // Bisection to 0.1% of `hi`. Each pass halves `hi - lo`; the bound on passes only matters
    // for an absurdly large epsilon whose noise multiplier is near 0 (then `hi` still reaches
    // the target).
    for _ in 0..2_000 {
        if hi - lo <= 1e-3 * hi {
            break;
        }
        let mid = 0.5 * (lo + hi);
        if eps_at(mid) <= epsilon {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}
