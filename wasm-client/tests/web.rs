//! Engine tests in a real headless Chromium (wasm-bindgen-test-runner + chromedriver, started
//! with WebGPU on SwiftShader by `webdriver.json`). Run: `cargo test --target wasm32-unknown-unknown`.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// The browser suite starts Chromium with a SwiftShader WebGPU adapter: detection must find it
/// and pick burn's wgpu backend for training.
#[wasm_bindgen_test]
async fn detects_the_webgpu_adapter_and_picks_wgpu_for_training() {
    let caps = b3o_wasm_client::capabilities::detect().await;
    assert!(caps.webgpu, "no WebGPU adapter detected: {caps:?}");
    assert_eq!(
        caps.training_backend,
        b3o_wasm_client::capabilities::TrainingBackend::Wgpu
    );
}
