//! Conversions between [`WeightSet`] and the burn [`Network`].

use burn::module::Param;
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::{Architecture, Cnn, Mlp, ModelError, ModelSpec, Network};
use crate::weights::{NamedTensor, WeightSet};

fn param<const D: usize>(t: &NamedTensor, device: &Device) -> Result<Param<Tensor<D>>, ModelError> {
    if t.shape.len() != D || t.shape.iter().product::<usize>() != t.data.len() {
        return Err(ModelError::LayoutMismatch(format!(
            "tensor `{}` has shape {:?}",
            t.name, t.shape
        )));
    }
    Ok(Param::from_data(
        TensorData::new(t.data.clone(), t.shape.clone()),
        device,
    ))
}

async fn read<const D: usize>(name: &str, p: &Param<Tensor<D>>) -> Result<NamedTensor, ModelError> {
    let tensor = p.val();
    let shape = tensor.dims().to_vec();
    let data = super::predict::read_f32(tensor, name).await?;
    Ok(NamedTensor {
        name: name.to_string(),
        shape,
        data,
    })
}

fn linear(w: &NamedTensor, b: &NamedTensor, device: &Device) -> Result<Linear, ModelError> {
    let [d_in, d_out] = [w.shape[0], w.shape[1]];
    let mut layer = LinearConfig::new(d_in, d_out).init(device);
    layer.weight = param(w, device)?;
    layer.bias = Some(param(b, device)?);
    Ok(layer)
}

async fn read_linear(
    prefix: &str,
    l: &Linear,
    out: &mut Vec<NamedTensor>,
) -> Result<(), ModelError> {
    out.push(read(&format!("{prefix}.weight"), &l.weight).await?);
    let bias = l
        .bias
        .as_ref()
        .ok_or_else(|| ModelError::Backend(format!("{prefix} has no bias")))?;
    out.push(read(&format!("{prefix}.bias"), bias).await?);
    Ok(())
}

impl Network {
    /// Builds the network of `spec` with `weights` on `device` (an autodiff device for training).
    /// Uploads only: nothing is read back, so this is safe on WebGPU in a browser.
    pub fn from_weights(
        spec: &ModelSpec,
        weights: &WeightSet,
        device: &Device,
    ) -> Result<Network, ModelError> {
        spec.validate()?;
        let layout = spec.layout();
        if weights.layout() != layout {
            let expected: Vec<String> = layout
                .0
                .iter()
                .map(|t| format!("{}{:?}", t.name, t.shape))
                .collect();
            let found: Vec<String> = weights
                .layout()
                .0
                .iter()
                .map(|t| format!("{}{:?}", t.name, t.shape))
                .collect();
            return Err(ModelError::LayoutMismatch(format!(
                "expected {}, found {}",
                expected.join(", "),
                found.join(", ")
            )));
        }
        let t = &weights.tensors;
        Ok(match &spec.architecture {
            Architecture::Mlp(cfg) => Network::Mlp(Mlp {
                layers: t
                    .chunks(2)
                    .map(|wb| linear(&wb[0], &wb[1], device))
                    .collect::<Result<_, _>>()?,
                activation: cfg.activation,
            }),
            Architecture::Cnn(cfg) => {
                let mut conv1 = Conv2dConfig::new([1, cfg.conv1_channels], [3, 3]).init(device);
                conv1.weight = param(&t[0], device)?;
                conv1.bias = Some(param(&t[1], device)?);
                let mut conv2 = Conv2dConfig::new([cfg.conv1_channels, cfg.conv2_channels], [3, 3])
                    .init(device);
                conv2.weight = param(&t[2], device)?;
                conv2.bias = Some(param(&t[3], device)?);
                Network::Cnn(Cnn {
                    conv1,
                    conv2,
                    pool: MaxPool2dConfig::new([2, 2]).init(),
                    fc: linear(&t[4], &t[5], device)?,
                })
            }
        })
    }

    /// Reads the parameters back in the layout of the module docs. Blocking: on wgpu in a
    /// browser use [`Network::to_weights_async`].
    pub fn to_weights(&self) -> Result<WeightSet, ModelError> {
        super::predict::block(self.to_weights_async())?
    }

    /// [`Network::to_weights`], reading every tensor with `into_data_async`.
    pub async fn to_weights_async(&self) -> Result<WeightSet, ModelError> {
        let mut tensors = Vec::new();
        match self {
            Network::Mlp(m) => {
                for (i, l) in m.layers.iter().enumerate() {
                    read_linear(&format!("layers.{i}"), l, &mut tensors).await?;
                }
            }
            Network::Cnn(c) => {
                for (name, conv) in [("conv1", &c.conv1), ("conv2", &c.conv2)] {
                    tensors.push(read(&format!("{name}.weight"), &conv.weight).await?);
                    let bias = conv
                        .bias
                        .as_ref()
                        .ok_or_else(|| ModelError::Backend(format!("{name} has no bias")))?;
                    tensors.push(read(&format!("{name}.bias"), bias).await?);
                }
                read_linear("fc", &c.fc, &mut tensors).await?;
            }
        }
        Ok(WeightSet { tensors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activation, MlpConfig};
    use crate::task::Task;

    #[test]
    fn weights_round_trip_through_burn() {
        let device = Device::flex();
        let mlp = ModelSpec {
            architecture: Architecture::Mlp(MlpConfig {
                hidden: vec![5, 3],
                activation: Activation::Relu,
            }),
            preprocessing: None,
            task: Task::MulticlassClassification,
            labels: vec!["a".into(), "b".into(), "c".into()],
            input_shape: vec![4],
            ood: None,
        };
        for spec in [mlp, ModelSpec::mnist_cnn()] {
            let w = spec.init_weights(1);
            let net = Network::from_weights(&spec, &w, &device).unwrap();
            assert_eq!(net.to_weights().unwrap(), w);
            let out = net.forward(Tensor::zeros([2, spec.input_dim()], &device));
            assert_eq!(out.dims(), [2, spec.output_dim()]);
        }
    }

    #[test]
    fn rejects_foreign_weights() {
        let spec = ModelSpec::mnist_cnn();
        let mut w = spec.init_weights(1);
        w.tensors[0].name = "conv0.weight".into();
        let err = Network::from_weights(&spec, &w, &Device::flex()).unwrap_err();
        assert!(matches!(err, ModelError::LayoutMismatch(_)), "{err}");
    }
}
