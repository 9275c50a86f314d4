//! ONNX export. burn has no exporter, so the graph is written here from a [`ModelSpec`] and a
//! [`WeightSet`], with prost messages derived by hand from `onnx.proto` ([`proto`]).
//!
//! The file targets IR version 7 and opset 13 (default domain). Its single input `input` is
//! `[batch, features]` for MLPs and `[batch, 1, 28, 28]` for the CNN, batch being the symbolic
//! dimension `batch`; its single output `output` is `[batch, 1]` with the positive-class
//! probability (binary), `[batch, classes]` with class probabilities (multiclass), or
//! `[batch, 1]` with the value in the target's unit (regression). Inputs are model inputs, i.e.
//! already preprocessed: the spec's preprocessing, task and labels travel in the model's
//! `metadata_props` (`b3o.spec` as JSON, `b3o.labels`).

pub mod proto;

use prost::Message;

use crate::model::{Activation, Architecture, ModelError, ModelSpec};
use crate::task::Task;
use crate::weights::{NamedTensor, WeightSet};
use proto::*;

pub const IR_VERSION: i64 = 7;
pub const OPSET: i64 = 13;

/// Why a model could not be exported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot serialise the model spec: {0}")]
    Spec(String),
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOAT,
        f,
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        name: format!("{op}_{output}"),
        op_type: op.into(),
        attribute,
        ..Default::default()
    }
}

