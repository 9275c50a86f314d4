//! Data drift (issue #18): does a deployed model still see the inputs it was trained on?
//!
//! Only summaries move, never rows: the training data's merged [`crate::stats::Summary`] is
//! the reference, and a serving window's summary (built the same way, categorical columns
//! with [`crate::stats::CategoricalSummary::push_bounded`]) is the current side. Every
//! statistic therefore works on mergeable sketches:
//!
//! - [`sketch`]: [`ValueSketch`], the bounded log-bucket histogram of a numeric column that
//!   [`crate::stats::NumericSummary`] carries.
//! - [`stattests`]: the statistics (Kolmogorov-Smirnov, Wasserstein, PSI, chi-square, z-test,
//!   Jensen-Shannon) as pure functions of weighted points or aligned counts, checked against
//!   scipy numbers (`scripts/drift-vectors.py` writes `vectors.json`).
//! - [`compare`] (module `report`): Evidently's default test per feature, its thresholds, and
//!   the [`DriftReport`] the server stores and the app charts.

mod column;
mod report;
pub mod sketch;
pub mod stattests;
#[cfg(test)]
mod tests;

pub use report::{
    CategoryCount, DriftMethod, DriftReport, DriftSettings, FeatureDrift, Histogram, compare,
    default_method,
};
pub use sketch::{MAX_BUCKETS, SketchError, ValueSketch};
