//! Inference on an exported `.onnx` model with tract: the same code serves predictions natively
//! (the server's inference API) and in the browser (plain Rust, no wasm-bindgen here).
//!
//! The model is loaded once with a symbolic batch dimension, optimised and made runnable; every
//! [`OnnxPredictor::predict`] call then runs any number of rows. Inputs are model inputs, i.e.
//! already preprocessed (see `b3o_models::preprocess`), row-major.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;
use tract_onnx::tract_hir::infer::Factoid;

/// Why a model could not be loaded or run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InferenceError {
    #[error("not a usable ONNX model: {0}")]
    InvalidModel(String),
    #[error("input has {found} values, but {batch} rows of shape {row_shape:?} need {expected}")]
    InputSize {
        expected: usize,
        found: usize,
        batch: usize,
        row_shape: Vec<usize>,
    },
    #[error("inference failed: {0}")]
    Run(String),
}

/// A loaded, optimised model with one input `[batch, ..row_shape]` and one output
/// `[batch, ..]`, both f32.
#[derive(Debug, Clone)]
pub struct OnnxPredictor {
    plan: Arc<TypedRunnableModel>,
    row_shape: Vec<usize>,
    output_width: usize,
}

fn invalid(e: impl std::fmt::Display) -> InferenceError {
    InferenceError::InvalidModel(e.to_string())
}

impl OnnxPredictor {
    /// Parses, type-checks and optimises `onnx` for any batch size. Bytes that are not an ONNX
    /// model of the supported form are an [`InferenceError::InvalidModel`].
    pub fn load(onnx: &[u8]) -> Result<Self, InferenceError> {
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .map_err(invalid)?;
        if model.inputs.len() != 1 || model.outputs.len() != 1 {
            return Err(invalid(format!(
                "expected one input and one output, found {} and {}",
                model.inputs.len(),
                model.outputs.len()
            )));
        }
        // Whatever the file says about the first dimension, it becomes the symbolic batch.
        let declared = model.input_fact(0).map_err(invalid)?.clone();
        let row_shape: Vec<usize> = declared
            .shape
            .dims()
            .skip(1)
            .map(|d| d.concretize().and_then(|d| d.to_usize().ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid("the input's dimensions after the batch must be fixed"))?;
        if declared.shape.rank().concretize().is_none_or(|r| r < 2) {
            return Err(invalid(
                "the input must have a batch dimension and a row shape",
            ));
        }
        let batch = model.sym("batch");
        let mut shape: TVec<TDim> = tvec![batch.into()];
        shape.extend(row_shape.iter().map(|&d| d.to_dim()));
        model
            .set_input_fact(0, f32::fact(shape).into())
            .map_err(invalid)?;
        let typed = model.into_optimized().map_err(invalid)?;
        let out = typed.output_fact(0).map_err(invalid)?;
        let output_width = out
            .shape
            .iter()
            .skip(1)
            .map(|d| d.to_usize().ok())
            .product::<Option<usize>>()
            .ok_or_else(|| invalid("the output's dimensions after the batch must be fixed"))?;
        if out.datum_type != f32::datum_type() || out.rank() < 2 {
            return Err(invalid(format!(
                "the output must be [batch, ..] f32, found {out:?}"
            )));
        }
        let plan = typed.into_runnable().map_err(invalid)?;
        Ok(Self {
            plan,
            row_shape,
            output_width,
        })
    }

    /// Shape of one input row, without the batch dimension (`[13]`, `[1, 28, 28]`).
    pub fn row_shape(&self) -> &[usize] {
        &self.row_shape
    }

    /// Values per input row.
    pub fn row_len(&self) -> usize {
        self.row_shape.iter().product()
    }

    /// Values per output row.
    pub fn output_width(&self) -> usize {
        self.output_width
    }

    /// Runs `batch` rows (`input` row-major, `batch * row_len()` values) and returns
    /// `batch * output_width()` values, row-major.
    pub fn predict(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, InferenceError> {
        let expected = batch * self.row_len();
        if input.len() != expected {
            return Err(InferenceError::InputSize {
                expected,
                found: input.len(),
                batch,
                row_shape: self.row_shape.clone(),
            });
        }
        if batch == 0 {
            return Ok(Vec::new());
        }
        let mut shape = vec![batch];
        shape.extend(&self.row_shape);
        let run = |e: TractError| InferenceError::Run(e.to_string());
        let tensor = Tensor::from_shape(&shape, input).map_err(run)?;
        let outputs = self.plan.run(tvec!(tensor.into_tvalue())).map_err(run)?;
        let view = outputs[0].to_plain_array_view::<f32>().map_err(run)?;
        if view.len() != batch * self.output_width {
            return Err(InferenceError::Run(format!(
                "unexpected output shape {:?}",
                view.shape()
            )));
        }
        Ok(view.iter().copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use b3o_models::Device;
    use b3o_models::Task;
    use b3o_models::model::{ModelSpec, predict};
    use b3o_models::onnx::export_onnx;
    use b3o_models::preprocess::{
        FeatureTransform, PREPROCESS_VERSION, PreprocessSpec, TargetEncoding,
    };

    use super::*;

    fn churn_like() -> ModelSpec {
        let prep = PreprocessSpec {
            version: PREPROCESS_VERSION,
            features: (0..11)
                .map(|i| FeatureTransform::Standardize {
                    column: format!("x{i}"),
                    mean: 0.0,
                    std: 1.0,
                    impute: 0.0,
                })
                .collect(),
            target: TargetEncoding::Classes {
                column: "y".into(),
                labels: vec!["no".into(), "yes".into()],
            },
            task: Task::BinaryClassification,
        };
        ModelSpec::churn_b3o(prep)
    }

    /// Deterministic inputs in [-2, 2) (or [0, 1) for images) without pulling in rand.
    fn inputs(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 10_000) as f32 / 10_000.0
            })
            .collect()
    }

    fn check_parity(spec: &ModelSpec, seed: u64) {
        let weights = spec.init_weights(seed);
        let predictor = OnnxPredictor::load(&export_onnx(spec, &weights).unwrap()).unwrap();
        assert_eq!(predictor.row_shape(), spec.input_shape.as_slice());
        assert_eq!(predictor.output_width(), spec.output_dim());
        // The same plan serves every batch size.
        for batch in [1, 7, 64] {
            let x: Vec<f32> = inputs(batch * spec.input_dim(), seed as u32 + batch as u32)
                .into_iter()
                .map(|v| {
                    if spec.preprocessing.is_some() {
                        4.0 * v - 2.0
                    } else {
                        v
                    }
                })
                .collect();
            let expected = predict(spec, &weights, &x, batch, &Device::flex()).unwrap();
            let got = predictor.predict(&x, batch).unwrap();
            assert_eq!(got.len(), expected.values.len());
            let worst = got
                .iter()
                .zip(&expected.values)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst <= 1e-4,
                "{:?} batch {batch}: worst difference {worst}",
                spec.architecture
            );
        }
    }

