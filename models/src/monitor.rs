//! What a deployment keeps of the inputs it scores, for drift monitoring (issue #18): a
//! [`Summary`] of the raw values per feature column (counts, missing values, each numeric
//! column's [`crate::drift::ValueSketch`], category counts) and of its answers, never a row.
//!
//! Every way in ends in one of these:
//! - [`observe_table`]: raw cells (codeless CSV and batch jobs: the chunk's feature columns as
//!   the preprocessing reads them, missing spellings already `None`);
//! - [`observe_json_row`]: one JSON row of raw values (codeless rows);
//! - [`observe_inputs`]: model inputs (the KServe V2 routes, which take preprocessed tensors):
//!   mapped back to raw units through the [`PreprocessSpec`] (`x = z * std + mean`; a one-hot
//!   block to its category, or [`UNSEEN`] for its "other" input). A missing value was imputed
//!   by the caller, so V2 traffic shows no missing values, and an unseen category keeps no name;
//! - [`observe_images`]: per-image statistics ([`IMAGE_FEATURES`]: mean intensity, ink in the
//!   outer frame), the features an image model's drift is measured on;
//! - [`observe_outputs`]: the predicted label ([`PREDICTION`]: categorical for classification,
//!   the value in the target's unit for regression) and the most likely class's probability
//!   ([`CONFIDENCE`]).
//!
//! Categorical columns are counted with [`CategoricalSummary::push_bounded`]: at most
//! [`MAX_CATEGORIES`] distinct values per column, the rest under one key, so a hostile stream of
//! distinct strings cannot grow a window. The reference a window is compared with is the
//! version's merged training summary; [`prediction_reference`] names its target column
//! [`PREDICTION`], so predictions are compared with the training labels' distribution.

use serde_json::{Map, Value};

use crate::model::ModelSpec;
use crate::ood::image_stats;
use crate::preprocess::{FeatureTransform, MIN_STD, PreprocessSpec, TargetEncoding};
use crate::stats::{CategoricalSummary, ColumnSummary, NumericSummary, OTHER, Summary};
use crate::tabular::Table;
use crate::tabular::infer::parse_number;
use crate::task::Task;

/// The window's column of predicted labels (classification) or values (regression).
pub const PREDICTION: &str = "(prediction)";
/// The window's column of the most likely class's probability (classification).
pub const CONFIDENCE: &str = "(confidence)";
/// The category a V2 input's "other" one-hot input stands for: a value outside the training
/// vocabulary, whose name the tensor does not carry.
pub const UNSEEN: &str = "(not in the vocabulary)";
/// The per-image statistics an image model's inputs are summarised by.
pub const IMAGE_FEATURES: [&str; 2] = ["mean_intensity", "border_share"];
/// Most distinct values counted per categorical column of a window.
pub const MAX_CATEGORIES: usize = 100;

/// The column `name` of `summary`, made with `empty` the first time (looked up without
/// allocating a key: this runs for every cell a deployment scores).
fn column<'a>(
    summary: &'a mut Summary,
    name: &str,
    empty: fn() -> ColumnSummary,
) -> Option<&'a mut ColumnSummary> {
    if summary.columns.contains_key(name) {
        summary.columns.get_mut(name)
    } else {
        Some(
            summary
                .columns
                .entry(name.to_string())
                .or_insert_with(empty),
        )
    }
}

fn numeric<'a>(summary: &'a mut Summary, name: &str) -> Option<&'a mut NumericSummary> {
    match column(summary, name, || {
        ColumnSummary::Numeric(NumericSummary::default())
    })? {
        ColumnSummary::Numeric(n) => Some(n),
        ColumnSummary::Categorical(_) => None,
    }
}

fn categorical<'a>(summary: &'a mut Summary, name: &str) -> Option<&'a mut CategoricalSummary> {
    match column(summary, name, || {
        ColumnSummary::Categorical(CategoricalSummary::default())
    })? {
        ColumnSummary::Categorical(c) => Some(c),
        ColumnSummary::Numeric(_) => None,
    }
}

