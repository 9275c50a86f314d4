//! Where local training runs. Natively, [`ThreadTrainer`] runs burn's blocking loop on tokio's
//! blocking threads, at most `parallel` at once (the simulator trains many clients side by
//! side, one per core). In the browser, [`AsyncTrainer`] awaits the asynchronous loop (burn on
//! WebGPU only allows asynchronous reads) and gives the event loop a turn regularly so that a
//! cancel message reaches the worker.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;

use b3o_models::Device;
use b3o_models::dataset::Dataset;
use b3o_models::metrics::Metrics;
use b3o_models::model::ModelSpec;
use b3o_models::train::{Progress, TrainConfig, TrainOutcome};
use b3o_models::weights::WeightSet;

use super::api::FlError;
use super::{MaybeSend, MaybeSync};

/// Called after every batch; `Break` cancels training.
#[cfg(not(target_arch = "wasm32"))]
pub type ProgressFn = Arc<dyn Fn(Progress) -> ControlFlow<()> + Send + Sync>;
/// Called after every batch; `Break` cancels training.
#[cfg(target_arch = "wasm32")]
pub type ProgressFn = Arc<dyn Fn(Progress) -> ControlFlow<()>>;

/// Called after every epoch but the last with the epochs done and the weights then.
#[cfg(not(target_arch = "wasm32"))]
pub type EpochFn = Arc<dyn Fn(usize, WeightSet) + Send + Sync>;
/// Called after every epoch but the last with the epochs done and the weights then.
#[cfg(target_arch = "wasm32")]
pub type EpochFn = Arc<dyn Fn(usize, WeightSet)>;

/// One round of local training.
#[derive(Clone)]
pub struct TrainJob {
    pub spec: Arc<ModelSpec>,
    pub global: WeightSet,
    pub data: Arc<Dataset>,
    pub config: TrainConfig,
    /// Picks up an interrupted run: the weights after that many epochs of it.
    pub resume: Option<(WeightSet, usize)>,
    /// Gets a checkpoint after every epoch but the last (what `resume` takes).
    pub on_epoch: Option<EpochFn>,
}

impl TrainJob {
    /// Where training starts: the `resume` checkpoint, if any.
    fn resume(&self) -> Option<b3o_models::train::Resume<'_>> {
        self.resume
            .as_ref()
            .map(|(weights, epochs_done)| b3o_models::train::Resume {
                weights,
                epochs_done: *epochs_done,
            })
    }

    /// `on_epoch` as the training loop takes it.
    fn checkpoint(&self) -> Option<b3o_models::train::EpochCheckpoint<'_>> {
        self.on_epoch
            .as_deref()
            .map(|f| f as b3o_models::train::EpochCheckpoint<'_>)
    }
}

/// Runs local training and evaluation.
pub trait Trainer: MaybeSend + MaybeSync {
    fn train(
        &self,
        job: TrainJob,
        progress: ProgressFn,
    ) -> impl Future<Output = Result<TrainOutcome, FlError>> + MaybeSend;

    /// Metrics of `weights` on `data`.
    fn evaluate(
        &self,
        spec: Arc<ModelSpec>,
        weights: WeightSet,
        data: Arc<Dataset>,
    ) -> impl Future<Output = Result<Metrics, FlError>> + MaybeSend;
}

impl<T: Trainer> Trainer for Arc<T> {
    fn train(
        &self,
        job: TrainJob,
        progress: ProgressFn,
    ) -> impl Future<Output = Result<TrainOutcome, FlError>> + MaybeSend {
        (**self).train(job, progress)
    }

    fn evaluate(
        &self,
        spec: Arc<ModelSpec>,
        weights: WeightSet,
        data: Arc<Dataset>,
    ) -> impl Future<Output = Result<Metrics, FlError>> + MaybeSend {
        (**self).evaluate(spec, weights, data)
    }
}

/// Native training on tokio's blocking threads, `parallel` jobs at most.
#[cfg(not(target_arch = "wasm32"))]
pub struct ThreadTrainer {
    device: Device,
    permits: Arc<tokio::sync::Semaphore>,
}

#[cfg(not(target_arch = "wasm32"))]
impl ThreadTrainer {
    pub fn new(device: Device, parallel: usize) -> Self {
        ThreadTrainer {
            device,
            permits: Arc::new(tokio::sync::Semaphore::new(parallel.max(1))),
        }
    }

    /// The CPU (`flex`) backend, one job per available core.
    pub fn cpu() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ThreadTrainer::new(Device::flex(), cores)
    }

    async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Device) -> Result<R, FlError> + Send + 'static,
    ) -> Result<R, FlError> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| FlError::Cancelled)?;
        let device = self.device.clone();
        tokio::task::spawn_blocking(move || work(&device))
            .await
            .map_err(|e| FlError::Protocol(format!("the training thread failed: {e}")))?
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Trainer for ThreadTrainer {
    async fn train(&self, job: TrainJob, progress: ProgressFn) -> Result<TrainOutcome, FlError> {
        self.run(move |device| {
            b3o_models::train::train_local_resumed(
                &job.spec,
                &job.global,
                job.resume(),
                &job.data,
                &job.config,
                device,
                &mut |p| progress(p),
                job.checkpoint(),
            )
            .map_err(FlError::from)
        })
        .await
    }

    async fn evaluate(
        &self,
        spec: Arc<ModelSpec>,
        weights: WeightSet,
        data: Arc<Dataset>,
    ) -> Result<Metrics, FlError> {
        self.run(move |device| {
            b3o_models::train::evaluate_on(&spec, &weights, &data, device).map_err(FlError::from)
        })
        .await
    }
}

/// Browser training: the asynchronous loop on the worker's thread, handing the event loop a
/// turn at least every 50 ms.
#[cfg(target_arch = "wasm32")]
pub struct AsyncTrainer {
    device: Device,
}

#[cfg(target_arch = "wasm32")]
impl AsyncTrainer {
    /// `device`: `Device::flex()`, or the WebGPU device from the models crate's async setup.
    pub fn new(device: Device) -> Self {
        AsyncTrainer { device }
    }
}

#[cfg(target_arch = "wasm32")]
impl Trainer for AsyncTrainer {
    async fn train(&self, job: TrainJob, progress: ProgressFn) -> Result<TrainOutcome, FlError> {
        let mut last_yield = js_sys::Date::now();
        b3o_models::train::train_local_resumable(
            &job.spec,
            &job.global,
            job.resume(),
            &job.data,
            &job.config,
            &self.device,
            async |p| {
                let flow = progress(p);
                let now = js_sys::Date::now();
                if now - last_yield >= 50.0 {
                    super::browser::sleep(std::time::Duration::ZERO).await;
                    last_yield = js_sys::Date::now();
                }
                flow
            },
            job.checkpoint(),
        )
        .await
        .map_err(FlError::from)
    }

    async fn evaluate(
        &self,
        spec: Arc<ModelSpec>,
        weights: WeightSet,
        data: Arc<Dataset>,
    ) -> Result<Metrics, FlError> {
        b3o_models::train::evaluate_async(&spec, &weights, &data, &self.device)
            .await
            .map_err(FlError::from)
    }
}
