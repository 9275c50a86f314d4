//! Engine tests in a real headless Chromium (wasm-bindgen-test-runner + chromedriver, started
//! with WebGPU on SwiftShader by `webdriver.json`). Run: `cargo test --target wasm32-unknown-unknown`
//! in `wasm-client/` (the test build turns on burn's wgpu backend).
//!
//! SwiftShader trains at about a hundred samples a second: the problems here are a few steps of
//! a few rows.
#![cfg(target_arch = "wasm32")]

use b3o_models::Device;
use b3o_models::model::{ModelSpec, predict_async};
use b3o_models::onnx::export_onnx;
use b3o_models::package::{ModelPackage, PACKAGE_FORMAT};
use b3o_wasm_client::browser::loader::{self, Store, sha256_hex};
use b3o_wasm_client::browser::selftest::{Problem, max_difference, train_step_check};
use b3o_wasm_client::browser::web::WebCache;
use b3o_wasm_client::browser::{infer_api, js};
use b3o_wasm_client::capabilities::{self, BackendChoice, TrainingBackend};
use b3o_wasm_client::codeless;
use b3o_wasm_client::inference::OnnxPredictor;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

async fn webgpu() -> Device {
    let (device, backend) = capabilities::training_device(BackendChoice::Wgpu)
        .await
        .expect("burn's async WebGPU setup failed");
    assert_eq!(backend, TrainingBackend::Wgpu);
    device
}

/// The browser suite starts Chromium with a SwiftShader WebGPU adapter: detection must find it,
/// see that it renders in software (so `auto` trains on the CPU, which is faster there), and
/// burn must still be able to use it when asked for WebGPU explicitly.
#[wasm_bindgen_test]
async fn detects_the_webgpu_adapter_and_its_kind() {
    let caps = capabilities::detect().await;
    assert!(caps.webgpu, "no WebGPU adapter detected: {caps:?}");
    assert!(caps.software_gpu, "SwiftShader not recognised: {caps:?}");
    assert_eq!(caps.training_backend, TrainingBackend::Flex);
    let confirmed = capabilities::detect_training().await;
    assert_eq!(confirmed.training_backend, TrainingBackend::Flex);
    let (_, auto) = capabilities::training_device(BackendChoice::Auto)
        .await
        .unwrap();
    assert_eq!(auto, TrainingBackend::Flex);
    webgpu().await;
    // Isolation is read from the page (the test server sends COOP/COEP headers, partner pages
    // usually do not): the engine trains single-threaded either way.
    let isolated = js_sys::Reflect::get(&js_sys::global(), &"crossOriginIsolated".into())
        .unwrap()
        .as_bool();
    assert_eq!(Some(confirmed.cross_origin_isolated), isolated);
}

/// The race behind `auto` on a real adapter, run here on SwiftShader's: both backends train
/// (the GPU steps through burn's wgpu backend, losses read back) and are timed, and the CPU
/// wins, as it must on a software adapter (BENCHMARKS.md: 100x and more).
#[wasm_bindgen_test]
async fn the_auto_race_times_both_backends_and_the_cpu_beats_software_webgpu() {
    let gpu = webgpu().await;
    let race = capabilities::race(&gpu).await;
    assert!(
        race.cpu_step_ms.is_finite() && race.cpu_step_ms > 0.0,
        "{race:?}"
    );
    assert!(
        race.gpu_step_ms.is_finite() && race.gpu_step_ms > race.cpu_step_ms,
        "{race:?}"
    );
    assert_eq!(race.winner(), TrainingBackend::Flex);
}

fn assert_close(what: &str, a: &[f64], b: &[f64], tolerance: f64) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tolerance * (1.0 + y.abs()),
            "{what} {i}: {x} vs {y}"
        );
    }
}

/// The same SGD steps from the same weights and rows on WebGPU and on the CPU give the same
/// losses and weights, up to float rounding. Training reads tensors only asynchronously: a
/// blocking read on WebGPU would have panicked here.
#[wasm_bindgen_test]
async fn a_training_step_on_webgpu_matches_the_cpu() {
    let gpu = webgpu().await;
    for (problem, steps, batch) in [(Problem::Mlp, 3, 8), (Problem::Cnn, 2, 4)] {
        let on_gpu = train_step_check(problem, steps, batch, &gpu).await.unwrap();
        let on_cpu = train_step_check(problem, steps, batch, &Device::flex())
            .await
            .unwrap();
        assert_close(
            &format!("{problem:?} loss"),
            &on_gpu.losses,
            &on_cpu.losses,
            1e-4,
        );
        let diff = max_difference(&on_gpu.outcome.weights, &on_cpu.outcome.weights);
        assert!(diff <= 1e-4, "{problem:?}: weights differ by {diff}");
        let (g, c) = (&on_gpu.outcome.metrics, &on_cpu.outcome.metrics);
        assert_close(
            &format!("{problem:?} final loss"),
            &[g.loss],
            &[c.loss],
            1e-4,
        );
        assert_eq!(g.accuracy, c.accuracy, "{problem:?}");
    }
}

