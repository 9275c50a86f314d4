//! Demo models, so that a fresh server (`b3o serve --demo`, what `scripts/run.sh` starts) has
//! something to predict with before anyone has trained anything:
//!
//! - `churn`: the original B3O MLP (inputs -> 128 -> 64 -> 32 -> 1) with weights trained once
//!   ([`train_churn`]) on a synthetic bank-churn CSV generated in code ([`churn_data`]) and
//!   shipped in the repository (`server/demo/churn-mlp.safetensors`);
//! - `digits`: the small CNN with weights trained once on MNIST and shipped in the repository
//!   (`server/demo/digits-cnn.safetensors`; how it was made and its test accuracy are in
//!   `server/demo/README.md`).
//!
//! Both live in a system-owned, finished group (no owner account; administrators manage it)
//! and are public for same-origin use (no other site allowed). Seeding is idempotent: a
//! deployment that exists is left alone, whatever it serves.
//!
//! [`publish`] is the one way in this crate to put a model into the registry without a
//! federated run: seeding uses it, and so do the integration tests. The version and deployment
//! rows are written by the registry ([`registry::insert_version`],
//! [`registry::create_deployment`]). `b3o serve --demo` calls [`seed`] before it listens.
//!
//! `GET /api/demo/churn-sample.csv` (public): 1,000 customers from the same generator (not the
//! training rows), for people to try the codeless routes with.

pub mod churn_data;

use std::collections::BTreeMap;
#[cfg(feature = "train")]
use std::ops::ControlFlow;
use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
#[cfg(feature = "train")]
use b3o_models::dataset::Dataset;
use b3o_models::model::ModelSpec;
use b3o_models::ood::ImageCalibration;
use b3o_models::preprocess::{PreprocessOptions, PreprocessSpec};
use b3o_models::protocol::{self, Hyperparameters, ModelTemplate};
use b3o_models::stats::Summary;
use b3o_models::tabular::{InferOptions, infer_schema, read_csv};
use b3o_models::weights::{self, Dtype, UpdateMeta, WeightSet};

use crate::error::ApiError;
use crate::registry::sharing::Sharing;
use crate::registry::{self, NewVersion};
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

/// The shipped churn MLP (safetensors, `b3o-update/1`, f32; its held-out metrics in the
/// metadata), made by [`train_churn`] (`server/demo/README.md`).
pub const CHURN_WEIGHTS: &[u8] = include_bytes!("../../demo/churn-mlp.safetensors");
/// The seed of the churn demo's split, initial weights and batch order.
#[cfg(feature = "train")]
const CHURN_SPLIT_SEED: u64 = 7;

/// The shipped digit CNN (safetensors, `b3o-update/1`, f32; its test metrics in the metadata).
pub const DIGITS_WEIGHTS: &[u8] = include_bytes!("../../demo/digits-cnn.safetensors");

/// The demo routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(churn_sample))]
pub struct DemoApi;

pub fn router() -> axum::Router<AppState> {
    Router::new().route("/api/demo/churn-sample.csv", get(churn_sample))
}

/// 1,000 synthetic bank customers (not the demo model's training rows), to try the codeless
/// routes and batch jobs with the `churn` demo model.
#[utoipa::path(
    get,
    operation_id = "get_churn_sample",
    path = "/api/demo/churn-sample.csv",
    tag = "demo",
    responses((status = 200, description = "The sample CSV", content_type = "text/csv", body = String)),
)]
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
    /// The training data's column summary: the drift reference of the version (`None`: no
    /// drift monitoring of its inputs).
    pub reference: Option<Summary>,
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
    let sharing = crate::registry::sharing::normalised(p.sharing.clone())?;
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
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, 1, 1.0, 600, 'finished') RETURNING id",
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
    let version_id = insert_version(state, &mut tx, group_id, &p).await?;
    registry::create_deployment(&mut tx, &p.deployment, version_id, &sharing).await?;
    tx.commit().await?;
    Ok(Published {
        group_id,
        version_id,
    })
}

