//! Inference on an exported `.onnx` model: the same code serves predictions natively (the
//! server's inference API) and in the browser (plain Rust, no wasm-bindgen here).
//!
//! Two ways in, one predictor:
//! - [`OnnxPredictor::load_b3o`] (feature `infer`): a graph B3O exported
//!   (`b3o_models::onnx::export_onnx`), checked node for node against the spec it carries
//!   ([`graph`]) and evaluated directly ([`direct`]). No ONNX operator library and no graph
//!   runtime: this is what keeps the browser's inference bundle small.
//! - [`OnnxPredictor::load`] (feature `onnx`): any ONNX model of the supported form, through
//!   tract-onnx's parser and its full operator set, loaded once with a symbolic batch
//!   dimension, optimised and made runnable.
//!
//! Every [`OnnxPredictor::predict`] call runs any number of rows. Inputs are model inputs, i.e.
//! already preprocessed (see `b3o_models::preprocess`), row-major. With feature `tract`,
//! [`single`] is the server's batch-1 tract plan of a B3O graph.

pub mod direct;
pub mod graph;
#[cfg(feature = "tract")]
pub mod single;
#[cfg(feature = "tract")]
pub mod tract_graph;

use std::sync::Arc;

#[cfg(feature = "onnx")]
use tract_core::prelude::*;
#[cfg(feature = "onnx")]
use tract_onnx::prelude::InferenceModelExt;
#[cfg(feature = "onnx")]
use tract_onnx::tract_core::internal::DimLike;
#[cfg(feature = "onnx")]
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

impl InferenceError {
    /// One row of `found` values where a row has `row_len`.
    pub fn row_size(row_len: usize, found: usize) -> Self {
        Self::InputSize {
            expected: row_len,
            found,
            batch: 1,
            row_shape: vec![row_len],
        }
    }
}

/// A loaded, optimised model with one input `[batch, ..row_shape]` and one output
/// `[batch, ..]`, both f32.
#[derive(Debug, Clone)]
pub struct OnnxPredictor {
    plan: Plan,
    row_shape: Vec<usize>,
    output_width: usize,
}

/// What runs the rows.
#[derive(Debug, Clone)]
enum Plan {
    /// A B3O network, evaluated directly.
    Direct(Arc<direct::Network>),
    /// Any supported ONNX graph, through tract-onnx.
    #[cfg(feature = "onnx")]
    Tract(Arc<TypedRunnableModel>),
}

fn invalid(e: impl std::fmt::Display) -> InferenceError {
    InferenceError::InvalidModel(e.to_string())
}

impl OnnxPredictor {
    /// A graph B3O exported, evaluated directly for any batch size, and the spec it carries.
    /// Bytes that are not such a graph (any other ONNX file included) are an
    /// [`InferenceError::InvalidModel`].
    pub fn load_b3o(onnx: &[u8]) -> Result<(Self, b3o_models::ModelSpec), InferenceError> {
        let (spec, weights) = graph::decode(onnx).map_err(invalid)?;
        let predictor = Self::from_spec(&spec, &weights)?;
        Ok((predictor, spec))
    }

    /// The network of `spec` with `weights`, ready to run rows.
    pub fn from_spec(
        spec: &b3o_models::ModelSpec,
        weights: &b3o_models::WeightSet,
    ) -> Result<Self, InferenceError> {
        let network = direct::Network::new(spec, weights)?;
        Ok(Self {
            plan: Plan::Direct(Arc::new(network)),
            row_shape: spec.input_shape.clone(),
            output_width: spec.output_dim(),
        })
    }

    /// Parses, type-checks and optimises `onnx` for any batch size. Bytes that are not an ONNX
    /// model of the supported form are an [`InferenceError::InvalidModel`].
    #[cfg(feature = "onnx")]
    pub fn load(onnx: &[u8]) -> Result<Self, InferenceError> {
        // tract panics on some malformed graphs (fuzzing found a `pads` attribute too short
        // for its axes, and a graph output naming no tensor): those are invalid models, not
        // crashes. Without unwinding (wasm-release) a panic still aborts, as everywhere there.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::load_unguarded(onnx)))
            .unwrap_or_else(|_| {
                Err(invalid(
                    "the ONNX graph is malformed (the ONNX reader failed on it)",
                ))
            })
    }

