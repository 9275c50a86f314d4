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
use b3o_models::protocol::ErrorBody;
use b3o_models::v2::{
    InferRequestBody, InferResponse, ModelMetadata, ModelParameters, ModelReady, OutputTensor,
    ParseLimits, ServerLive, ServerMetadata, ServerReady, TensorMetadata, V2Error,
    parse_infer_request,
};

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

/// The server is up.
#[utoipa::path(
    get,
    operation_id = "v2_server_live",
    path = "/v2/health/live",
    tag = "kserve-v2",
    responses((status = 200, description = "Live", body = ServerLive)),
)]
async fn live() -> Json<ServerLive> {
    Json(ServerLive { live: true })
}

/// Ready when this replica takes new work (not starting, not shutting down: as `/readyz`) and
/// the database answers; models load lazily, on their first request.
#[utoipa::path(
    get,
    operation_id = "v2_server_ready",
    path = "/v2/health/ready",
    tag = "kserve-v2",
    responses(
        (status = 200, description = "Ready", body = ServerReady),
        (status = 500, description = "The database does not answer", body = ErrorBody),
        (status = 503, description = "Starting (`starting`) or shutting down (`shutting_down`): send requests to another replica", body = ErrorBody),
    ),
)]
async fn ready(State(state): State<AppState>) -> Result<Response, ApiError> {
    if let Some(refusal) = crate::health::not_ready(&state) {
        return Ok(refusal);
    }
    sqlx::query("SELECT 1").execute(&state.db).await?;
    Ok(Json(ServerReady { ready: true }).into_response())
}

/// The server's name, version and protocol extensions.
#[utoipa::path(
    get,
    operation_id = "v2_server_metadata",
    path = "/v2",
    tag = "kserve-v2",
    responses((status = 200, description = "Server metadata", body = ServerMetadata)),
)]
async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "b3o-edge".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: Vec::new(),
    })
}

