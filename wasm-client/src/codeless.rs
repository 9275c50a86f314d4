//! Codeless prediction: data as a person has it in, predictions out, with the model's own
//! preprocessing spec applied exactly as in training. One implementation for the server's
//! codeless routes and batch jobs and for the browser engine, so both produce byte-identical
//! CSV.
//!
//! - CSV: [`CsvChunks`] reads a CSV (any size, from any [`Read`]) in chunks of rows, checks its
//!   header against the model's columns once, and turns each chunk into model inputs;
//!   [`CsvOutput`] writes every row back as it was sent (same delimiter, cells, identifier and
//!   extra columns) with prediction columns appended ([`prediction_header`]). [`predict_csv`]
//!   does both in one call. The output does not depend on the chunk size.
//! - JSON rows: [`rows_inputs`] (every feature column present, `null` for a missing value,
//!   unknown keys refused) and [`predict_rows`].
//! - Images: [`image_inputs`] (PNG or JPEG, size bounds) and [`predict_image`].
//! - [`describe`] turns model outputs into [`Predicted`] rows: label and probability, or a
//!   value, with the out-of-distribution warnings of the row (`b3o_models::ood`: never a
//!   refusal).
//!
//! # Prediction columns of a CSV
//!
//! Appended after the columns as sent ([`prediction_header`]):
//!
//! | model | columns |
//! | --- | --- |
//! | classification | `prediction_label` (the most likely label), `prediction_probability` (its probability), then one `probability_<label>` per label in the model's label order ([`probability_columns`]), then `warning` |
//! | regression | `prediction_value`, then `warning` |
//!
//! `probability_<label>` names are safe CSV headers: the label's letters, digits, `_`, `-`
//! and `.` kept (at most [`MAX_LABEL_CHARS`]), anything else (separators, quotes, spaces,
//! `=`) as `_`; an empty label becomes `class<i>` (its index); a name met before gets `_2`,
//! `_3`, ... Probabilities have 6 decimals. `warning` is empty for an input like the training
//! data, else the row's out-of-distribution warnings joined by `; ` (a numeric cell beyond
//! `b3o_models::ood::Z_BOUND` standard deviations, or a category the model was not trained
//! on, naming the column). Every appended cell goes through [`neutralise_formula`].
//!
//! CSV is read by the project's one reader (`b3o_models::tabular::CsvReader`): errors name the
//! line where a record starts and its data row (numbered from 1, blank lines not counted), and
//! the column by header name.
//!
//! This module uses only the models crate's spec, preprocessing, tabular and image parts and
//! a predictor ([`OnnxPredictor`]): no training code.

use std::io::{Cursor, Read, Write};

use b3o_models::Task;
use b3o_models::image::{ImageError, SIDE};
use b3o_models::model::ModelSpec;
use b3o_models::ood;
use b3o_models::preprocess::{PreprocessError, PreprocessSpec, TargetEncoding};
use b3o_models::tabular::{Column, CsvOptions, CsvReader, CsvRecord, Table, TabularError};
use csv::ByteRecord;
use serde_json::{Map, Value, json};

use crate::inference::{InferenceError, OnnxPredictor};

/// Rows per chunk when a caller has no better idea: large enough that the model runs full
/// batches, small enough to bound memory on any file.
pub const DEFAULT_CHUNK_ROWS: usize = 4096;
/// Images smaller than this cannot hold a recognisable digit.
pub const MIN_IMAGE_SIDE: u32 = 8;
/// Larger images are refused before decoding, to bound memory.
pub const MAX_IMAGE_SIDE: u32 = 4096;
/// Prediction columns appended to a classification model's CSV, before the
/// [`probability_columns`] and [`WARNING_COLUMN`].
pub const CLASS_COLUMNS: [&str; 2] = ["prediction_label", "prediction_probability"];
/// Prediction column appended to a regression model's CSV, before [`WARNING_COLUMN`].
pub const VALUE_COLUMNS: [&str; 1] = ["prediction_value"];
/// The last appended column: the row's out-of-distribution warnings (empty when none).
pub const WARNING_COLUMN: &str = "warning";
/// Prefix of the per-label probability columns ([`probability_columns`]).
pub const PROBABILITY_PREFIX: &str = "probability_";
/// Most characters of a label kept in its probability column's name.
pub const MAX_LABEL_CHARS: usize = 64;
/// Most columns a CSV header may have by default ([`InputLimits::max_columns`]).
pub const DEFAULT_MAX_COLUMNS: usize = 10_000;

/// Bounds on codeless input, each checked before the work or memory it bounds: columns on the
/// raw header line before it is parsed, rows as they are read, an image's decoded size from
/// its header before it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Most columns in a CSV header.
    pub max_columns: usize,
    /// Most data rows in a CSV (`None`: any number, for batch jobs that stream).
    pub max_rows: Option<usize>,
    /// Largest decoded image in bytes (width x height x bytes per pixel).
    pub max_image_bytes: u64,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_columns: DEFAULT_MAX_COLUMNS,
            max_rows: None,
            max_image_bytes: b3o_models::image::MAX_DECODED_BYTES,
        }
    }
}

/// Why codeless input could not be turned into predictions. Everything but
/// [`CodelessError::Inference`] (other than a size mismatch) and [`CodelessError::Io`] is the
/// caller's input: a 4xx on the server, a message to the person in the browser.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CodelessError {
    /// A tabular route called on an image model.
    #[error("the model takes images: send a PNG or JPEG")]
    TakesImages,
    /// An image route called on a tabular model.
    #[error("the model takes tabular data: send a CSV or JSON rows")]
    TakesTables,
    /// The CSV could not be read (empty, ragged, bad encoding, ...).
    #[error(transparent)]
    Table(#[from] TabularError),
    #[error(
        "the CSV lacks the model's column(s) {}; it needs {}",
        ticks(missing),
        ticks(needed)
    )]
    MissingColumns {
        missing: Vec<String>,
        needed: Vec<String>,
    },
    /// A cell could not be encoded (names row and column).
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error("`rows` is empty")]
    NoRows,
    #[error("row {row}: column `{column}` is missing (send null for a missing value)")]
    RowMissingColumn { row: usize, column: String },
    #[error(
        "row {row}: unknown column `{column}`; the model's columns are {}",
        ticks(known)
    )]
    UnknownColumn {
        row: usize,
        column: String,
        known: Vec<String>,
    },
    #[error("this file is not a PNG or JPEG image")]
    NotAnImage,
    #[error(
        "the image is {width}x{height} pixels; send one between {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} and {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}"
    )]
    ImageSize { width: u32, height: u32 },
    #[error(
        "the image is {width}x{height} pixels and would take {bytes} bytes decoded; the limit is {max} bytes"
    )]
    ImageTooLarge {
        width: u32,
        height: u32,
        bytes: u64,
        max: u64,
    },
    #[error("the CSV header has more than {max} columns")]
    TooManyColumns { max: usize },
    #[error(
        "the CSV has more than {max} data rows; send larger files as a batch job (POST /api/jobs)"
    )]
    TooManyRows { max: usize },
    #[error("cannot read the image: {0}")]
    Image(String),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// Reading the input or writing the output failed (not the data's fault).
    #[error("i/o error: {0}")]
    Io(String),
}

