//! What the machine running the engine offers: a WebGPU adapter (train on burn's `wgpu`
//! backend) or not (train on `flex`, the CPU backend), and whether the page is cross-origin
//! isolated (the only case where wasm threads are available).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainingBackend {
    /// burn's `wgpu` backend on a WebGPU / Vulkan adapter.
    Wgpu,
    /// burn's `flex` CPU backend, available everywhere.
    Flex,
}

#[derive(Debug, Clone, Serialize)]
pub struct Capabilities {
    /// A WebGPU adapter was granted.
    pub webgpu: bool,
    /// `crossOriginIsolated`: shared memory (threads) usable.
    pub cross_origin_isolated: bool,
    /// The backend training will use.
    pub training_backend: TrainingBackend,
}

#[cfg(target_arch = "wasm32")]
mod detect {
    use js_sys::{Function, Promise, Reflect};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    fn global() -> JsValue {
        js_sys::global().into()
    }

    /// `navigator.gpu.requestAdapter()` resolved to an adapter. Works in a window and in a worker
    /// (both expose `navigator` on the global object); any failure means "no WebGPU".
    pub async fn webgpu_adapter() -> bool {
        let Ok(navigator) = Reflect::get(&global(), &"navigator".into()) else {
            return false;
        };
        let Ok(gpu) = Reflect::get(&navigator, &"gpu".into()) else {
            return false;
        };
        if gpu.is_undefined() || gpu.is_null() {
            return false;
        }
        let Ok(request) = Reflect::get(&gpu, &"requestAdapter".into()) else {
            return false;
        };
        let Some(request) = request.dyn_ref::<Function>() else {
            return false;
        };
        let Ok(promise) = request.call0(&gpu) else {
            return false;
        };
        let Ok(promise) = promise.dyn_into::<Promise>() else {
            return false;
        };
        matches!(JsFuture::from(promise).await, Ok(adapter) if !adapter.is_null() && !adapter.is_undefined())
    }

    pub fn cross_origin_isolated() -> bool {
        Reflect::get(&global(), &"crossOriginIsolated".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }
}

/// Probes the environment. Natively there is no browser: training uses `flex`.
pub async fn detect() -> Capabilities {
    #[cfg(target_arch = "wasm32")]
    let (webgpu, cross_origin_isolated) = (
        detect::webgpu_adapter().await,
        detect::cross_origin_isolated(),
    );
    #[cfg(not(target_arch = "wasm32"))]
    let (webgpu, cross_origin_isolated) = (false, false);
    Capabilities {
        webgpu,
        cross_origin_isolated,
        training_backend: if webgpu {
            TrainingBackend::Wgpu
        } else {
            TrainingBackend::Flex
        },
    }
}
