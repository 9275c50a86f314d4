//! Running batch jobs: a few at a time (`--job-workers`), each streaming its CSV (the store's
//! file, or a local copy of an S3 blob) through the model in chunks on the blocking pool,
//! recording progress, writing the result to a scratch file and storing it durably in the
//! blob store before the job is marked `succeeded`.
//!
//! Jobs are a queue shared by every replica on the database: a replica runs a job once it
//! *claimed* it, in one `UPDATE` that only succeeds on a queued job or a running one whose
//! lease ran out, and renews its lease ([`LEASE`]) while it runs; it stops if the lease was
//! lost or the job deleted. [`recover`] (at start-up) and [`spawn_sweeper`] (every
//! [`SWEEP_EVERY`]) start the claimable jobs: the queued ones (any replica's) and those a dead
//! replica held, up to [`MAX_ATTEMPTS`] starts, after which they fail with a message saying
//! so. On SQLite (one process per database) a start-up takes over every running job at once.

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
/// How long a claim lasts without renewal; renewed every third of it.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often each replica looks for claimable jobs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);
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
    /// Other replicas (`crate::cluster`): a deleted job stops wherever it runs.
    outbox: crate::cluster::Outbox,
}

impl JobRuntime {
    pub fn new(settings: super::Settings) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(settings.workers.max(1))),
            settings,
            cancelled: Mutex::default(),
            uploads: Default::default(),
            outbox: Default::default(),
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

    /// Whether this replica runs or waits to run job `id`.
    fn tracks(&self, id: i64) -> bool {
        self.cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
    }

    /// Asks job `id` to stop (it does at its next chunk), on whichever replica runs it.
    pub fn cancel(&self, id: i64) {
        self.outbox.send(crate::cluster::Notice::JobDeleted { id });
        self.cancel_local(id);
    }

    /// Asks job `id` to stop if this replica runs it.
    pub(crate) fn cancel_local(&self, id: i64) {
        if let Some(flag) = self
            .cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            flag.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn outbox(&self) -> &crate::cluster::Outbox {
        &self.outbox
    }
}

/// Runs job `id` in the background once this replica claims it.
pub(crate) fn spawn(state: AppState, id: i64) {
    let flag = state.jobs.flag(id);
    tokio::spawn(async move {
        if let Err(e) = run(&state, id, flag).await {
            tracing::error!(job_id = id, error = %e, "batch job bookkeeping failed");
        }
        state.jobs.forget(id);
    });
}

/// Starts the jobs a stop interrupted and the queued ones. Called once by `b3o serve` at
/// start-up, before it listens; [`spawn_sweeper`] does it again periodically. (Uploads no job
/// points at are the blob store's orphan collector's: another replica's upload in progress is
/// not one.)
pub async fn recover(state: &AppState) -> Result<(), ApiError> {
    // One process per SQLite database: nobody else holds its running jobs.
    let take_over = crate::db::dialect(&state.db) == crate::db::Dialect::Sqlite;
    claim_interrupted(state, take_over).await
}

/// Looks for claimable jobs every [`SWEEP_EVERY`]: the queued ones and those whose replica
/// died (its lease ran out).
pub fn spawn_sweeper(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = claim_interrupted(&state, false).await {
                tracing::warn!(error = %e, "looking for batch jobs to resume failed");
            }
        }
    });
}

/// The jobs this replica may claim: queued, or running on a lease that ran out (every running
/// one with `take_over`).
const CLAIMABLE: &str = "(status = 'queued' OR (status = 'running' AND ($1 OR lease_until IS NULL OR lease_until < $2)))";

async fn claim_interrupted(state: &AppState, take_over: bool) -> Result<(), ApiError> {
    let now = now();
    let failed = sqlx::query(&format!(
        "UPDATE jobs SET status = 'failed', finished_at = $2, claimed_by = NULL,
             error = 'the server stopped while this job ran, ' || attempts || ' times; it was not started again'
         WHERE {CLAIMABLE} AND attempts >= $3"
    ))
    .bind(take_over)
    .bind(now)
    .bind(MAX_ATTEMPTS)
    .execute(&state.db)
    .await?
    .rows_affected();
    let mut ids: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT id FROM jobs WHERE {CLAIMABLE} ORDER BY id"
    ))
    .bind(take_over)
    .bind(now)
    .fetch_all(&state.db)
    .await?;
    ids.retain(|&id| !state.jobs.tracks(id));
    if failed > 0 || !ids.is_empty() {
        tracing::info!(
            failed,
            resumed = ids.len(),
            "batch jobs queued or interrupted by a stop"
        );
    }
    for id in ids {
        if take_over {
            // Claimable by this process now, whatever its lease says.
            sqlx::query("UPDATE jobs SET lease_until = NULL WHERE id = $1 AND status = 'running'")
                .bind(id)
                .execute(&state.db)
                .await?;
        }
        spawn(state.clone(), id);
    }
    Ok(())
}

