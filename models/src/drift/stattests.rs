//! The drift statistics, as pure functions of weighted discrete distributions (values with
//! counts, as [`super::ValueSketch::points`] gives them) or of aligned category counts (index
//! `i` is the same category on both sides).
//!
//! Each one follows scipy or Evidently (its `legacy/calculations/stattests`) formula for
//! formula, so the numbers agree with what a data scientist gets from those tools on the same
//! distributions; `scripts/drift-vectors.py` writes the reference numbers the unit tests check.
//!
//! Inputs are cleaned, never trusted: points with a non-finite value or a weight that is not
//! finite and positive are dropped, and a side with nothing left gives the "no evidence"
//! answer (statistic 0, p-value 1) instead of NaN.

use std::cmp::Ordering;
use std::f64::consts::PI;

/// A reference side with more distinct values than this is binned by [`sturges_edges`] for
/// PSI and charts (Evidently's `get_binned_data`); fewer are compared value by value.
pub const PSI_MAX_DISTINCT: usize = 20;

/// Statistic and p-value of a test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    pub statistic: f64,
    pub p_value: f64,
}

/// The two-sample Kolmogorov-Smirnov result ([`ks_2samp`]).
pub type KsResult = TestResult;

const NO_EVIDENCE: TestResult = TestResult {
    statistic: 0.0,
    p_value: 1.0,
};

/// Points with a finite value and a finite positive weight, sorted by value, equal values
/// merged.
fn clean(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut kept: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(v, w)| v.is_finite() && w.is_finite() && w > 0.0)
        .collect();
    kept.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(kept.len());
    for (v, w) in kept {
        match out.last_mut() {
            // `==` rather than total_cmp: -0.0 and 0.0 are one value.
            Some(last) if last.0 == v => last.1 += w,
            _ => out.push((v, w)),
        }
    }
    out
}

fn total(points: &[(f64, f64)]) -> f64 {
    points.iter().map(|p| p.1).sum()
}

/// The union of both sides' values in increasing order, with each side's weight at each value
/// (0 where a side lacks it). Inputs are cleaned first.
pub fn align_points(a: &[(f64, f64)], b: &[(f64, f64)]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (a, b) = (clean(a), clean(b));
    let (mut values, mut wa, mut wb) = (Vec::new(), Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let order = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.0.partial_cmp(&y.0).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let (v, x, y) = match order {
            Ordering::Less => (a[i].0, a[i].1, 0.0),
            Ordering::Greater => (b[j].0, 0.0, b[j].1),
            Ordering::Equal => (a[i].0, a[i].1, b[j].1),
        };
        if order != Ordering::Greater {
            i += 1;
        }
        if order != Ordering::Less {
            j += 1;
        }
        values.push(v);
        wa.push(x);
        wb.push(y);
    }
    (values, wa, wb)
}

/// Two-sample Kolmogorov-Smirnov test over weighted points (weights are counts): the largest
/// distance `D` between the two weighted empirical CDFs, and the p-value of Kolmogorov's
/// limiting distribution `Q(sqrt(en) * D)`, `en = n m / (n + m)` with `n`, `m` the total
/// weights (scipy's `kstwobign.sf`; for integer weights `D` is scipy's `ks_2samp` statistic
/// of the repeated values).
pub fn ks_2samp(a: &[(f64, f64)], b: &[(f64, f64)]) -> KsResult {
    let (_, wa, wb) = align_points(a, b);
    let (n, m) = (wa.iter().sum::<f64>(), wb.iter().sum::<f64>());
    if n <= 0.0 || m <= 0.0 {
        return NO_EVIDENCE;
    }
    let (mut ca, mut cb, mut d) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in wa.iter().zip(&wb) {
        ca += x;
        cb += y;
        d = d.max((ca / n - cb / m).abs());
    }
    let en = n * m / (n + m);
    KsResult {
        statistic: d,
        p_value: kolmogorov_sf(en.sqrt() * d),
    }
}

