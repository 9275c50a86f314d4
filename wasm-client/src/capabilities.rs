//! What the machine running the engine offers: a WebGPU adapter (train on burn's `wgpu`
//! backend) or not (train on `flex`, the CPU backend), and whether the page is cross-origin
//! isolated (the only case where wasm threads are available).
//!
//! [`detect`] only probes; with the `train` feature, [`training_device`] turns a
//! [`BackendChoice`] into a burn device, setting WebGPU up with burn's asynchronous
//! initialisation (the only one a browser allows) and falling back to `flex` under `auto`.

use serde::{Deserialize, Serialize};

/// The backend training runs on. Serialised as `"wgpu"` or `"cpu"` (the worker protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrainingBackend {
    /// burn's `wgpu` backend on a WebGPU / Vulkan adapter.
    #[serde(rename = "wgpu")]
    Wgpu,
    /// burn's `flex` CPU backend, available everywhere.
    #[serde(rename = "cpu")]
    Flex,
}

impl TrainingBackend {
    /// `"wgpu"` or `"cpu"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrainingBackend::Wgpu => "wgpu",
            TrainingBackend::Flex => "cpu",
        }
    }
}

/// What a person (or a test) asks training to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// WebGPU when the browser grants an adapter and burn can use it, the CPU otherwise.
    /// Natively: the CPU.
    #[default]
    Auto,
    /// WebGPU or an error.
    Wgpu,
    /// The CPU (`flex`).
    Cpu,
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

/// Probes the environment (no device is created). Natively there is no browser: training uses
/// `flex`.
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

/// Why the requested backend cannot be used.
#[cfg(feature = "train")]
pub use b3o_models::device::DeviceError;

/// The burn device for `choice`: `Cpu` is `flex`; `Wgpu` initialises burn's wgpu runtime
/// asynchronously or fails; `Auto` tries WebGPU when an adapter is granted (in a browser) and
/// falls back to `flex` if burn cannot use it.
#[cfg(feature = "train")]
pub async fn training_device(
    choice: BackendChoice,
) -> Result<(b3o_models::Device, TrainingBackend), DeviceError> {
    use b3o_models::device;
    match choice {
        BackendChoice::Cpu => Ok((device::flex(), TrainingBackend::Flex)),
        BackendChoice::Wgpu => Ok((device::webgpu().await?, TrainingBackend::Wgpu)),
        BackendChoice::Auto => {
            if device::WGPU_BUILT
                && detect().await.webgpu
                && let Ok(d) = device::webgpu().await
            {
                return Ok((d, TrainingBackend::Wgpu));
            }
            Ok((device::flex(), TrainingBackend::Flex))
        }
    }
}

/// [`detect`], with `training_backend` confirmed by creating the device: an adapter that
/// burn cannot use means training on the CPU.
#[cfg(feature = "train")]
pub async fn detect_training() -> Capabilities {
    let mut caps = detect().await;
    caps.training_backend = match training_device(BackendChoice::Auto).await {
        Ok((_, backend)) => backend,
        Err(_) => TrainingBackend::Flex,
    };
    caps
}

#[cfg(all(test, feature = "train"))]
mod tests {
    use super::*;

    #[test]
    fn backends_serialise_as_the_worker_protocol_names_them() {
        assert_eq!(
            serde_json::to_string(&TrainingBackend::Flex).unwrap(),
            "\"cpu\""
        );
        assert_eq!(TrainingBackend::Wgpu.as_str(), "wgpu");
        let choice: BackendChoice = serde_json::from_str("\"auto\"").unwrap();
        assert_eq!(choice, BackendChoice::Auto);
        assert!(serde_json::from_str::<BackendChoice>("\"gpu\"").is_err());
    }

    #[test]
    fn natively_auto_and_cpu_train_on_flex() {
        for choice in [BackendChoice::Auto, BackendChoice::Cpu] {
            let (_, backend) = burn_block(training_device(choice)).unwrap();
            assert_eq!(backend, TrainingBackend::Flex);
        }
        let caps = burn_block(detect_training());
        assert!(!caps.webgpu && caps.training_backend == TrainingBackend::Flex);
    }

    fn burn_block<T>(f: impl Future<Output = T>) -> T {
        // No async runtime in this crate's tests: a ready future completes on first poll.
        let mut f = std::pin::pin!(f);
        match f
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("not ready"),
        }
    }
}
