//! Codeless prediction: a user's raw CSV, JSON rows of raw values or an image in, predictions
//! out. The model's own preprocessing spec (from `b3o_models`) turns raw cells into model
//! inputs, exactly as in training, so no one writes feature code to use a model.

use std::io::Cursor;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use b3o_models::Task;
use b3o_models::preprocess::{PreprocessSpec, TargetEncoding};
use b3o_models::tabular::{Delimiter, Table, read_csv};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ModelCache, ServedModel};
use crate::accounts::extract::{ApiPath, CurrentUser};
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/predict/{name}/csv", post(predict_csv))
        .route("/api/predict/{name}/rows", post(predict_rows))
        .route("/api/predict/{name}/image", post(predict_image))
}

/// Images smaller than this cannot hold a recognisable digit; larger ones are refused before
/// decoding to bound memory.
const MIN_IMAGE_SIDE: u32 = 8;
const MAX_IMAGE_SIDE: u32 = 4096;

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

/// The preprocessing of a tabular model; image models are refused with the route to use.
fn tabular<'m>(name: &str, m: &'m ServedModel) -> Result<&'m PreprocessSpec, ApiError> {
    m.spec.preprocessing.as_ref().ok_or_else(|| {
        ApiError::BadRequest(format!(
            "model `{name}` takes images: POST a PNG or JPEG to /api/predict/{name}/image"
        ))
    })
}

/// One row's prediction in the user's terms.
enum RowPrediction {
    Class {
        label: String,
        probability: f32,
        probabilities: Vec<f32>,
    },
    Value(f32),
}

/// Model outputs (probabilities, or values in the target's unit) to labels and values.
fn describe(m: &ServedModel, outputs: &[f32]) -> Vec<RowPrediction> {
    let labels = &m.spec.labels;
    let width = m.predictor.output_width().max(1);
    outputs
        .chunks(width)
        .map(|row| {
            let probabilities = match m.spec.task {
                Task::Regression => return RowPrediction::Value(row[0]),
                // The single output is the positive (second) label's probability.
                Task::BinaryClassification => vec![1.0 - row[0], row[0]],
                Task::MulticlassClassification => row.to_vec(),
            };
            let (best, &probability) = probabilities
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap_or((0, &0.0));
            let label = labels
                .get(best)
                .cloned()
                .unwrap_or_else(|| best.to_string());
            RowPrediction::Class {
                label,
                probability,
                probabilities,
            }
        })
        .collect()
}

fn prediction_json(m: &ServedModel, p: &RowPrediction) -> Value {
    match p {
        RowPrediction::Value(v) => json!({ "value": v }),
        RowPrediction::Class {
            label,
            probability,
            probabilities,
        } => {
            let by_label: Map<String, Value> = m
                .spec
                .labels
                .iter()
                .zip(probabilities)
                .map(|(l, p)| (l.clone(), json!(p)))
                .collect();
            json!({ "label": label, "probability": probability, "probabilities": by_label })
        }
    }
}

/// `POST /api/predict/{name}/csv`: the CSV back with prediction columns appended
/// (`prediction_label`, `prediction_probability` of that label for classification;
/// `prediction_value` for regression). Every other column, identifiers included, passes through.
async fn predict_csv(
    _user: CurrentUser,
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<ModelCache>>,
    ApiPath(name): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let m = super::model(&state, &cache, &name, None).await?;
    let prep = tabular(&name, &m)?;
    let bytes = super::body(body)?;
    let table = read_csv(&bytes).map_err(bad)?;
    let missing: Vec<String> = prep
        .features
        .iter()
        .map(|f| f.column())
        .filter(|c| table.column(c).is_none())
        .map(|c| format!("`{c}`"))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "the CSV lacks the model's column(s) {}; it needs {}",
            missing.join(", "),
            feature_list(prep)
        )));
    }
    let (inputs, n) = prep.transform(&table).map_err(bad)?;
    let predictions = describe(&m, &m.predict(inputs, n).await?);
    let (extra_header, extra): (Vec<&str>, Vec<Vec<String>>) = match m.spec.task {
        Task::Regression => (
            vec!["prediction_value"],
            predictions.iter().map(|p| vec![cell(p, false)]).collect(),
        ),
        _ => (
            vec!["prediction_label", "prediction_probability"],
            predictions
                .iter()
                .map(|p| vec![cell(p, false), cell(p, true)])
                .collect(),
        ),
    };
    let csv = append_columns(&bytes, &table, &extra_header, &extra)?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response())
}

fn cell(p: &RowPrediction, probability: bool) -> String {
    match p {
        RowPrediction::Value(v) => v.to_string(),
        RowPrediction::Class { probability: q, .. } if probability => format!("{q:.6}"),
        RowPrediction::Class { label, .. } => label.clone(),
    }
}

