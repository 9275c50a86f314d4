//! [`ValueSketch`]: a mergeable, bounded histogram of a numeric column's values (DDSketch,
//! Masson, Rim and Lee 2019), so that drift checks can compare distributions that only ever
//! travel as summaries.
//!
//! A value `x` with `|x| >= ZERO_BELOW` falls in the bucket `i = ceil(ln|x| / ln gamma)` of its
//! sign, `gamma = (1 + ALPHA) / (1 - ALPHA)`; the bucket's representative value
//! `2 gamma^i / (gamma + 1)` is within `ALPHA` (1%) of every value in it. Counts are integers,
//! so merging is exact: the sketch of a table is the merge of the sketches of any partition.
//!
//! At most [`MAX_BUCKETS`] buckets are kept. Past that the lowest-valued buckets are folded
//! into the next one up (DDSketch's "collapsing lowest" store, over the whole value order), so
//! an adversarial stream cannot grow memory. The folded state depends only on the multiset of
//! values pushed (all mass below the `MAX_BUCKETS`-th highest bucket sits in that bucket), so
//! merging stays exact after a collapse too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Relative accuracy of a bucket's representative value.
pub const ALPHA: f64 = 0.01;

/// Most buckets (positive and negative together; the zero count is not a bucket) a sketch
/// keeps. 2048 buckets span about 17 orders of magnitude at full accuracy: every real column,
/// while a stream spread over the whole `f64` range is folded.
pub const MAX_BUCKETS: usize = 2048;

/// Values with a smaller magnitude count as zero.
pub const ZERO_BELOW: f64 = 1e-9;

/// `gamma = (1 + ALPHA) / (1 - ALPHA)`, the ratio between consecutive bucket bounds.
pub fn gamma() -> f64 {
    (1.0 + ALPHA) / (1.0 - ALPHA)
}

/// Bucket index of a magnitude `m >= ZERO_BELOW` (saturating for huge ones).
fn index_of(m: f64) -> i32 {
    (m.ln() / gamma().ln()).ceil() as i32
}

/// Lowest bucket index a value can have (that of [`ZERO_BELOW`]).
pub fn min_index() -> i32 {
    index_of(ZERO_BELOW)
}

/// Highest bucket index a finite value can have (that of `f64::MAX`).
pub fn max_index() -> i32 {
    index_of(f64::MAX)
}

/// Representative magnitude of bucket `i`: `2 gamma^i / (gamma + 1)`, computed in logs so the
/// top bucket does not overflow (clamped to `f64::MAX`).
fn representative(i: i32) -> f64 {
    let g = gamma();
    (f64::from(i) * g.ln() + (2.0 / (g + 1.0)).ln())
        .exp()
        .min(f64::MAX)
}

/// What is wrong with a sketch that came from outside ([`ValueSketch::check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SketchError {
    #[error("value sketch has {buckets} buckets, more than the {max} allowed")]
    TooManyBuckets { buckets: usize, max: usize },
    #[error("value sketch has a bucket index {index} outside {min}..={max}")]
    IndexOutOfRange { index: i32, min: i32, max: i32 },
}

/// Mergeable log-bucket histogram of `f64` values (see the module docs). Serialised as
/// `{"positive": {"<index>": count}, "negative": {...}, "zero": count}`; every field defaults
/// to empty.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ValueSketch {
    /// Counts of positive values by bucket index.
    #[serde(with = "index_keys")]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, u64>))]
    positive: BTreeMap<i32, u64>,
    /// Counts of negative values by the bucket index of their magnitude.
    #[serde(with = "index_keys")]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, u64>))]
    negative: BTreeMap<i32, u64>,
    /// Count of values with `|x| < ZERO_BELOW`.
    zero: u64,
}

/// Bucket maps with the indices as JSON object keys (strings), read back through `String`:
/// serde cannot turn string keys into integers inside an internally tagged enum such as
/// `ColumnSummary`, where a sketch lives.
mod index_keys {
    use std::collections::BTreeMap;

    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(map: &BTreeMap<i32, u64>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, v)| (k.to_string(), v)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<i32, u64>, D::Error> {
        BTreeMap::<String, u64>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| {
                k.parse::<i32>()
                    .map(|k| (k, v))
                    .map_err(|_| D::Error::custom(format!("bucket index `{k}` is not an integer")))
            })
            .collect()
    }
}

