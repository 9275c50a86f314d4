//! Aggregation strategies in the spirit of Flower's `server/strategy/`: one [`Strategy`] trait
//! (configure a round, aggregate fits given successes *and* failures, aggregate evaluation
//! metrics) and one implementation per algorithm, chosen by a [`StrategyConfig`] stored with
//! each group.
//!
//! The maths are pure functions over flat `&[f32]` parameter vectors (all tensors of a model
//! concatenated in layout order) in [`math`], with unit tests against hand-computed values.
//! This module knows nothing of HTTP, SQL or files.
//!
//! Every update is finite, but its values may be anywhere in the `f32` range: sums,
//! differences and squares are taken in `f64` and results saturate to the `f32` range, so
//! one member's extreme (finite) weights cannot overflow an aggregate to infinity.
//!
//! Two kinds of aggregation, see [`Accumulation`]:
//! - mean-type strategies (FedAvg, FedProx, FedAvgM, FedAdam, FedYogi, FedAdagrad) fold each
//!   update into a running weighted sum as it arrives ([`math::WeightedMean`]): memory is
//!   O(model), whatever the number of clients;
//! - robust strategies (FedMedian, FedTrimmedAvg, Krum / Multi-Krum) need every update of the
//!   round at once: memory is O(clients x model), and the caller loads them at round close.

pub mod config;
pub mod fedopt;
pub mod math;
pub mod robust;

#[cfg(test)]
mod flower_vectors;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use config::StrategyConfig;
pub use fedopt::ServerOptState;
pub use math::{MeanResult, WeightedMean};

/// What a strategy needs to see of a round's updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accumulation {
    /// A running sample-weighted mean, updated as each update arrives.
    RunningMean,
    /// Every update's full parameter vector, at round close.
    AllUpdates,
}

/// One successful local training result.
#[derive(Debug, Clone)]
pub struct FitRes {
    pub num_samples: u64,
    pub params: Vec<f32>,
}

/// A selected client that did not deliver (dropped out, missed the deadline, reported an error).
#[derive(Debug, Clone)]
pub struct FitFailure {
    pub member_id: i64,
    pub reason: String,
}

/// A round's successful updates, in the form the strategy asked for with
/// [`Strategy::accumulation`].
#[derive(Debug)]
pub enum Fits<'a> {
    Mean(MeanResult),
    All(&'a [FitRes]),
}

impl Fits<'_> {
    pub fn count(&self) -> usize {
        match self {
            Fits::Mean(m) => m.count,
            Fits::All(all) => all.len(),
        }
    }
}

/// One client's evaluation metrics (`accuracy`, `loss`, ...) on its local data.
#[derive(Debug, Clone)]
pub struct EvalRes {
    pub num_samples: u64,
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StrategyError {
    #[error("invalid strategy parameter `{param}`: {reason}")]
    InvalidParam { param: &'static str, reason: String },
    #[error("update has {got} parameters, the model has {expected}")]
    LengthMismatch { expected: usize, got: usize },
    #[error("{strategy} received its updates in the wrong form (internal error)")]
    WrongAccumulation { strategy: &'static str },
    #[error("optimiser state does not fit the model: {0}")]
    BadState(String),
    /// The aggregate holds a NaN or infinity: the round fails with this reason rather than
    /// store a model no client can use. Finite inputs never produce one (sums are taken in
    /// `f64`, results saturate to the `f32` range); this is the last guard.
    #[error("the aggregated model has a non-finite value ({value}) at index {index}")]
    NonFinite { index: usize, value: f32 },
    #[error("the round's updates count more than 2^64 samples in all")]
    TooManySamples,
    #[error(
        "{strategy} needs at least {needed} updates for the malicious members it tolerates, the round has {got}"
    )]
    TooFewUpdates {
        strategy: &'static str,
        needed: usize,
        got: usize,
    },
}

/// A federated aggregation strategy. Stateful strategies (server optimisers) expose their state
/// with [`Strategy::state`] so that it can be persisted with each global model and restored
/// after a restart with [`Strategy::load_state`].
pub trait Strategy: Send {
    fn name(&self) -> &'static str;

    /// Whether updates are folded into a running mean or all kept until round close.
    fn accumulation(&self) -> Accumulation;

    /// Strategy-specific settings sent to clients with round `round`'s config (e.g. FedProx's
    /// `proximal_mu`); the group's hyper-parameters are added by the caller.
    fn configure_fit(&self, _round: u32) -> Map<String, Value> {
        Map::new()
    }

    /// Aggregates a round. `current` is the global model the round started from. `Ok(None)`
    /// keeps the current model (nothing to aggregate); an error fails the round.
    fn aggregate_fit(
        &mut self,
        round: u32,
        current: &[f32],
        fits: Fits<'_>,
        failures: &[FitFailure],
    ) -> Result<Option<Vec<f32>>, StrategyError>;

    /// Sample-weighted mean of every metric, over the clients that reported it.
    fn aggregate_evaluate(&self, results: &[EvalRes]) -> BTreeMap<String, f64> {
        math::weighted_metrics(results)
    }

    /// The server optimiser's state after the last aggregation, if the strategy has one.
    fn state(&self) -> Option<ServerOptState> {
        None
    }

