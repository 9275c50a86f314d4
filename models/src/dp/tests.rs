//! Tests of the accountant against published values, of the mechanisms' statistics and of
//! adaptive clipping's convergence.
//!
//! Every expected number of the accountant comes from the reference libraries' own test files
//! (cited at each test) or from a closed form; nothing here was computed by the code under test.

use super::accountant::{self, Accountant, calibrate_noise, compute_rdp, default_orders};
use super::adaptive::{next_clipping_norm, update_noise_multiplier};
use super::mechanism::{add_gaussian, clip, l2_norm, standard_normal};
use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

/// `|actual - expected| <= rtol * |expected|` (infinities must match exactly).
#[track_caller]
fn assert_rel(actual: f64, expected: f64, rtol: f64) {
    if expected.is_infinite() {
        assert_eq!(actual, expected);
        return;
    }
    let err = (actual - expected).abs();
    assert!(
        err <= rtol * expected.abs(),
        "{actual} is not within {rtol} (relative) of {expected} (off by {:.3e})",
        err / expected.abs()
    );
}

/// `|actual - expected| <= atol`.
#[track_caller]
fn assert_abs(actual: f64, expected: f64, atol: f64) {
    assert!(
        (actual - expected).abs() <= atol,
        "{actual} is not within {atol} of {expected}"
    );
}

/// `[1 + x/10 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]`:
/// `dp_accounting`'s `DEFAULT_RDP_ORDERS` (python/dp_accounting/dp_accounting/rdp/
/// rdp_privacy_accountant.py), which TensorFlow Privacy's `compute_dp_sgd_privacy_lib` uses.
fn dp_accounting_default_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (1..100).map(|x| 1.0 + f64::from(x) / 10.0).collect();
    orders.extend((11..64).map(f64::from));
    orders.extend([128.0, 256.0, 512.0, 1024.0]);
    orders
}

/// The orders of TensorFlow Privacy's `compute_dp_sgd_privacy_lib.compute_dp_sgd_privacy`:
/// `[1.25, 1.5, 1.75, 2., 2.25, 2.5, 3., 3.5, 4., 4.5] + list(range(5, 64)) + [128, 256, 512]`.
fn tf_dp_sgd_orders() -> Vec<f64> {
    let mut orders = vec![1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5];
    orders.extend((5..64).map(f64::from));
    orders.extend([128.0, 256.0, 512.0]);
    orders
}

/// The conversion TensorFlow Privacy used before Dec 2020 (Mironov 2017, Proposition 3):
/// `eps = min_a (r_a - ln(delta) / (a - 1))`, with the order reaching it. Its published values
/// test the RDP itself, independently of the improved conversion.
fn classic_epsilon(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::NAN);
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = r - delta.ln() / (a - 1.0);
        if eps < best.0 {
            best = (eps, a);
        }
    }
    best
}

// ---------------------------------------------------------------------------------------------
// Accountant: published values.
// ---------------------------------------------------------------------------------------------

#[test]
fn default_orders_are_opacus_alphas_and_large_ones() {
    let orders = default_orders();
    // 99 fractional-step orders 1.1..=10.9, 52 integers 12..=63, then 128, 256, 512.
    assert_eq!(orders.len(), 99 + 52 + 3);
    assert_eq!(orders[0], 1.1);
    assert_eq!(orders[9], 2.0);
    assert_eq!(orders[98], 10.9);
    assert_eq!(orders[99], 12.0);
    assert_eq!(orders[150], 63.0);
    assert_eq!(&orders[151..], &[128.0, 256.0, 512.0]);
    assert!(orders.windows(2).all(|w| w[0] < w[1]));
}

/// TensorFlow Privacy, tensorflow_privacy/privacy/analysis/rdp_accountant_test.py,
/// `test_compute_rdp_scalar`: `compute_rdp(0.1, 2, 10, 5)` == 0.07737 (`places=5`). An integer
/// order: the binomial expansion.
#[test]
fn tf_compute_rdp_scalar_integer_order() {
    let rdp = compute_rdp(0.1, 2.0, 10, &[5.0]);
    assert_abs(rdp[0], 0.07737, 5e-6);
}

/// TensorFlow Privacy, rdp_accountant_test.py, `test_compute_rdp_sequence`, and
/// `dp_accounting`, python/dp_accounting/rdp/rdp_privacy_accountant_test.py,
/// `test_compute_rdp_poisson_sampled_gaussian`: q = 0.01, sigma = 2.5, 50 steps at orders
/// [1.5, 2.5, 5, 50, 100, inf], `rtol=1e-4`. Fractional orders 1.5 and 2.5 go through the
/// two-series expansion with erfc.
#[test]
fn tf_compute_rdp_sequence_fractional_and_integer_orders() {
    let orders = [1.5, 2.5, 5.0, 50.0, 100.0, f64::INFINITY];
    let expected = [
        6.5007e-04,
        1.0854e-03,
        2.1808e-03,
        2.3846e-02,
        1.6742e+02,
        f64::INFINITY,
    ];
    let rdp = compute_rdp(0.01, 2.5, 50, &orders);
    for (&r, &e) in rdp.iter().zip(&expected) {
        assert_rel(r, e, 1e-4);
    }
}

