//! Native inference for every deployed model from one process: the KServe V2 / Open Inference
//! Protocol REST API ([`v2`]) for programs, codeless routes ([`codeless`]) that take a user's
//! raw CSV, JSON rows or an image and apply the model's own preprocessing server-side (the
//! same code as the browser engine: `b3o_wasm_client::codeless`), the model package a browser
//! downloads to run a model itself, and per-deployment sharing ([`sharing`]).
//!
//! A request names a deployment; [`deployments`] says which version it serves *now* and who may
//! use it (kept in memory, invalidated by promote, rollback and sharing changes, so the hot path
//! reads no database), [`gate`] checks the caller and its origin (CORS), and the [`cache`] turns
//! the version into a runnable tract plan (from its stored ONNX, or exported from its weights).
//! Single rows are batched with concurrent ones ([`batcher`]); models run on the blocking pool,
//! never on the async workers. Everything is measured for Prometheus ([`telemetry`]).
//!
//! Access (`crate::access`: `PublicIfModelPublic`): a public deployment answers anyone; a
//! private one answers those who may see its group (401 anonymous, 404 otherwise).

pub mod admission;
pub mod batcher;
pub mod cache;
mod codeless;
pub mod deployments;
pub mod gate;
mod rows_body;
pub mod sharing;
/// The batch-1 plan (shared with the browser engine).
pub use b3o_wasm_client::inference::single;
pub mod telemetry;
mod v2;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use b3o_models::model::ModelSpec;
use b3o_models::onnx::export_onnx;
use b3o_models::weights;
use b3o_wasm_client::codeless::InputLimits;
use b3o_wasm_client::inference::OnnxPredictor;

use crate::blobs;
use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::limits::Limits;
use crate::state::AppState;
pub use admission::{Admission, Ticket};
pub use batcher::BatchConfig;
pub use cache::{ModelCache, ServedModel};
pub use deployments::{Deployment, Deployments};

/// Largest request body: a CSV of ~100k churn rows, or 64 images as V2 JSON, fit easily.
/// Larger files go to batch jobs (`POST /api/jobs`).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Operator settings of the inference routes and batch jobs (from `b3o serve` flags).
#[derive(Debug, Clone)]
pub struct Settings {
    pub batch: BatchConfig,
    /// Memory cap of the loaded-model cache (ONNX bytes).
    pub cache_bytes: usize,
    /// Largest CSV accepted by `POST /api/jobs`.
    pub max_job_bytes: u64,
    /// Jobs run at the same time; more wait in the queue.
    pub job_workers: usize,
    /// Serve `GET /metrics`.
    pub metrics: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            batch: BatchConfig::default(),
            cache_bytes: cache::DEFAULT_MAX_BYTES,
            max_job_bytes: crate::jobs::DEFAULT_MAX_JOB_BYTES,
            job_workers: 1,
            metrics: true,
        }
    }
}

impl Settings {
    pub fn from_config(config: &ServeConfig) -> Self {
        Self {
            batch: BatchConfig {
                max_batch: config.max_batch.max(1),
                max_delay: std::time::Duration::from_micros(config.max_batch_delay_us),
            },
            cache_bytes: config.model_cache_mb.saturating_mul(1 << 20),
            max_job_bytes: config.max_job_mb.saturating_mul(1 << 20),
            job_workers: config.job_workers.max(1),
            metrics: config.metrics,
        }
    }
}

/// The in-memory side of inference for one data directory (one database): loaded models,
/// the deployment cache and the job runner.
pub struct Shared {
    pub settings: Settings,
    pub models: ModelCache,
    pub deployments: Deployments,
    pub jobs: crate::jobs::JobRuntime,
    /// Body budget and work slots of the inference routes.
    pub admission: Admission,
    /// Bounds on codeless input (columns, rows per request, decoded image size).
    pub input_limits: InputLimits,
    /// Most rows in one request (V2 batch, JSON rows).
    pub max_rows: usize,
    /// Most columns in one JSON row.
    pub max_columns: usize,
    /// How long a request waits for its model work before a 503 (the work keeps its slot
    /// until it really ends).
    pub work_timeout: std::time::Duration,
}

