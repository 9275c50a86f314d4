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
    /// WebGPU when the browser grants a hardware adapter, burn can use it and it trains the
    /// probe network faster than the CPU ([`race`]); the CPU otherwise (software adapters
    /// included, without a race). Natively: the CPU.
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
    /// The adapter renders in software (SwiftShader, llvmpipe, a fallback adapter): slower than
    /// the CPU backend for these models, so `auto` does not train on it.
    pub software_gpu: bool,
    /// The adapter's vendor / architecture / description, for display.
    pub adapter: Option<String>,
    /// `crossOriginIsolated`: shared memory (threads) usable.
    pub cross_origin_isolated: bool,
    /// The backend training will use under [`BackendChoice::Auto`].
    pub training_backend: TrainingBackend,
    /// The race that decided it on a hardware adapter (`None`: no race was run).
    pub race: Option<Race>,
}

/// Milliseconds per training step of the probe network ([`race`]) on each backend.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Race {
    pub cpu_step_ms: f64,
    pub gpu_step_ms: f64,
}

impl Race {
    /// The faster backend; the CPU on a tie, or when a time is not a number.
    pub fn winner(&self) -> TrainingBackend {
        if self.gpu_step_ms < self.cpu_step_ms {
            TrainingBackend::Wgpu
        } else {
            TrainingBackend::Flex
        }
    }
}

/// Words in an adapter's description that mean software rendering.
const SOFTWARE_ADAPTERS: [&str; 5] = [
    "swiftshader",
    "llvmpipe",
    "lavapipe",
    "software",
    "microsoft basic render",
];

/// Whether an adapter described by `text` (vendor, architecture, device, description) renders
/// in software.
pub fn is_software_adapter(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    SOFTWARE_ADAPTERS.iter().any(|w| text.contains(w))
}

#[cfg(target_arch = "wasm32")]
mod detect {
    use js_sys::{Function, Promise, Reflect};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    fn global() -> JsValue {
        js_sys::global().into()
    }

