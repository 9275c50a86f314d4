//! The training worker's `run` operation: the federated learning participant
//! ([`crate::fl::Participant`]) over `fetch`/`EventSource`, training with burn on WebGPU or the
//! CPU, its events turned into the worker protocol's progress messages.
//!
//! The rows never leave this function: the participant sends column summaries and weight
//! updates only.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Array, Function, Reflect, Uint8Array};
use serde::Deserialize;
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;

use super::js::{self, error, to_js};
use super::train_api::device;
use crate::fl::browser::FetchTransport;
use crate::fl::trainer::AsyncTrainer;
use crate::fl::{Api, Auth, ClientEvent, LocalData, Participant, ParticipantOptions};

/// The `run` request, less the data (passed as bytes beside it).
#[derive(Debug, Deserialize)]
struct RunArgs {
    /// `""`: the page's origin.
    #[serde(default)]
    server: String,
    /// A group this account already belongs to...
    #[serde(default)]
    group_id: Option<i64>,
    /// ...or a join code.
    #[serde(default)]
    code: Option<String>,
    /// An API token; otherwise the session cookie, with `csrf_token` for uploads.
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    csrf_token: Option<String>,
    #[serde(default)]
    file_name: String,
    /// `"csv"` or `"images"`.
    kind: String,
    /// The CSV's target column, checked against the group's when given.
    #[serde(default)]
    target: Option<String>,
    /// `"auto"`, `"wgpu"` or `"cpu"`.
    #[serde(default)]
    backend: String,
    /// How the other members see this one.
    #[serde(default)]
    name: Option<String>,
    /// The user's own privacy budget (epsilon) for groups with differential privacy.
    #[serde(default)]
    max_epsilon: Option<f64>,
}

/// Turns participant events into progress messages; training batches at most every 100 ms
/// (and the last batch of every epoch).
struct Progress {
    on_progress: Function,
    backend: &'static str,
    rounds: i64,
    round: Option<i64>,
    epochs: u32,
    samples: u64,
    round_started_ms: f64,
    last_post_ms: f64,
}

impl Progress {
    fn event(&mut self, event: &ClientEvent) {
        let now = js::now_ms();
        let mut p = json!({
            "round": self.round,
            "rounds": self.rounds,
            "backend": self.backend,
            "event": event,
        });
        let phase = match event {
            ClientEvent::Joined { .. } | ClientEvent::StatisticsSent { .. } => "statistics",
            ClientEvent::Ready { .. } | ClientEvent::Waiting { .. } => "waiting",
            ClientEvent::Evaluated { .. } | ClientEvent::Skipped { .. } => "waiting",
            ClientEvent::Failed { .. } | ClientEvent::Retrying { .. } => "waiting",
            ClientEvent::RoundStarted {
                round,
                epochs,
                samples,
            } => {
                self.round = Some(*round);
                self.epochs = *epochs;
                self.samples = *samples;
                self.round_started_ms = now;
                p["round"] = json!(round);
                p["epochs"] = json!(epochs);
                "training"
            }
            ClientEvent::Training {
                round,
                epoch,
                epochs,
                batch,
                batches_per_epoch,
                loss,
            } => {
                let last_of_epoch = batch + 1 == *batches_per_epoch;
                if now - self.last_post_ms < 100.0 && !last_of_epoch {
                    return;
                }
                let done = (epoch * batches_per_epoch + batch + 1) as f64;
                let per_batch = self.samples as f64 / (*batches_per_epoch).max(1) as f64;
                let secs = ((now - self.round_started_ms) / 1000.0).max(1e-6);
                p["round"] = json!(round);
                p["epoch"] = json!(epoch + 1);
                p["epochs"] = json!(epochs);
                p["batch"] = json!(batch + 1);
                p["batches"] = json!(batches_per_epoch);
                p["loss"] = json!(loss);
                p["samples_per_sec"] = json!(done * per_batch / secs);
                "training"
            }
            ClientEvent::Uploaded { round, .. } => {
                p["round"] = json!(round);
                "uploading"
            }
            ClientEvent::Kept { round } => {
                p["round"] = json!(round);
                "uploading"
            }
            ClientEvent::KeptUploaded { .. } | ClientEvent::KeptDiscarded { .. } => "waiting",
            ClientEvent::Resumed { round, .. } => {
                p["round"] = json!(round);
                "training"
            }
            ClientEvent::Finished { .. } => "done",
            ClientEvent::Privacy { .. } => "privacy",
            ClientEvent::PrivacyRefused { round, .. } => {
                p["round"] = json!(round);
                "privacy_refused"
            }
        };
        p["phase"] = json!(phase);
        self.last_post_ms = now;
        report(&self.on_progress, &p);
    }
}

thread_local! {
    /// Cancel switches of the runs in progress, by the worker's request id.
    static RUNS: RefCell<HashMap<u32, Box<dyn Fn()>>> = RefCell::new(HashMap::new());
}