/// The direct evaluator (what the inference bundle runs) and burn (what training runs, on the
/// CPU and on WebGPU) give the same outputs for the same weights. (Natively, the direct
/// evaluator is also checked against tract-onnx's reading of the same file.)
#[wasm_bindgen_test]
async fn direct_and_burn_predictions_agree() {
    let gpu = webgpu().await;
    for problem in [Problem::Mlp, Problem::ChurnB3o, Problem::Cnn] {
        let spec = problem.spec();
        let weights = spec.init_weights(5);
        let data = problem.data(16);
        let direct = OnnxPredictor::load_b3o(&export_onnx(&spec, &weights).unwrap())
            .unwrap()
            .0
            .predict(&data.features, data.n_rows)
            .unwrap();
        for device in [Device::flex(), gpu.clone()] {
            let burn = predict_async(&spec, &weights, &data.features, data.n_rows, &device)
                .await
                .unwrap();
            let worst = direct
                .iter()
                .zip(&burn.values)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert_eq!(direct.len(), burn.values.len());
            assert!(worst <= 1e-4, "{problem:?} on {device:?}: {worst}");
        }
    }
}

fn package(name: &str, spec: &ModelSpec, version: i64, onnx: &[u8]) -> ModelPackage {
    ModelPackage {
        format: PACKAGE_FORMAT.into(),
        name: name.into(),
        version,
        spec: spec.clone(),
        onnx_path: ModelPackage::onnx_path_for(name, version),
        onnx_sha256: sha256_hex(onnx),
        onnx_bytes: onnx.len() as u64,
    }
}

fn field(v: &JsValue, name: &str) -> JsValue {
    js_sys::Reflect::get(v, &name.into()).unwrap()
}

/// A model used before loads from the Cache API when its server cannot be reached, and runs.
#[wasm_bindgen_test]
async fn a_cached_model_loads_and_predicts_offline() {
    let spec = ModelSpec::mnist_cnn();
    let onnx = export_onnx(&spec, &spec.init_weights(3)).unwrap();
    // Nothing listens on port 9: every fetch fails like a lost connection.
    let server = "http://127.0.0.1:9";
    let p = package("offline-digits", &spec, 7, &onnx);
    let cache = WebCache::open().await;
    cache
        .save(
            &loader::onnx_url(server, &p),
            &onnx,
            "application/octet-stream",
        )
        .await;
    cache
        .save(
            &loader::package_url(server, "offline-digits"),
            &serde_json::to_vec(&p).unwrap(),
            "application/json",
        )
        .await;
    let info = infer_api::load_model(server.into(), "offline-digits".into(), None)
        .await
        .map_err(JsValue::from)
        .unwrap();
    assert_eq!(field(&info, "offline"), JsValue::TRUE);
    assert_eq!(field(&info, "from_cache"), JsValue::TRUE);
    assert_eq!(field(&info, "version").as_f64(), Some(7.0));
    assert_eq!(field(&info, "kind").as_string().as_deref(), Some("image"));
    let mut pixels = vec![0.0f32; 784];
    (5..23).for_each(|r| pixels[r * 28 + 14] = 1.0);
    let out = infer_api::predict_pixels("offline-digits", &pixels)
        .map_err(JsValue::from)
        .unwrap();
    let probabilities: Vec<f64> = js_sys::Array::from(&field(&out, "probabilities"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(probabilities.len(), 10);
    assert!((probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-4);

    // A model this browser never saw cannot load offline, and says why.
    let err = infer_api::load_model(server.into(), "never-seen".into(), None)
        .await
        .map_err(JsValue::from)
        .unwrap_err();
    let message = js::message(&err);
    assert!(
        message.contains("has not been used on this device"),
        "{message}"
    );
}

/// The engine's CSV output is the server's codeless CSV, byte for byte.
#[wasm_bindgen_test]
fn predict_csv_matches_the_codeless_output() {
    use b3o_models::preprocess::{
        FeatureTransform, PREPROCESS_VERSION, PreprocessSpec, TargetEncoding,
    };
    let prep = PreprocessSpec {
        version: PREPROCESS_VERSION,
        features: vec![
            FeatureTransform::Standardize {
                column: "Age".into(),
                mean: 40.0,
                std: 10.0,
                impute: 40.0,
            },
            FeatureTransform::OneHot {
                column: "Geography".into(),
                vocabulary: vec!["France".into(), "Spain".into()],
                impute: Some("France".into()),
            },
        ],
        target: TargetEncoding::Classes {
            column: "Exited".into(),
            labels: vec!["0".into(), "1".into()],
        },
        task: b3o_models::Task::BinaryClassification,
    };
    let spec = ModelSpec::tabular(prep, vec![16, 8], Default::default());
    let onnx = export_onnx(&spec, &spec.init_weights(1)).unwrap();
    let p = package("csv-churn", &spec, 1, &onnx);
    infer_api::load_model_bytes(&serde_json::to_string(&p).unwrap(), onnx.clone())
        .map_err(JsValue::from)
        .unwrap();
    let csv = "Id;Age;Geography\r\n1; 30 ;\"Spain\"\r\n2;NA;Germany\r\n";
    let out = infer_api::predict_csv("csv-churn", csv, None)
        .map_err(JsValue::from)
        .unwrap();
    let (predictor, _) = OnnxPredictor::load_b3o(&onnx).unwrap();
    let want = codeless::predict_csv(&predictor, &spec, csv.as_bytes()).unwrap();
    assert_eq!(field(&out, "csv").as_string().unwrap().into_bytes(), want);
    assert_eq!(field(&out, "rows").as_f64(), Some(2.0));
    let err = infer_api::predict_csv("csv-churn", "Id;Age\n1;2\n", None)
        .map_err(JsValue::from)
        .unwrap_err();
    assert!(js::message(&err).contains("`Geography`"));
}
