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
use b3o_models::monitor;
use b3o_models::protocol::ErrorBody;
use b3o_models::stats::Summary;
use b3o_models::v2::{
    HEADER_LENGTH, InferRequestBody, InferResponse, ModelMetadata, ModelParameters, ModelReady,
    ModelStatisticsResponse, OutputTensor, ParseLimits, RepositoryModel, ServerLive,
    ServerMetadata, ServerReady, TensorMetadata, V2Error, parse_infer_request_with,
};

use super::gate::{self, Call, Target};
use super::{Inference, RunInfo, ServedModel, Shared, Ticket};
use crate::accounts::extract::ApiPath;
use crate::accounts::{CurrentUser, OptionalUser};
use crate::error::ApiError;
use crate::state::AppState;

/// Health and server metadata: public (probes, discovery).
pub fn health_router() -> Router<AppState> {
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/repository/index", post(repository_index))
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
        .route(
            "/v2/models/{name}/stats",
            get(model_stats).options(gate::preflight),
        )
        .route(
            "/v2/models/{name}/versions/{version}/stats",
            get(version_stats).options(gate::preflight),
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
    Json(metadata_of_server())
}

/// The server's name, version and protocol extensions: `GET /v2`'s answer and the gRPC
/// `ServerMetadata`'s.
pub(super) fn metadata_of_server() -> ServerMetadata {
    ServerMetadata {
        name: "b3o-edge".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        // Triton's binary tensor data (HTTP requests and answers; gRPC has raw contents),
        // model repository (the index only) and statistics extensions.
        extensions: vec![
            "binary_tensor_data".into(),
            "model_repository".into(),
            "statistics".into(),
        ],
    }
}

/// The models the caller may call (Triton's model repository extension, as `tritonclient`'s
/// `get_model_repository_index` asks): the public deployments for anyone, plus those of the
/// caller's groups; the body (`{"ready": true}` or none) changes nothing, every listed
/// deployment being ready to serve.
#[utoipa::path(
    post,
    operation_id = "v2_repository_index",
    path = "/v2/repository/index",
    tag = "kserve-v2",
    request_body(content = Object, content_type = "application/json", description = "Optional: `{\"ready\": true}` (ignored: every listed model is ready)"),
    responses(
        (status = 200, description = "The deployments the caller may call, by name", body = [RepositoryModel]),
        (status = 401, description = "An API token that is not valid", body = ErrorBody),
        (status = 403, description = "A signed-in account with a one-time password, which must choose a new one first (`password_change_required`)", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
async fn repository_index(
    OptionalUser(user): OptionalUser,
    State(state): State<AppState>,
) -> Result<Json<Vec<RepositoryModel>>, ApiError> {
    Ok(Json(repository(&state, user.as_ref()).await?))
}

/// The deployments `user` (or anyone, for `None`) may call, as the repository index lists
/// them (HTTP and gRPC).
pub(super) async fn repository(
    state: &AppState,
    user: Option<&CurrentUser>,
) -> Result<Vec<RepositoryModel>, ApiError> {
    let (user_id, admin) = user.map_or((None, false), |u| (Some(u.id), u.is_admin()));
    let visible = crate::registry::deployments::visible(&state.db, user_id, admin).await?;
    Ok(visible
        .into_iter()
        .map(|(name, version_id)| RepositoryModel {
            name,
            version: version_id.to_string(),
            state: "READY".into(),
        })
        .collect())
}

/// The statistics a model route answers for `target`: the pinned version's, or the
/// deployment's versions anyone allowed may pin ([`super::stats`]).
pub(super) fn statistics(
    shared: &Shared,
    target: &Target,
    pinned: bool,
) -> ModelStatisticsResponse {
    let d = &target.deployment;
    let model_stats = if pinned {
        vec![shared.stats.get(&d.name, target.version_id)]
    } else {
        shared.stats.deployment(&d.name, d.version_id, &d.served)
    };
    ModelStatisticsResponse { model_stats }
}

/// A model's metadata (HTTP; the gRPC `ModelMetadata` is built from it).
pub(super) fn metadata(name: &str, m: &ServedModel) -> ModelMetadata {
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

/// What a model route does once the caller is allowed (and, but for statistics, the model
/// loaded).
enum Action {
    Metadata,
    Ready,
    Infer(Body),
    Stats,
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
    let call = match action {
        Action::Infer(_) => Call::inference(route),
        _ => Call::start(route),
    };
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
        let m = match action {
            // Statistics need no loaded model (a version never called has zeros).
            Action::Stats => {
                let stats = statistics(&shared, &target, version.is_some());
                return Ok(Json(stats).into_response());
            }
            _ => super::model(&state, &shared, target.version_id).await?,
        };
        Ok(match action {
            Action::Stats | Action::Metadata => Json(metadata(&name, &m)).into_response(),
            Action::Ready => Json(ModelReady { name, ready: true }).into_response(),
            Action::Infer(body) => {
                // Read only now: the caller is authorised and the model exists.
                let mut ticket = Ticket::default();
                let json_len = json_length(&headers)?;
                let bytes = shared.read_body(&headers, body, &mut ticket).await?;
                let serving = target.deployment.version_id;
                run(&name, serving, &m, &shared, bytes, json_len, &mut ticket).await?
            }
        })
    }
    .await;
    call.finish(&shared, &target, result)
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
    request_body(content = InferRequestBody, content_type = "application/json", description = "One FP32 tensor `input` of shape `[batch, ..row]`; other fields are ignored. Triton's binary tensor data extension: with the header `Inference-Header-Content-Length: N` the body's first N bytes are this JSON, an input with `parameters.binary_data_size` instead of `data` takes that many little-endian FP32 bytes from the rest, in input order"),
    responses(
        (status = 200, description = "The output tensor `output`: `[batch, width]` FP32. With Triton's binary tensor data extension (the request's `parameters.binary_data_output` or an output's `parameters.binary_data`), the JSON answer without `data`, its length in `Inference-Header-Content-Length`, then the output's little-endian FP32 bytes (`parameters.binary_data_size`)", content((InferResponse = "application/json"), (b3o_models::protocol::registry::Binary = "application/octet-stream"))),
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
    request_body(content = InferRequestBody, content_type = "application/json", description = "One FP32 tensor `input` of shape `[batch, ..row]`; other fields are ignored. Triton's binary tensor data extension: with the header `Inference-Header-Content-Length: N` the body's first N bytes are this JSON, an input with `parameters.binary_data_size` instead of `data` takes that many little-endian FP32 bytes from the rest, in input order"),
    responses(
        (status = 200, description = "The output tensor `output`: `[batch, width]` FP32. With Triton's binary tensor data extension (the request's `parameters.binary_data_output` or an output's `parameters.binary_data`), the JSON answer without `data`, its length in `Inference-Header-Content-Length`, then the output's little-endian FP32 bytes (`parameters.binary_data_size`)", content((InferResponse = "application/json"), (b3o_models::protocol::registry::Binary = "application/octet-stream"))),
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

/// The model's inference statistics (Triton's statistics extension): the version it serves
/// now and each version it served that was called, on this replica, since it started.
#[utoipa::path(
    get,
    operation_id = "v2_model_stats",
    path = "/v2/models/{name}/stats",
    tag = "kserve-v2",
    params(("name" = String, Path, description = "Deployment name")),
    responses(
        (status = 200, description = "The statistics of the version served now and of the served versions called on this replica (kept in memory per replica: each replica behind a load balancer answers its own, a restart starts at zero)", body = ModelStatisticsResponse),
        (status = 401, description = "A private model and no (or a bad) credential", body = ErrorBody),
        (status = 403, description = "A cross-site `Origin` the deployment does not allow", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see it", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
async fn model_stats(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Response {
    serve(
        "v2_stats",
        Caller {
            state,
            shared,
            user,
            headers,
        },
        name,
        None,
        Action::Stats,
    )
    .await
}

/// A pinned version's inference statistics on this replica (zeros when never called).
#[utoipa::path(
    get,
    operation_id = "v2_model_version_stats",
    path = "/v2/models/{name}/versions/{version}/stats",
    tag = "kserve-v2",
    params(("name" = String, Path, description = "Deployment name"), ("version" = String, Path, description = "A registry version id the deployment serves or served (members: any of the group's)")),
    responses(
        (status = 200, description = "The version's statistics on this replica (in memory per replica)", body = ModelStatisticsResponse),
        (status = 401, description = "A private model and no (or a bad) credential", body = ErrorBody),
        (status = 403, description = "A cross-site `Origin` the deployment does not allow", body = ErrorBody),
        (status = 404, description = "No such deployment (or version), or the caller may not see it", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
async fn version_stats(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Response {
    serve(
        "v2_stats",
        Caller {
            state,
            shared,
            user,
            headers,
        },
        name,
        Some(version),
        Action::Stats,
    )
    .await
}

/// Bodies up to this size are parsed on the async worker; larger ones on the blocking pool,
/// under a work slot.
const INLINE_PARSE_BYTES: usize = 64 << 10;

pub(super) fn v2_error(e: V2Error) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

/// The `Inference-Header-Content-Length` of a binary request, if any (400 if not a number).
fn json_length(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    headers
        .get(HEADER_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("{HEADER_LENGTH} must be a number of bytes"))
                })
        })
        .transpose()
}

async fn run(
    name: &str,
    serving: i64,
    m: &Arc<ServedModel>,
    shared: &Shared,
    body: axum::body::Bytes,
    json_len: Option<usize>,
    ticket: &mut Ticket,
) -> Result<Response, ApiError> {
    let limits = ParseLimits {
        // Never more values than the rows a request may carry.
        max_values: shared
            .max_rows
            .saturating_mul(m.predictor().row_len().max(1)),
        ..ParseLimits::default()
    };
    let req = if body.len() <= INLINE_PARSE_BYTES {
        parse_infer_request_with(&body, json_len, &limits)
    } else {
        shared
            .run_blocking(ticket, move || {
                parse_infer_request_with(&body, json_len, &limits)
            })
            .await?
    }
    .map_err(v2_error)?;
    let input = req.single_input("input").map_err(v2_error)?;
    let batch = rows_of(shared, m, &input.shape, input.data.len())?;
    let mut req = req;
    let data = std::mem::take(&mut req.inputs[0].data);
    let (outputs, run) = predict(shared, m, data, batch, ticket, (name, serving)).await?;
    let shape = vec![batch, m.predictor().output_width()];
    let mut response = if req.binary_output {
        binary_answer(req.id, name, m.version_id, shape, &outputs)?
    } else {
        // Serialised straight from the outputs (no JSON tree of them).
        Json(InferResponse {
            id: req.id,
            model_name: name.to_string(),
            model_version: m.version_id.to_string(),
            outputs: vec![OutputTensor {
                name: "output".into(),
                datatype: "FP32".into(),
                shape,
                data: outputs,
            }],
        })
        .into_response()
    };
    response.extensions_mut().insert(run);
    Ok(response)
}

/// The rows of an input tensor of `shape` holding `values` numbers for model `m` (HTTP and
/// gRPC): the shape must be the model's `[batch, ..row]` and hold exactly `values` (checked
/// arithmetic, before any data is decoded), and `batch` at most `--max-rows-per-request`.
pub(super) fn rows_of(
    shared: &Shared,
    m: &ServedModel,
    shape: &[i64],
    values: usize,
) -> Result<usize, ApiError> {
    let batch =
        b3o_models::v2::batch_of(shape, m.predictor().row_shape(), values).map_err(v2_error)?;
    if batch > shared.max_rows {
        return Err(ApiError::PayloadTooLarge(format!(
            "a request may hold at most {} rows, this one has {batch}; send larger inputs as a batch job (POST /api/jobs)",
            shared.max_rows
        )));
    }
    Ok(batch)
}

/// Runs `batch` checked rows: a batch holds a work slot, a single row goes to the batcher.
/// What they were and what the model answered go to the drift window of `drift` (the
/// deployment's name and the version it serves now).
pub(super) async fn predict(
    shared: &Shared,
    m: &Arc<ServedModel>,
    data: Vec<f32>,
    batch: usize,
    ticket: &mut Ticket,
    drift: (&str, i64),
) -> Result<(Vec<f32>, RunInfo), ApiError> {
    if batch > 1 {
        shared.admission.work_slot(ticket).await?;
    }
    // The drift window: the inputs before they move into the run, the answers after.
    let mut window = shared.monitor.enabled().then(Summary::default);
    if let Some(w) = window.as_mut() {
        match &m.spec.preprocessing {
            Some(prep) => monitor::observe_inputs(w, prep, &data, batch),
            None => monitor::observe_images(w, &data, batch),
        }
    }
    let (outputs, run) = m.predict(data, batch).await?;
    if let Some(mut w) = window {
        monitor::observe_outputs(&mut w, &m.spec, &outputs, batch);
        let (deployment, serving) = drift;
        shared.monitor.record(deployment, serving, m.version_id, &w);
    }
    Ok((outputs, run))
}

/// The answer in Triton's binary tensor data extension: the JSON answer whose output has
/// `parameters.binary_data_size` instead of `data`, then the output's little-endian FP32
/// bytes; `Inference-Header-Content-Length` says where the JSON ends.
fn binary_answer(
    id: Option<String>,
    name: &str,
    version_id: i64,
    shape: Vec<usize>,
    outputs: &[f32],
) -> Result<Response, ApiError> {
    #[derive(serde::Serialize)]
    struct Size {
        binary_data_size: usize,
    }
    #[derive(serde::Serialize)]
    struct Output<'a> {
        name: &'a str,
        datatype: &'a str,
        shape: Vec<usize>,
        parameters: Size,
    }
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        model_name: &'a str,
        model_version: String,
        outputs: [Output<'a>; 1],
    }
    let answer = Answer {
        id,
        model_name: name,
        model_version: version_id.to_string(),
        outputs: [Output {
            name: "output",
            datatype: "FP32",
            shape,
            parameters: Size {
                binary_data_size: outputs.len() * 4,
            },
        }],
    };
    let mut body = serde_json::to_vec(&answer)
        .map_err(|e| ApiError::Internal(format!("serialising an answer: {e}")))?;
    let json_len = body.len();
    body.reserve(outputs.len() * 4);
    for v in outputs {
        body.extend_from_slice(&v.to_le_bytes());
    }
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/octet-stream"),
            ),
            (
                axum::http::HeaderName::from_static("inference-header-content-length"),
                axum::http::HeaderValue::from(json_len),
            ),
        ],
        body,
    )
        .into_response())
}

/// The KServe V2 routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    live,
    ready,
    server_metadata,
    repository_index,
    model_metadata,
    model_ready,
    infer,
    version_metadata,
    version_ready,
    version_infer,
    model_stats,
    version_stats
))]
pub struct V2Api;
