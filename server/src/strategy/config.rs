//! [`StrategyConfig`]: which strategy a group uses, with its parameters, as stored with the
//! group and sent over the API: `{"name": "fedadam", "eta": 0.1, ...}`. Omitted parameters take
//! Flower's defaults.

use serde::{Deserialize, Serialize};

use super::StrategyError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase", deny_unknown_fields)]
pub enum StrategyConfig {
    #[default]
    FedAvg,
    FedProx {
        proximal_mu: f64,
    },
    FedAvgM {
        /// Flower calls it `server_learning_rate`; both names are accepted.
        #[serde(default = "one", alias = "server_learning_rate")]
        server_lr: f64,
        #[serde(default)]
        server_momentum: f64,
    },
    FedAdam {
        #[serde(default = "eta_default")]
        eta: f64,
        #[serde(default = "beta_1_default")]
        beta_1: f64,
        #[serde(default = "beta_2_default")]
        beta_2: f64,
        #[serde(default = "tau_default")]
        tau: f64,
        /// Flower's client-side learning rate: accepted and kept for reference, as in Flower
        /// (its FedOpt strategies store it and never use it); members train with the group's
        /// `hyperparameters.lr`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eta_l: Option<f64>,
    },
    FedYogi {
        #[serde(default = "yogi_eta_default")]
        eta: f64,
        #[serde(default = "beta_1_default")]
        beta_1: f64,
        #[serde(default = "beta_2_default")]
        beta_2: f64,
        #[serde(default = "yogi_tau_default")]
        tau: f64,
        /// Flower's client-side learning rate: accepted and kept for reference, as in Flower
        /// (its FedOpt strategies store it and never use it); members train with the group's
        /// `hyperparameters.lr`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eta_l: Option<f64>,
    },
    FedAdagrad {
        #[serde(default = "eta_default")]
        eta: f64,
        #[serde(default)]
        beta_1: f64,
        #[serde(default = "tau_default")]
        tau: f64,
        /// Flower's client-side learning rate: accepted and kept for reference, as in Flower
        /// (its FedOpt strategies store it and never use it); members train with the group's
        /// `hyperparameters.lr`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eta_l: Option<f64>,
    },
    FedMedian,
    FedTrimmedAvg {
        #[serde(default = "trim_default")]
        beta: f64,
    },
    /// Bulyan (El Mhamdi et al. 2018, as in Flower): Krum chooses `n - 2f` updates, each
    /// coordinate averages those closest to their median. Needs `4f + 3` updates per round.
    Bulyan {
        #[serde(default, alias = "num_malicious_clients")]
        num_malicious: usize,
    },
    /// Krum when `num_to_keep` is 0 or 1, Multi-Krum above. Flower's names
    /// (`num_malicious_clients`, `num_clients_to_keep`) are accepted; `num_malicious`
    /// defaults to 0, as in Flower.
    Krum {
        #[serde(default, alias = "num_malicious_clients")]
        num_malicious: usize,
        #[serde(default, alias = "num_clients_to_keep")]
        num_to_keep: usize,
    },
}

fn one() -> f64 {
    1.0
}
fn eta_default() -> f64 {
    0.1
}
fn yogi_eta_default() -> f64 {
    0.01
}
fn beta_1_default() -> f64 {
    0.9
}
fn beta_2_default() -> f64 {
    0.99
}
fn tau_default() -> f64 {
    1e-9
}
fn yogi_tau_default() -> f64 {
    1e-3
}
fn trim_default() -> f64 {
    0.2
}

impl StrategyConfig {
    pub fn default_fedadam() -> Self {
        StrategyConfig::FedAdam {
            eta: eta_default(),
            beta_1: beta_1_default(),
            beta_2: beta_2_default(),
            tau: tau_default(),
            eta_l: None,
        }
    }

