//! Native inference for every deployed model from one process: the KServe V2 / Open Inference
//! Protocol REST API ([`v2`]) for programs, codeless routes ([`codeless`]) that take a user's
//! raw CSV, JSON rows or an image and apply the model's own preprocessing server-side (the
//! same code as the browser engine: `b3o_wasm_client::codeless`), the model package a browser
//! downloads to run a model itself, and per-deployment sharing ([`sharing`]).
//!
//! A request names a deployment; [`deployments`] says which version it serves *now* and who may
//! use it (kept in memory and checked against the registry's change generation, so the hot path
//! reads no database), [`gate`] checks the caller and its origin (CORS), and the [`cache`] turns
//! the version into a runnable network (from its stored ONNX, or exported from its weights).
//! Inference reads the registry ([`crate::registry`]) and never writes it; its runtime
//! ([`Shared`]) is `AppState::inference`.
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
pub mod grpc;
mod rows_body;
pub mod sharing;
pub mod stats;
pub mod telemetry;
mod v2;

use std::sync::Arc;

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

use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::limits::Limits;
use crate::registry::{self, Changes};
use crate::state::AppState;
pub use admission::{Admission, Ticket};
pub use batcher::BatchConfig;
pub use cache::{ModelCache, ServedModel};
pub use deployments::{Deployment, Deployments};
pub use stats::{RunInfo, Statistics};

/// Largest request body: a CSV of ~100k churn rows, or 64 images as V2 JSON, fit easily.
/// Larger files go to batch jobs (`POST /api/jobs`).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Operator settings of the inference routes (from `b3o serve` flags).
#[derive(Debug, Clone)]
pub struct Settings {
    pub batch: BatchConfig,
    /// Memory cap of the loaded-model cache (ONNX bytes).
    pub cache_bytes: usize,
    /// Serve `GET /metrics`.
    pub metrics: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            batch: BatchConfig::default(),
            cache_bytes: cache::DEFAULT_MAX_BYTES,
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
            metrics: config.metrics,
        }
    }
}

/// The inference runtime of one server (`AppState::inference`): loaded models, the deployment
/// cache and the admission of requests.
pub struct Shared {
    pub settings: Settings,
    pub models: ModelCache,
    pub deployments: Deployments,
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
    /// Where what each deployment scored is summarised (drift monitoring).
    pub monitor: Arc<crate::monitoring::Monitor>,
    /// Per deployment and version inference statistics of this replica (in memory).
    pub stats: Statistics,
}

impl Shared {
    /// The runtime for `settings` and `limits`, its deployment cache checked against the
    /// registry's `changes`.
    pub fn new(
        settings: Settings,
        limits: &Limits,
        changes: Arc<Changes>,
        monitor: Arc<crate::monitoring::Monitor>,
    ) -> Self {
        Self {
            monitor,
            models: ModelCache::new(settings.cache_bytes),
            deployments: Deployments::new(changes),
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
            stats: Statistics::default(),
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

/// Extractor of the inference runtime (`AppState::inference`).
pub struct Inference(pub Arc<Shared>);

impl FromRequestParts<AppState> for Inference {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        _parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Inference(state.inference.clone()))
    }
}

/// The inference routes' part of the OpenAPI document (`crate::openapi`): KServe V2, codeless
/// prediction, model packages and ONNX, `/metrics`.
pub fn api() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(telemetry::render))]
    struct MetricsApi;
    let mut doc = v2::V2Api::openapi();
    doc.merge(codeless::CodelessApi::openapi());
    doc.merge(sharing::SharingApi::openapi());
    doc.merge(MetricsApi::openapi());
    doc
}

/// The inference routes.
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

