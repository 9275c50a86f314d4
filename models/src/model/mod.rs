//! Model specifications and their burn implementations.
//!
//! A [`ModelSpec`] (serde) is everything needed to rebuild a model anywhere: architecture,
//! preprocessing, task, output labels and input shape. Its parameters travel as a
//! [`WeightSet`] whose [`WeightLayout`] the spec defines; [`Network`] is the burn module built
//! from a spec and a weight set.
//!
//! # Tensor names and layouts
//!
//! | Architecture | Tensors (shape) |
//! | --- | --- |
//! | MLP | `layers.{i}.weight` `[in, out]`, `layers.{i}.bias` `[out]` |
//! | CNN | `conv1.weight` `[8, 1, 3, 3]`, `conv1.bias` `[8]`, `conv2.weight` `[16, 8, 3, 3]`, `conv2.bias` `[16]`, `fc.weight` `[400, 10]`, `fc.bias` `[10]` |
//!
//! Linear weights are `[in, out]` as in burn and in ONNX `Gemm` without `transB`/`MatMul`; this is
//! the transpose of PyTorch's `nn.Linear.weight` (`[out, in]`) and equal to Keras' `Dense` kernel.
//! Convolution weights are `[out_channels, in_channels, kh, kw]` as in burn, PyTorch and ONNX.
//! All data is row-major.

#[cfg(feature = "train")]
mod convert;
#[cfg(feature = "train")]
mod network;
#[cfg(feature = "train")]
pub(crate) mod predict;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

#[cfg(feature = "train")]
pub use network::{Cnn, Mlp, Network};
#[cfg(feature = "train")]
pub use predict::{Prediction, predict, predict_async};

use crate::preprocess::PreprocessSpec;
use crate::task::Task;
use crate::weights::{NamedTensor, TensorSpec, WeightLayout, WeightSet};

/// Hidden-layer activation of an MLP.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Relu,
    LeakyRelu {
        slope: f64,
    },
}

/// A fully connected network for tabular data.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Widths of the hidden layers, input to output.
    pub hidden: Vec<usize>,
    pub activation: Activation,
}

/// The small MNIST-style CNN for `[1, 28, 28]` images:
/// conv(8, 3x3) - relu - maxpool(2) - conv(16, 3x3) - relu - maxpool(2) - linear(400 -> classes),
/// valid padding, stride 1.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CnnConfig {
    pub conv1_channels: usize,
    pub conv2_channels: usize,
}

impl Default for CnnConfig {
    fn default() -> Self {
        Self {
            conv1_channels: 8,
            conv2_channels: 16,
        }
    }
}

/// The network family and its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Architecture {
    Mlp(MlpConfig),
    Cnn(CnnConfig),
}

