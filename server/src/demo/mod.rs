//! Demo models, so that a fresh server (`b3o serve --demo`, what `scripts/run.sh` starts) has
//! something to predict with before anyone has trained anything:
//!
//! - `churn`: the original B3O MLP (inputs -> 128 -> 64 -> 32 -> 1) trained at start-up on a
//!   synthetic bank-churn CSV generated in code ([`churn_data`]), ~1 s on one core;
//! - `digits`: the small CNN with weights trained once on MNIST and shipped in the repository
//!   (`server/demo/digits-cnn.safetensors`; how it was made and its test accuracy are in
//!   `server/demo/README.md`).
//!
//! Both live in a system-owned, finished group (no owner account; administrators manage it)
//! and are public for same-origin use (no other site allowed). Seeding is idempotent: a
//! deployment that exists is left alone, whatever it serves.
//!
//! [`publish`] is the one way in this crate to put a model into the registry without a
//! federated run: seeding uses it, and so do the integration tests.
//!
//! `GET /api/demo/churn-sample.csv` (public): 1,000 customers from the same generator (not the
//! training rows), for people to try the codeless routes with.

pub mod churn_data;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use b3o_models::dataset::Dataset;
use b3o_models::model::ModelSpec;
use b3o_models::preprocess::{PreprocessOptions, PreprocessSpec};
use b3o_models::protocol::{self, Hyperparameters, ModelTemplate};
use b3o_models::stats::Summary;
use b3o_models::tabular::{InferOptions, infer_schema, read_csv};
use b3o_models::train::{Optimizer, TrainConfig, evaluate, train_local};
use b3o_models::weights::{self, Dtype, UpdateMeta, WeightSet};

use crate::blobs;
use crate::error::ApiError;
use crate::inference::sharing::Sharing;
use crate::state::AppState;
use crate::strategy::StrategyConfig;

/// Deployment name of the churn demo.
pub const CHURN: &str = "churn";
/// Deployment name of the digits demo.
pub const DIGITS: &str = "digits";
/// Rows the churn demo trains and is evaluated on (80/20 split).
pub const CHURN_ROWS: usize = 10_000;
/// Rows of the downloadable sample.
pub const SAMPLE_ROWS: usize = 1_000;

/// The shipped digit CNN (safetensors, `b3o-update/1`, f32; its test metrics in the metadata).
pub const DIGITS_WEIGHTS: &[u8] = include_bytes!("../../demo/digits-cnn.safetensors");

pub fn router() -> axum::Router<AppState> {
    Router::new().route("/api/demo/churn-sample.csv", get(churn_sample))
}

/// `GET /api/demo/churn-sample.csv`.
async fn churn_sample() -> impl IntoResponse {
    static SAMPLE: OnceLock<String> = OnceLock::new();
    let csv = SAMPLE
        .get_or_init(|| churn_data::churn_csv(churn_data::SAMPLE_SEED, SAMPLE_ROWS))
        .clone();
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"churn-sample.csv\"",
            ),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        csv,
    )
}

/// A model to put into the registry as a finished group's only version, deployed.
#[derive(Debug, Clone)]
pub struct Publish {
    pub deployment: String,
    pub group_name: String,
    pub description: String,
    /// The group's owner; `None` for a system-owned group (administrators manage it).
    pub owner_user_id: Option<i64>,
    pub template: ModelTemplate,
    pub spec: ModelSpec,
    pub weights: WeightSet,
    /// Test metrics shown with the version.
    pub metrics: BTreeMap<String, f64>,
    pub sharing: Sharing,
}

/// Where [`publish`] put a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub group_id: i64,
    pub version_id: i64,
}

fn internal(what: &str) -> impl Fn(String) -> ApiError + '_ {
    move |e| ApiError::Internal(format!("{what}: {e}"))
}

