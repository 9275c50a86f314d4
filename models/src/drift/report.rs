//! [`compare`]: the drift report of a serving window's [`Summary`] against the training data's
//! merged summary, feature by feature, with Evidently's choice of test and thresholds.

use serde::{Deserialize, Serialize};

use super::column;
use crate::stats::{ColumnSummary, Summary};
use crate::tabular::ColumnKind;

/// Thresholds of the drift checks. Defaults are Evidently's.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriftSettings {
    /// The data set drifts when at least this share of the compared features drifted.
    pub drift_share: f64,
    /// A p-value test (KS, chi-square, z) flags drift below this.
    pub p_value: f64,
    /// A distance (normed Wasserstein, Jensen-Shannon) flags drift at or above this.
    pub distance: f64,
    /// PSI at or above this is a significant population shift (reported with every feature,
    /// for people and charts; the flag comes from the feature's test).
    pub psi: f64,
    /// Fewer current rows than this flag nothing: too little to judge.
    pub min_rows: u64,
}

impl Default for DriftSettings {
    fn default() -> DriftSettings {
        DriftSettings {
            drift_share: 0.5,
            p_value: 0.05,
            distance: 0.1,
            psi: 0.2,
            min_rows: 30,
        }
    }
}

/// Which statistic decided a feature's drift ([`default_method`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftMethod {
    /// Two-sample Kolmogorov-Smirnov p-value.
    Ks,
    /// Wasserstein distance divided by the reference's standard deviation.
    Wasserstein,
    /// Chi-square p-value.
    ChiSquare,
    /// Two-proportion z-test p-value.
    ZTest,
    /// Jensen-Shannon distance.
    JensenShannon,
    /// Not compared: no values on a side (a reference summary stored before value sketches
    /// existed has none), or the column's kind differs between the summaries.
    None,
}

impl DriftMethod {
    /// The method's name on the wire (`ks`, `wasserstein`, `chi_square`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DriftMethod::Ks => "ks",
            DriftMethod::Wasserstein => "wasserstein",
            DriftMethod::ChiSquare => "chi_square",
            DriftMethod::ZTest => "z_test",
            DriftMethod::JensenShannon => "jensen_shannon",
            DriftMethod::None => "none",
        }
    }

    /// `true` for the tests whose score is a p-value (drift below the threshold); the others
    /// are distances (drift at or above it).
    pub fn is_p_value(self) -> bool {
        matches!(
            self,
            DriftMethod::Ks | DriftMethod::ChiSquare | DriftMethod::ZTest
        )
    }

    /// The threshold `settings` give this method (0 for [`DriftMethod::None`]).
    pub fn threshold(self, settings: &DriftSettings) -> f64 {
        match self {
            DriftMethod::None => 0.0,
            m if m.is_p_value() => settings.p_value,
            _ => settings.distance,
        }
    }

    /// Whether `score` means drift under `settings`.
    pub fn drifted(self, score: f64, settings: &DriftSettings) -> bool {
        match self {
            DriftMethod::None => false,
            m if m.is_p_value() => score < settings.p_value,
            _ => score >= settings.distance,
        }
    }
}

/// Evidently's default test (`get_default_stattest`) for a column with `reference_rows`
/// present reference values and `distinct` distinct values over both sides: up to 1000
/// reference rows, KS for numeric columns with more than 5 distinct values, else chi-square
/// with more than 2, else the z-test; above 1000, the normed Wasserstein distance for numeric
/// columns with more than 5 distinct values, else Jensen-Shannon.
pub fn default_method(kind: ColumnKind, reference_rows: u64, distinct: usize) -> DriftMethod {
    let wide_numeric = kind == ColumnKind::Numeric && distinct > 5;
    match (reference_rows <= 1000, wide_numeric) {
        (true, true) => DriftMethod::Ks,
        (true, false) if distinct > 2 => DriftMethod::ChiSquare,
        (true, false) => DriftMethod::ZTest,
        (false, true) => DriftMethod::Wasserstein,
        (false, false) => DriftMethod::JensenShannon,
    }
}

/// A category and how often it was seen.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryCount {
    pub value: String,
    pub count: u64,
}

