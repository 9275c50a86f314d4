//! Unit tests of the drift maths: every statistic against scipy's numbers (`vectors.json`,
//! written by `scripts/drift-vectors.py`), the comparison on drawn samples, and the sketch's
//! bounds.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::Deserialize;

use super::sketch::{ALPHA, max_index};
use super::stattests::{
    chi_square, chi2_sf, jensen_shannon, kolmogorov_sf, ks_2samp, psi, psi_bins, wasserstein,
    wasserstein_normed, z_test,
};
use super::*;
use crate::stats::{CategoricalSummary, ColumnSummary, NumericSummary, OTHER, Summary};
use crate::tabular::ColumnKind;

// ---- scipy's numbers -------------------------------------------------------------------------

#[derive(Deserialize)]
struct Vectors {
    distributions: BTreeMap<String, Vec<(f64, f64)>>,
    numeric: Vec<NumericCase>,
    categorical: Vec<CategoricalCase>,
    kolmogorov: Vec<KolmogorovCase>,
    chi2_sf: Vec<Chi2Case>,
}

#[derive(Deserialize)]
struct Test {
    /// `None`: infinite (JSON has no infinity).
    statistic: Option<f64>,
    p_value: f64,
}

#[derive(Deserialize)]
struct Bins {
    edges: Vec<f64>,
    values: Vec<f64>,
    reference: Vec<f64>,
    current: Vec<f64>,
}

#[derive(Deserialize)]
struct NumericCase {
    name: String,
    reference: String,
    current: String,
    wasserstein: f64,
    wasserstein_normed: f64,
    ks: Option<Test>,
    psi_bins: Option<Bins>,
    psi: Option<f64>,
}

#[derive(Deserialize)]
struct CategoricalCase {
    name: String,
    reference: Vec<f64>,
    current: Vec<f64>,
    chi_square: Option<Test>,
    z_test: Option<Test>,
    jensen_shannon: f64,
    psi: f64,
}

#[derive(Deserialize)]
struct KolmogorovCase {
    x: f64,
    sf: f64,
}

#[derive(Deserialize)]
struct Chi2Case {
    x: f64,
    df: f64,
    sf: f64,
}

fn vectors() -> Vectors {
    serde_json::from_str(include_str!("vectors.json")).expect("vectors.json parses")
}

/// Relative closeness; an expected 0 must be met within 1e-12.
fn assert_rel(what: &str, got: f64, want: f64, rel: f64) {
    let ok = if want == 0.0 {
        got.abs() <= 1e-12
    } else {
        (got - want).abs() <= rel * want.abs().max(got.abs())
    };
    assert!(ok, "{what}: got {got:e}, scipy {want:e}");
}

fn assert_all(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_rel(&format!("{what}[{i}]"), *g, *w, 1e-9);
    }
}

fn assert_test(what: &str, got: stattests::TestResult, want: &Test) {
    match want.statistic {
        Some(s) => assert_rel(&format!("{what} statistic"), got.statistic, s, 1e-9),
        None => assert!(got.statistic.is_infinite(), "{what}: statistic {got:?}"),
    }
    assert_rel(&format!("{what} p-value"), got.p_value, want.p_value, 1e-6);
}

#[test]
fn numeric_statistics_match_scipy() {
    let v = vectors();
    assert!(v.numeric.len() >= 10);
    for case in &v.numeric {
        let a = &v.distributions[&case.reference];
        let b = &v.distributions[&case.current];
        let name = &case.name;
        assert_rel(
            &format!("{name} wasserstein"),
            wasserstein(a, b),
            case.wasserstein,
            1e-9,
        );
        assert_rel(
            &format!("{name} wasserstein normed"),
            wasserstein_normed(a, b),
            case.wasserstein_normed,
            1e-9,
        );
        if let Some(ks) = &case.ks {
            assert_test(&format!("{name} ks"), ks_2samp(a, b), ks);
        }
        if let (Some(want), Some(psi_want)) = (&case.psi_bins, case.psi) {
            let got = psi_bins(a, b);
            assert_all(&format!("{name} edges"), &got.edges, &want.edges);
            assert_all(&format!("{name} values"), &got.values, &want.values);
            assert_all(
                &format!("{name} reference"),
                &got.reference,
                &want.reference,
            );
            assert_all(&format!("{name} current"), &got.current, &want.current);
            assert_rel(
                &format!("{name} psi"),
                psi(&got.reference, &got.current),
                psi_want,
                1e-9,
            );
        }
    }
}

