//! Codeless prediction routes: a user's raw CSV, JSON rows of raw values or an image in,
//! predictions out. The work is `b3o_wasm_client::codeless`, the code the browser engine runs
//! too, so the server's CSV is byte for byte the browser's; this module adds HTTP, access
//! ([`super::gate`]) and the mapping of its errors to 4xx answers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use b3o_wasm_client::codeless::{self, CodelessError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::gate::{self, Call, Target};
use super::{Inference, ServedModel, Shared, telemetry};
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
async fn with_model<F, Fut>(
    route: &'static str,
    (state, shared, user, headers): (AppState, Arc<Shared>, OptionalUser, HeaderMap),
    name: String,
    work: F,
) -> Response
where
    F: FnOnce(Arc<ServedModel>) -> Fut,
    Fut: Future<Output = Result<Response, ApiError>>,
{
    let call = Call::start(route);
    let target: Target =
        match gate::authorize(&state, &shared, user.0.as_ref(), &headers, &name, None).await {
            Ok(t) => t,
            Err(e) => return call.rejected(e),
        };
    let result = match super::model(&state, &shared, target.version_id).await {
        Ok(m) => work(m).await,
        Err(e) => Err(e),
    };
    call.finish(&target, result)
}

/// `POST /api/predict/{name}/csv`: the CSV back with prediction columns appended
/// (`prediction_label`, `prediction_probability` of that label for classification;
/// `prediction_value` for regression). Every other column, identifiers included, passes through
/// as sent.
async fn predict_csv(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = (state, shared, user, headers);
    with_model("csv", caller, name.clone(), |m| async move {
        let bytes = super::body(body)?;
        let started = std::time::Instant::now();
        let model = m.clone();
        let result = tokio::task::spawn_blocking(move || {
            codeless::predict_csv_counted(model.predictor(), &model.spec, &bytes)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        let rows = result.as_ref().map_or(0, |(_, n)| *n);
        telemetry::record_run(m.version_id, rows, started.elapsed(), result.is_ok());
        let (csv, _) = result.map_err(|e| codeless_error(&name, e))?;
        Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response())
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RowsRequest {
    rows: Vec<Map<String, Value>>,
}

/// `POST /api/predict/{name}/rows`: `{"rows": [{"Age": 42, "Geography": "France", ..}]}` ->
/// one prediction per row, in order. Every feature column must be present (`null` for a
/// missing value, which is imputed); other keys are refused, except the target, so a typo is
/// not silently imputed.
async fn predict_rows(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = (state, shared, user, headers);
    with_model("rows", caller, name.clone(), |m| async move {
        let req: RowsRequest = serde_json::from_slice(&super::body(body)?).map_err(|e| {
            ApiError::BadRequest(format!(
                "expected {{\"rows\": [{{column: value, ..}}]}}: {e}"
            ))
        })?;
        let (inputs, n) =
            codeless::rows_inputs(&m.spec, &req.rows).map_err(|e| codeless_error(&name, e))?;
        let predictions = codeless::describe(&m.spec, &m.predict(inputs, n).await?);
        Ok(Json(json!({
            "model_name": name,
            "model_version": m.version_id.to_string(),
            "predictions": predictions.iter().map(|p| p.to_json(&m.spec)).collect::<Vec<_>>(),
        }))
        .into_response())
    })
    .await
}

/// `POST /api/predict/{name}/image`: a PNG or JPEG body -> the most likely label and every
/// label's probability.
async fn predict_image(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = (state, shared, user, headers);
    with_model("image", caller, name.clone(), |m| async move {
        if !codeless::takes_images(&m.spec) {
            return Err(codeless_error(&name, CodelessError::TakesTables));
        }
        let bytes = super::body(body)?;
        let model = m.clone();
        let pixels =
            tokio::task::spawn_blocking(move || codeless::image_inputs(&model.spec, &bytes))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(|e| codeless_error(&name, e))?;
        let outputs = m.predict(pixels, 1).await?;
        let prediction = codeless::describe(&m.spec, &outputs)
            .pop()
            .ok_or_else(|| ApiError::Internal("the model returned no output".into()))?;
        let mut reply = prediction.to_json(&m.spec);
        reply["model_name"] = json!(name);
        reply["model_version"] = json!(m.version_id.to_string());
        Ok(Json(reply).into_response())
    })
    .await
}
