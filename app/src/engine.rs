//! The app's side of the engine's Web Workers (`/engine/infer-worker.js`,
//! `/engine/train-worker.js`, built by `scripts/build-engine.sh` from `wasm-client`).
//!
//! The protocol (wasm-client/ENGINE.md): requests `{id, op, ...args}`; replies
//! `{id, ok: true, result}` or `{id, ok: false, error}`; progress `{id, progress: {...}}`.
//! [`EngineWorker`] numbers requests, routes replies and progress back to their caller, and
//! bounds every request with a timeout. A worker that cannot start (no module workers, the
//! script missing, a crash) fails every pending and later request with
//! [`EngineError::Unavailable`], which pages answer by falling back to the server.
//!
//! The inference worker is shared by every page ([`inference`]) so a loaded model stays loaded;
//! each training run gets its own worker ([`Training::spawn`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::Poll;

use futures_channel::oneshot;
use js_sys::{Array, Object, Reflect};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

pub const INFER_WORKER: &str = "/engine/infer-worker.js";
pub const TRAIN_WORKER: &str = "/engine/train-worker.js";

/// Why the engine did not answer with a result.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    /// The worker could not start or stopped: the browser lacks module workers or WebAssembly,
    /// the engine files are missing, or the engine crashed. The server can do the work instead.
    Unavailable(String),
    /// The engine refused the request, saying why (a bad file, an unknown model): the server
    /// would refuse it too.
    Refused(String),
    /// No answer in time.
    TimedOut { op: String, secs: u32 },
}

impl EngineError {
    /// Whether the server should be asked instead (the browser cannot do it, for now).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            EngineError::Unavailable(_) | EngineError::TimedOut { .. }
        )
    }
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Unavailable(why) => {
                let why = why.trim().trim_end_matches(['.', ' ']);
                write!(f, "The in-browser engine is not available: {why}.")
            }
            EngineError::Refused(message) => f.write_str(&crate::api::sentence(message)),
            EngineError::TimedOut { op, secs } => write!(
                f,
                "The in-browser engine did not finish “{op}” within {secs} seconds."
            ),
        }
    }
}

impl std::error::Error for EngineError {}

type ProgressFn = Box<dyn Fn(Value)>;

struct Pending {
    reply: oneshot::Sender<Result<JsValue, EngineError>>,
    progress: Option<ProgressFn>,
}

struct Inner {
    worker: web_sys::Worker,
    next_id: Cell<u64>,
    pending: RefCell<HashMap<u64, Pending>>,
    /// Set once the worker failed; every later request fails with it.
    failure: RefCell<Option<String>>,
    _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
}

impl Inner {
    fn on_message(&self, data: JsValue) {
        let Some(id) = get(&data, "id").as_f64() else {
            return;
        };
        let id = id as u64;
        let progress = get(&data, "progress");
        if !progress.is_undefined() && !progress.is_null() {
            if let Some(Pending {
                progress: Some(f), ..
            }) = self.pending.borrow().get(&id)
            {
                f(to_json(&progress));
            }
            return;
        }
        let Some(pending) = self.pending.borrow_mut().remove(&id) else {
            return;
        };
        let reply = if get(&data, "ok").as_bool() == Some(true) {
            Ok(get(&data, "result"))
        } else if get(&data, "fatal").as_bool() == Some(true) {
            // The engine crashed and closed itself: nothing more will come from this worker.
            let why = format!(
                "it stopped with an error ({})",
                error_text(&get(&data, "error"))
            );
            let _ = pending
                .reply
                .send(Err(EngineError::Unavailable(why.clone())));
            self.fail(why);
            return;
        } else {
            Err(EngineError::Refused(error_text(&get(&data, "error"))))
        };
        let _ = pending.reply.send(reply);
    }

    fn fail(&self, why: String) {
        self.failure.borrow_mut().get_or_insert(why.clone());
        for (_, pending) in self.pending.borrow_mut().drain() {
            let _ = pending
                .reply
                .send(Err(EngineError::Unavailable(why.clone())));
        }
        self.worker.terminate();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.worker.set_onmessage(None);
        self.worker.set_onerror(None);
        self.worker.set_onmessageerror(None);
        self.worker.terminate();
    }
}

