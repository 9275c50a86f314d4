//! Native inference for every deployed model: the KServe V2 / Open Inference Protocol REST API
//! ([`v2`]) for programs, and codeless routes ([`codeless`]) that take a user's raw CSV, JSON
//! rows or an image and apply the model's own preprocessing server-side.
//!
//! A request names a deployment; the registry says which version it serves *now*
//! ([`resolve`]), and the [`cache`] turns that version into a runnable tract plan (from its
//! stored ONNX, or exported from its weights when the version has none). Models run on the
//! blocking pool, never on the async workers.
//!
//! Access: the deployments table has no "public" flag yet, so every model route needs a
//! signed-in caller (`CurrentUser`: session cookie or API token); only the V2 health and
//! server-metadata routes are public.

pub mod batcher;
pub mod cache;
mod codeless;
pub mod telemetry;
mod v2;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use b3o_models::model::ModelSpec;
use b3o_models::onnx::export_onnx;
use b3o_models::weights;
use b3o_wasm_client::inference::OnnxPredictor;

use crate::blobs;
use crate::db::Db;
use crate::error::ApiError;
use crate::state::AppState;
pub use cache::{ModelCache, ServedModel};

/// Largest request body: a CSV of ~100k churn rows, or 64 images as V2 JSON, fit easily.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The inference routes. The cache lives in a router extension rather than in `AppState`: it
/// belongs to these routes alone.
pub fn router() -> Router<AppState> {
    telemetry::init();
    Router::new()
        .route("/metrics", axum::routing::get(telemetry::render))
        .merge(v2::router())
        .merge(codeless::router())
        .layer(axum::Extension(Arc::new(ModelCache::default())))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// A request body read whole, with a JSON 413 past [`MAX_BODY_BYTES`].
pub(crate) fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "the request body is larger than {MAX_BODY_BYTES} bytes"
            ))
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })
}

/// The version deployment `name` serves, or with `version` that version if it belongs to the
/// same group as the deployment (404 otherwise, like an unknown name).
pub(crate) async fn resolve(db: &Db, name: &str, version: Option<&str>) -> Result<i64, ApiError> {
    let no_deployment = || ApiError::NotFound(format!("no deployed model named `{name}`"));
    let current: i64 = sqlx::query_scalar("SELECT version_id FROM deployments WHERE name = ?")
        .bind(name)
        .fetch_optional(db)
        .await?
        .ok_or_else(no_deployment)?;
    let Some(version) = version else {
        return Ok(current);
    };
    let no_version = || ApiError::NotFound(format!("model `{name}` has no version `{version}`"));
    let id: i64 = version.parse().map_err(|_| no_version())?;
    let same_group: Option<i64> = sqlx::query_scalar(
        "SELECT v.id FROM model_versions v JOIN model_versions cur ON cur.group_id = v.group_id
         WHERE cur.id = ? AND v.id = ?",
    )
    .bind(current)
    .bind(id)
    .fetch_optional(db)
    .await?;
    same_group.ok_or_else(no_version)
}

/// The served model of deployment `name` (at `version`, if given), loaded on first use.
pub(crate) async fn model(
    state: &AppState,
    cache: &ModelCache,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<ServedModel>, ApiError> {
    let version_id = resolve(&state.db, name, version).await?;
    cache
        .get_or_load(version_id, || load(state, version_id))
        .await
}

/// Reads a version's spec and ONNX (or exports it from the weights) and builds its plan.
async fn load(state: &AppState, version_id: i64) -> Result<ServedModel, ApiError> {
    let (spec_json, weights_path, onnx_path): (String, String, Option<String>) = sqlx::query_as(
        "SELECT spec_json, weights_path, onnx_path FROM model_versions WHERE id = ?",
    )
    .bind(version_id)
    .fetch_one(&state.db)
    .await?;
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
    let (predictor, bytes) =
        tokio::task::spawn_blocking(move || (OnnxPredictor::load(&onnx), onnx.len()))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    let predictor =
        predictor.map_err(|e| ApiError::Internal(format!("version {version_id}: {e}")))?;
    telemetry::record_load(version_id, started.elapsed());
    tracing::info!(version_id, bytes, "loaded a model for inference");
    Ok(ServedModel::new(version_id, spec, predictor, bytes))
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
            let model = self.clone();
            tokio::task::spawn_blocking(move || model.predictor.predict(&inputs, n_rows))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
        };
        telemetry::record_run(self.version_id, n_rows, started.elapsed(), result.is_ok());
        result.map_err(|e| match e {
            b3o_wasm_client::inference::InferenceError::InputSize { .. } => {
                ApiError::BadRequest(e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        })
    }
}