#[cfg(feature = "openapi")]
impl Architecture {
    fn schema_variants() -> Vec<crate::openapi::Tagged> {
        use utoipa::PartialSchema;
        vec![
            crate::openapi::Tagged {
                value: "mlp",
                component: "MlpArchitecture",
                inner: MlpConfig::schema(),
            },
            crate::openapi::Tagged {
                value: "cnn",
                component: "CnnArchitecture",
                inner: CnnConfig::schema(),
            },
        ]
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Architecture {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::tagged_enum(
            "kind",
            "The network family and its hyper-parameters.",
            &Self::schema_variants(),
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Architecture {
    fn schemas(out: &mut crate::openapi::Components) {
        crate::openapi::tagged_components("kind", Self::schema_variants(), out);
        <MlpConfig as utoipa::ToSchema>::schemas(out);
        <CnnConfig as utoipa::ToSchema>::schemas(out);
    }
}

/// Everything needed to rebuild, train, serve and export a model.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub architecture: Architecture,
    /// Tabular preprocessing; `None` for images (inputs are pixels in `[0, 1]`).
    pub preprocessing: Option<PreprocessSpec>,
    pub task: Task,
    /// Class labels in output order (binary: `[negative, positive]`); empty for regression.
    pub labels: Vec<String>,
    /// Shape of one input without the batch dimension: `[features]` or `[1, 28, 28]`.
    pub input_shape: Vec<usize>,
    /// Out-of-distribution calibration of an image model (see [`crate::ood`]): what its
    /// training images looked like. Absent in older specs and for tabular models (their
    /// checks use the preprocessing's means, standard deviations and vocabularies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ood: Option<crate::ood::ImageCalibration>,
}

/// Why a spec or weight set cannot make a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("invalid model spec: {0}")]
    InvalidSpec(String),
    #[error("weights do not fit the model: {0}")]
    LayoutMismatch(String),
    #[error("input has {found} values per row, the model expects {expected}")]
    InputSize { expected: usize, found: usize },
    #[error("backend error: {0}")]
    Backend(String),
}

impl ModelSpec {
    /// A tabular MLP over `preprocessing`'s inputs.
    pub fn tabular(
        preprocessing: PreprocessSpec,
        hidden: Vec<usize>,
        activation: Activation,
    ) -> Self {
        let task = preprocessing.task;
        Self {
            architecture: Architecture::Mlp(MlpConfig { hidden, activation }),
            task,
            labels: preprocessing.labels().to_vec(),
            input_shape: vec![preprocessing.input_dim()],
            preprocessing: Some(preprocessing),
            ood: None,
        }
    }

    /// The original B3O churn network: inputs -> 128 -> 64 -> 32 -> 1, ReLU, sigmoid output
    /// (the Keras `Dense(128)`, `Dense(64)`, `Dense(32)`, `Dense(1, sigmoid)` stack).
    pub fn churn_b3o(preprocessing: PreprocessSpec) -> Self {
        Self::tabular(preprocessing, vec![128, 64, 32], Activation::Relu)
    }

    /// The small CNN over 28x28 greyscale images with labels `"0"`..`"9"`.
    pub fn mnist_cnn() -> Self {
        Self {
            architecture: Architecture::Cnn(CnnConfig::default()),
            preprocessing: None,
            task: Task::MulticlassClassification,
            labels: (0..10).map(|d| d.to_string()).collect(),
            input_shape: vec![1, 28, 28],
            ood: None,
        }
    }

    /// Values per input row.
    pub fn input_dim(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Width of the network's output (logits).
    pub fn output_dim(&self) -> usize {
        self.task.output_dim(self.labels.len())
    }

    /// Checks that the parts of the spec agree with each other.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::InvalidSpec(m));
        // Specs arrive as JSON: bound every dimension first so no product below can overflow
        // or allocate without limit.
        let widths = match &self.architecture {
            Architecture::Mlp(cfg) => cfg.hidden.clone(),
            Architecture::Cnn(cfg) => vec![cfg.conv1_channels, cfg.conv2_channels],
        };
        let inputs = self
            .input_shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if inputs.is_none_or(|n| n > MAX_INPUTS)
            || widths.len() > MAX_LAYERS
            || widths.iter().any(|&w| w > MAX_DIM)
            || self.labels.len() > MAX_DIM
        {
            return bad(format!(
                "too large: at most {MAX_INPUTS} inputs, {MAX_LAYERS} layers and {MAX_DIM} units or labels"
            ));
        }
        if self.layout().num_params() > MAX_PARAMS {
            return bad(format!("more than {MAX_PARAMS} parameters"));
        }
        match self.task {
            Task::BinaryClassification if self.labels.len() != 2 => {
                return bad(format!(
                    "binary classification needs 2 labels, got {}",
                    self.labels.len()
                ));
            }
            Task::MulticlassClassification if self.labels.len() < 2 => {
                return bad(format!(
                    "multiclass classification needs labels, got {}",
                    self.labels.len()
                ));
            }
            _ => {}
        }
        if let Some(cal) = &self.ood {
            cal.check().map_err(ModelError::InvalidSpec)?;
        }
        if let Some(p) = &self.preprocessing
            && (p.input_dim() != self.input_dim()
                || p.task != self.task
                || p.labels() != self.labels.as_slice())
        {
            return bad("preprocessing does not match input shape, task or labels".into());
        }
        match &self.architecture {
            Architecture::Mlp(cfg) => {
                if self.input_shape.len() != 1 || self.input_dim() == 0 {
                    return bad(format!(
                        "an MLP needs a [features] input shape, got {:?}",
                        self.input_shape
                    ));
                }
                if cfg.hidden.contains(&0) {
                    return bad("hidden layers need at least one unit".into());
                }
            }
            Architecture::Cnn(cfg) => {
                if self.input_shape != [1, 28, 28] {
                    return bad(format!(
                        "the CNN needs a [1, 28, 28] input, got {:?}",
                        self.input_shape
                    ));
                }
                if cfg.conv1_channels == 0 || cfg.conv2_channels == 0 {
                    return bad("convolutions need at least one channel".into());
                }
            }
        }
        Ok(())
    }

    /// Names and shapes of the parameters (see the module docs for conventions), with the
    /// fan-in used to initialise each.
    fn specs_with_fan_in(&self) -> Vec<(TensorSpec, usize)> {
        let out = self.output_dim();
        match &self.architecture {
            Architecture::Mlp(cfg) => {
                let mut dims = vec![self.input_dim()];
                dims.extend(&cfg.hidden);
                dims.push(out);
                dims.windows(2)
                    .enumerate()
                    .flat_map(|(i, w)| {
                        [
                            (
                                TensorSpec::new(format!("layers.{i}.weight"), vec![w[0], w[1]]),
                                w[0],
                            ),
                            (
                                TensorSpec::new(format!("layers.{i}.bias"), vec![w[1]]),
                                w[0],
                            ),
                        ]
                    })
                    .collect()
            }
            Architecture::Cnn(cfg) => {
                let (c1, c2) = (cfg.conv1_channels, cfg.conv2_channels);
                let flat = c2 * CNN_FINAL_SIDE * CNN_FINAL_SIDE;
                vec![
                    (TensorSpec::new("conv1.weight", vec![c1, 1, 3, 3]), 9),
                    (TensorSpec::new("conv1.bias", vec![c1]), 9),
                    (TensorSpec::new("conv2.weight", vec![c2, c1, 3, 3]), c1 * 9),
                    (TensorSpec::new("conv2.bias", vec![c2]), c1 * 9),
                    (TensorSpec::new("fc.weight", vec![flat, out]), flat),
                    (TensorSpec::new("fc.bias", vec![out]), flat),
                ]
            }
        }
    }

    /// The parameter layout every weight set of this model has. For a spec read from untrusted
    /// JSON, call [`ModelSpec::validate`] first: it bounds the sizes multiplied here.
    pub fn layout(&self) -> WeightLayout {
        WeightLayout(
            self.specs_with_fan_in()
                .into_iter()
                .map(|(s, _)| s)
                .collect(),
        )
    }

    /// Fresh weights, deterministic for a seed on every platform: uniform in
    /// `±1/sqrt(fan_in)` for weights and biases (PyTorch's and burn's default).
    pub fn init_weights(&self, seed: u64) -> WeightSet {
        let mut rng = StdRng::seed_from_u64(seed);
        let tensors = self
            .specs_with_fan_in()
            .into_iter()
            .map(|(spec, fan_in)| {
                let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
                let data = (0..spec.num_elements())
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                NamedTensor {
                    name: spec.name,
                    shape: spec.shape,
                    data,
                }
            })
            .collect();
        WeightSet { tensors }
    }
}

/// Bounds on specs read from JSON (see [`ModelSpec::validate`]).
pub const MAX_DIM: usize = 65_536;
pub const MAX_INPUTS: usize = 1_000_000;
pub const MAX_LAYERS: usize = 64;
pub const MAX_PARAMS: usize = 50_000_000;

/// Side of the CNN's last feature map: 28 -conv-> 26 -pool-> 13 -conv-> 11 -pool-> 5.
pub(crate) const CNN_FINAL_SIDE: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;

    fn binary_spec(inputs: usize) -> ModelSpec {
        ModelSpec {
            architecture: Architecture::Mlp(MlpConfig {
                hidden: vec![128, 64, 32],
                activation: Activation::Relu,
            }),
            preprocessing: None,
            task: Task::BinaryClassification,
            labels: vec!["0".into(), "1".into()],
            input_shape: vec![inputs],
            ood: None,
        }
    }

    #[test]
    fn churn_layout_matches_keras_network() {
        let spec = binary_spec(13);
        spec.validate().unwrap();
        let layout = spec.layout();
        let shapes: Vec<_> = layout
            .0
            .iter()
            .map(|t| (t.name.as_str(), t.shape.clone()))
            .collect();
        assert_eq!(shapes[0], ("layers.0.weight", vec![13, 128]));
        assert_eq!(shapes[7], ("layers.3.bias", vec![1]));
        assert_eq!(
            layout.num_params(),
            13 * 128 + 128 + 128 * 64 + 64 + 64 * 32 + 32 + 32 + 1
        );
    }

    #[test]
    fn cnn_layout_and_init_are_deterministic() {
        let spec = ModelSpec::mnist_cnn();
        spec.validate().unwrap();
        assert_eq!(
            spec.layout().num_params(),
            8 * 9 + 8 + 16 * 8 * 9 + 16 + 400 * 10 + 10
        );
        let a = spec.init_weights(7);
        assert_eq!(a, spec.init_weights(7));
        assert_ne!(a, spec.init_weights(8));
        assert_eq!(a.layout(), spec.layout());
        assert!(a.flatten().iter().all(|v| v.abs() <= 1.0 / 3.0));
    }

    #[test]
    fn validate_rejects_inconsistent_specs() {
        let mut spec = binary_spec(4);
        spec.labels.push("2".into());
        assert!(spec.validate().is_err());
        let mut spec = ModelSpec::mnist_cnn();
        spec.input_shape = vec![784];
        assert!(spec.validate().is_err());
        // Hostile sizes are rejected before anything multiplies them.
        let mut spec = binary_spec(4);
        spec.architecture = Architecture::Mlp(MlpConfig {
            hidden: vec![usize::MAX, usize::MAX],
            activation: Activation::Relu,
        });
        assert!(spec.validate().is_err());
        let mut spec = binary_spec(4);
        spec.architecture = Architecture::Mlp(MlpConfig {
            hidden: vec![60_000; 40],
            activation: Activation::Relu,
        });
        assert!(
            spec.validate()
                .unwrap_err()
                .to_string()
                .contains("parameters")
        );
        let json = serde_json::to_string(&ModelSpec::mnist_cnn()).unwrap();
        assert_eq!(
            serde_json::from_str::<ModelSpec>(&json).unwrap(),
            ModelSpec::mnist_cnn()
        );
    }
}