#[test]
fn categorical_statistics_match_scipy() {
    let v = vectors();
    assert!(v.categorical.len() >= 10);
    for case in &v.categorical {
        let (r, c, name) = (&case.reference, &case.current, &case.name);
        match &case.chi_square {
            Some(want) => assert_test(&format!("{name} chi-square"), chi_square(r, c), want),
            // One category: nothing to test.
            None => assert_eq!(chi_square(r, c).p_value, 1.0, "{name}"),
        }
        if let Some(want) = &case.z_test {
            assert_test(&format!("{name} z"), z_test(r, c), want);
        }
        assert_rel(
            &format!("{name} jensen-shannon"),
            jensen_shannon(r, c),
            case.jensen_shannon,
            1e-9,
        );
        let shares = |x: &[f64]| -> Vec<f64> {
            let total: f64 = x.iter().sum();
            x.iter().map(|n| n / total).collect()
        };
        assert_rel(
            &format!("{name} psi"),
            psi(&shares(r), &shares(c)),
            case.psi,
            1e-9,
        );
    }
}

#[test]
fn kolmogorov_and_chi_square_tails_match_scipy() {
    let v = vectors();
    for case in &v.kolmogorov {
        assert_rel(
            &format!("kstwobign.sf({})", case.x),
            kolmogorov_sf(case.x),
            case.sf,
            1e-6,
        );
    }
    for case in &v.chi2_sf {
        assert_rel(
            &format!("chi2.sf({}, {})", case.x, case.df),
            chi2_sf(case.x, case.df),
            case.sf,
            1e-6,
        );
    }
}

#[test]
fn bad_inputs_give_no_evidence_not_nan() {
    let empty: [(f64, f64); 0] = [];
    let some = [
        (1.0, 2.0),
        (f64::NAN, 1.0),
        (3.0, f64::INFINITY),
        (4.0, -1.0),
    ];
    assert_eq!(ks_2samp(&empty, &some).p_value, 1.0);
    assert_eq!(wasserstein(&some, &empty), 0.0);
    // Only (1.0, 2.0) survives cleaning on the left.
    assert_eq!(ks_2samp(&some, &[(1.0, 5.0)]).statistic, 0.0);
    assert_eq!(chi_square(&[0.0, 0.0], &[1.0, 2.0]).p_value, 1.0);
    assert_eq!(z_test(&[f64::NAN, 0.0], &[1.0, 1.0]).p_value, 1.0);
    assert_eq!(jensen_shannon(&[0.0], &[1.0]), 0.0);
    assert_eq!(psi(&[], &[]), 0.0);
    assert!(!kolmogorov_sf(f64::NAN).is_nan());
}

#[test]
fn default_tests_follow_evidently() {
    use ColumnKind::{Categorical, Numeric};
    assert_eq!(default_method(Numeric, 1000, 6), DriftMethod::Ks);
    assert_eq!(default_method(Numeric, 1000, 5), DriftMethod::ChiSquare);
    assert_eq!(default_method(Numeric, 1000, 2), DriftMethod::ZTest);
    assert_eq!(default_method(Categorical, 10, 40), DriftMethod::ChiSquare);
    assert_eq!(default_method(Categorical, 10, 2), DriftMethod::ZTest);
    assert_eq!(default_method(Numeric, 1001, 6), DriftMethod::Wasserstein);
    assert_eq!(default_method(Numeric, 1001, 5), DriftMethod::JensenShannon);
    assert_eq!(
        default_method(Categorical, 5000, 40),
        DriftMethod::JensenShannon
    );
}

