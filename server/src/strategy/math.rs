//! The aggregation maths as pure functions over flat `f32` parameter vectors.

use std::collections::BTreeMap;

use super::{EvalRes, FitRes, Fits, StrategyError};

/// `acc[i] += w * x[i]`, in `f64`. Written over fixed-size chunks so that the compiler drops
/// bounds checks and emits packed SIMD for the body; this loop is the server's hot path (see
/// `benches/aggregate.rs`). Panics if the lengths differ: callers check them first.
#[inline]
pub fn accumulate(acc: &mut [f64], x: &[f32], w: f64) {
    assert_eq!(acc.len(), x.len());
    const LANES: usize = 16;
    let mut acc_chunks = acc.chunks_exact_mut(LANES);
    let mut x_chunks = x.chunks_exact(LANES);
    for (a, x) in (&mut acc_chunks).zip(&mut x_chunks) {
        for i in 0..LANES {
            a[i] += w * x[i] as f64;
        }
    }
    for (a, x) in acc_chunks
        .into_remainder()
        .iter_mut()
        .zip(x_chunks.remainder())
    {
        *a += w * *x as f64;
    }
}

/// `x` as the nearest `f32`, finite: values beyond the `f32` range become `±f32::MAX` (NaN,
/// which finite inputs never produce here, stays NaN for [`check_finite`] to catch).
#[inline]
pub fn saturate(x: f64) -> f32 {
    x.clamp(-(f32::MAX as f64), f32::MAX as f64) as f32
}

/// `Err` naming the first non-finite value: the last guard before a model is stored.
pub fn check_finite(params: &[f32]) -> Result<(), StrategyError> {
    match params.iter().position(|p| !p.is_finite()) {
        Some(index) => Err(StrategyError::NonFinite {
            index,
            value: params[index],
        }),
        None => Ok(()),
    }
}

/// A running sample-weighted mean: each update is folded in as it arrives and then dropped,
/// so memory is one model's worth whatever the number of clients.
///
/// The sum is kept in `f64`. Every update is finite `f32` (the upload refuses anything
/// else), but one member's weights near `f32::MAX` times up to 2^40 samples overflow an
/// `f32` sum to infinity, which failed every round (issue #19); in `f64` the sum of even a
/// million such products stays far from overflow, and the mean, a convex combination, is
/// back within the `f32` range. The price is twice the accumulator's memory traffic.
#[derive(Debug, Clone)]
pub struct WeightedMean {
    sum: Vec<f64>,
    total_samples: u64,
    /// The sum of the weights: `total_samples`, less the discounts of [`Self::add_scaled`].
    total_weight: f64,
    count: usize,
}

/// The result of [`WeightedMean::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct MeanResult {
    pub params: Vec<f32>,
    pub total_samples: u64,
    pub count: usize,
}