/// Adds the next version of `group_id` (weights and ONNX files first, then the row in `tx`).
async fn insert_version(
    state: &AppState,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    group_id: i64,
    p: &Publish,
) -> Result<i64, ApiError> {
    let (parent_id, round) = registry::versions::latest_version(tx, group_id).await?;
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
    let weights = registry::versions::write_weights(&state.blobs, group_id, round, bytes).await?;
    let onnx_path = registry::versions::write_onnx(&state.blobs, group_id, round, onnx).await?;
    let version = NewVersion {
        group_id,
        round,
        parent_id,
        weights,
        num_params: layout.num_params() as i64,
        spec_json: serde_json::to_string(&p.spec).map_err(|e| internal("spec")(e.to_string()))?,
        metrics_json: serde_json::to_string(&p.metrics)
            .map_err(|e| internal("metrics")(e.to_string()))?,
        contributors_json: "[]".into(),
        optimizer_state_path: None,
        onnx_path: Some(onnx_path),
        reference_json: match &p.reference {
            Some(r) => {
                Some(serde_json::to_string(r).map_err(|e| internal("reference")(e.to_string()))?)
            }
            None => None,
        },
    };
    registry::insert_version(tx, &version).await
}

/// Adds a new version (the next round) with `weights` to a group made by [`publish`], without
/// deploying it: what a finished round would have produced. Returns its id.
pub async fn add_version(state: &AppState, group_id: i64, p: &Publish) -> Result<i64, ApiError> {
    let mut tx = crate::db::begin_write(&state.db).await?;
    let id = insert_version(state, &mut tx, group_id, p).await?;
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
        embed_anywhere: false,
    }
}

