//! Byzantine-robust strategies. Each needs every update of the round at once (memory
//! O(clients x model)): the caller loads them all at round close.

use super::math;
use super::{Accumulation, FitFailure, FitRes, Fits, Strategy, StrategyError};

fn all<'a>(fits: Fits<'a>, strategy: &'static str) -> Result<&'a [FitRes], StrategyError> {
    match fits {
        Fits::All(all) => Ok(all),
        Fits::Mean(_) => Err(StrategyError::WrongAccumulation { strategy }),
    }
}

fn views(fits: &[FitRes]) -> Vec<&[f32]> {
    fits.iter().map(|f| f.params.as_slice()).collect()
}

/// Coordinate-wise median (Yin et al. 2018).
#[derive(Debug, Clone)]
pub struct FedMedian;

impl Strategy for FedMedian {
    fn name(&self) -> &'static str {
        "fedmedian"
    }

    fn accumulation(&self) -> Accumulation {
        Accumulation::AllUpdates
    }

    fn aggregate_fit(
        &mut self,
        _round: u32,
        _current: &[f32],
        fits: Fits<'_>,
        _failures: &[FitFailure],
    ) -> Result<Option<Vec<f32>>, StrategyError> {
        math::median(&views(all(fits, self.name())?))
    }
}

/// Coordinate-wise trimmed mean, cutting `beta` of the updates at each end.
#[derive(Debug, Clone)]
pub struct FedTrimmedAvg {
    pub beta: f64,
}

impl Strategy for FedTrimmedAvg {
    fn name(&self) -> &'static str {
        "fedtrimmedavg"
    }

    fn accumulation(&self) -> Accumulation {
        Accumulation::AllUpdates
    }

    fn aggregate_fit(
        &mut self,
        _round: u32,
        _current: &[f32],
        fits: Fits<'_>,
        _failures: &[FitFailure],
    ) -> Result<Option<Vec<f32>>, StrategyError> {
        math::trimmed_mean(&views(all(fits, self.name())?), self.beta)
    }
}

/// Krum (`num_to_keep` <= 1) or Multi-Krum: the sample-weighted mean of the `num_to_keep`
/// updates with the lowest Krum scores, tolerating `num_malicious` attackers.
#[derive(Debug, Clone)]
pub struct Krum {
    pub num_malicious: usize,
    pub num_to_keep: usize,
}

impl Strategy for Krum {
    fn name(&self) -> &'static str {
        "krum"
    }

    fn accumulation(&self) -> Accumulation {
        Accumulation::AllUpdates
    }

    fn aggregate_fit(
        &mut self,
        _round: u32,
        current: &[f32],
        fits: Fits<'_>,
        _failures: &[FitFailure],
    ) -> Result<Option<Vec<f32>>, StrategyError> {
        let fits = all(fits, self.name())?;
        if fits.is_empty() {
            return Ok(None);
        }
        let chosen = math::krum_select(&views(fits), self.num_malicious, self.num_to_keep)?;
        let mut acc = math::WeightedMean::new(current.len());
        for i in chosen {
            // Weight at least 1 so that a chosen update never vanishes from the mean.
            acc.add(&fits[i].params, fits[i].num_samples.max(1))?;
        }
        Ok(acc.finish().map(|m| m.params))
    }
}

/// Bulyan: Krum chooses `n - 2f` updates, then each coordinate averages the chosen values
/// closest to their median ([`math::bulyan`]).
#[derive(Debug, Clone)]
pub struct Bulyan {
    pub num_malicious: usize,
}

impl Strategy for Bulyan {
    fn name(&self) -> &'static str {
        "bulyan"
    }

    fn accumulation(&self) -> Accumulation {
        Accumulation::AllUpdates
    }

    fn aggregate_fit(
        &mut self,
        _round: u32,
        _current: &[f32],
        fits: Fits<'_>,
        _failures: &[FitFailure],
    ) -> Result<Option<Vec<f32>>, StrategyError> {
        math::bulyan(&views(all(fits, self.name())?), self.num_malicious)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(n: u64, params: &[f32]) -> FitRes {
        FitRes {
            num_samples: n,
            params: params.to_vec(),
        }
    }

    #[test]
    fn bulyan_needs_4f_plus_3_updates_and_drops_the_poisoned_one() {
        let mut b = Bulyan { num_malicious: 1 };
        let six: Vec<FitRes> = (0..6).map(|i| fit(1, &[i as f32])).collect();
        let err = b
            .aggregate_fit(1, &[0.0], Fits::All(&six), &[])
            .unwrap_err();
        assert!(err.to_string().contains("at least 7"), "{err}");
        let mut seven: Vec<FitRes> = (0..6).map(|i| fit(1, &[i as f32])).collect();
        seven.push(fit(1, &[1e9]));
        // Krum picks 5 central updates (0..5 minus one end), their median is near 2.5, the 3
        // closest values are averaged: the 1e9 update never counts.
        let r = b
            .aggregate_fit(1, &[0.0], Fits::All(&seven), &[])
            .unwrap()
            .unwrap();
        assert!(r[0] > 0.0 && r[0] < 5.0, "{r:?}");
    }

    #[test]
    fn median_ignores_one_poisoned_update() {
        let fits = vec![fit(1, &[1.0]), fit(1, &[2.0]), fit(1, &[1e9])];
        let r = FedMedian
            .aggregate_fit(1, &[0.0], Fits::All(&fits), &[])
            .unwrap();
        assert_eq!(r, Some(vec![2.0]));
    }

    #[test]
    fn multi_krum_averages_the_central_updates_by_samples() {
        let fits = vec![
            fit(1, &[0.0, 0.0]),
            fit(3, &[1.0, 0.0]),
            fit(1, &[0.0, 1.0]),
            fit(100, &[100.0, 100.0]),
        ];
        let mut k = Krum {
            num_malicious: 1,
            num_to_keep: 2,
        };
        // Keeps updates 0 and 1 (ties broken by order): (1*[0,0] + 3*[1,0]) / 4.
        let r = k
            .aggregate_fit(1, &[0.0, 0.0], Fits::All(&fits), &[])
            .unwrap();
        assert_eq!(r, Some(vec![0.75, 0.0]));
    }

    #[test]
    fn robust_strategies_refuse_a_running_mean() {
        let mean = math::WeightedMean::new(1);
        let mut acc = mean;
        acc.add(&[1.0], 1).unwrap();
        let err = FedMedian
            .aggregate_fit(1, &[0.0], Fits::Mean(acc.finish().unwrap()), &[])
            .unwrap_err();
        assert!(matches!(err, StrategyError::WrongAccumulation { .. }));
    }
}
