//! Dynamic batching of concurrent single-row requests: rows that arrive while a batch is
//! running, or within `max_delay` of the first, run together as one batch of up to `max_batch`
//! rows. A batch of 64 MLP rows costs ~19x one row (see BENCHMARKS.md), so under load this
//! multiplies throughput; at low load a row waits at most `max_delay`.
//!
//! [`Runner`] runs a batch on the model's network (`OnnxPredictor::load_b3o`: B3O's graphs
//! evaluated directly, any number of rows); cheap batches (an MLP's) on the async worker
//! itself, costly ones (a CNN's) on the blocking pool, by the per-row cost measured when the
//! model loaded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use b3o_wasm_client::inference::{InferenceError, OnnxPredictor};
use tokio::sync::{mpsc, oneshot};

use super::stats::RunInfo;

/// Batches estimated to take less than this run on the async worker: handing them to the
/// blocking pool would cost as much as running them.
const INLINE_BUDGET: Duration = Duration::from_micros(100);
/// Most rows one run of the network takes; larger inputs run in chunks of this size.
pub const MAX_RUN_ROWS: usize = 256;

/// How a loaded model runs a batch.
#[derive(Debug)]
pub struct Runner {
    predictor: OnnxPredictor,
    /// Measured cost of one row in a small batch.
    row_cost: Duration,
}

impl Runner {
    /// Blocking (it times a few warm-up runs): call on the blocking pool.
    pub fn new(predictor: OnnxPredictor) -> Self {
        let mut runner = Self {
            predictor,
            row_cost: Duration::MAX,
        };
        let rows = 8usize;
        let Some(len) = rows.checked_mul(runner.predictor.row_len()) else {
            return runner;
        };
        let input = vec![0.0f32; len];
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            if runner.predictor.predict(&input, rows).is_err() {
                return runner;
            }
            best = best.min(started.elapsed());
        }
        runner.row_cost = best / rows as u32;
        runner
    }

    /// The model's network.
    pub fn predictor(&self) -> &OnnxPredictor {
        &self.predictor
    }

    /// Runs `n` rows on this thread, at most [`MAX_RUN_ROWS`] at a time: the activations of a
    /// whole 16 MiB request (10,000 digit images) in one run would take ~1 GB.
    pub fn run_here(&self, input: &[f32], n: usize) -> Result<Vec<f32>, InferenceError> {
        let row_len = self.predictor.row_len();
        if n <= MAX_RUN_ROWS || row_len == 0 || n.checked_mul(row_len) != Some(input.len()) {
            // A mismatch is named by the predictor.
            return self.predictor.predict(input, n);
        }
        let mut out = Vec::new();
        for rows in input.chunks(MAX_RUN_ROWS * row_len) {
            out.extend(self.predictor.predict(rows, rows.len() / row_len)?);
        }
        Ok(out)
    }

    /// Runs `n` rows, on this worker when cheap, else on the blocking pool.
    pub async fn run(
        self: &Arc<Self>,
        input: Vec<f32>,
        n: usize,
    ) -> Result<Vec<f32>, InferenceError> {
        if self
            .row_cost
            .saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
            <= INLINE_BUDGET
        {
            return self.run_here(&input, n);
        }
        let runner = self.clone();
        tokio::task::spawn_blocking(move || runner.run_here(&input, n))
            .await
            .unwrap_or_else(|e| Err(InferenceError::Run(e.to_string())))
    }
}

/// Batching limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_batch: usize,
    pub max_delay: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: 64,
            max_delay: Duration::from_micros(500),
        }
    }
}

struct Job {
    row: Vec<f32>,
    queued: Instant,
    reply: oneshot::Sender<Result<(Vec<f32>, RunInfo), InferenceError>>,
}

/// The queue in front of one model. Dropping it ends its task once the queue drains.
#[derive(Debug)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    row_len: usize,
    /// Batches run and rows served, for tests and metrics.
    stats: Arc<(AtomicU64, AtomicU64)>,
}

