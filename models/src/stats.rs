//! Mergeable column statistics: what clients share so the server can build one preprocessing
//! spec without seeing a row.
//!
//! A [`Summary`] is a commutative monoid under [`Summary::merge`]: merging the summaries of any
//! partition of a table gives the summary of the whole (up to float rounding in sums).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::drift::ValueSketch;
use crate::tabular::{ColumnKind, Schema, Table, TabularError, infer::parse_number};

/// Count, missing count, sum, sum of squares, min and max of a numeric column, and a sketch
/// of its distribution for drift checks.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NumericSummary {
    pub count: u64,
    pub missing: u64,
    pub sum: f64,
    pub sum_sq: f64,
    /// `None` while `count` is 0.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Mergeable histogram of the present values ([`crate::drift`] compares serving inputs
    /// with it). Empty in summaries stored before it existed.
    #[serde(default)]
    pub sketch: ValueSketch,
}

impl NumericSummary {
    /// Counts one cell. A non-finite value counts as missing: it has no place in a sum or a
    /// distribution.
    pub fn push(&mut self, value: Option<f64>) {
        match value {
            Some(v) if v.is_finite() => {
                self.count += 1;
                self.sum += v;
                self.sum_sq += v * v;
                self.min = Some(self.min.map_or(v, |m| m.min(v)));
                self.max = Some(self.max.map_or(v, |m| m.max(v)));
                self.sketch.push(v);
            }
            _ => self.missing += 1,
        }
    }

    pub fn merge(&mut self, other: &NumericSummary) {
        self.count += other.count;
        self.missing += other.missing;
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
        self.min = opt_fold(self.min, other.min, f64::min);
        self.max = opt_fold(self.max, other.max, f64::max);
        self.sketch.merge(&other.sketch);
    }

    /// Mean of the present values (0 when there are none).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// Population standard deviation of the present values (0 when fewer than two).
    pub fn std(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let mean = self.mean();
        (self.sum_sq / self.count as f64 - mean * mean)
            .max(0.0)
            .sqrt()
    }
}

fn opt_fold(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The key under which [`CategoricalSummary::push_bounded`] counts the values past its bound.
pub const OTHER: &str = "(other)";

/// Category counts and missing count of a categorical column.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CategoricalSummary {
    pub missing: u64,
    pub counts: BTreeMap<String, u64>,
}

impl CategoricalSummary {
    pub fn push(&mut self, value: Option<&str>) {
        match value {
            None => self.missing += 1,
            Some(v) => *self.counts.entry(v.to_string()).or_insert(0) += 1,
        }
    }

    /// [`CategoricalSummary::push`] with at most `max_categories` distinct keys besides
    /// [`OTHER`]: a value not yet counted once that many are held is counted under
    /// [`OTHER`], so that a serving window fed a hostile stream of fresh values stays small.
    pub fn push_bounded(&mut self, value: Option<&str>, max_categories: usize) {
        let Some(v) = value else {
            self.missing += 1;
            return;
        };
        let held = self.counts.len() - usize::from(self.counts.contains_key(OTHER));
        let key = if self.counts.contains_key(v) || held < max_categories {
            v
        } else {
            OTHER
        };
        let count = self.counts.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
    }