/// Adds one raw cell of feature `f` (`None`: missing).
fn push_cell(summary: &mut Summary, f: &FeatureTransform, cell: Option<&str>) {
    let cell = cell.filter(|c| !crate::tabular::is_missing(c));
    match f {
        FeatureTransform::Standardize { column, .. } => {
            if let Some(n) = numeric(summary, column) {
                // A cell that is not a number never reaches here (the preprocessing refused it).
                n.push(cell.and_then(parse_number).filter(|v| v.is_finite()));
            }
        }
        FeatureTransform::OneHot { column, .. } => {
            if let Some(c) = categorical(summary, column) {
                c.push_bounded(cell.map(str::trim), MAX_CATEGORIES);
            }
        }
    }
}

/// Adds one row of raw cells, in the order of `prep.features` (`None`: missing).
pub fn observe_row<'a>(
    summary: &mut Summary,
    prep: &PreprocessSpec,
    cells: impl IntoIterator<Item = Option<&'a str>>,
) {
    for (f, cell) in prep.features.iter().zip(cells) {
        push_cell(summary, f, cell);
    }
    summary.n_rows += 1;
}

/// Adds the rows of `table` (the feature columns as read for prediction).
pub fn observe_table(summary: &mut Summary, prep: &PreprocessSpec, table: &Table) {
    for f in &prep.features {
        if let Some(column) = table.column(f.column()) {
            for cell in &column.values {
                push_cell(summary, f, cell.as_deref());
            }
        }
    }
    summary.n_rows += table.n_rows as u64;
}

/// Adds one JSON row of raw values (`null` or an absent key: missing).
pub fn observe_json_row(summary: &mut Summary, prep: &PreprocessSpec, row: &Map<String, Value>) {
    for f in &prep.features {
        match (f, row.get(f.column())) {
            // Numbers straight from JSON, without text in between.
            (FeatureTransform::Standardize { column, .. }, Some(Value::Number(n))) => {
                if let Some(s) = numeric(summary, column) {
                    s.push(n.as_f64().filter(|v| v.is_finite()));
                }
            }
            (_, Some(Value::String(text))) => push_cell(summary, f, Some(text)),
            (_, Some(Value::Number(n))) => push_cell(summary, f, Some(&n.to_string())),
            (_, Some(Value::Bool(b))) => {
                push_cell(summary, f, Some(if *b { "true" } else { "false" }))
            }
            (_, _) => push_cell(summary, f, None),
        }
    }
    summary.n_rows += 1;
}

/// Adds `n_rows` rows of model inputs (`prep.input_dim()` each), mapped back to raw units.
/// Inputs of another size add nothing.
pub fn observe_inputs(summary: &mut Summary, prep: &PreprocessSpec, inputs: &[f32], n_rows: usize) {
    let width = prep.input_dim();
    if width == 0 || inputs.len() != width.saturating_mul(n_rows) {
        return;
    }
    for row in inputs.chunks_exact(width) {
        let mut at = 0;
        for f in &prep.features {
            let cells = &row[at..at + f.width()];
            at += f.width();
            match f {
                FeatureTransform::Standardize {
                    column, mean, std, ..
                } => {
                    let value = f64::from(cells[0]) * std.max(MIN_STD) + mean;
                    if let Some(n) = numeric(summary, column) {
                        n.push(Some(value).filter(|v| v.is_finite()));
                    }
                }
                FeatureTransform::OneHot {
                    column, vocabulary, ..
                } => {
                    let hot = cells
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map(|(i, _)| i);
                    let value = match hot {
                        Some(i) if i < vocabulary.len() => vocabulary[i].as_str(),
                        _ => UNSEEN,
                    };
                    if let Some(c) = categorical(summary, column) {
                        c.push_bounded(Some(value), MAX_CATEGORIES);
                    }
                }
            }
        }
    }
    summary.n_rows += n_rows as u64;
}

