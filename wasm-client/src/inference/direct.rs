//! B3O's two network families evaluated directly, without a graph runtime: what the browser's
//! inference bundle runs (`b3o_infer`), so that a first visit downloads no operator library.
//!
//! The networks are small and fixed in form (see `b3o_models::model`): an MLP of dense layers
//! with ReLU or leaky ReLU, and the digit CNN (3x3 valid convolutions, ReLU, 2x2 max pooling,
//! one dense layer). Each layer is written as a loop whose innermost step adds a scalar times a
//! contiguous row to a contiguous row, which LLVM turns into wasm SIMD (`+simd128`) and native
//! vector code:
//! - dense `y = x · W + b` (`W: [in, out]`, the export's `Gemm` layout) adds `x[i] * W[i, ..]`;
//! - a convolution (channel-first, as the export) first lays the input's patches out tap by
//!   tap (`patches[tap][position]`, the transposed im2col matrix), then each output channel
//!   adds `K[o, tap] * patches[tap, ..]` over its `in_c * 3 * 3` taps: rows as long as the
//!   output plane (676 values for the digit CNN's first layer);
//! - pooling and the flatten keep that order, so the dense layer reads the export's order.
//!
//! The results are the ONNX export's (probabilities, or values in the target's unit); the tests
//! check them against burn and against tract at several batch sizes.

use b3o_models::ModelSpec;
use b3o_models::model::{Activation, Architecture};
use b3o_models::task::Task;
use b3o_models::weights::WeightSet;

use std::sync::Mutex;

use super::InferenceError;

