//! The browser engine: what the Web Workers in `wasm-client/js/` call through wasm-bindgen.
//!
//! - [`loader`]: model packages from the server or, offline, the Cache API (platform-independent
//!   decisions over the [`loader::Fetch`] and [`loader::Store`] traits).
//! - [`engine`]: loaded models and the inference operations, answering the worker protocol's
//!   JSON (platform-independent).
//! - [`web`] (wasm32): `fetch` and the Cache API behind those traits.
//! - [`selftest`] (`train`): fixed small training problems: backend agreement and throughput.
//! - `infer_api` (wasm32): the inference exports, in both bundles.
//! - `train_api` (wasm32, `train`): the training exports, only in the training bundle.
//! - `fl_run` (wasm32, `fl`): the federated learning client as the training worker's `run`.
//!
//! JavaScript values cross the boundary here only; everything below takes Rust types.
//! `ENGINE.md` documents the worker protocol built on these exports.

#[cfg(feature = "infer")]
pub mod engine;
#[cfg(all(target_arch = "wasm32", feature = "fl"))]
pub mod fl_run;
#[cfg(all(target_arch = "wasm32", feature = "infer"))]
pub mod infer_api;
#[cfg(target_arch = "wasm32")]
pub mod js;
#[cfg(feature = "infer")]
pub mod loader;
#[cfg(feature = "train")]
pub mod selftest;
#[cfg(all(target_arch = "wasm32", feature = "train"))]
pub mod train_api;
#[cfg(all(target_arch = "wasm32", feature = "infer"))]
pub mod web;

/// Installs the panic hook that prints Rust panics to the console. Called by the workers once
/// after instantiation.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn init_engine() {
    console_error_panic_hook::set_once();
}