impl Batcher {
    /// Starts the batching task on the current tokio runtime.
    pub fn spawn(runner: Arc<Runner>, config: BatchConfig) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(4 * config.max_batch.max(1));
        let stats = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let row_len = runner.predictor.row_len();
        let task_stats = stats.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                let deadline = tokio::time::Instant::now() + config.max_delay;
                while jobs.len() < config.max_batch {
                    // Rows already waiting join at once. Without a delay, no timer: tokio's
                    // fire on millisecond ticks, so even a zero timeout held a lone row up to
                    // a millisecond (the `queue` of the model's statistics showed ~1.1 ms).
                    if let Ok(job) = rx.try_recv() {
                        jobs.push(job);
                        continue;
                    }
                    if config.max_delay.is_zero() {
                        break;
                    }
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(job)) => jobs.push(job),
                        _ => break,
                    }
                }
                let n = jobs.len();
                let input: Vec<f32> = jobs.iter().flat_map(|j| j.row.iter().copied()).collect();
                let started = Instant::now();
                let result = runner.run(input, n).await;
                let compute = started.elapsed();
                task_stats.0.fetch_add(1, Ordering::Relaxed);
                task_stats.1.fetch_add(n as u64, Ordering::Relaxed);
                match result {
                    Ok(out) => {
                        let width = out.len() / n;
                        for (i, (job, row)) in
                            jobs.into_iter().zip(out.chunks(width.max(1))).enumerate()
                        {
                            // The batch is one execution, counted for the row that opened it.
                            let info = RunInfo {
                                rows: 1,
                                executions: u64::from(i == 0),
                                queue: started.saturating_duration_since(job.queued),
                                compute,
                            };
                            let _ = job.reply.send(Ok((row.to_vec(), info)));
                        }
                    }
                    Err(e) => jobs.into_iter().for_each(|job| {
                        let _ = job.reply.send(Err(e.clone()));
                    }),
                }
            }
        });
        Self { tx, row_len, stats }
    }

    /// Runs one row (checked first, so a bad row never fails its batch-mates): its outputs, and
    /// its wait for the batch and the batch's run.
    pub async fn predict_one(&self, row: Vec<f32>) -> Result<(Vec<f32>, RunInfo), InferenceError> {
        if row.len() != self.row_len {
            return Err(InferenceError::row_size(self.row_len, row.len()));
        }
        let (reply, answer) = oneshot::channel();
        let closed = || InferenceError::Run("the batching task stopped".into());
        self.tx
            .send(Job {
                row,
                queued: Instant::now(),
                reply,
            })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// (batches run, rows served) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.stats.0.load(Ordering::Relaxed),
            self.stats.1.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use b3o_models::model::ModelSpec;
    use b3o_models::onnx::export_onnx;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_rows_are_batched_and_each_gets_its_own_answer() {
        let spec = ModelSpec::mnist_cnn();
        let onnx = export_onnx(&spec, &spec.init_weights(3)).unwrap();
        let (p, _) = OnnxPredictor::load_b3o(&onnx).unwrap();
        // What each row must get: tract-onnx's reading of the same file, one row at a time.
        let tract = OnnxPredictor::load(&onnx).unwrap();
        let config = BatchConfig {
            max_batch: 16,
            max_delay: Duration::from_millis(20),
        };
        let runner = Arc::new(Runner::new(p));
        let batcher = Arc::new(Batcher::spawn(runner, config));
        let rows: Vec<Vec<f32>> = (0..40)
            .map(|i| (0..784).map(|j| ((i * 7 + j) % 13) as f32 / 13.0).collect())
            .collect();
        let handles: Vec<_> = rows
            .iter()
            .map(|row| {
                let (b, row) = (batcher.clone(), row.clone());
                tokio::spawn(async move { b.predict_one(row).await })
            })
            .collect();
        for (h, row) in handles.into_iter().zip(&rows) {
            let (got, info) = h.await.unwrap().unwrap();
            assert_eq!(info.rows, 1);
            let want = tract.predict(row, 1).unwrap();
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-5, "{worst}");
        }
        let (batches, served) = batcher.stats();
        assert_eq!(served, 40);
        assert!(batches < 40, "{batches} batches for 40 concurrent rows");
        assert!(matches!(
            batcher.predict_one(vec![0.0; 3]).await,
            Err(InferenceError::InputSize { .. })
        ));
    }
}
