use std::ops::ControlFlow;
use std::time::Instant;

use b3o_models::dataset::{Dataset, train_test_split};
use b3o_models::model::ModelSpec;
use b3o_models::preprocess::{PreprocessOptions, PreprocessSpec};
use b3o_models::stats::Summary;
use b3o_models::tabular::{ExcludeReason, InferOptions, infer_schema, read_csv};
use b3o_models::train::{Optimizer, TrainConfig, evaluate, train_local};
use b3o_models::{Device, Task};

#[test]
fn churn_reaches_85_percent_with_identifiers_excluded() {
    let table = read_csv(&crate::dataset("churn_modelling.csv")).unwrap();
    assert_eq!(table.n_rows, 10_000);
    let schema = infer_schema(&table, &InferOptions::default()).unwrap();
    assert_eq!(schema.target.name, "Exited");
    assert_eq!(schema.target.task, Task::BinaryClassification);
    let excluded: Vec<(&str, ExcludeReason)> = schema
        .excluded
        .iter()
        .map(|e| (e.column.as_str(), e.reason))
        .collect();
    assert_eq!(
        excluded,
        vec![
            ("RowNumber", ExcludeReason::Sequence),
            ("CustomerId", ExcludeReason::IdentifierName),
            ("Surname", ExcludeReason::HighCardinality),
        ]
    );
    assert_eq!(schema.features.len(), 10);

    let (train_idx, test_idx) = train_test_split(table.n_rows, 0.2, 42);
    let train_table = table.select_rows(&train_idx);
    let test_table = table.select_rows(&test_idx);
    // Statistics as three clients would share them, merged on the server.
    let mut summary = Summary::default();
    for part in train_idx.chunks(train_idx.len().div_ceil(3)) {
        summary
            .merge(&Summary::from_table(&table.select_rows(part), &schema).unwrap())
            .unwrap();
    }
    let prep = PreprocessSpec::build(&schema, &summary, &PreprocessOptions::default()).unwrap();
    // 8 numeric columns, Geography (3 + "other") and Gender (2 + "other").
    assert_eq!(prep.input_dim(), 15);
    let spec = ModelSpec::churn_b3o(prep.clone());
    let train = Dataset::from_table(&prep, &train_table).unwrap();
    let test = Dataset::from_table(&prep, &test_table).unwrap();

    let cfg = TrainConfig {
        epochs: 10,
        batch_size: 32,
        optimizer: Optimizer::Adam,
        lr: 1e-3,
        fedprox_mu: 0.0,
        seed: 7,
    };
    let start = Instant::now();
    let mut batches = 0;
    let out = train_local(
        &spec,
        &spec.init_weights(7),
        &train,
        &cfg,
        &Device::flex(),
        &mut |_| {
            batches += 1;
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    let metrics = evaluate(&spec, &out.weights, &test).unwrap();
    eprintln!(
        "churn: {batches} batches in {:?}; train {:?}; test {metrics:?}",
        start.elapsed(),
        out.metrics
    );
    assert_eq!(out.num_samples, 8_000);
    assert!(metrics.accuracy.unwrap() >= 0.85, "{metrics:?}");
    assert!(metrics.roc_auc.unwrap() >= 0.80, "{metrics:?}");
}