/// Creates a finished group holding `p.weights` as its version (round 0, with its ONNX
/// export) and deploys it as `p.deployment` with `p.sharing`. The blobs are durable before the
/// rows commit; group, version and deployment commit together.
pub async fn publish(state: &AppState, p: Publish) -> Result<Published, ApiError> {
    p.spec
        .validate()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let sharing = p.sharing.clone().normalised()?;
    let hyper = Hyperparameters {
        rounds: 1,
        local_epochs: 1,
        batch_size: 32,
        optimizer: protocol::Optimizer::Adam,
        lr: 1e-3,
    };
    let mut tx = crate::db::begin_write(&state.db).await?;
    let group_id: i64 = sqlx::query_scalar(
        "INSERT INTO groups (name, description, join_code, owner_token_hash, owner_user_id,
             template_json, hyper_json, strategy_json, layout_json, preprocessing_json,
             total_rounds, min_clients, fraction_fit, round_deadline_secs, phase)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 1, 1.0, 600, 'finished') RETURNING id",
    )
    .bind(&p.group_name)
    .bind(&p.description)
    // Nobody joins a finished group; the code only has to be unique.
    .bind(format!(
        "DEMO-{}",
        crate::blobs::sha256_hex(&rand::random::<[u8; 16]>())
    ))
    .bind(crate::blobs::sha256_hex(&rand::random::<[u8; 32]>()))
    .bind(p.owner_user_id)
    .bind(json(&p.template))
    .bind(json(&hyper))
    .bind(json(&StrategyConfig::default()))
    .bind(json(&p.spec.layout()))
    .bind(p.spec.preprocessing.as_ref().map(json))
    .fetch_one(&mut *tx)
    .await?;
    let version_id = insert_version(state, &mut tx, group_id, 0, &p).await?;
    let origins = serde_json::to_string(&sharing.allowed_origins)
        .map_err(|e| internal("origins")(e.to_string()))?;
    sqlx::query(
        "INSERT INTO deployments (name, version_id, public, allowed_origins_json)
         VALUES (?, ?, ?, ?)",
    )
    .bind(&p.deployment)
    .bind(version_id)
    .bind(sharing.public)
    .bind(origins)
    .execute(&mut *tx)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            ApiError::Conflict(format!("deployment `{}` exists", p.deployment))
        }
        e => e.into(),
    })?;
    sqlx::query(
        "INSERT INTO deployment_history (name, version_id, action) VALUES (?, ?, 'promote')",
    )
    .bind(&p.deployment)
    .bind(version_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    crate::inference::deployment_changed(state, &p.deployment);
    Ok(Published {
        group_id,
        version_id,
    })
}

/// Adds version `round` of `group_id` (weights and ONNX blobs first, then the row in `tx`).
async fn insert_version(
    state: &AppState,
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    group_id: i64,
    round: i64,
    p: &Publish,
) -> Result<i64, ApiError> {
    let layout = p.spec.layout();
    let meta = UpdateMeta {
        model_id: format!("group-{group_id}"),
        round: round as u64,
        num_samples: 0,
        metrics: p.metrics.clone(),
    };
    let bytes = weights::encode(&p.weights, &meta, Dtype::F32)
        .map_err(|e| ApiError::BadRequest(format!("weights: {e}")))?;
    let onnx = b3o_models::onnx::export_onnx(&p.spec, &p.weights)
        .map_err(|e| ApiError::BadRequest(format!("ONNX export: {e}")))?;
    let rel = format!("groups/{group_id}/versions/round-{round}.safetensors");
    let onnx_rel = format!("groups/{group_id}/versions/round-{round}.onnx");
    let (sha, size) = (blobs::sha256_hex(&bytes), bytes.len() as i64);
    blobs::write(&state.data_dir, rel.clone(), bytes)
        .await
        .map_err(|e| internal("writing weights")(e.to_string()))?;
    blobs::write(&state.data_dir, onnx_rel.clone(), onnx)
        .await
        .map_err(|e| internal("writing ONNX")(e.to_string()))?;
    let parent: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM model_versions WHERE group_id = ? ORDER BY round DESC LIMIT 1",
    )
    .bind(group_id)
    .fetch_optional(&mut **tx)
    .await?;
    let id = sqlx::query_scalar(
        "INSERT INTO model_versions (group_id, round, parent_id, weights_path, weights_sha256,
             size_bytes, num_params, spec_json, metrics_json, onnx_path)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(group_id)
    .bind(round)
    .bind(parent)
    .bind(&rel)
    .bind(sha)
    .bind(size)
    .bind(layout.num_params() as i64)
    .bind(serde_json::to_string(&p.spec).map_err(|e| internal("spec")(e.to_string()))?)
    .bind(serde_json::to_string(&p.metrics).map_err(|e| internal("metrics")(e.to_string()))?)
    .bind(&onnx_rel)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// Adds a new version (the next round) with `weights` to a group made by [`publish`], without
/// deploying it: what a finished round would have produced. Returns its id.
pub async fn add_version(state: &AppState, group_id: i64, p: &Publish) -> Result<i64, ApiError> {
    let mut tx = crate::db::begin_write(&state.db).await?;
    let round: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(round), -1) + 1 FROM model_versions WHERE group_id = ?",
    )
    .bind(group_id)
    .fetch_one(&mut *tx)
    .await?;
    let id = insert_version(state, &mut tx, group_id, round, p).await?;
    tx.commit().await?;
    Ok(id)
}

