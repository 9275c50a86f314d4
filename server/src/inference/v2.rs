//! The KServe V2 / Open Inference Protocol REST API over JSON tensors.
//!
//! A model has one input `input` (`[-1, ..row]`, FP32, already preprocessed) and one output
//! `output` (`[-1, width]`, FP32: probabilities or values). Versions are registry version ids.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::gate::{self, Call};
use super::{Inference, ServedModel};
use crate::accounts::OptionalUser;
use crate::accounts::extract::ApiPath;
use crate::error::ApiError;
use crate::state::AppState;

/// Health and server metadata: public (probes, discovery).
pub fn health_router() -> Router<AppState> {
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
}

/// The model routes (public or not per deployment, see [`gate`]), with CORS preflight.
pub fn model_router() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/models/{name}",
            get(model_metadata).options(gate::preflight),
        )
        .route(
            "/v2/models/{name}/ready",
            get(model_ready).options(gate::preflight),
        )
        .route(
            "/v2/models/{name}/infer",
            post(infer).options(gate::preflight),
        )
        .route(
            "/v2/models/{name}/versions/{version}",
            get(version_metadata).options(gate::preflight),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(version_ready).options(gate::preflight),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(version_infer).options(gate::preflight),
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
    input_shape.extend(m.predictor().row_shape().iter().map(|&d| d as i64));
    json!({
        "name": name,
        "versions": [m.version_id.to_string()],
        "platform": "onnx_onnxv1",
        "inputs": [{ "name": "input", "datatype": "FP32", "shape": input_shape }],
        "outputs": [{ "name": "output", "datatype": "FP32", "shape": [-1, m.predictor().output_width() as i64] }],
        "parameters": { "task": m.spec.task, "labels": m.spec.labels },
    })
}

/// What a model route does once the caller is allowed and the model loaded.
enum Action {
    Metadata,
    Ready,
    Infer(Result<Bytes, BytesRejection>),
}

/// The parts of a model request every route has.
struct Caller {
    state: AppState,
    shared: Arc<super::Shared>,
    user: OptionalUser,
    headers: HeaderMap,
}

/// Authorises, loads the model and runs `action`, with the bookkeeping of [`Call`].
async fn serve(
    route: &'static str,
    caller: Caller,
    name: String,
    version: Option<String>,
    action: Action,
) -> Response {
    let call = Call::start(route);
    let Caller {
        state,
        shared,
        user,
        headers,
    } = caller;
    let target = match gate::authorize(
        &state,
        &shared,
        user.0.as_ref(),
        &headers,
        &name,
        version.as_deref(),
    )
    .await
    {
        Ok(t) => t,
        Err(e) => return call.rejected(e),
    };
    let result = async {
        let m = super::model(&state, &shared, target.version_id).await?;
        Ok(match action {
            Action::Metadata => Json(metadata(&name, &m)).into_response(),
            Action::Ready => Json(json!({ "name": name, "ready": true })).into_response(),
            Action::Infer(body) => run(&name, &m, &super::body(body)?).await?.into_response(),
        })
    }
    .await;
    call.finish(&target, result)
}

async fn model_metadata(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Response {
    serve(
        "v2_metadata",
        Caller {
            state,
            shared,
            user,
            headers,
        },
        name,
        None,
        Action::Metadata,
    )
    .await
}

async fn version_metadata(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Response {
    let version = Some(version);
    serve(
        "v2_metadata",
        Caller {
            state,
            shared,
            user,
            headers,
        },
        name,
        version,
        Action::Metadata,
    )
    .await
}

/// Ready once loaded: the first call loads the model, so a readiness probe also warms it.
async fn model_ready(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Response {
    serve(
        "v2_ready",
        Caller {
            state,
            shared,
            user,
            headers,
        },
        name,
        None,
        Action::Ready,
    )
    .await
}

async fn version_ready(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Response {
    let version = Some(version);
    serve(
        "v2_ready",
        Caller {
            state,
            shared,
            user,
            headers,
        },
        name,
        version,
        Action::Ready,
    )
    .await
}

async fn infer(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let action = Action::Infer(body);
    serve(
        "v2_infer",
        Caller {
            state,
            shared,
            user,
            headers,
        },
        name,
        None,
        action,
    )
    .await
}

async fn version_infer(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath((name, version)): ApiPath<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let action = Action::Infer(body);
    serve(
        "v2_infer",
        Caller {
            state,
            shared,
            user,
            headers,
        },
        name,
        Some(version),
        action,
    )
    .await
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
            "shape": [batch, m.predictor().output_width()],
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
    let row = m.predictor().row_shape();
    let row_len = m.predictor().row_len();
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