impl CodelessError {
    /// True when the input is at fault (a 4xx), false for failures of the machine (a 5xx).
    pub fn is_client_error(&self) -> bool {
        match self {
            CodelessError::Inference(e) => matches!(e, InferenceError::InputSize { .. }),
            CodelessError::Io(_) => false,
            _ => true,
        }
    }
}

impl From<ImageError> for CodelessError {
    fn from(e: ImageError) -> Self {
        CodelessError::Image(e.to_string())
    }
}

fn ticks(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn io(e: impl std::fmt::Display) -> CodelessError {
    CodelessError::Io(e.to_string())
}

/// The preprocessing of a tabular model, or [`CodelessError::TakesImages`].
pub fn preprocessing(spec: &ModelSpec) -> Result<&PreprocessSpec, CodelessError> {
    spec.preprocessing
        .as_ref()
        .ok_or(CodelessError::TakesImages)
}

/// The raw columns a tabular model needs, in input order.
pub fn feature_columns(prep: &PreprocessSpec) -> Vec<String> {
    prep.features
        .iter()
        .map(|f| f.column().to_string())
        .collect()
}

/// One row's prediction in the user's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum RowPrediction {
    /// Classification: the most likely label, its probability, and every label's probability
    /// in the spec's label order.
    Class {
        label: String,
        probability: f32,
        probabilities: Vec<f32>,
    },
    /// Regression: the value in the target's unit.
    Value(f32),
}

impl RowPrediction {
    /// `{"label", "probability", "probabilities": {label: p}}` or `{"value"}`.
    pub fn to_json(&self, spec: &ModelSpec) -> Value {
        match self {
            RowPrediction::Value(v) => json!({ "value": v }),
            RowPrediction::Class {
                label,
                probability,
                probabilities,
            } => {
                let by_label: Map<String, Value> = spec
                    .labels
                    .iter()
                    .zip(probabilities)
                    .map(|(l, p)| (l.clone(), json!(p)))
                    .collect();
                json!({ "label": label, "probability": probability, "probabilities": by_label })
            }
        }
    }

    /// The prediction cells of this row's CSV line, in [`prediction_header`] order, without
    /// the warning: label, its probability, every label's probability; or the value.
    pub fn csv_cells(&self) -> Vec<String> {
        match self {
            RowPrediction::Value(v) => vec![v.to_string()],
            RowPrediction::Class {
                label,
                probability,
                probabilities,
            } => [label.clone(), format!("{probability:.6}")]
                .into_iter()
                .chain(probabilities.iter().map(|p| format!("{p:.6}")))
                .collect(),
        }
    }

    /// The most likely class's probability; `None` for a value.
    pub fn max_probability(&self) -> Option<f32> {
        match self {
            RowPrediction::Class { probability, .. } => Some(*probability),
            RowPrediction::Value(_) => None,
        }
    }
}

/// One row's prediction with its out-of-distribution warnings (empty for an input like the
/// training data; never a refusal).
#[derive(Debug, Clone, PartialEq)]
pub struct Predicted {
    pub prediction: RowPrediction,
    pub warnings: Vec<String>,
}

impl Predicted {
    /// [`RowPrediction::to_json`] with `"warnings": [..]`.
    pub fn to_json(&self, spec: &ModelSpec) -> Value {
        let mut v = self.prediction.to_json(spec);
        v["warnings"] = json!(self.warnings);
        v
    }

    /// The cells appended to this row's CSV line, in [`prediction_header`] order.
    pub fn csv_cells(&self) -> Vec<String> {
        let mut cells = self.prediction.csv_cells();
        cells.push(self.warnings.join("; "));
        cells
    }
}

/// The out-of-distribution warnings of one input row (`spec.input_dim()` model inputs) and
/// its prediction (see `b3o_models::ood`): tabular checks from the preprocessing, image checks
/// from the spec's calibration (none without one).
pub fn warnings(spec: &ModelSpec, inputs: &[f32], prediction: &RowPrediction) -> Vec<String> {
    match (&spec.preprocessing, &spec.ood) {
        (Some(prep), _) => ood::tabular_warnings(prep, inputs),
        (None, Some(cal)) => ood::image_warnings(cal, inputs, prediction.max_probability()),
        (None, None) => Vec::new(),
    }
}

/// Model inputs (row-major, [`ModelSpec::input_dim`] per row) and their outputs to predictions
/// with warnings, one per row (see [`predictions`] and [`warnings`]).
pub fn describe(spec: &ModelSpec, inputs: &[f32], outputs: &[f32]) -> Vec<Predicted> {
    let dim = spec.input_dim();
    predictions(spec, outputs)
        .into_iter()
        .enumerate()
        .map(|(i, prediction)| {
            let row = i
                .checked_mul(dim)
                .and_then(|start| inputs.get(start..start.checked_add(dim)?))
                .unwrap_or_default();
            Predicted {
                warnings: warnings(spec, row, &prediction),
                prediction,
            }
        })
        .collect()
}

/// Model outputs (row-major, [`ModelSpec::output_dim`] per row: the positive class's
/// probability, class probabilities, or a value) to predictions, one per row.
pub fn predictions(spec: &ModelSpec, outputs: &[f32]) -> Vec<RowPrediction> {
    let width = spec.output_dim().max(1);
    outputs
        .chunks(width)
        .map(|row| {
            let probabilities = match spec.task {
                Task::Regression => return RowPrediction::Value(row[0]),
                // The single output is the positive (second) label's probability.
                Task::BinaryClassification => vec![1.0 - row[0], row[0]],
                Task::MulticlassClassification => row.to_vec(),
            };
            let (best, &probability) = probabilities
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap_or((0, &0.0));
            let label = spec
                .labels
                .get(best)
                .cloned()
                .unwrap_or_else(|| best.to_string());
            RowPrediction::Class {
                label,
                probability,
                probabilities,
            }
        })
        .collect()
}