    #[test]
    fn mlp_matches_burn_at_every_batch_size() {
        check_parity(&churn_like(), 11);
    }

    #[test]
    fn cnn_matches_burn_at_every_batch_size() {
        check_parity(&ModelSpec::mnist_cnn(), 12);
    }

    #[test]
    fn garbage_is_a_typed_error_not_a_panic() {
        let spec = ModelSpec::mnist_cnn();
        let good = export_onnx(&spec, &spec.init_weights(0)).unwrap();
        let truncated = &good[..good.len() / 2];
        for bytes in [&b""[..], b"not an onnx file at all", truncated, &good[..40]] {
            assert!(matches!(
                OnnxPredictor::load(bytes),
                Err(InferenceError::InvalidModel(_))
            ));
        }
    }

    #[test]
    fn wrong_input_sizes_are_rejected() {
        let spec = churn_like();
        let p = OnnxPredictor::load(&export_onnx(&spec, &spec.init_weights(0)).unwrap()).unwrap();
        let err = p.predict(&[0.0; 12], 1).unwrap_err();
        assert_eq!(
            err,
            InferenceError::InputSize {
                expected: 11,
                found: 12,
                batch: 1,
                row_shape: vec![11]
            }
        );
        assert!(p.predict(&[0.0; 22], 3).is_err());
        assert_eq!(p.predict(&[], 0).unwrap(), Vec::<f32>::new());
    }
}