/// Adds `n_images` images (`pixels.len() / n_images` values each) by their statistics.
pub fn observe_images(summary: &mut Summary, pixels: &[f32], n_images: usize) {
    if n_images == 0 || pixels.is_empty() || !pixels.len().is_multiple_of(n_images) {
        return;
    }
    for image in pixels.chunks_exact(pixels.len() / n_images) {
        let stats = image_stats(image);
        let values = [stats.mean_intensity, stats.border_share];
        for (name, value) in IMAGE_FEATURES.iter().zip(values) {
            if let Some(n) = numeric(summary, name) {
                n.push(Some(f64::from(value)).filter(|v| v.is_finite()));
            }
        }
    }
    summary.n_rows += n_images as u64;
}

/// The training-side summary of labelled images, what an image group's member shares in the
/// statistics phase and a version keeps as its drift reference: [`IMAGE_FEATURES`] of each
/// image, and the labels under [`PREDICTION`] (the answers the model was trained to give).
/// `images` yields each image's pixels and label.
pub fn image_reference<'a>(images: impl IntoIterator<Item = (&'a [f32], &'a str)>) -> Summary {
    let mut summary = Summary::default();
    for (pixels, label) in images {
        observe_images(&mut summary, pixels, 1);
        if let Some(c) = categorical(&mut summary, PREDICTION) {
            c.push_bounded(Some(label), MAX_CATEGORIES);
        }
    }
    summary
}

/// `Err` naming what does not belong in an image group's statistics (see [`image_reference`]):
/// a column other than [`IMAGE_FEATURES`] (numeric) and [`PREDICTION`] (categorical), a label
/// the model does not have, an over-large sketch.
pub fn check_image_reference(summary: &Summary, labels: &[String]) -> Result<(), String> {
    for (name, column) in &summary.columns {
        let shown = || -> String { name.chars().take(64).flat_map(char::escape_debug).collect() };
        match column {
            ColumnSummary::Numeric(_) if IMAGE_FEATURES.contains(&name.as_str()) => {}
            ColumnSummary::Categorical(c) if name == PREDICTION => {
                if let Some(unknown) = c
                    .counts
                    .keys()
                    .find(|k| k.as_str() != OTHER && !labels.contains(k))
                {
                    let unknown: String = unknown
                        .chars()
                        .take(64)
                        .flat_map(char::escape_debug)
                        .collect();
                    return Err(format!("label `{unknown}` is not among the model's labels"));
                }
            }
            _ => {
                return Err(format!(
                    "column `{}` is not an image statistic (expected {} and {PREDICTION})",
                    shown(),
                    IMAGE_FEATURES.join(", ")
                ));
            }
        }
    }
    check_sketches(summary)
}

/// Adds the answers for `n_rows` rows (model outputs, [`ModelSpec::output_dim`] per row).
pub fn observe_outputs(summary: &mut Summary, spec: &ModelSpec, outputs: &[f32], n_rows: usize) {
    let width = spec.output_dim().max(1);
    if outputs.len() != width.saturating_mul(n_rows) {
        return;
    }
    for row in outputs.chunks_exact(width) {
        match spec.task {
            Task::Regression => {
                let value = match &spec.preprocessing {
                    Some(prep) => prep.decode_value(row[0]),
                    None => f64::from(row[0]),
                };
                if let Some(n) = numeric(summary, PREDICTION) {
                    n.push(Some(value).filter(|v| v.is_finite()));
                }
            }
            Task::BinaryClassification | Task::MulticlassClassification => {
                let (best, probability) = if spec.task == Task::BinaryClassification {
                    if row[0] >= 0.5 {
                        (1, row[0])
                    } else {
                        (0, 1.0 - row[0])
                    }
                } else {
                    row.iter()
                        .copied()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .unwrap_or((0, 0.0))
                };
                let label = spec
                    .labels
                    .get(best)
                    .cloned()
                    .unwrap_or_else(|| best.to_string());
                if let Some(c) = categorical(summary, PREDICTION) {
                    c.push_bounded(Some(&label), MAX_CATEGORIES);
                }
                if let Some(n) = numeric(summary, CONFIDENCE) {
                    n.push(Some(f64::from(probability)).filter(|v| v.is_finite()));
                }
            }
        }
    }
}

