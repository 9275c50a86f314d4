//! The preprocessing spec: the one code path from raw cells to model inputs, used by training,
//! evaluation and serving alike. It is built from a merged [`Summary`], stored as JSON next to
//! the model, and carries no row of data (only means, deviations and frequent categories).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stats::Summary;
use crate::tabular::{ColumnKind, Schema, Table, TabularError, infer::parse_number};
use crate::task::Task;

/// Current [`PreprocessSpec::version`].
pub const PREPROCESS_VERSION: u32 = 1;

/// How a feature column becomes model inputs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureTransform {
    /// One input: `(x - mean) / std`, a missing value becomes `impute` (the mean) first.
    Standardize {
        column: String,
        mean: f64,
        std: f64,
        impute: f64,
    },
    /// One input per vocabulary entry plus a last "other" input for values outside it; a missing
    /// value becomes `impute` (the most frequent category) first.
    OneHot {
        column: String,
        vocabulary: Vec<String>,
        impute: Option<String>,
    },
}

impl FeatureTransform {
    pub fn column(&self) -> &str {
        match self {
            FeatureTransform::Standardize { column, .. }
            | FeatureTransform::OneHot { column, .. } => column,
        }
    }

    /// Number of model inputs this column produces.
    pub fn width(&self) -> usize {
        match self {
            FeatureTransform::Standardize { .. } => 1,
            FeatureTransform::OneHot { vocabulary, .. } => vocabulary.len() + 1,
        }
    }
}

/// How the target becomes a training label.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetEncoding {
    /// Label index (as f32) into `labels`; for binary tasks `labels[1]` is the positive class.
    Classes { column: String, labels: Vec<String> },
    /// `(y - mean) / std`; predictions are mapped back with `y = out * std + mean`.
    Standardize { column: String, mean: f64, std: f64 },
}

/// Options for building a spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessOptions {
    /// A category must be seen this many times (over all clients) to get its own input.
    pub min_category_count: u64,
    /// At most this many categories per column get their own input.
    pub max_categories: usize,
}

impl Default for PreprocessOptions {
    fn default() -> Self {
        Self {
            min_category_count: 5,
            max_categories: 64,
        }
    }
}

/// Feature transforms in input order, and the target encoding.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessSpec {
    pub version: u32,
    pub features: Vec<FeatureTransform>,
    pub target: TargetEncoding,
    pub task: Task,
}

/// Why a spec could not be built or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PreprocessError {
    #[error("column `{column}` has no summary")]
    NoSummary { column: String },
    #[error("target `{column}`: {message}")]
    BadTarget { column: String, message: String },
    #[error("preprocessing spec version {found} is not supported (expected {PREPROCESS_VERSION})")]
    Version { found: u32 },
    #[error(transparent)]
    Table(#[from] TabularError),
    #[error("row {row}: {message}")]
    BadRow { row: usize, message: String },
}

pub(crate) const MIN_STD: f64 = 1e-12;

