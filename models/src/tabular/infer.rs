//! Column kinds, identifier exclusion and target/task inference.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Table, TabularError};
use crate::task::Task;

/// How a feature column is used.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Numeric,
    Categorical,
}

/// Why a column was left out of the features.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExcludeReason {
    /// Consecutive integers (a row number).
    Sequence,
    /// Named like an identifier (`id`, `CustomerId`, `user_id`) with (almost) all values distinct.
    IdentifierName,
    /// Text with (almost) every value distinct.
    AllDistinct,
    /// Text with too many distinct values to one-hot encode (names, free text).
    HighCardinality,
    /// No value at all.
    Empty,
    /// Excluded by the user.
    User,
}

/// A column left out of the features, reported to the user.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    pub column: String,
    pub reason: ExcludeReason,
}

/// A feature column and its kind.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureColumn {
    pub name: String,
    pub kind: ColumnKind,
}

/// The target column and the task it implies.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetColumn {
    pub name: String,
    pub task: Task,
}

/// The result of inference: what to train on and what was left out.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub features: Vec<FeatureColumn>,
    pub target: TargetColumn,
    pub excluded: Vec<Excluded>,
}

/// Choices that override inference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferOptions {
    /// The target column; by default the first of `target`, `label`, `class`, `y`, `exited`,
    /// `churn`, `outcome` (case-insensitive) present in the file.
    pub target: Option<String>,
    /// The task; by default inferred from the target's values.
    pub task: Option<Task>,
    /// Columns to leave out on top of the inferred identifiers.
    pub exclude: Vec<String>,
    /// Columns to keep even if they look like identifiers.
    pub keep: Vec<String>,
}

const TARGET_NAMES: &[&str] = &[
    "target", "label", "class", "y", "exited", "churn", "outcome",
];
/// Below this many values the "all distinct" rules say nothing: small tables are all distinct.
const MIN_ROWS_FOR_DISTINCT_RULES: usize = 20;
/// "Almost all distinct".
const DISTINCT_RATIO: f64 = 0.95;
/// A numeric target with at most this many distinct integer values is a class label.
const MAX_INTEGER_CLASSES: usize = 20;

/// Infers the target, the task and the kind of every other column.
///
/// Rules (documented here because users see their effect):
/// - a column is numeric when every present value parses as a finite number, otherwise
///   categorical;
/// - identifier-like columns are excluded: consecutive integers ([`ExcludeReason::Sequence`]),
///   id-like names with ≥ 95% distinct values, text with ≥ 95% distinct values, or text with more
///   than max(50, 5% of rows) distinct values; these rules need at least 20 present values;
/// - the task: a non-numeric target or an integer one with 2 values is binary, an integer one
///   with 3 to 20 values (and not more than 5% of rows) is multiclass, any other numeric one is
///   regression.
pub fn infer_schema(table: &Table, options: &InferOptions) -> Result<Schema, TabularError> {
    let available = || table.names().join(", ");
    let target_name = match &options.target {
        Some(name) => table.column(name).map(|c| c.name.clone()).ok_or_else(|| {
            TabularError::UnknownTarget {
                name: name.clone(),
                available: available(),
            }
        })?,
        None => TARGET_NAMES
            .iter()
            .find_map(|t| {
                table
                    .columns
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(t))
            })
            .map(|c| c.name.clone())
            .ok_or_else(|| TabularError::NoTarget {
                available: available(),
            })?,
    };
    let target_col = table
        .column(&target_name)
        .ok_or_else(|| TabularError::UnknownTarget {
            name: target_name.clone(),
            available: available(),
        })?;
    let task = match options.task {
        Some(task) => task,
        None => infer_task(&target_name, &target_col.values)?,
    };
    if task == Task::Regression
        && let Some((row, value)) = first_non_number(&target_col.values)
    {
        return Err(TabularError::NotANumber {
            row,
            column: target_name,
            value,
        });
    }

    let mut features = Vec::new();
    let mut excluded = Vec::new();
    for column in &table.columns {
        if column.name == target_name {
            continue;
        }
        if options.exclude.iter().any(|e| e == &column.name) {
            excluded.push(Excluded {
                column: column.name.clone(),
                reason: ExcludeReason::User,
            });
            continue;
        }
        let profile = Profile::of(&column.values);
        let kind = if profile.numeric {
            ColumnKind::Numeric
        } else {
            ColumnKind::Categorical
        };
        let reason = if options.keep.iter().any(|k| k == &column.name) {
            None
        } else {
            identifier_reason(&column.name, &profile, table.n_rows)
        };
        match reason {
            Some(reason) => excluded.push(Excluded {
                column: column.name.clone(),
                reason,
            }),
            None => features.push(FeatureColumn {
                name: column.name.clone(),
                kind,
            }),
        }
    }
    if features.is_empty() {
        return Err(TabularError::NoFeatures);
    }
    Ok(Schema {
        features,
        target: TargetColumn {
            name: target_name,
            task,
        },
        excluded,
    })
}

