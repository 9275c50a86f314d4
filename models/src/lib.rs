//! B3O Edge's ML core: one implementation of every model, its preprocessing, local training,
//! the weight/update wire format and the ONNX export, shared by the browser, the native client,
//! the simulator and the server.
//!
//! It knows nothing of HTTP, databases or the DOM, and compiles for native and
//! `wasm32-unknown-unknown`. It never reads files itself: callers hand it bytes.
//!
//! Code map, in the order data flows:
//! - [`tabular`]: CSV bytes to a [`tabular::Table`]; column kinds, identifiers and the target
//!   inferred into a [`tabular::Schema`].
//! - [`image`]: PNG/JPEG to 28x28 inputs; IDX (MNIST) files to a [`dataset::Dataset`].
//! - [`stats`]: mergeable per-column [`stats::Summary`] that clients share instead of rows.
//! - [`drift`]: serving inputs against the training summary (value sketches, Evidently's tests).
//! - [`preprocess`]: the [`preprocess::PreprocessSpec`] built from a merged summary; the one path
//!   from cells (CSV or JSON) to model inputs, for training and serving.
//! - [`model`]: [`model::ModelSpec`] (architecture + preprocessing + task + labels), its
//!   [`weights::WeightLayout`], the burn [`model::Network`], and [`model::predict`].
//! - [`train`]: [`train::train_local`] (with FedProx and cancellation) and [`train::evaluate`].
//! - [`weights`]: the safetensors update format, [`weights::encode`] / [`weights::decode`].
//! - [`compress`]: compressed updates (f16, int8, top-k deltas from the round's base model).
//! - [`onnx`]: [`onnx::export_onnx`], our own ONNX writer.
//! - [`package`]: [`package::ModelPackage`], what clients download to run a deployed model.
//! - [`v2`]: KServe V2 inference request bodies, parsed as a stream with bounds.
//! - [`monitor`]: what a deployment keeps of the inputs it scores (summaries, never rows), and
//!   [`drift`] compares them with the training data's.
//!
//! # Features
//! - `train` (default): the burn side: [`model::Network`], [`model::predict`], [`train`] and the
//!   [`Device`] re-export. Without it the crate has no burn dependency: the inference-only
//!   browser bundle uses specs, preprocessing, tabular reading, statistics, weights, images, the
//!   ONNX export and packages, and runs the ONNX graph with tract.
//! - `wgpu`: burn's wgpu backend (WebGPU in browsers, Vulkan/Metal natively); see
//!   [`device::webgpu`].

pub mod compress;
pub mod dataset;
#[cfg(feature = "train")]
pub mod device;
pub mod dp;
pub mod drift;
pub mod image;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod onnx;
pub mod ood;
#[cfg(feature = "openapi")]
mod openapi;
pub mod package;
pub mod preprocess;
pub mod protocol;
pub mod secagg;
pub mod stats;
pub mod tabular;
pub mod task;
#[cfg(feature = "train")]
pub mod train;
pub mod v2;
pub mod weights;

/// burn's device handle, re-exported so callers pick `Device::flex()` or `Device::wgpu(..)`
/// without depending on burn themselves.
#[cfg(feature = "train")]
pub use burn::prelude::Device;
pub use dataset::Dataset;
pub use model::ModelSpec;
pub use task::Task;
pub use weights::{
    Dtype, FormatError, NamedTensor, TensorSpec, UpdateMeta, WeightLayout, WeightSet,
};
