//! Wire types: drift monitoring of a deployment (`/api/deployments/{name}/drift...`).

use serde::{Deserialize, Serialize};

use crate::drift::{DriftReport, DriftSettings, FeatureDrift, Histogram};
use crate::stats::Summary;

/// `GET /api/deployments/{name}/drift`: what the deployment has been scoring against what its
/// version was trained on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftView {
    pub deployment: String,
    /// The version the deployment serves; the report compares its windows.
    pub version_id: i64,
    /// The version has a training summary to compare with (versions made before drift
    /// monitoring, and custom models, have none: every report is then empty).
    pub has_reference: bool,
    pub settings: DriftSettings,
    /// A window closes after this many seconds or `window_rows` rows (per replica).
    pub window_secs: u64,
    pub window_rows: u64,
    /// The inputs of the last window span (open windows, and those updated within
    /// `window_secs`) against the reference; `None` before any input was scored.
    pub current: Option<DriftReport>,
    /// The predictions of the same windows against the training labels (or target values).
    pub predictions: Option<PredictionDrift>,
    /// The windows of the served version, newest first.
    pub history: Vec<DriftPoint>,
    /// Members' checks of their own new data against the served version, newest first.
    pub partners: Vec<PartnerCheck>,
}

/// The answers a deployment gave, against its training data's labels.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionDrift {
    /// Predicted labels' shares (classification) or values (regression) against the training
    /// target's, with the feature tests' choice of method; `None` without a target summary.
    pub drift: Option<FeatureDrift>,
    /// How sure the model was: the most likely class's probability, in ten bins of 0.1
    /// (classification; empty for regression). `reference` is empty: training answers are not
    /// summarised.
    pub confidence: Histogram,
    /// Regression: the predicted values' 5th, 50th and 95th percentiles (empty otherwise).
    pub quantiles: Vec<f64>,
}

/// One window of the history.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftPoint {
    pub opened_at: String,
    /// `None` while open.
    pub closed_at: Option<String>,
    pub rows: u64,
    pub drift_share: f64,
    pub drifting: bool,
    /// The features that drifted in it.
    pub drifted: Vec<String>,
}

/// A member's check of its own data (only its summary was sent).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartnerCheck {
    /// The member's name in the group.
    pub member: String,
    pub at: String,
    pub rows: u64,
    pub drift_share: f64,
    pub drifting: bool,
    pub drifted: Vec<String>,
}

/// `PUT /api/deployments/{name}/drift/settings`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetDriftSettings {
    pub settings: DriftSettings,
}

/// `GET /api/deployments/{name}/drift/reference`: what a member's own check compares with.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReference {
    pub deployment: String,
    pub version_id: i64,
    /// The feature columns compared, in order.
    pub features: Vec<String>,
    pub settings: DriftSettings,
    /// The merged training summary of the version (counts and sketches, no rows).
    pub reference: Summary,
    /// How the version reads raw cells (`None` for an image model): a member summarises its
    /// own file through it, as the serving windows summarise requests.
    #[serde(default)]
    pub preprocessing: Option<crate::preprocess::PreprocessSpec>,
}

/// `POST /api/deployments/{name}/drift/partner`: a member's summary of its own new data
/// (`stats::Summary::from_table`), for the deployment's drift view.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartnerSummary {
    /// The version the member compared with (the deployment's at the time).
    pub version_id: i64,
    pub summary: Summary,
}