/// One engine worker: requests by id, replies and progress routed back, timeouts.
#[derive(Clone)]
pub struct EngineWorker(Rc<Inner>);

impl EngineWorker {
    /// Starts the module worker at `url` (same origin).
    pub fn spawn(url: &str) -> Result<EngineWorker, EngineError> {
        if !has_global("Worker") {
            return Err(EngineError::Unavailable(
                "this browser cannot run background workers".into(),
            ));
        }
        if !has_global("WebAssembly") {
            return Err(EngineError::Unavailable(
                "this browser cannot run WebAssembly".into(),
            ));
        }
        let options = web_sys::WorkerOptions::new();
        options.set_type(web_sys::WorkerType::Module);
        let worker = web_sys::Worker::new_with_options(url, &options).map_err(|e| {
            EngineError::Unavailable(format!(
                "the browser refused to start it ({})",
                error_text(&e)
            ))
        })?;
        let inner = Rc::new_cyclic(|weak: &Weak<Inner>| {
            let w = weak.clone();
            let on_message = Closure::<dyn FnMut(_)>::new(move |ev: web_sys::MessageEvent| {
                if let Some(inner) = w.upgrade() {
                    inner.on_message(ev.data());
                }
            });
            let w = weak.clone();
            let on_error = Closure::<dyn FnMut(_)>::new(move |ev: web_sys::Event| {
                // A script that fails to load gives a plain `Event`; an uncaught exception in
                // the worker an `ErrorEvent` with a message.
                let why = ev
                    .dyn_ref::<web_sys::ErrorEvent>()
                    .map(|e| e.message())
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| {
                        "its files could not be loaded (they may be missing from this server, \
                         or this browser lacks module workers)"
                            .into()
                    });
                if let Some(inner) = w.upgrade() {
                    inner.fail(why);
                }
            });
            worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
            worker.set_onmessageerror(Some(on_error.as_ref().unchecked_ref()));
            Inner {
                worker,
                next_id: Cell::new(1),
                pending: RefCell::new(HashMap::new()),
                failure: RefCell::new(None),
                _on_message: on_message,
                _on_error: on_error,
            }
        });
        Ok(EngineWorker(inner))
    }

    /// The id the next request will get (to name it in a later `cancel`).
    fn next_id(&self) -> u64 {
        self.0.next_id.get()
    }

    /// Whether the worker failed (then every request fails at once).
    pub fn failure(&self) -> Option<String> {
        self.0.failure.borrow().clone()
    }

    /// Sends `op` with `args` (a JS object, extended with `id` and `op`) and waits at most
    /// `timeout_secs` for the reply; `progress` receives the progress messages meanwhile.
    pub async fn call(
        &self,
        op: &str,
        args: Object,
        timeout_secs: u32,
        progress: Option<ProgressFn>,
    ) -> Result<JsValue, EngineError> {
        if let Some(why) = self.failure() {
            return Err(EngineError::Unavailable(why));
        }
        let id = self.0.next_id.get();
        self.0.next_id.set(id + 1);
        set(&args, "id", &JsValue::from_f64(id as f64));
        set(&args, "op", &JsValue::from_str(op));
        let (tx, mut rx) = oneshot::channel();
        self.0.pending.borrow_mut().insert(
            id,
            Pending {
                reply: tx,
                progress,
            },
        );
        if let Err(e) = self.0.worker.post_message(&args) {
            self.0.pending.borrow_mut().remove(&id);
            return Err(EngineError::Unavailable(format!(
                "the request could not be sent ({})",
                error_text(&e)
            )));
        }
        let mut timer = JsFuture::from(sleep_promise(timeout_secs.saturating_mul(1000)));
        let outcome = std::future::poll_fn(|cx| {
            if let Poll::Ready(reply) = Pin::new(&mut rx).poll(cx) {
                return Poll::Ready(Some(reply));
            }
            if Pin::new(&mut timer).poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        match outcome {
            Some(Ok(reply)) => reply,
            // The sender went away without answering: the worker was dropped.
            Some(Err(_)) => Err(EngineError::Unavailable("the engine stopped".into())),
            None => {
                self.0.pending.borrow_mut().remove(&id);
                Err(EngineError::TimedOut {
                    op: op.to_string(),
                    secs: timeout_secs,
                })
            }
        }
    }

    /// [`call`](Self::call) with JSON arguments and a typed result.
    pub async fn call_json<T: DeserializeOwned>(
        &self,
        op: &str,
        args: &Value,
        timeout_secs: u32,
    ) -> Result<T, EngineError> {
        let result = self.call(op, from_json(args), timeout_secs, None).await?;
        decode(op, &result)
    }

    /// Fire-and-forget message (e.g. `cancel`); the reply, if any, is ignored.
    pub fn notify(&self, op: &str, args: &Value) {
        let this = self.clone();
        let (op, args) = (op.to_string(), args.clone());
        wasm_bindgen_futures::spawn_local(async move {
            let _ = this.call(&op, from_json(&args), 30, None).await;
        });
    }
}

fn decode<T: DeserializeOwned>(op: &str, result: &JsValue) -> Result<T, EngineError> {
    serde_json::from_value(to_json(result)).map_err(|e| {
        EngineError::Unavailable(format!("its answer to “{op}” was not understood ({e})"))
    })
}

// ---------------------------------------------------------------------------------------------
// Inference

/// What the engine runs on, from `capabilities`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub webgpu: bool,
    /// `"wgpu"` or `"cpu"` (or the engine's own name for it).
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub cross_origin_isolated: bool,
    /// The WebGPU adapter renders in software (SwiftShader, llvmpipe): `auto` trains on the
    /// CPU, which is faster there.
    #[serde(default)]
    pub software_gpu: bool,
    /// The adapter's description, for display.
    #[serde(default)]
    pub adapter: Option<String>,
}

