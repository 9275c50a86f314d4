//! The inference exports (both bundles): capabilities, loading a deployed model (with the
//! offline cache), and predictions on CSV text, JSON rows, an image or drawn pixels. The worker
//! `js/infer-worker.js` maps its messages onto these one to one.
//!
//! Loaded models live in this wasm instance (one per worker), by deployment name.

use std::cell::RefCell;

use js_sys::{Float32Array, Function, Object, Reflect};
use wasm_bindgen::prelude::*;

use super::engine::Engine;
use super::js::{self, error, to_js};
use super::loader;
use super::web::{WebCache, WebFetch};
use crate::capabilities;

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::default());
}

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** What the browser offers the engine. `backend` is where training runs under "auto". */
export interface Capabilities {
  webgpu: boolean;
  backend: "wgpu" | "cpu";
  cross_origin_isolated: boolean;
  /** The WebGPU adapter renders in software (SwiftShader...): "auto" trains on the CPU. */
  software_gpu: boolean;
  /** The adapter's vendor / architecture / description. */
  adapter: string | null;
  /** The training engine's race behind "auto" on a hardware adapter (null: none was run). */
  race?: { cpu_step_ms: number; gpu_step_ms: number } | null;
}
/** A loaded model: enough to build a form (tabular) or a drawing pad (image). */
export interface ModelInfo {
  name: string;
  version: number;
  kind: "tabular" | "image";
  task: "binary_classification" | "multiclass_classification" | "regression";
  labels: string[];
  /** Tabular: the raw columns a row needs, in order. Images: empty. */
  input_columns: string[];
  /** Tabular: the target column (ignored when present in rows). */
  target: string | null;
  /** The ONNX bytes came from the browser's cache. */
  from_cache: boolean;
  /** The server was unreachable: the last cached version was loaded. */
  offline: boolean;
}
export interface CsvPrediction {
  csv: string;
  rows: number;
  added_columns: string[];
}
/** Classification: label, its probability and every label's, in label order. Regression: value. */
export type Prediction =
  | { label: string; probability: number; probabilities: number[] }
  | { value: number };
export interface RowsPrediction { predictions: Prediction[]; }
export interface ImagePrediction {
  label: string;
  probability: number;
  probabilities: number[];
  labels: string[];
}
/** Per-call latency: each sample times `calls` back-to-back runs. */
export interface LatencyStats {
  batch: number;
  samples: number;
  calls: number;
  p50_ms: number;
  p90_ms: number;
  mean_ms: number;
}
"#;

fn with_engine<T>(f: impl FnOnce(&mut Engine) -> T) -> T {
    ENGINE.with(|e| f(&mut e.borrow_mut()))
}

/// WebGPU adapter, cross-origin isolation, and where training would run.
#[wasm_bindgen(unchecked_return_type = "Capabilities")]
pub async fn capabilities() -> Result<JsValue, JsError> {
    js::capabilities(&capabilities::detect().await)
}

/// Loads deployment `model` from `server` (`""`: this origin): the package, then its ONNX
/// (checked against the package's SHA-256), both cached for offline use. Replaces a model of the
/// same name loaded before.
#[wasm_bindgen(js_name = loadModel, unchecked_return_type = "ModelInfo")]
pub async fn load_model(
    server: String,
    model: String,
    token: Option<String>,
) -> Result<JsValue, JsError> {
    let net = WebFetch::new(&server, token);
    let cache = WebCache::open().await;
    let loaded = loader::load(&server, &model, &net, &cache)
        .await
        .map_err(error)?;
    let info = with_engine(|e| e.insert(&model, loaded)).map_err(error)?;
    to_js(&info)
}

/// Forgets a loaded model; `false` if it was not loaded.
#[wasm_bindgen(js_name = unloadModel)]
pub fn unload_model(model: &str) -> bool {
    with_engine(|e| e.remove(model))
}

/// Deletes every model this browser has cached.
#[wasm_bindgen(js_name = clearModelCache)]
pub async fn clear_model_cache() -> bool {
    super::web::clear_cache().await
}