/// A dense layer: `w` is `[input, output]` row-major.
#[derive(Debug, Clone)]
struct Dense {
    input: usize,
    output: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Dense {
    fn new(w: &[f32], b: &[f32], shape: &[usize]) -> Result<Self, InferenceError> {
        let [input, output] = shape else {
            return Err(invalid("a dense layer's weight is not two-dimensional"));
        };
        if *input == 0 || *output == 0 {
            return Err(invalid("a dense layer has no inputs or no outputs"));
        }
        if w.len() != input * output || b.len() != *output {
            return Err(invalid("a dense layer's weight and bias disagree in size"));
        }
        Ok(Self {
            input: *input,
            output: *output,
            w: w.to_vec(),
            b: b.to_vec(),
        })
    }

    /// `out = x · W + b` for every row of `x` (`[rows, input]` row-major) into `out`
    /// (`[rows, output]`). Every output is summed in one order (bias, then the inputs in turn,
    /// no fused multiply-add) whichever path computes it, so a row's values are bit for bit
    /// the same alone or in a batch, on any machine and vector width.
    fn apply(&self, x: &[f32], out: &mut Vec<f32>) {
        let rows = x.len() / self.input.max(1);
        out.clear();
        out.resize(rows * self.output, 0.0);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked on the line above).
            unsafe { self.rows_avx2(x, out) };
            return;
        }
        self.rows::<8>(x, out);
    }

    /// [`Dense::rows`] compiled for AVX2 (eight lanes per vector: sixteen outputs in two).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn rows_avx2(&self, x: &[f32], out: &mut [f32]) {
        self.rows::<16>(x, out);
    }

    /// The blocked kernel: [`ROWS`] rows at a time, `COLS` outputs at a time summed in
    /// registers, so that each loaded weight serves four rows; what is left over (rows past a
    /// multiple of four, outputs past a multiple of `COLS`) goes row by row.
    #[inline(always)]
    fn rows<const COLS: usize>(&self, x: &[f32], out: &mut [f32]) {
        let (input, output) = (self.input, self.output);
        let blocks = x
            .chunks_exact(ROWS * input)
            .zip(out.chunks_exact_mut(ROWS * output));
        let done = blocks.len() * ROWS;
        for (xs, outs) in blocks {
            let xs: [&[f32]; ROWS] = std::array::from_fn(|r| &xs[r * input..][..input]);
            let mut c = 0;
            while c + COLS <= output {
                // `c + COLS <= output`, the length of the bias and of every weight row.
                let bias: &[f32; COLS] = self.b[c..c + COLS].try_into().expect("COLS values");
                let mut acc = [*bias; ROWS];
                for (i, w) in self.w.chunks_exact(output).enumerate() {
                    let w: &[f32; COLS] = w[c..c + COLS].try_into().expect("COLS values");
                    for (acc, x) in acc.iter_mut().zip(&xs) {
                        let xi = x[i];
                        for (a, &wl) in acc.iter_mut().zip(w) {
                            *a += xi * wl;
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    outs[r * output + c..][..COLS].copy_from_slice(acc);
                }
                c += COLS;
            }
            if c < output {
                for (x, dst) in xs.iter().zip(outs.chunks_exact_mut(output)) {
                    self.row(x, &mut dst[c..], c);
                }
            }
        }
        let rest = x.chunks_exact(input).skip(done);
        for (x, dst) in rest.zip(out.chunks_exact_mut(output).skip(done)) {
            self.row(x, dst, 0);
        }
    }

    /// Outputs `from..` of one row: `dst = b[from..] + Σ x[i] · W[i, from..]`.
    #[inline(always)]
    fn row(&self, x: &[f32], dst: &mut [f32], from: usize) {
        dst.copy_from_slice(&self.b[from..]);
        for (&xi, w) in x.iter().zip(self.w.chunks_exact(self.output)) {
            axpy(dst, xi, &w[from..]);
        }
    }
}

/// Rows a dense layer computes at once in a batch: each weight it loads serves all of them.
const ROWS: usize = 4;

/// Rows of a batch that go through an MLP together (their activations stay in cache).
const MLP_BLOCK_ROWS: usize = 64;

/// A `k`x`k` valid convolution, stride 1, OIHW kernel, channel-first (CHW) in and out.
#[derive(Debug, Clone)]
struct Conv {
    in_c: usize,
    out_c: usize,
    k: usize,
    /// `[out_c, in_c * k * k]`: tap order input channel, kernel row, kernel column.
    kernel: Vec<f32>,
    bias: Vec<f32>,
}

impl Conv {
    /// From an OIHW kernel and its bias.
    fn new(w: &[f32], b: &[f32], shape: &[usize]) -> Result<Self, InferenceError> {
        let [out_c, in_c, kh, kw] = shape else {
            return Err(invalid("a convolution kernel is not four-dimensional"));
        };
        let (out_c, in_c, k) = (*out_c, *in_c, *kh);
        if kh != kw || k == 0 || w.len() != out_c * in_c * k * k || b.len() != out_c {
            return Err(invalid("a convolution's kernel and bias disagree in size"));
        }
        Ok(Self {
            in_c,
            out_c,
            k,
            kernel: w.to_vec(),
            bias: b.to_vec(),
        })
    }

    /// `x`: `[in_c, h, w]`; returns `[out_c, h - k + 1, w - k + 1]` in `out`, ReLU applied.
    /// The input's patches are laid out tap by tap first (`patches[tap][position]`, the
    /// im2col matrix transposed, each row padded with zeros to a multiple of [`LANES`]); then
    /// each output channel is computed [`LANES`] positions at a time, summing all its taps in
    /// registers (`LANES` lanes: four wasm SIMD vectors) before one store.
    fn apply_relu(
        &self,
        x: &[f32],
        (h, w): (usize, usize),
        patches: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) -> (usize, usize) {
        let (oh, ow) = (h + 1 - self.k, w + 1 - self.k);
        let n = oh * ow;
        let stride = n.div_ceil(LANES) * LANES;
        let taps = self.in_c * self.k * self.k;
        patches.clear();
        patches.reserve(taps * stride);
        for plane in x.chunks_exact(h * w).take(self.in_c) {
            for ky in 0..self.k {
                for kx in 0..self.k {
                    for y in 0..oh {
                        let at = (y + ky) * w + kx;
                        patches.extend_from_slice(&plane[at..at + ow]);
                    }
                    patches.resize(patches.len() + stride - n, 0.0);
                }
            }
        }
        out.clear();
        out.resize(self.out_c * n, 0.0);
        for ((dst, weights), &bias) in out
            .chunks_exact_mut(n)
            .zip(self.kernel.chunks_exact(taps))
            .zip(&self.bias)
        {
            for start in (0..n).step_by(LANES) {
                let mut acc = [bias; LANES];
                for (&wt, row) in weights.iter().zip(patches.chunks_exact(stride)) {
                    for (a, &p) in acc.iter_mut().zip(&row[start..start + LANES]) {
                        *a += wt * p;
                    }
                }
                let take = LANES.min(n - start);
                for (d, a) in dst[start..start + take].iter_mut().zip(acc) {
                    *d = a.max(0.0);
                }
            }
        }
        (oh, ow)
    }
}

/// Output positions a convolution computes at once, in registers.
const LANES: usize = 16;

/// 2x2 max pooling, stride 2, floor, channel-first `[c, h, w]` → `[c, h / 2, w / 2]`.
fn max_pool(x: &[f32], (h, w): (usize, usize), out: &mut Vec<f32>) -> (usize, usize) {
    let (oh, ow) = (h / 2, w / 2);
    out.clear();
    for plane in x.chunks_exact(h * w) {
        for y in 0..oh {
            let top = &plane[2 * y * w..][..w];
            let bottom = &plane[(2 * y + 1) * w..][..w];
            out.extend((0..ow).map(|x0| {
                top[2 * x0]
                    .max(top[2 * x0 + 1])
                    .max(bottom[2 * x0])
                    .max(bottom[2 * x0 + 1])
            }));
        }
    }
    (oh, ow)
}

/// `acc += a * row`, elementwise (the vectorised inner step of every layer).
#[inline(always)]
fn axpy(acc: &mut [f32], a: f32, row: &[f32]) {
    for (o, &r) in acc.iter_mut().zip(row) {
        *o += a * r;
    }
}

fn invalid(message: &str) -> InferenceError {
    InferenceError::InvalidModel(message.to_string())
}

#[derive(Debug, Clone)]
enum Body {
    Mlp {
        layers: Vec<Dense>,
        activation: Activation,
    },
    Cnn {
        conv1: Conv,
        conv2: Conv,
        fc: Dense,
        /// Input `[channels, side, side]`.
        input: [usize; 3],
    },
}

/// An MLP's last-layer values for `rows` (one row or several, row-major) in one of
/// `scratch`'s buffers.
fn mlp_forward<'s>(
    layers: &[Dense],
    activation: Activation,
    rows: &[f32],
    scratch: &'s mut Scratch,
) -> &'s [f32] {
    let Scratch { a, b, .. } = scratch;
    a.clear();
    a.extend_from_slice(rows);
    let last = layers.len().saturating_sub(1);
    for (i, layer) in layers.iter().enumerate() {
        layer.apply(a, b);
        if i < last {
            match activation {
                Activation::Relu => b.iter_mut().for_each(|v| *v = v.max(0.0)),
                Activation::LeakyRelu { slope } => {
                    let slope = slope as f32;
                    b.iter_mut()
                        .for_each(|v| *v = if *v < 0.0 { *v * slope } else { *v });
                }
            }
        }
        std::mem::swap(a, b);
    }
    a
}