/// A stored JSON column (these types always serialise).
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn public_same_origin() -> Sharing {
    Sharing {
        public: true,
        allowed_origins: Vec::new(),
    }
}

/// Seeds the demo deployments that are absent. Idempotent.
pub async fn seed(state: &AppState) -> Result<(), ApiError> {
    let exists = |name: &'static str| async move {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM deployments WHERE name = ?")
            .bind(name)
            .fetch_one(&state.db)
            .await
            .map(|n| n > 0)
    };
    if !exists(CHURN).await? {
        let started = std::time::Instant::now();
        let p = tokio::task::spawn_blocking(train_churn)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        let metrics = p.metrics.clone();
        publish(state, p).await?;
        tracing::info!(
            ?metrics,
            secs = started.elapsed().as_secs_f32(),
            "seeded the `churn` demo model"
        );
    }
    if !exists(DIGITS).await? {
        publish(state, digits()?).await?;
        tracing::info!("seeded the `digits` demo model");
    }
    Ok(())
}

/// Trains the churn demo: the original B3O network on [`CHURN_ROWS`] generated customers,
/// evaluated on a held-out fifth. Deterministic.
pub fn train_churn() -> Result<Publish, ApiError> {
    let bad = |e: String| ApiError::Internal(format!("churn demo: {e}"));
    let csv = churn_data::churn_csv(churn_data::TRAINING_SEED, CHURN_ROWS);
    let table = read_csv(csv.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let options = InferOptions {
        target: Some("Exited".into()),
        ..Default::default()
    };
    let schema = infer_schema(&table, &options).map_err(|e| bad(e.to_string()))?;
    let summary = Summary::from_table(&table, &schema).map_err(|e| bad(e.to_string()))?;
    let prep = PreprocessSpec::build(&schema, &summary, &PreprocessOptions::default())
        .map_err(|e| bad(e.to_string()))?;
    let spec = ModelSpec::churn_b3o(prep);
    let data = Dataset::from_table(
        spec.preprocessing
            .as_ref()
            .ok_or_else(|| bad("no preprocessing".into()))?,
        &table,
    )
    .map_err(|e| bad(e.to_string()))?;
    let (train, test) = data.split(0.2, 7);
    let config = TrainConfig {
        epochs: 8,
        batch_size: 32,
        optimizer: Optimizer::Adam,
        lr: 1e-3,
        fedprox_mu: 0.0,
        seed: 7,
    };
    let outcome = train_local(
        &spec,
        &spec.init_weights(7),
        &train,
        &config,
        &b3o_models::Device::flex(),
        &mut |_| ControlFlow::Continue(()),
    )
    .map_err(|e| bad(e.to_string()))?;
    let metrics = evaluate(&spec, &outcome.weights, &test).map_err(|e| bad(e.to_string()))?;
    let mut metrics = metrics.to_map();
    metrics.insert("num_samples".into(), test.n_rows as f64);
    Ok(Publish {
        deployment: CHURN.into(),
        group_name: "Demo: bank churn".into(),
        description: format!(
            "The original B3O churn network (128-64-32) trained on {CHURN_ROWS} synthetic bank customers; metrics on a held-out fifth. Try it with /api/demo/churn-sample.csv."
        ),
        owner_user_id: None,
        template: ModelTemplate::Tabular {
            schema,
            hidden: None,
        },
        spec,
        weights: outcome.weights,
        metrics,
        sharing: public_same_origin(),
    })
}

/// The digits demo from the shipped weights.
pub fn digits() -> Result<Publish, ApiError> {
    let spec = ModelSpec::mnist_cnn();
    let (weights, meta) = weights::decode(DIGITS_WEIGHTS, &spec.layout(), usize::MAX)
        .map_err(|e| ApiError::Internal(format!("the shipped digit weights: {e}")))?;
    Ok(Publish {
        deployment: DIGITS.into(),
        group_name: "Demo: handwritten digits".into(),
        description: "The small CNN trained on MNIST (see server/demo/README.md); metrics on the 10,000 MNIST test images. Draw a digit or upload a photo of one.".into(),
        owner_user_id: None,
        template: ModelTemplate::ImageCnn {
            labels: spec.labels.clone(),
        },
        spec,
        weights,
        metrics: meta.metrics,
        sharing: public_same_origin(),
    })
}