// ---- the comparison --------------------------------------------------------------------------

const CATEGORIES: [(&str, f64); 4] = [
    ("alpha", 0.4),
    ("beta", 0.3),
    ("gamma", 0.2),
    ("delta", 0.1),
];

/// How the current rows differ from the reference's.
#[derive(Clone, Copy, Default)]
struct Shift {
    /// Added to `x` (standard normal in the reference).
    x: f64,
    /// Share of `c` values replaced by the new category `zeta`.
    new_category: f64,
}

/// Rows `(x, y, c, b)`: `x` normal, `y` exponential, `c` one of four categories, `b` yes/no;
/// one cell in 50 missing.
type Row = (Option<f64>, Option<f64>, Option<String>, Option<String>);

fn draw(n: usize, seed: u64, shift: Shift) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(shift.x, 1.0).expect("valid normal");
    (0..n)
        .map(|_| {
            let x = normal.sample(&mut rng);
            let y = -10.0 * (1.0 - rng.random::<f64>()).ln();
            let mut u = rng.random::<f64>();
            let mut c = CATEGORIES[3].0;
            for (name, p) in CATEGORIES {
                if u < p {
                    c = name;
                    break;
                }
                u -= p;
            }
            if rng.random::<f64>() < shift.new_category {
                c = "zeta";
            }
            let b = if rng.random::<f64>() < 0.3 {
                "yes"
            } else {
                "no"
            };
            let keep = |rng: &mut StdRng| rng.random_range(0..50) != 0;
            (
                keep(&mut rng).then_some(x),
                keep(&mut rng).then_some(y),
                keep(&mut rng).then(|| c.to_string()),
                keep(&mut rng).then(|| b.to_string()),
            )
        })
        .collect()
}

fn summarise(rows: &[Row]) -> Summary {
    let (mut x, mut y) = (NumericSummary::default(), NumericSummary::default());
    let (mut c, mut b) = (CategoricalSummary::default(), CategoricalSummary::default());
    for (xv, yv, cv, bv) in rows {
        x.push(*xv);
        y.push(*yv);
        c.push_bounded(cv.as_deref(), 100);
        b.push_bounded(bv.as_deref(), 100);
    }
    Summary {
        n_rows: rows.len() as u64,
        columns: BTreeMap::from([
            ("x".into(), ColumnSummary::Numeric(x)),
            ("y".into(), ColumnSummary::Numeric(y)),
            ("c".into(), ColumnSummary::Categorical(c)),
            ("b".into(), ColumnSummary::Categorical(b)),
        ]),
    }
}

fn features() -> Vec<String> {
    ["x", "y", "c", "b"].map(String::from).to_vec()
}

fn feature<'a>(report: &'a DriftReport, name: &str) -> &'a FeatureDrift {
    report
        .features
        .iter()
        .find(|f| f.name == name)
        .expect("feature reported")
}

fn drifted(report: &DriftReport) -> Vec<&str> {
    report
        .features
        .iter()
        .filter(|f| f.drifted)
        .map(|f| f.name.as_str())
        .collect()
}

/// Reference and current sizes on both sides of Evidently's 1000-row switch, with the methods
/// expected for `x`, `y`, `c`, `b`.
fn regimes() -> [(usize, usize, [DriftMethod; 4]); 2] {
    use DriftMethod::*;
    [
        (1000, 300, [Ks, Ks, ChiSquare, ZTest]),
        (
            5000,
            2000,
            [Wasserstein, Wasserstein, JensenShannon, JensenShannon],
        ),
    ]
}

