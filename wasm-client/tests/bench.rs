//! In-browser engine benchmarks, in the same headless Chromium as the tests (WebGPU on
//! SwiftShader). Not part of the test suite; results go to BENCHMARKS.md. Run (see there):
//!
//! ```sh
//! cd wasm-client && cargo test --target wasm32-unknown-unknown --profile wasm-release \
//!     --features browser-bench --test bench -- --nocapture
//! ```
//!
//! Inference goes through the exported `benchInference` (the engine's loaded model, evaluated
//! directly, zeros as inputs; `scripts/bench-browser.sh` times the built bundle beside
//! onnxruntime-web); training through `benchTraining` (one `train_local_async` round, Adam,
//! after a warm-up). CPU figures are measured twice: the second run has the browser's
//! optimised code (dynamic tiering).
#![cfg(target_arch = "wasm32")]

use b3o_models::onnx::export_onnx;
use b3o_models::package::{ModelPackage, PACKAGE_FORMAT};
use b3o_wasm_client::browser::loader::sha256_hex;
use b3o_wasm_client::browser::selftest::Problem;
use b3o_wasm_client::browser::{infer_api, train_api};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn json(v: &JsValue) -> String {
    js_sys::JSON::stringify(v).unwrap().into()
}

#[wasm_bindgen_test]
async fn engine_benchmarks() {
    for (name, problem) in [
        ("mlp", Problem::Mlp),
        ("churn_b3o", Problem::ChurnB3o),
        ("cnn", Problem::Cnn),
    ] {
        let spec = problem.spec();
        let onnx = export_onnx(&spec, &spec.init_weights(1)).unwrap();
        let package = ModelPackage {
            format: PACKAGE_FORMAT.into(),
            name: name.into(),
            version: 1,
            spec,
            onnx_path: ModelPackage::onnx_path_for(name, 1),
            onnx_sha256: sha256_hex(&onnx),
            onnx_bytes: onnx.len() as u64,
        };
        infer_api::load_model_bytes(&serde_json::to_string(&package).unwrap(), onnx)
            .map_err(JsValue::from)
            .unwrap();
        for batch in [1, 64] {
            let calls = if batch == 1 { 50 } else { 5 };
            // Twice: the browser swaps in optimised code for hot wasm functions after a while
            // (dynamic tiering), later on a loaded machine.
            for _ in 0..2 {
                let stats = infer_api::bench_inference(name, batch, 200, calls)
                    .map_err(JsValue::from)
                    .unwrap();
                console_log!("inference {name} {}", json(&stats));
            }
        }
    }
    // One forward pass of 32 rows on WebGPU: a handful of dispatches and one read back.
    let (gpu, _) = b3o_wasm_client::capabilities::training_device(
        b3o_wasm_client::capabilities::BackendChoice::Wgpu,
    )
    .await
    .unwrap();
    for problem in [Problem::Mlp, Problem::Cnn] {
        let spec = problem.spec();
        let weights = spec.init_weights(1);
        let data = problem.data(32);
        let mut times = Vec::new();
        for _ in 0..6 {
            let start = b3o_wasm_client::browser::js::now_ms();
            b3o_models::model::predict_async(&spec, &weights, &data.features, 32, &gpu)
                .await
                .unwrap();
            times.push(b3o_wasm_client::browser::js::now_ms() - start);
        }
        console_log!("wgpu forward {problem:?} x32: {times:?} ms");
    }
    for (backend, problem, rows, batch) in [
        ("cpu", "mlp", 16_384, 32),
        ("cpu", "mlp", 16_384, 64),
        ("cpu", "cnn", 1_024, 32),
        ("wgpu", "mlp", 2_048, 32),
        ("wgpu", "mlp", 2_048, 256),
        ("wgpu", "cnn", 256, 32),
    ] {
        let runs = if backend == "cpu" { 2 } else { 1 };
        for _ in 0..runs {
            let result = train_api::bench_training(backend.into(), problem.into(), rows, batch, 1)
                .await
                .map_err(JsValue::from)
                .unwrap();
            console_log!("training {}", json(&result));
        }
    }
}