/// Kolmogorov's survival function `Q(x) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2)` (scipy's
/// `kstwobign.sf`). Below `x = 1` the series converges slowly and is evaluated through its
/// theta-function form `1 - sqrt(2 pi) / x * sum_{k>=1} exp(-(2k-1)^2 pi^2 / (8 x^2))`.
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return 1.0;
    }
    if x < 1.0 {
        let w = PI * PI / (8.0 * x * x);
        let mut sum = 0.0;
        for k in 1..=64 {
            let odd = f64::from(2 * k - 1);
            let term = (-odd * odd * w).exp();
            sum += term;
            if term <= 1e-17 * sum {
                break;
            }
        }
        return (1.0 - (2.0 * PI).sqrt() / x * sum).clamp(0.0, 1.0);
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=64 {
        let k = f64::from(k);
        let term = (-2.0 * k * k * x * x).exp();
        sum += sign * term;
        sign = -sign;
        if term <= 1e-17 * sum.abs() {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// First Wasserstein distance between two weighted distributions: the area between their
/// CDFs (scipy's `wasserstein_distance(u, v, u_weights, v_weights)`; each side's weights are
/// normalised to sum to 1). 0 when a side is empty.
pub fn wasserstein(a: &[(f64, f64)], b: &[(f64, f64)]) -> f64 {
    let (values, wa, wb) = align_points(a, b);
    let (n, m) = (wa.iter().sum::<f64>(), wb.iter().sum::<f64>());
    if n <= 0.0 || m <= 0.0 {
        return 0.0;
    }
    let (mut ca, mut cb, mut area) = (0.0f64, 0.0f64, 0.0f64);
    for k in 0..values.len().saturating_sub(1) {
        ca += wa[k];
        cb += wb[k];
        area += (ca / n - cb / m).abs() * (values[k + 1] - values[k]);
    }
    area
}

/// Population standard deviation of weighted points (numpy's `std` of the repeated values;
/// 0 when empty).
pub fn weighted_std(points: &[(f64, f64)]) -> f64 {
    let points = clean(points);
    let n = total(&points);
    if n <= 0.0 {
        return 0.0;
    }
    let mean = points.iter().map(|(v, w)| v * w).sum::<f64>() / n;
    let var = points
        .iter()
        .map(|(v, w)| w * (v - mean) * (v - mean))
        .sum::<f64>()
        / n;
    var.sqrt()
}

/// Evidently's normed Wasserstein distance: [`wasserstein`] divided by the reference's
/// population standard deviation, at least 0.001 (so a constant reference does not divide by
/// zero).
pub fn wasserstein_normed(reference: &[(f64, f64)], current: &[(f64, f64)]) -> f64 {
    wasserstein(reference, current) / weighted_std(reference).max(0.001)
}

/// Evidently's zero filling before PSI: zero shares become 0.0001, or a millionth of the
/// smallest non-zero share when that is itself at most 0.0001 (so a filled share stays below
/// every observed one). A side with no non-zero share is left as it is.
pub fn fill_zeros(shares: &mut [f64]) {
    let smallest = shares
        .iter()
        .copied()
        .filter(|&s| s != 0.0)
        .fold(f64::INFINITY, f64::min);
    if !smallest.is_finite() {
        return;
    }
    let fill = if smallest <= 1e-4 {
        smallest / 1e6
    } else {
        1e-4
    };
    shares
        .iter_mut()
        .filter(|s| **s == 0.0)
        .for_each(|s| *s = fill);
}

/// Evidently's population stability index over aligned shares (bins or categories):
/// [`fill_zeros`] on each side, then `sum((r - c) * ln(r / c))`. Entries empty on both sides
/// are left out first (Evidently's categories are those seen on either side). 0 when either
/// side has no non-zero share.
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    let (mut r, mut c): (Vec<f64>, Vec<f64>) = reference
        .iter()
        .zip(current)
        .map(|(&r, &c)| (clean_count(r), clean_count(c)))
        .filter(|&(r, c)| r > 0.0 || c > 0.0)
        .unzip();
    if r.is_empty() || !r.iter().any(|&s| s > 0.0) || !c.iter().any(|&s| s > 0.0) {
        return 0.0;
    }
    fill_zeros(&mut r);
    fill_zeros(&mut c);
    let value: f64 = r
        .iter()
        .zip(&c)
        .map(|(&r, &c)| (r - c) * (r / c).ln())
        .sum();
    if value.is_finite() { value } else { 0.0 }
}

/// numpy's `histogram_bin_edges(data, bins="sturges")` for data of `n` values from `lo` to
/// `hi`: `ceil((hi - lo) / width)` equal bins, `width = (hi - lo) / (log2(n) + 1)`, edges as
/// `np.linspace` lays them (`lo + i * step`, the last one exactly `hi`). A constant sample gets
/// one bin `[lo - 0.5, hi + 0.5]`.
pub fn sturges_edges(lo: f64, hi: f64, n: f64) -> Vec<f64> {
    let (mut first, mut last) = (lo, hi);
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    let width = (hi - lo) / (n.max(1.0).log2() + 1.0);
    let bins = if width > 0.0 && width.is_finite() {
        ((last - first) / width).ceil()
    } else {
        1.0
    };
    // log2 of a u64 count is below 64; the cap only guards against nonsense input.
    let bins = if bins.is_finite() {
        bins.clamp(1.0, 4096.0) as usize
    } else {
        1
    };
    let delta = last - first;
    let step = if delta.is_finite() {
        delta / bins as f64
    } else {
        last / bins as f64 - first / bins as f64
    };
    let mut edges: Vec<f64> = (0..bins).map(|i| first + i as f64 * step).collect();
    edges.push(last);
    edges
}

/// Shares of two distributions over common bins, as Evidently's `get_binned_data` lays them
/// out (before its zero filling).
#[derive(Debug, Clone, PartialEq)]
pub struct Binned {
    /// Bin edges (`bins + 1`) when binned by range; empty when binned by value.
    pub edges: Vec<f64>,
    /// The distinct values (the union of both sides) when binned by value; empty otherwise.
    pub values: Vec<f64>,
    /// Reference share in each bin.
    pub reference: Vec<f64>,
    /// Current share in each bin.
    pub current: Vec<f64>,
}

/// Evidently's binning for PSI (and for the charts) of a numeric column: with more than
/// [`PSI_MAX_DISTINCT`] distinct reference values, [`sturges_edges`] over both sides together
/// and each side's share per bin (`np.histogram`: `[e_i, e_i+1)`, the last bin closed);
/// otherwise each side's share per distinct value over the union of values.
pub fn psi_bins(reference: &[(f64, f64)], current: &[(f64, f64)]) -> Binned {
    let (reference, current) = (clean(reference), clean(current));
    let (n_ref, n_cur) = (total(&reference), total(&current));
    let share = |w: f64, n: f64| if n > 0.0 { w / n } else { 0.0 };
    if reference.len() <= PSI_MAX_DISTINCT {
        let (values, r, c) = align_points(&reference, &current);
        return Binned {
            values,
            edges: Vec::new(),
            reference: r.iter().map(|&w| share(w, n_ref)).collect(),
            current: c.iter().map(|&w| share(w, n_cur)).collect(),
        };
    }
    let lo = reference[0]
        .0
        .min(current.first().map_or(f64::INFINITY, |p| p.0));
    let hi = reference[reference.len() - 1]
        .0
        .max(current.last().map_or(f64::NEG_INFINITY, |p| p.0));
    let edges = sturges_edges(lo, hi, n_ref + n_cur);
    let histogram = |points: &[(f64, f64)], n: f64| {
        let bins = edges.len().saturating_sub(1).max(1);
        let mut counts = vec![0.0; bins];
        for &(v, w) in points {
            // Bin i holds e_i <= v < e_i+1; the top edge belongs to the last bin.
            let above = edges.partition_point(|&e| e <= v);
            if above == 0 || edges.last().is_some_and(|&top| v > top) {
                continue;
            }
            counts[(above - 1).min(bins - 1)] += w;
        }
        counts
            .into_iter()
            .map(|w| share(w, n))
            .collect::<Vec<f64>>()
    };
    Binned {
        reference: histogram(&reference, n_ref),
        current: histogram(&current, n_cur),
        edges,
        values: Vec::new(),
    }
}

/// Evidently's `chi_stat_test`: Pearson's chi-square of the current counts against the
/// reference counts scaled to the current total (`expected = ref * n_cur / n_ref`), with
/// `k - 1` degrees of freedom over the `k` categories seen on either side (scipy's
/// `chisquare(f_obs, f_exp)`). A category the reference never had but the current has makes
/// the statistic infinite and the p-value 0. No evidence (p = 1) with fewer than two
/// categories or an empty side.
pub fn chi_square(reference: &[f64], current: &[f64]) -> TestResult {
    let Some((pairs, n_ref, n_cur)) = seen_counts(reference, current) else {
        return NO_EVIDENCE;
    };
    let k_norm = n_cur / n_ref;
    let statistic: f64 = pairs
        .iter()
        .map(|&(r, c)| {
            let expected = r * k_norm;
            if expected > 0.0 {
                (c - expected) * (c - expected) / expected
            } else {
                f64::INFINITY
            }
        })
        .sum();
    let p_value = if statistic.is_finite() {
        chi2_sf(statistic, (pairs.len() - 1) as f64)
    } else {
        0.0
    };
    TestResult { statistic, p_value }
}

/// Categories seen on either side as `(reference, current)` counts, with both totals.
type SeenCounts = (Vec<(f64, f64)>, f64, f64);

/// The categories seen on either side as `(reference, current)` counts, and both totals;
/// `None` (no evidence) with fewer than two categories or an empty side.
fn seen_counts(reference: &[f64], current: &[f64]) -> Option<SeenCounts> {
    let pairs: Vec<(f64, f64)> = reference
        .iter()
        .zip(current)
        .map(|(&r, &c)| (clean_count(r), clean_count(c)))
        .filter(|&(r, c)| r > 0.0 || c > 0.0)
        .collect();
    let n_ref: f64 = pairs.iter().map(|p| p.0).sum();
    let n_cur: f64 = pairs.iter().map(|p| p.1).sum();
    (pairs.len() >= 2 && n_ref > 0.0 && n_cur > 0.0).then_some((pairs, n_ref, n_cur))
}

/// A count as a weight: non-finite or negative counts count as 0.
fn clean_count(c: f64) -> f64 {
    if c.is_finite() && c > 0.0 { c } else { 0.0 }
}

/// Evidently's `z_stat_test` for two categories: the two-proportion z statistic of "not the
/// first category seen" (pooled proportion `P`), two-sided p-value `2 (1 - Phi(|z|))`
/// (computed as `erfc(|z| / sqrt 2)`, which keeps its accuracy in the tail). p = 1 when both
/// sides hold one and the same single category, or a side is empty.
pub fn z_test(reference: &[f64], current: &[f64]) -> TestResult {
    let Some((pairs, n1, n2)) = seen_counts(reference, current) else {
        return NO_EVIDENCE;
    };
    let (first_ref, first_cur) = pairs[0];
    let p1 = (n1 - first_ref) / n1;
    let p2 = (n2 - first_cur) / n2;
    let pooled = (p1 * n1 + p2 * n2) / (n1 + n2);
    let spread = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if !(spread > 0.0 && spread.is_finite()) {
        return NO_EVIDENCE;
    }
    let statistic = (p1 - p2) / spread;
    TestResult {
        statistic,
        p_value: libm::erfc(statistic.abs() / std::f64::consts::SQRT_2),
    }
}

/// scipy's `distance.jensenshannon(p, q)` (natural log): each side normalised to sum to 1,
/// `m = (p + q) / 2`, the distance `sqrt((KL(p || m) + KL(q || m)) / 2)`. Zeros need no
/// filling (`0 ln 0 = 0`); Evidently passes the raw shares too. 0 when a side is empty.
pub fn jensen_shannon(reference: &[f64], current: &[f64]) -> f64 {
    let pairs: Vec<(f64, f64)> = reference
        .iter()
        .zip(current)
        .map(|(&r, &c)| (clean_count(r), clean_count(c)))
        .collect();
    let sp: f64 = pairs.iter().map(|x| x.0).sum();
    let sq: f64 = pairs.iter().map(|x| x.1).sum();
    if sp <= 0.0 || sq <= 0.0 {
        return 0.0;
    }
    let rel_entr = |x: f64, m: f64| if x > 0.0 { x * (x / m).ln() } else { 0.0 };
    let divergence: f64 = pairs
        .iter()
        .map(|&(p, q)| {
            let (p, q) = (p / sp, q / sq);
            let m = (p + q) / 2.0;
            rel_entr(p, m) + rel_entr(q, m)
        })
        .sum();
    (divergence / 2.0).max(0.0).sqrt()
}

/// Survival function of the chi-square distribution with `df` degrees of freedom at `x`:
/// the regularised upper incomplete gamma `Q(df / 2, x / 2)`.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    gamma_q(df / 2.0, x / 2.0)
}

/// Regularised upper incomplete gamma function `Q(a, x) = Gamma(a, x) / Gamma(a)`, by its
/// power series below `x = a + 1` and its continued fraction (modified Lentz) above. 1 for
/// `x <= 0`, 0 for `x = inf`; NaN for `a <= 0` or a NaN argument.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if a.is_nan() || x.is_nan() || a <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    const EPS: f64 = 1e-16;
    const TINY: f64 = 1e-300;
    const MAX_ITER: usize = 100_000;
    let prefactor = (-x + a * x.ln() - libm::lgamma(a)).exp();
    if x < a + 1.0 {
        // P(a, x) = e^-x x^a / Gamma(a) * sum_n x^n / (a (a+1) ... (a+n))
        let (mut ap, mut term) = (a, 1.0 / a);
        let mut sum = term;
        for _ in 0..MAX_ITER {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * EPS {
                break;
            }
        }
        return (1.0 - sum * prefactor).clamp(0.0, 1.0);
    }
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..MAX_ITER {
        let i = i as f64;
        let an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < EPS {
            break;
        }
    }
    (prefactor * h).clamp(0.0, 1.0)
}