/// `"wgpu"` -> "WebGPU", anything else -> "CPU".
pub fn backend_label(backend: &str) -> &'static str {
    let b = backend.to_ascii_lowercase();
    if b.contains("gpu") { "WebGPU" } else { "CPU" }
}

/// A model the inference worker loaded (`load`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LoadedModel {
    pub name: String,
    /// The registry version id of the model's package.
    #[serde(default)]
    pub version: i64,
    /// `"tabular"` or `"image"`.
    pub kind: String,
    #[serde(default)]
    pub task: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub input_columns: Vec<String>,
    /// The column a tabular model predicts.
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub from_cache: bool,
    /// The server could not be reached: the last saved copy of the model is used.
    #[serde(default)]
    pub offline: bool,
}

/// `predict_csv`: the CSV with prediction columns appended.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CsvPrediction {
    pub csv: String,
    #[serde(default)]
    pub rows: u64,
    #[serde(default)]
    pub added_columns: Vec<String>,
}

/// `predict_image` / `predict_pixels`: the most likely label and every label's probability.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImagePrediction {
    pub label: String,
    pub probabilities: Vec<f64>,
    pub labels: Vec<String>,
    /// Out-of-distribution warnings (issue #21); absent from older engines.
    #[serde(default)]
    pub warnings: Vec<String>,
}

thread_local! {
    static INFERENCE: RefCell<Option<EngineWorker>> = const { RefCell::new(None) };
}

/// The shared inference worker, started on first use (again after it failed and
/// [`restart_inference`] was called).
pub fn inference() -> Result<Inference, EngineError> {
    INFERENCE.with(|slot| {
        if let Some(worker) = slot.borrow().as_ref() {
            return Ok(Inference(worker.clone()));
        }
        let worker = EngineWorker::spawn(INFER_WORKER)?;
        *slot.borrow_mut() = Some(worker.clone());
        Ok(Inference(worker))
    })
}

/// Forgets a failed inference worker so the next [`inference`] starts a new one.
pub fn restart_inference() {
    INFERENCE.with(|slot| {
        slot.borrow_mut().take();
    });
}

/// Typed requests of the inference worker.
#[derive(Clone)]
pub struct Inference(EngineWorker);

impl Inference {
    pub async fn capabilities(&self) -> Result<Capabilities, EngineError> {
        self.0
            .call_json("capabilities", &serde_json::json!({}), 20)
            .await
    }

    /// Loads deployment `model` from this server (from the engine's cache when offline).
    pub async fn load(&self, model: &str) -> Result<LoadedModel, EngineError> {
        let args = serde_json::json!({ "server": "", "model": model });
        self.0.call_json("load", &args, 180).await
    }

