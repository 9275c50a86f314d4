//! Local training and evaluation: what a client runs on its own rows each round.
//!
//! The loop is burn's custom-training-loop pattern: build the network from the global weights on
//! `device.autodiff()`, shuffle with a seeded RNG, step the optimiser per batch, and hand back a
//! [`WeightSet`]. With FedProx (`fedprox_mu > 0`) the loss gains `mu / 2 * ||w - w_global||^2`.
//!
//! There is one implementation, asynchronous, that reads tensors only with
//! `into_data_async().await` (burn on WebGPU in a browser panics on a blocking read):
//! [`train_local_with`]. [`train_local_async`] and [`evaluate_async`] are its browser entry
//! points; the blocking [`train_local`] and [`evaluate_on`] drive the same futures to completion
//! on the calling thread, so native and browser training give identical results on a backend.

use std::ops::ControlFlow;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, SgdConfig};
use burn::prelude::*;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::metrics::{Metrics, roc_auc};
use crate::model::predict::{block, predict_with_async};
use crate::model::{ModelError, ModelSpec, Network};
use crate::task::Task;
use crate::weights::WeightSet;

/// Optimiser of the local steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Optimizer {
    /// Plain SGD with (PyTorch-style, undampened) momentum; 0 disables momentum.
    Sgd { momentum: f64 },
    /// Adam with the usual betas (0.9, 0.999); its state starts fresh every round.
    Adam,
}

/// Hyper-parameters of one round of local training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: Optimizer,
    pub lr: f64,
    /// FedProx proximal weight; 0 is FedAvg.
    pub fedprox_mu: f64,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 32,
            optimizer: Optimizer::Adam,
            lr: 1e-3,
            fedprox_mu: 0.0,
            seed: 0,
        }
    }
}

/// Reported after every batch; returning `ControlFlow::Break(())` cancels training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// 0-based.
    pub epoch: usize,
    pub epochs: usize,
    /// 0-based batch within the epoch.
    pub batch: usize,
    pub batches_per_epoch: usize,
    /// Loss of this batch (including the proximal term).
    pub loss: f64,
}

/// The result of a round of local training.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    pub weights: WeightSet,
    pub num_samples: u64,
    /// Metrics of the trained weights on the training rows.
    pub metrics: Metrics,
}

/// Why training or evaluation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("no training rows")]
    EmptyDataset,
    #[error("invalid training config: {0}")]
    Config(String),
    #[error("row {row}: label {value} does not fit the model's {task:?} output")]
    BadLabel { row: usize, value: f32, task: Task },
    #[error("training was cancelled")]
    Cancelled,
    #[error("training diverged (loss is {0}); lower the learning rate")]
    Diverged(f64),
}

fn check_data(spec: &ModelSpec, data: &Dataset) -> Result<(), TrainError> {
    if data.n_rows == 0 {
        return Err(TrainError::EmptyDataset);
    }
    if data.row_len != spec.input_dim()
        || data.features.len() != data.n_rows * data.row_len
        || data.targets.len() != data.n_rows
    {
        return Err(ModelError::InputSize {
            expected: spec.input_dim(),
            found: data.row_len,
        }
        .into());
    }
    let classes = spec.labels.len() as f32;
    for (i, &y) in data.targets.iter().enumerate() {
        let ok = match spec.task {
            Task::Regression => y.is_finite(),
            _ => y >= 0.0 && y < classes && y.fract() == 0.0,
        };
        if !ok {
            return Err(TrainError::BadLabel {
                row: i + 1,
                value: y,
                task: spec.task,
            });
        }
    }
    Ok(())
}

/// Loss of a batch: mean binary cross-entropy with logits, cross-entropy, or squared error.
fn batch_loss(task: Task, logits: Tensor<2>, targets: &[f32], device: &Device) -> Tensor<1> {
    let n = targets.len();
    match task {
        Task::BinaryClassification => {
            let z = logits.reshape([n]);
            let y = Tensor::<1>::from_data(TensorData::new(targets.to_vec(), [n]), device);
            // max(z, 0) - z*y + log(1 + exp(-|z|)): stable for large |z|.
            (z.clone().clamp_min(0.0) - z.clone() * y + z.abs().neg().exp().log1p()).mean()
        }
        Task::MulticlassClassification => {
            let y: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [n]), device);
            CrossEntropyLoss::new(None, device).forward(logits, y)
        }
        Task::Regression => {
            let y = Tensor::<2>::from_data(TensorData::new(targets.to_vec(), [n, 1]), device);
            (logits - y).square().mean()
        }
    }
}

