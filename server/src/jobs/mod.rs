//! Batch inference jobs: a CSV too large (or too slow) for one request, run through a deployed
//! model in the background, with status, progress and a downloadable result: the same CSV the
//! codeless endpoint returns (`b3o_wasm_client::codeless`), streamed chunk by chunk so memory
//! stays flat whatever the file's size.
//!
//! - `POST /api/jobs`: multipart (`model` = deployment name, then `file` = the CSV) or a raw CSV
//!   body with `?model=name[&filename=data.csv]`. The order of checks: the caller may use the
//!   model (as for its predictions, [`gate::authorize`]) and it takes CSV; the account's quotas
//!   admit one more job ([`quota`]: 429 / 413); only then is the file read, streamed to a
//!   scratch file (bounded by `--max-job-mb` and the account's storage quota); its header is
//!   checked against the model's columns (400 if one is missing); it is stored in the blob
//!   store, durably; the quotas are counted again as the job is recorded; `202` with the job. So a form must name its `model` before its
//!   `file` (browsers send `FormData` fields in the order they were appended; the web app
//!   appends `model` first), or name it in the query: a file part before the model is a 400,
//!   never stored. Non-file fields (and the query's names) are at most [`MAX_FIELD_BYTES`].
//! - `GET /api/jobs`: the caller's jobs, newest first; `GET /api/jobs/{id}`: one job
//!   (`queued | running | succeeded | failed`, rows done of rows total, the error naming row
//!   and column); `GET /api/jobs/{id}/result`: the predictions CSV; `DELETE /api/jobs/{id}`:
//!   cancels and deletes it with its files. Someone else's job answers 404.
//!
//! Jobs pin the version their deployment served at submission. A restart resumes queued and
//! interrupted jobs from the start of their file ([`recover`]); none stays `running`.

mod quota;
mod runner;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use b3o_models::protocol::ErrorBody;
use b3o_models::protocol::jobs::{Job, JobForm, JobList, JobStatus};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::accounts::extract::ApiPath;
use crate::accounts::{CurrentUser, now, rfc3339};
use crate::blobs::{BlobStore, ScratchFile};
use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::inference::{self, Inference, ServedModel, Shared, gate};
use crate::state::AppState;
pub use runner::{JobRuntime, recover, spawn_sweeper};

/// Default largest job upload: 1 GiB (`--max-job-mb`).
pub const DEFAULT_MAX_JOB_BYTES: u64 = 1 << 30;

/// Operator settings of batch jobs (from `b3o serve` flags).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest CSV accepted by `POST /api/jobs`.
    pub max_job_bytes: u64,
    /// Jobs run at the same time; more wait in the queue.
    pub workers: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_job_bytes: DEFAULT_MAX_JOB_BYTES,
            workers: 1,
        }
    }
}

impl Settings {
    pub fn from_config(config: &ServeConfig) -> Self {
        Self {
            max_job_bytes: config.max_job_mb.saturating_mul(1 << 20),
            workers: config.job_workers.max(1),
        }
    }
}
/// Longest kept file name of an upload.
const MAX_NAME_CHARS: usize = 100;
/// Longest non-file form field, `?model=` and `?filename=`, in bytes (a deployment name is at
/// most 100 characters).
pub const MAX_FIELD_BYTES: usize = 256;
/// Most bytes of a multipart body read beyond its file's content: the preamble, part headers
/// and small fields (the parser buffers a part's headers whole, so they must be bounded), and
/// the parser's read-ahead (it takes all the data ready, one network read of up to ~400 KiB,
/// before handing out the file's first bytes).
pub const MAX_FORM_OVERHEAD_BYTES: u64 = 1 << 20;

/// The jobs routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(create, list, get_job, result, delete_job))]
pub struct JobsApi;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/jobs", get(list).post(create))
        .route("/api/jobs/{id}", get(get_job).delete(delete_job))
        .route("/api/jobs/{id}/result", get(result))
        // Uploads are streamed to a scratch file and bounded by `--max-job-mb` there.
        .layer(DefaultBodyLimit::disable())
}

/// A job row as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct JobRow {
    pub id: i64,
    pub user_id: i64,
    pub deployment: String,
    pub version_id: i64,
    pub status: String,
    pub input_name: String,
    pub input_path: String,
    pub input_bytes: i64,
    pub result_path: Option<String>,
    pub result_bytes: Option<i64>,
    pub rows_total: Option<i64>,
    pub rows_done: i64,
    pub error: Option<String>,
    pub attempts: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