/// Degenerate cases: TensorFlow Privacy rdp_accountant_test.py `test_compute_rdp_no_data`
/// (q = 0 gives 0) and `test_compute_rdp_no_sampling` (q = 1, sigma = 10, order 20: 0.1 =
/// alpha / (2 sigma^2)); `dp_accounting` rdp_privacy_accountant_test.py
/// `test_compute_rdp_gaussian` (alpha = 3.14159, sigma = 2.71828: alpha / (2 sigma^2)) and
/// `test_epsilon_non_private_gaussian` (sigma = 0: epsilon infinite at delta 0.1).
#[test]
#[allow(clippy::approx_constant)] // 3.14159 and 2.71828 are the reference test's inputs
fn q_zero_q_one_closed_form_and_zero_noise() {
    assert_eq!(compute_rdp(0.0, 10.0, 1, &[20.0]), vec![0.0]);
    assert_rel(compute_rdp(1.0, 10.0, 1, &[20.0])[0], 0.1, 1e-15);
    let (alpha, sigma) = (3.14159, 2.71828);
    assert_rel(
        compute_rdp(1.0, sigma, 1, &[alpha])[0],
        alpha / (2.0 * sigma * sigma),
        1e-15,
    );
    // Steps multiply the closed form.
    assert_rel(
        compute_rdp(1.0, sigma, 7, &[alpha])[0],
        7.0 * alpha / (2.0 * sigma * sigma),
        1e-15,
    );
    let rdp = compute_rdp(1.0, 0.0, 1, &[alpha]);
    assert_eq!(rdp, vec![f64::INFINITY]);
    assert_eq!(accountant::epsilon(&[alpha], &rdp, 0.1).0, f64::INFINITY);
    // Sampled with zero noise: infinite too; no step at all: nothing spent.
    assert_eq!(
        compute_rdp(0.5, 0.0, 3, &[2.0, 2.5]),
        vec![f64::INFINITY; 2]
    );
    assert_eq!(compute_rdp(0.5, 1.0, 0, &[2.0, 2.5]), vec![0.0; 2]);
}

/// TensorFlow Privacy rdp_accountant_test.py `test_get_privacy_spent_check_target_delta` and
/// `dp_accounting` rdp_privacy_accountant_test.py `test_compute_epsilon_delta_pure_dp`:
/// RDP 1.1 at orders 2..=32 (pure DP), delta 1e-5: epsilon 1.32783806176 at order 32.
#[test]
fn epsilon_conversion_pure_dp() {
    let orders: Vec<f64> = (2..33).map(f64::from).collect();
    let rdp = vec![1.1; orders.len()];
    let (eps, order) = accountant::epsilon(&orders, &rdp, 1e-5);
    assert_abs(eps, 1.32783806176, 5e-8);
    assert_eq!(order, 32.0);
}

/// TensorFlow Privacy rdp_accountant_test.py `test_get_privacy_spent_check_target_delta`
/// (second part) and `dp_accounting` `test_compute_epsilon_delta_gaussian`: the Gaussian
/// mechanism (q = 1) with sigma 4.530877117 is exactly (1, 1e-6)-DP; over the orders
/// 0.001 * i, i in 1000..100000, the conversion gives epsilon 1 (`places=7`).
#[test]
fn epsilon_conversion_gaussian_mechanism() {
    let orders: Vec<f64> = (1000..100_000).map(|i| 0.001 * f64::from(i)).collect();
    let rdp = compute_rdp(1.0, 4.530877117, 1, &orders);
    let (eps, _) = accountant::epsilon(&orders, &rdp, 1e-6);
    assert_abs(eps, 1.0, 5e-8);
}

/// TensorFlow Privacy rdp_accountant_test.py `test_check_composition`: q = 1e-4, sigma 0.4,
/// 40000 steps, then q = 0.1, sigma 2, 100 steps, at its 21 orders, delta 1e-5. The published
/// 8.509656 (at order 2.5) is the old conversion's value, which the test keeps as an upper
/// bound of the improved one; the old conversion itself must give it to `places=5`.
#[test]
fn tf_check_composition() {
    let orders = [
        1.25, 1.5, 1.75, 2., 2.5, 3., 4., 5., 6., 7., 8., 10., 12., 14., 16., 20., 24., 28., 32.,
        64., 256.,
    ];
    let mut rdp = compute_rdp(1e-4, 0.4, 40_000, &orders);
    for (r, s) in rdp.iter_mut().zip(compute_rdp(0.1, 2.0, 100, &orders)) {
        *r += s;
    }
    let (eps, _) = accountant::epsilon(&orders, &rdp, 1e-5);
    assert!(eps <= 8.509656, "{eps}");
    let (classic, order) = classic_epsilon(&orders, &rdp, 1e-5);
    assert_abs(classic, 8.509656, 5e-6);
    assert_eq!(order, 2.5);
}

/// TensorFlow Privacy, tensorflow_privacy/privacy/analysis/compute_dp_sgd_privacy_test.py,
/// `test_compute_dp_sgd_privacy` (Test0, Test1, Test2): `compute_dp_sgd_privacy(n, batch_size,
/// noise_multiplier, epochs, delta)`, i.e. q = batch_size / n, steps = ceil(epochs n /
/// batch_size), over `tf_dp_sgd_orders()`, with the improved conversion (`assertAlmostEqual`,
/// 7 places; the optimal order exactly). The same test's values before the improved conversion
/// (commit be8175b "Improved conversion from Renyi DP to approx DP" replaced them: 0.941870567,
/// 1.70928734, 5907984.81339406 at the same orders) check the RDP with the classic one.
/// Test2 (sigma 0.1, optimal order 1.25) exercises the fractional series far from its easy
/// regime.
#[test]
fn tf_compute_dp_sgd_privacy() {
    let orders = tf_dp_sgd_orders();
    // (n, batch_size, noise_multiplier, epochs, delta, eps, order, classic eps)
    let cases = [
        (
            60_000.0_f64,
            150.0,
            1.3,
            15.0,
            1e-5,
            0.7242234026109595,
            19.0,
            0.941870567,
        ),
        (
            100_000.0,
            100.0,
            1.0,
            30.0,
            1e-7,
            1.4154988495444842,
            13.0,
            1.70928734,
        ),
        (
            1e8,
            1024.0,
            0.1,
            10.0,
            1e-7,
            5907982.3113984,
            1.25,
            5907984.81339406,
        ),
    ];
    for (n, batch, z, epochs, delta, eps_expected, order_expected, classic_expected) in cases {
        let q = batch / n;
        let steps = (epochs * n / batch).ceil() as u32;
        let rdp = compute_rdp(q, z, steps, &orders);
        let (eps, order) = accountant::epsilon(&orders, &rdp, delta);
        assert_rel(eps, eps_expected, 1e-6);
        assert_eq!(order, order_expected);
        let (classic, classic_order) = classic_epsilon(&orders, &rdp, delta);
        assert_rel(classic, classic_expected, 1e-6);
        assert_eq!(classic_order, order_expected);
    }
}