/// Drawn alike, over 50 draws: the distances stay small and never flag, a p-value test flags
/// a feature about as often as its level says, and the data set (2 of 4 features) drifts
/// seldom. Evidently's chi-square holds the current counts against the reference shares as if
/// those were exact, so it flags more often than 5% (about 10% at these sizes); the bounds
/// leave room for that.
#[test]
fn samples_drawn_alike_do_not_drift() {
    let settings = DriftSettings::default();
    const DRAWS: u64 = 50;
    for (n, m, methods) in regimes() {
        let (mut flags, mut drifting) = ([0u64; 4], 0u64);
        for seed in 0..DRAWS {
            let reference = summarise(&draw(n, 100 + seed, Shift::default()));
            let current = summarise(&draw(m, 200 + seed, Shift::default()));
            let report = compare(&reference, &current, &features(), &settings);
            assert!(report.enough_rows);
            drifting += u64::from(report.drifting);
            for (i, (f, method)) in report.features.iter().zip(methods).enumerate() {
                assert_eq!(f.method, method, "{}", f.name);
                flags[i] += u64::from(f.drifted);
                if !method.is_p_value() {
                    assert!(!f.drifted && f.score < 0.08, "{}: {}", f.name, f.score);
                }
                assert!(f.psi < settings.psi, "{}: psi {}", f.name, f.psi);
                assert!(f.unseen.is_empty() && f.unseen_share == 0.0);
                assert!(f.missing_current < 0.05);
                assert_eq!(f.histogram.reference.len(), f.histogram.labels.len());
                assert_eq!(f.histogram.current.len(), f.histogram.labels.len());
            }
            let x = feature(&report, "x");
            assert_eq!(
                x.reference_rows,
                reference.numeric("x").map_or(0, |s| s.count)
            );
        }
        assert!(flags.iter().all(|&f| f * 5 <= DRAWS), "{n} rows: {flags:?}");
        assert!(drifting * 20 <= DRAWS, "{n} rows: {drifting} drifting");
        if n > 1000 {
            assert_eq!((flags, drifting), ([0; 4], 0));
        }
    }
}

#[test]
fn a_shifted_column_and_a_new_category_drift() {
    let settings = DriftSettings::default();
    let shift = Shift {
        x: 1.0,
        new_category: 0.15,
    };
    for (n, m, _) in regimes() {
        let reference = summarise(&draw(n, 3, Shift::default()));
        let current = summarise(&draw(m, 4, shift));
        let report = compare(&reference, &current, &features(), &settings);
        assert_eq!(drifted(&report), vec!["x", "c"], "{report:#?}");
        assert_eq!(report.drifted_features, 2);
        assert_eq!(report.drift_share, 0.5);
        assert!(report.drifting);
        let c = feature(&report, "c");
        assert_eq!(c.unseen.len(), 1);
        assert_eq!(c.unseen[0].value, "zeta");
        let zeta = current.categorical("c").map_or(0, |s| s.counts["zeta"]);
        assert_eq!(c.unseen[0].count, zeta);
        assert_eq!(c.unseen_share, zeta as f64 / c.current_rows as f64);
        assert!(c.histogram.labels.iter().any(|l| l == "zeta"));
        let x = feature(&report, "x");
        assert!(x.psi > settings.psi, "x psi {}", x.psi);
        assert_eq!(x.histogram.edges.len(), x.histogram.labels.len() + 1);
    }
}

#[test]
fn too_few_current_rows_flag_nothing() {
    let reference = summarise(&draw(600, 5, Shift::default()));
    let current = summarise(&draw(
        20,
        6,
        Shift {
            x: 3.0,
            new_category: 0.5,
        },
    ));
    let report = compare(&reference, &current, &features(), &DriftSettings::default());
    assert!(!report.enough_rows && !report.drifting);
    assert_eq!(report.drifted_features, 0);
    // The scores are still there for people to read.
    assert!(feature(&report, "x").score < 0.05);
}