/// What inference needs to know about a column's values.
struct Profile {
    present: usize,
    distinct: usize,
    numeric: bool,
    integer: bool,
    consecutive: bool,
}

impl Profile {
    fn of(values: &[Option<String>]) -> Self {
        let present: Vec<&str> = values.iter().flatten().map(String::as_str).collect();
        let distinct = present.iter().collect::<BTreeSet<_>>().len();
        let numbers: Option<Vec<f64>> = present.iter().map(|v| parse_number(v)).collect();
        let (numeric, integer, consecutive) = match &numbers {
            Some(ns) if !ns.is_empty() => {
                let integer = ns.iter().all(|n| n.fract() == 0.0);
                let consecutive = integer
                    && ns.len() > 1
                    && (ns.windows(2).all(|w| w[1] - w[0] == 1.0)
                        || ns.windows(2).all(|w| w[0] - w[1] == 1.0));
                (true, integer, consecutive)
            }
            _ => (false, false, false),
        };
        Profile {
            present: present.len(),
            distinct,
            numeric,
            integer,
            consecutive,
        }
    }
}

/// Parses a finite number; accepts a leading `+` and surrounding spaces.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn first_non_number(values: &[Option<String>]) -> Option<(usize, String)> {
    values.iter().enumerate().find_map(|(i, v)| match v {
        Some(text) if parse_number(text).is_none() => Some((i + 1, text.clone())),
        _ => None,
    })
}

fn looks_like_id_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let trimmed = lower.trim();
    [
        "id",
        "uuid",
        "guid",
        "index",
        "rownumber",
        "row_number",
        "row",
        "unnamed: 0",
    ]
    .contains(&trimmed)
        || name.ends_with("Id")
        || name.ends_with("ID")
        || ["_id", "-id", " id", "_uuid"]
            .iter()
            .any(|s| lower.ends_with(s))
}

fn identifier_reason(name: &str, p: &Profile, n_rows: usize) -> Option<ExcludeReason> {
    if p.present == 0 {
        return Some(ExcludeReason::Empty);
    }
    if p.present < MIN_ROWS_FOR_DISTINCT_RULES {
        return None;
    }
    let ratio = p.distinct as f64 / p.present as f64;
    if p.numeric {
        if p.consecutive {
            return Some(ExcludeReason::Sequence);
        }
        // Measurements such as a salary are also all distinct: only the name tells them apart.
        if p.integer && ratio >= DISTINCT_RATIO && looks_like_id_name(name) {
            return Some(ExcludeReason::IdentifierName);
        }
        return None;
    }
    if ratio >= DISTINCT_RATIO {
        return Some(if looks_like_id_name(name) {
            ExcludeReason::IdentifierName
        } else {
            ExcludeReason::AllDistinct
        });
    }
    if p.distinct > (n_rows / 20).max(50) {
        return Some(ExcludeReason::HighCardinality);
    }
    None
}