impl ValueSketch {
    pub fn new() -> ValueSketch {
        ValueSketch::default()
    }

    /// Adds one value. Non-finite values are ignored (counted nowhere: the caller counts them
    /// as missing).
    pub fn push(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if x.abs() < ZERO_BELOW {
            self.zero = self.zero.saturating_add(1);
            return;
        }
        let store = if x > 0.0 {
            &mut self.positive
        } else {
            &mut self.negative
        };
        let count = store.entry(index_of(x.abs())).or_insert(0);
        *count = count.saturating_add(1);
        self.collapse();
    }

    /// Adds `other`'s counts into `self`.
    pub fn merge(&mut self, other: &ValueSketch) {
        self.zero = self.zero.saturating_add(other.zero);
        for (mine, theirs) in [
            (&mut self.positive, &other.positive),
            (&mut self.negative, &other.negative),
        ] {
            for (&i, &c) in theirs {
                let count = mine.entry(i).or_insert(0);
                *count = count.saturating_add(c);
            }
        }
        self.collapse();
    }

    /// Number of values counted (saturating).
    pub fn count(&self) -> u64 {
        self.positive
            .values()
            .chain(self.negative.values())
            .fold(self.zero, |a, &c| a.saturating_add(c))
    }

    /// `true` when no value was counted.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Number of buckets held (positive and negative; the zero count is not a bucket).
    pub fn buckets(&self) -> usize {
        self.positive.len() + self.negative.len()
    }

    /// `(representative value, count)` of each non-empty bucket (the zero count as value 0),
    /// in increasing value order.
    pub fn points(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let negative = self
            .negative
            .iter()
            .rev()
            .map(|(&i, &c)| (-representative(i), c));
        let zero = std::iter::once((0.0, self.zero));
        let positive = self.positive.iter().map(|(&i, &c)| (representative(i), c));
        negative.chain(zero).chain(positive).filter(|&(_, c)| c > 0)
    }

    /// The `q`-quantile (`q` in `[0, 1]`) within [`ALPHA`] relative accuracy: the
    /// representative value of the bucket holding rank `q * (count - 1)`. `None` for an empty
    /// sketch or a `q` outside `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * (count - 1) as f64;
        let mut seen = 0u64;
        let mut last = None;
        for (value, c) in self.points() {
            seen = seen.saturating_add(c);
            last = Some(value);
            if seen as f64 > rank {
                return Some(value);
            }
        }
        last
    }

    /// `Err` naming the problem when a sketch from outside (deserialised) holds more than
    /// [`MAX_BUCKETS`] buckets or a bucket index no finite value has.
    pub fn check(&self) -> Result<(), SketchError> {
        if self.buckets() > MAX_BUCKETS {
            return Err(SketchError::TooManyBuckets {
                buckets: self.buckets(),
                max: MAX_BUCKETS,
            });
        }
        let (min, max) = (min_index(), max_index());
        if let Some(&index) = self
            .positive
            .keys()
            .chain(self.negative.keys())
            .find(|i| !(min..=max).contains(*i))
        {
            return Err(SketchError::IndexOutOfRange { index, min, max });
        }
        Ok(())
    }

    /// Folds the lowest-valued buckets into the next one up until at most [`MAX_BUCKETS`]
    /// remain. In value order the most negative values come first (the highest negative
    /// index), then the smallest positive ones; the zero count is left alone.
    fn collapse(&mut self) {
        let mut excess = self.buckets().saturating_sub(MAX_BUCKETS);
        if excess == 0 {
            return;
        }
        let mut folded = 0u64;
        while excess > 0 {
            let Some((_, c)) = self
                .negative
                .pop_last()
                .or_else(|| self.positive.pop_first())
            else {
                break;
            };
            folded = folded.saturating_add(c);
            excess -= 1;
        }
        // MAX_BUCKETS buckets remain: the lowest of them takes the folded counts.
        if let Some(mut lowest) = self.negative.last_entry() {
            *lowest.get_mut() = lowest.get().saturating_add(folded);
        } else if let Some(mut lowest) = self.positive.first_entry() {
            *lowest.get_mut() = lowest.get().saturating_add(folded);
        }
    }
}
