//! Inputs the fuzz targets (`fuzz/`, `scripts/fuzz.sh`) found crashing, minimised with
//! `cargo fuzz tmin`, kept under `tests/fuzz_inputs/<target>/` and replayed here: each must now
//! be refused with an error, not a panic.

use b3o_models::image::{ImageError, decode_image};

/// A file of `tests/fuzz_inputs/`.
fn fuzz_input(rel: &str) -> Vec<u8> {
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let path = format!("{manifest_dir}/tests/fuzz_inputs/{rel}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// `image_decoder`: a 418-byte baseline JPEG (40x24, a chroma component sampled 2x1 against a
/// 1x1 luma) whose scan makes zune-jpeg 0.5.15's AVX2 IDCT store past its output and unwrap
/// `None` (`idct/avx2.rs:247`, upstream zune-image#361, open). Anonymous callers reach this decoder through every public image model.
/// On a CPU without AVX2 the scalar IDCT runs instead and the file decodes or fails cleanly.
#[test]
fn jpeg_that_panics_the_jpeg_decoder_is_refused_as_undecodable() {
    let jpeg = fuzz_input("image_decoder/jpeg-idct-avx2-panic.jpg");
    match decode_image(&jpeg) {
        Err(ImageError::Decode(message)) => assert!(!message.is_empty()),
        Ok(pixels) => assert_eq!(pixels.len(), 28 * 28),
        Err(other) => panic!("expected a decode error, got {other:?}"),
    }
}
