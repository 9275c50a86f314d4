//! Small fixed training problems, the same on every machine: they check that a backend
//! (WebGPU in this browser) trains like the CPU does, and measure training throughput.
//! Platform-independent; the browser exports them as `trainStepCheck` and `benchTraining`.

use std::ops::ControlFlow;

use b3o_models::Device;
use b3o_models::Task;
use b3o_models::dataset::Dataset;
use b3o_models::model::{Activation, Architecture, MlpConfig, ModelSpec};
use b3o_models::train::{Optimizer, TrainConfig, TrainError, TrainOutcome, train_local_with};
use b3o_models::weights::WeightSet;

/// The network of a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The churn MLP 13 -> 64 -> 32 -> 1 (binary).
    Mlp,
    /// The original B3O churn network 13 -> 128 -> 64 -> 32 -> 1.
    ChurnB3o,
    /// The digit CNN over 28x28 images, 10 classes.
    Cnn,
}

impl Problem {
    pub fn spec(self) -> ModelSpec {
        let mlp = |hidden: Vec<usize>| ModelSpec {
            architecture: Architecture::Mlp(MlpConfig {
                hidden,
                activation: Activation::Relu,
            }),
            preprocessing: None,
            task: Task::BinaryClassification,
            labels: vec!["0".into(), "1".into()],
            input_shape: vec![13],
            ood: None,
        };
        match self {
            Problem::Mlp => mlp(vec![64, 32]),
            Problem::ChurnB3o => mlp(vec![128, 64, 32]),
            Problem::Cnn => ModelSpec::mnist_cnn(),
        }
    }

    /// `rows` deterministic rows with a learnable signal (values from a xorshift generator).
    pub fn data(self, rows: usize) -> Dataset {
        let spec = self.spec();
        let dim = spec.input_dim();
        let classes = spec.labels.len();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let mut features = Vec::with_capacity(rows * dim);
        let mut targets = Vec::with_capacity(rows);
        for _ in 0..rows {
            let start = features.len();
            features.extend((0..dim).map(|_| next()));
            let row = &features[start..];
            let label = match self {
                Problem::Cnn => {
                    // The class is the brightest tenth of the image.
                    let tenth = dim / classes;
                    (0..classes)
                        .max_by(|&a, &b| {
                            let s = |c: usize| row[c * tenth..(c + 1) * tenth].iter().sum::<f32>();
                            s(a).total_cmp(&s(b))
                        })
                        .unwrap_or(0)
                }
                _ => usize::from(row[0] + row[1] > row[2] + row[3]),
            };
            targets.push(label as f32);
        }
        Dataset::new(features, targets, dim).unwrap_or_else(|_| unreachable!())
    }
}

/// The result of a few training steps.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCheck {
    /// The loss of every batch, in order.
    pub losses: Vec<f64>,
    pub outcome: TrainOutcome,
}

/// Plain SGD without momentum: the steps are easy to compare across backends.
pub fn step_config(batch_size: usize, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size,
        optimizer: Optimizer::Sgd { momentum: 0.0 },
        lr: 0.05,
        fedprox_mu: 0.0,
        seed: 7,
    }
}

/// The initial weights of every check.
pub fn initial_weights(problem: Problem) -> WeightSet {
    problem.spec().init_weights(42)
}

/// `steps` SGD steps of `batch` rows of `problem` on `device`, from fixed weights and data.
pub async fn train_step_check(
    problem: Problem,
    steps: usize,
    batch: usize,
    device: &Device,
) -> Result<StepCheck, TrainError> {
    let spec = problem.spec();
    let data = problem.data(steps * batch);
    let mut losses = Vec::new();
    let outcome = train_local_with(
        &spec,
        &initial_weights(problem),
        &data,
        &step_config(batch, 1),
        device,
        async |p| {
            losses.push(p.loss);
            ControlFlow::Continue(())
        },
    )
    .await?;
    Ok(StepCheck { losses, outcome })
}

/// The largest absolute difference between two weight sets of the same layout.
pub fn max_difference(a: &WeightSet, b: &WeightSet) -> f32 {
    a.flatten()
        .iter()
        .zip(b.flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checks_train_and_are_deterministic() {
        for problem in [Problem::Mlp, Problem::ChurnB3o, Problem::Cnn] {
            let run = || burn_block(train_step_check(problem, 3, 8, &Device::flex())).unwrap();
            let a = run();
            assert_eq!(a.losses.len(), 3);
            assert!(a.losses.iter().all(|l| l.is_finite()));
            assert!(max_difference(&a.outcome.weights, &initial_weights(problem)) > 0.0);
            assert_eq!(a, run(), "{problem:?}");
        }
        let d = Problem::Cnn.data(50);
        assert!(d.targets.iter().any(|&t| t != d.targets[0]));
    }

    /// The flex backend never waits: one poll completes the future.
    fn burn_block<T>(f: impl Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        match f
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("flex should never be pending"),
        }
    }
}