/// Stops run `id` (between requests and between training batches); `false` if none runs.
#[wasm_bindgen(js_name = cancelRun)]
pub fn cancel_run(id: u32) -> bool {
    RUNS.with(|r| r.borrow().get(&id).map(|cancel| cancel()).is_some())
}

fn register_run(id: u32, cancel: Box<dyn Fn()>) {
    RUNS.with(|r| r.borrow_mut().insert(id, cancel));
}

fn forget_run(id: u32) {
    RUNS.with(|r| r.borrow_mut().remove(&id));
}

/// Calls `on_progress(value)`, ignoring what it throws (a closed page cannot stop training).
fn report(on_progress: &Function, value: &serde_json::Value) {
    if let Ok(v) = to_js(value) {
        let _ = on_progress.call1(&JsValue::NULL, &v);
    }
}

/// `(label, name, bytes)` of every `{label, name, bytes}` in `images`.
fn image_files(images: &JsValue) -> Result<Vec<(String, String, Vec<u8>)>, JsError> {
    let array: &Array = images
        .dyn_ref()
        .ok_or_else(|| JsError::new("`files` must be an array of {label, name, bytes}"))?;
    array
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let text = |k: &str| {
                Reflect::get(&f, &k.into())
                    .ok()
                    .and_then(|v| v.as_string())
                    .ok_or_else(|| JsError::new(&format!("files[{i}]: `{k}` is missing")))
            };
            let bytes = Reflect::get(&f, &"bytes".into())
                .ok()
                .filter(|b| {
                    b.is_instance_of::<Uint8Array>() || b.is_instance_of::<js_sys::ArrayBuffer>()
                })
                .map(|b| Uint8Array::new(&b).to_vec())
                .ok_or_else(|| JsError::new(&format!("files[{i}]: `bytes` is missing")))?;
            Ok((text("label")?, text("name")?, bytes))
        })
        .collect()
}

/// Joins (or resumes) a group and trains round after round until its last round is over.
/// `data`: the CSV's bytes (`kind: "csv"`); `images`: `[{label, name, bytes}]`
/// (`kind: "images"`). Progress goes to `onProgress`; `cancelRun(id)` stops it.
#[wasm_bindgen(js_name = runClient, unchecked_return_type = "RunResult")]
pub async fn run_client(
    id: u32,
    #[wasm_bindgen(unchecked_param_type = "RunArgs")] args: JsValue,
    data: Option<Vec<u8>>,
    images: JsValue,
    on_progress: Function,
) -> Result<JsValue, JsError> {
    let args: RunArgs = js::from_js(&args, "run arguments")?;
    let local = local_data(&args.kind, &args.file_name, data, &images)?;
    let (device, backend) = device(&args.backend).await?;
    let api = api(&args.server, &args.token, &args.csrf_token);
    let progress = Rc::new(RefCell::new(Progress {
        on_progress,
        backend: backend.as_str(),
        rounds: 0,
        round: None,
        epochs: 0,
        samples: 0,
        round_started_ms: js::now_ms(),
        last_post_ms: 0.0,
    }));
    let observer = {
        let progress = progress.clone();
        move |e: &ClientEvent| progress.borrow_mut().event(e)
    };
    let options = ParticipantOptions {
        name: args.name.clone(),
        max_epsilon: args.max_epsilon.filter(|e| e.is_finite() && *e >= 0.0),
        ..ParticipantOptions::default()
    };
    let mut participant =
        Participant::new(api, AsyncTrainer::new(device), observer, local, options)
            .with_ledger(std::sync::Arc::new(crate::fl::browser::IndexedDbLedger))
            .with_kept(std::sync::Arc::new(crate::fl::browser::IndexedDbKept));
    let cancel = participant.cancel_token();
    register_run(id, Box::new(move || cancel.cancel()));
    let result = async {
        match (&args.code, args.group_id) {
            (Some(code), _) if !code.is_empty() => {
                participant.join(code).await?;
            }
            (_, Some(group_id)) => participant.attach(group_id),
            _ => {
                return Err(crate::fl::FlError::Protocol(
                    "give a group_id or a join code".into(),
                ));
            }
        }
        let group = participant.prepare().await?;
        if let (Some(want), b3o_models::protocol::ModelTemplate::Tabular { schema, .. }) =
            (&args.target, &group.model)
            && !want.is_empty()
            && *want != schema.target.name
        {
            return Err(crate::fl::FlError::Protocol(format!(
                "this group predicts `{}`, not `{want}`",
                schema.target.name
            )));
        }
        progress.borrow_mut().rounds = group.hyperparameters.rounds as i64;
        participant.run().await
    }
    .await;
    forget_run(id);
    let report = result.map_err(error)?;
    let metrics: Value = report
        .metrics
        .as_ref()
        .map_or(Value::Null, |m| json!(m.to_map()));
    to_js(&json!({
        "rounds_completed": report.rounds_trained.len(),
        "rounds_trained": report.rounds_trained,
        "final_version": report.version_id,
        "metrics": metrics,
        "metrics_on": report.metrics_on,
    }))
}

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
export interface RunArgs {
  server: string;
  group_id?: number;
  code?: string;
  token?: string;
  csrf_token?: string;
  file_name?: string;
  kind: "csv" | "images";
  target?: string;
  backend?: "auto" | "wgpu" | "cpu";
  name?: string;
  max_epsilon?: number;
}
export interface RunResult {
  rounds_completed: number;
  rounds_trained: number[];
  final_version: number | null;
  metrics: Record<string, number> | null;
  metrics_on: "test" | "train" | null;
}
"#;

