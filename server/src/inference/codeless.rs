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
use b3o_wasm_client::codeless::{self, CodelessError};
use serde_json::json;

use super::gate::{self, Call, Target};
use super::{Inference, ServedModel, Shared, Ticket, rows_body, telemetry};
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
    let call = Call::start(route);
    let target: Target =
        match gate::authorize(&state, &shared, user.0.as_ref(), &headers, &name, None).await {
            Ok(t) => t,
            Err(e) => return call.rejected(e),
        };
    let result = async {
        let m = super::model(&state, &shared, target.version_id).await?;
        let mut ticket = Ticket::default();
        let bytes = shared.read_body(&headers, body, &mut ticket).await?;
        work(m, shared.clone(), bytes, ticket).await
    }
    .await;
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
            let result = shared
                .run_blocking(&mut ticket, move || {
                    codeless::predict_csv_limited(model.predictor(), &model.spec, &bytes, &limits)
                })
                .await?;
            let rows = result.as_ref().map_or(0, |(_, n)| *n);
            telemetry::record_run(m.version_id, rows, started.elapsed(), result.is_ok());
            let (csv, _) = result.map_err(|e| codeless_error(&name, e))?;
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response())
        },
    )
    .await
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
            let encode = move || {
                let mut inputs = Vec::new();
                let mut sink = |row: usize, values: &serde_json::Map<String, serde_json::Value>| {
                    inputs.extend(codeless::row_inputs(&model.spec, row, values)?);
                    Ok(())
                };
                let n = rows_body::parse(&bytes, &limits, &mut sink)?;
                if n == 0 {
                    return Err(rows_body::RowsError::Row(CodelessError::NoRows));
                }
                Ok((inputs, n))
            };
            let encoded = if bytes_len <= rows_body::INLINE_PARSE_BYTES {
                encode()
            } else {
                shared.run_blocking(&mut ticket, encode).await?
            };
            let (inputs, n) = encoded.map_err(|e| match e {
                rows_body::RowsError::Json(e) => ApiError::BadRequest(format!(
                    "expected {{\"rows\": [{{column: value, ..}}]}}: {e}"
                )),
                rows_body::RowsError::Row(e) => codeless_error(&name, e),
            })?;
            if n > 1 {
                shared.admission.work_slot(&mut ticket).await?;
            }
            let predictions = codeless::describe(&m.spec, &m.predict(inputs, n).await?);
            Ok(Json(RowsResponse {
                model_name: &name,
                model_version: m.version_id.to_string(),
                predictions: Predictions {
                    spec: &m.spec,
                    items: &predictions,
                },
            })
            .into_response())
        },
    )
    .await
}

/// The rows answer, serialised straight from the predictions: as a JSON tree, 100,000 rows
/// answers took ~1.5 KB each.
#[derive(serde::Serialize)]
struct RowsResponse<'a> {
    model_name: &'a str,
    model_version: String,
    predictions: Predictions<'a>,
}

/// Each prediction as [`codeless::RowPrediction::to_json`] writes it.
struct Predictions<'a> {
    spec: &'a b3o_models::ModelSpec,
    items: &'a [codeless::RowPrediction],
}

impl serde::Serialize for Predictions<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct ByLabel<'a>(&'a [String], &'a [f32]);
        impl serde::Serialize for ByLabel<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(self.0.len().min(self.1.len())))?;
                for (label, p) in self.0.iter().zip(self.1) {
                    map.serialize_entry(label, p)?;
                }
                map.end()
            }
        }
        struct One<'a>(&'a b3o_models::ModelSpec, &'a codeless::RowPrediction);
        impl serde::Serialize for One<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self.1 {
                    codeless::RowPrediction::Value(v) => {
                        let mut map = s.serialize_map(Some(1))?;
                        map.serialize_entry("value", v)?;
                        map.end()
                    }
                    codeless::RowPrediction::Class {
                        label,
                        probability,
                        probabilities,
                    } => {
                        let mut map = s.serialize_map(Some(3))?;
                        map.serialize_entry("label", label)?;
                        map.serialize_entry("probability", probability)?;
                        map.serialize_entry(
                            "probabilities",
                            &ByLabel(&self.0.labels, probabilities),
                        )?;
                        map.end()
                    }
                }
            }
        }
        let mut seq = s.serialize_seq(Some(self.items.len()))?;
        for p in self.items {
            seq.serialize_element(&One(self.spec, p))?;
        }
        seq.end()
    }
}

/// `POST /api/predict/{name}/image`: a PNG or JPEG body -> the most likely label and every
/// label's probability.
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
            let outputs = m.predict(pixels, 1).await?;
            let prediction = codeless::describe(&m.spec, &outputs)
                .pop()
                .ok_or_else(|| ApiError::Internal("the model returned no output".into()))?;
            let mut reply = prediction.to_json(&m.spec);
            reply["model_name"] = json!(name);
            reply["model_version"] = json!(m.version_id.to_string());
            Ok(Json(reply).into_response())
        },
    )
    .await
}