pub(crate) const JOB_COLUMNS: &str = "id, user_id, deployment, version_id, status, input_name,
    input_path, input_bytes, result_path, result_bytes, rows_total, rows_done, error, attempts,
    created_at, started_at, finished_at";

impl JobRow {
    /// The stored status (the table's CHECK allows only the four).
    pub(crate) fn status(&self) -> Result<JobStatus, ApiError> {
        JobStatus::parse(&self.status).ok_or_else(|| {
            ApiError::Internal(format!("job {}: unknown status `{}`", self.id, self.status))
        })
    }
}

fn job_view(j: &JobRow) -> Result<Job, ApiError> {
    let status = j.status()?;
    let progress = match (status, j.rows_total) {
        (JobStatus::Succeeded, _) => 1.0,
        (_, Some(total)) if total > 0 => (j.rows_done as f64 / total as f64).min(1.0),
        _ => 0.0,
    };
    Ok(Job {
        id: j.id,
        model: j.deployment.clone(),
        version_id: j.version_id,
        status,
        input_name: j.input_name.clone(),
        input_bytes: j.input_bytes,
        rows_total: j.rows_total,
        rows_done: j.rows_done,
        progress,
        error: j.error.clone(),
        attempts: j.attempts,
        created_at: rfc3339(j.created_at),
        started_at: j.started_at.map(rfc3339),
        finished_at: j.finished_at.map(rfc3339),
        result_url: (status == JobStatus::Succeeded).then(|| format!("/api/jobs/{}/result", j.id)),
        result_bytes: j.result_bytes,
    })
}

fn no_job() -> ApiError {
    ApiError::NotFound("no such job".into())
}

/// The caller's job `id`, 404 for anyone else's (as for an id that does not exist).
async fn own_job(state: &AppState, user: &CurrentUser, id: i64) -> Result<JobRow, ApiError> {
    sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user.id)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(no_job)
}

/// The caller's jobs, newest first (at most 500).
#[utoipa::path(
    get,
    operation_id = "list_jobs",
    path = "/api/jobs",
    tag = "jobs",
    responses(
        (status = 200, description = "The caller's jobs", body = JobList),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn list(user: CurrentUser, State(state): State<AppState>) -> Result<Json<JobList>, ApiError> {
    let jobs: Vec<JobRow> = sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = $1 ORDER BY id DESC LIMIT 500"
    ))
    .bind(user.id)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(JobList {
        jobs: jobs.iter().map(job_view).collect::<Result<_, _>>()?,
    }))
}

/// One of the caller's jobs: status, progress, error.
#[utoipa::path(
    get,
    operation_id = "get_job",
    path = "/api/jobs/{id}",
    tag = "jobs",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such job of the caller's", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn get_job(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(job_view(&own_job(&state, &user, id).await?)?))
}

