//! Integration tests of b3o-models on the real datasets, end to end: CSV or IDX bytes in,
//! trained weights, metrics and ONNX files out.

mod churn;
mod mnist;
mod onnx;

/// Reads a file of the shared test datasets (not part of the product).
pub fn dataset(rel: &str) -> Vec<u8> {
    let path = format!("{}/../../shared/datasets/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}