/// The `upload_kept` request: where to send, and as whom.
#[derive(Debug, Deserialize)]
struct KeptArgs {
    #[serde(default)]
    server: String,
    group_id: i64,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    csrf_token: Option<String>,
}

/// Sends the update this browser kept for group `group_id` when a tab closed before its
/// upload (`crate::fl::kept`), or drops it with the server's reason. Answers
/// `{outcome: "nothing" | "uploaded" | "discarded", round, update_id, buffered_in, reason}`.
#[wasm_bindgen(js_name = uploadKept)]
pub async fn upload_kept(args: JsValue) -> Result<JsValue, JsError> {
    let args: KeptArgs = js::from_js(&args, "upload_kept arguments")?;
    let api = api(&args.server, &args.token, &args.csrf_token);
    let group = api.group(args.group_id).await.map_err(error)?;
    let Some(member_id) = group.member_id else {
        return to_js(&crate::fl::kept::KeptOutcome::Nothing);
    };
    let outcome = crate::fl::kept::upload_kept(
        &api,
        &crate::fl::browser::IndexedDbKept,
        args.group_id,
        member_id,
    )
    .await
    .map_err(error)?;
    to_js(&outcome)
}

/// The `evaluate_version` request, less the data (passed as bytes beside it).
#[derive(Debug, Deserialize)]
struct EvaluateArgs {
    #[serde(default)]
    server: String,
    version_id: i64,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    csrf_token: Option<String>,
    #[serde(default)]
    file_name: String,
    /// `"csv"` or `"images"`.
    kind: String,
}

/// Scores one version of a group this account belongs to on the rows of the given file it
/// holds out (the split `run` trains with: a fifth of the rows, the same seed), and reports
/// only the metrics and the row count. Answers `{version_id, group_id, round, member_id,
/// num_samples, metrics}`.
#[wasm_bindgen(js_name = evaluateVersion)]
pub async fn evaluate_version(
    #[wasm_bindgen(unchecked_param_type = "object")] args: JsValue,
    data: Option<Vec<u8>>,
    images: JsValue,
) -> Result<JsValue, JsError> {
    let args: EvaluateArgs = js::from_js(&args, "evaluate_version arguments")?;
    let local = local_data(&args.kind, &args.file_name, data, &images)?;
    let api = api(&args.server, &args.token, &args.csrf_token);
    let options = ParticipantOptions::default();
    let score = crate::fl::evaluate::evaluate_version(
        &api,
        &AsyncTrainer::new(b3o_models::Device::flex()),
        &local,
        options.test_fraction,
        options.seed,
        args.version_id,
    )
    .await
    .map_err(error)?;
    to_js(&score)
}

/// The member's rows from a worker request: the CSV's bytes (`kind: "csv"`) or the images
/// (`kind: "images"`, `[{label, name, bytes}]`).
fn local_data(
    kind: &str,
    file_name: &str,
    data: Option<Vec<u8>>,
    images: &JsValue,
) -> Result<LocalData, JsError> {
    match kind {
        "csv" => {
            let bytes = data.ok_or_else(|| JsError::new("no file to read the rows from"))?;
            LocalData::from_csv(&bytes).map_err(|e| {
                let name = if file_name.is_empty() {
                    "the file"
                } else {
                    file_name
                };
                error(format!("{name}: {e}"))
            })
        }
        "images" => LocalData::from_images(image_files(images)?).map_err(error),
        other => Err(JsError::new(&format!(
            "unknown kind `{other}`: use \"csv\" or \"images\""
        ))),
    }
}

/// The API client of a worker request: an API token, or the page's session with its CSRF
/// token.
fn api(server: &str, token: &Option<String>, csrf_token: &Option<String>) -> Api<FetchTransport> {
    let auth = match (token, csrf_token) {
        (Some(t), _) if !t.is_empty() => Auth::Bearer(t.clone()),
        (_, Some(csrf)) => Auth::Session {
            cookie: None,
            csrf_token: csrf.clone(),
        },
        _ => Auth::None,
    };
    Api::new(FetchTransport::new(server), auth)
}