/// Squared L2 distance between two networks' parameters.
fn squared_distance(a: &Network, b: &Network) -> Option<Tensor<1>> {
    fn d<const D: usize>(x: Tensor<D>, y: Tensor<D>) -> Tensor<1> {
        (x - y).square().sum()
    }
    let mut terms = Vec::new();
    let mut linear = |x: &burn::nn::Linear, y: &burn::nn::Linear| {
        terms.push(d(x.weight.val(), y.weight.val()));
        if let (Some(bx), Some(by)) = (&x.bias, &y.bias) {
            terms.push(d(bx.val(), by.val()));
        }
    };
    match (a, b) {
        (Network::Mlp(x), Network::Mlp(y)) => x
            .layers
            .iter()
            .zip(&y.layers)
            .for_each(|(l, g)| linear(l, g)),
        (Network::Cnn(x), Network::Cnn(y)) => {
            linear(&x.fc, &y.fc);
            for (cx, cy) in [(&x.conv1, &y.conv1), (&x.conv2, &y.conv2)] {
                terms.push(d(cx.weight.val(), cy.weight.val()));
                if let (Some(bx), Some(by)) = (&cx.bias, &cy.bias) {
                    terms.push(d(bx.val(), by.val()));
                }
            }
        }
        _ => return None,
    }
    terms.into_iter().reduce(|s, t| s + t)
}

/// Trains `global` on `data` for `cfg.epochs` and returns the new weights.
///
/// Deterministic for a seed on the flex backend. `progress` is called after every batch; the
/// rows never leave this function. Blocking: in a browser, use [`train_local_async`].
pub fn train_local(
    spec: &ModelSpec,
    global: &WeightSet,
    data: &Dataset,
    cfg: &TrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
) -> Result<TrainOutcome, TrainError> {
    block(train_local_async(spec, global, data, cfg, device, progress))?
}

/// [`train_local`] without blocking reads: the form that runs on WebGPU in a browser.
pub async fn train_local_async(
    spec: &ModelSpec,
    global: &WeightSet,
    data: &Dataset,
    cfg: &TrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
) -> Result<TrainOutcome, TrainError> {
    train_local_with(spec, global, data, cfg, device, async |p| progress(p)).await
}

/// The training loop itself, with an asynchronous progress callback: a browser worker awaits in
/// it to hand control back to its event loop (to see a cancel message) between batches.
pub async fn train_local_with(
    spec: &ModelSpec,
    global: &WeightSet,
    data: &Dataset,
    cfg: &TrainConfig,
    device: &Device,
    progress: impl AsyncFnMut(Progress) -> ControlFlow<()>,
) -> Result<TrainOutcome, TrainError> {
    train_local_resumable(spec, global, None, data, cfg, device, progress, None).await
}

/// Where an interrupted run of local training picks up: the weights after its first
/// `epochs_done` epochs (of the same `global`, data and config).
#[derive(Debug, Clone, Copy)]
pub struct Resume<'a> {
    pub weights: &'a WeightSet,
    pub epochs_done: usize,
}

/// Called after every epoch but the last with the number of epochs done and the weights then:
/// what a resumed run starts from.
pub type EpochCheckpoint<'a> = &'a dyn Fn(usize, WeightSet);

/// [`train_local`] that can start from a checkpoint and make them: with `resume`, training
/// starts from its weights at epoch `epochs_done` (the batches of the remaining epochs are
/// the uninterrupted run's; the optimiser's state, such as Adam's moments, starts afresh);
/// FedProx's proximal term still measures from `global`. `on_epoch` gets a checkpoint after
/// each epoch but the last.
#[allow(clippy::too_many_arguments)]
pub fn train_local_resumed(
    spec: &ModelSpec,
    global: &WeightSet,
    resume: Option<Resume<'_>>,
    data: &Dataset,
    cfg: &TrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
    on_epoch: Option<EpochCheckpoint<'_>>,
) -> Result<TrainOutcome, TrainError> {
    block(train_local_resumable(
        spec,
        global,
        resume,
        data,
        cfg,
        device,
        async |p| progress(p),
        on_epoch,
    ))?
}