#[test]
fn merging_then_comparing_equals_comparing_the_whole() {
    let settings = DriftSettings::default();
    let rows = draw(900, 7, Shift::default());
    let current_rows = draw(
        700,
        8,
        Shift {
            x: 0.3,
            new_category: 0.05,
        },
    );
    let (reference, current) = (summarise(&rows), summarise(&current_rows));
    let merged = |rows: &[Row], cuts: &[usize]| {
        let mut out = Summary::default();
        for w in cuts.windows(2) {
            out.merge(&summarise(&rows[w[0]..w[1]]))
                .expect("same shape");
        }
        out
    };
    let reference_parts = merged(&rows, &[0, 100, 450, 900]);
    let current_parts = merged(&current_rows, &[0, 350, 351, 700]);
    assert_eq!(
        compare(&reference_parts, &current_parts, &features(), &settings),
        compare(&reference, &current, &features(), &settings)
    );
}

#[test]
fn a_summary_without_a_sketch_is_not_compared() {
    // Stored before sketches existed: no `sketch` field.
    let old: NumericSummary = serde_json::from_str(
        r#"{"count": 3, "missing": 0, "sum": 6.0, "sum_sq": 14.0, "min": 1.0, "max": 3.0}"#,
    )
    .expect("old summaries still parse");
    assert!(old.sketch.is_empty());
    let reference = Summary {
        n_rows: 3,
        columns: BTreeMap::from([("x".into(), ColumnSummary::Numeric(old))]),
    };
    let current = summarise(&draw(100, 9, Shift::default()));
    let report = compare(&reference, &current, &features(), &DriftSettings::default());
    assert_eq!(report.features.len(), 1);
    let x = &report.features[0];
    assert_eq!((x.method, x.drifted), (DriftMethod::None, false));
    assert!(!report.drifting);
}

#[test]
fn features_absent_or_of_another_kind() {
    let reference = summarise(&draw(200, 10, Shift::default()));
    let mut current = reference.clone();
    current.columns.insert(
        "x".into(),
        ColumnSummary::Categorical(CategoricalSummary::default()),
    );
    current.columns.remove("y");
    let names = ["x", "y", "c", "c", "nope"].map(String::from);
    let report = compare(&reference, &current, &names, &DriftSettings::default());
    let got: Vec<(&str, DriftMethod)> = report
        .features
        .iter()
        .map(|f| (f.name.as_str(), f.method))
        .collect();
    assert_eq!(
        got,
        vec![("x", DriftMethod::None), ("c", DriftMethod::ChiSquare)]
    );
    // Identical columns: nothing moved.
    assert_eq!(report.features[1].psi, 0.0);
    assert_eq!(report.features[1].score, 1.0);
}

#[test]
fn bounded_categories_keep_other_as_a_key() {
    let mut hostile = CategoricalSummary::default();
    for i in 0..10_000 {
        hostile.push_bounded(Some(&format!("v{i}")), 50);
    }
    hostile.push_bounded(Some("v3"), 50);
    hostile.push_bounded(None, 50);
    assert_eq!(hostile.counts.len(), 51);
    assert_eq!(hostile.counts[OTHER], 10_000 - 50);
    assert_eq!(hostile.counts["v3"], 2);
    assert_eq!(hostile.missing, 1);
    assert_eq!(hostile.counts.values().sum::<u64>(), 10_001);

    // `(other)` on one side only is an unseen category like any other.
    let mut reference = CategoricalSummary::default();
    for i in 0..2000 {
        reference.push(Some(&format!("v{}", i % 60)));
    }
    let wrap = |c: CategoricalSummary| Summary {
        n_rows: c.counts.values().sum(),
        columns: BTreeMap::from([("c".into(), ColumnSummary::Categorical(c))]),
    };
    let report = compare(
        &wrap(reference),
        &wrap(hostile),
        &["c".to_string()],
        &DriftSettings::default(),
    );
    let c = &report.features[0];
    assert!(c.drifted);
    // v0..v49 are reference categories; the 9,950 fresh values are all under `(other)`.
    assert_eq!(
        c.unseen,
        vec![CategoryCount {
            value: OTHER.into(),
            count: 9_950
        }]
    );
    // Chart: the reference's top 20 and the current's top 20, the rest as one bin.
    assert_eq!(c.histogram.labels.last().map(String::as_str), Some(OTHER));
    assert!(c.histogram.labels.len() <= 41);
    let sum = |x: &[f64]| x.iter().sum::<f64>();
    assert!((sum(&c.histogram.reference) - 1.0).abs() < 1e-12);
    assert!((sum(&c.histogram.current) - 1.0).abs() < 1e-12);
}

