//! The strategies against Flower's own (issue #17): `flower_vectors.json` holds what Flower's
//! strategies (flwr 1.42.0 from PyPI) returned for three rounds of fixed client updates,
//! written by `scripts/flower-vectors.py`. Each case runs the same rounds through
//! [`super::build`] with the same settings and compares every parameter.

use serde::Deserialize;

use super::{Accumulation, FitRes, Fits, StrategyConfig, WeightedMean, build};

#[derive(Deserialize)]
struct Vectors {
    flwr: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    config: serde_json::Value,
    rounds: Vec<Round>,
}

#[derive(Deserialize)]
struct Round {
    round: u32,
    current: Vec<f32>,
    fits: Vec<Fit>,
    expected: Vec<f32>,
}

#[derive(Deserialize)]
struct Fit {
    params: Vec<f32>,
    num_samples: u64,
}

/// Flower computes in float32 numpy arrays, we in f64 stored as f32: equal within float32
/// rounding of the operations on the way.
fn close(ours: f32, flower: f32) -> bool {
    (ours - flower).abs() <= 1e-5 * (1.0 + flower.abs())
}

fn vectors() -> Vectors {
    serde_json::from_str(include_str!("flower_vectors.json")).expect("flower_vectors.json")
}

/// Runs `case` through our strategy: the first round whose result differs, if any.
fn mismatch(case: &Case) -> Option<String> {
    let config: StrategyConfig =
        serde_json::from_value(case.config.clone()).expect("the case's configuration");
    let mut strategy = build(&config);
    for r in &case.rounds {
        let fits: Vec<FitRes> = r
            .fits
            .iter()
            .map(|f| FitRes {
                num_samples: f.num_samples,
                params: f.params.clone(),
            })
            .collect();
        let result = match strategy.accumulation() {
            Accumulation::RunningMean => {
                let mut mean = WeightedMean::new(r.current.len());
                for f in &fits {
                    mean.add(&f.params, f.num_samples).unwrap();
                }
                strategy.aggregate_fit(r.round, &r.current, Fits::Mean(mean.finish().unwrap()), &[])
            }
            Accumulation::AllUpdates => {
                strategy.aggregate_fit(r.round, &r.current, Fits::All(&fits), &[])
            }
        };
        let ours = result.expect("aggregation").expect("a new model");
        let wrong: Vec<String> = ours
            .iter()
            .zip(&r.expected)
            .enumerate()
            .filter(|(_, (o, f))| !close(**o, **f))
            .map(|(i, (o, f))| format!("[{i}] ours {o} Flower {f}"))
            .collect();
        if !wrong.is_empty() || ours.len() != r.expected.len() {
            return Some(format!(
                "{} {}: round {}: {}",
                case.name,
                case.config,
                r.round,
                wrong.join(", ")
            ));
        }
    }
    None
}

#[test]
fn every_strategy_gives_flowers_numbers() {
    let v = vectors();
    assert_eq!(v.flwr, "1.42.0");
    let wrong: Vec<String> = v.cases.iter().filter_map(mismatch).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} cases differ from Flower:\n{}",
        wrong.len(),
        v.cases.len(),
        wrong.join("\n")
    );
}