fn infer_task(name: &str, values: &[Option<String>]) -> Result<Task, TabularError> {
    let p = Profile::of(values);
    let bad = |message: &str| TabularError::BadTarget {
        column: name.to_string(),
        message: message.to_string(),
    };
    if p.present == 0 {
        return Err(bad("it has no values"));
    }
    if p.distinct < 2 {
        return Err(bad("it has a single value; there is nothing to predict"));
    }
    if !p.numeric || (p.integer && p.distinct == 2) {
        return Ok(if p.distinct == 2 {
            Task::BinaryClassification
        } else {
            Task::MulticlassClassification
        });
    }
    if p.integer && p.distinct <= MAX_INTEGER_CLASSES && p.distinct * 20 <= p.present.max(40) {
        return Ok(Task::MulticlassClassification);
    }
    Ok(Task::Regression)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tabular::read_csv;

    fn csv_rows(header: &str, rows: impl Iterator<Item = String>) -> Vec<u8> {
        let mut s = format!("{header}\n");
        for r in rows {
            s.push_str(&r);
            s.push('\n');
        }
        s.into_bytes()
    }

    #[test]
    fn excludes_identifiers_keeps_measurements() {
        let bytes = csv_rows(
            "RowNumber,CustomerId,Surname,Salary,Geo,Exited",
            (0..200).map(|i| {
                format!(
                    "{},{},N{},{}.5,{},{}",
                    i + 1,
                    15_600_000 + i * 7,
                    i % 120,
                    1000 + i * 13,
                    ["FR", "DE"][i % 2],
                    i % 2
                )
            }),
        );
        let table = read_csv(&bytes).unwrap();
        let schema = infer_schema(&table, &InferOptions::default()).unwrap();
        let reasons: Vec<_> = schema
            .excluded
            .iter()
            .map(|e| (e.column.as_str(), e.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("RowNumber", ExcludeReason::Sequence),
                ("CustomerId", ExcludeReason::IdentifierName),
                ("Surname", ExcludeReason::HighCardinality),
            ]
        );
        assert_eq!(
            schema.features,
            vec![
                FeatureColumn {
                    name: "Salary".into(),
                    kind: ColumnKind::Numeric
                },
                FeatureColumn {
                    name: "Geo".into(),
                    kind: ColumnKind::Categorical
                },
            ]
        );
        assert_eq!(
            schema.target,
            TargetColumn {
                name: "Exited".into(),
                task: Task::BinaryClassification
            }
        );
    }

    #[test]
    fn task_inference_and_override() {
        let check = |values: &[&str], expected: Task| {
            let vals: Vec<Option<String>> = values.iter().map(|v| Some(v.to_string())).collect();
            assert_eq!(infer_task("t", &vals).unwrap(), expected, "{values:?}");
        };
        check(&["yes", "no", "yes"], Task::BinaryClassification);
        check(&["0", "1", "1"], Task::BinaryClassification);
        check(&["cat", "dog", "bird"], Task::MulticlassClassification);
        let many: Vec<String> = (0..100).map(|i| (i % 4).to_string()).collect();
        check(
            &many.iter().map(String::as_str).collect::<Vec<_>>(),
            Task::MulticlassClassification,
        );
        check(&["1.5", "2.25", "3.0"], Task::Regression);
        let prices: Vec<String> = (0..100).map(|i| (i * 3).to_string()).collect();
        check(
            &prices.iter().map(String::as_str).collect::<Vec<_>>(),
            Task::Regression,
        );
        assert!(matches!(
            infer_task("t", &[Some("a".into()), Some("a".into())]),
            Err(TabularError::BadTarget { .. })
        ));

        let table = read_csv(b"x,price\n1,10\n2,20\n3,10\n").unwrap();
        let opts = InferOptions {
            target: Some("price".into()),
            task: Some(Task::Regression),
            ..Default::default()
        };
        assert_eq!(
            infer_schema(&table, &opts).unwrap().target.task,
            Task::Regression
        );
        let opts = InferOptions {
            target: Some("nope".into()),
            ..Default::default()
        };
        assert!(matches!(
            infer_schema(&table, &opts),
            Err(TabularError::UnknownTarget { .. })
        ));
        assert!(matches!(
            infer_schema(&table, &InferOptions::default()),
            Err(TabularError::NoTarget { .. })
        ));
    }

    #[test]
    fn regression_target_must_be_numeric() {
        let table = read_csv(b"x,y\n1,2\n2,oops\n").unwrap();
        let opts = InferOptions {
            task: Some(Task::Regression),
            ..Default::default()
        };
        assert_eq!(
            infer_schema(&table, &opts),
            Err(TabularError::NotANumber {
                row: 2,
                column: "y".into(),
                value: "oops".into()
            })
        );
    }
}
