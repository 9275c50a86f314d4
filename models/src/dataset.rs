//! In-memory training data: model inputs and labels, and a seeded train/test split.

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use crate::preprocess::{PreprocessError, PreprocessSpec};
use crate::tabular::Table;

/// Rows of model inputs with one label each (class index as `f32`, or the standardised value).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    /// Row-major `[n_rows, row_len]`.
    pub features: Vec<f32>,
    pub targets: Vec<f32>,
    pub n_rows: usize,
    pub row_len: usize,
}

/// The parts of a dataset disagree in size.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "dataset has {features} feature values and {targets} targets for {n_rows} rows of {row_len}"
)]
pub struct DatasetShapeError {
    pub features: usize,
    pub targets: usize,
    pub n_rows: usize,
    pub row_len: usize,
}

impl Dataset {
    pub fn new(
        features: Vec<f32>,
        targets: Vec<f32>,
        row_len: usize,
    ) -> Result<Self, DatasetShapeError> {
        let n_rows = targets.len();
        if features.len() != n_rows * row_len {
            return Err(DatasetShapeError {
                features: features.len(),
                targets: n_rows,
                n_rows,
                row_len,
            });
        }
        Ok(Self {
            features,
            targets,
            n_rows,
            row_len,
        })
    }

    /// Preprocesses a table with `spec` (the same path serving uses).
    pub fn from_table(spec: &PreprocessSpec, table: &Table) -> Result<Self, PreprocessError> {
        let (features, n_rows) = spec.transform(table)?;
        let targets = spec.transform_target(table)?;
        Ok(Self {
            features,
            targets,
            n_rows,
            row_len: spec.input_dim(),
        })
    }

    /// The rows `indices`, in that order (indices out of range are skipped).
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let rows: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| i < self.n_rows)
            .collect();
        let mut features = Vec::with_capacity(rows.len() * self.row_len);
        for &i in &rows {
            features.extend_from_slice(&self.features[i * self.row_len..(i + 1) * self.row_len]);
        }
        Dataset {
            features,
            targets: rows.iter().map(|&i| self.targets[i]).collect(),
            n_rows: rows.len(),
            row_len: self.row_len,
        }
    }

    /// A shuffled split: `(train, test)` with `round(n * test_fraction)` test rows.
    pub fn split(&self, test_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let (train, test) = train_test_split(self.n_rows, test_fraction, seed);
        (self.subset(&train), self.subset(&test))
    }
}

/// Shuffled `(train, test)` row indices, deterministic for a seed on every platform.
pub fn train_test_split(n_rows: usize, test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n_rows).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed));
    let n_test = ((n_rows as f64) * test_fraction.clamp(0.0, 1.0)).round() as usize;
    let train = idx.split_off(n_test);
    (train, idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_a_seeded_partition() {
        let (train, test) = train_test_split(100, 0.2, 3);
        assert_eq!((train.len(), test.len()), (80, 20));
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(train_test_split(100, 0.2, 3), (train, test));
        assert_ne!(
            train_test_split(100, 0.2, 4).1,
            train_test_split(100, 0.2, 3).1
        );
    }

    #[test]
    fn subset_keeps_rows_together() {
        let d = Dataset::new(vec![0., 1., 10., 11., 20., 21.], vec![0., 1., 2.], 2).unwrap();
        let s = d.subset(&[2, 0, 9]);
        assert_eq!(
            (s.features, s.targets, s.n_rows),
            (vec![20., 21., 0., 1.], vec![2., 0.], 2)
        );
        assert!(Dataset::new(vec![0.; 5], vec![0.; 3], 2).is_err());
    }
}