    #[cfg(feature = "onnx")]
    fn load_unguarded(onnx: &[u8]) -> Result<Self, InferenceError> {
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
        // A row's values are counted with checked arithmetic once, here; `row_len` relies on it.
        if row_shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .is_none()
        {
            return Err(invalid(format!(
                "the input row shape {row_shape:?} is too large"
            )));
        }
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
            .try_fold(1usize, |acc, d| acc.checked_mul(d?))
            .ok_or_else(|| invalid("the output's dimensions after the batch must be fixed"))?;
        if out.datum_type != f32::datum_type() || out.rank() < 2 {
            return Err(invalid(format!(
                "the output must be [batch, ..] f32, found {out:?}"
            )));
        }
        let plan = typed.into_runnable().map_err(invalid)?;
        Ok(Self {
            plan: Plan::Tract(plan),
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
        // Saturating: no real input row can hold usize::MAX values, so no input matches it.
        self.row_shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .unwrap_or(usize::MAX)
    }

    /// Values per output row.
    pub fn output_width(&self) -> usize {
        self.output_width
    }

    /// Runs `batch` rows (`input` row-major, `batch * row_len()` values) and returns
    /// `batch * output_width()` values, row-major.
    pub fn predict(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, InferenceError> {
        // Checked: `batch` may come from a request; a product that overflows is a mismatch,
        // not a wrapped-around size that happens to equal the input's length.
        let expected = batch.checked_mul(self.row_len());
        if expected != Some(input.len()) {
            return Err(InferenceError::InputSize {
                expected: expected.unwrap_or(usize::MAX),
                found: input.len(),
                batch,
                row_shape: self.row_shape.clone(),
            });
        }
        if batch == 0 {
            return Ok(Vec::new());
        }
        match &self.plan {
            Plan::Direct(network) => Ok(network.run(input)),
            #[cfg(feature = "onnx")]
            Plan::Tract(plan) => self.run_tract(plan, input, batch),
        }
    }

    #[cfg(feature = "onnx")]
    fn run_tract(
        &self,
        plan: &Arc<TypedRunnableModel>,
        input: &[f32],
        batch: usize,
    ) -> Result<Vec<f32>, InferenceError> {
        let mut shape = vec![batch];
        shape.extend(&self.row_shape);
        let run = |e: TractError| InferenceError::Run(e.to_string());
        let tensor = Tensor::from_shape(&shape, input).map_err(run)?;
        let outputs = plan.run(tvec!(tensor.into_tvalue())).map_err(run)?;
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

// The parity tests compare with burn, which the `train` feature brings, and with tract-onnx.
#[cfg(all(test, feature = "train", feature = "onnx"))]
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
        let onnx = export_onnx(spec, &weights).unwrap();
        let general = OnnxPredictor::load(&onnx).unwrap();
        let (b3o, carried) = OnnxPredictor::load_b3o(&onnx).unwrap();
        assert_eq!(&carried, spec);
        for predictor in [general, b3o] {
            assert_eq!(predictor.row_shape(), spec.input_shape.as_slice());
            assert_eq!(predictor.output_width(), spec.output_dim());
            check_outputs(spec, &weights, &predictor, seed);
        }
    }

    fn check_outputs(
        spec: &ModelSpec,
        weights: &b3o_models::WeightSet,
        predictor: &OnnxPredictor,
        seed: u64,
    ) {
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
            let expected = predict(spec, weights, &x, batch, &Device::flex()).unwrap();
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
    fn leaky_mlps_and_regression_match_burn() {
        use b3o_models::model::{Activation, Architecture, MlpConfig};
        let mut spec = churn_like();
        spec.architecture = Architecture::Mlp(MlpConfig {
            hidden: vec![7, 5],
            activation: Activation::LeakyRelu { slope: 0.1 },
        });
        check_parity(&spec, 3);
        // Regression: the output is decoded to the target's unit inside the graph.
        let mut prep = spec.preprocessing.clone().unwrap();
        prep.task = Task::Regression;
        prep.target = TargetEncoding::Standardize {
            column: "y".into(),
            mean: 50.0,
            std: 4.0,
        };
        let mut reg = ModelSpec::tabular(prep, vec![6], Activation::Relu);
        reg.task = Task::Regression;
        check_parity(&reg, 4);
        // Multiclass MLP.
        let mut multi = churn_like();
        multi.task = Task::MulticlassClassification;
        multi.labels = vec!["a".into(), "b".into(), "c".into()];
        if let Some(p) = multi.preprocessing.as_mut() {
            p.task = Task::MulticlassClassification;
            p.target = TargetEncoding::Classes {
                column: "y".into(),
                labels: multi.labels.clone(),
            };
        }
        check_parity(&multi, 5);
    }

    #[test]
    fn only_graphs_b3o_exported_load_on_the_b3o_path() {
        use b3o_models::onnx::to_model_proto;
        use prost::Message;
        let spec = churn_like();
        let weights = spec.init_weights(1);
        let mut proto = to_model_proto(&spec, &weights).unwrap();
        let graph = proto.graph.as_mut().unwrap();
        // One activation swapped: the spec no longer describes the graph.
        graph.node[1].op_type = "Sigmoid".into();
        let err = OnnxPredictor::load_b3o(&proto.encode_to_vec()).unwrap_err();
        assert!(err.to_string().contains("graph"), "{err}");
        let mut proto = to_model_proto(&spec, &weights).unwrap();
        proto.metadata_props.clear();
        let err = OnnxPredictor::load_b3o(&proto.encode_to_vec()).unwrap_err();
        assert!(err.to_string().contains("b3o.spec"), "{err}");
        for bytes in [
            &b""[..],
            b"garbage",
            &export_onnx(&spec, &weights).unwrap()[..30],
        ] {
            assert!(matches!(
                OnnxPredictor::load_b3o(bytes),
                Err(InferenceError::InvalidModel(_))
            ));
        }
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

    /// Regression (issue #19, finding 1): `batch * row_len` was unchecked, so a batch whose
    /// product wraps around 2^64 to the input's length ran (debug builds panicked).
    #[test]
    fn a_batch_whose_size_wraps_around_is_a_size_error() {
        let spec = churn_like();
        let p = OnnxPredictor::load(&export_onnx(&spec, &spec.init_weights(0)).unwrap()).unwrap();
        // 11 * wrap = 2^64 + 11 - (2^64 mod 11): wraps to a handful of values.
        let wrap = usize::MAX / 11 + 1;
        let wrapped = wrap.wrapping_mul(11);
        let input = vec![0.0f32; wrapped];
        assert!(matches!(
            p.predict(&input, wrap),
            Err(InferenceError::InputSize { .. })
        ));
    }
}
