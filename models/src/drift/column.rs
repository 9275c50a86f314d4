//! One feature's [`FeatureDrift`]: numeric columns through their value sketches, categorical
//! columns through their counts, and the chart bins of each.

use std::collections::BTreeMap;

use super::report::{CategoryCount, DriftMethod, DriftSettings, FeatureDrift, Histogram};
use super::stattests::{
    Binned, align_points, chi_square, jensen_shannon, ks_2samp, psi, psi_bins, wasserstein_normed,
    z_test,
};
use crate::stats::{CategoricalSummary, NumericSummary, OTHER};
use crate::tabular::ColumnKind;

/// Unseen categories listed in a report.
const MAX_UNSEEN: usize = 10;

/// Most frequent categories of each side that get their own chart bin.
const CHART_TOP: usize = 20;

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// A feature reported without a comparison ([`DriftMethod::None`]).
pub(super) fn not_compared(name: &str, kind: ColumnKind) -> FeatureDrift {
    FeatureDrift {
        name: name.to_string(),
        kind,
        method: DriftMethod::None,
        score: 0.0,
        threshold: 0.0,
        drifted: false,
        psi: 0.0,
        reference_rows: 0,
        current_rows: 0,
        missing_reference: 0.0,
        missing_current: 0.0,
        unseen: Vec::new(),
        unseen_share: 0.0,
        histogram: Histogram::default(),
    }
}

/// A numeric feature: the test on the sketches' weighted points (distinct values are the
/// non-empty buckets over both sides), PSI and chart over [`psi_bins`].
pub(super) fn numeric(
    name: &str,
    r: &NumericSummary,
    c: &NumericSummary,
    settings: &DriftSettings,
) -> FeatureDrift {
    let mut out = not_compared(name, ColumnKind::Numeric);
    out.reference_rows = r.sketch.count();
    out.current_rows = c.sketch.count();
    out.missing_reference = share(r.missing, r.count.saturating_add(r.missing));
    out.missing_current = share(c.missing, c.count.saturating_add(c.missing));
    if out.reference_rows == 0 || out.current_rows == 0 {
        return out;
    }
    let weighted = |s: &NumericSummary| -> Vec<(f64, f64)> {
        s.sketch.points().map(|(v, n)| (v, n as f64)).collect()
    };
    let (ref_points, cur_points) = (weighted(r), weighted(c));
    let (_, ref_counts, cur_counts) = align_points(&ref_points, &cur_points);
    let method = super::default_method(ColumnKind::Numeric, out.reference_rows, ref_counts.len());
    let score = match method {
        DriftMethod::Ks => ks_2samp(&ref_points, &cur_points).p_value,
        DriftMethod::Wasserstein => wasserstein_normed(&ref_points, &cur_points),
        DriftMethod::ChiSquare => chi_square(&ref_counts, &cur_counts).p_value,
        DriftMethod::ZTest => z_test(&ref_counts, &cur_counts).p_value,
        DriftMethod::JensenShannon => jensen_shannon(&ref_counts, &cur_counts),
        DriftMethod::None => 0.0,
    };
    let bins = psi_bins(&ref_points, &cur_points);
    out.psi = psi(&bins.reference, &bins.current);
    out.histogram = numeric_histogram(bins);
    decide(out, method, score, settings)
}

fn decide(
    mut out: FeatureDrift,
    method: DriftMethod,
    score: f64,
    settings: &DriftSettings,
) -> FeatureDrift {
    out.method = method;
    out.score = score;
    out.threshold = method.threshold(settings);
    out.drifted = method.drifted(score, settings);
    out
}

fn numeric_histogram(bins: Binned) -> Histogram {
    let labels = if bins.edges.is_empty() {
        bins.values.iter().map(|&v| label(v)).collect()
    } else {
        let last = bins.edges.len().saturating_sub(2);
        bins.edges
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let close = if i == last { ']' } else { ')' };
                format!("[{}, {}{close}", label(w[0]), label(w[1]))
            })
            .collect()
    };
    Histogram {
        edges: bins.edges,
        labels,
        reference: bins.reference,
        current: bins.current,
    }
}

/// A value for a chart label: four significant digits, plain or in exponent form.
fn label(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{}", if v == 0.0 { 0.0 } else { v });
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-4..=6).contains(&magnitude) {
        return format!("{v:.3e}");
    }
    let decimals = (3 - magnitude).max(0) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// A categorical feature: the test on the counts over the union of categories, unseen