    pub async fn predict_csv(&self, model: &str, csv: &str) -> Result<CsvPrediction, EngineError> {
        let args = serde_json::json!({ "model": model, "csv": csv });
        self.0.call_json("predict_csv", &args, 300).await
    }

    pub async fn predict_image(
        &self,
        model: &str,
        bytes: &[u8],
    ) -> Result<ImagePrediction, EngineError> {
        let args = from_json(&serde_json::json!({ "model": model }));
        set(&args, "bytes", &js_sys::Uint8Array::from(bytes));
        let result = self.0.call("predict_image", args, 60, None).await?;
        decode("predict_image", &result)
    }

    /// `pixels`: 784 values in `[0, 1]`, a white digit on black (see [`crate::digit`]).
    pub async fn predict_pixels(
        &self,
        model: &str,
        pixels: &[f32],
    ) -> Result<ImagePrediction, EngineError> {
        let args = from_json(&serde_json::json!({ "model": model }));
        set(&args, "pixels", &js_sys::Float32Array::from(pixels));
        let result = self.0.call("predict_pixels", args, 30, None).await?;
        decode("predict_pixels", &result)
    }
}

// ---------------------------------------------------------------------------------------------
// Training

/// A training run's progress message.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TrainProgress {
    /// `statistics`, `waiting`, `training`, `uploading` or `done`.
    pub phase: String,
    pub round: Option<u32>,
    pub rounds: Option<u32>,
    pub epoch: Option<u32>,
    pub epochs: Option<u32>,
    pub batch: Option<u32>,
    pub batches: Option<u32>,
    pub loss: Option<f64>,
    pub samples_per_sec: Option<f64>,
    pub backend: Option<String>,
    /// The participant event behind the message (`{type, ...}`): the privacy ledger's
    /// (`privacy`, `privacy_refused`) are read from here.
    pub event: Option<Value>,
}

/// The result of a finished run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrainOutcome {
    #[serde(default)]
    pub rounds_completed: u32,
    /// The group's model at the end (its registry version id).
    #[serde(default)]
    pub final_version: Option<i64>,
    /// The final model's metrics on this member's rows.
    #[serde(default)]
    pub metrics: Option<crate::api::Metrics>,
    /// Which of this member's rows [`TrainOutcome::metrics`] were computed on: `"test"` (its
    /// held-out rows) or `"train"` (its training rows, when it held none out).
    #[serde(default)]
    pub metrics_on: Option<String>,
}

/// What `run` needs besides the data.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainRequest {
    pub group_id: i64,
    /// `"csv"` or `"images"`.
    pub kind: String,
    pub target: Option<String>,
    /// `"auto"`, `"wgpu"` or `"cpu"`.
    pub backend: String,
    /// The session's CSRF token: the worker's writes carry the session cookie like the page's.
    pub csrf: String,
    /// The member's own privacy limit (epsilon) in a group with differential privacy.
    pub max_epsilon: Option<f64>,
}

/// The local data of a run: a CSV file, or labelled images.
#[derive(Clone)]
pub enum TrainData {
    Csv(web_sys::File),
    /// `(label, file)`: each image with its class (the folder it was in).
    Images(Vec<(String, web_sys::File)>),
}

impl TrainData {
    /// What the person picked, for the page.
    pub fn describe(&self) -> String {
        match self {
            TrainData::Csv(f) => f.name(),
            TrainData::Images(list) => {
                let mut labels: Vec<&str> = list.iter().map(|(l, _)| l.as_str()).collect();
                labels.sort_unstable();
                labels.dedup();
                format!("{} images in {} classes", list.len(), labels.len())
            }
        }
    }
}

/// Puts the local data into a worker request: the CSV file, or the images' bytes with their
/// labels.
async fn set_data(args: &Object, data: &TrainData) -> Result<(), EngineError> {
    match data {
        TrainData::Csv(file) => {
            set(args, "file", file);
            set(args, "file_name", &JsValue::from_str(&file.name()));
        }
        TrainData::Images(list) => {
            let files = Array::new();
            for (label, file) in list {
                let bytes = JsFuture::from(file.array_buffer()).await.map_err(|e| {
                    EngineError::Refused(format!(
                        "{} could not be read ({})",
                        file.name(),
                        error_text(&e)
                    ))
                })?;
                let item = Object::new();
                set(&item, "label", &JsValue::from_str(label));
                set(&item, "name", &JsValue::from_str(&file.name()));
                set(&item, "bytes", &js_sys::Uint8Array::new(&bytes));
                files.push(&item);
            }
            set(args, "files", &files);
        }
    }
    Ok(())
}

