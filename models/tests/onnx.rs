//! The ONNX export against tract: same outputs as burn within 1e-4 on 1,000 random inputs.

use b3o_models::Device;
use b3o_models::Task;
use b3o_models::model::{Activation, Architecture, MlpConfig, ModelSpec, predict};
use b3o_models::onnx::export_onnx;
use b3o_models::preprocess::{
    FeatureTransform, PREPROCESS_VERSION, PreprocessSpec, TargetEncoding,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tract_onnx::prelude::*;

const N: usize = 1000;

fn mlp(task: Task, labels: usize, inputs: usize, activation: Activation) -> ModelSpec {
    ModelSpec {
        architecture: Architecture::Mlp(MlpConfig {
            hidden: vec![16, 8],
            activation,
        }),
        preprocessing: None,
        task,
        labels: (0..labels).map(|i| format!("c{i}")).collect(),
        input_shape: vec![inputs],
        ood: None,
    }
}

/// Regression with a target standardisation, so the export's de-standardisation is checked.
fn regression() -> ModelSpec {
    let prep = PreprocessSpec {
        version: PREPROCESS_VERSION,
        features: (0..5)
            .map(|i| FeatureTransform::Standardize {
                column: format!("x{i}"),
                mean: 0.0,
                std: 1.0,
                impute: 0.0,
            })
            .collect(),
        target: TargetEncoding::Standardize {
            column: "y".into(),
            mean: 250.0,
            std: 40.0,
        },
        task: Task::Regression,
    };
    ModelSpec::tabular(prep, vec![12, 6], Activation::Relu)
}

fn check(spec: &ModelSpec, seed: u64) {
    let weights = spec.init_weights(seed);
    let bytes = export_onnx(spec, &weights).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let inputs: Vec<f32> = (0..N * spec.input_dim())
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let expected = predict(spec, &weights, &inputs, N, &Device::flex()).unwrap();

    let mut shape = vec![N];
    shape.extend(&spec.input_shape);
    let model = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .unwrap()
        .with_input_fact(0, f32::fact(&shape).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = Tensor::from_shape(&shape, &inputs).unwrap();
    let out = model.run(tvec!(input.into_tvalue())).unwrap();
    let got = out[0].to_plain_array_view::<f32>().unwrap();
    assert_eq!(got.shape(), &[N, spec.output_dim()]);
    let got: Vec<f32> = got.iter().copied().collect();
    let worst = got
        .iter()
        .zip(&expected.values)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-4,
        "{:?}: worst relative difference {worst}",
        spec.architecture
    );
}

#[test]
fn mlp_binary_matches_burn() {
    check(&mlp(Task::BinaryClassification, 2, 13, Activation::Relu), 1);
}

#[test]
fn mlp_multiclass_matches_burn() {
    check(
        &mlp(
            Task::MulticlassClassification,
            4,
            7,
            Activation::LeakyRelu { slope: 0.1 },
        ),
        2,
    );
}

#[test]
fn mlp_regression_matches_burn() {
    check(&regression(), 3);
}

#[test]
fn cnn_matches_burn() {
    check(&ModelSpec::mnist_cnn(), 4);
}
