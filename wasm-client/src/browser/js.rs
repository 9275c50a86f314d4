//! Small conversions at the JavaScript boundary: JSON values both ways, errors as `JsError`
//! (a JavaScript `Error` whose message is shown to people), the global scope of a window or a
//! worker, and a high-resolution clock.

use std::fmt::Display;

use js_sys::{JSON, Reflect};
use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `performance.now()`, in a window or a worker.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    pub fn now_ms() -> f64;
}

/// A `JsError` carrying `e`'s message.
pub fn error(e: impl Display) -> JsError {
    JsError::new(&e.to_string())
}

/// A serde value as a plain JavaScript value (objects, arrays, numbers, strings).
pub fn to_js(value: &impl serde::Serialize) -> Result<JsValue, JsError> {
    let text = serde_json::to_string(value).map_err(error)?;
    JSON::parse(&text).map_err(|_| JsError::new("internal error: unparsable JSON"))
}

/// A plain JavaScript value read as `T`; `what` names it in the error.
pub fn from_js<T: DeserializeOwned>(value: &JsValue, what: &str) -> Result<T, JsError> {
    let text: String = JSON::stringify(value)
        .map_err(|_| JsError::new(&format!("{what} is not plain data")))?
        .into();
    serde_json::from_str(&text).map_err(|e| JsError::new(&format!("{what}: {e}")))
}

/// `globalThis[name]`, if present.
pub fn global_get(name: &str) -> Option<JsValue> {
    Reflect::get(&js_sys::global(), &name.into())
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

/// The page's (or worker's) origin, e.g. `https://b3o.example`.
pub fn origin() -> Option<String> {
    global_get("location")
        .and_then(|l| Reflect::get(&l, &"origin".into()).ok())
        .and_then(|o| o.as_string())
}

/// The message of a thrown JavaScript value.
pub fn message(v: &JsValue) -> String {
    v.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| v.as_string())
        .unwrap_or_else(|| format!("{v:?}"))
}

/// The `capabilities` reply: `{webgpu, backend: "wgpu" | "cpu", cross_origin_isolated,
/// software_gpu, adapter, race}` (`race`: `{cpu_step_ms, gpu_step_ms}` when `auto` raced the
/// backends on a hardware adapter, else null).
pub fn capabilities(caps: &crate::capabilities::Capabilities) -> Result<JsValue, JsError> {
    to_js(&serde_json::json!({
        "webgpu": caps.webgpu,
        "backend": caps.training_backend.as_str(),
        "cross_origin_isolated": caps.cross_origin_isolated,
        "software_gpu": caps.software_gpu,
        "adapter": caps.adapter,
        "race": caps.race,
    }))
}
