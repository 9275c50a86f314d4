//! The KServe V2 / Open Inference Protocol REST API over JSON tensors.
//!
//! A model has one input `input` (`[-1, ..row]`, FP32, already preprocessed) and one output
//! `output` (`[-1, width]`, FP32: probabilities or values). Versions are registry version ids.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ModelCache, ServedModel};
use crate::accounts::extract::{ApiPath, CurrentUser};
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(version_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(version_infer),
        )
}

async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

/// Ready when the database answers: models load lazily, on their first request.
async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    sqlx::query("SELECT 1").execute(&state.db).await?;
    Ok(Json(json!({ "ready": true })))
}

async fn server_metadata() -> Json<Value> {
    Json(json!({ "name": "b3o-edge", "version": env!("CARGO_PKG_VERSION"), "extensions": [] }))
}

fn metadata(name: &str, m: &ServedModel) -> Value {
    let mut input_shape = vec![-1i64];
    input_shape.extend(m.predictor.row_shape().iter().map(|&d| d as i64));
    json!({
        "name": name,
        "versions": [m.version_id.to_string()],
        "platform": "onnx_onnxv1",
        "inputs": [{ "name": "input", "datatype": "FP32", "shape": input_shape }],
        "outputs": [{ "name": "output", "datatype": "FP32", "shape": [-1, m.predictor.output_width() as i64] }],
        "parameters": { "task": m.spec.task, "labels": m.spec.labels },
    })
}

async fn model_metadata(
    _user: CurrentUser,
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<ModelCache>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let m = super::model(&state, &cache, &name, None).await?;
    Ok(Json(metadata(&name, &m)))
}

async fn version_metadata(
    _user: CurrentUser,
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<ModelCache>>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let m = super::model(&state, &cache, &name, Some(&version)).await?;
    Ok(Json(metadata(&name, &m)))
}

/// Ready once loaded: the first call loads the model, so a readiness probe also warms it.
async fn model_ready(
    _user: CurrentUser,
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<ModelCache>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    super::model(&state, &cache, &name, None).await?;
    Ok(Json(json!({ "name": name, "ready": true })))
}

async fn version_ready(
    _user: CurrentUser,
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<ModelCache>>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    super::model(&state, &cache, &name, Some(&version)).await?;
    Ok(Json(json!({ "name": name, "ready": true })))
}

#[derive(Debug, Deserialize)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<InputTensor>,
}

#[derive(Debug, Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<usize>,
    datatype: String,
    /// Row-major numbers, flat or nested.
    data: Value,
}

async fn infer(
    _user: CurrentUser,
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<ModelCache>>,
    ApiPath(name): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let m = super::model(&state, &cache, &name, None).await?;
    run(&name, &m, &super::body(body)?).await
}

async fn version_infer(
    _user: CurrentUser,
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<ModelCache>>,
    ApiPath((name, version)): ApiPath<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let m = super::model(&state, &cache, &name, Some(&version)).await?;
    run(&name, &m, &super::body(body)?).await
}

async fn run(name: &str, m: &Arc<ServedModel>, body: &[u8]) -> Result<Json<Value>, ApiError> {
    let req: InferRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid inference request: {e}")))?;
    let (inputs, batch) = input_tensor(&req, m)?;
    let outputs = m.predict(inputs, batch).await?;
    let mut reply = json!({
        "model_name": name,
        "model_version": m.version_id.to_string(),
        "outputs": [{
            "name": "output",
            "datatype": "FP32",
            "shape": [batch, m.predictor.output_width()],
            "data": outputs,
        }],
    });
    if let Some(id) = req.id {
        reply["id"] = id.into();
    }
    Ok(Json(reply))
}

/// Checks the request's one tensor against the model and flattens its data.
fn input_tensor(req: &InferRequest, m: &ServedModel) -> Result<(Vec<f32>, usize), ApiError> {
    let bad = |m: String| Err(ApiError::BadRequest(m));
    let [t] = req.inputs.as_slice() else {
        return bad(format!(
            "the model takes exactly one input tensor `input`, got {}",
            req.inputs.len()
        ));
    };
    if t.name != "input" {
        return bad(format!(
            "unknown input `{}`: the model's input is `input`",
            t.name
        ));
    }
    if t.datatype != "FP32" {
        return bad(format!("input datatype must be FP32, got {}", t.datatype));
    }
    let row = m.predictor.row_shape();
    let row_len = m.predictor.row_len();
    // `[batch, ..row]`, or `[batch, row_len]` for images sent as flat rows.
    let shape_ok = t.shape.len() >= 2 && (t.shape[1..] == *row || t.shape[1..] == [row_len]);
    if !shape_ok {
        return bad(format!(
            "input shape {:?} does not match the model's [batch, {row:?}]",
            t.shape
        ));
    }
    let batch = t.shape[0];
    let mut data = Vec::with_capacity(batch * row_len);
    flatten(&t.data, &mut data)?;
    if data.len() != batch * row_len {
        return bad(format!(
            "input shape {:?} needs {} values, data has {}",
            t.shape,
            batch * row_len,
            data.len()
        ));
    }
    Ok((data, batch))
}

fn flatten(v: &Value, out: &mut Vec<f32>) -> Result<(), ApiError> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| flatten(i, out)),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN) as f32;
            if !x.is_finite() {
                return Err(ApiError::BadRequest(format!(
                    "input value {n} at index {} is not a finite FP32",
                    out.len()
                )));
            }
            out.push(x);
            Ok(())
        }
        other => Err(ApiError::BadRequest(format!(
            "input data must be numbers; found {other} at index {}",
            out.len()
        ))),
    }
}