    /// Restores state saved by [`Strategy::state`].
    fn load_state(&mut self, _state: ServerOptState) -> Result<(), StrategyError> {
        Ok(())
    }
}

/// Plain sample-weighted averaging (McMahan et al. 2017). FedProx is the same on the server,
/// plus `proximal_mu` in the round config for the clients' proximal term.
#[derive(Debug, Clone)]
pub struct FedAvg {
    proximal_mu: Option<f64>,
}

impl FedAvg {
    pub fn new() -> Self {
        FedAvg { proximal_mu: None }
    }

    pub fn prox(proximal_mu: f64) -> Self {
        FedAvg {
            proximal_mu: Some(proximal_mu),
        }
    }
}

impl Default for FedAvg {
    fn default() -> Self {
        Self::new()
    }
}

impl Strategy for FedAvg {
    fn name(&self) -> &'static str {
        if self.proximal_mu.is_some() {
            "fedprox"
        } else {
            "fedavg"
        }
    }

    fn accumulation(&self) -> Accumulation {
        Accumulation::RunningMean
    }

    fn configure_fit(&self, _round: u32) -> Map<String, Value> {
        let mut config = Map::new();
        if let Some(mu) = self.proximal_mu {
            config.insert("proximal_mu".into(), Value::from(mu));
        }
        config
    }

    fn aggregate_fit(
        &mut self,
        _round: u32,
        current: &[f32],
        fits: Fits<'_>,
        _failures: &[FitFailure],
    ) -> Result<Option<Vec<f32>>, StrategyError> {
        let Some(mean) = math::mean_of(fits, current.len(), self.name())? else {
            return Ok(None);
        };
        Ok(Some(mean.params))
    }
}

/// Builds the strategy a group's config names. The config must have been validated.
pub fn build(config: &StrategyConfig) -> Box<dyn Strategy> {
    use StrategyConfig as C;
    match *config {
        C::FedAvg => Box::new(FedAvg::new()),
        C::FedProx { proximal_mu } => Box::new(FedAvg::prox(proximal_mu)),
        C::FedAvgM {
            server_lr,
            server_momentum,
        } => Box::new(fedopt::FedAvgM::new(server_lr, server_momentum)),
        C::FedAdam {
            eta,
            beta_1,
            beta_2,
            tau,
            ..
        } => Box::new(fedopt::FedOpt::new(
            fedopt::Variant::Adam,
            eta,
            beta_1,
            beta_2,
            tau,
        )),
        C::FedYogi {
            eta,
            beta_1,
            beta_2,
            tau,
            ..
        } => Box::new(fedopt::FedOpt::new(
            fedopt::Variant::Yogi,
            eta,
            beta_1,
            beta_2,
            tau,
        )),
        C::FedAdagrad {
            eta, beta_1, tau, ..
        } => Box::new(fedopt::FedOpt::new(
            fedopt::Variant::Adagrad,
            eta,
            beta_1,
            0.0,
            tau,
        )),
        C::FedMedian => Box::new(robust::FedMedian),
        C::FedTrimmedAvg { beta } => Box::new(robust::FedTrimmedAvg { beta }),
        C::Bulyan { num_malicious } => Box::new(robust::Bulyan { num_malicious }),
        C::Krum {
            num_malicious,
            num_to_keep,
        } => Box::new(robust::Krum {
            num_malicious,
            num_to_keep,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fedavg_strategy_averages_by_samples_and_keeps_model_without_fits() {
        let mut s = FedAvg::new();
        let mut acc = WeightedMean::new(2);
        acc.add(&[1.0, 2.0], 1).unwrap();
        acc.add(&[4.0, 8.0], 2).unwrap();
        let out = s
            .aggregate_fit(1, &[0.0, 0.0], Fits::Mean(acc.finish().unwrap()), &[])
            .unwrap();
        assert_eq!(out, Some(vec![3.0, 6.0]));
        let none = s
            .aggregate_fit(2, &[0.0, 0.0], Fits::All(&[]), &[])
            .unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn fedprox_sends_mu_to_clients() {
        let s = build(&StrategyConfig::FedProx { proximal_mu: 0.5 });
        assert_eq!(s.name(), "fedprox");
        assert_eq!(s.configure_fit(1)["proximal_mu"], 0.5);
        assert!(build(&StrategyConfig::FedAvg).configure_fit(1).is_empty());
        // As the owner wrote it, without float32 noise (0.10000000149011612 as f32).
        let config: StrategyConfig =
            serde_json::from_str(r#"{"name": "fedprox", "proximal_mu": 0.1}"#).unwrap();
        let sent = serde_json::to_string(&build(&config).configure_fit(1)).unwrap();
        assert_eq!(sent, r#"{"proximal_mu":0.1}"#);
        assert_eq!(
            serde_json::to_string(&config).unwrap(),
            r#"{"name":"fedprox","proximal_mu":0.1}"#
        );
    }

    #[test]
    fn every_config_builds_a_strategy_with_the_right_accumulation() {
        for (config, acc) in [
            (StrategyConfig::FedAvg, Accumulation::RunningMean),
            (StrategyConfig::FedMedian, Accumulation::AllUpdates),
            (
                StrategyConfig::FedTrimmedAvg { beta: 0.1 },
                Accumulation::AllUpdates,
            ),
            (
                StrategyConfig::Krum {
                    num_malicious: 1,
                    num_to_keep: 1,
                },
                Accumulation::AllUpdates,
            ),
            (
                StrategyConfig::Bulyan { num_malicious: 1 },
                Accumulation::AllUpdates,
            ),
            (StrategyConfig::default_fedadam(), Accumulation::RunningMean),
        ] {
            assert_eq!(build(&config).accumulation(), acc, "{config:?}");
        }
    }
}
