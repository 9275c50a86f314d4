//! Running batch jobs: a few at a time (`--job-workers`), each streaming its CSV (the store's
//! file, or a local copy of an S3 blob) through the model in chunks on the blocking pool,
//! recording progress, writing the result to a scratch file and storing it durably in the
//! blob store before the job is marked `succeeded`.
//!
//! At start-up [`recover`] queues again the jobs a stop interrupted (`queued` or `running`),
//! up to [`MAX_ATTEMPTS`] starts, after which they fail with a message saying so.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use b3o_models::model::ModelSpec;
use b3o_wasm_client::codeless::{self, CodelessError, CsvChunks, CsvOutput};
use b3o_wasm_client::inference::OnnxPredictor;
use tokio::sync::Semaphore;

use super::{JOB_COLUMNS, JobRow};
use crate::accounts::now;
use crate::error::ApiError;
use crate::inference::{self, telemetry};
use crate::state::AppState;

/// Starts after which an interrupted job is failed rather than resumed again.
pub const MAX_ATTEMPTS: i64 = 3;
/// Rows per chunk.
const CHUNK_ROWS: usize = codeless::DEFAULT_CHUNK_ROWS;
/// Least time between two progress writes.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The jobs runtime of one server (`AppState::jobs`): the concurrency limit and cancellation
/// flags, and the uploads in progress per account (counted against its quotas,
/// [`super::quota`]).
pub struct JobRuntime {
    pub settings: super::Settings,
    permits: Arc<Semaphore>,
    cancelled: Mutex<HashMap<i64, Arc<AtomicBool>>>,
    pub(super) uploads: super::quota::InFlight,
}

impl JobRuntime {
    pub fn new(settings: super::Settings) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(settings.workers.max(1))),
            settings,
            cancelled: Mutex::default(),
            uploads: Default::default(),
        }
    }

    fn flag(&self, id: i64) -> Arc<AtomicBool> {
        self.cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default()
            .clone()
    }

    fn forget(&self, id: i64) {
        self.cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Asks job `id` to stop (it does at its next chunk).
    pub fn cancel(&self, id: i64) {
        if let Some(flag) = self
            .cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs job `id` in the background.
pub(crate) fn spawn(state: AppState, id: i64) {
    let flag = state.jobs.flag(id);
    tokio::spawn(async move {
        if let Err(e) = run(&state, id, &flag).await {
            tracing::error!(job_id = id, error = %e, "batch job bookkeeping failed");
        }
        state.jobs.forget(id);
    });
}

/// Queues again the jobs a stop interrupted. Called once by `b3o serve` at start-up, before it
/// listens. (Uploads no job points at are the blob store's orphan collector's: another
/// replica's upload in progress is not one.)
pub async fn recover(state: &AppState) -> Result<(), ApiError> {
    let failed = sqlx::query(
        "UPDATE jobs SET status = 'failed', finished_at = $1,
             error = 'the server stopped while this job ran, ' || attempts || ' times; it was not started again'
         WHERE status IN ('queued', 'running') AND attempts >= $2",
    )
    .bind(now())
    .bind(MAX_ATTEMPTS)
    .execute(&state.db)
    .await?
    .rows_affected();
    let resumed: Vec<i64> = sqlx::query_scalar(
        "UPDATE jobs SET status = 'queued', rows_done = 0 WHERE status IN ('queued', 'running')
         RETURNING id",
    )
    .fetch_all(&state.db)
    .await?;
    if failed > 0 || !resumed.is_empty() {
        tracing::info!(
            failed,
            resumed = resumed.len(),
            "batch jobs interrupted by the last stop"
        );
    }
    let mut ids = resumed;
    ids.sort_unstable();
    for id in ids {
        spawn(state.clone(), id);
    }
    Ok(())
}

/// What one chunk step works on, moved to the blocking pool and back.
struct Work {
    chunks: CsvChunks<BufReader<std::fs::File>>,
    out: CsvOutput<BufWriter<std::fs::File>>,
    predictor: OnnxPredictor,
    spec: ModelSpec,
}

/// Reads, predicts and writes the next chunk; `None` after the last.
fn step(work: &mut Work) -> Result<Option<usize>, CodelessError> {
    let Some(chunk) = work.chunks.next_chunk(CHUNK_ROWS)? else {
        return Ok(None);
    };
    let outputs = work.predictor.predict(&chunk.inputs, chunk.n_rows())?;
    work.out.write_chunk(
        &chunk,
        &codeless::describe(&work.spec, &chunk.inputs, &outputs),
    )?;
    Ok(Some(work.chunks.rows_read()))
}

/// How a run ended.
enum Outcome {
    /// Its result is stored under the key `execute` was given.
    Done {
        rows: u64,
        bytes: u64,
    },
    Failed(String),
    Cancelled,
}

async fn run(state: &AppState, id: i64, cancel: &AtomicBool) -> Result<(), ApiError> {
    let _permit = state
        .jobs
        .permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let started = sqlx::query(
        "UPDATE jobs SET status = 'running', started_at = $1, attempts = attempts + 1,
             rows_done = 0, error = NULL WHERE id = $2 AND status IN ('queued', 'running')",
    )
    .bind(now())
    .bind(id)
    .execute(&state.db)
    .await?
    .rows_affected();
    if started == 0 || cancel.load(Ordering::Relaxed) {
        return Ok(());
    }
    let job: Option<JobRow> =
        sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&state.db)
            .await?;
    let Some(job) = job else { return Ok(()) };
    let result_rel = format!("jobs/user-{}/{id}-result.csv", job.user_id);
    let outcome = execute(state, &job, &result_rel, cancel).await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => Outcome::Failed(match e {
            ApiError::BadRequest(m) | ApiError::Conflict(m) | ApiError::NotFound(m) => m,
            other => {
                tracing::error!(job_id = id, error = %other, "batch job failed");
                "the server could not run this job (see its logs)".into()
            }
        }),
    };
    match outcome {
        Outcome::Done { rows, bytes } => {
            let updated = sqlx::query(
                "UPDATE jobs SET status = 'succeeded', result_path = $1, result_bytes = $2,
                     rows_done = $3, rows_total = $4, finished_at = $5 WHERE id = $6",
            )
            .bind(&result_rel)
            .bind(bytes as i64)
            .bind(rows as i64)
            .bind(rows as i64)
            .bind(now())
            .bind(id)
            .execute(&state.db)
            .await?
            .rows_affected();
            if updated == 0 {
                // Deleted while it ran.
                state.blobs.remove(&result_rel).await;
            }
            telemetry::record_job("succeeded", rows);
            tracing::info!(job_id = id, rows, "batch job succeeded");
        }
        Outcome::Failed(message) => {
            sqlx::query(
                "UPDATE jobs SET status = 'failed', error = $1, finished_at = $2 WHERE id = $3",
            )
            .bind(&message)
            .bind(now())
            .bind(id)
            .execute(&state.db)
            .await?;
            telemetry::record_job("failed", 0);
            tracing::info!(job_id = id, error = %message, "batch job failed");
        }
        // (Its scratch result was removed with `execute`'s scratch file.)
        Outcome::Cancelled => {}
    }
    Ok(())
}