/// Renews this replica's lease on job `id` while it runs; raises `cancel` when the job is
/// gone (deleted) or another replica holds it.
async fn renew_lease(state: AppState, id: i64, cancel: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(LEASE / 3).await;
        let renewed = sqlx::query(
            "UPDATE jobs SET lease_until = $1 WHERE id = $2 AND claimed_by = $3 AND status = 'running'",
        )
        .bind(lease_end())
        .bind(id)
        .bind(crate::cluster::replica_tag())
        .execute(&state.db)
        .await;
        match renewed {
            Ok(r) if r.rows_affected() == 0 => {
                cancel.store(true, Ordering::Relaxed);
                return;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(job_id = id, error = %e, "renewing a job's lease failed"),
        }
    }
}

/// When a claim made or renewed now ends (Unix seconds).
fn lease_end() -> i64 {
    now() + LEASE.as_secs() as i64
}

/// What one chunk step works on, moved to the blocking pool and back.
struct Work {
    chunks: CsvChunks<BufReader<std::fs::File>>,
    out: CsvOutput<BufWriter<std::fs::File>>,
    predictor: OnnxPredictor,
    spec: ModelSpec,
    /// What the chunks since the last hand-over scored (drift monitoring), if monitored.
    window: Option<b3o_models::stats::Summary>,
}

/// Reads, predicts and writes the next chunk; `None` after the last.
fn step(work: &mut Work) -> Result<Option<usize>, CodelessError> {
    let Some(chunk) = work.chunks.next_chunk(CHUNK_ROWS)? else {
        return Ok(None);
    };
    let outputs = work.predictor.predict(&chunk.inputs, chunk.n_rows())?;
    if let Some(w) = work.window.as_mut() {
        work.chunks.observe(&chunk, w);
        b3o_models::monitor::observe_outputs(w, &work.spec, &outputs, chunk.n_rows());
    }
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

async fn run(state: &AppState, id: i64, cancel: Arc<AtomicBool>) -> Result<(), ApiError> {
    let _permit = state
        .jobs
        .permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if cancel.load(Ordering::Relaxed) {
        return Ok(());
    }
    let now = now();
    let claimed = sqlx::query(&format!(
        "UPDATE jobs SET status = 'running', started_at = $2, attempts = attempts + 1,
             rows_done = 0, error = NULL, claimed_by = $3, lease_until = $4
         WHERE id = $5 AND {CLAIMABLE}"
    ))
    .bind(false)
    .bind(now)
    .bind(crate::cluster::replica_tag())
    .bind(lease_end())
    .bind(id)
    .execute(&state.db)
    .await?
    .rows_affected();
    if claimed == 0 {
        // Another replica runs it, it finished, or it was deleted.
        return Ok(());
    }
    let renewal = tokio::spawn(renew_lease(state.clone(), id, cancel.clone()));
    let result = run_claimed(state, id, &cancel).await;
    renewal.abort();
    result
}

/// Runs job `id`, which this replica claimed, and records how it ended (unless it lost the
/// claim meanwhile).
async fn run_claimed(state: &AppState, id: i64, cancel: &AtomicBool) -> Result<(), ApiError> {
    let job: Option<JobRow> =
        sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&state.db)
            .await?;
    let Some(job) = job else { return Ok(()) };
    // One key per claim: a replica that lost its lease never overwrites (or removes) the
    // result of the one that took the job over.
    let result_rel = format!("jobs/user-{}/{id}-result-{}.csv", job.user_id, job.attempts);
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
                     rows_done = $3, rows_total = $4, finished_at = $5, claimed_by = NULL
                 WHERE id = $6 AND claimed_by = $7 AND status = 'running'",
            )
            .bind(&result_rel)
            .bind(bytes as i64)
            .bind(rows as i64)
            .bind(rows as i64)
            .bind(now())
            .bind(id)
            .bind(crate::cluster::replica_tag())
            .execute(&state.db)
            .await?
            .rows_affected();
            if updated == 0 {
                // Deleted while it ran, or its lease lost to another replica (which writes
                // its own result).
                state.blobs.remove(&result_rel).await;
            }
            telemetry::record_job("succeeded", rows);
            tracing::info!(job_id = id, rows, "batch job succeeded");
        }
        Outcome::Failed(message) => {
            sqlx::query(
                "UPDATE jobs SET status = 'failed', error = $1, finished_at = $2, claimed_by = NULL
                 WHERE id = $3 AND claimed_by = $4 AND status = 'running'",
            )
            .bind(&message)
            .bind(now())
            .bind(id)
            .bind(crate::cluster::replica_tag())
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
    let window = state
        .monitoring
        .enabled()
        .then(b3o_models::stats::Summary::default);
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
                window,
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
        if let Some(w) = work.window.as_mut().filter(|w| w.n_rows > 0) {
            // The deployment's traffic only while it serves the job's version.
            let serving = state
                .inference
                .deployments
                .get(&state.db, &name)
                .await
                .ok()
                .flatten()
                .map(|d| d.version_id);
            if let Some(serving) = serving {
                state.monitoring.record(&name, serving, job.version_id, w);
            }
            *w = b3o_models::stats::Summary::default();
        }
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