impl Shared {
    fn new(settings: Settings, limits: &Limits) -> Self {
        Self {
            models: ModelCache::new(settings.cache_bytes),
            deployments: Deployments::default(),
            jobs: crate::jobs::JobRuntime::new(settings.job_workers),
            settings,
            admission: Admission::new(limits),
            input_limits: InputLimits {
                max_columns: limits.max_columns,
                max_rows: Some(limits.max_rows_per_request),
                max_image_bytes: limits.max_image_decoded_bytes(),
            },
            max_rows: limits.max_rows_per_request,
            max_columns: limits.max_columns,
            work_timeout: std::time::Duration::from_secs(limits.inference_timeout_secs.max(1)),
        }
    }

    /// Reads a request body of an inference route within [`MAX_BODY_BYTES`] and the body
    /// budget (see [`admission`]).
    pub async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Body,
        ticket: &mut Ticket,
    ) -> Result<Bytes, ApiError> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        self.admission
            .read_body(body, declared, MAX_BODY_BYTES, ticket)
            .await
    }

    /// Runs blocking `work` on the blocking pool under a work slot: waits for a slot (503 when
    /// none frees in time) and for the work at most [`Shared::work_timeout`] (503 then; the
    /// work keeps its slot until it ends, so abandoned work still counts).
    pub async fn run_blocking<T: Send + 'static>(
        &self,
        ticket: &mut Ticket,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        self.admission.work_slot(ticket).await?;
        let slot = ticket.take_work();
        let task = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        });
        match tokio::time::timeout(self.work_timeout, task).await {
            Ok(done) => done.map_err(|e| ApiError::Internal(e.to_string())),
            Err(_) => Err(ApiError::Unavailable {
                message: format!(
                    "the model did not answer within {} s; send fewer rows or try again later",
                    self.work_timeout.as_secs()
                ),
                retry_after_secs: self.work_timeout.as_secs(),
            }),
        }
    }
}

/// One [`Shared`] per data directory. The registry (promote, rollback), demo seeding and start-up
/// reach it from the [`AppState`] alone; a process serves one data directory, tests many.
fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<Shared>>> {
    static SHARED: OnceLock<Mutex<HashMap<PathBuf, Arc<Shared>>>> = OnceLock::new();
    SHARED.get_or_init(Default::default)
}

/// The inference state of `state`'s data directory, created with default settings if
/// [`start`] has not run (tests).
pub fn shared(state: &AppState) -> Arc<Shared> {
    let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
    map.entry(state.data_dir.clone())
        .or_insert_with(|| Arc::new(Shared::new(Settings::default(), &state.limits)))
        .clone()
}

/// Called by the registry after a deployment's version changed (promote, rollback): the next
/// request reads it again. Requests already running keep the model they hold.
pub fn deployment_changed(state: &AppState, name: &str) {
    shared(state).deployments.invalidate(name);
}

/// Start-up of `b3o serve`, before it listens: applies the settings, resumes the batch jobs a
/// restart interrupted and, with `--demo`, seeds the demo models.
pub async fn start(config: &ServeConfig, state: &AppState) -> Result<(), ApiError> {
    {
        let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            state.data_dir.clone(),
            Arc::new(Shared::new(Settings::from_config(config), &state.limits)),
        );
    }
    crate::jobs::recover(state).await?;
    if config.demo {
        crate::demo::seed(state).await?;
    }
    Ok(())
}

/// The request's [`Shared`]: looked up once per router (the slot), not per request.
#[derive(Clone, Default)]
struct Slot(Arc<OnceLock<Arc<Shared>>>);

/// Extractor of the inference state.
pub struct Inference(pub Arc<Shared>);

impl FromRequestParts<AppState> for Inference {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let shared = match parts.extensions.get::<Slot>() {
            Some(slot) => slot.0.get_or_init(|| shared(state)).clone(),
            None => shared(state),
        };
        Ok(Inference(shared))
    }
}

/// The inference routes, batch jobs and demo routes.
pub fn router() -> Router<AppState> {
    telemetry::init();
    Router::new()
        .route("/metrics", axum::routing::get(telemetry::render))
        // The model routes read their bodies themselves, within MAX_BODY_BYTES and the body
        // budget (`Shared::read_body`), after the caller is authorised.
        .merge(v2::model_router())
        .merge(codeless::router())
        .merge(sharing::model_router())
        .merge(v2::health_router())
        .merge(sharing::owner_router())
        .merge(crate::jobs::router())
        .merge(crate::demo::router())
        .layer(axum::Extension(Slot::default()))
}