/// A succeeded job's predictions: its CSV with the prediction columns appended, streamed
/// from the blob store (`Content-Disposition` names it `<input>-predictions.csv`).
#[utoipa::path(
    get,
    operation_id = "get_job_result",
    path = "/api/jobs/{id}/result",
    tag = "jobs",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The predictions CSV", content_type = "text/csv", body = String),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such job of the caller's", body = ErrorBody),
        (status = 409, description = "The job has not succeeded (queued, running or failed)", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn result(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let job = own_job(&state, &user, id).await?;
    let path = match (job.status()?, &job.result_path) {
        (JobStatus::Succeeded, Some(path)) => path.clone(),
        (JobStatus::Failed, _) => {
            return Err(ApiError::Conflict(format!(
                "job {id} failed, so it has no result: {}",
                job.error.as_deref().unwrap_or("unknown error")
            )));
        }
        (status, _) => {
            return Err(ApiError::Conflict(format!(
                "job {id} is {}; its result is ready when it has succeeded",
                status.as_str()
            )));
        }
    };
    let stream = state
        .blobs
        .get_stream(&path)
        .await?
        .map(|chunk| chunk.map_err(std::io::Error::other))
        // The compression layer polls once more after the end.
        .fuse();
    let disposition = format!("attachment; filename=\"{}\"", result_name(&job.input_name));
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    // No Content-Length: the compression layer may gzip/brotli the stream, and a length of
    // the uncompressed file then cut every compressed download short (browsers send
    // Accept-Encoding). The size is in the job's `result_bytes`.
    Ok(response)
}

/// `churn.csv` -> `churn-predictions.csv`.
fn result_name(input: &str) -> String {
    let stem = input
        .strip_suffix(".csv")
        .or_else(|| input.strip_suffix(".CSV"))
        .unwrap_or(input);
    format!("{stem}-predictions.csv")
}

/// Cancels a queued or running job and deletes it and its files.
#[utoipa::path(
    delete,
    operation_id = "delete_job",
    path = "/api/jobs/{id}",
    tag = "jobs",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "A missing X-CSRF-Token (session cookie)", body = ErrorBody),
        (status = 404, description = "No such job of the caller's", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn delete_job(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let job = own_job(&state, &user, id).await?;
    sqlx::query("DELETE FROM jobs WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user.id)
        .execute(&state.db)
        .await?;
    state.jobs.cancel(id);
    for path in [Some(job.input_path), job.result_path]
        .into_iter()
        .flatten()
    {
        state.blobs.remove(&path).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A job's input stored before its row: deleted when dropped unless [`UnrecordedBlob::keep`]
/// was called (a quota refusal or a failed insert leaves nothing behind; a crash leaves it to
/// the orphan collector).
struct UnrecordedBlob {
    store: Arc<BlobStore>,
    key: Option<String>,
}

impl UnrecordedBlob {
    fn keep(mut self) {
        self.key = None;
    }
}

impl Drop for UnrecordedBlob {
    fn drop(&mut self) {
        if let Some(key) = self.key.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let store = self.store.clone();
            runtime.spawn(async move { store.remove(&key).await });
        }
    }
}

/// `POST /api/jobs?model=&filename=` (a raw CSV body names its model here).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CreateQuery {
    /// The deployment name (required with a raw CSV body; a form may send it instead).
    model: Option<String>,
    /// The file's name, for a raw CSV body (default `data.csv`).
    filename: Option<String>,
}

/// A file name safe for a `Content-Disposition` header.
fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' '))
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim().to_string();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "data.csv".into()
    } else {
        cleaned
    }
}

/// Streams an upload into a scratch file, refusing more than `max` bytes or more than the
/// account's storage quota (`slot`). Dropped before [`Upload::finish`] (refused, failed,
/// abandoned: the client went away), it leaves nothing behind.
struct Upload {
    rel: String,
    file: tokio::fs::File,
    scratch: ScratchFile,
    bytes: u64,
    max: u64,
    slot: quota::UploadSlot,
}

/// An upload received whole, not yet stored nor recorded as a job.
struct Finished {
    rel: String,
    bytes: u64,
    scratch: ScratchFile,
    slot: quota::UploadSlot,
}

impl Upload {
    async fn create(
        store: &BlobStore,
        user_id: i64,
        max: u64,
        slot: quota::UploadSlot,
    ) -> Result<Self, ApiError> {
        let rel = format!("jobs/user-{user_id}/{:016x}.csv", rand::random::<u64>());
        let (scratch, file) = store.scratch().await?;
        Ok(Self {
            rel,
            file,
            scratch,
            bytes: 0,
            max,
            slot,
        })
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        let n = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.max {
            return Err(ApiError::PayloadTooLarge(format!(
                "the file is larger than this server's job limit of {} MiB (--max-job-mb)",
                self.max >> 20
            )));
        }
        self.slot.add(n)?;
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| ApiError::Internal(format!("writing {}: {e}", self.rel)))
    }

    /// Flushes and closes the file (the store makes it durable when it takes it).
    async fn finish(mut self) -> Result<Finished, ApiError> {
        self.file
            .flush()
            .await
            .map_err(|e| ApiError::Internal(format!("storing the upload: {e}")))?;
        drop(self.file);
        Ok(Finished {
            rel: self.rel,
            bytes: self.bytes,
            scratch: self.scratch,
            slot: self.slot,
        })
    }
}

fn upload_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("reading the upload: {e}"))
}

/// 400 unless `value` (form field or query parameter `what`) is at most [`MAX_FIELD_BYTES`].
fn check_field(what: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(field_too_long(what));
    }
    Ok(())
}

fn field_too_long(what: &str) -> ApiError {
    ApiError::BadRequest(format!("`{what}` may be at most {MAX_FIELD_BYTES} bytes"))
}

