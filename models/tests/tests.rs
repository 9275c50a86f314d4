//! Integration tests of b3o-models on the real datasets, end to end: CSV or IDX bytes in,
//! trained weights, metrics and ONNX files out.

mod churn;
mod fuzz_regressions;
mod mnist;
mod onnx;

/// Reads a file of the shared test datasets (not part of the product).
pub fn dataset(rel: &str) -> Vec<u8> {
    // The runtime variable first: a test binary reused from a build in another checkout
    // (shared target directory) would otherwise look in that checkout.
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let path = format!("{manifest_dir}/../../shared/datasets/{rel}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}
