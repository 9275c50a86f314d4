//! Whose data a metric was computed on, and how it was weighted, so that no number is shown
//! without its name (issue #21).
//!
//! Three sources exist in B3O Edge:
//! - **training**: a round's version carries the strategy's aggregate of the metrics each
//!   trainer computed on its own training split while training (`federation::rounds`: the
//!   mean over the members who reported, weighted by their rows);
//! - **evaluation**: after a round, members score the new model on their held-out split
//!   (`RoundView::evaluation`: the same weighted mean);
//! - **test**: a model published by the server itself (round 0 with metrics: the demo
//!   models) is scored on the server's own held-out test set, all rows counted once.
//!
//! Pages mark each label with `data-metric-source="training|evaluation|test"` (e2e reads it).

use leptos::prelude::*;

use crate::api::Metrics;
use crate::charts::short_number;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricSource {
    Training,
    Evaluation,
    Test,
}

impl MetricSource {
    /// The metrics stored with a version of round `round`: versions made by a federated round
    /// (round 1 and later) carry the trainers' aggregate; a round-0 version is the group's
    /// starting point (no metrics) or a model the server published with its test metrics.
    pub fn of_version(round: i64) -> MetricSource {
        if round == 0 {
            MetricSource::Test
        } else {
            MetricSource::Training
        }
    }

    /// The value of `data-metric-source`.
    pub fn hook(self) -> &'static str {
        match self {
            MetricSource::Training => "training",
            MetricSource::Evaluation => "evaluation",
            MetricSource::Test => "test",
        }
    }

    /// A short name, e.g. for a chart's series or a table's column.
    pub fn short(self) -> &'static str {
        match self {
            MetricSource::Training => "training split",
            MetricSource::Evaluation => "members' evaluation",
            MetricSource::Test => "server test set",
        }
    }

    /// Whose data, and how it is weighted.
    pub fn explanation(self) -> &'static str {
        match self {
            MetricSource::Training => {
                "Computed by the trainers on their own training split while training; mean \
                 over the members who took part, weighted by their rows. It flatters the \
                 model: these rows were learned from."
            }
            MetricSource::Evaluation => {
                "Computed by the members on their held-out evaluation rows (never trained \
                 on); mean over the members who evaluated, weighted by their rows."
            }
            MetricSource::Test => {
                "Computed by the server on its own held-out test set (rows the model never \
                 trained on), every row counted once."
            }
        }
    }
}

/// `num_samples` -> `rows scored`, `accuracy` -> `accuracy`, `roc_auc` -> `roc auc`.
pub fn metric_name(key: &str) -> String {
    match key {
        "num_samples" | "num_examples" => "rows scored".to_string(),
        other => other.replace('_', " "),
    }
}

/// Metrics as (name, value) rows, numbers shortened.
pub fn metric_rows(metrics: Option<&Metrics>) -> Vec<(String, String)> {
    metrics
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, &v)| (metric_name(k), short_number(v)))
        .collect()
}

/// A metric list under its label: the source's name, its explanation, then the numbers.
/// `id` names the block for tests.
pub fn labelled_metrics(
    id: &'static str,
    source: MetricSource,
    metrics: Option<&Metrics>,
) -> AnyView {
    let rows = metric_rows(metrics);
    if rows.is_empty() {
        return view! {
            <p class="muted" id=id>"No metrics reported for this version."</p>
        }
        .into_any();
    }
    let title = match source {
        MetricSource::Training => "Training metrics (trainers' training split)",
        MetricSource::Evaluation => "Evaluation metrics (members' held-out rows)",
        MetricSource::Test => "Test metrics (the server's held-out test set)",
    };
    view! {
        <div class="metric-block" id=id data-metric-source=source.hook()>
            <p class="metric-source" data-metric-source=source.hook()>
                <strong>{title}</strong>
                " "
                <span class="hint">{source.explanation()}</span>
            </p>
            <dl class="metrics">
                {rows.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> }).collect_view()}
            </dl>
        </div>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_follow_the_round_and_name_their_data() {
        assert_eq!(MetricSource::of_version(0), MetricSource::Test);
        assert_eq!(MetricSource::of_version(3), MetricSource::Training);
        for s in [
            MetricSource::Training,
            MetricSource::Evaluation,
            MetricSource::Test,
        ] {
            assert!(s.explanation().contains("row"), "{s:?}");
        }
        assert!(
            MetricSource::Training
                .explanation()
                .contains("weighted by their rows")
        );
    }

    #[test]
    fn metrics_are_named_and_shortened() {
        let m: Metrics = [("accuracy", 0.912345), ("num_samples", 120.0)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        assert_eq!(
            metric_rows(Some(&m)),
            vec![
                ("accuracy".to_string(), "0.912".to_string()),
                ("rows scored".to_string(), "120".to_string()),
            ]
        );
        assert!(metric_rows(None).is_empty());
    }
}
