//! B3O Edge's client engine. Compiled to wasm32 it is the in-browser ML engine and federated
//! learning client; compiled natively it backs `b3o client` and `b3o simulate`.
//!
//! Only weight updates and mergeable column summaries ever leave a client: never rows.
//! Only this crate (and `app`) knows wasm-bindgen.
//!
//! # Features and bundles
//! - `infer`: inference on B3O's networks, evaluated directly ([`inference`]), codeless
//!   prediction ([`codeless`]) and the model package loader ([`browser::loader`]); no burn and
//!   no graph runtime. Alone it is the inference bundle `b3o_infer` (the predict pages, the
//!   embed widget, offline use).
//! - `tract`, `onnx`: tract-core plans of B3O's graphs and any ONNX model through tract-onnx
//!   (the server).
//! - `train`: local training with burn on the CPU (`flex`); `wgpu` adds WebGPU. With `fl`, the
//!   training bundle `b3o_train`, loaded only when a person starts training.
//! - `fl`: the federated learning client.
//!
//! The wasm-bindgen surface and the Web Worker protocol are in [`browser`] and `ENGINE.md`.

#[cfg(any(target_arch = "wasm32", feature = "infer", feature = "train"))]
pub mod browser;
pub mod capabilities;
#[cfg(feature = "infer")]
pub mod codeless;
#[cfg(feature = "fl")]
pub mod fl;
#[cfg(feature = "infer")]
pub mod inference;