/// The columns appended to a CSV for this model (see the module docs).
pub fn prediction_header(spec: &ModelSpec) -> Vec<String> {
    let mut columns: Vec<String> = match spec.task {
        Task::Regression => VALUE_COLUMNS.iter().map(|c| c.to_string()).collect(),
        _ => CLASS_COLUMNS
            .iter()
            .map(|c| c.to_string())
            .chain(probability_columns(&class_labels(spec)))
            .collect(),
    };
    columns.push(WARNING_COLUMN.to_string());
    columns
}

/// The label of each class output, in output order: the spec's labels, an index where one
/// is missing.
fn class_labels(spec: &ModelSpec) -> Vec<String> {
    let n = match spec.task {
        Task::Regression => 0,
        Task::BinaryClassification => 2,
        Task::MulticlassClassification => spec.output_dim(),
    };
    (0..n)
        .map(|i| spec.labels.get(i).cloned().unwrap_or_else(|| i.to_string()))
        .collect()
}

/// The probability column of each label, in order: `probability_<label>` with the label made
/// a safe, unique CSV header (see the module docs): `yes` -> `probability_yes`, `a,b` ->
/// `probability_a_b`, `=cmd` -> `probability__cmd`, `` -> `probability_class<i>`, a second
/// `yes` -> `probability_yes_2`.
pub fn probability_columns(labels: &[String]) -> Vec<String> {
    let mut taken = std::collections::HashSet::new();
    labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let safe: String = label
                .trim()
                .chars()
                .take(MAX_LABEL_CHARS)
                .map(|c| {
                    if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let base = if safe.is_empty() {
                format!("{PROBABILITY_PREFIX}class{i}")
            } else {
                format!("{PROBABILITY_PREFIX}{safe}")
            };
            let mut name = base.clone();
            let mut k = 2;
            while !taken.insert(name.clone()) {
                name = format!("{base}_{k}");
                k += 1;
            }
            name
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------------

/// A chunk of CSV rows: the rows as sent and their model inputs.
#[derive(Debug, Clone)]
pub struct CsvChunk {
    /// Number (from 1) of the chunk's first data row in the file.
    pub first_row: usize,
    /// The rows as sent (untrimmed cells), each with its line in the file.
    pub records: Vec<CsvRecord>,
    /// Model inputs, row-major `[n_rows, input_dim]`.
    pub inputs: Vec<f32>,
}

impl CsvChunk {
    pub fn n_rows(&self) -> usize {
        self.records.len()
    }
}

/// A CSV read chunk by chunk against a tabular model's preprocessing, through the project's
/// one CSV reader (`b3o_models::tabular::CsvReader`: separator detected from the header, BOM
/// skipped, any line ending, quotes, trimmed cells, missing-value spellings, blank lines
/// skipped). Errors name the line and data row of the first bad row of the file, whatever the
/// chunk size.
pub struct CsvChunks<R: Read> {
    reader: CsvReader<R>,
    prep: PreprocessSpec,
    /// Index in the file's columns of each feature, in the spec's order.
    feature_index: Vec<usize>,
    done: bool,
    /// The error that ended the reading, returned again if asked for more.
    failed: Option<CodelessError>,
}

impl<R: Read> std::fmt::Debug for CsvChunks<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvChunks")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

/// The reader's options for `limits`.
fn csv_options(limits: &InputLimits) -> CsvOptions {
    CsvOptions {
        max_columns: limits.max_columns,
        max_rows: limits.max_rows,
        ..CsvOptions::default()
    }
}

/// A reader error in codeless terms: the limits keep their own messages, a failed read is the
/// machine's fault.
fn table_error(e: TabularError) -> CodelessError {
    match e {
        TabularError::TooManyColumns { max } => CodelessError::TooManyColumns { max },
        TabularError::TooManyRows { max } => CodelessError::TooManyRows { max },
        TabularError::Io { message } => CodelessError::Io(message),
        e => CodelessError::Table(e),
    }
}

/// A cell error of a one-row table, placed at `record`'s line and row.
fn located(e: PreprocessError, record: &CsvRecord) -> CodelessError {
    match e {
        PreprocessError::Table(TabularError::BadValue {
            column, message, ..
        }) => CodelessError::Table(TabularError::BadCell {
            line: record.line(),
            row: record.row(),
            column,
            message,
        }),
        PreprocessError::BadRow { message, .. } => {
            CodelessError::Preprocess(PreprocessError::BadRow {
                row: record.row(),
                message,
            })
        }
        other => CodelessError::Preprocess(other),
    }
}

/// A cell a spreadsheet would run as a formula (OWASP "CSV injection": it starts with `=`,
/// `+`, `-`, `@`, a tab or a carriage return), prefixed with `'` so it stays text. Numbers
/// such as `-3.5` or `+1` are left alone: they are data, and a spreadsheet reads them as
/// numbers, not formulas.
pub fn neutralise_formula(cell: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let risky = matches!(
        cell.first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    );
    let number = std::str::from_utf8(cell)
        .ok()
        .is_some_and(|t| t.trim().parse::<f64>().is_ok_and(f64::is_finite));
    if risky && !number {
        let mut safe = Vec::with_capacity(cell.len() + 1);
        safe.push(b'\'');
        safe.extend_from_slice(cell);
        std::borrow::Cow::Owned(safe)
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// `record`'s cells as sent, each passed through [`neutralise_formula`].
fn neutralised(record: &CsvRecord) -> ByteRecord {
    record
        .iter_raw()
        .map(|c| neutralise_formula(c.as_bytes()))
        .collect()
}

impl<R: Read> CsvChunks<R> {
    /// Reads the header of `reader` and checks that it has every column `spec` needs
    /// ([`CodelessError::MissingColumns`] otherwise, before any row is read).
    pub fn new(reader: R, spec: &ModelSpec) -> Result<Self, CodelessError> {
        Self::with_limits(reader, spec, &InputLimits::default())
    }

    /// [`CsvChunks::new`] with `limits` on columns (counted while the header is parsed, before
    /// any name is allocated) and rows.
    pub fn with_limits(
        reader: R,
        spec: &ModelSpec,
        limits: &InputLimits,
    ) -> Result<Self, CodelessError> {
        let prep = preprocessing(spec)?.clone();
        let reader = CsvReader::with_options(reader, csv_options(limits)).map_err(table_error)?;
        let position: std::collections::HashMap<&str, usize> = reader
            .header()
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let needed = feature_columns(&prep);
        let missing: Vec<String> = needed
            .iter()
            .filter(|c| !position.contains_key(c.as_str()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(CodelessError::MissingColumns { missing, needed });
        }
        let feature_index = needed
            .iter()
            .map(|c| position.get(c.as_str()).copied().unwrap_or_default())
            .collect();
        Ok(Self {
            reader,
            prep,
            feature_index,
            done: false,
            failed: None,
        })
    }

    /// The header as sent.
    pub fn header(&self) -> &CsvRecord {
        self.reader.header_record()
    }

    /// The field separator detected from the header.
    pub fn delimiter(&self) -> u8 {
        self.reader.delimiter().byte()
    }

    /// Data rows read so far.
    pub fn rows_read(&self) -> usize {
        self.reader.rows_read()
    }

    /// Adds `chunk`'s feature cells (as the preprocessing read them) to a drift window
    /// (`b3o_models::monitor`): counts and sketches, no row is kept.
    pub fn observe(&self, chunk: &CsvChunk, window: &mut b3o_models::stats::Summary) {
        let missing = self.reader.missing();
        for r in &chunk.records {
            b3o_models::monitor::observe_row(
                window,
                &self.prep,
                self.feature_index.iter().map(|&i| r.value(i, missing)),
            );
        }
    }

    /// The next (up to) `max_rows` data rows and their model inputs; `None` after the last.
    /// A file without data rows is [`TabularError::NoRows`].
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<CsvChunk>, CodelessError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let chunk = self.read_chunk(max_rows);
        if let Err(e) = &chunk {
            self.failed = Some(e.clone());
        }
        chunk
    }

    fn read_chunk(&mut self, max_rows: usize) -> Result<Option<CsvChunk>, CodelessError> {
        if self.done {
            return Ok(None);
        }
        let first_row = self.reader.rows_read() + 1;
        let mut records = Vec::with_capacity(max_rows.clamp(1, DEFAULT_CHUNK_ROWS));
        let mut malformed = None;
        while records.len() < max_rows.max(1) {
            let mut record = CsvRecord::default();
            match self.reader.read_record(&mut record) {
                Ok(true) => records.push(record),
                Ok(false) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    malformed = Some(table_error(e));
                    break;
                }
            }
        }
        // The rows above a malformed one are checked first: the first bad row is reported.
        let inputs = self.inputs(&records)?;
        if let Some(e) = malformed {
            return Err(e);
        }
        if records.is_empty() {
            return if first_row == 1 {
                Err(TabularError::NoRows.into())
            } else {
                Ok(None)
            };
        }
        Ok(Some(CsvChunk {
            first_row,
            records,
            inputs,
        }))
    }

    /// The model inputs of `records`; on a bad cell, the error of the first row that has one.
    fn inputs(&self, records: &[CsvRecord]) -> Result<Vec<f32>, CodelessError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        match self.prep.transform(&self.table(records)) {
            Ok((inputs, _)) => Ok(inputs),
            // `transform` goes column by column: find the row (rare, so one at a time).
            Err(e) => Err(records
                .iter()
                .find_map(|r| {
                    let one = self.table(std::slice::from_ref(r));
                    self.prep.transform(&one).err().map(|e| located(e, r))
                })
                .unwrap_or(CodelessError::Preprocess(e))),
        }
    }

    /// The feature columns of `records` (trimmed cells, missing spellings as `None`).
    fn table(&self, records: &[CsvRecord]) -> Table {
        let missing = self.reader.missing();
        Table {
            columns: self
                .prep
                .features
                .iter()
                .zip(&self.feature_index)
                .map(|(f, &index)| Column {
                    name: f.column().to_string(),
                    values: records
                        .iter()
                        .map(|r| r.value(index, missing).map(str::to_string))
                        .collect(),
                })
                .collect(),
            n_rows: records.len(),
        }
    }
}

/// Renumbers a chunk's row errors to the file's rows.
fn shift_rows(e: PreprocessError, offset: usize) -> PreprocessError {
    match e {
        PreprocessError::BadRow { row, message } => PreprocessError::BadRow {
            row: row + offset,
            message,
        },
        PreprocessError::Table(TabularError::BadValue {
            row,
            column,
            message,
        }) => PreprocessError::Table(TabularError::BadValue {
            row: row + offset,
            column,
            message,
        }),
        other => other,
    }
}

/// The predictions CSV: the header and rows as sent with the prediction columns appended,
/// written with the input's delimiter.
pub struct CsvOutput<W: Write> {
    writer: csv::Writer<W>,
}

impl<W: Write> std::fmt::Debug for CsvOutput<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvOutput").finish_non_exhaustive()
    }
}

impl<W: Write> CsvOutput<W> {
    /// Writes the header of `input` with `spec`'s prediction columns.
    pub fn new<R: Read>(
        out: W,
        input: &CsvChunks<R>,
        spec: &ModelSpec,
    ) -> Result<Self, CodelessError> {
        let mut writer = csv::WriterBuilder::new()
            .delimiter(input.delimiter())
            .flexible(true)
            .from_writer(out);
        let mut header = neutralised(input.header());
        prediction_header(spec)
            .iter()
            .for_each(|h| header.push_field(&neutralise_formula(h.as_bytes())));
        writer.write_byte_record(&header).map_err(io)?;
        Ok(Self { writer })
    }

    /// Writes a chunk's rows with their predictions (one per row, in order).
    pub fn write_chunk(
        &mut self,
        chunk: &CsvChunk,
        predictions: &[Predicted],
    ) -> Result<(), CodelessError> {
        if predictions.len() != chunk.n_rows() {
            return Err(CodelessError::Io(format!(
                "{} predictions for {} rows",
                predictions.len(),
                chunk.n_rows()
            )));
        }
        for (record, p) in chunk.records.iter().zip(predictions) {
            let mut record = neutralised(record);
            p.csv_cells()
                .iter()
                .for_each(|c| record.push_field(&neutralise_formula(c.as_bytes())));
            self.writer.write_byte_record(&record).map_err(io)?;
        }
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> Result<W, CodelessError> {
        self.writer.into_inner().map_err(|e| io(e.error()))
    }
}

/// Counts the data rows of a CSV (blank lines excluded) up to its first malformed row, without
/// converting any cell: progress reporting for large files. A header that cannot be read is an
/// error, as in [`CsvChunks::new`].
pub fn count_rows<R: Read>(reader: R) -> Result<usize, CodelessError> {
    let mut reader = CsvReader::with_options(reader, csv_options(&InputLimits::default()))
        .map_err(table_error)?;
    let mut record = CsvRecord::default();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Ok(reader.rows_read()),
            Err(TabularError::Io { message }) => return Err(CodelessError::Io(message)),
            Err(_) => return Ok(reader.rows_read()),
        }
    }
}