/// TensorFlow Privacy compute_dp_sgd_privacy_test.py `test_compute_dp_sgd_example_privacy`
/// (RDP rows): 1.2 epochs, noise multiplier 0.7 (halved to 0.35 "with microbatching"), delta
/// 1e-5, over `dp_accounting`'s default orders; without subsampling `ceil(1.2)` = 2 steps of the
/// Gaussian mechanism (q = 1, the closed form), with Poisson subsampling q = 0.01 and
/// `ceil(1.2 / 0.01)` = 120 steps. The subsampled values are the ones before commit 8b3d8e1
/// ("Improve numerical stability of RDP computation", Apr 2024), which switched
/// `dp_accounting` to summing the absolute values of the fractional series (an upper bound,
/// now 3.2392676 and 22.6248601); this accountant sums them with their signs, as TensorFlow
/// Privacy's `rdp_accountant` and Opacus do.
#[test]
fn tf_compute_dp_sgd_example_privacy() {
    let orders = dp_accounting_default_orders();
    let cases = [
        (1.0, 0.7, 2, 10.8602036, None),
        (1.0, 0.35, 2, 26.2880374, None),
        (0.01, 0.7, 120, 3.2391922, Some(3.2392676)),
        (0.01, 0.35, 120, 22.5970358, Some(22.6248601)),
    ];
    for (q, z, steps, expected, upper) in cases {
        let rdp = compute_rdp(q, z, steps, &orders);
        let (eps, _) = accountant::epsilon(&orders, &rdp, 1e-5);
        assert_abs(eps, expected, 5e-8);
        if let Some(upper) = upper {
            assert!(eps <= upper);
        }
    }
}

/// Opacus, opacus/tests/accountants_test.py `test_rdp_accountant`: noise multiplier 1.5,
/// sample rate 0.04, `int(90 / 0.04)` = 2250 steps, delta 1e-5: epsilon 7.32911117143
/// (`assertAlmostEqual`, 7 places), over Opacus's `DEFAULT_ALPHAS`, which
/// [`default_orders`] extends. Composed in several calls, as Opacus's accountant steps.
#[test]
fn opacus_rdp_accountant() {
    let mut acc = Accountant::new();
    acc.compose(0.04, 1.5, 1000);
    acc.compose(0.04, 1.5, 1249);
    acc.compose(0.04, 1.5, 1);
    assert_abs(acc.epsilon(1e-5), 7.32911117143, 5e-8);
    // One call gives the same vector (composition is a sum).
    let mut once = Accountant::new();
    once.compose(0.04, 1.5, 2250);
    for (a, b) in acc.rdp().iter().zip(once.rdp()) {
        assert_rel(*a, *b, 1e-12);
    }
}

/// Composition is additive, also across different mechanisms (`dp_accounting`
/// rdp_privacy_accountant_test.py `test_rdp_composition`: 6 compositions are 6 times one, and
/// a heterogeneous composition is the sum).
#[test]
fn heterogeneous_composition_is_the_sum() {
    let mut acc = Accountant::new();
    acc.compose(0.01, 1.1, 300);
    acc.compose(0.05, 2.0, 40);
    acc.compose(1.0, 8.0, 2);
    let orders = acc.orders().to_vec();
    let parts = [
        compute_rdp(0.01, 1.1, 300, &orders),
        compute_rdp(0.05, 2.0, 40, &orders),
        compute_rdp(1.0, 8.0, 2, &orders),
    ];
    for (k, r) in acc.rdp().iter().enumerate() {
        let sum: f64 = parts.iter().map(|p| p[k]).sum();
        assert_rel(*r, sum, 1e-12);
    }
    let six = compute_rdp(0.02, 1.3, 6, &orders);
    let one = compute_rdp(0.02, 1.3, 1, &orders);
    for (s, o) in six.iter().zip(&one) {
        assert_rel(*s, 6.0 * o, 1e-12);
    }
    // More steps never cost less.
    let mut more = acc.clone();
    more.compose(0.01, 1.1, 1);
    assert!(more.epsilon(1e-5) >= acc.epsilon(1e-5));
    assert_eq!(Accountant::new().epsilon(1e-5), 0.0);
}

/// The conversion's edge cases (as `dp_accounting`'s `compute_epsilon`): zero RDP is epsilon 0
/// (`test_zero_poisson_sample`); malformed input never gives a finite epsilon.
#[test]
fn epsilon_conversion_edge_cases() {
    let orders = default_orders();
    let zero = compute_rdp(0.0, 1.0, 10, &orders);
    assert_eq!(accountant::epsilon(&orders, &zero, 1e-10).0, 0.0);
    assert_eq!(accountant::epsilon(&orders, &zero, 0.0).0, 0.0);
    let some = compute_rdp(0.1, 1.0, 10, &orders);
    assert_eq!(accountant::epsilon(&orders, &some, 0.0).0, f64::INFINITY);
    assert_eq!(accountant::epsilon(&orders, &some, -1.0).0, f64::INFINITY);
    assert_eq!(
        accountant::epsilon(&orders, &some, f64::NAN).0,
        f64::INFINITY
    );
    assert_eq!(
        accountant::epsilon(&orders[1..], &some, 1e-5).0,
        f64::INFINITY
    );
    assert_eq!(accountant::epsilon(&[], &[], 1e-5).0, f64::INFINITY);
    // Only orders <= 1.01: no bound.
    assert_eq!(accountant::epsilon(&[1.01], &[0.5], 1e-5).0, f64::INFINITY);
    // A small RDP: the KL bound (delta^2 + expm1(-r) >= 0) gives epsilon 0.
    assert_eq!(accountant::epsilon(&[2.0], &[1e-12], 1e-5).0, 0.0);
    // NaN RDP values are skipped, not propagated.
    let (eps, order) = accountant::epsilon(&[2.0, 32.0], &[f64::NAN, 1.1], 1e-5);
    assert!(eps.is_finite());
    assert_eq!(order, 32.0);
    // Malformed mechanisms cost infinitely much.
    for (q, z) in [
        (-0.1, 1.0),
        (1.5, 1.0),
        (f64::NAN, 1.0),
        (0.1, -1.0),
        (0.1, f64::NAN),
    ] {
        assert_eq!(compute_rdp(q, z, 1, &[2.0, 2.5]), vec![f64::INFINITY; 2]);
    }
    assert_eq!(
        compute_rdp(0.1, 1.0, 1, &[0.5, 1.0, f64::NAN]),
        vec![f64::INFINITY; 3]
    );
}