/// A member's own check (`b3o client --check-drift`, the model page): `table` summarised as
/// the serving windows summarise requests, and its drift against `reference`. Only the
/// returned summary may leave the member, if it chooses to share it.
pub fn check_table(
    reference: &crate::protocol::monitoring::DriftReference,
    table: &Table,
) -> Result<(crate::drift::DriftReport, Summary), String> {
    let prep = reference
        .preprocessing
        .as_ref()
        .ok_or("this model takes images: a drift check reads a CSV of its tabular inputs")?;
    let missing: Vec<&str> = prep
        .features
        .iter()
        .map(|f| f.column())
        .filter(|c| table.column(c).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the file has no column {}",
            missing
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut summary = Summary::default();
    observe_table(&mut summary, prep, table);
    let report = crate::drift::compare(
        &reference.reference,
        &summary,
        &reference.features,
        &reference.settings,
    );
    Ok((report, summary))
}

/// `Err` naming the first numeric column whose value sketch is over its bucket bound: what a
/// server checks of a summary a client sent (statistics, a partner's drift check).
pub fn check_sketches(summary: &Summary) -> Result<(), String> {
    for (name, c) in &summary.columns {
        if let ColumnSummary::Numeric(n) = c {
            n.sketch.check().map_err(|e| {
                let shown: String = name.chars().take(64).flat_map(char::escape_debug).collect();
                format!("column `{shown}`: {e}")
            })?;
        }
    }
    Ok(())
}

/// The feature columns a window of `spec`'s inputs has: the preprocessing's columns, or
/// [`IMAGE_FEATURES`] for an image model.
pub fn feature_columns(spec: &ModelSpec) -> Vec<String> {
    match &spec.preprocessing {
        Some(prep) => prep
            .features
            .iter()
            .map(|f| f.column().to_string())
            .collect(),
        None => IMAGE_FEATURES.iter().map(|s| s.to_string()).collect(),
    }
}

/// `reference` with its target column also under [`PREDICTION`] (the labels or values the
/// model was trained to give), so the window's predictions compare with it. A reference that
/// has a [`PREDICTION`] column already (an image model's: its training labels) keeps it.
pub fn prediction_reference(reference: &Summary, spec: &ModelSpec) -> Summary {
    let mut out = reference.clone();
    if out.columns.contains_key(PREDICTION) {
        return out;
    }
    let target = spec.preprocessing.as_ref().map(|p| match &p.target {
        TargetEncoding::Classes { column, .. } | TargetEncoding::Standardize { column, .. } => {
            column.clone()
        }
    });
    if let Some(t) = target.and_then(|t| reference.columns.get(&t)) {
        out.columns.insert(PREDICTION.to_string(), t.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;
    use crate::tabular::{InferOptions, infer_schema, read_csv};

    fn churn() -> (ModelSpec, Table) {
        let mut csv = String::from("age,country,exited\n");
        for i in 0..40 {
            let country = ["FR", "DE", "ES"][i % 3];
            csv.push_str(&format!("{}.5,{country},{}\n", 20 + i % 15, i % 2));
        }
        let table = read_csv(csv.as_bytes()).unwrap();
        let options = InferOptions {
            target: Some("exited".into()),
            ..Default::default()
        };
        let schema = infer_schema(&table, &options).unwrap();
        let summary = Summary::from_table(&table, &schema).unwrap();
        let prep = PreprocessSpec::build(&schema, &summary, &Default::default()).unwrap();
        (ModelSpec::churn_b3o(prep), table)
    }

    #[test]
    fn raw_cells_json_rows_and_model_inputs_give_the_same_window() {
        let (spec, table) = churn();
        let prep = spec.preprocessing.as_ref().unwrap();
        let mut from_table = Summary::default();
        observe_table(&mut from_table, prep, &table);
        let (inputs, n) = prep.transform(&table).unwrap();
        let mut from_inputs = Summary::default();
        observe_inputs(&mut from_inputs, prep, &inputs, n);
        let mut from_json = Summary::default();
        for r in 0..table.n_rows {
            let mut row = Map::new();
            for c in &table.columns {
                row.insert(c.name.clone(), c.values[r].clone().into());
            }
            observe_json_row(&mut from_json, prep, &row);
        }
        assert_eq!(from_table, from_json);
        assert_eq!(from_table.n_rows, 40);
        assert_eq!(
            from_table.categorical("country"),
            from_inputs.categorical("country")
        );
        let (a, b) = (
            from_table.numeric("age").unwrap(),
            from_inputs.numeric("age").unwrap(),
        );
        assert_eq!((a.count, a.missing), (b.count, b.missing));
        assert!(
            (a.mean() - b.mean()).abs() < 1e-4,
            "{} vs {}",
            a.mean(),
            b.mean()
        );
    }

    #[test]
    fn unseen_and_missing_cells_are_counted_and_categories_bounded() {
        let (spec, _) = churn();
        let prep = spec.preprocessing.as_ref().unwrap();
        let mut w = Summary::default();
        for i in 0..(MAX_CATEGORIES + 50) {
            let mut row = Map::new();
            row.insert("age".into(), Value::Null);
            row.insert("country".into(), format!("X{i}").into());
            observe_json_row(&mut w, prep, &row);
        }
        assert_eq!(w.numeric("age").unwrap().missing, 150);
        let c = w.categorical("country").unwrap();
        assert!(c.counts.len() <= MAX_CATEGORIES + 1, "{}", c.counts.len());
        assert_eq!(c.counts.values().sum::<u64>(), 150);
    }

    #[test]
    fn predictions_are_labels_and_confidences() {
        let (spec, _) = churn();
        let mut w = Summary::default();
        observe_outputs(&mut w, &spec, &[0.9, 0.2, 0.6], 3);
        let labels = &w.categorical(PREDICTION).unwrap().counts;
        assert_eq!(labels.get(&spec.labels[1]), Some(&2));
        assert_eq!(labels.get(&spec.labels[0]), Some(&1));
        assert_eq!(w.numeric(CONFIDENCE).unwrap().count, 3);
        // A wrong number of outputs adds nothing.
        observe_outputs(&mut w, &spec, &[0.5; 2], 3);
        assert_eq!(w.numeric(CONFIDENCE).unwrap().count, 3);
        let reference = prediction_reference(&Summary::default(), &spec);
        assert!(reference.columns.is_empty());
    }

    #[test]
    fn an_image_reference_is_image_statistics_and_labels_and_is_checked() {
        let dark = vec![0.0f32; 28 * 28];
        let bright = vec![1.0f32; 28 * 28];
        let images = [
            (&dark[..], "cat"),
            (&bright[..], "dog"),
            (&bright[..], "dog"),
        ];
        let reference = image_reference(images);
        assert_eq!(reference.n_rows, 3);
        let mean = reference.numeric(IMAGE_FEATURES[0]).unwrap();
        assert_eq!(mean.count, 3);
        assert!((mean.sum - 2.0).abs() < 1e-9, "{}", mean.sum);
        let labels = &reference.categorical(PREDICTION).unwrap().counts;
        assert_eq!(labels.get("dog"), Some(&2));
        assert_eq!(labels.get("cat"), Some(&1));

        let model = vec!["cat".to_string(), "dog".to_string()];
        check_image_reference(&reference, &model).unwrap();
        let err = check_image_reference(&reference, &model[..1]).unwrap_err();
        assert!(err.contains("`dog`"), "{err}");
        let mut extra = reference.clone();
        extra.columns.insert(
            "age".into(),
            ColumnSummary::Numeric(NumericSummary::default()),
        );
        let err = check_image_reference(&extra, &model).unwrap_err();
        assert!(err.contains("`age`"), "{err}");
        // A feature sent as categories is refused too.
        let mut swapped = reference;
        swapped.columns.insert(
            IMAGE_FEATURES[1].into(),
            ColumnSummary::Categorical(CategoricalSummary::default()),
        );
        assert!(check_image_reference(&swapped, &model).is_err());
    }
}