/// Both sides' shares over common bins, for charts.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Histogram {
    /// Bin edges (one more than bins) for a numeric column binned by range; empty when the
    /// bins are values or categories.
    pub edges: Vec<f64>,
    /// One label per bin: a range `[a, b)`, a value, or a category (`(other)` for the rest).
    pub labels: Vec<String>,
    /// Reference share of each bin.
    pub reference: Vec<f64>,
    /// Current share of each bin.
    pub current: Vec<f64>,
}

/// How one feature moved between the reference and the current summary.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub name: String,
    pub kind: ColumnKind,
    pub method: DriftMethod,
    /// The method's p-value or distance (0 for [`DriftMethod::None`]).
    pub score: f64,
    /// The threshold the score was held against.
    pub threshold: f64,
    /// Drift flagged (never with too few current rows).
    pub drifted: bool,
    /// Population stability index over the chart's bins (Evidently's PSI).
    pub psi: f64,
    /// Present (non-missing) reference values compared.
    pub reference_rows: u64,
    /// Present current values compared.
    pub current_rows: u64,
    /// Share of the reference's values that are missing.
    pub missing_reference: f64,
    /// Share of the current values that are missing.
    pub missing_current: f64,
    /// Current categories the reference never had, most frequent first, at most 10.
    pub unseen: Vec<CategoryCount>,
    /// Share of the present current values in categories the reference never had.
    pub unseen_share: f64,
    pub histogram: Histogram,
}

/// The drift of a serving window against the training data ([`compare`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Rows of the current summary.
    pub rows: u64,
    pub features: Vec<FeatureDrift>,
    /// How many features drifted.
    pub drifted_features: u64,
    /// `drifted_features` over the features compared (0 with none).
    pub drift_share: f64,
    /// The data set drifts: enough rows, and `drift_share >= settings.drift_share`.
    pub drifting: bool,
    /// At least `settings.min_rows` current rows; otherwise nothing is flagged.
    pub enough_rows: bool,
}

/// Compares the `current` summary (a serving window) with the `reference` (the training
/// data's merged summary) on the named `features` present in both, in the order named (each
/// once). Numeric columns are compared through their value sketches, categorical ones
/// through their counts (the bounded-tracking key `(other)` is a category like any other).
pub fn compare(
    reference: &Summary,
    current: &Summary,
    features: &[String],
    settings: &DriftSettings,
) -> DriftReport {
    let enough_rows = current.n_rows >= settings.min_rows;
    let mut out: Vec<FeatureDrift> = Vec::new();
    for name in features {
        if out.iter().any(|f| &f.name == name) {
            continue;
        }
        let (Some(r), Some(c)) = (reference.columns.get(name), current.columns.get(name)) else {
            continue;
        };
        let mut feature = match (r, c) {
            (ColumnSummary::Numeric(r), ColumnSummary::Numeric(c)) => {
                column::numeric(name, r, c, settings)
            }
            (ColumnSummary::Categorical(r), ColumnSummary::Categorical(c)) => {
                column::categorical(name, r, c, settings)
            }
            (ColumnSummary::Numeric(_), _) => column::not_compared(name, ColumnKind::Numeric),
            (ColumnSummary::Categorical(_), _) => {
                column::not_compared(name, ColumnKind::Categorical)
            }
        };
        feature.drifted &= enough_rows;
        out.push(feature);
    }
    let drifted_features = out.iter().filter(|f| f.drifted).count() as u64;
    let drift_share = if out.is_empty() {
        0.0
    } else {
        drifted_features as f64 / out.len() as f64
    };
    DriftReport {
        rows: current.n_rows,
        drifting: enough_rows && !out.is_empty() && drift_share >= settings.drift_share,
        features: out,
        drifted_features,
        drift_share,
        enough_rows,
    }
}

#[cfg(test)]
mod method_names {
    use super::DriftMethod;

    #[test]
    fn as_str_is_the_wire_name() {
        for m in [
            DriftMethod::Ks,
            DriftMethod::Wasserstein,
            DriftMethod::ChiSquare,
            DriftMethod::ZTest,
            DriftMethod::JensenShannon,
            DriftMethod::None,
        ] {
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
    }
}