/// A whole CSV through the model: the predictions CSV (see [`CsvOutput`]).
pub fn predict_csv(
    predictor: &OnnxPredictor,
    spec: &ModelSpec,
    csv: &[u8],
) -> Result<Vec<u8>, CodelessError> {
    predict_csv_counted(predictor, spec, csv).map(|(out, _)| out)
}

/// [`predict_csv`], with the number of data rows predicted.
pub fn predict_csv_counted(
    predictor: &OnnxPredictor,
    spec: &ModelSpec,
    csv: &[u8],
) -> Result<(Vec<u8>, usize), CodelessError> {
    predict_csv_limited(predictor, spec, csv, &InputLimits::default())
}

/// [`predict_csv_counted`] within `limits` (columns, rows).
pub fn predict_csv_limited(
    predictor: &OnnxPredictor,
    spec: &ModelSpec,
    csv: &[u8],
    limits: &InputLimits,
) -> Result<(Vec<u8>, usize), CodelessError> {
    predict_csv_monitored(predictor, spec, csv, limits, None)
}

/// [`predict_csv_limited`], adding the inputs and answers to a drift `window`
/// (`b3o_models::monitor`) when one is given.
pub fn predict_csv_monitored(
    predictor: &OnnxPredictor,
    spec: &ModelSpec,
    csv: &[u8],
    limits: &InputLimits,
    mut window: Option<&mut b3o_models::stats::Summary>,
) -> Result<(Vec<u8>, usize), CodelessError> {
    let mut chunks = CsvChunks::with_limits(csv, spec, limits)?;
    let mut out = CsvOutput::new(Vec::with_capacity(csv.len() * 5 / 4), &chunks, spec)?;
    while let Some(chunk) = chunks.next_chunk(DEFAULT_CHUNK_ROWS)? {
        let outputs = predictor.predict(&chunk.inputs, chunk.n_rows())?;
        if let Some(w) = window.as_deref_mut() {
            chunks.observe(&chunk, w);
            b3o_models::monitor::observe_outputs(w, spec, &outputs, chunk.n_rows());
        }
        out.write_chunk(&chunk, &describe(spec, &chunk.inputs, &outputs))?;
    }
    Ok((out.finish()?, chunks.rows_read()))
}