impl PreprocessSpec {
    /// Builds the spec for `schema` from a (merged) summary.
    pub fn build(
        schema: &Schema,
        summary: &Summary,
        options: &PreprocessOptions,
    ) -> Result<Self, PreprocessError> {
        let no_summary = |column: &str| PreprocessError::NoSummary {
            column: column.to_string(),
        };
        let mut features = Vec::with_capacity(schema.features.len());
        for f in &schema.features {
            features.push(match f.kind {
                ColumnKind::Numeric => {
                    let s = summary
                        .numeric(&f.name)
                        .ok_or_else(|| no_summary(&f.name))?;
                    FeatureTransform::Standardize {
                        column: f.name.clone(),
                        mean: s.mean(),
                        std: s.std(),
                        impute: s.mean(),
                    }
                }
                ColumnKind::Categorical => {
                    let s = summary
                        .categorical(&f.name)
                        .ok_or_else(|| no_summary(&f.name))?;
                    let vocabulary =
                        s.vocabulary(options.min_category_count, options.max_categories);
                    FeatureTransform::OneHot {
                        column: f.name.clone(),
                        impute: vocabulary.first().cloned(),
                        vocabulary,
                    }
                }
            });
        }
        let column = schema.target.name.clone();
        let task = schema.target.task;
        let target = if task.is_classification() {
            let s = summary
                .categorical(&column)
                .ok_or_else(|| no_summary(&column))?;
            let mut labels: Vec<String> = s.counts.keys().cloned().collect();
            // Numeric labels sort as numbers ("2" before "10").
            if labels.iter().all(|l| parse_number(l).is_some()) {
                labels.sort_by(|a, b| {
                    parse_number(a)
                        .unwrap_or(0.0)
                        .total_cmp(&parse_number(b).unwrap_or(0.0))
                });
            }
            let ok = match task {
                Task::BinaryClassification => labels.len() == 2,
                _ => labels.len() >= 2,
            };
            if !ok {
                return Err(PreprocessError::BadTarget {
                    column,
                    message: format!(
                        "{} distinct labels do not fit a {task:?} task",
                        labels.len()
                    ),
                });
            }
            TargetEncoding::Classes { column, labels }
        } else {
            let s = summary
                .numeric(&column)
                .ok_or_else(|| no_summary(&column))?;
            TargetEncoding::Standardize {
                column,
                mean: s.mean(),
                std: s.std(),
            }
        };
        Ok(Self {
            version: PREPROCESS_VERSION,
            features,
            target,
            task,
        })
    }

    /// Checks the version of a spec read from JSON.
    pub fn from_json(json: &str) -> Result<Self, PreprocessError> {
        let spec: PreprocessSpec =
            serde_json::from_str(json).map_err(|e| PreprocessError::BadRow {
                row: 0,
                message: e.to_string(),
            })?;
        if spec.version != PREPROCESS_VERSION {
            return Err(PreprocessError::Version {
                found: spec.version,
            });
        }
        Ok(spec)
    }

    /// Number of model inputs.
    pub fn input_dim(&self) -> usize {
        self.features.iter().map(FeatureTransform::width).sum()
    }

    /// Output labels (empty for regression).
    pub fn labels(&self) -> &[String] {
        match &self.target {
            TargetEncoding::Classes { labels, .. } => labels,
            TargetEncoding::Standardize { .. } => &[],
        }
    }

    /// Model inputs for every row of `table`, row-major `[n_rows, input_dim]`.
    pub fn transform(&self, table: &Table) -> Result<(Vec<f32>, usize), PreprocessError> {
        let width = self.input_dim();
        let mut out = vec![0.0f32; table.n_rows * width];
        let mut offset = 0;
        for f in &self.features {
            let column = table
                .column(f.column())
                .ok_or_else(|| TabularError::MissingColumn {
                    column: f.column().to_string(),
                })?;
            if column.values.len() != table.n_rows {
                return Err(PreprocessError::BadRow {
                    row: column.values.len().min(table.n_rows) + 1,
                    message: format!(
                        "column `{}` is shorter or longer than the table",
                        f.column()
                    ),
                });
            }
            for (row, cell) in column.values.iter().enumerate() {
                let dst = &mut out[row * width + offset..row * width + offset + f.width()];
                encode_cell(f, cell.as_deref(), dst)
                    .map_err(|m| cell_error(row + 1, f.column(), cell, m))?;
            }
            offset += f.width();
        }
        Ok((out, table.n_rows))
    }