impl WeightedMean {
    pub fn new(len: usize) -> Self {
        WeightedMean {
            sum: vec![0.0; len],
            total_samples: 0,
            total_weight: 0.0,
            count: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.sum.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sum.is_empty()
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Folds in one update that was trained on `num_samples` examples. Updates with zero
    /// samples carry no weight and are counted but ignored.
    pub fn add(&mut self, params: &[f32], num_samples: u64) -> Result<(), StrategyError> {
        self.add_scaled(params, num_samples, 1.0)
    }

    /// Folds in one update of `num_samples` examples that counts `scale` (in (0, 1]) times
    /// as much as a fresh one: an asynchronous group's stale update.
    pub fn add_scaled(
        &mut self,
        params: &[f32],
        num_samples: u64,
        scale: f64,
    ) -> Result<(), StrategyError> {
        if params.len() != self.sum.len() {
            return Err(StrategyError::LengthMismatch {
                expected: self.sum.len(),
                got: params.len(),
            });
        }
        let total = self
            .total_samples
            .checked_add(num_samples)
            .ok_or(StrategyError::TooManySamples)?;
        let weight = num_samples as f64 * scale.clamp(0.0, 1.0);
        accumulate(&mut self.sum, params, weight);
        self.total_samples = total;
        self.total_weight += weight;
        self.count += 1;
        Ok(())
    }

    /// The weighted mean, or `None` if no update with samples was added.
    pub fn finish(self) -> Option<MeanResult> {
        if self.total_samples == 0 || self.total_weight <= 0.0 {
            return None;
        }
        let inv = 1.0 / self.total_weight;
        let params = self.sum.into_iter().map(|s| saturate(s * inv)).collect();
        Some(MeanResult {
            params,
            total_samples: self.total_samples,
            count: self.count,
        })
    }
}

/// Sample-weighted average of `fits` (FedAvg), or `None` if there is nothing to average.
pub fn fedavg(fits: &[FitRes], len: usize) -> Result<Option<MeanResult>, StrategyError> {
    let mut acc = WeightedMean::new(len);
    for fit in fits {
        acc.add(&fit.params, fit.num_samples)?;
    }
    Ok(acc.finish())
}

/// The mean a mean-type strategy works from, whichever form the fits came in.
pub(crate) fn mean_of(
    fits: Fits<'_>,
    len: usize,
    _strategy: &'static str,
) -> Result<Option<MeanResult>, StrategyError> {
    match fits {
        Fits::Mean(mean) => {
            if mean.params.len() != len {
                return Err(StrategyError::LengthMismatch {
                    expected: len,
                    got: mean.params.len(),
                });
            }
            Ok(Some(mean))
        }
        Fits::All(all) => fedavg(all, len),
    }
}

/// Coordinate-wise median (unweighted, as Flower's FedMedian); the mean of the two middle
/// values for an even count. `None` for no updates.
pub fn median(updates: &[&[f32]]) -> Result<Option<Vec<f32>>, StrategyError> {
    let Some(len) = common_len(updates)? else {
        return Ok(None);
    };
    let n = updates.len();
    let mut column = vec![0.0f32; n];
    let mut out = Vec::with_capacity(len);
    for j in 0..len {
        for (c, u) in column.iter_mut().zip(updates) {
            *c = u[j];
        }
        let mid = n / 2;
        let (lower, upper, _) = column.select_nth_unstable_by(mid, f32::total_cmp);
        let upper = *upper;
        if n % 2 == 1 {
            out.push(upper);
        } else {
            // The largest of the lower half is the other middle value.
            let lower_max = lower.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            out.push(saturate((lower_max as f64 + upper as f64) / 2.0));
        }
    }
    Ok(Some(out))
}

/// Coordinate-wise trimmed mean: drops the `floor(beta * n)` smallest and largest values of
/// each coordinate and averages the rest (scipy's `trim_mean`, used by Flower's
/// FedTrimmedAvg). `beta` must be in `[0, 0.5)`.
pub fn trimmed_mean(updates: &[&[f32]], beta: f64) -> Result<Option<Vec<f32>>, StrategyError> {
    if !(0.0..0.5).contains(&beta) {
        return Err(StrategyError::InvalidParam {
            param: "beta",
            reason: format!("must be in [0, 0.5), got {beta}"),
        });
    }
    let Some(len) = common_len(updates)? else {
        return Ok(None);
    };
    let n = updates.len();
    // Flower's `int(beta * n)`, in f64 as Python computes it (in f32, 0.35 x 20 = 6.99...).
    let cut = (beta * n as f64).floor() as usize;
    let kept = n - 2 * cut;
    let mut column = vec![0.0f32; n];
    let mut out = Vec::with_capacity(len);
    for j in 0..len {
        for (c, u) in column.iter_mut().zip(updates) {
            *c = u[j];
        }
        column.sort_unstable_by(f32::total_cmp);
        let sum: f64 = column[cut..n - cut].iter().map(|&v| v as f64).sum();
        out.push(saturate(sum / kept as f64));
    }
    Ok(Some(out))
}

/// Bulyan (El Mhamdi et al. 2018), as Flower computes it: `theta = n - 2f` updates chosen one
/// at a time by Krum, each taken out of the pool once chosen; then, coordinate by coordinate,
/// the mean of the `theta - 2f` chosen values closest to their median. Needs `n >= 4f + 3`
/// updates (the paper's assumption; fewer fail the round, saying so). `None` for no updates.
pub fn bulyan(updates: &[&[f32]], num_malicious: usize) -> Result<Option<Vec<f32>>, StrategyError> {
    let Some(len) = common_len(updates)? else {
        return Ok(None);
    };
    let n = updates.len();
    let needed = num_malicious.saturating_mul(4).saturating_add(3);
    if n < needed {
        return Err(StrategyError::TooFewUpdates {
            strategy: "bulyan",
            needed,
            got: n,
        });
    }
    let theta = n - 2 * num_malicious;
    let closest = theta - 2 * num_malicious;
    // The distances once, not once per choice: Krum over the shrinking pool.
    let dist = distance_matrix(updates);
    let mut pool: Vec<usize> = (0..n).collect();
    let mut chosen: Vec<&[f32]> = Vec::with_capacity(theta);
    for _ in 0..theta {
        let scores: Vec<f64> = pool
            .iter()
            .map(|&i| krum_score(&dist, n, i, &pool, num_malicious))
            .collect();
        // The lowest score; the earliest update on ties (numpy's argmin).
        let best = (0..pool.len())
            .min_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)))
            .unwrap_or(0);
        chosen.push(updates[pool.remove(best)]);
    }
    let Some(median) = median(&chosen)? else {
        return Ok(None);
    };
    let mut column = vec![0.0f32; theta];
    let mut out = Vec::with_capacity(len);
    for (j, &m) in median.iter().enumerate() {
        for (c, u) in column.iter_mut().zip(&chosen) {
            *c = u[j];
        }
        let m = m as f64;
        column.sort_unstable_by(|a, b| (*a as f64 - m).abs().total_cmp(&(*b as f64 - m).abs()));
        let sum: f64 = column[..closest].iter().map(|&v| v as f64).sum();
        out.push(saturate(sum / closest as f64));
    }
    Ok(Some(out))
}

