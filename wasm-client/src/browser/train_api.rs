//! The training exports (the training bundle only): capabilities with the training device
//! confirmed, the backend self-check and the training throughput benchmark. The federated
//! learning client (`runClient`) is in `fl_run`.

use wasm_bindgen::prelude::*;

use super::js::{self, error, to_js};
use super::selftest::{self, Problem};
use crate::capabilities::{self, BackendChoice, TrainingBackend};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
export interface StepCheck {
  backend: "wgpu" | "cpu";
  /** Loss of every batch. */
  losses: number[];
  /** The trained weights, flattened in layout order. */
  weights: number[];
  elapsed_ms: number;
}
export interface TrainingBench {
  backend: "wgpu" | "cpu";
  problem: "mlp" | "churn_b3o" | "cnn";
  rows: number;
  batch_size: number;
  epochs: number;
  seconds: number;
  samples_per_sec: number;
}
"#;

/// [`crate::capabilities::detect`], with `backend` confirmed by creating the training device
/// (burn's asynchronous WebGPU setup).
#[wasm_bindgen(js_name = trainCapabilities, unchecked_return_type = "Capabilities")]
pub async fn train_capabilities() -> Result<JsValue, JsError> {
    js::capabilities(&capabilities::detect_training().await)
}

fn choice(backend: &str) -> Result<BackendChoice, JsError> {
    match backend {
        "auto" | "" => Ok(BackendChoice::Auto),
        "wgpu" | "webgpu" => Ok(BackendChoice::Wgpu),
        "cpu" | "flex" => Ok(BackendChoice::Cpu),
        other => Err(JsError::new(&format!(
            "unknown backend `{other}`: use \"auto\", \"wgpu\" or \"cpu\""
        ))),
    }
}

fn problem(name: &str) -> Result<Problem, JsError> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
        JsError::new(&format!(
            "unknown problem `{name}`: use \"mlp\", \"churn_b3o\" or \"cnn\""
        ))
    })
}

pub(super) async fn device(
    backend: &str,
) -> Result<(b3o_models::Device, TrainingBackend), JsError> {
    capabilities::training_device(choice(backend)?)
        .await
        .map_err(error)
}

/// A few SGD steps of a fixed problem (`"mlp"`, `"churn_b3o"` or `"cnn"`) from fixed weights
/// on `backend`: the same inputs on WebGPU and on the CPU must give the same weights, up to
/// float rounding.
#[wasm_bindgen(js_name = trainStepCheck, unchecked_return_type = "StepCheck")]
pub async fn train_step_check(
    backend: String,
    problem_name: Option<String>,
    steps: Option<usize>,
    batch: Option<usize>,
) -> Result<JsValue, JsError> {
    let (device, used) = device(&backend).await?;
    let p = problem(problem_name.as_deref().unwrap_or("mlp"))?;
    let start = js::now_ms();
    let check = selftest::train_step_check(
        p,
        steps.unwrap_or(3).clamp(1, 100),
        batch.unwrap_or(8).clamp(1, 1024),
        &device,
    )
    .await
    .map_err(error)?;
    to_js(&serde_json::json!({
        "backend": used.as_str(),
        "losses": check.losses,
        "weights": check.outcome.weights.flatten(),
        "elapsed_ms": js::now_ms() - start,
    }))
}

/// Training throughput: `epochs` epochs of `rows` synthetic rows of `problem` at
/// `batch_size` on `backend` (Adam), timed after a warm-up. Includes the metrics pass over the
/// rows that ends every round.
#[wasm_bindgen(js_name = benchTraining, unchecked_return_type = "TrainingBench")]
pub async fn bench_training(
    backend: String,
    problem_name: String,
    rows: usize,
    batch_size: usize,
    epochs: usize,
) -> Result<JsValue, JsError> {
    let (device, used) = device(&backend).await?;
    let p = problem(&problem_name)?;
    let spec = p.spec();
    let (rows, batch_size, epochs) = (rows.max(1), batch_size.max(1), epochs.max(1));
    let weights = selftest::initial_weights(p);
    let cfg = |epochs| b3o_models::train::TrainConfig {
        optimizer: b3o_models::train::Optimizer::Adam,
        lr: 1e-3,
        ..selftest::step_config(batch_size, epochs)
    };
    // Warm-up: WebGPU compiles its shaders on the first batches; the browser compiles hot wasm
    // functions again, optimised, after they have run a while (dynamic tiering).
    let warm = match used {
        TrainingBackend::Wgpu => p.data(2 * batch_size),
        TrainingBackend::Flex => p.data(rows.min(8192)),
    };
    b3o_models::train::train_local_async(&spec, &weights, &warm, &cfg(1), &device, &mut |_| {
        std::ops::ControlFlow::Continue(())
    })
    .await
    .map_err(error)?;
    let data = p.data(rows);
    let start = js::now_ms();
    b3o_models::train::train_local_async(
        &spec,
        &weights,
        &data,
        &cfg(epochs),
        &device,
        &mut |_| std::ops::ControlFlow::Continue(()),
    )
    .await
    .map_err(error)?;
    let seconds = (js::now_ms() - start) / 1000.0;
    to_js(&serde_json::json!({
        "backend": used.as_str(),
        "problem": p,
        "rows": rows,
        "batch_size": batch_size,
        "epochs": epochs,
        "seconds": seconds,
        "samples_per_sec": (rows * epochs) as f64 / seconds,
    }))
}
