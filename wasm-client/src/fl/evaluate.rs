//! Federated evaluation of any version on demand (issue #17): a member scores one version of
//! its group on the rows it holds out (the same split as its training: the held-out share and
//! the seed) and reports only the metrics and the row count
//! (`POST /api/versions/{id}/evaluation`). `b3o client --evaluate-version` and the browser's
//! training worker (`evaluate_version`) both call [`evaluate_version`].

use std::collections::BTreeMap;
use std::sync::Arc;

use b3o_models::model::ModelSpec;
use b3o_models::protocol::Evaluation;
use b3o_models::weights;
use serde::Serialize;

use super::api::{Api, FlError};
use super::data::LocalData;
use super::trainer::Trainer;
use super::transport::Transport;

/// What a member's evaluation of a version reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionScore {
    pub version_id: i64,
    pub group_id: i64,
    /// The round that made the version (the evaluation is recorded for it).
    pub round: i64,
    pub member_id: i64,
    /// Held-out rows scored.
    pub num_samples: u64,
    pub metrics: BTreeMap<String, f64>,
}

/// Scores version `version_id` on the rows of `data` held out with `test_fraction` and
/// `seed`, and reports the metrics. Refuses (without reporting) a custom model, data that does
/// not fit the group's model, and a split that holds no row out.
pub async fn evaluate_version<T: Transport, R: Trainer>(
    api: &Api<T>,
    trainer: &R,
    data: &LocalData,
    test_fraction: f64,
    seed: u64,
    version_id: i64,
) -> Result<VersionScore, FlError> {
    if !(test_fraction > 0.0 && test_fraction < 0.9) {
        return Err(FlError::Protocol(format!(
            "the share of rows held out must be above 0 and below 0.9 to score a version on \
             them, got {test_fraction}"
        )));
    }
    let version = api.version(version_id).await?;
    let group = api.group(version.group_id).await?;
    data.check(&group.model)?;
    let spec: ModelSpec = serde_json::from_value(version.spec).map_err(|_| {
        FlError::Protocol("this version is a custom model, which this client cannot score".into())
    })?;
    let all = data.dataset(&spec)?;
    // The same split as training with this share and seed: the rows never trained on.
    let (_, test) = all.split(test_fraction, seed);
    if test.n_rows == 0 {
        return Err(FlError::Protocol(
            "no row is held out with this share: hold out more, or use a larger file".into(),
        ));
    }
    let bytes = api.version_weights(version_id).await?;
    let (weights, _) = weights::decode(&bytes, &spec.layout(), usize::MAX)?;
    let num_samples = test.n_rows as u64;
    let metrics = trainer
        .evaluate(Arc::new(spec), weights, Arc::new(test))
        .await?
        .to_map();
    let evaluation = Evaluation {
        num_samples,
        metrics: metrics.clone(),
    };
    let accepted = api
        .report_version_evaluation(version_id, &evaluation)
        .await?;
    Ok(VersionScore {
        version_id,
        group_id: version.group_id,
        round: accepted.round,
        member_id: accepted.member_id,
        num_samples,
        metrics,
    })
}