#[test]
fn settings_and_report_serialise() {
    let settings: DriftSettings = serde_json::from_str(r#"{"p_value": 0.01}"#).expect("parses");
    assert_eq!(
        settings,
        DriftSettings {
            p_value: 0.01,
            ..DriftSettings::default()
        }
    );
    let reference = summarise(&draw(300, 11, Shift::default()));
    let report = compare(&reference, &reference, &features(), &settings);
    let json = serde_json::to_string(&report).expect("serialises");
    assert!(json.contains(r#""method":"chi_square""#), "{json}");
    // serde_json parses floats to within an ulp, not always exactly: compare the values.
    let back: DriftReport = serde_json::from_str(&json).expect("round trip");
    let (a, b) = (
        serde_json::to_value(&back).expect("to value"),
        serde_json::to_value(&report).expect("to value"),
    );
    assert_json_close(&a, &b);
}

fn assert_json_close(a: &serde_json::Value, b: &serde_json::Value) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            assert!((x - y).abs() <= 1e-15 * x.abs().max(y.abs()), "{x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).for_each(|(x, y)| assert_json_close(x, y));
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
            x.iter().for_each(|(k, v)| assert_json_close(v, &y[k]));
        }
        (x, y) => assert_eq!(x, y),
    }
}

// ---- the value sketch ------------------------------------------------------------------------

#[test]
fn sketch_values_are_within_alpha() {
    let mut s = ValueSketch::new();
    for v in [-250.0, -1.0, -0.001, 0.0, 1e-12, 0.5, 1.0, 3.7, 1e6, 1e300] {
        s.push(v);
        let (got, _) = s
            .points()
            .find(|(p, _)| (p - v).abs() <= ALPHA * v.abs() + 1e-9)
            .unwrap_or((f64::NAN, 0));
        assert!(!got.is_nan(), "{v} has no representative within alpha");
    }
    let values: Vec<f64> = s.points().map(|p| p.0).collect();
    assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
    assert_eq!(s.count(), 10);
    assert_eq!(
        s.points().filter(|p| p.0 == 0.0).map(|p| p.1).sum::<u64>(),
        2
    );

    let mut q = ValueSketch::new();
    (1..=10_000).for_each(|i| q.push(f64::from(i)));
    for (quantile, exact) in [(0.0, 1.0), (0.5, 5000.5), (0.99, 9900.01), (1.0, 10_000.0)] {
        let got = q.quantile(quantile).unwrap_or(f64::NAN);
        assert!((got - exact).abs() <= 0.0101 * exact, "q{quantile}: {got}");
    }
    assert_eq!(q.quantile(1.5), None);
    assert_eq!(ValueSketch::new().quantile(0.5), None);
}

#[test]
fn non_finite_values_are_ignored() {
    let mut s = ValueSketch::new();
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        s.push(v);
    }
    assert!(s.is_empty() && s.buckets() == 0);
    let mut n = NumericSummary::default();
    n.push(Some(f64::NAN));
    n.push(Some(f64::INFINITY));
    n.push(Some(2.0));
    assert_eq!((n.count, n.missing, n.sum), (1, 2, 2.0));
    assert_eq!(n.sketch.count(), 1);
}

/// `n` values log-uniform over 1e-300..1e300, every third one negative.
fn hostile(n: usize, start: usize) -> impl Iterator<Item = f64> {
    (start..start + n).map(move |i| {
        let exponent = -300.0 + 600.0 * ((i * 7919) % 1_000_003) as f64 / 1_000_003.0;
        let v = 10f64.powf(exponent);
        if i % 3 == 0 { -v } else { v }
    })
}