fn metadata(name: &str, m: &ServedModel) -> ModelMetadata {
    let mut input_shape = vec![-1i64];
    input_shape.extend(m.predictor().row_shape().iter().map(|&d| d as i64));
    let tensor = |name: &str, shape: Vec<i64>| TensorMetadata {
        name: name.into(),
        datatype: "FP32".into(),
        shape,
    };
    ModelMetadata {
        name: name.to_string(),
        versions: vec![m.version_id.to_string()],
        platform: "onnx_onnxv1".into(),
        inputs: vec![tensor("input", input_shape)],
        outputs: vec![tensor(
            "output",
            vec![-1, m.predictor().output_width() as i64],
        )],
        parameters: ModelParameters {
            task: m.spec.task,
            labels: m.spec.labels.clone(),
        },
    }
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
        Err(e) => return call.rejected(&headers, e),
    };
    let result = async {
        let m = super::model(&state, &shared, target.version_id).await?;
        Ok(match action {
            Action::Metadata => Json(metadata(&name, &m)).into_response(),
            Action::Ready => Json(ModelReady { name, ready: true }).into_response(),
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

/// The model's inputs, outputs, task and labels (the version the deployment serves now).
#[utoipa::path(
    get,
    operation_id = "v2_model_metadata",
    path = "/v2/models/{name}",
    tag = "kserve-v2",
    params(("name" = String, Path, description = "Deployment name")),
    responses(
        (status = 200, description = "The model's metadata", body = ModelMetadata),
        (status = 401, description = "A private model and no (or a bad) credential", body = ErrorBody),
        (status = 403, description = "A cross-site `Origin` the deployment does not allow", body = ErrorBody),
        (status = 404, description = "No such deployment (or version), or the caller may not see it", body = ErrorBody),
        (status = 409, description = "A custom model without a built-in architecture (cannot be served)", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
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

/// A pinned version's inputs, outputs, task and labels.
#[utoipa::path(
    get,
    operation_id = "v2_model_version_metadata",
    path = "/v2/models/{name}/versions/{version}",
    tag = "kserve-v2",
    params(("name" = String, Path, description = "Deployment name"), ("version" = String, Path, description = "A registry version id the deployment serves or served (members: any of the group's)")),
    responses(
        (status = 200, description = "The version's metadata", body = ModelMetadata),
        (status = 401, description = "A private model and no (or a bad) credential", body = ErrorBody),
        (status = 403, description = "A cross-site `Origin` the deployment does not allow", body = ErrorBody),
        (status = 404, description = "No such deployment (or version), or the caller may not see it", body = ErrorBody),
        (status = 409, description = "A custom model without a built-in architecture (cannot be served)", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
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
#[utoipa::path(
    get,
    operation_id = "v2_model_ready",
    path = "/v2/models/{name}/ready",
    tag = "kserve-v2",
    params(("name" = String, Path, description = "Deployment name")),
    responses(
        (status = 200, description = "Loaded and ready", body = ModelReady),
        (status = 401, description = "A private model and no (or a bad) credential", body = ErrorBody),
        (status = 403, description = "A cross-site `Origin` the deployment does not allow", body = ErrorBody),
        (status = 404, description = "No such deployment (or version), or the caller may not see it", body = ErrorBody),
        (status = 409, description = "A custom model without a built-in architecture (cannot be served)", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
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

/// A pinned version is loaded (loads it).
#[utoipa::path(
    get,
    operation_id = "v2_model_version_ready",
    path = "/v2/models/{name}/versions/{version}/ready",
    tag = "kserve-v2",
    params(("name" = String, Path, description = "Deployment name"), ("version" = String, Path, description = "A registry version id the deployment serves or served (members: any of the group's)")),
    responses(
        (status = 200, description = "Loaded and ready", body = ModelReady),
        (status = 401, description = "A private model and no (or a bad) credential", body = ErrorBody),
        (status = 403, description = "A cross-site `Origin` the deployment does not allow", body = ErrorBody),
        (status = 404, description = "No such deployment (or version), or the caller may not see it", body = ErrorBody),
        (status = 409, description = "A custom model without a built-in architecture (cannot be served)", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
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

/// Runs the model on preprocessed FP32 rows (the version the deployment serves now).
#[utoipa::path(
    post,
    operation_id = "v2_model_infer",
    path = "/v2/models/{name}/infer",
    tag = "kserve-v2",
    params(("name" = String, Path, description = "Deployment name")),
    request_body(content = InferRequestBody, content_type = "application/json", description = "One FP32 tensor `input` of shape `[batch, ..row]`; other fields are ignored"),
    responses(
        (status = 200, description = "The output tensor `output`: `[batch, width]` FP32", body = InferResponse),
        (status = 400, description = "Not a valid V2 request for this model (input name, datatype, shape, data)", body = ErrorBody),
        (status = 413, description = "Body over 16 MiB or more rows than `--max-rows-per-request`", body = ErrorBody),
        (status = 503, description = "Busy (request body budget or work slots), or the model did not answer in time; retry after `Retry-After`", body = ErrorBody),
        (status = 401, description = "A private model and no (or a bad) credential", body = ErrorBody),
        (status = 403, description = "A cross-site `Origin` the deployment does not allow", body = ErrorBody),
        (status = 404, description = "No such deployment (or version), or the caller may not see it", body = ErrorBody),
        (status = 409, description = "A custom model without a built-in architecture (cannot be served)", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
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

/// Runs a pinned version on preprocessed FP32 rows.
#[utoipa::path(
    post,
    operation_id = "v2_model_version_infer",
    path = "/v2/models/{name}/versions/{version}/infer",
    tag = "kserve-v2",
    params(("name" = String, Path, description = "Deployment name"), ("version" = String, Path, description = "A registry version id the deployment serves or served (members: any of the group's)")),
    request_body(content = InferRequestBody, content_type = "application/json", description = "One FP32 tensor `input` of shape `[batch, ..row]`; other fields are ignored"),
    responses(
        (status = 200, description = "The output tensor `output`: `[batch, width]` FP32", body = InferResponse),
        (status = 400, description = "Not a valid V2 request for this model (input name, datatype, shape, data)", body = ErrorBody),
        (status = 413, description = "Body over 16 MiB or more rows than `--max-rows-per-request`", body = ErrorBody),
        (status = 503, description = "Busy (request body budget or work slots), or the model did not answer in time; retry after `Retry-After`", body = ErrorBody),
        (status = 401, description = "A private model and no (or a bad) credential", body = ErrorBody),
        (status = 403, description = "A cross-site `Origin` the deployment does not allow", body = ErrorBody),
        (status = 404, description = "No such deployment (or version), or the caller may not see it", body = ErrorBody),
        (status = 409, description = "A custom model without a built-in architecture (cannot be served)", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
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
    // Serialised straight from the outputs (no JSON tree of them).
    Ok(Json(InferResponse {
        id: req.id,
        model_name: name.to_string(),
        model_version: m.version_id.to_string(),
        outputs: vec![OutputTensor {
            name: "output".into(),
            datatype: "FP32".into(),
            shape: vec![batch, m.predictor().output_width()],
            data: outputs,
        }],
    }))
}

/// The KServe V2 routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    live,
    ready,
    server_metadata,
    model_metadata,
    model_ready,
    infer,
    version_metadata,
    version_ready,
    version_infer
))]
pub struct V2Api;
