//! B3O's exported graphs, read without an ONNX operator library and built straight into
//! tract-core.
//!
//! [`decode`] reads the protobuf with the models crate's own message types, takes the spec from
//! the `b3o.spec` metadata and the weights from the initializers, and accepts the file only if
//! exporting that spec and those weights again gives the same nodes and initializers: the graph
//! is then exactly what [`build`] wires, op for op (`Gemm` = matmul + bias, `Relu`,
//! `LeakyRelu`, `Conv`, `MaxPool`, `Flatten`, `Sigmoid`, `Softmax`, the regression
//! `Mul`/`Add`). The tests check the result against tract-onnx and burn.

use b3o_models::ModelSpec;
use b3o_models::model::{Activation, Architecture};
use b3o_models::onnx::proto::{ModelProto, TensorProto};
use b3o_models::onnx::to_model_proto;
use b3o_models::task::Task;
use b3o_models::weights::{NamedTensor, WeightSet};
use prost::Message;
use tract_core::internal::*;
use tract_core::ops::cnn::{Conv, KernelFormat, MaxPool, PaddingSpec, PoolSpec};
use tract_core::ops::einsum::EinSum;
use tract_core::ops::math;
use tract_core::ops::nn::{self, DataFormat, Softmax};

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

fn constant(
    model: &mut TypedModel,
    name: &str,
    shape: &[usize],
    data: &[f32],
) -> TractResult<OutletId> {
    model.add_const(name, Tensor::from_shape(shape, data)?)
}

/// `x · W + b` for `x: [batch, in]`, `W: [in, out]` (ONNX `Gemm` without transposes).
fn dense(
    model: &mut TypedModel,
    name: &str,
    x: OutletId,
    w: &NamedTensor,
    b: &NamedTensor,
) -> TractResult<OutletId> {
    let weight = constant(model, &w.name, &w.shape, &w.data)?;
    let axes = AxesMapping::for_numpy_matmul(2, false, false, false)?;
    let y = model.wire_node(
        format!("{name}.matmul"),
        EinSum::new(axes, f32::datum_type()),
        &[x, weight],
    )?[0];
    let bias = constant(model, &b.name, &[1, b.data.len()], &b.data)?;
    Ok(model.wire_node(format!("{name}.add_bias"), math::add(), &[y, bias])?[0])
}

fn relu(model: &mut TypedModel, name: &str, x: OutletId) -> TractResult<OutletId> {
    let rank = model.outlet_fact(x)?.rank();
    let zero = model.add_const(
        format!("{name}.zero"),
        tensor0(0f32).broadcast_into_rank(rank)?,
    )?;
    Ok(model.wire_node(name, math::max(), &[x, zero])?[0])
}

/// A 3x3 valid convolution, stride 1, OIHW kernel `w`, bias `b`.
fn conv(
    model: &mut TypedModel,
    name: &str,
    x: OutletId,
    w: &NamedTensor,
    b: &NamedTensor,
) -> TractResult<OutletId> {
    let (out_c, in_c) = (w.shape[0], w.shape[1]);
    let kernel = constant(model, &w.name, &w.shape, &w.data)?;
    let bias = constant(model, &b.name, &b.shape, &b.data)?;
    let op = Conv {
        pool_spec: PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec![w.shape[2], w.shape[3]],
            padding: PaddingSpec::Valid,
            dilations: None,
            strides: None,
            input_channels: in_c,
            output_channels: out_c,
        },
        kernel_fmt: KernelFormat::OIHW,
        group: 1,
        q_params: None,
    };
    Ok(model.wire_node(format!("{name}.conv"), op, &[x, kernel, bias])?[0])
}

/// 2x2 max pooling, stride 2, no padding (floor), over `channels` channels.
fn max_pool(
    model: &mut TypedModel,
    name: &str,
    x: OutletId,
    channels: usize,
) -> TractResult<OutletId> {
    let op = MaxPool {
        pool_spec: PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec![2, 2],
            padding: PaddingSpec::Valid,
            dilations: None,
            strides: Some(tvec![2, 2]),
            input_channels: channels,
            output_channels: channels,
        },
        with_index_outputs: None,
    };
    Ok(model.wire_node(name, op, &[x])?[0])
}

/// The typed graph of `spec` with `weights`: input `[batch, ..input_shape]`, output
/// `[batch, output_dim]` as the ONNX export defines it (probabilities, or values in the target's
/// unit).
pub fn build(spec: &ModelSpec, weights: &WeightSet) -> TractResult<TypedModel> {
    spec.validate()?;
    if weights.layout() != spec.layout() {
        bail!("the weights do not match the spec's layout");
    }
    let mut model = TypedModel::default();
    let batch = model.sym("batch");
    let mut shape: TVec<TDim> = tvec![batch.into()];
    shape.extend(spec.input_shape.iter().map(|&d| d.to_dim()));
    let mut x = model.add_source("input", f32::fact(shape))?;
    let t = &weights.tensors;
    match &spec.architecture {
        Architecture::Mlp(cfg) => {
            let layers = t.len() / 2;
            for (i, wb) in t.chunks(2).enumerate() {
                x = dense(&mut model, &format!("layers.{i}"), x, &wb[0], &wb[1])?;
                if i + 1 < layers {
                    let name = format!("layers.{i}.act");
                    x = match cfg.activation {
                        Activation::Relu => relu(&mut model, &name, x)?,
                        Activation::LeakyRelu { slope } => {
                            model.wire_node(name, nn::leaky_relu(slope as f32), &[x])?[0]
                        }
                    };
                }
            }
        }
        Architecture::Cnn(cfg) => {
            x = conv(&mut model, "conv1", x, &t[0], &t[1])?;
            x = relu(&mut model, "conv1.relu", x)?;
            x = max_pool(&mut model, "pool1", x, cfg.conv1_channels)?;
            x = conv(&mut model, "conv2", x, &t[2], &t[3])?;
            x = relu(&mut model, "conv2.relu", x)?;
            x = max_pool(&mut model, "pool2", x, cfg.conv2_channels)?;
            let dims: TVec<TDim> = model
                .outlet_fact(x)?
                .shape
                .iter()
                .skip(1)
                .cloned()
                .collect();
            let flat: TDim = dims.iter().product();
            x = model.wire_node("flatten", AxisOp::Reshape(1, dims, tvec![flat]), &[x])?[0];
            x = dense(&mut model, "fc", x, &t[4], &t[5])?;
        }
    }
    x = match spec.task {
        Task::BinaryClassification => model.wire_node("output", nn::sigmoid(), &[x])?[0],
        Task::MulticlassClassification => {
            let softmax = Softmax {
                axes: tvec![1],
                ..Softmax::default()
            };
            model.wire_node("output", softmax, &[x])?[0]
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
            let s = constant(&mut model, "target_scale", &[1, 1], &[scale])?;
            let o = constant(&mut model, "target_offset", &[1, 1], &[offset])?;
            let y = model.wire_node("scaled", math::mul(), &[x, s])?[0];
            model.wire_node("output", math::add(), &[y, o])?[0]
        }
    };
    model.select_output_outlets(&[x])?;
    Ok(model)
}