/// The asynchronous form of [`train_local_resumed`] (a browser worker).
#[allow(clippy::too_many_arguments)]
pub async fn train_local_resumable(
    spec: &ModelSpec,
    global: &WeightSet,
    resume: Option<Resume<'_>>,
    data: &Dataset,
    cfg: &TrainConfig,
    device: &Device,
    mut progress: impl AsyncFnMut(Progress) -> ControlFlow<()>,
    on_epoch: Option<EpochCheckpoint<'_>>,
) -> Result<TrainOutcome, TrainError> {
    check_data(spec, data)?;
    if cfg.batch_size == 0
        || !(cfg.lr.is_finite() && cfg.lr > 0.0)
        || !(cfg.fedprox_mu.is_finite() && cfg.fedprox_mu >= 0.0)
    {
        return Err(TrainError::Config(format!(
            "batch_size must be > 0, lr > 0 and fedprox_mu >= 0 (got {}, {}, {})",
            cfg.batch_size, cfg.lr, cfg.fedprox_mu
        )));
    }
    let ad = device.clone().autodiff();
    ad.seed(cfg.seed);
    let first_epoch = resume.map_or(0, |r| r.epochs_done.min(cfg.epochs));
    let mut net = Network::from_weights(spec, resume.map_or(global, |r| r.weights), &ad)?;
    let anchor = if cfg.fedprox_mu > 0.0 {
        Some(Network::from_weights(spec, global, &ad)?.no_grad())
    } else {
        None
    };
    let mut optim = match cfg.optimizer {
        Optimizer::Sgd { momentum } if momentum > 0.0 => SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_momentum(momentum)
                    .with_dampening(0.0),
            ))
            .init(),
        Optimizer::Sgd { .. } => SgdConfig::new().init(),
        Optimizer::Adam => AdamConfig::new().init(),
    };

    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..data.n_rows).collect();
    let batches = data.n_rows.div_ceil(cfg.batch_size);
    let dim = data.row_len;
    let mut x_buf = Vec::with_capacity(cfg.batch_size * dim);
    let mut y_buf = Vec::with_capacity(cfg.batch_size);
    // The epochs already done drew their orders from the same generator.
    for _ in 0..first_epoch {
        order.shuffle(&mut rng);
    }
    for epoch in first_epoch..cfg.epochs {
        order.shuffle(&mut rng);
        for (batch, rows) in order.chunks(cfg.batch_size).enumerate() {
            x_buf.clear();
            y_buf.clear();
            for &r in rows {
                x_buf.extend_from_slice(&data.features[r * dim..(r + 1) * dim]);
                y_buf.push(data.targets[r]);
            }
            let x = Tensor::<2>::from_data(TensorData::new(x_buf.clone(), [rows.len(), dim]), &ad);
            let mut loss = batch_loss(spec.task, net.forward(x), &y_buf, &ad);
            if let Some(anchor) = &anchor
                && let Some(dist) = squared_distance(&net, anchor)
            {
                loss = loss + dist.mul_scalar(cfg.fedprox_mu / 2.0);
            }
            let loss_value = loss
                .clone()
                .into_scalar_async::<f32>()
                .await
                .map_err(|e| ModelError::Backend(format!("loss: {e:?}")))?
                as f64;
            if !loss_value.is_finite() {
                return Err(TrainError::Diverged(loss_value));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(cfg.lr, net, grads);
            let report = Progress {
                epoch,
                epochs: cfg.epochs,
                batch,
                batches_per_epoch: batches,
                loss: loss_value,
            };
            if progress(report).await.is_break() {
                return Err(TrainError::Cancelled);
            }
        }
        if let Some(checkpoint) = on_epoch
            && epoch + 1 < cfg.epochs
        {
            checkpoint(epoch + 1, net.to_weights_async().await?);
        }
    }
    let weights = net.to_weights_async().await?;
    let metrics = evaluate_async(spec, &weights, data, device).await?;
    Ok(TrainOutcome {
        weights,
        num_samples: data.n_rows as u64,
        metrics,
    })
}

/// Metrics of `weights` on `data`, on the flex (CPU) backend.
pub fn evaluate(
    spec: &ModelSpec,
    weights: &WeightSet,
    data: &Dataset,
) -> Result<Metrics, TrainError> {
    evaluate_on(spec, weights, data, &Device::flex())
}

/// Metrics of `weights` on `data` on `device`. Blocking: in a browser use [`evaluate_async`].
pub fn evaluate_on(
    spec: &ModelSpec,
    weights: &WeightSet,
    data: &Dataset,
    device: &Device,
) -> Result<Metrics, TrainError> {
    block(evaluate_async(spec, weights, data, device))?
}

