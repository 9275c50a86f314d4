//! The burn modules behind [`ModelSpec`](super::ModelSpec). They output logits (or the
//! standardised value for regression); probabilities are applied by callers.

use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, relu};

use super::{Activation, CNN_FINAL_SIDE};

/// Fully connected network.
#[derive(Module, Debug)]
pub struct Mlp {
    pub layers: Vec<Linear>,
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    /// # Shapes
    /// - input `[batch, in]`
    /// - output `[batch, out]` (logits)
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len().saturating_sub(1);
        let mut x = input;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = match self.activation {
                    Activation::Relu => relu(x),
                    Activation::LeakyRelu { slope } => leaky_relu(x, slope),
                };
            }
        }
        x
    }
}

/// The small image CNN.
#[derive(Module, Debug)]
pub struct Cnn {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub pool: MaxPool2d,
    pub fc: Linear,
}

impl Cnn {
    /// # Shapes
    /// - input `[batch, 784]` (row-major 28x28 pixels) or anything reshaping to
    ///   `[batch, 1, 28, 28]`
    /// - output `[batch, classes]` (logits)
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let [batch, _] = input.dims();
        let x = input.reshape([batch, 1, 28, 28]);
        let x = self.pool.forward(relu(self.conv1.forward(x))); // [batch, c1, 13, 13]
        let x = self.pool.forward(relu(self.conv2.forward(x))); // [batch, c2, 5, 5]
        let [_, c2, _, _] = x.dims();
        let x = x.reshape([batch, c2 * CNN_FINAL_SIDE * CNN_FINAL_SIDE]);
        self.fc.forward(x)
    }
}

/// Any of the supported networks.
// One network exists per round or request, so the variants' size difference costs nothing
// (burn-nn's own module enums allow this lint too).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    Mlp(Mlp),
    Cnn(Cnn),
}

impl Network {
    /// # Shapes
    /// - input `[batch, input_dim]`
    /// - output `[batch, output_dim]` (logits, or the standardised value for regression)
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        match self {
            Network::Mlp(m) => m.forward(input),
            Network::Cnn(c) => c.forward(input),
        }
    }
}
