//! What the fuzz targets and the seed generator share: small but real model specs whose
//! layouts, CSV headers and ONNX exports the targets run against.
//!
//! Built without libFuzzer (the seed generator is a normal binary), so nothing here may use
//! `libfuzzer-sys`.

use b3o_models::ModelSpec;
use b3o_models::Task;
use b3o_models::model::Activation;
use b3o_models::preprocess::{
    FeatureTransform, PREPROCESS_VERSION, PreprocessSpec, TargetEncoding,
};
use b3o_models::weights::{TensorSpec, WeightLayout};

/// The churn dataset's feature columns: numeric ones are standardised, `Geography` and `Gender`
/// one-hot encoded (as `PreprocessSpec::build` makes them from the real file).
pub const CHURN_NUMERIC: [&str; 8] = [
    "CreditScore",
    "Age",
    "Tenure",
    "Balance",
    "NumOfProducts",
    "HasCrCard",
    "IsActiveMember",
    "EstimatedSalary",
];

/// The header of a churn-like CSV (identifier columns and the target included).
pub const CHURN_HEADER: &str = "RowNumber,CustomerId,Surname,CreditScore,Geography,Gender,Age,\
Tenure,Balance,NumOfProducts,HasCrCard,IsActiveMember,EstimatedSalary,Exited";

fn standardize(column: &str, mean: f64, std: f64) -> FeatureTransform {
    FeatureTransform::Standardize {
        column: column.to_string(),
        mean,
        std,
        impute: mean,
    }
}

fn one_hot(column: &str, vocabulary: &[&str]) -> FeatureTransform {
    FeatureTransform::OneHot {
        column: column.to_string(),
        vocabulary: vocabulary.iter().map(|v| v.to_string()).collect(),
        impute: vocabulary.first().map(|v| v.to_string()),
    }
}

fn binary_target(column: &str) -> TargetEncoding {
    TargetEncoding::Classes {
        column: column.to_string(),
        labels: vec!["0".into(), "1".into()],
    }
}

/// The churn model: B3O's 128-64-32 MLP over the churn features (15 inputs).
pub fn churn_spec() -> ModelSpec {
    let mut features = vec![standardize("CreditScore", 650.0, 96.0)];
    features.push(one_hot("Geography", &["France", "Germany", "Spain"]));
    features.push(one_hot("Gender", &["Female", "Male"]));
    features.extend(CHURN_NUMERIC[1..].iter().map(|c| standardize(c, 10.0, 3.0)));
    ModelSpec::churn_b3o(PreprocessSpec {
        version: PREPROCESS_VERSION,
        features,
        target: binary_target("Exited"),
        task: Task::BinaryClassification,
    })
}

/// A two-feature tabular model with one-letter column names (`a` numeric, `b` categorical over
/// `x`/`y`, target `t`): short enough for the fuzzer to find a matching header by mutation.
pub fn tiny_spec() -> ModelSpec {
    ModelSpec::tabular(
        PreprocessSpec {
            version: PREPROCESS_VERSION,
            features: vec![standardize("a", 0.0, 1.0), one_hot("b", &["x", "y"])],
            target: binary_target("t"),
            task: Task::BinaryClassification,
        },
        vec![4],
        Activation::Relu,
    )
}

/// A tabular regression model over the tiny spec's features (exercises the `Mul`/`Add` output).
pub fn tiny_regression_spec() -> ModelSpec {
    ModelSpec::tabular(
        PreprocessSpec {
            version: PREPROCESS_VERSION,
            features: vec![standardize("a", 0.0, 1.0), one_hot("b", &["x", "y"])],
            target: TargetEncoding::Standardize {
                column: "t".into(),
                mean: 5.0,
                std: 2.0,
            },
            task: Task::Regression,
        },
        vec![3],
        Activation::LeakyRelu { slope: 0.01 },
    )
}

/// A custom group layout of two small tensors (what `ModelTemplate::Custom` carries).
pub fn tiny_layout() -> WeightLayout {
    WeightLayout(vec![
        TensorSpec::new("w", vec![3, 2]),
        TensorSpec::new("b", vec![2]),
    ])
}

thread_local! {
    /// The last panic [`unwind_panics_from`] let unwind on this thread, for the report when
    /// nothing caught it.
    static TOLERATED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Lets panics raised inside the given dependencies (matched on the panic's source path, e.g.
/// `"/zune-jpeg-"`) unwind instead of aborting at once, for a target whose code under test
/// catches them (`std::panic::catch_unwind`) because the dependency is known to panic on bad
/// input. Call from the target's `init`, and [`forget_tolerated_panic`] at the start of each
/// input. libFuzzer's hook (abort on any panic) stays in charge of every other panic; a
/// tolerated panic that nobody catches still aborts when it reaches the harness ("panic in a
/// function that cannot unwind"), and is then printed first.
pub fn unwind_panics_from(dependencies: &'static [&'static str]) {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let inside = info
            .location()
            .is_some_and(|l| dependencies.iter().any(|d| l.file().contains(d)));
        if inside {
            TOLERATED.with(|t| *t.borrow_mut() = Some(info.to_string()));
            return;
        }
        if let Some(earlier) = TOLERATED.with(|t| t.borrow_mut().take()) {
            eprintln!("this input first raised a panic that nothing caught:\n{earlier}");
        }
        abort(info);
    }));
}

/// Forgets a tolerated panic of an earlier input (see [`unwind_panics_from`]).
pub fn forget_tolerated_panic() {
    TOLERATED.with(|t| t.borrow_mut().take());
}
