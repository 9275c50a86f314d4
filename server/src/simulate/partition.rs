//! How the simulator splits the training rows between its virtual clients: IID (even, shuffled),
//! given fractions (e.g. the original B3O scenario's 10/20/30/40%), label skew drawn from a
//! symmetric Dirichlet distribution (Flower's `DirichletPartitioner`), or one client per value
//! of a column (a hospital, a country).

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// A partitioning scheme.
#[derive(Debug, Clone, PartialEq)]
pub enum Partition {
    Iid { clients: usize },
    Fractions(Vec<f64>),
    Dirichlet { clients: usize, alpha: f64 },
    ByValue,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PartitionError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "a Dirichlet({alpha}) split left a client without rows after {tries} draws; use a \
         larger alpha or fewer clients"
    )]
    EmptyClient { alpha: f64, tries: usize },
}

/// Splits `rows` (indices into the data). `keys[i]` is row `rows[i]`'s class (Dirichlet) or
/// column value (by value). Every client gets at least one row.
pub fn split(
    rows: &[usize],
    keys: &[String],
    scheme: &Partition,
    seed: u64,
) -> Result<Vec<Vec<usize>>, PartitionError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let parts = match scheme {
        Partition::Iid { clients } => {
            let k = check_clients(*clients, rows.len())?;
            let mut shuffled = rows.to_vec();
            shuffled.shuffle(&mut rng);
            cut(&shuffled, &vec![1.0; k])
        }
        Partition::Fractions(fractions) => {
            if fractions.is_empty() || fractions.iter().any(|f| !(f.is_finite() && *f > 0.0)) {
                return Err(PartitionError::Invalid(
                    "fractions must be positive numbers".into(),
                ));
            }
            check_clients(fractions.len(), rows.len())?;
            let mut shuffled = rows.to_vec();
            shuffled.shuffle(&mut rng);
            cut(&shuffled, fractions)
        }
        Partition::Dirichlet { clients, alpha } => {
            let k = check_clients(*clients, rows.len())?;
            if !(alpha.is_finite() && *alpha > 0.0) {
                return Err(PartitionError::Invalid(format!(
                    "the Dirichlet alpha must be > 0, got {alpha}"
                )));
            }
            let classes = group(rows, keys);
            const TRIES: usize = 100;
            let mut found = None;
            for _ in 0..TRIES {
                let mut parts = vec![Vec::new(); k];
                for members in classes.values() {
                    let mut members = members.clone();
                    members.shuffle(&mut rng);
                    let p = dirichlet(&mut rng, *alpha, k);
                    for (client, chunk) in cut(&members, &p).into_iter().enumerate() {
                        parts[client].extend(chunk);
                    }
                }
                if parts.iter().all(|p| !p.is_empty()) {
                    found = Some(parts);
                    break;
                }
            }
            let mut parts = found.ok_or(PartitionError::EmptyClient {
                alpha: *alpha,
                tries: TRIES,
            })?;
            for p in &mut parts {
                p.shuffle(&mut rng);
            }
            parts
        }
        Partition::ByValue => {
            let groups = group(rows, keys);
            if groups.len() > 10_000 {
                return Err(PartitionError::Invalid(format!(
                    "the column has {} distinct values: too many clients",
                    groups.len()
                )));
            }
            groups.into_values().collect()
        }
    };
    Ok(parts)
}

fn check_clients(clients: usize, rows: usize) -> Result<usize, PartitionError> {
    if clients == 0 {
        return Err(PartitionError::Invalid("at least one client".into()));
    }
    if clients > rows {
        return Err(PartitionError::Invalid(format!(
            "{clients} clients but only {rows} training rows"
        )));
    }
    Ok(clients)
}

/// Rows by key, keys in sorted order.
fn group(rows: &[usize], keys: &[String]) -> BTreeMap<String, Vec<usize>> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (row, key) in rows.iter().zip(keys) {
        groups.entry(key.clone()).or_default().push(*row);
    }
    groups
}

