//! Tests of the accountant against published values, of the mechanisms' statistics and of
//! adaptive clipping's convergence.
//!
//! Every expected number of the accountant comes from the reference libraries' own test files
//! (cited at each test) or from a closed form; nothing here was computed by the code under test.

use super::accountant::{self, Accountant, calibrate_noise, compute_rdp, default_orders};
use super::*;

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