/// Streams the job's CSV through its model into a scratch file, stored under `result_key`
/// (durably) once complete.
async fn execute(
    state: &AppState,
    job: &JobRow,
    result_key: &str,
    cancel: &AtomicBool,
) -> Result<Outcome, ApiError> {
    let m = inference::model(state, &state.inference, job.version_id).await?;
    // Held until the end: an S3 input's local copy is removed on drop.
    let local = state.blobs.local_copy(&job.input_path).await?;
    let input = local.path().to_path_buf();
    let (result, output) = state.blobs.scratch().await?;
    let output = output.into_std().await;
    let spec = m.spec.clone();
    let predictor = m.predictor().clone();
    let name = job.deployment.clone();
    let opened = tokio::task::spawn_blocking(move || -> Result<(Work, usize), CodelessError> {
        let io = |e: std::io::Error| CodelessError::Io(e.to_string());
        let total = codeless::count_rows(BufReader::new(std::fs::File::open(&input).map_err(io)?))?;
        let chunks = CsvChunks::new(
            BufReader::new(std::fs::File::open(&input).map_err(io)?),
            &spec,
        )?;
        let out = CsvOutput::new(BufWriter::with_capacity(1 << 20, output), &chunks, &spec)?;
        Ok((
            Work {
                chunks,
                out,
                predictor,
                spec,
            },
            total,
        ))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (mut work, total) = match opened {
        Ok(v) => v,
        Err(e) => return Ok(Outcome::Failed(describe_error(&name, e))),
    };
    sqlx::query("UPDATE jobs SET rows_total = $1 WHERE id = $2")
        .bind(total as i64)
        .bind(job.id)
        .execute(&state.db)
        .await?;
    let mut last_progress = Instant::now();
    let started = Instant::now();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(Outcome::Cancelled);
        }
        let (back, result) = tokio::task::spawn_blocking(move || {
            let r = step(&mut work);
            (work, r)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        work = back;
        match result {
            Ok(Some(done)) => {
                if last_progress.elapsed() >= PROGRESS_EVERY {
                    last_progress = Instant::now();
                    sqlx::query("UPDATE jobs SET rows_done = $1 WHERE id = $2")
                        .bind(done as i64)
                        .bind(job.id)
                        .execute(&state.db)
                        .await?;
                }
            }
            Ok(None) => break,
            Err(e) => return Ok(Outcome::Failed(describe_error(&name, e))),
        }
    }
    let rows = work.chunks.rows_read() as u64;
    telemetry::record_run(m.version_id, rows as usize, started.elapsed(), true);
    let finished = tokio::task::spawn_blocking(move || -> Result<u64, CodelessError> {
        let writer = work.out.finish()?;
        let file = writer
            .into_inner()
            .map_err(|e| CodelessError::Io(e.error().to_string()))?;
        // (The store makes it durable when it takes it.)
        Ok(file
            .metadata()
            .map_err(|e| CodelessError::Io(e.to_string()))?
            .len())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    match finished {
        Ok(bytes) => {
            state.blobs.put_file(result_key, result).await?;
            Ok(Outcome::Done { rows, bytes })
        }
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

/// A failure in the user's data, phrased for them; others are ours (logged, not shown).
fn describe_error(model: &str, e: CodelessError) -> String {
    match e {
        CodelessError::TakesImages => {
            format!("model `{model}` takes images; batch jobs run CSV files through tabular models")
        }
        e if e.is_client_error() => e.to_string(),
        e => {
            tracing::error!(error = %e, "batch job failed");
            "the server could not run this job (see its logs)".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_flags_are_per_job() {
        let rt = JobRuntime::new(super::super::Settings::default());
        let a = rt.flag(1);
        let b = rt.flag(2);
        rt.cancel(1);
        assert!(a.load(Ordering::Relaxed) && !b.load(Ordering::Relaxed));
        rt.forget(1);
        rt.cancel(1);
        assert!(!rt.flag(1).load(Ordering::Relaxed));
    }
}