/// A member's evaluation of a version, as reported.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct VersionScore {
    pub version_id: i64,
    pub round: i64,
    pub num_samples: u64,
    #[serde(default)]
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// What became of an update kept when a tab closed before its upload.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum KeptOutcome {
    Nothing,
    Uploaded {
        round: i64,
        #[serde(default)]
        buffered_in: Option<i64>,
    },
    Discarded {
        round: i64,
        reason: String,
    },
}

impl KeptOutcome {
    /// What to tell the member, `None` when nothing was kept.
    pub fn message(&self) -> Option<String> {
        match self {
            KeptOutcome::Nothing => None,
            KeptOutcome::Uploaded {
                round,
                buffered_in: Some(into),
            } if into != round => Some(format!(
                "Your update from round {round}, kept in this browser when the page closed \
                 before sending it, was uploaded now; it counts in round {into}."
            )),
            KeptOutcome::Uploaded { round, .. } => Some(format!(
                "Your update from round {round}, kept in this browser when the page closed \
                 before sending it, was uploaded now and counts in that round."
            )),
            KeptOutcome::Discarded { round, reason } => Some(format!(
                "Your update from round {round}, kept in this browser when the page closed \
                 before sending it, could no longer be used and was discarded: {reason}"
            )),
        }
    }
}

/// A training worker (one per run).
#[derive(Clone)]
pub struct Training {
    worker: EngineWorker,
    /// The request id of the run in progress (what `cancel` names).
    run_id: Rc<Cell<Option<u64>>>,
}

/// How long a whole run may take before the page gives up waiting.
const RUN_TIMEOUT_SECS: u32 = 7 * 24 * 3600;

/// The training bundle's JS glue: present once the server has the training engine.
const TRAIN_BUNDLE: &str = "/engine/b3o_train.js";

/// `Err` when this server does not have the training engine yet: `scripts/run.sh` starts the
/// server before building it (prediction works meanwhile), so for a few minutes after a first
/// start training is not available. Any other answer lets the worker try (and say why not).
async fn training_engine_built() -> Result<(), EngineError> {
    match gloo_net::http::Request::get(TRAIN_BUNDLE).send().await {
        Ok(r) if r.status() == 404 => Err(EngineError::Unavailable(
            "this server is still building its training engine (a few minutes after its \
             first start); prediction works meanwhile. Reload this page in a few minutes to \
             train"
                .into(),
        )),
        _ => Ok(()),
    }
}

impl Training {
    pub fn spawn() -> Result<Training, EngineError> {
        Ok(Training {
            worker: EngineWorker::spawn(TRAIN_WORKER)?,
            run_id: Rc::new(Cell::new(None)),
        })
    }

    /// Joins the group's rounds with the local data until the group finishes; the data never
    /// leaves this machine, only weight updates and column summaries do.
    pub async fn run(
        &self,
        request: &TrainRequest,
        data: &TrainData,
        progress: impl Fn(TrainProgress) + 'static,
    ) -> Result<TrainOutcome, EngineError> {
        let args = from_json(&serde_json::json!({
            "server": "",
            "group_id": request.group_id,
            "kind": request.kind,
            "target": request.target,
            "backend": request.backend,
            "csrf_token": request.csrf,
            "max_epsilon": request.max_epsilon,
        }));
        training_engine_built().await?;
        set_data(&args, data).await?;
        let on_progress: ProgressFn = Box::new(move |v| {
            if let Ok(p) = serde_json::from_value::<TrainProgress>(v) {
                progress(p);
            }
        });
        // `call` takes this id synchronously when first polled, right below.
        self.run_id.set(Some(self.worker.next_id()));
        let result = self
            .worker
            .call("run", args, RUN_TIMEOUT_SECS, Some(on_progress))
            .await;
        self.run_id.set(None);
        decode("run", &result?)
    }

