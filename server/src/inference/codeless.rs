//! Codeless prediction routes: a user's raw CSV, JSON rows of raw values or an image in,
//! predictions out. The work is `b3o_wasm_client::codeless`, the code the browser engine runs
//! too, so the server's CSV is byte for byte the browser's; this module adds HTTP, access
//! ([`super::gate`]) and the mapping of its errors to 4xx answers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use b3o_models::ModelSpec;
use b3o_models::monitor;
use b3o_models::protocol::ErrorBody;
use b3o_models::protocol::inference::{ImagePrediction, PredictRows, Prediction, RowsPrediction};
use b3o_models::stats::Summary;
use b3o_wasm_client::codeless::{self, CodelessError, Predicted, RowPrediction};

use super::gate::{self, Call, Target};
use super::{Inference, RunInfo, ServedModel, Shared, Ticket, rows_body, telemetry};
use crate::accounts::OptionalUser;
use crate::accounts::extract::ApiPath;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/predict/{name}/csv",
            post(predict_csv).options(gate::preflight),
        )
        .route(
            "/api/predict/{name}/rows",
            post(predict_rows).options(gate::preflight),
        )
        .route(
            "/api/predict/{name}/image",
            post(predict_image).options(gate::preflight),
        )
}

/// A codeless failure as an HTTP error; the wrong kind of input names the right route.
pub(crate) fn codeless_error(name: &str, e: CodelessError) -> ApiError {
    match e {
        CodelessError::TakesImages => ApiError::BadRequest(format!(
            "model `{name}` takes images: POST a PNG or JPEG to /api/predict/{name}/image"
        )),
        CodelessError::TakesTables => ApiError::BadRequest(format!(
            "model `{name}` takes tabular data: POST a CSV to /api/predict/{name}/csv or JSON to /api/predict/{name}/rows"
        )),
        e if e.is_client_error() => ApiError::BadRequest(e.to_string()),
        e => ApiError::Internal(e.to_string()),
    }
}

/// Authorises the caller for deployment `name`, loads its model and runs `work` on it.
/// `work` gets the model, the inference state, the request's body read only once the caller
/// is authorised and the model loaded (within the body budget), and the request's ticket.
async fn with_model<F, Fut>(
    route: &'static str,
    (state, shared, user, headers): (AppState, Arc<Shared>, OptionalUser, HeaderMap),
    name: String,
    body: Body,
    work: F,
) -> Response
where
    F: FnOnce(Arc<ServedModel>, Arc<Shared>, axum::body::Bytes, Ticket) -> Fut,
    Fut: Future<Output = Result<Response, ApiError>>,
{
    let call = Call::inference(route);
    let target: Target =
        match gate::authorize(&state, &shared, user.0.as_ref(), &headers, &name, None).await {
            Ok(t) => t,
            Err(e) => return call.rejected(&headers, e),
        };
    let result = async {
        let m = super::model(&state, &shared, target.version_id).await?;
        let mut ticket = Ticket::default();
        let bytes = shared.read_body(&headers, body, &mut ticket).await?;
        work(m, shared.clone(), bytes, ticket).await
    }
    .await;
    call.finish(&shared, &target, result)
}

