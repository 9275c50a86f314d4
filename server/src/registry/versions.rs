//! Writing versions: the one place that names a version's files (`groups/{group}/versions/
//! round-{n}-{nonce}.{safetensors,onnx,opt}`) and the one `INSERT INTO model_versions`. The
//! random nonce keeps a version's files immutable: two replicas racing to aggregate one round
//! (only one commits) never write the same key, so the loser cannot overwrite the files of
//! the version that committed; its files, which no row names, are collected. A version's
//! files are written durably first ([`write_weights`], [`write_onnx`],
//! [`write_optimizer_state`]), then its row is inserted ([`insert_version`]) in the caller's
//! transaction, which commits it together with what the version belongs to (a round's close, a
//! group's start of training, a demo group).
//!
//! Readers: [`servable`] and [`version_group`] for the inference routes; [`weights_response`]
//! serves a version's weights (registry and federation routes).

use crate::db::Conn;
use axum::body::Body;
use axum::http::header;
use axum::response::Response;

use crate::blobs::{self, BlobStore};
use crate::db::Db;
use crate::error::ApiError;
use crate::state::AppState;

/// A fresh relative path for a file of version `round` of `group_id`, with extension `ext`.
fn version_path(group_id: i64, round: i64, ext: &str) -> String {
    let nonce: u32 = rand::random();
    format!("groups/{group_id}/versions/round-{round}-{nonce:08x}.{ext}")
}

async fn write(store: &BlobStore, rel: String, bytes: Vec<u8>) -> Result<String, ApiError> {
    store.put(&rel, bytes).await?;
    Ok(rel)
}

/// A version's weights as written: where, their SHA-256 and size.
#[derive(Debug, Clone)]
pub struct StoredWeights {
    pub path: String,
    pub sha256: String,
    pub size_bytes: i64,
}

/// Writes the weights (safetensors, B3O's update format) of version `round` of `group_id`.
pub async fn write_weights(
    store: &BlobStore,
    group_id: i64,
    round: i64,
    bytes: Vec<u8>,
) -> Result<StoredWeights, ApiError> {
    let sha256 = blobs::sha256_hex(&bytes);
    let size_bytes = bytes.len() as i64;
    let path = write(store, version_path(group_id, round, "safetensors"), bytes).await?;
    Ok(StoredWeights {
        path,
        sha256,
        size_bytes,
    })
}

/// Writes the ONNX export of version `round` of `group_id`; returns its path.
pub async fn write_onnx(
    store: &BlobStore,
    group_id: i64,
    round: i64,
    bytes: Vec<u8>,
) -> Result<String, ApiError> {
    write(store, version_path(group_id, round, "onnx"), bytes).await
}

/// Writes the server optimiser's state after version `round` of `group_id`; returns its path.
pub async fn write_optimizer_state(
    store: &BlobStore,
    group_id: i64,
    round: i64,
    bytes: Vec<u8>,
) -> Result<String, ApiError> {
    write(store, version_path(group_id, round, "opt"), bytes).await
}

/// A version's row, its files already written.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub group_id: i64,
    pub round: i64,
    pub parent_id: Option<i64>,
    pub weights: StoredWeights,
    pub num_params: i64,
    /// The model's spec (`b3o_models::ModelSpec` JSON; the layout for custom models).
    pub spec_json: String,
    /// Metrics by name (JSON object).
    pub metrics_json: String,
    /// `[{member_id, num_samples}]` of the updates aggregated into it (JSON array).
    pub contributors_json: String,
    pub optimizer_state_path: Option<String>,
    pub onnx_path: Option<String>,
    /// The merged column summary of the training data (`b3o_models::stats::Summary` JSON),
    /// the reference drift monitoring compares a deployment's inputs with; `None`: the
    /// parent's (every version of a group trains on the same members' data).
    pub reference_json: Option<String>,
}

/// Inserts a version in the caller's transaction; returns its id.
pub async fn insert_version(conn: &mut Conn, v: &NewVersion) -> Result<i64, ApiError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO model_versions (group_id, round, parent_id, weights_path, weights_sha256,
            size_bytes, num_params, spec_json, metrics_json, contributors_json,
            optimizer_state_path, onnx_path, reference_json)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
            COALESCE($13, (SELECT p.reference_json FROM model_versions p WHERE p.id = $3)))
         RETURNING id",
    )
    .bind(v.group_id)
    .bind(v.round)
    .bind(v.parent_id)
    .bind(&v.weights.path)
    .bind(&v.weights.sha256)
    .bind(v.weights.size_bytes)
    .bind(v.num_params)
    .bind(&v.spec_json)
    .bind(&v.metrics_json)
    .bind(&v.contributors_json)
    .bind(&v.optimizer_state_path)
    .bind(&v.onnx_path)
    .bind(&v.reference_json)
    .fetch_one(conn)
    .await?)
}

/// The reference summary of version `version_id` (see [`NewVersion::reference_json`]), if it
/// has one.
pub async fn reference(db: &crate::db::Db, version_id: i64) -> Result<Option<String>, ApiError> {
    Ok(sqlx::query_scalar::<_, Option<String>>(
        "SELECT reference_json FROM model_versions WHERE id = $1",
    )
    .bind(version_id)
    .fetch_optional(db)
    .await?
    .flatten())
}

/// The latest version of `group_id` and the round after it (`(None, 0)` for a group without
/// versions), read in the caller's transaction.
pub async fn latest_version(
    conn: &mut Conn,
    group_id: i64,
) -> Result<(Option<i64>, i64), ApiError> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT id, round FROM model_versions WHERE group_id = $1 ORDER BY round DESC LIMIT 1",
    )
    .bind(group_id)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some((id, round)) => (Some(id), round + 1),
        None => (None, 0),
    })
}

/// What serving a version needs: its spec, weights and ONNX export (if any).
#[derive(Debug, Clone)]
pub struct Servable {
    pub spec_json: String,
    pub weights_path: String,
    pub onnx_path: Option<String>,
}

/// The files of version `version_id`, `None` if there is no such version.
pub async fn servable(db: &Db, version_id: i64) -> Result<Option<Servable>, ApiError> {
    let row: Option<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT spec_json, weights_path, onnx_path FROM model_versions WHERE id = $1",
    )
    .bind(version_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(spec_json, weights_path, onnx_path)| Servable {
        spec_json,
        weights_path,
        onnx_path,
    }))
}

/// The group of `version_id`, `None` if there is no such version.
pub async fn version_group(db: &Db, version_id: i64) -> Result<Option<i64>, ApiError> {
    Ok(
        sqlx::query_scalar("SELECT group_id FROM model_versions WHERE id = $1")
            .bind(version_id)
            .fetch_optional(db)
            .await?,
    )
}

/// A version's weights as the download answer: its safetensors file, with the version id and
/// round in headers.
pub async fn weights_response(
    state: &AppState,
    version_id: i64,
    round: i64,
    path: &str,
) -> Result<Response, ApiError> {
    let bytes = state.blobs.get(path).await?;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("x-b3o-version-id", version_id)
        .header("x-b3o-round", round)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"version-{version_id}.safetensors\""),
        )
        .body(Body::from(bytes))
        .map_err(|e| ApiError::Internal(e.to_string()))
}