/// A job admitted before its file is read: the caller may use the model, which takes CSV, and
/// the account's quotas have room; `upload` is where the file goes.
struct Admitted {
    model: String,
    version_id: i64,
    served: Arc<ServedModel>,
    upload: Upload,
}

/// Admits a job on deployment `model` for `user` (see the module's order of checks).
async fn admit(
    state: &AppState,
    shared: &Arc<Shared>,
    user: &CurrentUser,
    headers: &HeaderMap,
    model: String,
) -> Result<Admitted, ApiError> {
    if model.is_empty() {
        return Err(ApiError::BadRequest("the `model` field is empty".into()));
    }
    check_field("model", &model)?;
    let target = gate::authorize(state, shared, Some(user), headers, &model, None).await?;
    let slot = quota::admit(state, user).await?;
    let served = inference::model(state, shared, target.version_id).await?;
    b3o_wasm_client::codeless::preprocessing(&served.spec)
        .map_err(|e| jobs_input_error(&model, e))?;
    let upload = Upload::create(
        &state.blobs,
        user.id,
        state.jobs.settings.max_job_bytes,
        slot,
    )
    .await?;
    Ok(Admitted {
        model,
        version_id: target.version_id,
        served,
        upload,
    })
}

/// Submits a batch job: a CSV run through a deployed tabular model in the background. Send a
/// multipart form with `model` before `file`, or a raw CSV body with `?model=name`. Checked in
/// this order: the caller may use the model and it takes CSV; the account's quotas admit one
/// more job; the file is streamed to disk (bounded by `--max-job-mb` and the storage quota);
/// its header has every feature column.
#[utoipa::path(
    post,
    operation_id = "create_job",
    path = "/api/jobs",
    tag = "jobs",
    params(CreateQuery),
    request_body(
        description = "The CSV: a multipart form (`model`, then `file`) or the raw CSV with `?model=`",
        content(
            (JobForm = "multipart/form-data"),
            (String = "text/csv"),
        ),
    ),
    responses(
        (status = 202, description = "Accepted and queued (`Location`: the job's URL)", body = Job,
            headers(("Location" = String, description = "`/api/jobs/{id}`"))),
        (status = 400, description = "No model named, a form out of order or with unknown fields, an empty file, a missing column, or a model that takes images", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "A missing X-CSRF-Token (session cookie), or a cross-site `Origin` the deployment does not allow", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "A custom model without a built-in architecture (cannot be served)", body = ErrorBody),
        (status = 413, description = "The file passes `--max-job-mb` or the account's storage quota", body = ErrorBody),
        (status = 429, description = "The account has its most active jobs; retry after `Retry-After`", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn create(
    user: CurrentUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let query: CreateQuery = match request.uri().query() {
        Some(_) => Query::try_from_uri(request.uri())
            .map(|Query(q)| q)
            .map_err(|e| ApiError::BadRequest(e.body_text()))?,
        None => CreateQuery::default(),
    };
    if let Some(model) = &query.model {
        check_field("model", model)?;
    }
    if let Some(filename) = &query.filename {
        check_field("filename", filename)?;
    }
    let (admitted, input_name) = receive(&state, &shared, &user, &headers, request, query).await?;
    let Admitted {
        model,
        version_id,
        served,
        upload,
    } = admitted;
    let finished = upload.finish().await?;
    // The header is checked now, so a missing column is a 400 and not a failed job.
    let path = finished.scratch.path().to_path_buf();
    let spec = served.spec.clone();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(path)
            .map_err(|e| b3o_wasm_client::codeless::CodelessError::Io(e.to_string()))?;
        b3o_wasm_client::codeless::CsvChunks::new(std::io::BufReader::new(file), &spec).map(|_| ())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| jobs_input_error(&model, e))?;
    // Stored durably before its row commits; deleted again unless the row commits.
    let Finished {
        rel,
        bytes,
        scratch,
        slot,
    } = finished;
    state.blobs.put_file(&rel, scratch).await?;
    let stored = UnrecordedBlob {
        store: state.blobs.clone(),
        key: Some(rel.clone()),
    };
    // Counted again where the job is recorded: uploads of one account that raced each other
    // cannot together pass its quotas.
    let mut tx = crate::db::begin_write(&state.db).await?;
    slot.check_commit(&mut tx, bytes).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (user_id, deployment, version_id, input_name, input_path,
             input_bytes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(user.id)
    .bind(&model)
    .bind(version_id)
    .bind(&input_name)
    .bind(&rel)
    .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
    .bind(now())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    stored.keep();
    drop(slot);
    runner::spawn(state.clone(), id);
    let job = own_job(&state, &user, id).await?;
    let location = HeaderValue::from_str(&format!("/api/jobs/{id}"))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(job_view(&job)?),
    )
        .into_response())
}