/// [`evaluate_on`] without blocking reads.
pub async fn evaluate_async(
    spec: &ModelSpec,
    weights: &WeightSet,
    data: &Dataset,
    device: &Device,
) -> Result<Metrics, TrainError> {
    check_data(spec, data)?;
    let net = Network::from_weights(spec, weights, device)?;
    // Logits straight from the network: the loss must match training, not the decoded output.
    let logits = predict_with_async(&net, spec, &data.features, data.n_rows, device, true).await?;
    let y = &data.targets;
    let n = data.n_rows as f64;
    let metrics = match spec.task {
        Task::BinaryClassification => {
            let z = &logits.values;
            let loss = z
                .iter()
                .zip(y)
                .map(|(&z, &y)| {
                    let z = z as f64;
                    z.max(0.0) - z * y as f64 + (-z.abs()).exp().ln_1p()
                })
                .sum::<f64>()
                / n;
            let correct = z
                .iter()
                .zip(y)
                .filter(|(z, y)| (**z > 0.0) == (**y > 0.5))
                .count();
            Metrics {
                num_samples: data.n_rows as u64,
                loss,
                accuracy: Some(correct as f64 / n),
                roc_auc: roc_auc(z, y),
            }
        }
        Task::MulticlassClassification => {
            let k = logits.width;
            let (mut loss, mut correct) = (0.0, 0usize);
            for (row, &label) in logits.values.chunks(k).zip(y) {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
                let lse = max
                    + row
                        .iter()
                        .map(|&v| (v as f64 - max).exp())
                        .sum::<f64>()
                        .ln();
                loss += lse - row[label as usize] as f64;
                let arg = row
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i);
                correct += usize::from(arg == label as usize);
            }
            Metrics {
                num_samples: data.n_rows as u64,
                loss: loss / n,
                accuracy: Some(correct as f64 / n),
                roc_auc: None,
            }
        }
        Task::Regression => {
            let loss = logits
                .values
                .iter()
                .zip(y)
                .map(|(&p, &y)| ((p - y) as f64).powi(2))
                .sum::<f64>()
                / n;
            Metrics {
                num_samples: data.n_rows as u64,
                loss,
                accuracy: None,
                roc_auc: None,
            }
        }
    };
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activation, Architecture, MlpConfig};

    /// Two Gaussian-ish blobs, separable along the sum of the features.
    fn toy(n: usize) -> Dataset {
        let mut features = Vec::new();
        let mut targets = Vec::new();
        for i in 0..n {
            let label = (i % 2) as f32;
            let a = ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.8 + label * 1.5 - 0.75;
            let b = ((i * 53 % 97) as f32 / 97.0 - 0.5) * 0.8 + label * 1.5 - 0.75;
            features.extend([a, b]);
            targets.push(label);
        }
        Dataset::new(features, targets, 2).unwrap()
    }

    fn spec(task: Task, labels: usize) -> ModelSpec {
        ModelSpec {
            architecture: Architecture::Mlp(MlpConfig {
                hidden: vec![8],
                activation: Activation::LeakyRelu { slope: 0.01 },
            }),
            preprocessing: None,
            task,
            labels: (0..labels).map(|i| i.to_string()).collect(),
            input_shape: vec![2],
            ood: None,
        }
    }

    fn cfg() -> TrainConfig {
        TrainConfig {
            epochs: 5,
            batch_size: 16,
            optimizer: Optimizer::Sgd { momentum: 0.9 },
            lr: 0.05,
            fedprox_mu: 0.0,
            seed: 1,
        }
    }

    #[test]
    fn learns_a_separable_problem_deterministically() {
        let spec = spec(Task::BinaryClassification, 2);
        let data = toy(200);
        let w0 = spec.init_weights(0);
        let run = || {
            train_local(&spec, &w0, &data, &cfg(), &Device::flex(), &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap()
        };
        let a = run();
        assert!(a.metrics.accuracy.unwrap() > 0.95, "{:?}", a.metrics);
        assert!(a.metrics.roc_auc.unwrap() > 0.95);
        assert_eq!(a.num_samples, 200);
        assert_eq!(a.weights, run().weights, "same seed, same weights");
    }

    /// A run interrupted after two of five epochs and resumed from its checkpoint ends with the
    /// uninterrupted run's model (plain SGD keeps no optimiser state to lose).
    #[test]
    fn a_run_resumed_from_its_epoch_checkpoint_ends_where_the_whole_run_does() {
        let spec = spec(Task::BinaryClassification, 2);
        let data = toy(200);
        let w0 = spec.init_weights(0);
        let cfg = TrainConfig {
            optimizer: Optimizer::Sgd { momentum: 0.0 },
            ..cfg()
        };
        let checkpoints = std::sync::Mutex::new(Vec::new());
        let record = |done: usize, w: WeightSet| checkpoints.lock().unwrap().push((done, w));
        let whole = train_local_resumed(
            &spec,
            &w0,
            None,
            &data,
            &cfg,
            &Device::flex(),
            &mut |_| ControlFlow::Continue(()),
            Some(&record),
        )
        .unwrap();
        let checkpoints = checkpoints.into_inner().unwrap();
        assert_eq!(
            checkpoints.iter().map(|c| c.0).collect::<Vec<_>>(),
            vec![1, 2, 3, 4],
            "one after each epoch but the last"
        );
        let mut epochs_seen = Vec::new();
        let resumed = train_local_resumed(
            &spec,
            &w0,
            Some(Resume {
                weights: &checkpoints[1].1,
                epochs_done: 2,
            }),
            &data,
            &cfg,
            &Device::flex(),
            &mut |p| {
                epochs_seen.push(p.epoch);
                ControlFlow::Continue(())
            },
            None,
        )
        .unwrap();
        assert_eq!(
            epochs_seen.first(),
            Some(&2),
            "the done epochs are not trained again"
        );
        assert_eq!(resumed.weights, whole.weights);
    }

    /// A future that is pending once (waking itself) before it completes: what awaiting the
    /// browser's event loop between batches looks like to the training loop.
    struct YieldOnce(bool);

    impl Future for YieldOnce {
        type Output = ();
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            if self.0 {
                std::task::Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        }
    }

    /// The browser trains through the async loop, yielding to its event loop between batches;
    /// the native client through the blocking one. Both must produce the same model.
    #[test]
    fn async_training_with_yields_matches_blocking_training() {
        let spec = spec(Task::MulticlassClassification, 2);
        let data = toy(100);
        let w0 = spec.init_weights(3);
        let c = TrainConfig {
            optimizer: Optimizer::Adam,
            lr: 0.01,
            ..cfg()
        };
        let blocking = train_local(&spec, &w0, &data, &c, &Device::flex(), &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        let mut seen = Vec::new();
        let yielding = burn::tensor::read_sync(train_local_with(
            &spec,
            &w0,
            &data,
            &c,
            &Device::flex(),
            async |p| {
                YieldOnce(false).await;
                seen.push((p.epoch, p.batch));
                ControlFlow::Continue(())
            },
        ))
        .unwrap();
        assert_eq!(blocking, yielding);
        assert_eq!(seen.len(), c.epochs * 100usize.div_ceil(c.batch_size));
        assert_eq!(seen.last(), Some(&(4, 6)));
        let evaluated = burn::tensor::read_sync(evaluate_async(
            &spec,
            &yielding.weights,
            &data,
            &Device::flex(),
        ))
        .unwrap();
        assert_eq!(evaluated, yielding.metrics);
    }

    #[test]
    fn fedprox_keeps_weights_closer_to_global() {
        let spec = spec(Task::MulticlassClassification, 2);
        let data = toy(200);
        let w0 = spec.init_weights(0);
        let dist = |mu: f64| {
            let c = TrainConfig {
                fedprox_mu: mu,
                optimizer: Optimizer::Adam,
                lr: 0.01,
                ..cfg()
            };
            let out = train_local(&spec, &w0, &data, &c, &Device::flex(), &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
            out.weights
                .flatten()
                .iter()
                .zip(w0.flatten())
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
        };
        assert!(dist(10.0) < dist(0.0) * 0.5);
    }

    #[test]
    fn cancels_and_rejects_bad_input() {
        let spec = spec(Task::BinaryClassification, 2);
        let data = toy(64);
        let w0 = spec.init_weights(0);
        let mut calls = 0;
        let err = train_local(&spec, &w0, &data, &cfg(), &Device::flex(), &mut |p| {
            calls += 1;
            if p.batch == 1 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap_err();
        assert_eq!((err, calls), (TrainError::Cancelled, 2));
        let mut bad = data.clone();
        bad.targets[3] = 2.0;
        let err = evaluate(&spec, &w0, &bad).unwrap_err();
        assert!(matches!(err, TrainError::BadLabel { row: 4, .. }), "{err}");
        let zero = TrainConfig {
            batch_size: 0,
            ..cfg()
        };
        assert!(matches!(
            train_local(&spec, &w0, &data, &zero, &Device::flex(), &mut |_| {
                ControlFlow::Continue(())
            }),
            Err(TrainError::Config(_))
        ));
    }

    #[test]
    fn regression_reduces_error() {
        let spec = spec(Task::Regression, 0);
        let mut data = toy(200);
        data.targets = data.features.chunks(2).map(|r| r[0] - 2.0 * r[1]).collect();
        let w0 = spec.init_weights(0);
        let before = evaluate(&spec, &w0, &data).unwrap().loss;
        let out = train_local(&spec, &w0, &data, &cfg(), &Device::flex(), &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        assert!(
            out.metrics.loss < before * 0.1,
            "{before} -> {}",
            out.metrics.loss
        );
        assert_eq!(out.metrics.accuracy, None);
    }
}
