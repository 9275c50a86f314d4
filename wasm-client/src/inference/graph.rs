//! B3O's exported graphs, read without an ONNX operator library.
//!
//! [`decode`] reads the protobuf with the models crate's own message types, takes the spec from
//! the `b3o.spec` metadata and the weights from the initializers, and accepts the file only if
//! exporting that spec and those weights again gives the same nodes and initializers: the graph
//! is then exactly what the spec describes, op for op (`Gemm` = matmul + bias, `Relu`,
//! `LeakyRelu`, `Conv`, `MaxPool`, `Flatten`, `Sigmoid`, `Softmax`, the regression
//! `Mul`/`Add`), and [`super::direct`] (or, with feature `tract`, `super::tract_graph`) runs it.
//! The tests check the result against tract-onnx and burn.

use b3o_models::ModelSpec;
use b3o_models::onnx::proto::{ModelProto, TensorProto};
use b3o_models::onnx::to_model_proto;
use b3o_models::weights::{NamedTensor, WeightSet};
use prost::Message;

/// ONNX's `TensorProto.DataType.FLOAT`.
const ONNX_FLOAT: i32 = 1;

fn values(t: &TensorProto) -> Result<Vec<f32>, String> {
    if t.data_type != ONNX_FLOAT || !t.raw_data.len().is_multiple_of(4) {
        return Err(format!("initializer `{}` is not f32 raw data", t.name));
    }
    Ok(t.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The spec and weights of a graph B3O exported, or why the bytes are not one.
pub fn decode(onnx: &[u8]) -> Result<(ModelSpec, WeightSet), String> {
    let proto = ModelProto::decode(onnx).map_err(|e| format!("not an ONNX file: {e}"))?;
    let spec_json = proto
        .metadata_props
        .iter()
        .find(|p| p.key == "b3o.spec")
        .ok_or("not a B3O model: the ONNX file has no `b3o.spec` metadata")?;
    let spec: ModelSpec = serde_json::from_str(&spec_json.value)
        .map_err(|e| format!("the `b3o.spec` metadata is not a model spec: {e}"))?;
    spec.validate().map_err(|e| e.to_string())?;
    let graph = proto.graph.as_ref().ok_or("the ONNX file has no graph")?;
    let tensors = spec
        .layout()
        .0
        .into_iter()
        .map(|t| {
            let init = graph
                .initializer
                .iter()
                .find(|i| i.name == t.name)
                .ok_or_else(|| format!("the graph has no initializer `{}`", t.name))?;
            let data = values(init)?;
            let dims: Vec<usize> = init.dims.iter().map(|&d| d.max(0) as usize).collect();
            if dims != t.shape || data.len() != t.num_elements() {
                return Err(format!(
                    "initializer `{}` has shape {dims:?}, the spec needs {:?}",
                    t.name, t.shape
                ));
            }
            Ok(NamedTensor {
                name: t.name,
                shape: t.shape,
                data,
            })
        })
        .collect::<Result<_, String>>()?;
    let weights = WeightSet { tensors };
    let expected = to_model_proto(&spec, &weights).map_err(|e| e.to_string())?;
    let same = expected.graph.as_ref().is_some_and(|g| {
        g.node == graph.node && g.initializer == graph.initializer && g.input == graph.input
    });
    if !same {
        return Err(
            "the graph is not the one its B3O spec exports (edited, or from another version)"
                .into(),
        );
    }
    Ok((spec, weights))
}
