//! Server-side optimisers over the averaged update: FedAvgM (server momentum, Hsu et al. 2019)
//! and FedAdam / FedYogi / FedAdagrad (Reddi et al. 2021, "Adaptive Federated Optimization",
//! Algorithm 2), as Flower computes them: FedAdam with Flower's bias-corrected step size
//! ([`adam_step_size`]), FedYogi and FedAdagrad without. Each wraps the FedAvg averaging step
//! and keeps its own state, which [`ServerOptState`] serialises so that it survives restarts.

use std::collections::BTreeMap;

use super::math::{self, MeanResult};
use super::{Accumulation, FitFailure, Fits, Strategy, StrategyError};

/// A server optimiser's state: a step count and named vectors (`m`, `v`, `momentum`), each as
/// long as the model. Serialised with [`ServerOptState::to_bytes`], a small little-endian
/// format, because JSON would be ten times larger for a model of millions of parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerOptState {
    pub step: u64,
    pub vectors: BTreeMap<String, Vec<f32>>,
}

const MAGIC: &[u8; 8] = b"B3OOPT01";

impl ServerOptState {
    pub fn to_bytes(&self) -> Vec<u8> {
        let floats: usize = self.vectors.values().map(Vec::len).sum();
        let mut out = Vec::with_capacity(24 + floats * 4 + self.vectors.len() * 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.step.to_le_bytes());
        out.extend_from_slice(&(self.vectors.len() as u64).to_le_bytes());
        for (name, v) in &self.vectors {
            out.extend_from_slice(&(name.len() as u64).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StrategyError> {
        let bad = |what: &str| StrategyError::BadState(format!("corrupt state file: {what}"));
        let mut r = Reader { bytes, pos: 0 };
        if r.take(8).ok_or_else(|| bad("too short"))? != MAGIC {
            return Err(bad("wrong magic"));
        }
        let step = r.u64().ok_or_else(|| bad("step"))?;
        let count = r.u64().ok_or_else(|| bad("count"))?;
        let mut vectors = BTreeMap::new();
        for _ in 0..count {
            let name_len = r.u64().ok_or_else(|| bad("name length"))? as usize;
            let name = r.take(name_len).ok_or_else(|| bad("name"))?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| bad("name not UTF-8"))?;
            let len = r.u64().ok_or_else(|| bad("vector length"))? as usize;
            let raw = r
                .take(len.checked_mul(4).ok_or_else(|| bad("vector length"))?)
                .ok_or_else(|| bad("vector data"))?;
            let v = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            vectors.insert(name, v);
        }
        if r.pos != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(ServerOptState { step, vectors })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// FedAvgM step (Flower's formulation): `g = current - avg`; `mom = beta * mom + g` (just `g`
/// on the first step); `new = current - lr * mom`. With `beta = 0`, `lr = 1` it is FedAvg.
/// Computed in `f64`, stored saturated to the `f32` range (see [`math::saturate`]).
pub fn fedavgm_step(
    current: &[f32],
    avg: &[f32],
    momentum: &mut Option<Vec<f32>>,
    server_lr: f64,
    server_momentum: f64,
) -> Vec<f32> {
    let (lr, beta) = (server_lr, server_momentum);
    let grad = |i: usize| current[i] as f64 - avg[i] as f64;
    if server_momentum > 0.0 {
        let mut mom = momentum.take().unwrap_or_default();
        let first = mom.len() != current.len();
        if first {
            mom = vec![0.0; current.len()];
        }
        let mut out = Vec::with_capacity(current.len());
        for (i, m) in mom.iter_mut().enumerate() {
            let step = if first {
                grad(i)
            } else {
                beta * *m as f64 + grad(i)
            };
            *m = math::saturate(step);
            out.push(math::saturate(current[i] as f64 - lr * step));
        }
        *momentum = Some(mom);
        out
    } else {
        (0..current.len())
            .map(|i| math::saturate(current[i] as f64 - lr * grad(i)))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Adam,
    Yogi,
    Adagrad,
}

/// One adaptive server step: `d = avg - current`; `m = b1 m + (1 - b1) d`;
/// `v` = Adam `b2 v + (1 - b2) d²`, Yogi `v - (1 - b2) d² sign(v - d²)`, Adagrad `v + d²`;
/// `new = current + eta m / (sqrt(v) + tau)`, `eta` the step size (for FedAdam,
/// [`adam_step_size`]). `m` and `v` start at zero. Computed in `f64` (`d²` overflows `f32`
/// from `|d| > 1.8e19`), stored saturated to the `f32` range.
#[allow(clippy::too_many_arguments)]
pub fn fedopt_step(
    variant: Variant,
    current: &[f32],
    avg: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    eta: f64,
    beta_1: f64,
    beta_2: f64,
    tau: f64,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(current.len());
    for i in 0..current.len() {
        let d = avg[i] as f64 - current[i] as f64;
        let d2 = d * d;
        let (m_old, v_old) = (m[i] as f64, v[i] as f64);
        let m_new = beta_1 * m_old + (1.0 - beta_1) * d;
        let v_new = match variant {
            Variant::Adam => beta_2 * v_old + (1.0 - beta_2) * d2,
            Variant::Yogi => v_old - (1.0 - beta_2) * d2 * sign(v_old - d2),
            Variant::Adagrad => v_old + d2,
        };
        m[i] = math::saturate(m_new);
        v[i] = math::saturate(v_new);
        // With `tau = 0` a coordinate that never moved has m = v = 0: no step, not 0/0.
        let step = if m_new == 0.0 {
            0.0
        } else {
            eta * m_new / (v_new.sqrt() + tau)
        };
        out.push(math::saturate(current[i] as f64 + step));
    }
    out
}

/// FedAdam's step size in round `round` (1-based), bias-corrected as Flower does it:
/// `eta * sqrt(1 - beta_2^(round + 1)) / (1 - beta_1^(round + 1))` (Kingma & Ba's `alpha_t`,
/// with Flower's exponent `server_round + 1`).
pub fn adam_step_size(eta: f64, beta_1: f64, beta_2: f64, round: u32) -> f64 {
    let t = f64::from(round) + 1.0;
    eta * (1.0 - beta_2.powf(t)).sqrt() / (1.0 - beta_1.powf(t))
}

/// numpy's sign: 0 at 0 (`f64::signum` gives 1).
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn mean(
    fits: Fits<'_>,
    len: usize,
    name: &'static str,
) -> Result<Option<MeanResult>, StrategyError> {
    math::mean_of(fits, len, name)
}

fn check_len(name: &str, v: &[f32], len: usize) -> Result<(), StrategyError> {
    if v.len() != len {
        return Err(StrategyError::BadState(format!(
            "`{name}` has {} values, the model has {len}",
            v.len()
        )));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct FedAvgM {
    server_lr: f64,
    server_momentum: f64,
    step: u64,
    momentum: Option<Vec<f32>>,
}

impl FedAvgM {
    pub fn new(server_lr: f64, server_momentum: f64) -> Self {
        FedAvgM {
            server_lr,
            server_momentum,
            step: 0,
            momentum: None,
        }
    }
}

impl Strategy for FedAvgM {
    fn name(&self) -> &'static str {
        "fedavgm"
    }

    fn accumulation(&self) -> Accumulation {
        Accumulation::RunningMean
    }

    fn aggregate_fit(
        &mut self,
        _round: u32,
        current: &[f32],
        fits: Fits<'_>,
        _failures: &[FitFailure],
    ) -> Result<Option<Vec<f32>>, StrategyError> {
        let Some(avg) = mean(fits, current.len(), self.name())? else {
            return Ok(None);
        };
        if let Some(m) = &self.momentum {
            check_len("momentum", m, current.len())?;
        }
        self.step += 1;
        Ok(Some(fedavgm_step(
            current,
            &avg.params,
            &mut self.momentum,
            self.server_lr,
            self.server_momentum,
        )))
    }

    fn state(&self) -> Option<ServerOptState> {
        let mut vectors = BTreeMap::new();
        if let Some(m) = &self.momentum {
            vectors.insert("momentum".to_string(), m.clone());
        }
        Some(ServerOptState {
            step: self.step,
            vectors,
        })
    }

    fn load_state(&mut self, mut state: ServerOptState) -> Result<(), StrategyError> {
        self.step = state.step;
        self.momentum = state.vectors.remove("momentum");
        Ok(())
    }
}

/// FedAdam, FedYogi and FedAdagrad.
#[derive(Debug, Clone)]
pub struct FedOpt {
    variant: Variant,
    eta: f64,
    beta_1: f64,
    beta_2: f64,
    tau: f64,
    state: ServerOptState,
}

impl FedOpt {
    pub fn new(variant: Variant, eta: f64, beta_1: f64, beta_2: f64, tau: f64) -> Self {
        FedOpt {
            variant,
            eta,
            beta_1,
            beta_2,
            tau,
            state: ServerOptState::default(),
        }
    }
}

impl Strategy for FedOpt {
    fn name(&self) -> &'static str {
        match self.variant {
            Variant::Adam => "fedadam",
            Variant::Yogi => "fedyogi",
            Variant::Adagrad => "fedadagrad",
        }
    }

    fn accumulation(&self) -> Accumulation {
        Accumulation::RunningMean
    }

    fn aggregate_fit(
        &mut self,
        round: u32,
        current: &[f32],
        fits: Fits<'_>,
        _failures: &[FitFailure],
    ) -> Result<Option<Vec<f32>>, StrategyError> {
        let Some(avg) = mean(fits, current.len(), self.name())? else {
            return Ok(None);
        };
        let eta = match self.variant {
            Variant::Adam => adam_step_size(self.eta, self.beta_1, self.beta_2, round),
            Variant::Yogi | Variant::Adagrad => self.eta,
        };
        let len = current.len();
        let mut m = self
            .state
            .vectors
            .remove("m")
            .unwrap_or_else(|| vec![0.0; len]);
        let mut v = self
            .state
            .vectors
            .remove("v")
            .unwrap_or_else(|| vec![0.0; len]);
        check_len("m", &m, len)?;
        check_len("v", &v, len)?;
        let new = fedopt_step(
            self.variant,
            current,
            &avg.params,
            &mut m,
            &mut v,
            eta,
            self.beta_1,
            self.beta_2,
            self.tau,
        );
        self.state.vectors.insert("m".into(), m);
        self.state.vectors.insert("v".into(), v);
        self.state.step += 1;
        Ok(Some(new))
    }

    fn state(&self) -> Option<ServerOptState> {
        Some(self.state.clone())
    }

    fn load_state(&mut self, state: ServerOptState) -> Result<(), StrategyError> {
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::WeightedMean;

    fn mean_of(params: &[f32]) -> Fits<'static> {
        let mut acc = WeightedMean::new(params.len());
        acc.add(params, 3).unwrap();
        Fits::Mean(acc.finish().unwrap())
    }

    #[test]
    fn fedavgm_accumulates_momentum_across_rounds() {
        // lr 1, beta 0.5. Round 1: g = 0 - 1 = -1, mom = -1, new = 1.
        // Round 2: current 1, avg 1: g = 0, mom = 0.5 * -1 + 0 = -0.5, new = 1.5.
        let mut s = FedAvgM::new(1.0, 0.5);
        let r1 = s.aggregate_fit(1, &[0.0], mean_of(&[1.0]), &[]).unwrap();
        assert_eq!(r1, Some(vec![1.0]));
        let r2 = s.aggregate_fit(2, &[1.0], mean_of(&[1.0]), &[]).unwrap();
        assert_eq!(r2, Some(vec![1.5]));
    }

    #[test]
    fn fedavgm_without_momentum_is_fedavg() {
        let mut s = FedAvgM::new(1.0, 0.0);
        let r = s
            .aggregate_fit(1, &[5.0, 5.0], mean_of(&[1.0, 2.0]), &[])
            .unwrap();
        assert_eq!(r, Some(vec![1.0, 2.0]));
    }

    #[test]
    fn fedadam_first_step_by_hand() {
        // d = 1, m = 0.1, v = 0.01; Flower's bias-corrected step in round 1 (t = 2):
        // eta_t = sqrt(1 - 0.99^2) / (1 - 0.9^2) = 0.742460; new = eta_t * 0.1 / (0.1 + 0.1).
        let mut s = FedOpt::new(Variant::Adam, 1.0, 0.9, 0.99, 0.1);
        let r = s
            .aggregate_fit(1, &[0.0], mean_of(&[1.0]), &[])
            .unwrap()
            .unwrap();
        assert!((r[0] - 0.371_230).abs() < 1e-5, "{r:?}");
        let st = s.state().unwrap();
        assert!((st.vectors["m"][0] - 0.1).abs() < 1e-7);
        assert!((st.vectors["v"][0] - 0.01).abs() < 1e-7);
        assert_eq!(st.step, 1);
    }

    #[test]
    fn fedyogi_first_step_by_hand() {
        // d = 2, d² = 4, v = 0 - 0.01 * 4 * sign(-4) = 0.04, m = 0.2,
        // new = 0 + 1 * 0.2 / (0.2 + 0.2) = 0.5
        let mut s = FedOpt::new(Variant::Yogi, 1.0, 0.9, 0.99, 0.2);
        let r = s
            .aggregate_fit(1, &[0.0], mean_of(&[2.0]), &[])
            .unwrap()
            .unwrap();
        assert!((r[0] - 0.5).abs() < 1e-6, "{r:?}");
    }

    #[test]
    fn fedadagrad_two_steps_by_hand() {
        // beta_1 0: m = d. Step 1: d = 2, v = 4, new = 0 + 2 / (2 + 2) = 0.5.
        // Step 2 from 0.5 to avg 2.5: d = 2, v = 8, new = 0.5 + 2 / (sqrt(8) + 2).
        let mut s = FedOpt::new(Variant::Adagrad, 1.0, 0.0, 0.0, 2.0);
        let r = s
            .aggregate_fit(1, &[0.0], mean_of(&[2.0]), &[])
            .unwrap()
            .unwrap();
        assert!((r[0] - 0.5).abs() < 1e-6);
        let r = s
            .aggregate_fit(2, &[0.5], mean_of(&[2.5]), &[])
            .unwrap()
            .unwrap();
        let expected = 0.5 + 2.0 / (8f32.sqrt() + 2.0);
        assert!((r[0] - expected).abs() < 1e-6);
    }

    /// Regression (issue #19, 6a): `d²` and `current - avg` overflowed f32 for one member's
    /// extreme weights, and the round failed on a non-finite model.
    #[test]
    fn server_optimisers_stay_finite_for_extreme_averages() {
        for variant in [Variant::Adam, Variant::Yogi, Variant::Adagrad] {
            let mut s = FedOpt::new(variant, 0.1, 0.9, 0.99, 1e-9);
            for round in 1..4 {
                let r = s
                    .aggregate_fit(round, &[-3e38, 0.0], mean_of(&[3e38, f32::MAX]), &[])
                    .unwrap()
                    .unwrap();
                assert!(r.iter().all(|x| x.is_finite()), "{variant:?}: {r:?}");
                let st = s.state().unwrap();
                assert!(st.vectors.values().flatten().all(|x| x.is_finite()));
            }
        }
        let mut s = FedAvgM::new(10.0, 0.9);
        for round in 1..4 {
            let r = s
                .aggregate_fit(round, &[3e38, -3e38], mean_of(&[-3e38, 3e38]), &[])
                .unwrap()
                .unwrap();
            assert!(r.iter().all(|x| x.is_finite()), "{r:?}");
        }
    }

    #[test]
    fn state_survives_a_restart_through_bytes() {
        let mut s = FedOpt::new(Variant::Adam, 0.1, 0.9, 0.99, 1e-3);
        s.aggregate_fit(1, &[0.0, 1.0], mean_of(&[1.0, 0.0]), &[])
            .unwrap();
        let bytes = s.state().unwrap().to_bytes();
        let mut restored = FedOpt::new(Variant::Adam, 0.1, 0.9, 0.99, 1e-3);
        restored
            .load_state(ServerOptState::from_bytes(&bytes).unwrap())
            .unwrap();
        let a = s
            .aggregate_fit(2, &[0.3, 0.4], mean_of(&[0.5, 0.5]), &[])
            .unwrap();
        let b = restored
            .aggregate_fit(2, &[0.3, 0.4], mean_of(&[0.5, 0.5]), &[])
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn corrupt_state_is_an_error_not_a_panic() {
        let bytes = ServerOptState {
            step: 3,
            vectors: [("m".to_string(), vec![1.0, 2.0])].into(),
        }
        .to_bytes();
        for cut in 0..bytes.len() {
            assert!(ServerOptState::from_bytes(&bytes[..cut]).is_err());
        }
        let mut huge = bytes.clone();
        // vector length field -> u64::MAX
        let at = 8 + 8 + 8 + 8 + 1;
        huge[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(ServerOptState::from_bytes(&huge).is_err());
    }

    #[test]
    fn state_of_wrong_length_is_rejected() {
        let mut s = FedOpt::new(Variant::Adam, 0.1, 0.9, 0.99, 1e-3);
        s.load_state(ServerOptState {
            step: 1,
            vectors: [("m".to_string(), vec![0.0]), ("v".to_string(), vec![0.0])].into(),
        })
        .unwrap();
        assert!(matches!(
            s.aggregate_fit(2, &[0.0, 0.0], mean_of(&[1.0, 1.0]), &[]),
            Err(StrategyError::BadState(_))
        ));
    }
}
