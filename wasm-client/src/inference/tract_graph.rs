//! B3O's exported graphs built straight into tract-core (feature `tract`): the server's plans
//! (and the batch-1 plan of [`super::single`]). The graph is the one [`super::graph::decode`]
//! checked, op for op.

use b3o_models::ModelSpec;
use b3o_models::model::{Activation, Architecture};
use b3o_models::task::Task;
use b3o_models::weights::{NamedTensor, WeightSet};
use tract_core::internal::*;
use tract_core::ops::cnn::{Conv, KernelFormat, MaxPool, PaddingSpec, PoolSpec};
use tract_core::ops::einsum::EinSum;
use tract_core::ops::math;
use tract_core::ops::nn::{self, DataFormat, Softmax};

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
