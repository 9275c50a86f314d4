//! The KServe V2 / Open Inference Protocol REST API over JSON tensors.
//!
//! A model has one input `input` (`[-1, ..row]`, FP32, already preprocessed) and one output
//! `output` (`[-1, width]`, FP32: probabilities or values). Versions are registry version ids.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use b3o_models::v2::{ParseLimits, V2Error, parse_infer_request};
use serde_json::{Value, json};

use super::gate::{self, Call};
use super::{Inference, ServedModel, Shared, Ticket};
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
    Infer(Body),
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
            Action::Infer(body) => {
                // Read only now: the caller is authorised and the model exists.
                let mut ticket = Ticket::default();
                let bytes = shared.read_body(&headers, body, &mut ticket).await?;
                run(&name, &m, &shared, bytes, &mut ticket)
                    .await?
                    .into_response()
            }
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
    body: Body,
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
    body: Body,
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

/// Bodies up to this size are parsed on the async worker; larger ones on the blocking pool,
/// under a work slot.
const INLINE_PARSE_BYTES: usize = 64 << 10;

fn v2_error(e: V2Error) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

async fn run(
    name: &str,
    m: &Arc<ServedModel>,
    shared: &Shared,
    body: axum::body::Bytes,
    ticket: &mut Ticket,
) -> Result<Json<InferResponse>, ApiError> {
    let limits = ParseLimits {
        // Never more values than the rows a request may carry.
        max_values: shared
            .max_rows
            .saturating_mul(m.predictor().row_len().max(1)),
        ..ParseLimits::default()
    };
    let req = if body.len() <= INLINE_PARSE_BYTES {
        parse_infer_request(&body, &limits)
    } else {
        shared
            .run_blocking(ticket, move || parse_infer_request(&body, &limits))
            .await?
    }
    .map_err(v2_error)?;
    let input = req.single_input("input").map_err(v2_error)?;
    let batch = input
        .batch_for(m.predictor().row_shape())
        .map_err(v2_error)?;
    if batch > shared.max_rows {
        return Err(ApiError::PayloadTooLarge(format!(
            "a request may hold at most {} rows, this one has {batch}; send larger inputs as a batch job (POST /api/jobs)",
            shared.max_rows
        )));
    }
    if batch > 1 {
        shared.admission.work_slot(ticket).await?;
    }
    let mut req = req;
    let data = std::mem::take(&mut req.inputs[0].data);
    let outputs = m.predict(data, batch).await?;
    Ok(Json(InferResponse {
        id: req.id,
        model_name: name.to_string(),
        model_version: m.version_id.to_string(),
        outputs: [OutputTensor {
            name: "output",
            datatype: "FP32",
            shape: [batch, m.predictor().output_width()],
            data: outputs,
        }],
    }))
}

/// The V2 response, serialised straight from the outputs (no JSON tree of them).
#[derive(serde::Serialize)]
struct InferResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    model_name: String,
    model_version: String,
    outputs: [OutputTensor; 1],
}

#[derive(serde::Serialize)]
struct OutputTensor {
    name: &'static str,
    datatype: &'static str,
    shape: [usize; 2],
    data: Vec<f32>,
}