    /// Model inputs for JSON objects (`{"Age": 42, "Geography": "France", ...}`): numbers or
    /// numeric strings for numeric columns, strings (or numbers) for categorical ones, `null` or
    /// an absent key for a missing value. Unknown keys are ignored. Rows are numbered from 1.
    pub fn transform_json(
        &self,
        rows: &[serde_json::Map<String, Value>],
    ) -> Result<(Vec<f32>, usize), PreprocessError> {
        let width = self.input_dim();
        let mut out = vec![0.0f32; rows.len() * width];
        for (r, row) in rows.iter().enumerate() {
            let mut offset = 0;
            for f in &self.features {
                let text = match row.get(f.column()) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    Some(Value::Bool(b)) => Some(b.to_string()),
                    Some(other) => {
                        return Err(PreprocessError::BadRow {
                            row: r + 1,
                            message: format!(
                                "column `{}`: expected a number or a string, got {other}",
                                f.column()
                            ),
                        });
                    }
                };
                let text = text.filter(|t| !crate::tabular::is_missing(t));
                let dst = &mut out[r * width + offset..r * width + offset + f.width()];
                encode_cell(f, text.as_deref(), dst)
                    .map_err(|m| cell_error(r + 1, f.column(), &text, m))?;
                offset += f.width();
            }
        }
        Ok((out, rows.len()))
    }

    /// Training labels for every row of `table`: class index or standardised value. Fails on a
    /// missing or unknown label, naming the row.
    pub fn transform_target(&self, table: &Table) -> Result<Vec<f32>, PreprocessError> {
        let name = match &self.target {
            TargetEncoding::Classes { column, .. } | TargetEncoding::Standardize { column, .. } => {
                column
            }
        };
        let column = table
            .column(name)
            .ok_or_else(|| TabularError::MissingColumn {
                column: name.clone(),
            })?;
        column
            .values
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let bad = |message: String| TabularError::BadValue {
                    row: i + 1,
                    column: name.clone(),
                    message,
                };
                let text = cell
                    .as_deref()
                    .ok_or_else(|| bad("the target is missing".into()))?;
                Ok(match &self.target {
                    TargetEncoding::Classes { labels, .. } => {
                        labels.iter().position(|l| l == text).ok_or_else(|| {
                            bad(format!("`{text}` is not one of the labels {labels:?}"))
                        })? as f32
                    }
                    TargetEncoding::Standardize { mean, std, .. } => {
                        let v = parse_number(text)
                            .ok_or_else(|| bad(format!("`{text}` is not a number")))?;
                        ((v - mean) / std.max(MIN_STD)) as f32
                    }
                })
            })
            .collect::<Result<_, TabularError>>()
            .map_err(PreprocessError::from)
    }

    /// Maps a regression model output back to the target's unit (identity for classification).
    pub fn decode_value(&self, out: f32) -> f64 {
        match &self.target {
            TargetEncoding::Standardize { mean, std, .. } => out as f64 * std.max(MIN_STD) + mean,
            TargetEncoding::Classes { .. } => out as f64,
        }
    }
}

fn cell_error(row: usize, column: &str, cell: &Option<String>, message: String) -> PreprocessError {
    let _ = cell;
    TabularError::BadValue {
        row,
        column: column.to_string(),
        message,
    }
    .into()
}