/// Krum scores (Blanchard et al. 2017): for each update, the sum of squared distances to its
/// `n - f - 2` nearest other updates (at least one, as in Flower, so that small groups still
/// aggregate). Lower is more central.
pub fn krum_scores(updates: &[&[f32]], num_malicious: usize) -> Result<Vec<f64>, StrategyError> {
    common_len(updates)?;
    let n = updates.len();
    let dist = distance_matrix(updates);
    let pool: Vec<usize> = (0..n).collect();
    Ok((0..n)
        .map(|i| krum_score(&dist, n, i, &pool, num_malicious))
        .collect())
}

/// Squared distances between every two updates, row-major (`n x n`).
fn distance_matrix(updates: &[&[f32]]) -> Vec<f64> {
    let n = updates.len();
    let mut dist = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let d = squared_distance(updates[i], updates[j]);
            dist[i * n + j] = d;
            dist[j * n + i] = d;
        }
    }
    dist
}

/// Update `i`'s Krum score among the updates `pool` (indices into the `n x n` matrix `dist`).
fn krum_score(dist: &[f64], n: usize, i: usize, pool: &[usize], num_malicious: usize) -> f64 {
    let closest = pool.len().saturating_sub(num_malicious + 2).max(1);
    let mut others: Vec<f64> = pool
        .iter()
        .filter(|&&j| j != i)
        .map(|&j| dist[i * n + j])
        .collect();
    others.sort_unstable_by(f64::total_cmp);
    others.iter().take(closest).sum()
}

/// Indices of the `num_to_keep` (at least one) updates with the lowest Krum scores, best
/// first; ties keep the earlier update.
pub fn krum_select(
    updates: &[&[f32]],
    num_malicious: usize,
    num_to_keep: usize,
) -> Result<Vec<usize>, StrategyError> {
    let scores = krum_scores(updates, num_malicious)?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    order.truncate(num_to_keep.max(1));
    Ok(order)
}

fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        // In f64: the difference of two finite f32 can overflow f32 (3e38 - -3e38).
        .map(|(&x, &y)| {
            let d = x as f64 - y as f64;
            d * d
        })
        .sum()
}

fn common_len(updates: &[&[f32]]) -> Result<Option<usize>, StrategyError> {
    let Some(first) = updates.first() else {
        return Ok(None);
    };
    let len = first.len();
    if let Some(bad) = updates.iter().find(|u| u.len() != len) {
        return Err(StrategyError::LengthMismatch {
            expected: len,
            got: bad.len(),
        });
    }
    Ok(Some(len))
}