/// The job's input as a codeless error: image models and bad headers are the caller's.
fn jobs_input_error(model: &str, e: b3o_wasm_client::codeless::CodelessError) -> ApiError {
    use b3o_wasm_client::codeless::CodelessError;
    match e {
        CodelessError::TakesImages => ApiError::BadRequest(format!(
            "model `{model}` takes images; batch jobs run CSV files through tabular models"
        )),
        e if e.is_client_error() => ApiError::BadRequest(e.to_string()),
        e => ApiError::Internal(e.to_string()),
    }
}

/// A non-file form field, read up to [`MAX_FIELD_BYTES`] (400 past it).
async fn read_field(
    field: &mut axum::extract::multipart::Field<'_>,
    budget: &FormBudget,
) -> Result<String, ApiError> {
    let what = field.name().map(gate::shown).unwrap_or_default();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| budget.error(e))? {
        if bytes.len().saturating_add(chunk.len()) > MAX_FIELD_BYTES {
            return Err(field_too_long(&what));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::BadRequest(format!("the `{what}` field is not UTF-8 text")))
}

/// Keeps a multipart body from running ahead of its file: the bytes read before each chunk may
/// pass the file's bytes handed out by at most [`MAX_FORM_OVERHEAD_BYTES`], so the parser's
/// buffer stays within that plus one chunk.
#[derive(Default)]
struct FormBudget {
    read: AtomicU64,
    file: AtomicU64,
    exceeded: AtomicBool,
}

impl FormBudget {
    fn arrived(&self, n: usize) -> Result<(), std::io::Error> {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let before = self.read.fetch_add(n, Ordering::Relaxed);
        let allowed = self
            .file
            .load(Ordering::Relaxed)
            .saturating_add(MAX_FORM_OVERHEAD_BYTES);
        if before > allowed {
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("too much form besides the file"));
        }
        Ok(())
    }

    /// A multipart failure, naming the budget when that was the cause.
    fn error(&self, e: impl std::fmt::Display) -> ApiError {
        if self.exceeded.load(Ordering::Relaxed) {
            ApiError::BadRequest(format!(
                "a job's form may carry at most {} MiB besides its file (fields and part headers)",
                MAX_FORM_OVERHEAD_BYTES >> 20
            ))
        } else {
            upload_error(e)
        }
    }
}

/// Reads the request: admits the job as soon as its model is known, then streams its file.
/// Returns the admitted job and the file's name.
async fn receive(
    state: &AppState,
    shared: &Arc<Shared>,
    user: &CurrentUser,
    headers: &HeaderMap,
    request: Request,
    query: CreateQuery,
) -> Result<(Admitted, String), ApiError> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let model = query.model.ok_or_else(|| {
            ApiError::BadRequest(
                "name the model: multipart fields `model` and `file`, or a CSV body with ?model=name"
                    .into(),
            )
        })?;
        let mut admitted = admit(state, shared, user, headers, model).await?;
        let mut body = request.into_body().into_data_stream();
        while let Some(chunk) = body.next().await {
            admitted.upload.write(&chunk.map_err(upload_error)?).await?;
        }
        if admitted.upload.bytes == 0 {
            return Err(ApiError::BadRequest("the CSV is empty".into()));
        }
        let name = clean_name(query.filename.as_deref().unwrap_or("data.csv"));
        return Ok((admitted, name));
    }
    let budget = Arc::new(FormBudget::default());
    let (parts, body) = request.into_parts();
    let counted = budget.clone();
    let body = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        counted.arrived(chunk.len())?;
        Ok::<_, std::io::Error>(chunk)
    });
    let request = Request::from_parts(parts, Body::from_stream(body));
    let mut form = axum::extract::Multipart::from_request(request, state)
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let read = read_form(
        state,
        shared,
        user,
        headers,
        &mut form,
        &budget,
        query.model,
    )
    .await;
    // A form refused for its shape (order, fields) is read to its end so that the client sees
    // the 400; refusals of the caller (401/403/404, quotas) answer at once and read nothing.
    if matches!(read, Err(ApiError::BadRequest(_))) {
        drain_form(&mut form, &budget).await;
    }
    read
}

