//! A fast path for single-row requests: the model's tract graph with the batch fixed to 1,
//! optimised for that shape, run with reused execution states.
//!
//! The general plan (`OnnxPredictor`) keeps the batch dimension symbolic so one plan serves any
//! number of rows; tract then re-derives shapes and convolution geometry on every call, and
//! every call allocates a fresh execution state. For one row that overhead dominates (2-3x
//! the arithmetic for the digit CNN, see BENCHMARKS.md). A single row at a time is what an
//! idle server sees, so the server also keeps this plan; batches of two or more rows use the
//! general plan.

use std::sync::{Arc, Mutex};

use super::{InferenceError, graph, tract_graph};
use tract_core::prelude::*;

/// Most idle execution states kept (one per thread running this model at once is enough).
const MAX_IDLE_STATES: usize = 8;

/// The batch-1 plan of a model B3O exported, with a pool of execution states.
pub struct SingleRowPlan {
    plan: Arc<TypedRunnableModel>,
    /// `[1, ..row_shape]`.
    input_shape: Vec<usize>,
    row_len: usize,
    output_width: usize,
    idle: Mutex<Vec<TypedSimpleState>>,
}

impl std::fmt::Debug for SingleRowPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleRowPlan")
            .field("row_len", &self.row_len)
            .field("output_width", &self.output_width)
            .finish_non_exhaustive()
    }
}

fn invalid(e: impl std::fmt::Display) -> InferenceError {
    InferenceError::InvalidModel(e.to_string())
}

impl SingleRowPlan {
    /// The batch-1 plan of `onnx`, if it is a graph B3O exported (`None` for other ONNX
    /// files: they run on the general plan only).
    pub fn from_onnx(onnx: &[u8]) -> Option<Result<Self, InferenceError>> {
        let (spec, weights) = graph::decode(onnx).ok()?;
        Some(Self::build(&spec, &weights))
    }

    fn build(
        spec: &b3o_models::ModelSpec,
        weights: &b3o_models::WeightSet,
    ) -> Result<Self, InferenceError> {
        let model = tract_graph::build(spec, weights).map_err(invalid)?;
        let batch = model.sym("batch");
        let fixed = model
            .set_symbols(&[(batch, TDim::Val(1))].into_iter().collect())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(invalid)?;
        let mut input_shape = vec![1];
        input_shape.extend(&spec.input_shape);
        Ok(Self {
            plan: fixed,
            input_shape,
            row_len: spec.input_dim(),
            output_width: spec.output_dim(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs one row (`row_len` values) and returns its `output_width` outputs.
    pub fn predict(&self, row: &[f32]) -> Result<Vec<f32>, InferenceError> {
        if row.len() != self.row_len {
            return Err(InferenceError::row_size(self.row_len, row.len()));
        }
        let run = |e: TractError| InferenceError::Run(e.to_string());
        let state = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut state = match state {
            Some(s) => s,
            None => self.plan.spawn().map_err(run)?,
        };
        let input = Tensor::from_shape(&self.input_shape, row).map_err(run)?;
        let outputs = state.run(tvec!(input.into_tvalue())).map_err(run)?;
        let values: Vec<f32> = outputs[0]
            .to_plain_array_view::<f32>()
            .map_err(run)?
            .iter()
            .copied()
            .collect();
        drop(outputs);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_STATES {
            idle.push(state);
        }
        if values.len() != self.output_width {
            return Err(InferenceError::Run(format!(
                "unexpected output size {}",
                values.len()
            )));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use crate::inference::OnnxPredictor;
    use b3o_models::ModelSpec;
    use b3o_models::onnx::export_onnx;

    use super::*;

    #[test]
    fn the_single_row_plan_matches_the_general_one() {
        let spec = ModelSpec::mnist_cnn();
        let onnx = export_onnx(&spec, &spec.init_weights(3)).unwrap();
        let (general, _) = OnnxPredictor::load_b3o(&onnx).unwrap();
        let single = SingleRowPlan::from_onnx(&onnx).unwrap().unwrap();
        for seed in 0..3 {
            let row: Vec<f32> = (0..784)
                .map(|i| ((i * 7 + seed * 13) % 17) as f32 / 17.0)
                .collect();
            let a = general.predict(&row, 1).unwrap();
            let b = single.predict(&row).unwrap();
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst <= 1e-5, "{worst}");
        }
        assert!(single.predict(&[0.0; 3]).is_err());
        assert!(SingleRowPlan::from_onnx(b"not onnx").is_none());
    }
}