/// `POST /api/predict/{name}/csv`: the CSV back with prediction columns appended
/// (`prediction_label`, `prediction_probability` of that label and one `probability_<label>`
/// per label for classification; `prediction_value` for regression; then `warning`, the row's
/// out-of-distribution warnings or empty). Every other column, identifiers included, passes
/// through as sent.
#[utoipa::path(
    post,
    operation_id = "predict_csv",
    path = "/api/predict/{name}/csv",
    tag = "inference",
    params(("name" = String, Path, description = "Deployment name")),
    request_body(content = String, content_type = "text/csv", description = "A CSV with a header row naming every feature column (delimiter detected; quotes, BOM and CR/LF handled)"),
    responses(
        (status = 200, description = "The CSV with `prediction_label`, `prediction_probability` (of that label) and one `probability_<label>` per label in the model's label order (classification; the label made a safe, unique header: characters other than letters, digits, `_`, `-`, `.` become `_`, an empty label `class<i>`, a repeated name gets `_2`, `_3`, ...) or `prediction_value` (regression) appended, then `warning`: the row's out-of-distribution warnings joined by `; ` (a numeric cell beyond 5 training standard deviations, a category the model was not trained on; naming the column), empty when none. Never a refusal.", content_type = "text/csv", body = String),
        (status = 400, description = "A missing column, a bad cell (named by line and column), or a model that takes images", body = ErrorBody),
        (status = 401, description = "A private model and no (or a bad) credential", body = ErrorBody),
        (status = 403, description = "A cross-site `Origin` the deployment does not allow", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "A custom model without a built-in architecture (cannot be served)", body = ErrorBody),
        (status = 413, description = "Body over 16 MiB (larger CSV files: `POST /api/jobs`) or more rows than `--max-rows-per-request`", body = ErrorBody),
        (status = 503, description = "Busy (request body budget or work slots), or the model did not answer in time; retry after `Retry-After`", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
async fn predict_csv(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    body: Body,
) -> Response {
    let caller = (state, shared, user, headers);
    with_model(
        "csv",
        caller,
        name.clone(),
        body,
        |m, shared, bytes, mut ticket| async move {
            let started = std::time::Instant::now();
            let model = m.clone();
            let limits = shared.input_limits;
            let monitored = shared.monitor.enabled();
            let (result, window) = shared
                .run_blocking(&mut ticket, move || {
                    let mut window = Summary::default();
                    let result = codeless::predict_csv_monitored(
                        model.predictor(),
                        &model.spec,
                        &bytes,
                        &limits,
                        monitored.then_some(&mut window),
                    );
                    (result, window)
                })
                .await?;
            let rows = result.as_ref().map_or(0, |(_, n)| *n);
            let compute = started.elapsed();
            telemetry::record_run(m.version_id, rows, compute, result.is_ok());
            let (csv, _) = result.map_err(|e| codeless_error(&name, e))?;
            shared
                .monitor
                .record(&name, m.version_id, m.version_id, &window);
            // Parsed, run and written in chunks of rows: the whole is the model's time.
            let run = RunInfo {
                rows: rows as u64,
                executions: rows.div_ceil(codeless::DEFAULT_CHUNK_ROWS) as u64,
                queue: std::time::Duration::ZERO,
                compute,
            };
            let mut response =
                ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response();
            response.extensions_mut().insert(run);
            Ok(response)
        },
    )
    .await
}

/// `POST /api/predict/{name}/rows`: `{"rows": [{"Age": 42, "Geography": "France", ..}]}` ->
/// one prediction per row, in order. Every feature column must be present (`null` for a
/// missing value, which is imputed); other keys are refused, except the target, so a typo is
/// not silently imputed.
#[utoipa::path(
    post,
    operation_id = "predict_rows",
    path = "/api/predict/{name}/rows",
    tag = "inference",
    params(("name" = String, Path, description = "Deployment name")),
    request_body(content = PredictRows, content_type = "application/json"),
    responses(
        (status = 200, description = "One prediction per row, in order", body = RowsPrediction),
        (status = 400, description = "Not `{\"rows\": [..]}`, no rows, a missing or unknown column, a bad value, or a model that takes images", body = ErrorBody),
        (status = 401, description = "A private model and no (or a bad) credential", body = ErrorBody),
        (status = 403, description = "A cross-site `Origin` the deployment does not allow", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "A custom model without a built-in architecture (cannot be served)", body = ErrorBody),
        (status = 413, description = "Body over 16 MiB (larger CSV files: `POST /api/jobs`) or more rows than `--max-rows-per-request`", body = ErrorBody),
        (status = 503, description = "Busy (request body budget or work slots), or the model did not answer in time; retry after `Retry-After`", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
async fn predict_rows(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    body: Body,
) -> Response {
    let caller = (state, shared, user, headers);
    with_model(
        "rows",
        caller,
        name.clone(),
        body,
        |m, shared, bytes, mut ticket| async move {
            let bytes_len = bytes.len();
            let limits = rows_body::RowsLimits {
                max_rows: shared.max_rows,
                max_columns: shared.max_columns,
            };
            // Each row is encoded as soon as it is parsed: only its inputs are kept.
            let model = m.clone();
            let monitored = shared.monitor.enabled();
            let encode = move || {
                let mut inputs = Vec::new();
                let mut window = Summary::default();
                let prep = model.spec.preprocessing.as_ref().filter(|_| monitored);
                let mut sink = |row: usize, values: &serde_json::Map<String, serde_json::Value>| {
                    inputs.extend(codeless::row_inputs(&model.spec, row, values)?);
                    if let Some(prep) = prep {
                        monitor::observe_json_row(&mut window, prep, values);
                    }
                    Ok(())
                };
                let n = rows_body::parse(&bytes, &limits, &mut sink)?;
                if n == 0 {
                    return Err(rows_body::RowsError::Row(CodelessError::NoRows));
                }
                Ok((inputs, n, window))
            };
            let encoded = if bytes_len <= rows_body::INLINE_PARSE_BYTES {
                encode()
            } else {
                shared.run_blocking(&mut ticket, encode).await?
            };
            let (inputs, n, mut window) = encoded.map_err(|e| match e {
                rows_body::RowsError::Json(e) => ApiError::BadRequest(format!(
                    "expected {{\"rows\": [{{column: value, ..}}]}}: {e}"
                )),
                rows_body::RowsError::Row(e) => codeless_error(&name, e),
            })?;
            if n > 1 {
                shared.admission.work_slot(&mut ticket).await?;
            }
            let (outputs, run) = m.predict(inputs.clone(), n).await?;
            if window.n_rows > 0 {
                monitor::observe_outputs(&mut window, &m.spec, &outputs, n);
                shared
                    .monitor
                    .record(&name, m.version_id, m.version_id, &window);
            }
            let predictions = codeless::describe(&m.spec, &inputs, &outputs)
                .into_iter()
                .map(|p| wire_prediction(&m.spec, p))
                .collect();
            let mut response = Json(RowsPrediction {
                model_name: name,
                model_version: m.version_id.to_string(),
                predictions,
            })
            .into_response();
            response.extensions_mut().insert(run);
            Ok(response)
        },
    )
    .await
}

/// A prediction in the wire's terms: each label next to its probability, and the warnings.
fn wire_prediction(spec: &ModelSpec, p: Predicted) -> Prediction {
    let warnings = p.warnings;
    match p.prediction {
        RowPrediction::Value(value) => Prediction::Value { value, warnings },
        RowPrediction::Class {
            label,
            probability,
            probabilities,
        } => Prediction::Class {
            label,
            probability,
            probabilities: spec.labels.iter().cloned().zip(probabilities).collect(),
            warnings,
        },
    }
}

/// `POST /api/predict/{name}/image`: a PNG or JPEG body -> the most likely label and every
/// label's probability.
#[utoipa::path(
    post,
    operation_id = "predict_image",
    path = "/api/predict/{name}/image",
    tag = "inference",
    params(("name" = String, Path, description = "Deployment name")),
    request_body(
        description = "A PNG or JPEG image (any size up to the decoded-size limit; scaled to the model's input)",
        content(
            (b3o_models::protocol::registry::Binary = "image/png"),
            (b3o_models::protocol::registry::Binary = "image/jpeg"),
        ),
    ),
    responses(
        (status = 200, description = "The most likely label, every label's probability and `warnings`: why the image looks unlike the training images (mean intensity, ink in the outer frame, an unsure answer; for a model with an out-of-distribution calibration), empty when it looks like them. Never a refusal.", body = ImagePrediction),
        (status = 400, description = "Not a PNG or JPEG, too large once decoded, or a model that takes tables", body = ErrorBody),
        (status = 401, description = "A private model and no (or a bad) credential", body = ErrorBody),
        (status = 403, description = "A cross-site `Origin` the deployment does not allow", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "A custom model without a built-in architecture (cannot be served)", body = ErrorBody),
        (status = 413, description = "Body over 16 MiB (larger CSV files: `POST /api/jobs`) or more rows than `--max-rows-per-request`", body = ErrorBody),
        (status = 503, description = "Busy (request body budget or work slots), or the model did not answer in time; retry after `Retry-After`", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
async fn predict_image(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    body: Body,
) -> Response {
    let caller = (state, shared, user, headers);
    with_model(
        "image",
        caller,
        name.clone(),
        body,
        |m, shared, bytes, mut ticket| async move {
            if !codeless::takes_images(&m.spec) {
                return Err(codeless_error(&name, CodelessError::TakesTables));
            }
            let model = m.clone();
            let limits = shared.input_limits;
            let pixels = shared
                .run_blocking(&mut ticket, move || {
                    codeless::image_inputs_within(&model.spec, &bytes, &limits)
                })
                .await?
                .map_err(|e| codeless_error(&name, e))?;
            let (outputs, run) = m.predict(pixels.clone(), 1).await?;
            if shared.monitor.enabled() {
                let mut window = Summary::default();
                monitor::observe_images(&mut window, &pixels, 1);
                monitor::observe_outputs(&mut window, &m.spec, &outputs, 1);
                shared
                    .monitor
                    .record(&name, m.version_id, m.version_id, &window);
            }
            let prediction = codeless::describe(&m.spec, &pixels, &outputs)
                .pop()
                .ok_or_else(|| ApiError::Internal("the model returned no output".into()))?;
            let mut response = Json(ImagePrediction {
                model_name: name,
                model_version: m.version_id.to_string(),
                prediction: wire_prediction(&m.spec, prediction),
            })
            .into_response();
            response.extensions_mut().insert(run);
            Ok(response)
        },
    )
    .await
}

/// The codeless routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(predict_csv, predict_rows, predict_image))]
pub struct CodelessApi;