    /// Checks every parameter's range, naming the first bad one.
    pub fn validate(&self) -> Result<(), StrategyError> {
        use StrategyConfig as C;
        match *self {
            C::FedAvg | C::FedMedian => Ok(()),
            C::FedProx { proximal_mu } => at_least("proximal_mu", proximal_mu, 0.0),
            C::FedAvgM {
                server_lr,
                server_momentum,
            } => {
                positive("server_lr", server_lr)?;
                // Flower accepts 1 (plain accumulation of the pseudo-gradients).
                if server_momentum.is_finite() && (0.0..=1.0).contains(&server_momentum) {
                    Ok(())
                } else {
                    Err(invalid(
                        "server_momentum",
                        format!("must be in [0, 1], got {server_momentum}"),
                    ))
                }
            }
            C::FedAdam {
                eta,
                beta_1,
                beta_2,
                tau,
                eta_l,
            }
            | C::FedYogi {
                eta,
                beta_1,
                beta_2,
                tau,
                eta_l,
            } => {
                positive("eta", eta)?;
                if let Some(eta_l) = eta_l {
                    positive("eta_l", eta_l)?;
                }
                unit_interval("beta_1", beta_1)?;
                unit_interval("beta_2", beta_2)?;
                // 0 as Flower allows: a coordinate that never moved then stays (0/0 is no step).
                at_least("tau", tau, 0.0)
            }
            C::FedAdagrad {
                eta,
                beta_1,
                tau,
                eta_l,
            } => {
                positive("eta", eta)?;
                if let Some(eta_l) = eta_l {
                    positive("eta_l", eta_l)?;
                }
                unit_interval("beta_1", beta_1)?;
                at_least("tau", tau, 0.0)
            }
            C::FedTrimmedAvg { beta } => {
                if beta.is_finite() && (0.0..0.5).contains(&beta) {
                    Ok(())
                } else {
                    Err(invalid("beta", format!("must be in [0, 0.5), got {beta}")))
                }
            }
            C::Bulyan { num_malicious } => {
                if num_malicious > 1000 {
                    Err(invalid(
                        "num_malicious",
                        "num_malicious must be a small count".into(),
                    ))
                } else {
                    Ok(())
                }
            }
            C::Krum {
                num_malicious,
                num_to_keep,
            } => {
                if num_malicious > 1000 || num_to_keep > 10_000 {
                    Err(invalid(
                        "num_malicious",
                        "num_malicious and num_to_keep must be small counts".into(),
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }
}

fn invalid(param: &'static str, reason: String) -> StrategyError {
    StrategyError::InvalidParam { param, reason }
}

fn at_least(param: &'static str, v: f64, min: f64) -> Result<(), StrategyError> {
    if v.is_finite() && v >= min {
        Ok(())
    } else {
        Err(invalid(
            param,
            format!("must be a number >= {min}, got {v}"),
        ))
    }
}

fn positive(param: &'static str, v: f64) -> Result<(), StrategyError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(param, format!("must be a number > 0, got {v}")))
    }
}

fn unit_interval(param: &'static str, v: f64) -> Result<(), StrategyError> {
    if v.is_finite() && (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(param, format!("must be in [0, 1), got {v}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flowers_ranges_are_accepted() {
        let ok = |v: serde_json::Value| {
            let c: StrategyConfig = serde_json::from_value(v.clone()).unwrap();
            c.validate().unwrap_or_else(|e| panic!("{v}: {e}"));
        };
        ok(json!({"name": "fedadam", "tau": 0.0}));
        ok(json!({"name": "fedyogi", "tau": 0.0}));
        ok(json!({"name": "fedadagrad", "tau": 0.0}));
        ok(json!({"name": "fedavgm", "server_momentum": 1.0}));
        let c: StrategyConfig =
            serde_json::from_value(json!({"name": "fedavgm", "server_momentum": 1.5})).unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn flowers_parameter_names_and_defaults_are_accepted() {
        let c: StrategyConfig = serde_json::from_value(
            json!({"name": "krum", "num_malicious_clients": 2, "num_clients_to_keep": 3}),
        )
        .unwrap();
        assert_eq!(
            c,
            StrategyConfig::Krum {
                num_malicious: 2,
                num_to_keep: 3
            }
        );
        let c: StrategyConfig = serde_json::from_value(json!({"name": "krum"})).unwrap();
        assert_eq!(
            c,
            StrategyConfig::Krum {
                num_malicious: 0,
                num_to_keep: 0
            }
        );
        let c: StrategyConfig = serde_json::from_value(
            json!({"name": "fedavgm", "server_learning_rate": 0.5, "server_momentum": 0.9}),
        )
        .unwrap();
        assert_eq!(
            c,
            StrategyConfig::FedAvgM {
                server_lr: 0.5,
                server_momentum: 0.9
            }
        );
    }

    #[test]
    fn parses_by_name_with_defaults() {
        let c: StrategyConfig = serde_json::from_value(json!({"name": "fedavg"})).unwrap();
        assert_eq!(c, StrategyConfig::FedAvg);
        let c: StrategyConfig =
            serde_json::from_value(json!({"name": "fedadam", "eta": 0.5})).unwrap();
        assert_eq!(
            c,
            StrategyConfig::FedAdam {
                eta: 0.5,
                beta_1: 0.9,
                beta_2: 0.99,
                tau: 1e-9,
                eta_l: None,
            }
        );
        // Flower's client-side learning rate is accepted, kept, and range-checked.
        let c: StrategyConfig =
            serde_json::from_value(json!({"name": "fedyogi", "eta_l": 0.05})).unwrap();
        assert!(matches!(c, StrategyConfig::FedYogi { eta_l: Some(l), .. } if l == 0.05));
        assert_eq!(serde_json::to_value(&c).unwrap()["eta_l"], 0.05);
        let c: StrategyConfig =
            serde_json::from_value(json!({"name": "fedadagrad", "eta_l": -1.0})).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("`eta_l`"));
        let c: StrategyConfig =
            serde_json::from_value(json!({"name": "krum", "num_malicious": 1, "num_to_keep": 3}))
                .unwrap();
        assert_eq!(
            c,
            StrategyConfig::Krum {
                num_malicious: 1,
                num_to_keep: 3
            }
        );
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["name"], "krum");
    }

    #[test]
    fn unknown_names_and_params_are_rejected() {
        assert!(serde_json::from_value::<StrategyConfig>(json!({"name": "fedsgd"})).is_err());
        assert!(
            serde_json::from_value::<StrategyConfig>(json!({"name": "fedprox", "mu": 1})).is_err()
        );
    }

    #[test]
    fn validation_names_the_bad_parameter() {
        let err = StrategyConfig::FedTrimmedAvg { beta: 0.7 }
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("`beta`"), "{err}");
        let err = StrategyConfig::FedAdam {
            eta: 0.1,
            beta_1: 1.5,
            beta_2: 0.9,
            tau: 1e-9,
            eta_l: None,
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("`beta_1`"), "{err}");
        assert!(
            StrategyConfig::FedProx {
                proximal_mu: f64::NAN
            }
            .validate()
            .is_err()
        );
        assert!(StrategyConfig::default_fedadam().validate().is_ok());
    }
}