/// Reads a version's spec and ONNX (or exports it from the weights) and builds its network.
async fn load(
    state: &AppState,
    version_id: i64,
    batch: BatchConfig,
) -> Result<ServedModel, ApiError> {
    let registry::versions::Servable {
        spec_json,
        weights_path,
        onnx_path,
    } = registry::versions::servable(&state.db, version_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("model version {version_id} does not exist")))?;
    let spec: ModelSpec = serde_json::from_str(&spec_json).map_err(|_| {
        ApiError::Conflict(format!(
            "model version {version_id} is a custom model without a built-in architecture; it cannot be served"
        ))
    })?;
    let read = |path: String| async move { state.blobs.get(&path).await.map_err(ApiError::from) };
    let started = std::time::Instant::now();
    // Served through the browser engine's loader, so that both run the same network and their
    // codeless CSV match byte for byte. It reads only graphs B3O exported (no general ONNX
    // parser in the server: every servable version has weights and a spec); a stored file it
    // cannot read as this version's graph (damaged, or from another exporter) is replaced by an
    // export of the stored weights, which are the version's truth.
    let stored = match onnx_path {
        Some(path) => {
            let stored = Bytes::from(read(path).await?);
            match build_runner(stored.clone(), spec.clone()).await? {
                Ok(runner) => Some((stored, runner)),
                Err(e) => {
                    tracing::warn!(version_id, error = %e, "the stored ONNX is not this version's graph; serving an export of its weights");
                    None
                }
            }
        }
        None => None,
    };
    let (onnx, runner) = match stored {
        Some(served) => served,
        None => {
            let bytes = read(weights_path).await?;
            let (weights, _) =
                weights::decode(&bytes, &spec.layout(), usize::MAX).map_err(|e| {
                    ApiError::Internal(format!("version {version_id}: stored weights: {e}"))
                })?;
            let fresh = Bytes::from(
                export_onnx(&spec, &weights)
                    .map_err(|e| ApiError::Internal(format!("version {version_id}: {e}")))?,
            );
            let runner = build_runner(fresh.clone(), spec.clone())
                .await?
                .map_err(|e| ApiError::Internal(format!("version {version_id}: {e}")))?;
            (fresh, runner)
        }
    };
    telemetry::record_load(version_id, started.elapsed());
    tracing::info!(
        version_id,
        bytes = onnx.len(),
        "loaded a model for inference"
    );
    Ok(ServedModel::new(version_id, spec, runner, onnx, batch))
}

/// The network of a B3O graph (any number of rows), on the blocking pool. The inner error:
/// `onnx` is not `spec`'s graph.
async fn build_runner(
    onnx: Bytes,
    spec: ModelSpec,
) -> Result<Result<batcher::Runner, b3o_wasm_client::inference::InferenceError>, ApiError> {
    tokio::task::spawn_blocking(move || {
        let (predictor, embedded) = OnnxPredictor::load_b3o(&onnx)?;
        if embedded != spec {
            return Err(b3o_wasm_client::inference::InferenceError::InvalidModel(
                "the graph carries another model spec than the registry's".into(),
            ));
        }
        Ok(batcher::Runner::new(predictor))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))
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
    /// Runs `n_rows` model inputs on the blocking pool (single rows through the batcher): the
    /// outputs, and what the run took for the model's statistics ([`stats`]).
    pub async fn predict(
        self: &Arc<Self>,
        inputs: Vec<f32>,
        n_rows: usize,
    ) -> Result<(Vec<f32>, RunInfo), ApiError> {
        let started = std::time::Instant::now();
        // Single rows share batches with concurrent requests; larger inputs are batches already.
        let result = if n_rows == 1 {
            self.batcher().predict_one(inputs).await
        } else {
            self.runner.run(inputs, n_rows).await.map(|outputs| {
                let info = RunInfo {
                    rows: n_rows as u64,
                    // `Runner::run_here` runs large inputs in chunks.
                    executions: n_rows.div_ceil(batcher::MAX_RUN_ROWS) as u64,
                    queue: std::time::Duration::ZERO,
                    compute: started.elapsed(),
                };
                (outputs, info)
            })
        };
        telemetry::record_run(self.version_id, n_rows, started.elapsed(), result.is_ok());
        result.map_err(inference_error)
    }
}