    pub fn merge(&mut self, other: &CategoricalSummary) {
        self.missing += other.missing;
        for (k, v) in &other.counts {
            *self.counts.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// Categories seen at least `min_count` times, most frequent first (ties by name), at most
    /// `max_len` of them. Rarer values never enter a spec, so they cannot identify anyone.
    pub fn vocabulary(&self, min_count: u64, max_len: usize) -> Vec<String> {
        let mut kept: Vec<(&String, u64)> = self
            .counts
            .iter()
            .filter(|(_, c)| **c >= min_count.max(1))
            .map(|(k, c)| (k, *c))
            .collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        kept.into_iter()
            .take(max_len)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The most frequent category (ties by name), if any.
    pub fn most_frequent(&self) -> Option<&str> {
        self.counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(k, _)| k.as_str())
    }
}

/// Summary of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnSummary {
    Numeric(NumericSummary),
    Categorical(CategoricalSummary),
}

#[cfg(feature = "openapi")]
impl ColumnSummary {
    fn schema_variants() -> Vec<crate::openapi::Tagged> {
        use utoipa::PartialSchema;
        vec![
            crate::openapi::Tagged {
                value: "numeric",
                component: "NumericColumnSummary",
                inner: NumericSummary::schema(),
            },
            crate::openapi::Tagged {
                value: "categorical",
                component: "CategoricalColumnSummary",
                inner: CategoricalSummary::schema(),
            },
        ]
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ColumnSummary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::tagged_enum("kind", "Summary of one column.", &Self::schema_variants())
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ColumnSummary {
    fn schemas(out: &mut crate::openapi::Components) {
        crate::openapi::tagged_components("kind", Self::schema_variants(), out);
        <NumericSummary as utoipa::ToSchema>::schemas(out);
        <CategoricalSummary as utoipa::ToSchema>::schemas(out);
    }
}

/// Per-column summaries of a table (features and target), keyed by column name.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub n_rows: u64,
    pub columns: BTreeMap<String, ColumnSummary>,
}

/// Summaries of different shapes cannot be merged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StatsError {
    #[error("column `{column}` is numeric in one summary and categorical in the other")]
    KindMismatch { column: String },
}

impl Summary {
    /// Summarises the schema's feature columns and its target (numeric for regression,
    /// categorical for classification).
    pub fn from_table(table: &Table, schema: &Schema) -> Result<Summary, TabularError> {
        let mut columns = BTreeMap::new();
        let target_kind = if schema.target.task.is_classification() {
            ColumnKind::Categorical
        } else {
            ColumnKind::Numeric
        };
        let all = schema
            .features
            .iter()
            .map(|f| (f.name.as_str(), f.kind))
            .chain(std::iter::once((schema.target.name.as_str(), target_kind)));
        for (name, kind) in all {
            let column = table
                .column(name)
                .ok_or_else(|| TabularError::MissingColumn {
                    column: name.to_string(),
                })?;
            let summary = match kind {
                ColumnKind::Numeric => {
                    let mut s = NumericSummary::default();
                    for (i, v) in column.values.iter().enumerate() {
                        let parsed = match v {
                            None => None,
                            Some(text) => Some(parse_number(text).ok_or_else(|| {
                                TabularError::NotANumber {
                                    row: i + 1,
                                    column: name.to_string(),
                                    value: text.clone(),
                                }
                            })?),
                        };
                        s.push(parsed);
                    }
                    ColumnSummary::Numeric(s)
                }
                ColumnKind::Categorical => {
                    let mut s = CategoricalSummary::default();
                    column.values.iter().for_each(|v| s.push(v.as_deref()));
                    ColumnSummary::Categorical(s)
                }
            };
            columns.insert(name.to_string(), summary);
        }
        Ok(Summary {
            n_rows: table.n_rows as u64,
            columns,
        })
    }

    /// Adds `other` into `self`. Columns present in only one side are kept as they are.
    pub fn merge(&mut self, other: &Summary) -> Result<(), StatsError> {
        for (name, theirs) in &other.columns {
            match (self.columns.get_mut(name), theirs) {
                (None, _) => {
                    self.columns.insert(name.clone(), theirs.clone());
                }
                (Some(ColumnSummary::Numeric(a)), ColumnSummary::Numeric(b)) => a.merge(b),
                (Some(ColumnSummary::Categorical(a)), ColumnSummary::Categorical(b)) => a.merge(b),
                _ => {
                    return Err(StatsError::KindMismatch {
                        column: name.clone(),
                    });
                }
            }
        }
        self.n_rows += other.n_rows;
        Ok(())
    }

    pub fn numeric(&self, name: &str) -> Option<&NumericSummary> {
        match self.columns.get(name) {
            Some(ColumnSummary::Numeric(s)) => Some(s),
            _ => None,
        }
    }