fn encode_cell(f: &FeatureTransform, cell: Option<&str>, dst: &mut [f32]) -> Result<(), String> {
    match f {
        FeatureTransform::Standardize {
            mean, std, impute, ..
        } => {
            let v = match cell {
                None => *impute,
                Some(text) => {
                    parse_number(text).ok_or_else(|| format!("`{text}` is not a number"))?
                }
            };
            dst[0] = ((v - mean) / std.max(MIN_STD)) as f32;
        }
        FeatureTransform::OneHot {
            vocabulary, impute, ..
        } => {
            let value = cell.or(impute.as_deref());
            let index = value
                .and_then(|v| vocabulary.iter().position(|c| c == v))
                .unwrap_or(vocabulary.len());
            dst.iter_mut().for_each(|d| *d = 0.0);
            dst[index] = 1.0;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tabular::{InferOptions, infer_schema, read_csv};

    fn spec_for(csv: &[u8], min_count: u64) -> (Table, PreprocessSpec) {
        let table = read_csv(csv).unwrap();
        let schema = infer_schema(
            &table,
            &InferOptions {
                target: Some("y".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let summary = Summary::from_table(&table, &schema).unwrap();
        let opts = PreprocessOptions {
            min_category_count: min_count,
            ..Default::default()
        };
        (
            table,
            PreprocessSpec::build(&schema, &summary, &opts).unwrap(),
        )
    }

    const CSV: &[u8] = b"age,city,y\n20,Paris,no\n40,Paris,yes\n,Lyon,no\n30,Nice,yes\n";

    #[test]
    fn standardises_imputes_and_one_hot_encodes() {
        let (table, spec) = spec_for(CSV, 1);
        // age: mean 30, std sqrt(200/3); city: Paris(2), Lyon, Nice + other.
        assert_eq!(spec.input_dim(), 1 + 4);
        let (x, n) = spec.transform(&table).unwrap();
        assert_eq!(n, 4);
        let std = (200.0f64 / 3.0).sqrt();
        let row = |r: usize| &x[r * 5..r * 5 + 5];
        assert!((row(0)[0] as f64 - (-10.0 / std)).abs() < 1e-6);
        assert_eq!(row(2)[0], 0.0, "missing age is imputed with the mean");
        assert_eq!(&row(0)[1..], &[1.0, 0.0, 0.0, 0.0]);
        assert_eq!(&row(2)[1..], &[0.0, 1.0, 0.0, 0.0]);
        assert_eq!(spec.labels(), &["no".to_string(), "yes".to_string()]);
        assert_eq!(
            spec.transform_target(&table).unwrap(),
            vec![0.0, 1.0, 0.0, 1.0]
        );
    }

    #[test]
    fn rare_categories_go_to_other_and_never_appear() {
        let (table, spec) = spec_for(CSV, 2);
        let json = serde_json::to_string(&spec).unwrap();
        assert!(!json.contains("Lyon") && !json.contains("Nice"), "{json}");
        let (x, _) = spec.transform(&table).unwrap();
        assert_eq!(&x[2 * 3 + 1..2 * 3 + 3], &[0.0, 1.0], "Lyon is other");
        assert_eq!(PreprocessSpec::from_json(&json).unwrap(), spec);
    }

    #[test]
    fn json_rows_match_table_rows() {
        let (table, spec) = spec_for(CSV, 1);
        let rows: Vec<serde_json::Map<String, Value>> = serde_json::from_str(
            r#"[{"age":20,"city":"Paris"},{"age":"40","city":"Paris"},{"age":null,"city":"Lyon"},{"age":30,"city":"Nice","extra":1}]"#,
        )
        .unwrap();
        assert_eq!(
            spec.transform_json(&rows).unwrap(),
            spec.transform(&table).unwrap()
        );
        let bad: Vec<serde_json::Map<String, Value>> =
            serde_json::from_str(r#"[{"age":"old","city":"Paris"}]"#).unwrap();
        let err = spec.transform_json(&bad).unwrap_err().to_string();
        assert!(
            err.contains("row 1") && err.contains("`age`") && err.contains("old"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_row_and_column() {
        let (_, spec) = spec_for(CSV, 1);
        let other = read_csv(b"age,city,y\n20,Paris,no\nabc,Paris,maybe\n").unwrap();
        let err = spec.transform(&other).unwrap_err().to_string();
        assert!(err.contains("row 2") && err.contains("`age`"), "{err}");
        let err = spec.transform_target(&other).unwrap_err().to_string();
        assert!(
            err.contains("row 2") && err.contains("`y`") && err.contains("maybe"),
            "{err}"
        );
        let missing = read_csv(b"age,y\n1,no\n").unwrap();
        assert!(
            spec.transform(&missing)
                .unwrap_err()
                .to_string()
                .contains("`city`")
        );
        let mut v = serde_json::to_value(&spec).unwrap();
        v["version"] = 99.into();
        assert_eq!(
            PreprocessSpec::from_json(&v.to_string()),
            Err(PreprocessError::Version { found: 99 })
        );
    }
}