    /// What `navigator.gpu.requestAdapter()` granted: the adapter's description and whether
    /// it is a fallback (software) adapter; `None` without WebGPU. Works in a window and in a
    /// worker (both expose `navigator` on the global object); any failure means "no WebGPU".
    pub async fn webgpu_adapter() -> Option<(String, bool)> {
        let navigator = Reflect::get(&global(), &"navigator".into()).ok()?;
        let gpu = Reflect::get(&navigator, &"gpu".into()).ok()?;
        if gpu.is_undefined() || gpu.is_null() {
            return None;
        }
        let request = Reflect::get(&gpu, &"requestAdapter".into()).ok()?;
        let promise = request.dyn_ref::<Function>()?.call0(&gpu).ok()?;
        let adapter = JsFuture::from(promise.dyn_into::<Promise>().ok()?)
            .await
            .ok()?;
        if adapter.is_null() || adapter.is_undefined() {
            return None;
        }
        let get = |o: &JsValue, k: &str| Reflect::get(o, &k.into()).ok();
        let info = get(&adapter, "info").filter(|i| i.is_object());
        let text = info.as_ref().map_or(String::new(), |info| {
            ["vendor", "architecture", "device", "description"]
                .iter()
                .filter_map(|k| get(info, k).and_then(|v| v.as_string()))
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>()
                .join(" / ")
        });
        // `info.isFallbackAdapter` (current), `adapter.isFallbackAdapter` (older browsers).
        let fallback = info
            .as_ref()
            .and_then(|i| get(i, "isFallbackAdapter"))
            .or_else(|| get(&adapter, "isFallbackAdapter"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        Some((text, fallback))
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
    let (adapter, cross_origin_isolated) = (
        detect::webgpu_adapter().await,
        detect::cross_origin_isolated(),
    );
    #[cfg(not(target_arch = "wasm32"))]
    let (adapter, cross_origin_isolated): (Option<(String, bool)>, bool) = (None, false);
    let software_gpu = adapter
        .as_ref()
        .is_some_and(|(text, fallback)| *fallback || is_software_adapter(text));
    let webgpu = adapter.is_some();
    Capabilities {
        webgpu,
        software_gpu,
        adapter: adapter.map(|(text, _)| text).filter(|t| !t.is_empty()),
        cross_origin_isolated,
        training_backend: if webgpu && !software_gpu {
            TrainingBackend::Wgpu
        } else {
            TrainingBackend::Flex
        },
        race: None,
    }
}

/// Why the requested backend cannot be used.
#[cfg(feature = "train")]
pub use b3o_models::device::DeviceError;

/// The burn device for `choice`: `Cpu` is `flex`; `Wgpu` initialises burn's wgpu runtime
/// asynchronously or fails; `Auto` trains on WebGPU when a hardware adapter is granted (in a
/// browser), burn can use it and it wins the [`race`] against the CPU, and on `flex`
/// otherwise. A hardware GPU is not always faster: these networks are small, and each step is
/// a dozen dispatches and a read back. Software adapters are left out of `Auto` without a
/// race: on SwiftShader a training step costs about a second whatever the batch, far slower
/// than `flex` (BENCHMARKS.md). The race runs once per engine (worker); later calls reuse it.
#[cfg(feature = "train")]
pub async fn training_device(
    choice: BackendChoice,
) -> Result<(b3o_models::Device, TrainingBackend), DeviceError> {
    use b3o_models::device;
    match choice {
        BackendChoice::Cpu => Ok((device::flex(), TrainingBackend::Flex)),
        BackendChoice::Wgpu => Ok((device::webgpu().await?, TrainingBackend::Wgpu)),
        BackendChoice::Auto => {
            let caps = detect().await;
            if device::WGPU_BUILT
                && caps.webgpu
                && !caps.software_gpu
                && let Ok(d) = device::webgpu().await
                && auto_race(&d).await.winner() == TrainingBackend::Wgpu
            {
                return Ok((d, TrainingBackend::Wgpu));
            }
            Ok((device::flex(), TrainingBackend::Flex))
        }
    }
}

/// The steps timed on each backend by [`race`] (after one warm-up step).
#[cfg(feature = "train")]
pub const RACE_STEPS: usize = 5;
/// The batch of [`race`]'s steps: the rounds' usual batch size.
#[cfg(feature = "train")]
pub const RACE_BATCH: usize = 32;

/// Times training steps of the churn network (13 -> 128 -> 64 -> 32 -> 1, the demo's and the
/// tabular groups' network; the self-test's `ChurnB3o` problem, batch [`RACE_BATCH`]) on the
/// CPU and on `gpu`: one warm-up step each (WebGPU compiles its shaders then; the browser
/// optimises hot wasm), then [`RACE_STEPS`] timed steps each, loss read back every step. A
/// GPU that fails the steps loses. The smallest network is the one where a GPU's dispatch
/// overhead weighs most: a GPU that wins here wins on the CNN too.
#[cfg(feature = "train")]
pub async fn race(gpu: &b3o_models::Device) -> Race {
    let cpu_step_ms = step_ms(&b3o_models::device::flex())
        .await
        .unwrap_or(f64::INFINITY);
    let gpu_step_ms = step_ms(gpu).await.unwrap_or(f64::INFINITY);
    Race {
        cpu_step_ms,
        gpu_step_ms,
    }
}

/// Milliseconds per step of the race's training on `device`.
#[cfg(feature = "train")]
async fn step_ms(device: &b3o_models::Device) -> Result<f64, b3o_models::train::TrainError> {
    use crate::browser::selftest::{Problem, train_step_check};
    train_step_check(Problem::ChurnB3o, 1, RACE_BATCH, device).await?;
    let start = now_ms();
    train_step_check(Problem::ChurnB3o, RACE_STEPS, RACE_BATCH, device).await?;
    Ok((now_ms() - start) / RACE_STEPS as f64)
}

#[cfg(feature = "train")]
fn now_ms() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        crate::browser::js::now_ms()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs_f64()
            * 1e3
    }
}

#[cfg(feature = "train")]
thread_local! {
    /// The engine's race, once run (each worker is one thread with one engine).
    static RACED: std::cell::Cell<Option<Race>> = const { std::cell::Cell::new(None) };
}

/// [`race`] once per engine: the first `auto` on a hardware adapter runs it (about a second),
/// later ones reuse its result.
#[cfg(feature = "train")]
async fn auto_race(gpu: &b3o_models::Device) -> Race {
    if let Some(r) = RACED.with(|c| c.get()) {
        return r;
    }
    let r = race(gpu).await;
    RACED.with(|c| c.set(Some(r)));
    r
}

/// [`detect`], with `training_backend` confirmed by creating the device (an adapter that burn
/// cannot use means training on the CPU) and, on a hardware adapter, the [`race`] that
/// decided it.
#[cfg(feature = "train")]
pub async fn detect_training() -> Capabilities {
    let mut caps = detect().await;
    caps.training_backend = match training_device(BackendChoice::Auto).await {
        Ok((_, backend)) => backend,
        Err(_) => TrainingBackend::Flex,
    };
    caps.race = RACED.with(|c| c.get());
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
    fn the_race_picks_the_faster_backend_and_the_cpu_on_a_tie() {
        let race = |cpu_step_ms, gpu_step_ms| Race {
            cpu_step_ms,
            gpu_step_ms,
        };
        assert_eq!(race(4.0, 1.5).winner(), TrainingBackend::Wgpu);
        assert_eq!(race(4.0, 9.0).winner(), TrainingBackend::Flex);
        assert_eq!(race(4.0, 4.0).winner(), TrainingBackend::Flex);
        assert_eq!(race(4.0, f64::INFINITY).winner(), TrainingBackend::Flex);
        assert_eq!(race(4.0, f64::NAN).winner(), TrainingBackend::Flex);
    }

    #[test]
    fn a_race_between_two_cpus_times_real_steps() {
        let r = burn_block(race(&b3o_models::device::flex()));
        for t in [r.cpu_step_ms, r.gpu_step_ms] {
            assert!(t.is_finite() && t > 0.0, "{r:?}");
        }
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

    #[test]
    fn software_adapters_are_recognised() {
        for text in [
            "google / swiftshader / / SwiftShader Device (Subzero)",
            "mesa / llvmpipe (LLVM 15.0.6, 256 bits)",
            "Microsoft Basic Render Driver",
        ] {
            assert!(is_software_adapter(text), "{text}");
        }
        for text in ["nvidia / ampere", "apple / metal-3", "intel / gen-12lp", ""] {
            assert!(!is_software_adapter(text), "{text}");
        }
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