/// How the last layer's values become the export's outputs.
#[derive(Debug, Clone, Copy)]
enum Head {
    Sigmoid,
    Softmax,
    /// `value * scale + offset`: the target standardisation undone.
    Affine {
        scale: f32,
        offset: f32,
    },
}

/// One of B3O's networks with its weights, ready to run rows.
#[derive(Debug)]
pub struct Network {
    body: Body,
    head: Head,
    row_len: usize,
    output_width: usize,
    /// Buffers of earlier calls, reused (a single image's call is otherwise dominated by
    /// allocating them).
    idle: Mutex<Vec<Scratch>>,
}

/// Most idle scratch buffers kept (one per thread running this network at once is enough).
const MAX_IDLE: usize = 8;

/// Reused buffers of one forward pass.
#[derive(Debug, Default)]
struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    patches: Vec<f32>,
}

impl Network {
    /// `spec`'s network with `weights` (which must follow `spec.layout()`).
    pub fn new(spec: &ModelSpec, weights: &WeightSet) -> Result<Self, InferenceError> {
        spec.validate()
            .map_err(|e| InferenceError::InvalidModel(e.to_string()))?;
        if weights.layout() != spec.layout() {
            return Err(invalid("the weights do not match the spec's layout"));
        }
        let t = &weights.tensors;
        let dense = |i: usize| Dense::new(&t[i].data, &t[i + 1].data, &t[i].shape);
        let body = match &spec.architecture {
            Architecture::Mlp(cfg) => Body::Mlp {
                layers: (0..t.len() / 2)
                    .map(|i| dense(2 * i))
                    .collect::<Result<_, _>>()?,
                activation: cfg.activation,
            },
            Architecture::Cnn(_) => {
                let [c, h, w] = spec.input_shape[..] else {
                    return Err(invalid("a CNN's input is not [channels, height, width]"));
                };
                if t.len() != 6 || h != w {
                    return Err(invalid("a CNN has two convolutions and a dense layer"));
                }
                let conv1 = Conv::new(&t[0].data, &t[1].data, &t[0].shape)?;
                let conv2 = Conv::new(&t[2].data, &t[3].data, &t[2].shape)?;
                let fc = dense(4)?;
                let side = ((h + 1).saturating_sub(conv1.k) / 2 + 1).saturating_sub(conv2.k) / 2;
                if conv1.in_c != c
                    || side == 0
                    || conv2.in_c != conv1.out_c
                    || fc.input != conv2.out_c * side * side
                {
                    return Err(invalid("a CNN's layers do not chain"));
                }
                Body::Cnn {
                    conv1,
                    conv2,
                    fc,
                    input: [c, h, w],
                }
            }
        };
        let head = match spec.task {
            Task::BinaryClassification => Head::Sigmoid,
            Task::MulticlassClassification => Head::Softmax,
            Task::Regression => match &spec.preprocessing {
                Some(p) => {
                    let offset = p.decode_value(0.0);
                    Head::Affine {
                        scale: (p.decode_value(1.0) - offset) as f32,
                        offset: offset as f32,
                    }
                }
                None => Head::Affine {
                    scale: 1.0,
                    offset: 0.0,
                },
            },
        };
        Ok(Self {
            body,
            head,
            row_len: spec.input_dim(),
            output_width: spec.output_dim(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Values per input row.
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// Values per output row.
    pub fn output_width(&self) -> usize {
        self.output_width
    }

    /// Runs `batch` rows (`input` row-major) and returns `batch * output_width()` values.
    /// The caller has checked `input.len() == batch * row_len()`.
    pub fn run(&self, input: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(input.len() / self.row_len.max(1) * self.output_width);
        let idle = || self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut scratch = idle().pop().unwrap_or_default();
        // An MLP's rows go through each layer together (`Dense::apply`), a CNN's one by one.
        let block_rows = match self.body {
            Body::Mlp { .. } => MLP_BLOCK_ROWS,
            Body::Cnn { .. } => 1,
        };
        for rows in input.chunks(block_rows * self.row_len.max(1)) {
            let values = self.forward(rows, &mut scratch);
            let start = out.len();
            out.extend_from_slice(values);
            for row in out[start..].chunks_exact_mut(self.output_width.max(1)) {
                self.finish(row);
            }
        }
        let mut idle = idle();
        if idle.len() < MAX_IDLE {
            idle.push(scratch);
        }
        out
    }

    /// The last layer's values for `rows` (a CNN's: one row) in one of `scratch`'s buffers.
    fn forward<'s>(&self, rows: &[f32], scratch: &'s mut Scratch) -> &'s [f32] {
        match &self.body {
            Body::Mlp { layers, activation } => mlp_forward(layers, *activation, rows, scratch),
            Body::Cnn {
                conv1,
                conv2,
                fc,
                input: [_, h, w],
            } => {
                let Scratch { a, b, patches } = scratch;
                // Channel-first throughout, as the export: its flatten is then the identity.
                let hw = conv1.apply_relu(rows, (*h, *w), patches, a);
                let hw = max_pool(a, hw, b);
                let hw = conv2.apply_relu(b, hw, patches, a);
                max_pool(a, hw, b);
                fc.apply(b, a);
                a
            }
        }
    }

    /// The export's output layer, in place on one row's values.
    fn finish(&self, values: &mut [f32]) {
        match self.head {
            Head::Sigmoid => values
                .iter_mut()
                .for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            Head::Softmax => {
                let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for v in values.iter_mut() {
                    *v = (*v - max).exp();
                    sum += *v;
                }
                values.iter_mut().for_each(|v| *v /= sum);
            }
            Head::Affine { scale, offset } => {
                values.iter_mut().for_each(|v| *v = *v * scale + offset)
            }
        }
    }
}

#[cfg(all(test, feature = "onnx"))]
mod tests {
    use b3o_models::model::CnnConfig;
    use b3o_models::onnx::export_onnx;

    use super::*;
    use crate::inference::OnnxPredictor;

    /// A CNN with other channel counts than the digit model's, against tract-onnx's reading of
    /// its export, one image and a batch.
    #[test]
    fn any_cnn_width_answers_like_tract() {
        let mut spec = ModelSpec::mnist_cnn();
        spec.architecture = Architecture::Cnn(CnnConfig {
            conv1_channels: 3,
            conv2_channels: 5,
        });
        spec.labels = vec!["a".into(), "b".into(), "c".into()];
        let weights = spec.init_weights(4);
        let network = Network::new(&spec, &weights).unwrap();
        let tract = OnnxPredictor::load(&export_onnx(&spec, &weights).unwrap()).unwrap();
        let input: Vec<f32> = (0..3 * 784)
            .map(|i| ((i * 31) % 97) as f32 / 97.0)
            .collect();
        let got = network.run(&input);
        let want = tract.predict(&input, 3).unwrap();
        assert_eq!(got.len(), want.len());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-5, "{worst}");
        assert_eq!(network.run(&input[..784]), got[..3].to_vec());
    }

    /// An MLP of widths that are no multiple of the kernels' blocks (rows past a multiple of
    /// four, outputs past a multiple of eight or sixteen): every batch gives each row bit for
    /// bit what the row alone gives, through both compiled kernels, and tract's values.
    #[test]
    fn mlp_batches_are_their_rows_bit_for_bit_and_answer_like_tract() {
        let spec = ModelSpec {
            architecture: Architecture::Mlp(b3o_models::model::MlpConfig {
                hidden: vec![19, 37, 5],
                activation: Activation::LeakyRelu { slope: 0.01 },
            }),
            preprocessing: None,
            task: Task::MulticlassClassification,
            labels: vec!["a".into(), "b".into(), "c".into()],
            input_shape: vec![7],
            ood: None,
        };
        let weights = spec.init_weights(3);
        let network = Network::new(&spec, &weights).unwrap();
        let tract = OnnxPredictor::load(&export_onnx(&spec, &weights).unwrap()).unwrap();
        let input: Vec<f32> = (0..7 * 131)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let alone: Vec<f32> = input.chunks_exact(7).flat_map(|r| network.run(r)).collect();
        for rows in [2, 3, 4, 5, 9, 64, 67, 131] {
            let x = &input[..rows * 7];
            assert_eq!(network.run(x), alone[..rows * 3], "{rows} rows");
            let want = tract.predict(x, rows).unwrap();
            let worst = alone[..rows * 3]
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst <= 1e-5, "{rows} rows: {worst}");
        }
        let Body::Mlp { layers, .. } = &network.body else {
            unreachable!()
        };
        for layer in layers {
            let x: Vec<f32> = (0..layer.input * 11)
                .map(|i| (i % 13) as f32 - 6.0)
                .collect();
            let mut one = Vec::new();
            let rows: Vec<f32> = x
                .chunks_exact(layer.input)
                .flat_map(|r| {
                    layer.apply(r, &mut one);
                    one.clone()
                })
                .collect();
            let mut baseline = vec![0.0; rows.len()];
            layer.rows::<8>(&x, &mut baseline);
            assert_eq!(baseline, rows);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut wide = vec![0.0; rows.len()];
                // SAFETY: the CPU has AVX2.
                unsafe { layer.rows_avx2(&x, &mut wide) };
                assert_eq!(wide, rows);
            }
        }
    }

    #[test]
    fn weights_of_another_layout_are_refused() {
        let spec = ModelSpec::mnist_cnn();
        let mut weights = spec.init_weights(1);
        weights.tensors.pop();
        assert!(matches!(
            Network::new(&spec, &weights),
            Err(InferenceError::InvalidModel(_))
        ));
    }
}
