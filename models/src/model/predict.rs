//! Batched inference from model inputs to probabilities or values.
//!
//! One asynchronous implementation reads outputs with `into_data_async` (the only read that works
//! on WebGPU in a browser); the blocking functions drive it to completion.

use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};

use super::{ModelError, ModelSpec, Network};
use crate::task::Task;
use crate::weights::WeightSet;

/// Rows per forward pass: bounds memory for large inputs.
const CHUNK: usize = 1024;

/// Model outputs for a batch of rows, in the form the ONNX export produces.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Row-major `[n_rows, width]`: the positive-class probability (binary, width 1), class
    /// probabilities (multiclass), or the value in the target's unit (regression, width 1).
    pub values: Vec<f32>,
    pub width: usize,
    pub n_rows: usize,
}

/// Runs `spec` with `weights` on `inputs` (`[n_rows, spec.input_dim()]`, already preprocessed).
///
/// Blocking: on wgpu in a browser use [`predict_async`].
pub fn predict(
    spec: &ModelSpec,
    weights: &WeightSet,
    inputs: &[f32],
    n_rows: usize,
    device: &Device,
) -> Result<Prediction, ModelError> {
    block(predict_async(spec, weights, inputs, n_rows, device))?
}

/// [`predict`], reading the outputs asynchronously.
pub async fn predict_async(
    spec: &ModelSpec,
    weights: &WeightSet,
    inputs: &[f32],
    n_rows: usize,
    device: &Device,
) -> Result<Prediction, ModelError> {
    let net = Network::from_weights(spec, weights, device)?;
    predict_with_async(&net, spec, inputs, n_rows, device, false).await
}

/// Drives `future` to completion on this thread. On wasm it cannot wait: a future that is not
/// ready at once (a GPU read) is an error instead of a panic.
pub(crate) fn block<T>(future: impl Future<Output = T>) -> Result<T, ModelError> {
    burn::tensor::try_read_sync(future).ok_or_else(|| {
        ModelError::Backend(
            "this device cannot be read synchronously here; use the async variant".into(),
        )
    })
}

/// Reads a float tensor's values without blocking.
pub(crate) async fn read_f32<const D: usize>(
    tensor: Tensor<D>,
    what: &str,
) -> Result<Vec<f32>, ModelError> {
    tensor
        .into_data_async()
        .await
        .map_err(|e| ModelError::Backend(format!("{what}: {e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("{what}: {e:?}")))
}

pub(crate) async fn predict_with_async(
    net: &Network,
    spec: &ModelSpec,
    inputs: &[f32],
    n_rows: usize,
    device: &Device,
    logits: bool,
) -> Result<Prediction, ModelError> {
    let dim = spec.input_dim();
    if inputs.len() != n_rows * dim {
        return Err(ModelError::InputSize {
            expected: dim,
            found: inputs.len().checked_div(n_rows).unwrap_or(0),
        });
    }
    let width = spec.output_dim();
    let mut values = Vec::with_capacity(n_rows * width);
    for start in (0..n_rows).step_by(CHUNK) {
        let rows = CHUNK.min(n_rows - start);
        let x = Tensor::<2>::from_data(
            TensorData::new(
                inputs[start * dim..(start + rows) * dim].to_vec(),
                [rows, dim],
            ),
            device,
        );
        let out = net.forward(x);
        let out = match spec.task {
            _ if logits => out,
            Task::BinaryClassification => sigmoid(out),
            Task::MulticlassClassification => softmax(out, 1),
            Task::Regression => out,
        };
        let mut chunk = read_f32(out, "model output").await?;
        if let (Task::Regression, Some(p), false) = (spec.task, &spec.preprocessing, logits) {
            chunk
                .iter_mut()
                .for_each(|v| *v = p.decode_value(*v) as f32);
        }
        values.extend(chunk);
    }
    Ok(Prediction {
        values,
        width,
        n_rows,
    })
}