/// The CSV text with prediction columns appended, byte for byte what the server's codeless CSV
/// endpoint returns. `onProgress(rowsDone)` is called after every chunk of rows.
#[wasm_bindgen(js_name = predictCsv, unchecked_return_type = "CsvPrediction")]
pub fn predict_csv(
    model: &str,
    csv: &str,
    on_progress: Option<Function>,
) -> Result<JsValue, JsError> {
    let mut progress = |rows: usize| {
        if let Some(f) = &on_progress {
            let _ = f.call1(&JsValue::NULL, &JsValue::from(rows as f64));
        }
    };
    let reply =
        with_engine(|e| e.predict_csv(model, csv.as_bytes(), &mut progress)).map_err(error)?;
    let out = Object::new();
    let text = String::from_utf8(reply.csv)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    let set = |k: &str, v: JsValue| Reflect::set(&out, &k.into(), &v).map(|_| ());
    set("csv", text.into())
        .and_then(|_| set("rows", (reply.rows as f64).into()))
        .and_then(|_| {
            set(
                "added_columns",
                to_js(&reply.added_columns).map_err(JsValue::from)?,
            )
        })
        .map_err(|e| JsError::new(&js::message(&e)))?;
    Ok(out.into())
}

/// Predictions for `rows`, an array of `{column: value}` objects of raw values (`null` when
/// missing).
#[wasm_bindgen(js_name = predictRows, unchecked_return_type = "RowsPrediction")]
pub fn predict_rows(
    model: &str,
    #[wasm_bindgen(unchecked_param_type = "Record<string, string | number | boolean | null>[]")]
    rows: JsValue,
) -> Result<JsValue, JsError> {
    let rows: serde_json::Value = js::from_js(&rows, "rows")?;
    to_js(&with_engine(|e| e.predict_rows(model, &rows)).map_err(error)?)
}

/// The prediction for a PNG or JPEG (any size from 8x8 to 4096x4096; dark-on-light images
/// are inverted like MNIST).
#[wasm_bindgen(js_name = predictImage, unchecked_return_type = "ImagePrediction")]
pub fn predict_image(model: &str, bytes: &[u8]) -> Result<JsValue, JsError> {
    to_js(&with_engine(|e| e.predict_image(model, bytes)).map_err(error)?)
}

/// The prediction for 28x28 pixels in `[0, 1]`, white digit on black, row-major.
#[wasm_bindgen(js_name = predictPixels, unchecked_return_type = "ImagePrediction")]
pub fn predict_pixels(model: &str, pixels: &[f32]) -> Result<JsValue, JsError> {
    to_js(&with_engine(|e| e.predict_pixels(model, pixels)).map_err(error)?)
}

/// Raw model outputs for `batch` rows of model inputs (already preprocessed), row-major.
#[wasm_bindgen(js_name = predictRaw)]
pub fn predict_raw(model: &str, inputs: &[f32], batch: usize) -> Result<Float32Array, JsError> {
    let out = with_engine(|e| e.predict_raw(model, inputs, batch)).map_err(error)?;
    Ok(Float32Array::from(out.as_slice()))
}

/// Inference latency of a loaded model at `batch` rows (zeros as inputs), inside wasm (no
/// message passing): `samples` timings of `calls` back-to-back runs each (browsers coarsen
/// `performance.now()` to 0.1 ms on pages that are not cross-origin isolated), after a warm-up.
#[wasm_bindgen(js_name = benchInference, unchecked_return_type = "LatencyStats")]
pub fn bench_inference(
    model: &str,
    batch: usize,
    samples: usize,
    calls: usize,
) -> Result<JsValue, JsError> {
    let stats =
        with_engine(|e| e.latency(model, batch, samples, calls, &js::now_ms)).map_err(error)?;
    to_js(&stats)
}

/// Adds a model from a package (JSON) and ONNX bytes already at hand (tests, benchmarks, pages
/// that ship a model themselves), checked like a download.
#[wasm_bindgen(js_name = loadModelBytes, unchecked_return_type = "ModelInfo")]
pub fn load_model_bytes(package_json: &str, onnx: Vec<u8>) -> Result<JsValue, JsError> {
    let loaded = loader::from_bytes(package_json.as_bytes(), onnx).map_err(error)?;
    let name = loaded.package.name.clone();
    to_js(&with_engine(|e| e.insert(&name, loaded)).map_err(error)?)
}