fn initializer(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DATA_TYPE_FLOAT,
        name: name.into(),
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    let mut dim = vec![Dimension {
        value: Some(DimensionValue::DimParam("batch".into())),
    }];
    dim.extend(dims.iter().map(|&d| Dimension {
        value: Some(DimensionValue::DimValue(d as i64)),
    }));
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: DATA_TYPE_FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

/// Builds the ONNX graph of `spec` with `weights`.
pub fn to_model_proto(spec: &ModelSpec, weights: &WeightSet) -> Result<ModelProto, OnnxError> {
    spec.validate()?;
    if weights.layout() != spec.layout() {
        return Err(
            ModelError::LayoutMismatch("weights do not match the spec's layout".into()).into(),
        );
    }
    let mut nodes = Vec::new();
    let initializers: Vec<TensorProto> = weights
        .tensors
        .iter()
        .map(|NamedTensor { name, shape, data }| initializer(name, shape, data))
        .collect();
    let mut x = "input".to_string();
    let mut step = 0;
    let mut fresh = |prefix: &str| {
        step += 1;
        format!("{prefix}_{step}")
    };
    let input_dims: Vec<usize> = match &spec.architecture {
        Architecture::Mlp(cfg) => {
            let layers = cfg.hidden.len() + 1;
            for i in 0..layers {
                let y = fresh("gemm");
                let (w, b) = (format!("layers.{i}.weight"), format!("layers.{i}.bias"));
                nodes.push(node("Gemm", &[&x, &w, &b], &y, vec![]));
                x = y;
                if i + 1 < layers {
                    let y = fresh("act");
                    nodes.push(match cfg.activation {
                        Activation::Relu => node("Relu", &[&x], &y, vec![]),
                        Activation::LeakyRelu { slope } => node(
                            "LeakyRelu",
                            &[&x],
                            &y,
                            vec![attr_float("alpha", slope as f32)],
                        ),
                    });
                    x = y;
                }
            }
            spec.input_shape.clone()
        }
        Architecture::Cnn(_) => {
            for conv in ["conv1", "conv2"] {
                let y = fresh("conv");
                let (w, b) = (format!("{conv}.weight"), format!("{conv}.bias"));
                let attrs = vec![
                    attr_ints("kernel_shape", &[3, 3]),
                    attr_ints("strides", &[1, 1]),
                    attr_ints("pads", &[0, 0, 0, 0]),
                    attr_ints("dilations", &[1, 1]),
                    attr_int("group", 1),
                ];
                nodes.push(node("Conv", &[&x, &w, &b], &y, attrs));
                let r = fresh("relu");
                nodes.push(node("Relu", &[&y], &r, vec![]));
                let p = fresh("pool");
                nodes.push(node(
                    "MaxPool",
                    &[&r],
                    &p,
                    vec![
                        attr_ints("kernel_shape", &[2, 2]),
                        attr_ints("strides", &[2, 2]),
                    ],
                ));
                x = p;
            }
            let f = fresh("flatten");
            nodes.push(node("Flatten", &[&x], &f, vec![attr_int("axis", 1)]));
            let y = fresh("gemm");
            nodes.push(node("Gemm", &[&f, "fc.weight", "fc.bias"], &y, vec![]));
            x = y;
            spec.input_shape.clone()
        }
    };
    let mut extra_init = Vec::new();
    match spec.task {
        Task::BinaryClassification => nodes.push(node("Sigmoid", &[&x], "output", vec![])),
        Task::MulticlassClassification => {
            nodes.push(node("Softmax", &[&x], "output", vec![attr_int("axis", 1)]))
        }
        Task::Regression => {
            // out * std + mean, the inverse of the target standardisation.
            let (scale, offset) = match &spec.preprocessing {
                Some(p) => {
                    let offset = p.decode_value(0.0);
                    ((p.decode_value(1.0) - offset) as f32, offset as f32)
                }
                None => (1.0, 0.0),
            };
            extra_init.push(initializer("target_scale", &[1], &[scale]));
            extra_init.push(initializer("target_offset", &[1], &[offset]));
            let m = fresh("scaled");
            nodes.push(node("Mul", &[&x, "target_scale"], &m, vec![]));
            nodes.push(node("Add", &[&m, "target_offset"], "output", vec![]));
        }
    }
    let spec_json = serde_json::to_string(spec).map_err(|e| OnnxError::Spec(e.to_string()))?;
    let labels_json =
        serde_json::to_string(&spec.labels).map_err(|e| OnnxError::Spec(e.to_string()))?;
    let graph = GraphProto {
        node: nodes,
        name: "b3o".into(),
        initializer: initializers.into_iter().chain(extra_init).collect(),
        input: vec![value_info("input", &input_dims)],
        output: vec![value_info("output", &[spec.output_dim()])],
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "b3o-edge".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: vec![
            StringStringEntryProto {
                key: "b3o.spec".into(),
                value: spec_json,
            },
            StringStringEntryProto {
                key: "b3o.labels".into(),
                value: labels_json,
            },
        ],
        ..Default::default()
    })
}

/// The `.onnx` file of `spec` with `weights`.
pub fn export_onnx(spec: &ModelSpec, weights: &WeightSet) -> Result<Vec<u8>, OnnxError> {
    Ok(to_model_proto(spec, weights)?.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_has_dynamic_batch_and_round_trips_through_protobuf() {
        let spec = ModelSpec::mnist_cnn();
        let bytes = export_onnx(&spec, &spec.init_weights(0)).unwrap();
        let back = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!((back.ir_version, back.opset_import[0].version), (7, 13));
        let graph = back.graph.unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Softmax"
            ]
        );
        let dims = &graph.input[0]
            .r#type
            .as_ref()
            .unwrap()
            .tensor_type
            .as_ref()
            .unwrap()
            .shape
            .as_ref()
            .unwrap()
            .dim;
        assert_eq!(
            dims[0].value,
            Some(DimensionValue::DimParam("batch".into()))
        );
        assert_eq!(graph.initializer.len(), 6);
    }

    #[test]
    fn rejects_mismatched_weights() {
        let spec = ModelSpec::mnist_cnn();
        let mut w = spec.init_weights(0);
        w.tensors.pop();
        assert!(matches!(
            export_onnx(&spec, &w),
            Err(OnnxError::Model(ModelError::LayoutMismatch(_)))
        ));
    }
}