/// categories, PSI per category, and a chart of the top categories.
pub(super) fn categorical(
    name: &str,
    r: &CategoricalSummary,
    c: &CategoricalSummary,
    settings: &DriftSettings,
) -> FeatureDrift {
    let mut out = not_compared(name, ColumnKind::Categorical);
    let mut union: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (k, &n) in &r.counts {
        union.entry(k).or_default().0 += n;
    }
    for (k, &n) in &c.counts {
        union.entry(k).or_default().1 += n;
    }
    union.retain(|_, (a, b)| *a > 0 || *b > 0);
    let n_ref = union.values().fold(0u64, |s, v| s.saturating_add(v.0));
    let n_cur = union.values().fold(0u64, |s, v| s.saturating_add(v.1));
    out.reference_rows = n_ref;
    out.current_rows = n_cur;
    out.missing_reference = share(r.missing, n_ref.saturating_add(r.missing));
    out.missing_current = share(c.missing, n_cur.saturating_add(c.missing));
    if n_ref == 0 || n_cur == 0 {
        return out;
    }
    let mut unseen: Vec<CategoryCount> = union
        .iter()
        .filter(|(_, (a, b))| *a == 0 && *b > 0)
        .map(|(k, (_, b))| CategoryCount {
            value: (*k).to_string(),
            count: *b,
        })
        .collect();
    let unseen_total = unseen.iter().fold(0u64, |s, u| s.saturating_add(u.count));
    out.unseen_share = share(unseen_total, n_cur);
    unseen.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    unseen.truncate(MAX_UNSEEN);
    out.unseen = unseen;

    let ref_counts: Vec<f64> = union.values().map(|v| v.0 as f64).collect();
    let cur_counts: Vec<f64> = union.values().map(|v| v.1 as f64).collect();
    let method = super::default_method(ColumnKind::Categorical, n_ref, union.len());
    let score = match method {
        DriftMethod::ChiSquare => chi_square(&ref_counts, &cur_counts).p_value,
        DriftMethod::ZTest => z_test(&ref_counts, &cur_counts).p_value,
        DriftMethod::JensenShannon => jensen_shannon(&ref_counts, &cur_counts),
        // Not chosen for categorical columns.
        DriftMethod::Ks | DriftMethod::Wasserstein | DriftMethod::None => 0.0,
    };
    let ref_shares: Vec<f64> = union.values().map(|v| share(v.0, n_ref)).collect();
    let cur_shares: Vec<f64> = union.values().map(|v| share(v.1, n_cur)).collect();
    out.psi = psi(&ref_shares, &cur_shares);
    out.histogram = categorical_histogram(&union, n_ref, n_cur);
    decide(out, method, score, settings)
}

/// Shares per category over the union of each side's [`CHART_TOP`] most frequent categories
/// (reference order first), the rest (and the bounded-tracking key) as `(other)`.
fn categorical_histogram(union: &BTreeMap<&str, (u64, u64)>, n_ref: u64, n_cur: u64) -> Histogram {
    let top = |side: fn(&(u64, u64)) -> u64| -> Vec<&str> {
        let mut keys: Vec<(&str, u64)> = union
            .iter()
            .filter(|(k, v)| **k != OTHER && side(v) > 0)
            .map(|(k, v)| (*k, side(v)))
            .collect();
        keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        keys.into_iter().take(CHART_TOP).map(|(k, _)| k).collect()
    };
    let mut chosen = top(|v| v.0);
    for k in top(|v| v.1) {
        if !chosen.contains(&k) {
            chosen.push(k);
        }
    }
    let mut hist = Histogram::default();
    let (mut rest_ref, mut rest_cur) = (n_ref, n_cur);
    for k in chosen {
        let (a, b) = union.get(k).copied().unwrap_or_default();
        rest_ref = rest_ref.saturating_sub(a);
        rest_cur = rest_cur.saturating_sub(b);
        hist.labels.push(k.to_string());
        hist.reference.push(share(a, n_ref));
        hist.current.push(share(b, n_cur));
    }
    if rest_ref > 0 || rest_cur > 0 {
        hist.labels.push(OTHER.to_string());
        hist.reference.push(share(rest_ref, n_ref));
        hist.current.push(share(rest_cur, n_cur));
    }
    hist
}
