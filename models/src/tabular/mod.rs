//! Tabular data as users upload it: CSV read by the one streaming reader of the project
//! ([`CsvReader`], the dialect), whole tables without cleaning ([`read_csv`]), and the kind of
//! each column inferred from its values ([`infer_schema`]).
//!
//! Records carry the line where they start in the file; rows are numbered from 1 for the first
//! data row (the header is row 0), columns by their header name; every error names them.

mod csv_read;
mod csv_reader;
pub(crate) mod infer;

pub use csv_read::{read_csv, read_table};
pub use csv_reader::{
    CsvOptions, CsvReader, CsvRecord, DEFAULT_MAX_COLUMNS, DEFAULT_MAX_RECORD_BYTES,
    DEFAULT_MISSING, Delimiter, MissingValues, is_missing, split_fields,
};
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
    #[error("line {line}: the header has an empty column name at column {column}")]
    EmptyHeader { line: usize, column: usize },
    #[error("line {line}: column `{name}` appears twice in the header")]
    DuplicateHeader { line: usize, name: String },
    #[error("the header has more than {max} columns")]
    TooManyColumns { max: usize },
    #[error("the file has more than {max} data rows")]
    TooManyRows { max: usize },
    #[error("line {line}: a record is longer than {max} bytes")]
    RecordTooLong { line: usize, max: usize },
    #[error("line {line}: a quoted field is never closed (a `\"` is missing)")]
    UnclosedQuote { line: usize },
    #[error("{}: expected {expected} fields like the header, found {found}", at(*line, *row))]
    RaggedRow {
        line: usize,
        row: usize,
        expected: usize,
        found: usize,
    },
    #[error("{}, column `{column}`: not valid UTF-8 text", at(*line, *row))]
    NotUtf8 {
        line: usize,
        row: usize,
        column: String,
    },
    /// A cell that cannot be used, where the line is known (codeless prediction).
    #[error("{}, column `{column}`: {message}", at(*line, *row))]
    BadCell {
        line: usize,
        row: usize,
        column: String,
        message: String,
    },
    /// Reading the source failed (not the data's fault).
    #[error("cannot read the file: {message}")]
    Io { message: String },
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

/// Where a record is: `line 3 (row 2)`, or `line 1 (header)`.
fn at(line: usize, row: usize) -> String {
    if row == 0 {
        format!("line {line} (header)")
    } else {
        format!("line {line} (row {row})")
    }
}

impl TabularError {
    /// The 1-based line of the file the error is about, when it names one.
    pub fn line(&self) -> Option<usize> {
        match self {
            TabularError::EmptyHeader { line, .. }
            | TabularError::DuplicateHeader { line, .. }
            | TabularError::RecordTooLong { line, .. }
            | TabularError::UnclosedQuote { line }
            | TabularError::RaggedRow { line, .. }
            | TabularError::NotUtf8 { line, .. }
            | TabularError::BadCell { line, .. } => Some(*line),
            _ => None,
        }
    }
}