    pub fn categorical(&self, name: &str) -> Option<&CategoricalSummary> {
        match self.columns.get(name) {
            Some(ColumnSummary::Categorical(s)) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
    }

    fn assert_close(a: &Summary, b: &Summary) {
        assert_eq!(a.n_rows, b.n_rows);
        assert_eq!(a.columns.len(), b.columns.len());
        for (name, x) in &a.columns {
            match (x, &b.columns[name]) {
                (ColumnSummary::Numeric(x), ColumnSummary::Numeric(y)) => {
                    assert_eq!(
                        (x.count, x.missing, x.min, x.max),
                        (y.count, y.missing, y.min, y.max)
                    );
                    // Integer bucket counts: merging is exact.
                    assert_eq!(x.sketch, y.sketch);
                    assert!(
                        close(x.sum, y.sum) && close(x.sum_sq, y.sum_sq),
                        "{x:?} vs {y:?}"
                    );
                }
                (x, y) => assert_eq!(x, y),
            }
        }
    }

    fn summarise(rows: &[(Option<f64>, Option<u8>)]) -> Summary {
        let mut num = NumericSummary::default();
        let mut cat = CategoricalSummary::default();
        for (n, c) in rows {
            num.push(*n);
            cat.push(c.map(|c| format!("c{c}")).as_deref());
        }
        Summary {
            n_rows: rows.len() as u64,
            columns: BTreeMap::from([
                ("n".into(), ColumnSummary::Numeric(num)),
                ("c".into(), ColumnSummary::Categorical(cat)),
            ]),
        }
    }

    proptest! {
        #[test]
        fn merging_any_partition_equals_the_whole(
            rows in prop::collection::vec((prop::option::of(-1e6f64..1e6), prop::option::of(0u8..6)), 0..60),
            cuts in prop::collection::vec(0usize..60, 0..5),
            reverse in any::<bool>(),
        ) {
            let whole = summarise(&rows);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(rows.len())).collect();
            cuts.push(0);
            cuts.push(rows.len());
            cuts.sort_unstable();
            let mut parts: Vec<Summary> = cuts.windows(2).map(|w| summarise(&rows[w[0]..w[1]])).collect();
            if reverse { parts.reverse(); }
            // Left fold and a right-nested fold (associativity), in either order (commutativity).
            let mut left = Summary::default();
            for p in &parts { left.merge(p).unwrap(); }
            let mut right = Summary::default();
            for p in parts.iter().rev() {
                let mut acc = p.clone();
                acc.merge(&right).unwrap();
                right = acc;
            }
            assert_close(&left, &whole);
            assert_close(&right, &whole);
        }
    }

    #[test]
    fn vocabulary_drops_rare_values() {
        let mut c = CategoricalSummary::default();
        for v in ["a", "a", "a", "b", "b", "c"] {
            c.push(Some(v));
        }
        c.push(None);
        assert_eq!(c.vocabulary(2, 10), vec!["a", "b"]);
        assert_eq!(c.vocabulary(1, 1), vec!["a"]);
        assert_eq!(c.most_frequent(), Some("a"));
        assert_eq!(c.missing, 1);
    }

    #[test]
    fn mean_and_std() {
        let mut s = NumericSummary::default();
        for v in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            s.push(Some(v));
        }
        s.push(None);
        assert!(close(s.mean(), 5.0) && close(s.std(), 2.0));
        assert_eq!((s.min, s.max, s.missing), (Some(2.0), Some(9.0), 1));
    }

    #[test]
    fn kind_mismatch_is_an_error() {
        let mut a = summarise(&[(Some(1.0), Some(1))]);
        let mut b = a.clone();
        b.columns.insert(
            "n".into(),
            ColumnSummary::Categorical(CategoricalSummary::default()),
        );
        assert_eq!(
            a.merge(&b),
            Err(StatsError::KindMismatch { column: "n".into() })
        );
    }
}
