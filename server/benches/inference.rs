//! Inference latency of the models the server serves, through what the inference routes run
//! (`OnnxPredictor::load_b3o`: B3O's networks evaluated directly, one row or a batch), beside
//! two tract plans of the same file for comparison: tract's batch-1 plan (`inference::single`,
//! which served single rows until the server dropped tract) and tract-onnx's general plan; for
//! the reference MLP (13-64-32-1), the churn MLP (13-128-64-32-1) and the digit CNN, one
//! thread. p50 and p99 over many calls, excluding HTTP and JSON. Run with:
//!
//! ```sh
//! cargo bench -p b3o-server --bench inference
//! ```

use std::hint::black_box;
use std::time::Duration;

mod support;

use support::{Calls, pct};

use b3o_models::model::{Activation, Architecture, MlpConfig, ModelSpec};
use b3o_models::onnx::export_onnx;
use b3o_models::task::Task;
use b3o_wasm_client::inference::OnnxPredictor;
use b3o_wasm_client::inference::single::SingleRowPlan;

/// An MLP over 13 inputs with these hidden layers and one sigmoid output.
fn mlp(hidden: &[usize]) -> ModelSpec {
    ModelSpec {
        architecture: Architecture::Mlp(MlpConfig {
            hidden: hidden.to_vec(),
            activation: Activation::Relu,
        }),
        preprocessing: None,
        task: Task::BinaryClassification,
        labels: vec!["0".into(), "1".into()],
        input_shape: vec![13],
        ood: None,
    }
}

/// The calls of each measurement: many, the model runs take microseconds.
const CALLS: Calls = Calls {
    warmup: 20,
    min: 200,
    max: 100_000,
};

/// Latencies of `f` in microseconds, sorted, over ~`budget` after a warm-up.
fn latencies(f: impl FnMut(), budget: Duration) -> Vec<f64> {
    support::latencies(f, budget, &CALLS)
}

fn main() {
    println!("| model | plan | batch | p50 µs | p99 µs | rows/s at p50 | calls |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, spec) in [
        // The shape of the onnxruntime reference in BENCHMARKS.md.
        ("MLP 13-64-32-1", mlp(&[64, 32])),
        ("churn MLP 13-128-64-32-1", mlp(&[128, 64, 32])),
        ("digit CNN 28x28", ModelSpec::mnist_cnn()),
    ] {
        let onnx = export_onnx(&spec, &spec.init_weights(1)).unwrap();
        // What the server loads: the browser engine's B3O graph loader.
        let (served, _) = OnnxPredictor::load_b3o(&onnx).unwrap();
        let single = SingleRowPlan::from_onnx(&onnx).unwrap().unwrap();
        let parsed = OnnxPredictor::load(&onnx).unwrap();
        let row = |batch: usize| -> Vec<f32> {
            (0..batch * spec.input_dim())
                .map(|i| (i % 97) as f32 / 97.0)
                .collect()
        };
        let report = |plan: &str, batch: usize, lat: Vec<f64>| {
            let p50 = pct(&lat, 0.5);
            println!(
                "| {name} | {plan} | {batch} | {p50:.1} | {:.1} | {:.0} | {} |",
                pct(&lat, 0.99),
                batch as f64 / p50 * 1e6,
                lat.len()
            );
        };
        let budget = Duration::from_secs(3);
        let batches = |plan: &str, predictor: &OnnxPredictor| {
            for batch in [1usize, 64] {
                let input = row(batch);
                let run = || {
                    drop(black_box(
                        predictor.predict(black_box(&input), batch).unwrap(),
                    ))
                };
                report(plan, batch, latencies(run, budget));
            }
        };
        batches("served (direct)", &served);
        let one = row(1);
        let run = || drop(black_box(single.predict(black_box(&one)).unwrap()));
        report("tract batch-1 plan", 1, latencies(run, budget));
        batches("tract-onnx general plan", &parsed);
    }
}
