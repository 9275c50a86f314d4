//! `b3o_wasm_client::codeless::image_inputs` for the MNIST CNN on arbitrary bytes: format and
//! size checks, then `b3o_models::image::decode_image` (PNG/JPEG decode, greyscale, resize,
//! inversion). An accepted image is 28x28 values in [0, 1].
//!
//! zune-jpeg's SIMD IDCT panics on some malformed JPEGs (zune-image#361); `decode_image`
//! catches that, so a panic from inside zune-jpeg may unwind to it (any other panic aborts).
#![no_main]

use std::sync::LazyLock;

use b3o_fuzz_support::{forget_tolerated_panic, unwind_panics_from};
use b3o_models::ModelSpec;
use b3o_wasm_client::codeless::image_inputs;
use libfuzzer_sys::fuzz_target;

static MNIST: LazyLock<ModelSpec> = LazyLock::new(ModelSpec::mnist_cnn);

fuzz_target!(init: unwind_panics_from(&["/zune-jpeg-"]), |data: &[u8]| {
    forget_tolerated_panic();
    if let Ok(pixels) = image_inputs(&MNIST, data) {
        assert_eq!(pixels.len(), 28 * 28);
        assert!(pixels.iter().all(|p| (0.0..=1.0).contains(p)));
    }
});