// ---------------------------------------------------------------------------------------------
// JSON rows
// ---------------------------------------------------------------------------------------------

/// Model inputs for JSON rows of raw values (`{"Age": 42, "Geography": "France", ..}`). Every
/// feature column must be present (`null` for a missing value, which is imputed); other keys
/// are refused, except the target's, so that a typo is not silently imputed.
pub fn rows_inputs(
    spec: &ModelSpec,
    rows: &[Map<String, Value>],
) -> Result<(Vec<f32>, usize), CodelessError> {
    let prep = preprocessing(spec)?;
    if rows.is_empty() {
        return Err(CodelessError::NoRows);
    }
    let target = match &prep.target {
        TargetEncoding::Classes { column, .. } | TargetEncoding::Standardize { column, .. } => {
            column.as_str()
        }
    };
    for (i, row) in rows.iter().enumerate() {
        if let Some(f) = prep.features.iter().find(|f| !row.contains_key(f.column())) {
            return Err(CodelessError::RowMissingColumn {
                row: i + 1,
                column: f.column().to_string(),
            });
        }
        if let Some(key) = row
            .keys()
            .find(|k| *k != target && !prep.features.iter().any(|f| f.column() == *k))
        {
            return Err(CodelessError::UnknownColumn {
                row: i + 1,
                column: key.clone(),
                known: feature_columns(prep),
            });
        }
    }
    Ok(prep.transform_json(rows)?)
}

/// Model inputs for one JSON row (see [`rows_inputs`]), numbered `row` (from 1) in errors:
/// rows can be encoded as they are parsed, without holding every row's JSON at once.
pub fn row_inputs(
    spec: &ModelSpec,
    row: usize,
    values: &Map<String, Value>,
) -> Result<Vec<f32>, CodelessError> {
    let offset = row.saturating_sub(1);
    rows_inputs(spec, std::slice::from_ref(values))
        .map(|(inputs, _)| inputs)
        .map_err(|e| match e {
            CodelessError::RowMissingColumn { row, column } => CodelessError::RowMissingColumn {
                row: row + offset,
                column,
            },
            CodelessError::UnknownColumn { row, column, known } => CodelessError::UnknownColumn {
                row: row + offset,
                column,
                known,
            },
            CodelessError::Preprocess(e) => CodelessError::Preprocess(shift_rows(e, offset)),
            other => other,
        })
}