/// Sample-weighted mean of each metric over the results that reported it; non-finite values
/// and zero-sample results are ignored.
pub fn weighted_metrics(results: &[EvalRes]) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for r in results {
        if r.num_samples == 0 {
            continue;
        }
        let w = r.num_samples as f64;
        for (name, &value) in &r.metrics {
            if value.is_finite() {
                let e = sums.entry(name).or_default();
                e.0 += w * value;
                e.1 += w;
            }
        }
    }
    sums.into_iter()
        .map(|(name, (s, w))| (name.to_string(), s / w))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approx(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} != {b:?}");
        }
    }

    #[test]
    fn accumulate_handles_chunks_and_remainder() {
        let x: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let mut acc = vec![1.0; 37];
        accumulate(&mut acc, &x, 2.0);
        let expected: Vec<f64> = (0..37).map(|i| 1.0 + 2.0 * i as f64).collect();
        assert_eq!(acc, expected);
    }

    /// Regression (issue #19, 6a): 3e38 times 2^40 samples overflowed the f32 sum.
    #[test]
    fn the_mean_of_huge_finite_weights_is_finite() {
        let mut acc = WeightedMean::new(3);
        acc.add(&[f32::MAX, -f32::MAX, 3e38], 1 << 40).unwrap();
        acc.add(&[f32::MAX, 1.0, 3e38], 1 << 40).unwrap();
        acc.add(&[0.0, 1.0, -3e38], 1).unwrap();
        let mean = acc.finish().unwrap().params;
        assert!(mean.iter().all(|m| m.is_finite()), "{mean:?}");
        assert_eq!(mean[0], f32::MAX);
        assert!((mean[2] - 3e38).abs() < 1e32, "{mean:?}");
        check_finite(&mean).unwrap();
        assert_eq!(
            check_finite(&[1.0, f32::INFINITY]),
            Err(StrategyError::NonFinite {
                index: 1,
                value: f32::INFINITY
            })
        );
    }

    /// Regression (issue #19, 6a): Krum's differences were taken in f32 before squaring.
    #[test]
    fn krum_distances_of_opposite_huge_weights_are_finite() {
        let a = [3e38f32, -3e38];
        let b = [-3e38f32, 3e38];
        let c = [0.0f32, 0.0];
        let d = [1.0f32, 1.0];
        let scores = krum_scores(&[&a, &b, &c, &d], 0).unwrap();
        assert!(scores.iter().all(|s| s.is_finite()), "{scores:?}");
        assert_eq!(krum_select(&[&a, &b, &c, &d], 0, 1).unwrap(), vec![2]);
        // Median and trimmed mean of extremes stay finite too.
        let m = median(&[&a, &b]).unwrap().unwrap();
        assert_eq!(m, vec![0.0, 0.0]);
        let big = [f32::MAX, f32::MAX];
        let m = median(&[&big, &big]).unwrap().unwrap();
        assert_eq!(m, vec![f32::MAX, f32::MAX]);
    }

    #[test]
    fn fedavg_weights_by_samples() {
        // (1*[1,2] + 3*[5,-2]) / 4 = [4, -1]
        let fits = vec![
            FitRes {
                num_samples: 1,
                params: vec![1.0, 2.0],
            },
            FitRes {
                num_samples: 3,
                params: vec![5.0, -2.0],
            },
        ];
        let mean = fedavg(&fits, 2).unwrap().unwrap();
        approx(&mean.params, &[4.0, -1.0]);
        assert_eq!(mean.total_samples, 4);
        assert_eq!(mean.count, 2);
    }

    #[test]
    fn fedavg_of_nothing_is_none_and_wrong_length_is_an_error() {
        assert_eq!(fedavg(&[], 3).unwrap(), None);
        let mut acc = WeightedMean::new(3);
        assert_eq!(
            acc.add(&[1.0], 1),
            Err(StrategyError::LengthMismatch {
                expected: 3,
                got: 1
            })
        );
        acc.add(&[1.0, 1.0, 1.0], 0).unwrap();
        assert_eq!(acc.finish(), None, "zero samples carry no weight");
    }

    #[test]
    fn running_mean_equals_batch_mean_for_many_clients() {
        let updates: Vec<Vec<f32>> = (0..50)
            .map(|k| (0..33).map(|i| ((k * 7 + i) % 11) as f32 * 0.1).collect())
            .collect();
        let mut acc = WeightedMean::new(33);
        let mut expected = vec![0.0f64; 33];
        let mut total = 0.0;
        for (k, u) in updates.iter().enumerate() {
            let w = (k + 1) as u64;
            acc.add(u, w).unwrap();
            total += w as f64;
            for (e, &x) in expected.iter_mut().zip(u) {
                *e += w as f64 * x as f64;
            }
        }
        let expected: Vec<f32> = expected.iter().map(|e| (e / total) as f32).collect();
        approx(&acc.finish().unwrap().params, &expected);
    }

    #[test]
    fn median_odd_and_even() {
        let a = [1.0, 10.0];
        let b = [3.0, -4.0];
        let c = [2.0, 100.0];
        let d = [7.0, 0.0];
        assert_eq!(median(&[&a, &b, &c]).unwrap().unwrap(), vec![2.0, 10.0]);
        // even: sorted col0 = 1,2,3,7 -> 2.5; col1 = -4,0,10,100 -> 5
        assert_eq!(median(&[&a, &b, &c, &d]).unwrap().unwrap(), vec![2.5, 5.0]);
        assert_eq!(median(&[]).unwrap(), None);
    }

    #[test]
    fn trimmed_mean_drops_both_tails() {
        // n=5, beta=0.2 -> cut 1 each side: col0 sorted 1,2,3,4,100 -> mean(2,3,4)=3
        let us: Vec<[f32; 1]> = vec![[100.0], [1.0], [3.0], [2.0], [4.0]];
        let refs: Vec<&[f32]> = us.iter().map(|u| u.as_slice()).collect();
        assert_eq!(trimmed_mean(&refs, 0.2).unwrap().unwrap(), vec![3.0]);
        // beta=0.1 -> floor(0.5)=0 cut: plain mean 22
        assert_eq!(trimmed_mean(&refs, 0.1).unwrap().unwrap(), vec![22.0]);
        assert!(trimmed_mean(&refs, 0.5).is_err());
    }

    #[test]
    fn krum_picks_the_most_central_update_and_ignores_an_outlier() {
        let a = [0.0, 0.0];
        let b = [1.0, 0.0];
        let c = [0.0, 1.0];
        let e = [100.0, 100.0];
        // n=4, f=1 -> 1 closest neighbour. Squared distances: a-b 1, a-c 1, b-c 2,
        // e is ~2e4 from everyone. Scores: a 1, b 1, c 1, e 19801 (to b: 99^2+100^2=19801).
        let scores = krum_scores(&[&a, &b, &c, &e], 1).unwrap();
        assert_eq!(scores, vec![1.0, 1.0, 1.0, 19801.0]);
        assert_eq!(krum_select(&[&a, &b, &c, &e], 1, 1).unwrap(), vec![0]);
        assert_eq!(krum_select(&[&a, &b, &c, &e], 1, 3).unwrap(), vec![0, 1, 2]);
        // f=0 -> 2 closest: a: 1+1=2, b: 1+2=3, c: 1+2=3
        let scores = krum_scores(&[&a, &b, &c, &e], 0).unwrap();
        assert_eq!(&scores[..3], &[2.0, 3.0, 3.0]);
    }

    #[test]
    fn metrics_are_sample_weighted_per_key() {
        let results = vec![
            EvalRes {
                num_samples: 10,
                metrics: [("accuracy".to_string(), 0.5), ("loss".to_string(), 1.0)].into(),
            },
            EvalRes {
                num_samples: 30,
                metrics: [("accuracy".to_string(), 0.9)].into(),
            },
            EvalRes {
                num_samples: 5,
                metrics: [("accuracy".to_string(), f64::NAN)].into(),
            },
        ];
        let m = weighted_metrics(&results);
        assert!((m["accuracy"] - 0.8).abs() < 1e-12); // (5 + 27) / 40
        assert_eq!(m["loss"], 1.0);
    }
}
