//! Inputs the fuzz targets (`fuzz/`, `scripts/fuzz.sh`) found crashing, kept under
//! `tests/fuzz_inputs/<target>/` (and the models crate's) and replayed natively through the same
//! entry points as the targets: each must be refused with an error, not a panic.
#![cfg(all(not(target_arch = "wasm32"), feature = "onnx"))]

use b3o_models::ModelSpec;
use b3o_models::onnx::proto::GraphProto;
use b3o_models::onnx::to_model_proto;
use b3o_wasm_client::codeless::image_inputs;
use b3o_wasm_client::inference::{InferenceError, OnnxPredictor};
use prost::Message;

/// A file under this crate's directory.
fn read(rel: &str) -> Vec<u8> {
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let path = format!("{manifest_dir}/{rel}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Both loaders refuse `onnx` as an invalid model (and do not panic).
fn assert_refused(onnx: &[u8]) {
    match OnnxPredictor::load(onnx) {
        Err(InferenceError::InvalidModel(message)) => assert!(!message.is_empty()),
        other => panic!("expected InvalidModel, got {other:?}"),
    }
    // Not the graph its spec exports: B3O's own loader refuses it too.
    assert!(matches!(
        OnnxPredictor::load_b3o(onnx),
        Err(InferenceError::InvalidModel(_))
    ));
}

/// The MNIST CNN as B3O exports it, changed by `edit`.
fn edited_mnist(edit: impl FnOnce(&mut GraphProto)) -> Vec<u8> {
    let spec = ModelSpec::mnist_cnn();
    let mut model = to_model_proto(&spec, &spec.init_weights(1)).unwrap();
    edit(model.graph.as_mut().unwrap());
    model.encode_to_vec()
}

/// `onnx_loader`: the MNIST CNN export with 3 bytes changed: the first `Conv`'s `pads` holds two
/// values (`[32767, 0]`) where its two spatial axes need four. tract-core 0.23.9 indexes past
/// them while inferring the convolution's output shape (`ops/cnn/padding.rs:116`, "index out of
/// bounds: the len is 1 but the index is 1"). Also built by hand with `pads = [1, 1]`.
#[test]
fn onnx_conv_with_two_pads_for_two_axes_is_refused_not_a_panic() {
    assert_refused(&read(
        "tests/fuzz_inputs/onnx_loader/conv-pads-two-values.onnx",
    ));
    assert_refused(&edited_mnist(|graph| {
        let conv = graph.node.iter_mut().find(|n| n.op_type == "Conv").unwrap();
        let pads = conv
            .attribute
            .iter_mut()
            .find(|a| a.name == "pads")
            .unwrap();
        pads.ints = vec![1, 1];
    }));
}

/// `onnx_loader`: the churn MLP export whose last node's output was renamed, so that the graph's
/// declared output `output` names no tensor. tract-onnx 0.23.9 looks the name up with `map[..]`
/// and panics ("no entry found for key", `model.rs:187`). Also built by hand: the MNIST export
/// with the graph's output renamed.
#[test]
fn onnx_graph_output_that_names_no_tensor_is_refused_not_a_panic() {
    assert_refused(&read(
        "tests/fuzz_inputs/onnx_loader/graph-output-unknown-name.onnx",
    ));
    // Built by hand: tract's general loader refuses it. B3O's own loader rebuilds the network
    // from the spec and weights the graph carries, so a renamed graph output does not reach
    // tract there: it may load.
    let renamed = edited_mnist(|graph| {
        graph.output[0].name = "nowhere".into();
    });
    assert!(matches!(
        OnnxPredictor::load(&renamed),
        Err(InferenceError::InvalidModel(_))
    ));
}

/// `image_decoder`: the JPEG that panics zune-jpeg's AVX2 IDCT (see the models crate's
/// `fuzz_regressions`), through the codeless image path anonymous callers use: a client error.
#[test]
fn jpeg_that_panics_the_jpeg_decoder_is_a_client_error_for_image_models() {
    let jpeg = read("../models/tests/fuzz_inputs/image_decoder/jpeg-idct-avx2-panic.jpg");
    match image_inputs(&ModelSpec::mnist_cnn(), &jpeg) {
        Err(e) => assert!(e.is_client_error(), "{e:?} should be a client error"),
        // Without AVX2 the scalar IDCT decodes it.
        Ok(pixels) => assert_eq!(pixels.len(), 28 * 28),
    }
}