/// The served model of `version_id`, loaded on first use.
pub(crate) async fn model(
    state: &AppState,
    shared: &Shared,
    version_id: i64,
) -> Result<Arc<ServedModel>, ApiError> {
    let batch = shared.settings.batch;
    shared
        .models
        .get_or_load(version_id, || load(state, version_id, batch))
        .await
}

/// Reads a version's spec and ONNX (or exports it from the weights) and builds its plan.
async fn load(
    state: &AppState,
    version_id: i64,
    batch: BatchConfig,
) -> Result<ServedModel, ApiError> {
    let row: Option<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT spec_json, weights_path, onnx_path FROM model_versions WHERE id = ?",
    )
    .bind(version_id)
    .fetch_optional(&state.db)
    .await?;
    let (spec_json, weights_path, onnx_path) = row
        .ok_or_else(|| ApiError::NotFound(format!("model version {version_id} does not exist")))?;
    let spec: ModelSpec = serde_json::from_str(&spec_json).map_err(|_| {
        ApiError::Conflict(format!(
            "model version {version_id} is a custom model without a built-in architecture; it cannot be served"
        ))
    })?;
    let read = |path: String| async move {
        blobs::read(&state.data_dir, &path)
            .await
            .map_err(|e| ApiError::Internal(format!("reading {path}: {e}")))
    };
    let onnx = match onnx_path {
        Some(path) => read(path).await?,
        None => {
            let bytes = read(weights_path).await?;
            let (weights, _) =
                weights::decode(&bytes, &spec.layout(), usize::MAX).map_err(|e| {
                    ApiError::Internal(format!("version {version_id}: stored weights: {e}"))
                })?;
            export_onnx(&spec, &weights)
                .map_err(|e| ApiError::Internal(format!("version {version_id}: {e}")))?
        }
    };
    let started = std::time::Instant::now();
    let onnx = Bytes::from(onnx);
    let plan_input = onnx.clone();
    // The browser engine's loader first, so that both run the very same tract graph and their
    // codeless CSV match byte for byte; any other ONNX through the general parser. Graphs B3O
    // exported also get a batch-1 plan for single rows.
    let runner = tokio::task::spawn_blocking(move || {
        let predictor = OnnxPredictor::load_b3o(&plan_input)
            .map(|(p, _)| p)
            .or_else(|_| OnnxPredictor::load(&plan_input))?;
        let single = match single::SingleRowPlan::from_onnx(&plan_input) {
            Some(Ok(plan)) => Some(plan),
            Some(Err(e)) => {
                tracing::warn!(version_id, error = %e, "no batch-1 plan; single rows use the general one");
                None
            }
            None => None,
        };
        Ok::<_, b3o_wasm_client::inference::InferenceError>(batcher::Runner::new(predictor, single))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(format!("version {version_id}: {e}")))?;
    telemetry::record_load(version_id, started.elapsed());
    tracing::info!(
        version_id,
        bytes = onnx.len(),
        "loaded a model for inference"
    );
    Ok(ServedModel::new(version_id, spec, runner, onnx, batch))
}

/// Maps an inference failure: a size mismatch is the caller's input, anything else ours.
pub(crate) fn inference_error(e: b3o_wasm_client::inference::InferenceError) -> ApiError {
    match e {
        b3o_wasm_client::inference::InferenceError::InputSize { .. } => {
            ApiError::BadRequest(e.to_string())
        }
        other => ApiError::Internal(other.to_string()),
    }
}

impl ServedModel {
    /// Runs `n_rows` model inputs on the blocking pool (single rows through the batcher).
    pub async fn predict(
        self: &Arc<Self>,
        inputs: Vec<f32>,
        n_rows: usize,
    ) -> Result<Vec<f32>, ApiError> {
        let started = std::time::Instant::now();
        // Single rows share batches with concurrent requests; larger inputs are batches already.
        let result = if n_rows == 1 {
            self.batcher().predict_one(inputs).await
        } else {
            self.runner.run(inputs, n_rows).await
        };
        telemetry::record_run(self.version_id, n_rows, started.elapsed(), result.is_ok());
        result.map_err(inference_error)
    }
}
