//! Tabular data as users upload it: CSV bytes read without cleaning ([`read_csv`]), and the kind
//! of each column inferred from its values ([`infer_schema`]).
//!
//! Rows are numbered from 1 for the first data row (the header is row 0), columns by their header
//! name; every error names both.

mod csv_read;
pub(crate) mod infer;

pub use csv_read::{Delimiter, is_missing, read_csv};
pub use infer::{
    ColumnKind, ExcludeReason, Excluded, FeatureColumn, InferOptions, Schema, TargetColumn,
    infer_schema,
};

/// A table of text cells, column-major; `None` is a missing value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub columns: Vec<Column>,
    pub n_rows: usize,
}

/// One named column of a [`Table`].
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: Vec<Option<String>>,
}

impl Table {
    /// The column with this header name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Column names in file order.
    pub fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// The rows `indices` (0-based) of this table, in that order.
    pub fn select_rows(&self, indices: &[usize]) -> Table {
        Table {
            columns: self
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    values: indices
                        .iter()
                        .filter_map(|&i| c.values.get(i).cloned())
                        .collect(),
                })
                .collect(),
            n_rows: indices.iter().filter(|&&i| i < self.n_rows).count(),
        }
    }
}

/// Why a table could not be read or understood.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TabularError {
    #[error("the file is empty")]
    Empty,
    #[error("the header has an empty column name at column {column}")]
    EmptyHeader { column: usize },
    #[error("column `{name}` appears twice in the header")]
    DuplicateHeader { name: String },
    #[error("row {row}: expected {expected} fields like the header, found {found}")]
    RaggedRow {
        row: usize,
        expected: usize,
        found: usize,
    },
    #[error("row {row}, column `{column}`: not valid UTF-8 text")]
    NotUtf8 { row: usize, column: String },
    #[error("row {row}: cannot read CSV: {message}")]
    Csv { row: usize, message: String },
    #[error("no data rows after the header")]
    NoRows,
    #[error("target column `{name}` is not in the file (columns: {available})")]
    UnknownTarget { name: String, available: String },
    #[error("no target column found; name one (columns: {available})")]
    NoTarget { available: String },
    #[error("target column `{column}`: {message}")]
    BadTarget { column: String, message: String },
    #[error("row {row}, column `{column}`: `{value}` is not a number")]
    NotANumber {
        row: usize,
        column: String,
        value: String,
    },
    #[error("column `{column}` is missing")]
    MissingColumn { column: String },
    #[error("row {row}, column `{column}`: {message}")]
    BadValue {
        row: usize,
        column: String,
        message: String,
    },
    #[error("no feature columns are left after excluding identifiers and the target")]
    NoFeatures,
}
