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

/// The orders (alpha) the accountant tracks: Opacus's `DEFAULT_ALPHAS` plus TensorFlow
/// Privacy's large ones: `1.1, 1.2, ..., 10.9`, `12, ..., 63`, `128, 256, 512`.
pub fn default_orders() -> Vec<f64> {
    todo!()
}

/// RDP of `steps` compositions of the SGM with sampling rate `q` and noise multiplier `z`, at
/// each of `orders` (TensorFlow Privacy's `compute_rdp`). `z = 0` gives infinity; `q = 0` zero.
pub fn compute_rdp(q: f64, noise_multiplier: f64, steps: u32, orders: &[f64]) -> Vec<f64> {
    let _ = (q, noise_multiplier, steps, orders);
    todo!()
}

/// The smallest epsilon at `delta` over the orders, and the order that gives it
/// (`get_privacy_spent`). Never negative; infinite when no order gives a finite bound.
pub fn epsilon(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    let _ = (orders, rdp, delta);
    todo!()
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
        let _ = (q, noise_multiplier, steps);
        todo!()
    }

    /// Epsilon at `delta` of everything composed so far.
    pub fn epsilon(&self, delta: f64) -> f64 {
        epsilon(&self.orders, &self.rdp, delta).0
    }
}

/// The smallest noise multiplier (to 0.1% relative) with which `steps` SGM steps at rate `q`
/// stay within (`epsilon`, `delta`) (Opacus's `get_noise_multiplier`, by bisection).
pub fn calibrate_noise(epsilon: f64, delta: f64, q: f64, steps: u32) -> Result<f64, DpError> {
    let _ = (epsilon, delta, q, steps);
    todo!()
}