    /// Scores version `version_id` on the rows of `data` the training holds out (a fifth, the
    /// same seed) and reports only the metrics and the row count.
    pub async fn evaluate_version(
        &self,
        version_id: i64,
        kind: &str,
        data: &TrainData,
        csrf: &str,
    ) -> Result<VersionScore, EngineError> {
        let args = from_json(&serde_json::json!({
            "server": "",
            "version_id": version_id,
            "kind": kind,
            "csrf_token": csrf,
        }));
        training_engine_built().await?;
        set_data(&args, data).await?;
        let result = self
            .worker
            .call("evaluate_version", args, 600, None)
            .await?;
        decode("evaluate_version", &result)
    }

    /// Sends the update this browser kept for `group_id` when a tab closed before its upload
    /// (`wasm-client/src/fl/kept.rs`), or drops it with the server's reason.
    pub async fn upload_kept(&self, group_id: i64, csrf: &str) -> Result<KeptOutcome, EngineError> {
        self.worker
            .call_json(
                "upload_kept",
                &serde_json::json!({ "server": "", "group_id": group_id, "csrf_token": csrf }),
                120,
            )
            .await
    }

    /// Asks the engine to stop the run (it reports a failure for the round in progress).
    pub fn cancel(&self) {
        if let Some(id) = self.run_id.get() {
            self.worker
                .notify("cancel", &serde_json::json!({ "target": id }));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JS values

fn get(target: &JsValue, key: &str) -> JsValue {
    Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn set(target: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(target, &JsValue::from_str(key), value);
}

fn has_global(name: &str) -> bool {
    let global = js_sys::global();
    let value = get(&global, name);
    !value.is_undefined() && !value.is_null()
}

/// A promise resolved after `ms` milliseconds (no Rust closure to keep alive).
fn sleep_promise(ms: u32) -> js_sys::Promise {
    js_sys::Promise::new(&mut |resolve, _reject| {
        if let Some(window) = web_sys::window() {
            let _ =
                window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
        }
    })
}

/// A thrown value or an `error` field as text: a string, an `Error`'s message, or JSON.
pub fn error_text(e: &JsValue) -> String {
    if let Some(s) = e.as_string() {
        return s;
    }
    let message = get(e, "message");
    if let Some(s) = message.as_string() {
        return s;
    }
    match to_json(e) {
        Value::Null => "unknown error".into(),
        other => other.to_string(),
    }
}

/// A JS value as JSON: arrays and typed arrays become arrays, plain objects maps.
pub fn to_json(v: &JsValue) -> Value {
    if v.is_null() || v.is_undefined() {
        Value::Null
    } else if let Some(b) = v.as_bool() {
        Value::Bool(b)
    } else if let Some(n) = v.as_f64() {
        number(n)
    } else if let Some(s) = v.as_string() {
        Value::String(s)
    } else if Array::is_array(v) {
        Value::Array(Array::from(v).iter().map(|x| to_json(&x)).collect())
    } else if js_sys::ArrayBuffer::is_view(v) && !v.is_instance_of::<js_sys::DataView>() {
        js_sys::Float64Array::new(v)
            .to_vec()
            .into_iter()
            .map(number)
            .collect()
    } else if v.is_object() {
        let entries = Object::entries(v.unchecked_ref());
        Value::Object(
            entries
                .iter()
                .filter_map(|pair| {
                    let pair = Array::from(&pair);
                    Some((pair.get(0).as_string()?, to_json(&pair.get(1))))
                })
                .collect(),
        )
    } else {
        Value::Null
    }
}

/// A JS number as JSON: whole numbers (within 2^53) as integers, so that counts and ids
/// deserialize as such; non-finite numbers as `null`.
fn number(n: f64) -> Value {
    const SAFE: f64 = 9_007_199_254_740_991.0;
    if n.fract() == 0.0 && n.abs() <= SAFE {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// A JSON value as a JS object (or array, ...).
pub fn from_json(v: &Value) -> Object {
    js_sys::JSON::parse(&v.to_string())
        .ok()
        .and_then(|v| v.dyn_into::<Object>().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_stay_integers() {
        assert_eq!(number(25.0), serde_json::json!(25));
        assert!(serde_json::from_value::<u64>(number(25.0)).is_ok());
        assert_eq!(number(0.5), serde_json::json!(0.5));
        assert_eq!(number(-3.0), serde_json::json!(-3));
        assert_eq!(number(f64::NAN), Value::Null);
        assert_eq!(number(1e300), serde_json::json!(1e300));
    }
}