#[test]
fn a_hostile_stream_stays_bounded() {
    let mut s = ValueSketch::new();
    hostile(1_000_000, 0).for_each(|v| s.push(v));
    assert!(s.buckets() <= MAX_BUCKETS, "{} buckets", s.buckets());
    assert_eq!(s.buckets(), MAX_BUCKETS);
    assert_eq!(s.count(), 1_000_000);
    assert_eq!(s.check(), Ok(()));
    // The highest values keep their accuracy: the top bucket is the one of the largest value.
    let top = s.points().last().map_or(f64::NAN, |p| p.0);
    let largest = hostile(1_000_000, 0).fold(f64::MIN, f64::max);
    assert!(
        (top - largest).abs() <= ALPHA * largest,
        "{top} vs {largest}"
    );
}

#[test]
fn collapsed_sketches_still_merge_exactly() {
    let values: Vec<f64> = hostile(60_000, 11).collect();
    let mut whole = ValueSketch::new();
    values.iter().for_each(|&v| whole.push(v));
    let mut backwards = ValueSketch::new();
    values.iter().rev().for_each(|&v| backwards.push(v));
    let mut parts = ValueSketch::new();
    for chunk in values.chunks(7_000) {
        let mut part = ValueSketch::new();
        chunk.iter().for_each(|&v| part.push(v));
        parts.merge(&part);
    }
    assert!(whole.buckets() == MAX_BUCKETS);
    assert_eq!(backwards, whole);
    assert_eq!(parts, whole);
}

#[test]
fn sketch_json_and_its_check() {
    let mut s = ValueSketch::new();
    for v in [-2.0, 0.0, 1.0, 1.0] {
        s.push(v);
    }
    let json = serde_json::to_value(&s).expect("serialises");
    assert_eq!(json["zero"], 1);
    assert_eq!(json["positive"]["0"], 2);
    assert_eq!(json["negative"].as_object().map(|o| o.len()), Some(1));
    let back: ValueSketch = serde_json::from_value(json).expect("parses");
    assert_eq!(back, s);

    let too_many: BTreeMap<String, u64> = (0..=MAX_BUCKETS).map(|i| (i.to_string(), 1)).collect();
    let big: ValueSketch =
        serde_json::from_value(serde_json::json!({ "positive": too_many })).expect("parses");
    assert!(matches!(
        big.check(),
        Err(SketchError::TooManyBuckets { buckets, .. }) if buckets == MAX_BUCKETS + 1
    ));
    let far: ValueSketch = serde_json::from_value(
        serde_json::json!({ "negative": { (max_index() + 1).to_string(): 1 } }),
    )
    .expect("parses");
    assert!(matches!(
        far.check(),
        Err(SketchError::IndexOutOfRange { .. })
    ));
    assert!(
        far.check()
            .is_err_and(|e| e.to_string().contains("bucket index"))
    );
}

#[cfg(feature = "openapi")]
#[test]
fn schemas_name_the_sketch_and_the_report_parts() {
    use utoipa::{PartialSchema, ToSchema};
    fn components<T: ToSchema>() -> serde_json::Map<String, serde_json::Value> {
        let mut out = Vec::new();
        T::schemas(&mut out);
        out.iter()
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
            .collect()
    }
    let numeric = serde_json::to_value(NumericSummary::schema()).unwrap_or_default();
    assert_eq!(
        numeric["properties"]["sketch"]["$ref"],
        "#/components/schemas/ValueSketch"
    );
    // Old summaries have no sketch: it must not be required.
    let required = numeric["required"].as_array().cloned().unwrap_or_default();
    assert!(!required.contains(&"sketch".into()), "{numeric}");
    assert!(components::<NumericSummary>().contains_key("ValueSketch"));
    let report = components::<DriftReport>();
    for name in ["FeatureDrift", "Histogram", "CategoryCount", "DriftMethod"] {
        assert!(report.contains_key(name), "{name}: {:?}", report.keys());
    }
}