fn feature_list(prep: &PreprocessSpec) -> String {
    prep.features
        .iter()
        .map(|f| format!("`{}`", f.column()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The user's CSV as sent (same delimiter, quoting and spellings of missing values) with
/// `header` and `rows` appended to each line; rebuilt from the parsed table when the raw lines
/// and the table's rows cannot be matched one to one (e.g. lines of empty cells).
fn append_columns(
    bytes: &[u8],
    table: &Table,
    header: &[&str],
    rows: &[Vec<String>],
) -> Result<Vec<u8>, ApiError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let delimiter = match Delimiter::detect(bytes) {
        Delimiter::Comma => b',',
        Delimiter::Semicolon => b';',
        Delimiter::Tab => b'\t',
    };
    let blank = |r: &csv::ByteRecord| r.iter().all(|f| f.iter().all(u8::is_ascii_whitespace));
    let raw: Option<Vec<csv::ByteRecord>> = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes)
        .byte_records()
        .filter(|r| !matches!(r, Ok(r) if blank(r)))
        .collect::<Result<_, _>>()
        .ok()
        .filter(|records: &Vec<_>| records.len() == table.n_rows + 1);
    let records = raw.unwrap_or_else(|| {
        let mut records = vec![csv::ByteRecord::from(table.names())];
        for i in 0..table.n_rows {
            records.push(
                table
                    .columns
                    .iter()
                    .map(|c| c.values[i].as_deref().unwrap_or(""))
                    .collect(),
            );
        }
        records
    });
    let mut out = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_writer(Vec::new());
    let internal = |e: csv::Error| ApiError::Internal(format!("writing predictions CSV: {e}"));
    for (i, mut record) in records.into_iter().enumerate() {
        match i {
            0 => header.iter().for_each(|h| record.push_field(h.as_bytes())),
            _ => rows[i - 1]
                .iter()
                .for_each(|c| record.push_field(c.as_bytes())),
        }
        out.write_byte_record(&record).map_err(internal)?;
    }
    out.into_inner()
        .map_err(|e| ApiError::Internal(e.to_string()))
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
    _user: CurrentUser,
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<ModelCache>>,
    ApiPath(name): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let m = super::model(&state, &cache, &name, None).await?;
    let prep = tabular(&name, &m)?;
    let req: RowsRequest = serde_json::from_slice(&super::body(body)?).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"rows\": [{{column: value, ..}}]}}: {e}"
        ))
    })?;
    if req.rows.is_empty() {
        return Err(ApiError::BadRequest("`rows` is empty".into()));
    }
    let target = match &prep.target {
        TargetEncoding::Classes { column, .. } | TargetEncoding::Standardize { column, .. } => {
            column.as_str()
        }
    };
    for (i, row) in req.rows.iter().enumerate() {
        if let Some(f) = prep.features.iter().find(|f| !row.contains_key(f.column())) {
            return Err(ApiError::BadRequest(format!(
                "row {}: column `{}` is missing (send null for a missing value)",
                i + 1,
                f.column()
            )));
        }
        if let Some(key) = row
            .keys()
            .find(|k| *k != target && !prep.features.iter().any(|f| f.column() == *k))
        {
            return Err(ApiError::BadRequest(format!(
                "row {}: unknown column `{key}`; the model's columns are {}",
                i + 1,
                feature_list(prep)
            )));
        }
    }
    let (inputs, n) = prep.transform_json(&req.rows).map_err(bad)?;
    let predictions = describe(&m, &m.predict(inputs, n).await?);
    Ok(Json(json!({
        "model_name": name,
        "model_version": m.version_id.to_string(),
        "predictions": predictions.iter().map(|p| prediction_json(&m, p)).collect::<Vec<_>>(),
    })))
}

/// `POST /api/predict/{name}/image`: a PNG or JPEG body -> the most likely label and every
/// label's probability.
async fn predict_image(
    _user: CurrentUser,
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<ModelCache>>,
    ApiPath(name): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let m = super::model(&state, &cache, &name, None).await?;
    if m.spec.preprocessing.is_some()
        || m.predictor.row_len() != b3o_models::image::SIDE * b3o_models::image::SIDE
    {
        return Err(ApiError::BadRequest(format!(
            "model `{name}` takes tabular data: POST a CSV to /api/predict/{name}/csv or JSON to /api/predict/{name}/rows"
        )));
    }
    let bytes = super::body(body)?;
    let format = image::guess_format(&bytes)
        .ok()
        .filter(|f| matches!(f, image::ImageFormat::Png | image::ImageFormat::Jpeg))
        .ok_or_else(|| ApiError::BadRequest("the body is not a PNG or JPEG image".into()))?;
    let (w, h) = image::ImageReader::with_format(Cursor::new(&bytes[..]), format)
        .into_dimensions()
        .map_err(|e| ApiError::BadRequest(format!("cannot read the image: {e}")))?;
    if w < MIN_IMAGE_SIDE || h < MIN_IMAGE_SIDE || w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
        return Err(ApiError::BadRequest(format!(
            "the image is {w}x{h} pixels; send one between {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} and {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}"
        )));
    }
    let pixels = tokio::task::spawn_blocking(move || b3o_models::image::decode_image(&bytes))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(bad)?;
    let predictions = describe(&m, &m.predict(pixels, 1).await?);
    let mut reply = prediction_json(&m, &predictions[0]);
    reply["model_name"] = json!(name);
    reply["model_version"] = json!(m.version_id.to_string());
    Ok(Json(reply))
}