/// Predictions for JSON rows (see [`rows_inputs`]), one per row, in order.
pub fn predict_rows(
    predictor: &OnnxPredictor,
    spec: &ModelSpec,
    rows: &[Map<String, Value>],
) -> Result<Vec<Predicted>, CodelessError> {
    let (inputs, n) = rows_inputs(spec, rows)?;
    let outputs = predictor.predict(&inputs, n)?;
    Ok(describe(spec, &inputs, &outputs))
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

/// True for a model over 28x28 greyscale images.
pub fn takes_images(spec: &ModelSpec) -> bool {
    spec.preprocessing.is_none() && spec.input_dim() == SIDE * SIDE
}

/// A PNG or JPEG to the model's input (`b3o_models::image::decode_image`: greyscale, 28x28,
/// inverted when the background is light), after checking the format and the size.
pub fn image_inputs(spec: &ModelSpec, bytes: &[u8]) -> Result<Vec<f32>, CodelessError> {
    image_inputs_within(spec, bytes, &InputLimits::default())
}

/// [`image_inputs`] with `limits.max_image_bytes` on the decoded image, checked from the
/// image's header before anything is decoded.
pub fn image_inputs_within(
    spec: &ModelSpec,
    bytes: &[u8],
    limits: &InputLimits,
) -> Result<Vec<f32>, CodelessError> {
    use image::ImageDecoder;
    if !takes_images(spec) {
        return Err(CodelessError::TakesTables);
    }
    let format = image::guess_format(bytes)
        .ok()
        .filter(|f| matches!(f, image::ImageFormat::Png | image::ImageFormat::Jpeg))
        .ok_or(CodelessError::NotAnImage)?;
    let decoder = image::ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(|e| CodelessError::Image(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    let side_ok = |s: u32| (MIN_IMAGE_SIDE..=MAX_IMAGE_SIDE).contains(&s);
    if !side_ok(width) || !side_ok(height) {
        return Err(CodelessError::ImageSize { width, height });
    }
    // A 127 KiB PNG can declare 4096x4096 16-bit RGBA: 128 MiB once decoded.
    let decoded = decoder.total_bytes();
    if decoded > limits.max_image_bytes {
        return Err(CodelessError::ImageTooLarge {
            width,
            height,
            bytes: decoded,
            max: limits.max_image_bytes,
        });
    }
    drop(decoder);
    Ok(b3o_models::image::decode_image_within(
        bytes,
        limits.max_image_bytes,
    )?)
}

/// The prediction for one image (see [`image_inputs`]).
pub fn predict_image(
    predictor: &OnnxPredictor,
    spec: &ModelSpec,
    bytes: &[u8],
) -> Result<Predicted, CodelessError> {
    let pixels = image_inputs(spec, bytes)?;
    let outputs = predictor.predict(&pixels, 1)?;
    describe(spec, &pixels, &outputs)
        .pop()
        .ok_or_else(|| CodelessError::Inference(InferenceError::Run("no output".into())))
}

#[cfg(test)]
mod tests {
    use b3o_models::onnx::export_onnx;
    use b3o_models::preprocess::{FeatureTransform, PREPROCESS_VERSION};
    use b3o_models::tabular::read_csv;

    use super::*;

    fn spec() -> ModelSpec {
        let prep = PreprocessSpec {
            version: PREPROCESS_VERSION,
            features: vec![
                FeatureTransform::Standardize {
                    column: "age".into(),
                    mean: 40.0,
                    std: 10.0,
                    impute: 40.0,
                },
                FeatureTransform::OneHot {
                    column: "country".into(),
                    vocabulary: vec!["FR".into(), "DE".into()],
                    impute: Some("FR".into()),
                },
            ],
            target: TargetEncoding::Classes {
                column: "exited".into(),
                labels: vec!["0".into(), "1".into()],
            },
            task: Task::BinaryClassification,
        };
        ModelSpec::tabular(prep, vec![8], Default::default())
    }

    fn predictor(spec: &ModelSpec) -> OnnxPredictor {
        OnnxPredictor::load_b3o(&export_onnx(spec, &spec.init_weights(5)).unwrap())
            .unwrap()
            .0
    }

    fn csv(n: usize) -> String {
        let mut s = String::from("id;age;country;exited\r\n");
        for i in 0..n {
            let age = if i % 7 == 3 {
                "NA".to_string()
            } else {
                format!(" {} ", 20 + i % 50)
            };
            let country = ["FR", "DE", "ES", "\"Côte; d'Ivoire\""][i % 4];
            s.push_str(&format!("C{i};{age};{country};{}\r\n", i % 2));
            if i % 11 == 0 {
                s.push_str(";;;\r\n");
            }
        }
        s
    }

    #[test]
    fn chunked_csv_matches_read_csv_and_output_does_not_depend_on_chunk_size() {
        let spec = spec();
        let p = predictor(&spec);
        let input = csv(100);
        let whole = predict_csv(&p, &spec, input.as_bytes()).unwrap();
        // The same inputs as the models crate's own reader + transform.
        let table = read_csv(input.as_bytes()).unwrap();
        let (want, n) = spec
            .preprocessing
            .as_ref()
            .unwrap()
            .transform(&table)
            .unwrap();
        let mut chunks = CsvChunks::new(input.as_bytes(), &spec).unwrap();
        let mut got = Vec::new();
        while let Some(c) = chunks.next_chunk(7).unwrap() {
            got.extend(c.inputs);
        }
        assert_eq!((got, chunks.rows_read()), (want, n));
        assert_eq!(count_rows(input.as_bytes()).unwrap(), n);
        for size in [1, 3, 64] {
            let mut chunks = CsvChunks::new(input.as_bytes(), &spec).unwrap();
            let mut out = CsvOutput::new(Vec::new(), &chunks, &spec).unwrap();
            while let Some(c) = chunks.next_chunk(size).unwrap() {
                let outputs = p.predict(&c.inputs, c.n_rows()).unwrap();
                out.write_chunk(&c, &describe(&spec, &c.inputs, &outputs))
                    .unwrap();
            }
            assert_eq!(out.finish().unwrap(), whole, "chunk size {size}");
        }
        let text = String::from_utf8(whole).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "id;age;country;exited;prediction_label;prediction_probability;probability_0;probability_1;warning"
        );
        assert_eq!(lines.len(), 101);
        // Cells pass through as sent (spaces, NA, quoting), predictions appended.
        assert!(lines[1].starts_with("C0; 20 ;FR;0;"), "{}", lines[1]);
        assert!(
            lines[4].starts_with("C3;NA;\"Côte; d'Ivoire\";1;"),
            "{}",
            lines[4]
        );
    }

    #[test]
    fn csv_errors_name_rows_and_columns() {
        let spec = spec();
        let p = predictor(&spec);
        let err = |csv: &str| predict_csv(&p, &spec, csv.as_bytes()).unwrap_err();
        let e = err("id,exited\n1,0\n");
        assert!(matches!(e, CodelessError::MissingColumns { .. }));
        assert!(e.to_string().contains("`age`, `country`"), "{e}");
        let mut big = String::from("age,country\n");
        (0..20).for_each(|i| big.push_str(&format!("{i},FR\n")));
        big.push_str("old,DE\n");
        for size in [1, 4, 100] {
            let mut chunks = CsvChunks::new(big.as_bytes(), &spec).unwrap();
            let e = loop {
                match chunks.next_chunk(size) {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("no error"),
                    Err(e) => break e.to_string(),
                }
            };
            assert!(
                e.contains("row 21") && e.contains("`age`") && e.contains("old"),
                "{e}"
            );
        }
        for bad in [
            "",
            "  \n \n",
            "age,country\n",
            "age,country\n1,FR,x\n",
            "age,age\n1,2\n",
        ] {
            let e = err(bad);
            let want = read_csv(bad.as_bytes()).unwrap_err();
            assert_eq!(e, CodelessError::Table(want), "{bad:?}");
            assert!(e.is_client_error());
        }
    }

    /// Issue #16: errors name the line (as an editor shows it) and the data row, and the
    /// first bad row of the file is the one reported, whatever the chunk size: a bad cell
    /// above a ragged row, and in a later column above one in an earlier column.
    #[test]
    fn csv_errors_name_the_line_of_the_first_bad_row() {
        let spec = spec();
        let p = predictor(&spec);
        let first_error = |input: &str, size: usize| {
            let mut chunks = CsvChunks::new(input.as_bytes(), &spec).unwrap();
            loop {
                match chunks.next_chunk(size) {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("no error in {input:?}"),
                    Err(e) => {
                        // Asking again gives the same error, not a silent end.
                        assert_eq!(chunks.next_chunk(size).unwrap_err(), e);
                        break e.to_string();
                    }
                }
            }
        };
        // Row 3 spans lines 5-6; line 4 (row 2) has a bad age; line 7 (row 4) is ragged.
        let bad_cell = "age,country\n30,FR\n\nold,DE\n41,\"Côte\nd'Ivoire\"\n42\n";
        let ragged = bad_cell.replace("old", "40");
        for size in [1, 2, 3, DEFAULT_CHUNK_ROWS] {
            assert_eq!(
                first_error(bad_cell, size),
                "line 4 (row 2), column `age`: `old` is not a number",
                "chunks of {size}"
            );
            assert_eq!(
                first_error(&ragged, size),
                "line 7 (row 4): expected 2 fields like the header, found 1",
                "chunks of {size}"
            );
        }
        let e = predict_csv(&p, &spec, ragged.as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), first_error(&ragged, 4));
        assert!(e.is_client_error());
        let e = predict_csv(&p, &spec, b"age,country\n1,\"FR\n2,DE\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: a quoted field is never closed (a `\"` is missing)"
        );

        // Two numeric features: row 2 is bad in the second, row 3 in the first.
        let mut two = spec.clone();
        if let Some(prep) = two.preprocessing.as_mut() {
            prep.features = ["a", "b"]
                .map(|c| FeatureTransform::Standardize {
                    column: c.into(),
                    mean: 0.0,
                    std: 1.0,
                    impute: 0.0,
                })
                .to_vec();
        }
        let mut chunks = CsvChunks::new(&b"a;b\n1;2\n3;x\ny;4\n"[..], &two).unwrap();
        assert_eq!(
            chunks.next_chunk(10).unwrap_err().to_string(),
            "line 3 (row 2), column `b`: `x` is not a number"
        );
    }

    /// Regression (issue #19, findings 2 and 8): column and row limits, found before the
    /// CSV parser allocates; formula cells neutralised (OWASP CSV injection).
    #[test]
    fn csv_limits_and_formula_cells() {
        let spec = spec();
        let p = predictor(&spec);
        let limits = InputLimits {
            max_columns: 3,
            max_rows: Some(2),
            ..InputLimits::default()
        };
        let e =
            predict_csv_limited(&p, &spec, b"age,country,x,y\n1,FR,2,3\n", &limits).unwrap_err();
        assert_eq!(e, CodelessError::TooManyColumns { max: 3 });
        // A quoted separator is not a column.
        assert!(predict_csv_limited(&p, &spec, b"age,country,\"x,y\"\n1,FR,2\n", &limits).is_ok());
        let e = predict_csv_limited(&p, &spec, b"age,country\n1,FR\n\n2,DE\n3,FR\n", &limits)
            .unwrap_err();
        assert_eq!(e, CodelessError::TooManyRows { max: 2 });
        assert!(e.is_client_error());
        let out = predict_csv(&p, &spec, b"age,country,note\n1,FR,=1+1\n-2.5,DE,-x\n").unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("1,FR,'=1+1,"), "{}", lines[1]);
        assert!(lines[2].starts_with("-2.5,DE,'-x,"), "{}", lines[2]);
        for (cell, want) in [
            ("@x", "'@x"),
            ("+1", "+1"),
            ("\tx", "'\tx"),
            ("a=b", "a=b"),
            ("-inf", "'-inf"),
        ] {
            assert_eq!(
                neutralise_formula(cell.as_bytes()).as_ref(),
                want.as_bytes()
            );
        }
    }

    #[test]
    fn rows_and_images_are_checked() {
        let spec = spec();
        let p = predictor(&spec);
        let row = |v: Value| v.as_object().unwrap().clone();
        let ok = row(json!({ "age": 30, "country": null, "exited": "1" }));
        let preds = predict_rows(&p, &spec, std::slice::from_ref(&ok)).unwrap();
        assert!(
            matches!(&preds[0].prediction, RowPrediction::Class { probabilities, .. } if probabilities.len() == 2)
        );
        let j = preds[0].to_json(&spec);
        assert!(j["probabilities"]["1"].is_number(), "{j}");
        assert_eq!(j["warnings"], json!([]), "{j}");
        let e = rows_inputs(&spec, &[ok.clone(), row(json!({ "age": 1 }))]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "row 2: column `country` is missing (send null for a missing value)"
        );
        let e = rows_inputs(
            &spec,
            &[row(json!({ "age": 1, "country": "FR", "agee": 2 }))],
        )
        .unwrap_err();
        assert!(e.to_string().contains("`agee`"), "{e}");
        assert_eq!(rows_inputs(&spec, &[]).unwrap_err(), CodelessError::NoRows);
        // One row at a time: the same inputs, errors numbered as in the whole body.
        assert_eq!(
            row_inputs(&spec, 7, &ok).unwrap(),
            rows_inputs(&spec, std::slice::from_ref(&ok)).unwrap().0
        );
        let e = row_inputs(&spec, 7, &row(json!({ "age": "x", "country": "FR" }))).unwrap_err();
        assert!(e.to_string().contains("row 7"), "{e}");
        let e = row_inputs(&spec, 7, &row(json!({ "age": 1 }))).unwrap_err();
        assert!(e.to_string().starts_with("row 7:"), "{e}");
        assert_eq!(
            image_inputs(&spec, b"x").unwrap_err(),
            CodelessError::TakesTables
        );

        let cnn = ModelSpec::mnist_cnn();
        assert_eq!(
            CsvChunks::new(&b"a\n1\n"[..], &cnn).unwrap_err(),
            CodelessError::TakesImages
        );
        let png = |w, h| {
            let mut out = Cursor::new(Vec::new());
            image::GrayImage::new(w, h)
                .write_to(&mut out, image::ImageFormat::Png)
                .unwrap();
            out.into_inner()
        };
        let p = predictor(&cnn);
        let pred = predict_image(&p, &cnn, &png(28, 28)).unwrap();
        assert!(
            matches!(pred.prediction, RowPrediction::Class { ref probabilities, .. } if probabilities.len() == 10)
        );
        assert_eq!(
            image_inputs(&cnn, &png(2, 2)).unwrap_err(),
            CodelessError::ImageSize {
                width: 2,
                height: 2
            }
        );
        assert_eq!(
            image_inputs(&cnn, b"GIF89a").unwrap_err(),
            CodelessError::NotAnImage
        );
        // Regression (issue #19, finding 3): the decoded size is checked from the header.
        let small = InputLimits {
            max_image_bytes: 28 * 28 - 1,
            ..InputLimits::default()
        };
        assert!(matches!(
            image_inputs_within(&cnn, &png(28, 28), &small).unwrap_err(),
            CodelessError::ImageTooLarge { bytes: 784, .. }
        ));
        let mut truncated = png(28, 28);
        truncated.truncate(40);
        assert!(
            image_inputs(&cnn, &truncated)
                .unwrap_err()
                .is_client_error()
        );
    }

    /// Issue #21: one probability column per label, named safely and uniquely whatever the
    /// labels hold.
    #[test]
    fn probability_columns_are_safe_and_unique() {
        let labels: Vec<String> = [
            "1",
            "yes",
            "a,b",
            "say \"hi\"",
            "=cmd",
            "",
            "yes",
            "yes",
            " ",
            "Côte d'Ivoire",
            "@sum",
            "-1",
            "line\nbreak",
            "yes_2",
        ]
        .map(String::from)
        .to_vec();
        let cols = probability_columns(&labels);
        assert_eq!(
            cols,
            [
                "probability_1",
                "probability_yes",
                "probability_a_b",
                "probability_say__hi_",
                "probability__cmd",
                "probability_class5",
                "probability_yes_2",
                "probability_yes_3",
                "probability_class8",
                "probability_Côte_d_Ivoire",
                "probability__sum",
                "probability_-1",
                "probability_line_break",
                "probability_yes_2_2",
            ]
        );
        let unique: std::collections::HashSet<_> = cols.iter().collect();
        assert_eq!(unique.len(), cols.len());
        for c in &cols {
            assert!(
                !c.contains([',', ';', '"', '\n', '\r', '\t', ' ', '=']),
                "{c:?}"
            );
            assert_eq!(neutralise_formula(c.as_bytes()).as_ref(), c.as_bytes());
        }
        let long = "x".repeat(1000);
        assert_eq!(
            probability_columns(&[long])[0].len(),
            PROBABILITY_PREFIX.len() + MAX_LABEL_CHARS
        );
        assert!(probability_columns(&[]).is_empty());
    }

    /// Issue #21: the class probabilities and the warning in the CSV, labels with separators
    /// and formulas, and a row far from the training data warned about, never refused.
    #[test]
    fn csv_has_every_probability_and_a_warning_column() {
        let mut spec = spec();
        let labels = vec!["=stay,now".to_string(), "\"leave\"".to_string()];
        spec.labels = labels.clone();
        if let Some(prep) = spec.preprocessing.as_mut() {
            prep.target = TargetEncoding::Classes {
                column: "exited".into(),
                labels,
            };
        }
        let p = predictor(&spec);
        let input = "age,country\n45,FR\n950,DE\n30,Atlantis\n";
        let out = String::from_utf8(predict_csv(&p, &spec, input.as_bytes()).unwrap()).unwrap();
        let mut reader = csv::ReaderBuilder::new().from_reader(out.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(
            header,
            [
                "age",
                "country",
                "prediction_label",
                "prediction_probability",
                "probability__stay_now",
                "probability__leave_",
                "warning"
            ]
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 3);
        for row in &rows {
            let label = &row[2];
            assert!(label == "'=stay,now" || label == "\"leave\"", "{row:?}");
            let p: f32 = row[3].parse().unwrap();
            let (p0, p1): (f32, f32) = (row[4].parse().unwrap(), row[5].parse().unwrap());
            assert!((p0 + p1 - 1.0).abs() < 1e-5, "{row:?}");
            assert!((p - p0.max(p1)).abs() < 1e-6, "{row:?}");
        }
        assert_eq!(&rows[0][6], "");
        assert!(
            rows[1][6].contains("`age`") && rows[1][6].contains("950"),
            "{:?}",
            &rows[1]
        );
        assert!(rows[2][6].contains("`country`"), "{:?}", &rows[2]);
        // The same warnings through JSON rows.
        let row = |v: Value| v.as_object().unwrap().clone();
        let preds =
            predict_rows(&p, &spec, &[row(json!({ "age": 950, "country": "FR" }))]).unwrap();
        assert_eq!(preds[0].warnings.len(), 1);
        assert_eq!(preds[0].warnings.join("; "), rows[1][6]);

        // Regression: the value, then the warning.
        let mut reg = self::spec();
        reg.task = Task::Regression;
        reg.labels.clear();
        if let Some(prep) = reg.preprocessing.as_mut() {
            prep.task = Task::Regression;
            prep.target = TargetEncoding::Standardize {
                column: "exited".into(),
                mean: 0.0,
                std: 1.0,
            };
        }
        assert_eq!(prediction_header(&reg), ["prediction_value", "warning"]);
    }
}