/// Consecutive chunks of `items` in proportion to `weights` (rounded on the running sum, so
/// that the sizes add up exactly).
fn cut(items: &[usize], weights: &[f64]) -> Vec<Vec<usize>> {
    let total: f64 = weights.iter().sum();
    let n = items.len();
    let mut parts = Vec::with_capacity(weights.len());
    let (mut acc, mut start) = (0.0, 0);
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        let end = if i + 1 == weights.len() {
            n
        } else {
            ((acc / total) * n as f64).round() as usize
        }
        .clamp(start, n);
        parts.push(items[start..end].to_vec());
        start = end;
    }
    parts
}

/// A draw from the symmetric Dirichlet(alpha) on `k` components.
fn dirichlet(rng: &mut impl Rng, alpha: f64, k: usize) -> Vec<f64> {
    let mut g: Vec<f64> = (0..k).map(|_| gamma(rng, alpha)).collect();
    let sum: f64 = g.iter().sum();
    if sum > 0.0 && sum.is_finite() {
        g.iter_mut().for_each(|x| *x /= sum);
    } else {
        // All draws underflowed (tiny alpha): everything to one client.
        g.iter_mut().for_each(|x| *x = 0.0);
        g[rng.random_range(0..k)] = 1.0;
    }
    g
}

/// Gamma(shape, 1) by Marsaglia and Tsang; shapes below 1 via `Gamma(a + 1) * U^(1/a)`.
fn gamma(rng: &mut impl Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random();
        if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> (Vec<usize>, Vec<String>) {
        let rows: Vec<usize> = (0..n).collect();
        let keys = rows.iter().map(|i| (i % 10).to_string()).collect();
        (rows, keys)
    }

    fn is_partition(parts: &[Vec<usize>], n: usize) -> bool {
        let mut all: Vec<usize> = parts.iter().flatten().copied().collect();
        all.sort_unstable();
        all == (0..n).collect::<Vec<_>>()
    }

    #[test]
    fn fractions_give_the_asked_sizes() {
        let (r, k) = rows(1000);
        let parts = split(&r, &k, &Partition::Fractions(vec![10., 20., 30., 40.]), 1).unwrap();
        let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![100, 200, 300, 400]);
        assert!(is_partition(&parts, 1000));
        let iid = split(&r, &k, &Partition::Iid { clients: 3 }, 1).unwrap();
        assert_eq!(
            iid.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![333, 334, 333]
        );
        assert!(is_partition(&iid, 1000));
    }

    #[test]
    fn dirichlet_skews_labels_more_for_small_alpha() {
        let (r, k) = rows(5000);
        // Mean over clients of the share of their most frequent class.
        let skew = |alpha: f64| {
            let parts = split(&r, &k, &Partition::Dirichlet { clients: 10, alpha }, 3).unwrap();
            assert!(is_partition(&parts, 5000));
            parts
                .iter()
                .map(|p| {
                    let mut counts = [0usize; 10];
                    p.iter().for_each(|&i| counts[i % 10] += 1);
                    *counts.iter().max().unwrap() as f64 / p.len() as f64
                })
                .sum::<f64>()
                / 10.0
        };
        let (low, high) = (skew(0.1), skew(100.0));
        assert!(
            low > 0.5 && high < 0.2,
            "alpha 0.1: {low}, alpha 100: {high}"
        );
    }

    #[test]
    fn by_value_makes_one_client_per_value_and_errors_are_named() {
        let (r, k) = rows(100);
        let parts = split(&r, &k, &Partition::ByValue, 0).unwrap();
        assert_eq!(parts.len(), 10);
        assert!(parts.iter().all(|p| p.len() == 10));
        let err = split(&r, &k, &Partition::Iid { clients: 101 }, 0).unwrap_err();
        assert!(err.to_string().contains("101 clients"));
        assert!(split(&r, &k, &Partition::Fractions(vec![1.0, -1.0]), 0).is_err());
    }

    #[test]
    fn gamma_has_the_right_mean() {
        let mut rng = StdRng::seed_from_u64(9);
        for shape in [0.3, 1.0, 4.0] {
            let mean = (0..20_000).map(|_| gamma(&mut rng, shape)).sum::<f64>() / 20_000.0;
            assert!(
                (mean - shape).abs() < 0.05 * shape.max(1.0),
                "{shape}: {mean}"
            );
        }
    }
}