/// Extreme parameters (the `dp_accounting` `test_compute_log_a_equals_mp` settings, where it
/// checks against multi-precision integration): the accountant returns a number (finite and
/// non-negative, or infinite), never NaN, and does not hang.
#[test]
fn extreme_parameters_stay_well_defined() {
    let cases = [
        (1e-7, 0.1, 1.01),
        (1e-6, 0.1, 256.0),
        (1e-5, 0.1, 256.1),
        (1e-6, 1.0, 27.0),
        (1e-4, 1.0, 1.5),
        (1e-3, 1.0, 2.0),
        (0.01, 10.0, 20.0),
        (0.1, 100.0, 20.5),
        (0.99, 0.1, 256.0),
        (0.999, 100.0, 256.1),
    ];
    for (q, z, alpha) in cases {
        let r = compute_rdp(q, z, 1, &[alpha])[0];
        assert!(r >= 0.0, "q={q} z={z} alpha={alpha}: {r}");
    }
    for z in [1e-3, 0.05, 0.3, 1.0, 3.0, 50.0, 1e4] {
        for q in [1e-9, 1e-3, 0.2, 0.5, 0.9, 0.999_999] {
            let rdp = compute_rdp(q, z, 10, &default_orders());
            assert!(rdp.iter().all(|r| *r >= 0.0), "q={q} z={z}: {rdp:?}");
            let (eps, _) = accountant::epsilon(&default_orders(), &rdp, 1e-5);
            assert!(eps >= 0.0, "q={q} z={z}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Calibration.
// ---------------------------------------------------------------------------------------------

fn epsilon_after(q: f64, z: f64, steps: u32, delta: f64) -> f64 {
    let mut acc = Accountant::new();
    acc.compose(q, z, steps);
    acc.epsilon(delta)
}

/// Opacus, opacus/tests/accountants_test.py `test_get_noise_multiplier_rdp_epochs` (epsilon 8,
/// delta 1e-5, sample rate 0.04, 90 epochs = `int(90 / 0.04)` = 2250 steps: 1.416, `places=4`)
/// and `test_get_noise_multiplier_rdp_steps` (the same with 2000 steps: 1.3562, `places=4`).
/// Opacus (opacus/accountants/utils.py `get_noise_multiplier`) bisects until epsilon is within
/// `epsilon_tolerance` = 0.01 below the target, so its multiplier reaches epsilon in
/// [7.99, 8]; rounded to 4 places it moves by at most 5e-5 / 1.35 = 3.7e-5 relative, which
/// moves epsilon by at most twice that (epsilon falls between 1/z and 1/z^2), < 6e-4 here.
/// Ours is the smallest multiplier to 0.1%. Epsilon falls at least as fast as 1/z, so Opacus's
/// 0.01 / 8 = 0.125% slack in epsilon is at most 0.125% in z: with the rounding the two agree
/// to 0.125% + 0.1% + 0.004% < 0.25%.
#[test]
fn opacus_get_noise_multiplier() {
    for (steps, opacus) in [(2250, 1.416), (2000, 1.3562)] {
        let eps = epsilon_after(0.04, opacus, steps, 1e-5);
        assert!((7.99 - 6e-4..=8.0 + 6e-4).contains(&eps), "{steps}: {eps}");
        let z = calibrate_noise(8.0, 1e-5, 0.04, steps).unwrap();
        assert_rel(z, opacus, 2.5e-3);
    }
}

/// Calibration round-trips: the multiplier reaches the target, one 0.1% smaller does not, so
/// epsilon is within 1% of the target (epsilon moves at most ~2x as fast as z in relative
/// terms: between 1/z and 1/z^2).
#[test]
fn calibration_round_trips() {
    let cases = [
        (1.0, 1e-5, 0.01, 1000),
        (3.0, 1e-5, 256.0 / 60_000.0, 14_063),
        (8.0, 1e-6, 0.1, 100),
        (0.5, 1e-5, 1.0, 10),
        (10.0, 1e-3, 0.5, 50),
        (2.0, 1e-5, 0.2, 1),
    ];
    for (eps, delta, q, steps) in cases {
        let z = calibrate_noise(eps, delta, q, steps).unwrap();
        let reached = epsilon_after(q, z, steps, delta);
        assert!(reached <= eps, "{eps} {q} {steps}: {reached}");
        assert!(reached >= 0.99 * eps, "{eps} {q} {steps}: {reached}");
        assert!(epsilon_after(q, z * (1.0 - 1e-3), steps, delta) > eps);
    }
}

#[test]
fn calibration_is_monotone_in_epsilon() {
    let (delta, q, steps) = (1e-5, 0.05, 200);
    let mut last = f64::INFINITY;
    for eps in [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0] {
        let z = calibrate_noise(eps, delta, q, steps).unwrap();
        assert!(z < last, "epsilon {eps}: {z} >= {last}");
        last = z;
    }
    // More rounds, or a higher sampling rate, need more noise.
    let base = calibrate_noise(1.0, delta, q, steps).unwrap();
    assert!(calibrate_noise(1.0, delta, q, 4 * steps).unwrap() > base);
    assert!(calibrate_noise(1.0, delta, 4.0 * q, steps).unwrap() > base);
}

/// The Gaussian mechanism (q = 1) over T steps needs about sqrt(2 T ln(1/delta)) / epsilon; with
/// T = 1000, delta = 1e-10 and epsilon 1e-3 that is ~2e5, past `MAX_NOISE_MULTIPLIER` = 1e4.
#[test]
fn calibration_unreachable() {
    let err = calibrate_noise(1e-3, 1e-10, 1.0, 1000).unwrap_err();
    assert_eq!(
        err,
        DpError::Unreachable {
            epsilon: 1e-3,
            delta: 1e-10,
            rounds: 1000,
            max: MAX_NOISE_MULTIPLIER
        }
    );
}

#[test]
fn calibration_refuses_invalid_inputs() {
    let param = |r: Result<f64, DpError>| match r {
        Err(DpError::InvalidConfig { param, .. }) => param,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    for eps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(param(calibrate_noise(eps, 1e-5, 0.1, 10)), "epsilon");
    }
    for delta in [0.0, 1.0, -1e-5, 1.5, f64::NAN] {
        assert_eq!(param(calibrate_noise(1.0, delta, 0.1, 10)), "delta");
    }
    for q in [0.0, -0.1, 1.0001, f64::NAN, f64::INFINITY] {
        assert_eq!(param(calibrate_noise(1.0, 1e-5, q, 10)), "sampling_rate");
    }
    assert_eq!(param(calibrate_noise(1.0, 1e-5, 0.1, 0)), "rounds");
}

/// A huge epsilon needs almost no noise: calibration still ends, with a tiny multiplier.
#[test]
fn calibration_huge_epsilon_ends() {
    let z = calibrate_noise(1e6, 1e-5, 0.5, 10).unwrap();
    assert!(z > 0.0 && z < 0.1, "{z}");
    assert!(epsilon_after(0.5, z, 10, 1e-5) <= 1e6);
}

// ---------------------------------------------------------------------------------------------
// Clipping.
// ---------------------------------------------------------------------------------------------

/// Random vectors of many sizes, scales and bounds: the clipped norm never exceeds the bound, the
/// direction is kept, short vectors are untouched, and the flag says which happened.
#[test]
fn clip_bounds_the_norm_and_keeps_the_direction() {
    let mut rng = StdRng::seed_from_u64(0xC11F);
    let sizes = [1usize, 2, 3, 7, 64, 1000, 10_007];
    let scales = [1e-30f64, 1e-6, 1e-2, 1.0, 3.0, 1e3, 1e15];
    let bounds = [1e-30f64, 1e-3, 0.1, 1.0, 10.0, 1e6];
    for &n in &sizes {
        for &scale in &scales {
            for &bound in &bounds {
                let original: Vec<f32> = (0..n)
                    .map(|_| (rng.random_range(-1.0..1.0) * scale) as f32)
                    .collect();
                let norm = l2_norm(&original);
                let mut v = original.clone();
                let c = clip(&mut v, bound);
                assert_eq!(c.norm, norm);
                assert_eq!(c.clipped, norm > bound, "n={n} scale={scale} bound={bound}");
                let after = l2_norm(&v);
                assert!(after <= bound || !c.clipped, "{after} > {bound}");
                if !c.clipped {
                    assert_eq!(v, original, "an update within the bound must not change");
                    continue;
                }
                // Scaled down to the bound, up to f32 rounding (2^-24 relative per value,
                // plus the few ulp-sized shrink steps).
                assert!(after >= bound * (1.0 - 1e-5), "{after} vs {bound}");
                // Same direction: every value is the original times one factor.
                let factor = bound / norm;
                for (a, o) in v.iter().zip(&original) {
                    let expected = f64::from(*o) * factor;
                    assert!(
                        (f64::from(*a) - expected).abs() <= 1e-6 * expected.abs() + 1e-44,
                        "{a} vs {expected}"
                    );
                }
            }
        }
    }
}

#[test]
fn clip_edge_cases() {
    // Exactly on the bound: unchanged, not clipped.
    let mut v = vec![3.0f32, 4.0];
    let c = clip(&mut v, 5.0);
    assert!(!c.clipped);
    assert_eq!(v, vec![3.0, 4.0]);
    // Closed form: (3, 4) clipped to 1 is (0.6, 0.8).
    let c = clip(&mut v, 1.0);
    assert!(c.clipped);
    assert_eq!(c.norm, 5.0);
    // To a few f32 ulps (rounding, then the one-ulp shrink steps).
    assert!((f64::from(v[0]) - 0.6).abs() < 1e-6 && (f64::from(v[1]) - 0.8).abs() < 1e-6);
    // Empty and zero vectors are within any bound.
    let mut empty: Vec<f32> = Vec::new();
    assert!(!clip(&mut empty, 1.0).clipped);
    let mut zeros = vec![0.0f32; 10];
    assert!(!clip(&mut zeros, 1.0).clipped);
    assert_eq!(zeros, vec![0.0; 10]);
    // Non-finite values: the whole vector becomes zeros, and counts as clipped.
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut v = vec![1.0f32, bad, -2.0, 0.5];
        let c = clip(&mut v, 1.0);
        assert!(c.clipped);
        assert!(!c.norm.is_finite());
        assert_eq!(v, vec![0.0; 4]);
    }
    // A NaN or negative bound (never valid settings) zeroes the vector rather than scaling it
    // by NaN or flipping it.
    for bound in [f64::NAN, -1.0] {
        let mut v = vec![1.0f32, -2.0];
        assert!(clip(&mut v, bound).clipped);
        assert_eq!(v, vec![0.0; 2]);
    }
    // A zero bound zeroes any non-zero vector.
    let mut v = vec![1.0f32, -2.0];
    assert!(clip(&mut v, 0.0).clipped);
    assert_eq!(l2_norm(&v), 0.0);
    // Values whose squares overflow f32 are fine (the norm is taken in f64).
    let mut big = vec![f32::MAX, -f32::MAX];
    let c = clip(&mut big, 1.0);
    assert!(c.clipped && l2_norm(&big) <= 1.0 && l2_norm(&big) > 0.99);
}

/// Bounds so small that the clipped values are subnormal f32 (or round to 0): the norm must still
/// not exceed the bound.
#[test]
fn clip_to_a_subnormal_bound() {
    let mut rng = StdRng::seed_from_u64(7);
    for bound in [1e-38, 1e-40, 1e-42, 1e-44, 1e-45, 1e-50] {
        for n in [1usize, 2, 5, 100] {
            let mut v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let c = clip(&mut v, bound);
            assert!(c.clipped);
            assert!(l2_norm(&v) <= bound, "n={n}: {} > {bound}", l2_norm(&v));
        }
    }
}

/// A proptest over arbitrary finite vectors and bounds.
mod clip_props {
    use super::super::mechanism::{clip, l2_norm};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn clipped_norm_within_bound(
            v in proptest::collection::vec(-1e30f32..1e30f32, 0..200),
            bound in 1e-20f64..1e20,
        ) {
            let mut w = v.clone();
            let c = clip(&mut w, bound);
            prop_assert!(l2_norm(&w) <= bound);
            prop_assert_eq!(c.clipped, l2_norm(&v) > bound);
            if !c.clipped {
                prop_assert_eq!(w, v);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Gaussian noise.
// ---------------------------------------------------------------------------------------------

/// The noise is N(0, s^2). With N draws x_i, the sample variance S^2 has mean s^2 and, for a
/// normal, variance 2 s^4 / (N - 1) (S^2 (N-1) / s^2 is chi-squared with N - 1 degrees of
/// freedom, variance 2 (N - 1)); its standard error is s^2 sqrt(2 / (N - 1)). The sample mean
/// has standard error s / sqrt(N). Both are checked to 5 standard errors (a false failure has
/// probability below 1e-6 per check). For N = 200,000 that is 1.6% of s^2 for the variance.
/// The share of draws within one s of 0 must be P(|Z| < 1) = erf(1/sqrt 2) = 0.682689..., to 5
/// standard errors sqrt(p (1 - p) / N).
#[test]
fn gaussian_noise_has_the_right_standard_deviation() {
    const N: usize = 200_000;
    for (seed, s, offset) in [
        (1u64, 1.0f64, 0.0f32),
        (2, 2.5, 0.0),
        (3, 0.01, 0.0),
        (4, 7.0, 3.0),
    ] {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut v = vec![offset; N];
        add_gaussian(&mut v, s, &mut rng);
        let noise: Vec<f64> = v
            .iter()
            .map(|x| f64::from(*x) - f64::from(offset))
            .collect();
        let n = N as f64;
        let mean = noise.iter().sum::<f64>() / n;
        let var = noise.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        assert!(mean.abs() <= 5.0 * s / n.sqrt(), "s={s}: mean {mean}");
        let se_var = s * s * (2.0 / (n - 1.0)).sqrt();
        assert!(
            (var - s * s).abs() <= 5.0 * se_var,
            "s={s}: variance {var} vs {}",
            s * s
        );
        let p = libm::erf(1.0 / std::f64::consts::SQRT_2);
        let within = noise.iter().filter(|x| x.abs() < s).count() as f64 / n;
        assert!(
            (within - p).abs() <= 5.0 * (p * (1.0 - p) / n).sqrt(),
            "s={s}: {within}"
        );
    }
}

#[test]
fn gaussian_noise_is_not_constant() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut v = vec![0.0f32; 1000];
    add_gaussian(&mut v, 1.0, &mut rng);
    let mut distinct = v.clone();
    distinct.sort_by(|a, b| a.total_cmp(b));
    distinct.dedup();
    assert!(distinct.len() > 990, "{} distinct values", distinct.len());
    assert!(v.iter().any(|x| *x > 0.0) && v.iter().any(|x| *x < 0.0));
    // Two draws differ; the same seed gives the same draw.
    let mut w = vec![0.0f32; 1000];
    add_gaussian(&mut w, 1.0, &mut rng);
    assert_ne!(v, w);
    let mut again = vec![0.0f32; 1000];
    add_gaussian(&mut again, 1.0, &mut StdRng::seed_from_u64(11));
    assert_eq!(v, again);
    // No noise asked: nothing added.
    let mut quiet = vec![1.5f32; 10];
    add_gaussian(&mut quiet, 0.0, &mut rng);
    assert_eq!(quiet, vec![1.5; 10]);
    let x: f64 = (0..10).map(|_| standard_normal(&mut rng)).sum();
    assert!(x != 0.0 && x.is_finite());
}

// ---------------------------------------------------------------------------------------------
// Adaptive clipping.
// ---------------------------------------------------------------------------------------------

/// Flower, framework/py/flwr/common/differential_privacy_test.py
/// `test_compute_adaptive_noise_params`: z = 3 with clipped_count_stddev 5 gives
/// `(3^-2 - (2*5)^-2)^-0.5` (rtol 1e-6); z = 10 with 100 clients (stddev 100/20 = 5) is
/// refused (z >= 2 stddev); z = 0 gives 0. And z = 1.0 with stddev 5:
/// (1 - 1/100)^-1/2 = 1.00503781525921...
#[test]
fn update_noise_multiplier_formula_and_flower_values() {
    assert_rel(
        update_noise_multiplier(3.0, 5.0).unwrap(),
        (3.0f64.powi(-2) - 10.0f64.powi(-2)).powf(-0.5),
        1e-12,
    );
    assert_rel(
        update_noise_multiplier(1.0, 5.0).unwrap(),
        1.0 / 0.99f64.sqrt(),
        1e-12,
    );
    assert_rel(
        update_noise_multiplier(1.0, 5.0).unwrap(),
        1.005_037_815_259_212,
        1e-12,
    );
    assert_eq!(update_noise_multiplier(0.0, 5.0).unwrap(), 0.0);
    // Always a bit more than z (the count took part of the budget).
    for (z, s) in [(0.5, 1.0), (1.1, 5.0), (4.0, 2.5), (9.9, 5.0)] {
        assert!(update_noise_multiplier(z, s).unwrap() > z);
    }
    for (z, s) in [
        (10.0, 5.0),
        (10.5, 5.0),
        (2.0, 1.0),
        (1.0, 0.0),
        (1.0, -1.0),
    ] {
        match update_noise_multiplier(z, s) {
            Err(DpError::InvalidConfig { param, .. }) => {
                assert_eq!(param, "adaptive.clipped_count_stddev")
            }
            other => panic!("z={z} s={s}: {other:?}"),
        }
    }
}

#[test]
fn next_clipping_norm_formula() {
    // C exp(-lr (share - target)).
    assert_rel(
        next_clipping_norm(1.0, 80.0, 100, 0.5, 0.2),
        (-0.2f64 * 0.3).exp(),
        1e-15,
    );
    assert_rel(
        next_clipping_norm(2.0, 10.0, 100, 0.5, 0.2),
        2.0 * (0.2f64 * 0.4).exp(),
        1e-15,
    );
    assert_eq!(next_clipping_norm(0.7, 50.0, 100, 0.5, 0.2), 0.7);
    // Nothing reported: unchanged.
    assert_eq!(next_clipping_norm(0.7, 3.0, 0, 0.5, 0.2), 0.7);
    // Too many unclipped shrinks it; too few grows it.
    assert!(next_clipping_norm(1.0, 90.0, 100, 0.5, 0.2) < 1.0);
    assert!(next_clipping_norm(1.0, 10.0, 100, 0.5, 0.2) > 1.0);
}

/// One simulation of adaptive clipping (Andrew et al. 2021) on synthetic update norms: every
/// round 100 clients draw their norm from LogNormal(mu, sigma_ln), report "unclipped"
/// (norm <= C), the server adds N(0, stddev^2) to the count (stddev = 100 / 20 = 5) and moves C.
/// Returns (mean share of norms <= C, mean C) over the last 100 of 500 rounds.
fn simulate_adaptive(seed: u64, target: f64, mu: f64, sigma_ln: f64) -> (f64, f64) {
    let (clients, rounds, tail, lr, stddev) = (100usize, 500usize, 100usize, 0.2, 100.0 / 20.0);
    let dist = LogNormal::new(mu, sigma_ln).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = 0.1;
    let (mut share_sum, mut c_sum) = (0.0, 0.0);
    for round in 0..rounds {
        let unclipped = (0..clients).filter(|_| dist.sample(&mut rng) <= c).count() as f64;
        if round >= rounds - tail {
            share_sum += unclipped / clients as f64;
            c_sum += c;
        }
        let noisy = unclipped + stddev * standard_normal(&mut rng);
        c = next_clipping_norm(c, noisy, clients, target, lr);
    }
    (share_sum / tail as f64, c_sum / tail as f64)
}

/// Adaptive clipping converges to the target quantile.
///
/// Tolerances, from the linearised dynamics: with x = ln C - ln C*, one round is
/// x' = x - lr (f x + e), f = the density of ln(norm) at ln C* = phi(z_g) / sigma_ln (z_g the
/// standard normal g-quantile), e = the round's error on the share: binomial sampling
/// sqrt(g (1 - g) / 100) and the count's noise 5 / 100 = 0.05.
/// - g = 0.5, sigma_ln = 0.5: f = 0.80, a = 1 - lr f = 0.84, sd(e) = 0.071; stationary
///   sd(x) = lr sd(e) / sqrt(1 - a^2) = 0.026; 100 rounds of an AR(1) with a = 0.84 average like
///   100 (1 - a) / (1 + a) = 8.7 independent ones: sd(mean ln C) = 0.009, and the mean share
///   has sd sqrt(0.05^2 / 100 + (0.8 * 0.009)^2) = 0.009.
/// - g = 0.8: f = 0.56, a = 0.89, sd(e) = 0.064, sd(x) = 0.028, 5.9 effective rounds:
///   sd(mean ln C) = 0.012, mean share sd = 0.008.
///
/// So 0.05 on the share is more than 5 sd and 10% on C more than 8 sd, for any seed. Starting
/// from C = 0.1, C reaches the quantile within ~25 rounds (ln C moves by lr g per round while
/// everything is clipped), then the error shrinks by a = 0.89 a round: 400 rounds of burn-in
/// leave nothing of the start. Three fixed seeds per target.
#[test]
fn adaptive_clipping_converges_to_the_target_quantile() {
    // Standard normal quantiles: z_0.5 = 0, z_0.8 = 0.8416212335729143.
    let (mu, sigma_ln) = (0.0f64, 0.5);
    for (target, z_g) in [(0.5, 0.0), (0.8, 0.841_621_233_572_914_3)] {
        let true_quantile = (mu + sigma_ln * z_g).exp();
        for seed in [1u64, 2, 3] {
            let (share, c) = simulate_adaptive(seed, target, mu, sigma_ln);
            assert!(
                (share - target).abs() <= 0.05,
                "target {target} seed {seed}: share {share}"
            );
            assert!(
                (c / true_quantile - 1.0).abs() <= 0.10,
                "target {target} seed {seed}: C {c} vs {true_quantile}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Settings.
// ---------------------------------------------------------------------------------------------

fn config(epsilon: f64) -> DpConfig {
    DpConfig {
        epsilon,
        delta: 1e-5,
        placement: DpPlacement::Central,
        clipping_norm: None,
        noise_multiplier: None,
        adaptive: None,
    }
}

#[track_caller]
fn refused(r: Result<impl std::fmt::Debug, DpError>, expected: &str) {
    match r {
        Err(DpError::InvalidConfig { param, .. }) => assert_eq!(param, expected),
        other => panic!("expected InvalidConfig({expected}), got {other:?}"),
    }
}

#[test]
fn validate_names_the_bad_field() {
    assert!(config(1.0).validate().is_ok());
    for eps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        refused(config(eps).validate(), "epsilon");
    }
    for delta in [0.0, 1.0, 1.5, -1e-5, f64::NAN] {
        refused(
            DpConfig {
                delta,
                ..config(1.0)
            }
            .validate(),
            "delta",
        );
    }
    for c in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let cfg = DpConfig {
            clipping_norm: Some(c),
            ..config(1.0)
        };
        refused(cfg.validate(), "clipping_norm");
    }
    for z in [
        0.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        2.0 * MAX_NOISE_MULTIPLIER,
    ] {
        let cfg = DpConfig {
            noise_multiplier: Some(z),
            ..config(1.0)
        };
        refused(cfg.validate(), "noise_multiplier");
    }
    let adaptive = |a: AdaptiveClipping| DpConfig {
        adaptive: Some(a),
        ..config(1.0)
    };
    assert!(adaptive(AdaptiveClipping::default()).validate().is_ok());
    let local = DpConfig {
        placement: DpPlacement::Local,
        ..adaptive(AdaptiveClipping::default())
    };
    refused(local.validate(), "adaptive");
    for g in [-0.1, 1.1, f64::NAN] {
        let a = AdaptiveClipping {
            target_clipped_quantile: g,
            ..Default::default()
        };
        refused(adaptive(a).validate(), "adaptive.target_clipped_quantile");
    }
    for lr in [0.0, -0.2, 10.5, f64::NAN, f64::INFINITY] {
        let a = AdaptiveClipping {
            clip_norm_lr: lr,
            ..Default::default()
        };
        refused(adaptive(a).validate(), "adaptive.clip_norm_lr");
    }
    for s in [0.0, -5.0, f64::NAN, f64::INFINITY] {
        let a = AdaptiveClipping {
            clipped_count_stddev: Some(s),
            ..Default::default()
        };
        refused(adaptive(a).validate(), "adaptive.clipped_count_stddev");
    }
    // The first bad field is named.
    let cfg = DpConfig {
        delta: 2.0,
        clipping_norm: Some(-1.0),
        ..config(0.0)
    };
    refused(cfg.validate(), "epsilon");
}

#[test]
fn resolve_calibrates_or_keeps_the_noise_multiplier() {
    let (rounds, q) = (100, 0.1);
    let p = config(2.0).resolve(rounds, q, 10.0).unwrap();
    assert_eq!(
        p.noise_multiplier,
        calibrate_noise(2.0, 1e-5, q, rounds).unwrap()
    );
    assert_eq!(p.update_noise_multiplier, p.noise_multiplier);
    assert!(p.epsilon_after(rounds) <= 2.0);
    assert!(p.epsilon_after(rounds) >= 0.99 * 2.0);
    assert!(p.epsilon_after(rounds + 50) > 2.0);
    assert_eq!(p.clipping_norm, 1.0);
    assert_eq!(p.planned_rounds, rounds);
    assert_eq!((p.epsilon, p.delta, p.sampling_rate), (2.0, 1e-5, q));
    assert!(p.adaptive.is_none());

    let given = DpConfig {
        noise_multiplier: Some(0.9),
        clipping_norm: Some(3.0),
        placement: DpPlacement::Local,
        ..config(2.0)
    };
    let p = given.resolve(rounds, q, 10.0).unwrap();
    assert_eq!((p.noise_multiplier, p.update_noise_multiplier), (0.9, 0.9));
    assert_eq!(p.clipping_norm, 3.0);
    assert_eq!(p.placement, DpPlacement::Local);

    // Zero rounds plan one.
    assert_eq!(config(2.0).resolve(0, q, 10.0).unwrap().planned_rounds, 1);
    for bad in [0.0, -0.1, 1.5, f64::NAN] {
        refused(config(2.0).resolve(rounds, bad, 10.0), "sampling_rate");
    }
    refused(config(-2.0).resolve(rounds, q, 10.0), "epsilon");
    // A budget no noise multiplier reaches.
    let r = DpConfig {
        delta: 1e-10,
        ..config(1e-3)
    }
    .resolve(1000, 1.0, 10.0);
    assert!(
        matches!(r, Err(DpError::Unreachable { rounds: 1000, .. })),
        "{r:?}"
    );
}

#[test]
fn resolve_adaptive_clipping() {
    let cfg = DpConfig {
        noise_multiplier: Some(1.0),
        adaptive: Some(AdaptiveClipping::default()),
        ..config(2.0)
    };
    // Default stddev: clients per round / 20.
    let p = cfg.resolve(10, 0.1, 100.0).unwrap();
    let a = p.adaptive.clone().unwrap();
    assert_eq!(a.clipped_count_stddev, 5.0);
    assert_eq!((a.target_clipped_quantile, a.clip_norm_lr), (0.5, 0.2));
    assert_rel(p.update_noise_multiplier, (1.0 - 0.01f64).powf(-0.5), 1e-12);
    assert_eq!(p.noise_multiplier, 1.0);
    assert_eq!(p.clipping_norm, 0.1);
    // Given stddev kept.
    let given = DpConfig {
        adaptive: Some(AdaptiveClipping {
            clipped_count_stddev: Some(2.0),
            ..Default::default()
        }),
        ..cfg.clone()
    };
    let p = given.resolve(10, 0.1, 100.0).unwrap();
    assert_eq!(p.adaptive.unwrap().clipped_count_stddev, 2.0);
    assert_rel(
        p.update_noise_multiplier,
        (1.0 - 1.0 / 16.0f64).powf(-0.5),
        1e-12,
    );
    // Too few clients for the noise: 10 clients give stddev 0.5, z = 1 >= 2 * 0.5.
    refused(cfg.resolve(10, 0.1, 10.0), "adaptive.clipped_count_stddev");
    // Fewer than one client counts as one.
    let small = DpConfig {
        noise_multiplier: Some(0.01),
        ..cfg
    };
    let p = small.resolve(10, 0.1, 0.0).unwrap();
    assert_eq!(p.adaptive.unwrap().clipped_count_stddev, 0.05);
}

#[test]
fn config_serde_defaults() {
    let cfg: DpConfig = serde_json::from_str(r#"{"epsilon": 3}"#).unwrap();
    assert_eq!(cfg, config(3.0));
    let cfg: DpConfig =
        serde_json::from_str(r#"{"epsilon": 3, "placement": "local", "adaptive": {}}"#).unwrap();
    assert_eq!(cfg.placement, DpPlacement::Local);
    assert_eq!(cfg.adaptive, Some(AdaptiveClipping::default()));
    refused(cfg.validate(), "adaptive");
    assert!(serde_json::from_str::<DpConfig>(r#"{"epsilon": 3, "sigma": 1}"#).is_err());
    assert!(serde_json::from_str::<DpConfig>(r#"{"delta": 1e-5}"#).is_err());
}
