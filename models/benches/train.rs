//! Training throughput on the flex (CPU) backend and ONNX export time, with plain `Instant`
//! timing. Run with `cargo bench -p b3o-models --bench train`; results go to BENCHMARKS.md.

use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use b3o_models::Device;
use b3o_models::Task;
use b3o_models::dataset::Dataset;
use b3o_models::model::{Activation, Architecture, MlpConfig, ModelSpec};
use b3o_models::onnx::export_onnx;
use b3o_models::train::{Optimizer, TrainConfig, evaluate, train_local};

fn mlp_spec() -> ModelSpec {
    ModelSpec {
        architecture: Architecture::Mlp(MlpConfig {
            hidden: vec![64, 32],
            activation: Activation::Relu,
        }),
        preprocessing: None,
        task: Task::BinaryClassification,
        labels: vec!["0".into(), "1".into()],
        input_shape: vec![13],
        ood: None,
    }
}

/// Deterministic pseudo-random rows (a simple LCG: the values do not matter for timing).
fn data(rows: usize, row_len: usize, classes: usize) -> Dataset {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let features = (0..rows * row_len).map(|_| next()).collect();
    let targets = (0..rows).map(|i| (i % classes) as f32).collect();
    Dataset::new(features, targets, row_len).expect("consistent dataset")
}

/// Samples per second of one `train_local` round of one epoch over `data`, best of `repeats`,
/// and the same with the closing metrics pass (one forward pass over `data`) subtracted.
fn throughput(spec: &ModelSpec, data: &Dataset, batch_size: usize, repeats: usize) -> (f64, f64) {
    let cfg = TrainConfig {
        epochs: 1,
        batch_size,
        optimizer: Optimizer::Sgd { momentum: 0.9 },
        lr: 0.01,
        fedprox_mu: 0.0,
        seed: 0,
    };
    let weights = spec.init_weights(0);
    let device = Device::flex();
    let mut best = Duration::MAX;
    for _ in 0..repeats {
        let start = Instant::now();
        let out = train_local(spec, &weights, data, &cfg, &device, &mut |_| {
            ControlFlow::Continue(())
        })
        .expect("training");
        best = best.min(start.elapsed());
        black_box(out);
    }
    let mut eval = Duration::MAX;
    for _ in 0..repeats {
        let start = Instant::now();
        black_box(evaluate(spec, &weights, data).expect("evaluation"));
        eval = eval.min(start.elapsed());
    }
    let n = data.n_rows as f64;
    (
        n / best.as_secs_f64(),
        n / (best.saturating_sub(eval)).as_secs_f64(),
    )
}

fn export_time(spec: &ModelSpec, runs: usize) -> Duration {
    let weights = spec.init_weights(0);
    let start = Instant::now();
    for _ in 0..runs {
        black_box(export_onnx(spec, &weights).expect("export"));
    }
    start.elapsed() / runs as u32
}

fn main() {
    let mlp = mlp_spec();
    let cnn = ModelSpec::mnist_cnn();
    let mlp_data = data(32_768, 13, 2);
    let cnn_data = data(4_096, 784, 10);
    println!("| model | batch | round samples/s | training-only samples/s |");
    println!("| --- | ---: | ---: | ---: |");
    for batch in [32, 64] {
        let runs = [
            ("MLP 13-64-32-1", &mlp, &mlp_data, 3),
            ("CNN 28x28", &cnn, &cnn_data, 2),
        ];
        for (name, spec, data, repeats) in runs {
            let (round, train) = throughput(spec, data, batch, repeats);
            println!("| {name} | {batch} | {round:.0} | {train:.0} |");
        }
    }
    println!();
    println!("| export | time per model |");
    println!("| --- | --- |");
    println!("| ONNX MLP 13-64-32-1 | {:?} |", export_time(&mlp, 200));
    println!("| ONNX CNN | {:?} |", export_time(&cnn, 200));
}