/// Seeds the demo deployments that are absent. Idempotent.
pub async fn seed(state: &AppState) -> Result<(), ApiError> {
    let exists = |name: &'static str| registry::deployments::exists(&state.db, name);
    if !exists(CHURN).await? {
        let started = std::time::Instant::now();
        let p = tokio::task::spawn_blocking(churn)
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

/// The churn demo's data, schema and preprocessing: what [`churn`] and [`train_churn`] share.
/// The 10,000 generated customers ([`CHURN_ROWS`]) are the training rows; their summary is
/// the deployment's drift reference.
struct ChurnTable {
    /// The rows ([`churn_split`] trains and evaluates on them).
    #[cfg_attr(not(feature = "train"), allow(dead_code))]
    table: b3o_models::tabular::Table,
    schema: b3o_models::tabular::Schema,
    summary: Summary,
    spec: ModelSpec,
}

fn churn_table() -> Result<ChurnTable, ApiError> {
    let bad = internal("churn demo");
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
    Ok(ChurnTable {
        table,
        schema,
        summary,
        spec: ModelSpec::churn_b3o(prep),
    })
}

fn churn_publish(t: ChurnTable, weights: WeightSet, metrics: BTreeMap<String, f64>) -> Publish {
    Publish {
        deployment: CHURN.into(),
        group_name: "Demo: bank churn".into(),
        description: format!(
            "The original B3O churn network (128-64-32) trained on {CHURN_ROWS} synthetic bank customers; metrics on a held-out fifth. Try it with /api/demo/churn-sample.csv."
        ),
        owner_user_id: None,
        template: ModelTemplate::Tabular {
            schema: t.schema,
            hidden: None,
        },
        spec: t.spec,
        weights,
        metrics,
        sharing: public_same_origin(),
        reference: Some(t.summary),
    }
}

/// The churn demo from the shipped weights ([`CHURN_WEIGHTS`], made by [`train_churn`]; the
/// held-out metrics are in their metadata). Needs no training code: a server built without the
/// `train` feature seeds it too.
pub fn churn() -> Result<Publish, ApiError> {
    let t = churn_table()?;
    let (weights, meta) = weights::decode(CHURN_WEIGHTS, &t.spec.layout(), usize::MAX)
        .map_err(|e| ApiError::Internal(format!("the shipped churn weights: {e}")))?;
    Ok(churn_publish(t, weights, meta.metrics))
}

/// The churn demo's held-out fifth of the generated customers (the rows its metrics are
/// measured on) and the spec to read them with.
#[cfg(feature = "train")]
pub fn churn_split() -> Result<(ModelSpec, Dataset, Dataset), ApiError> {
    let t = churn_table()?;
    let (train, test) = split(&t)?;
    Ok((t.spec, train, test))
}

/// The training four fifths and the held-out fifth of `t`'s rows.
#[cfg(feature = "train")]
fn split(t: &ChurnTable) -> Result<(Dataset, Dataset), ApiError> {
    let prep = t
        .spec
        .preprocessing
        .as_ref()
        .ok_or_else(|| ApiError::Internal("churn demo: no preprocessing".into()))?;
    let data =
        Dataset::from_table(prep, &t.table).map_err(|e| internal("churn demo")(e.to_string()))?;
    Ok(data.split(0.2, CHURN_SPLIT_SEED))
}

/// Trains the churn demo the way [`CHURN_WEIGHTS`] were made: the original B3O network on
/// four fifths of [`CHURN_ROWS`] generated customers (8 epochs of Adam, lr 1e-3, batch 32,
/// seed 7), evaluated on the held-out fifth. Deterministic on one machine (burn's CPU backend).
#[cfg(feature = "train")]
pub fn train_churn() -> Result<Publish, ApiError> {
    use b3o_models::train::{Optimizer, TrainConfig, evaluate, train_local};
    let bad = |e: String| ApiError::Internal(format!("churn demo: {e}"));
    let t = churn_table()?;
    let (train, test) = split(&t)?;
    let spec = &t.spec;
    let config = TrainConfig {
        epochs: 8,
        batch_size: 32,
        optimizer: Optimizer::Adam,
        lr: 1e-3,
        fedprox_mu: 0.0,
        seed: CHURN_SPLIT_SEED,
    };
    let outcome = train_local(
        spec,
        &spec.init_weights(CHURN_SPLIT_SEED),
        &train,
        &config,
        &b3o_models::Device::flex(),
        &mut |_| ControlFlow::Continue(()),
    )
    .map_err(|e| bad(e.to_string()))?;
    let metrics = evaluate(spec, &outcome.weights, &test).map_err(|e| bad(e.to_string()))?;
    let mut metrics = metrics.to_map();
    metrics.insert("num_samples".into(), test.n_rows as f64);
    Ok(churn_publish(t, outcome.weights, metrics))
}

/// The out-of-distribution calibration of the digits demo (`b3o_models::ood`): computed once,
/// offline, from the 8,000 MNIST training images of the shipped weights and their answers
/// (`b3o_models::ood::calibrate_images`; the command and the measured warning rates are in
/// server/demo/README.md and BENCHMARKS.md). The product never reads the data set.
pub fn digits_calibration() -> ImageCalibration {
    ImageCalibration {
        min_mean_intensity: 0.043_257_304,
        max_mean_intensity: 0.270_368_16,
        max_border_share: 0.085_367_136,
        min_confidence: Some(0.496_523_6),
        source: "MNIST: the 8,000 training images of the shipped weights; quantiles 0.25% and 99.75% (intensity), 99.5% (frame share), 0.5% (confidence)".into(),
    }
}

/// The drift reference of the digits demo: the per-image statistics
/// (`b3o_models::monitor::IMAGE_FEATURES`) and labels of the same 8,000 MNIST training images
/// as the weights, computed once, offline (`server/demo/README.md`).
pub fn digits_reference() -> Result<Summary, ApiError> {
    serde_json::from_str(include_str!("../../demo/digits-reference.json"))
        .map_err(|e| ApiError::Internal(format!("the shipped digits drift reference: {e}")))
}

/// The digits demo from the shipped weights, with [`digits_calibration`].
pub fn digits() -> Result<Publish, ApiError> {
    let spec = ModelSpec {
        ood: Some(digits_calibration()),
        ..ModelSpec::mnist_cnn()
    };
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
        reference: Some(digits_reference()?),
    })
}