/// The multipart half of [`receive`]: the fields in order, the job admitted once its model is
/// known. On an error the caller drains what is left of the form.
async fn read_form(
    state: &AppState,
    shared: &Arc<Shared>,
    user: &CurrentUser,
    headers: &HeaderMap,
    form: &mut axum::extract::Multipart,
    budget: &FormBudget,
    query_model: Option<String>,
) -> Result<(Admitted, String), ApiError> {
    let mut admitted = match query_model {
        Some(model) => Some(admit(state, shared, user, headers, model).await?),
        None => None,
    };
    let (mut name, mut got_file) = (None, false);
    while let Some(mut field) = form.next_field().await.map_err(|e| budget.error(e))? {
        match field.name() {
            Some("model") => {
                let text = read_field(&mut field, budget).await?;
                let text = text.trim();
                match &admitted {
                    Some(a) if a.model == text => {}
                    Some(_) => {
                        return Err(ApiError::BadRequest(
                            "name the model once: in the query or in the form's `model` field"
                                .into(),
                        ));
                    }
                    None => {
                        admitted = Some(admit(state, shared, user, headers, text.into()).await?);
                    }
                }
            }
            Some("file") => {
                // The file is read only for a model the caller may use, within its quotas.
                let Some(a) = admitted.as_mut() else {
                    discard(&mut field, budget).await;
                    return Err(ApiError::BadRequest(
                        "send the form's `model` field before its `file` field (or name the model \
                         with ?model=): the file is read only once its model is known"
                            .into(),
                    ));
                };
                if got_file {
                    return Err(ApiError::BadRequest("send one `file` per job".into()));
                }
                got_file = true;
                name = field.file_name().map(clean_name);
                while let Some(chunk) = field.chunk().await.map_err(|e| budget.error(e))? {
                    let n = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
                    budget.file.fetch_add(n, Ordering::Relaxed);
                    a.upload.write(&chunk).await?;
                }
            }
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown form field `{}`: send `model` and `file`",
                    gate::shown(other)
                )));
            }
            None => return Err(ApiError::BadRequest("a form field has no name".into())),
        }
    }
    let admitted =
        admitted.ok_or_else(|| ApiError::BadRequest("the form lacks the `model` field".into()))?;
    if !got_file {
        return Err(ApiError::BadRequest(
            "the form lacks the `file` field".into(),
        ));
    }
    if admitted.upload.bytes == 0 {
        return Err(ApiError::BadRequest("the CSV is empty".into()));
    }
    Ok((admitted, name.unwrap_or_else(|| "data.csv".into())))
}

/// Most time spent reading and throwing away the rest of a refused body.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and throws away what is left of a refused form (every remaining part, within
/// [`DRAIN_TIME`]), storing none of it: answering while the client still sends closes the
/// connection on unread data, and the client then often sees a reset instead of our 4xx.
async fn drain_form(form: &mut axum::extract::Multipart, budget: &FormBudget) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Ok(Some(mut field)) = form.next_field().await {
            discard(&mut field, budget).await;
        }
    })
    .await;
}

/// Reads and throws away the rest of a refused file part (at most 32 MiB, for at most 5 s),
/// storing none of it: answering while the client still sends closes the connection on unread
/// data, and the client then often sees a reset instead of our 400.
async fn discard(field: &mut axum::extract::multipart::Field<'_>, budget: &FormBudget) {
    let mut left: u64 = 32 << 20;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Ok(Some(chunk)) = field.chunk().await {
            let n = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
            budget.file.fetch_add(n, Ordering::Relaxed);
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_for_headers() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(
            clean_name("C:\\Users\\me\\churn 2024.csv"),
            "churn 2024.csv"
        );
        assert_eq!(clean_name("a\"b;c.csv"), "abc.csv");
        assert_eq!(clean_name(".."), "data.csv");
        assert_eq!(clean_name(""), "data.csv");
        assert_eq!(result_name("churn.csv"), "churn-predictions.csv");
        assert_eq!(result_name("data"), "data-predictions.csv");
    }
}
