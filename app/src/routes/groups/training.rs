//! Training in a group from this browser: the local data picker (the file stays on this
//! machine), the backend choice (WebGPU or CPU), and a run through the engine's training
//! worker with its progress: phase, rounds, batches, loss, speed, and the loss by round.
//!
//! Runs belong to the tab, not to the page ([`TrainingRuns`], provided by the app shell): a
//! member can look at other pages while its browser trains, and come back to the progress.

use std::cell::RefCell;
use std::collections::HashMap;

use leptos::prelude::*;
use send_wrapper::SendWrapper;

use serde::Deserialize;

use crate::browser;
use crate::charts::{Series, line_chart, short_number};
use crate::engine::{self, TrainData, TrainOutcome, TrainProgress, TrainRequest, Training};
use crate::session::use_session;

/// A run as the page shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunState {
    pub file_name: String,
    pub running: bool,
    pub progress: TrainProgress,
    /// The backend the engine reported (`wgpu` or `cpu`).
    pub backend: Option<String>,
    /// The last loss reported in each round.
    pub loss_by_round: Vec<(u32, f64)>,
    /// `Ok(summary)` when the run finished, `Err(why)` when it failed or was cancelled.
    pub outcome: Option<Result<String, String>>,
    /// This member's privacy ledger in a DP group, as the engine last reported it.
    pub ledger: Option<Ledger>,
    /// The round the ledger refused, and why.
    pub refused: Option<Refused>,
}

/// A member's privacy ledger in a group (the engine's `privacy` event).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Ledger {
    /// Epsilon spent so far, at `delta`.
    pub epsilon: f64,
    /// The budget: the group's target, or this member's stricter limit.
    pub budget: f64,
    pub delta: f64,
    /// `(round, epsilon after it)` for every round counted.
    #[serde(default)]
    pub history: Vec<(i64, f64)>,
}

/// A round the member's ledger refused (`fl::ClientEvent::PrivacyRefused`): the reason, and
/// for lack of budget the numbers (epsilon spent, after the round, the budget).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Refused {
    pub round: i64,
    pub reason: String,
    #[serde(default)]
    pub spent: Option<f64>,
    #[serde(default)]
    pub next: Option<f64>,
    #[serde(default)]
    pub budget: Option<f64>,
}

/// The privacy events of the engine's progress messages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PrivacyEvent {
    Privacy(Ledger),
    PrivacyRefused(Refused),
}

impl RunState {
    fn record(&mut self, p: TrainProgress) {
        if let Some(b) = &p.backend {
            self.backend = Some(b.clone());
        }
        match p
            .event
            .clone()
            .and_then(|e| serde_json::from_value::<PrivacyEvent>(e).ok())
        {
            Some(PrivacyEvent::Privacy(ledger)) => self.ledger = Some(ledger),
            Some(PrivacyEvent::PrivacyRefused(refused)) => self.refused = Some(refused),
            None => {}
        }
        if let (Some(round), Some(loss)) = (p.round, p.loss)
            && loss.is_finite()
        {
            match self.loss_by_round.iter_mut().find(|(r, _)| *r == round) {
                Some(entry) => entry.1 = loss,
                None => self.loss_by_round.push((round, loss)),
            }
        }
        self.progress = p;
    }
}

/// What a finished run reports, in a sentence, naming whose rows the figures come from: each
/// member scores the final model on its own rows, so partners see different numbers.
fn summary(o: &TrainOutcome) -> String {
    let version = o
        .final_version
        .map(|v| format!("; the group's model is now version {v}"))
        .unwrap_or_default();
    let on = match o.metrics_on.as_deref() {
        Some("train") => "on your training rows (you kept none aside, so this flatters the model)",
        _ => "on the rows of your file kept aside for evaluation (not trained on)",
    };
    let metrics = Some(crate::charts::metric_text(o.metrics.as_ref()))
        .filter(|s| !s.is_empty())
        .map(|s| {
            format!(
                ". Scored by this browser {on}: {s}. Other members see their own figures; the \
                 group page shows the mean over members weighted by rows"
            )
        })
        .unwrap_or_default();
    format!(
        "Training finished after {} round(s){version}{metrics}.",
        o.rounds_completed
    )
}

/// What `auto` trains on in this browser, and why.
fn capabilities_text(c: &engine::Capabilities) -> String {
    let adapter = c
        .adapter
        .as_deref()
        .filter(|a| !a.trim().is_empty())
        .map(|a| format!(" ({a})"))
        .unwrap_or_default();
    if c.webgpu && c.software_gpu {
        format!(
            "This browser's WebGPU adapter is a software one{adapter}: it draws on the \
             processor, so “The best this browser offers” trains on the CPU, which is faster \
             here."
        )
    } else if c.webgpu {
        format!(
            "This browser supports WebGPU{adapter}: “The best this browser offers” trains on the graphics card."
        )
    } else {
        "No WebGPU in this browser: training runs on the processor (CPU).".to_string()
    }
}

thread_local! {
    /// The worker of each group's run in this tab.
    static WORKERS: RefCell<HashMap<i64, Training>> = RefCell::new(HashMap::new());
}

/// The training runs of this tab, by group.
#[derive(Debug, Clone, Copy)]
pub struct TrainingRuns(RwSignal<HashMap<i64, RunState>>);

impl TrainingRuns {
    pub fn provide() {
        provide_context(TrainingRuns(RwSignal::new(HashMap::new())));
    }

    fn state(&self, group_id: i64) -> Option<RunState> {
        self.0.with(|runs| runs.get(&group_id).cloned())
    }

    fn update(&self, group_id: i64, f: impl FnOnce(&mut RunState)) {
        self.0.update(|runs| f(runs.entry(group_id).or_default()));
    }

    /// Starts a run with `data` in group `request.group_id` (one at a time per group).
    fn start(&self, request: TrainRequest, data: TrainData) {
        let runs = *self;
        let group_id = request.group_id;
        if runs.state(group_id).is_some_and(|s| s.running) {
            return;
        }
        let training = match Training::spawn() {
            Ok(t) => t,
            Err(e) => {
                runs.update(group_id, |s| {
                    *s = RunState {
                        file_name: data.describe(),
                        outcome: Some(Err(e.to_string())),
                        ..RunState::default()
                    }
                });
                return;
            }
        };
        WORKERS.with(|w| w.borrow_mut().insert(group_id, training.clone()));
        runs.update(group_id, |s| {
            *s = RunState {
                file_name: data.describe(),
                running: true,
                progress: TrainProgress {
                    phase: "starting".into(),
                    ..TrainProgress::default()
                },
                ..RunState::default()
            }
        });
        leptos::task::spawn_local(async move {
            let result = training
                .run(&request, &data, move |p| {
                    // The hint that an update waits in IndexedDB (`browser::mark_kept`).
                    let event = p.event.as_ref().and_then(|e| e["type"].as_str());
                    match (event, p.round) {
                        (Some("kept"), Some(round)) => {
                            crate::browser::mark_kept(group_id, i64::from(round))
                        }
                        (Some("uploaded" | "skipped" | "kept_uploaded" | "kept_discarded"), _) => {
                            crate::browser::clear_kept(group_id)
                        }
                        _ => {}
                    }
                    runs.update(group_id, |s| s.record(p))
                })
                .await;
            runs.update(group_id, |s| {
                s.running = false;
                s.outcome = Some(result.as_ref().map(summary).map_err(|e| e.to_string()));
                s.progress.phase = if result.is_ok() { "done" } else { "stopped" }.into();
            });
            // Dropping the last handle stops the worker.
            WORKERS.with(|w| w.borrow_mut().remove(&group_id));
        });
    }

    fn cancel(&self, group_id: i64) {
        if let Some(t) = WORKERS.with(|w| w.borrow().get(&group_id).cloned()) {
            t.cancel();
        }
    }
}

/// The images of a picked folder, each labelled with the folder it is in
/// (`digits/7/img1.png` -> `7`).
/// A file input for the local data: image groups pick a folder (one subfolder per class).
pub(crate) fn data_input(images: bool) -> NodeRef<leptos::html::Input> {
    let file_input: NodeRef<leptos::html::Input> = NodeRef::new();
    Effect::new(move |_| {
        if let Some(input) = file_input.get()
            && images
        {
            let _ = input.set_attribute("webkitdirectory", "");
            let _ = input.set_attribute("multiple", "");
        }
    });
    file_input
}

/// What the person picked in a [`data_input`]: the CSV file, or the images of the folder;
/// `Err("")` when nothing was picked.
pub(crate) fn picked_data(ev: &leptos::ev::Event, images: bool) -> Result<TrainData, String> {
    if images {
        picked_images(ev)
    } else {
        browser::picked_file(ev)
            .map(TrainData::Csv)
            .ok_or_else(String::new)
    }
}

fn picked_images(ev: &leptos::ev::Event) -> Result<TrainData, String> {
    use wasm_bindgen::JsCast;
    let files = ev
        .target()
        .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        .and_then(|i| i.files());
    let Some(files) = files else {
        return Err(String::new());
    };
    let mut out = Vec::new();
    for i in 0..files.length() {
        let Some(file) = files.get(i) else { continue };
        let path = js_sys::Reflect::get(&file, &"webkitRelativePath".into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default();
        if let Some(label) = image_label(&path, &file.name()) {
            out.push((label, file));
        }
    }
    if out.is_empty() {
        return Err("No PNG or JPEG images in class subfolders were found in that folder.".into());
    }
    Ok(TrainData::Images(out))
}

/// The class of an image from its path in the picked folder; `None` for non-images and files
/// not in a subfolder.
fn image_label(path: &str, name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if ![".png", ".jpg", ".jpeg"].iter().any(|e| lower.ends_with(e)) {
        return None;
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    (parts.len() >= 2).then(|| parts[parts.len() - 2].to_string())
}

/// "Round 2 of 5 · epoch 1 of 1 · batch 3 of 12".
fn position(p: &TrainProgress) -> String {
    let mut parts = Vec::new();
    if let (Some(r), Some(n)) = (p.round, p.rounds) {
        parts.push(format!("round {r} of {n}"));
    }
    if let (Some(e), Some(n)) = (p.epoch, p.epochs) {
        parts.push(format!("epoch {e} of {n}"));
    }
    if let (Some(b), Some(n)) = (p.batch, p.batches) {
        parts.push(format!("batch {b} of {n}"));
    }
    parts.join(" · ")
}

/// A refusal in plain words: which round, how far it would have taken the member's privacy
/// spent, and that nothing was sent. `own_limit`: the budget is the member's own limit, not
/// the group's target.
fn refusal_words(r: &Refused, own_limit: bool) -> String {
    let (round, reason) = (r.round, &r.reason);
    let whose = if own_limit {
        "your limit"
    } else {
        "the group's target you accepted"
    };
    match (r.spent, r.next, r.budget) {
        (Some(spent), Some(next), Some(budget)) => format!(
            "Your browser stopped training in this group: round {round} would bring your \
             privacy spent to ε {}, past {whose} of {} (spent so far: ε {}). Nothing was sent \
             for this round; the group goes on with the other members.",
            short_number(next),
            short_number(budget),
            short_number(spent),
        ),
        _ => format!(
            "Your browser stopped training in this group before round {round}: {reason}. \
             Nothing was sent for this round."
        ),
    }
}

/// `""` -> no limit; a number > 0 -> that limit; anything else is explained.
fn parse_limit(text: &str) -> Result<Option<f64>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
        _ => Err(format!(
            "Your own privacy limit: “{t}” is not a number above 0; enter one, or leave it \
             empty to accept the group's target."
        )),
    }
}

fn phase_text(phase: &str) -> &'static str {
    match phase {
        "privacy" => "Counting the round in your privacy ledger…",
        "privacy_refused" => "Stopped: the round would pass your privacy budget.",
        "starting" => "Starting the training engine…",
        "statistics" => "Reading your file and sending its column statistics (not its rows)…",
        "waiting" => {
            "Nothing to do right now: waiting for a round that needs you. Rounds open when the \
             owner starts or resumes training and when the other members' updates have arrived…"
        }
        "training" => "Training on your data…",
        "uploading" => "Sending the model update…",
        "done" => "Done.",
        "stopped" => "Stopped.",
        _ => "Working…",
    }
}

#[component]
pub fn TrainPanel(
    group_id: i64,
    kind: String,
    target: Option<String>,
    /// A DP group's target (epsilon, delta).
    dp: Option<(f64, f64)>,
) -> impl IntoView {
    let session = use_session();
    let runs = expect_context::<TrainingRuns>();
    let images = kind == "image_cnn";
    let data = RwSignal::new(None::<SendWrapper<TrainData>>);
    let file_input = data_input(images);
    let pick_error = RwSignal::new(None::<String>);
    let backend = RwSignal::new("auto".to_string());
    let max_epsilon = RwSignal::new(String::new());
    let limit_error = RwSignal::new(None::<String>);
    let capabilities = LocalResource::new(|| async {
        match engine::inference() {
            Ok(e) => e.capabilities().await.ok(),
            Err(_) => None,
        }
    });
    let state = Memo::new(move |_| runs.state(group_id));
    let running = move || state.get().is_some_and(|s| s.running);
    let accept = if images {
        "image/png,image/jpeg"
    } else {
        ".csv,.tsv,.txt,text/csv"
    };
    let file_kind = if images { "images" } else { "csv" };

    let start = {
        let target = target.clone();
        move |_| {
            let Some(picked) = data.with_untracked(|d| d.as_ref().map(|w| (**w).clone())) else {
                return;
            };
            let limit = match parse_limit(&max_epsilon.get_untracked()) {
                Ok(limit) => limit.filter(|_| dp.is_some()),
                Err(e) => {
                    limit_error.set(Some(e));
                    return;
                }
            };
            limit_error.set(None);
            runs.start(
                TrainRequest {
                    group_id,
                    kind: file_kind.to_string(),
                    target: target.clone(),
                    backend: backend.get_untracked(),
                    csrf: session.csrf(),
                    max_epsilon: limit,
                },
                picked,
            );
        }
    };

    let what = if images {
        "a folder of images, with one subfolder per class (its name is the label)".to_string()
    } else {
        match &target {
            Some(t) => format!("a CSV with the group's columns, including “{t}”"),
            None => "a CSV with the group's columns".to_string(),
        }
    };

    let progress_view = move || {
        state.get().map(|s| {
            let p = s.progress.clone();
            let backend = s.backend.clone().map(|b| engine::backend_label(&b).to_string());
            let rounds = (p.rounds.unwrap_or(0), p.round.unwrap_or(0));
            let batches = (p.batches.unwrap_or(0), p.batch.unwrap_or(0));
            let loss_series = vec![Series {
                name: "Your training loss".into(),
                points: s
                    .loss_by_round
                    .iter()
                    .map(|&(r, l)| (r as f64, l))
                    .collect(),
            }];
            view! {
                <div class="run" id="train-run" data-phase=p.phase.clone()
                    data-running=s.running.to_string()>
                    // A run that ended in an error says so below; its last phase is no
                    // longer true.
                    {(s.running || !matches!(s.outcome, Some(Err(_)))).then(|| view! {
                        <p id="train-phase" role="status">
                            <strong>{phase_text(&p.phase)}</strong>
                            " "
                            <span class="muted">{position(&p)}</span>
                        </p>
                    })}
                    {(rounds.0 > 0).then(|| view! {
                        <label for="train-rounds">"Rounds"</label>
                        <progress id="train-rounds" max=rounds.0 value=rounds.1>
                            {format!("{} of {}", rounds.1, rounds.0)}
                        </progress>
                    })}
                    {(batches.0 > 0).then(|| view! {
                        <label for="train-batches">"This round"</label>
                        <progress id="train-batches" max=batches.0 value=batches.1>
                            {format!("{} of {}", batches.1, batches.0)}
                        </progress>
                    })}
                    <dl class="metrics">
                        {backend.map(|b| view! {
                            <dt>"Runs on"</dt>
                            <dd id="train-backend-used" data-backend=b.clone()>{b.clone()}</dd>
                        })}
                        {p.loss.map(|l| view! { <dt>"Loss"</dt><dd id="train-loss">{format!("{l:.4}")}</dd> })}
                        {p.samples_per_sec.map(|v| view! {
                            <dt>"Speed"</dt><dd>{format!("{v:.0} samples/s")}</dd>
                        })}
                    </dl>
                    {(!s.loss_by_round.is_empty()).then(|| {
                        line_chart("train-loss-chart".into(), "Your loss by round".into(), "round", loss_series)
                    })}
                    {s.ledger.clone().map(|l| ledger_view(l, dp.map(|(target, _)| target)))}
                    {s.refused.clone().map(|refused| {
                        let own_limit = match (&s.ledger, dp) {
                            (Some(l), Some((target, _))) => l.budget < target,
                            _ => false,
                        };
                        view! {
                            <div class="form-error" id="privacy-refused" role="alert" data-round=refused.round>
                                <p>{refusal_words(&refused, own_limit)}</p>
                                <details>
                                    <summary>"Details"</summary>
                                    <p class="privacy-reason">{refused.reason.clone()}</p>
                                </details>
                            </div>
                        }
                    })}
                    {s.outcome.clone().map(|o| match o {
                        Ok(text) => view! {
                            <p class="ok" id="train-outcome" data-state="done" role="status">{text}</p>
                        }
                        .into_any(),
                        // A privacy refusal is told in plain words below, with the
                        // engine's reason under its details.
                        Err(_) if s.refused.is_some() => view! {
                            <p class="muted" id="train-outcome" data-state="failed">
                                "Training stopped in this group: your privacy budget."
                            </p>
                        }
                        .into_any(),
                        Err(e) => view! {
                            <p class="form-error" id="train-outcome" data-state="failed" role="alert">{e}</p>
                        }
                        .into_any(),
                    })}
                </div>
            }
        })
    };

    view! {
        <section class="card" aria-labelledby="train-heading">
            <h2 id="train-heading">"Train with your data"</h2>
            <p class="privacy" id="data-stays">
                <strong>"Your data stays on this machine."</strong>
                " The file is read by this browser only; what is sent is the model update after "
                "each round"
                {(!images).then_some(" and, once, summary statistics of each column (counts, means, categories), never rows")}
                "."
            </p>
            <div class="stack">
                <label for="train-file">{format!("Your local data: {what}")}</label>
                <input id="train-file" type="file" accept=accept node_ref=file_input
                    disabled=running
                    on:change=move |ev| {
                        pick_error.set(None);
                        match picked_data(&ev, images) {
                            Ok(d) => data.set(Some(SendWrapper::new(d))),
                            Err(e) => {
                                data.set(None);
                                if !e.is_empty() {
                                    pick_error.set(Some(e));
                                }
                            }
                        }
                    }/>
                {move || pick_error.get().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
                {move || data.with(|d| d.as_ref().map(|d| d.describe())).map(|d| view! {
                    <p class="hint" id="train-picked">{format!("Picked: {d}")}</p>
                })}
                {dp.map(|(target, _)| view! {
                    <label for="train-max-epsilon">"Your own privacy limit (ε), optional"</label>
                    // Text, not number: a bound number field loses the caret at "2.".
                    <input id="train-max-epsilon" type="text" inputmode="decimal" aria-describedby="train-max-epsilon-help"
                        placeholder=format!("{} (the group's target)", short_number(target))
                        disabled=running bind:value=max_epsilon/>
                    <p class="hint" id="train-max-epsilon-help">
                        {format!(
                            "This group protects each partner with differential privacy up to ε \
                             {}. Set a stricter limit of your own: your browser stops training \
                             here before a round would bring your privacy spent past it. It \
                             keeps count in this browser, so the limit holds after a reload; a \
                             later limit can only be lower.",
                            short_number(target)
                        )}
                    </p>
                    {move || limit_error.get().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
                })}
                <label for="train-backend">"Train on"</label>
                <select id="train-backend" bind:value=backend disabled=running>
                    <option value="auto">"The best this browser offers"</option>
                    <option value="wgpu">"The graphics card (WebGPU)"</option>
                    <option value="cpu">"The processor (CPU)"</option>
                </select>
                <p class="hint" id="train-capabilities">
                    {move || capabilities.get().flatten().map(|c| capabilities_text(&c)).unwrap_or_default()}
                </p>
                <div class="inline">
                    <button type="button" id="train-start"
                        disabled=move || running() || data.with(Option::is_none)
                        on:click=start>
                        "Train with this data"
                    </button>
                    {move || running().then(|| view! {
                        <button type="button" id="train-cancel" class="secondary"
                            on:click=move |_| runs.cancel(group_id)>
                            "Stop"
                        </button>
                    })}
                </div>
            </div>
            {progress_view}
        </section>
    }
}

/// This member's privacy ledger: what it spent after each round against its budget.
fn ledger_view(l: Ledger, target: Option<f64>) -> impl IntoView {
    let own_limit = target.is_some_and(|t| l.budget < t);
    let rounds = l.history.len();
    let whose = if own_limit {
        "your limit"
    } else {
        "the group's target"
    };
    let text = format!(
        "Your privacy spent in this group: ε {} of {whose} {} (δ {:e}), over {rounds} round(s) \
         you took part in.",
        short_number(l.epsilon),
        short_number(l.budget),
        l.delta,
    );
    let points: Vec<(f64, f64)> = l
        .history
        .iter()
        .map(|&(r, e)| (r as f64, e))
        .filter(|(_, e)| e.is_finite())
        .collect();
    let limit_name = if own_limit {
        "Your limit"
    } else {
        "Group's target"
    };
    let series = super::page::privacy_series(&points, l.budget, "ε you spent", limit_name);
    view! {
        <div class="my-privacy">
            <p id="my-privacy-spent" data-spent=l.epsilon.to_string() data-budget=l.budget.to_string()
                data-rounds=rounds>
                {text}
            </p>
            {line_chart("my-privacy-chart".into(), "Your privacy spent (ε) by round".into(), "round", series)}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_keeps_the_last_loss_of_each_round() {
        let mut s = RunState::default();
        for (round, loss) in [(1, 0.9), (1, 0.7), (2, 0.5)] {
            s.record(TrainProgress {
                phase: "training".into(),
                round: Some(round),
                loss: Some(loss),
                backend: Some("wgpu".into()),
                ..TrainProgress::default()
            });
        }
        assert_eq!(s.loss_by_round, vec![(1, 0.7), (2, 0.5)]);
        assert_eq!(s.backend.as_deref(), Some("wgpu"));
    }

    #[test]
    fn the_ledger_and_its_refusal_are_read_from_the_engine_events() {
        let mut s = RunState::default();
        let progress = |event: serde_json::Value| TrainProgress {
            phase: event["type"].as_str().unwrap().into(),
            event: Some(event),
            ..TrainProgress::default()
        };
        s.record(progress(serde_json::json!({
            "type": "privacy", "round": 1, "epsilon": 2.5, "budget": 3.0, "delta": 1e-5,
            "history": [[1, 2.5]],
        })));
        let ledger = s.ledger.clone().unwrap();
        assert_eq!(ledger.history, vec![(1, 2.5)]);
        assert_eq!((ledger.epsilon, ledger.budget), (2.5, 3.0));
        // Other events leave it as it is.
        s.record(progress(serde_json::json!({"type": "waiting", "round": 1})));
        assert_eq!(s.ledger, Some(ledger));
        s.record(progress(serde_json::json!({
            "type": "privacy_refused", "round": 2, "reason": "the privacy budget is spent",
            "spent": 2.5, "next": 3.2, "budget": 3.0,
        })));
        let refused = s.refused.clone().unwrap();
        assert_eq!(
            (refused.round, refused.reason.as_str()),
            (2, "the privacy budget is spent")
        );
        assert_eq!(
            (refused.spent, refused.next, refused.budget),
            (Some(2.5), Some(3.2), Some(3.0))
        );
    }

    #[test]
    fn a_refusal_reads_in_plain_words() {
        let spent = Refused {
            round: 2,
            reason: "the privacy budget is spent: ...".into(),
            spent: Some(2.5),
            next: Some(3.2),
            budget: Some(3.0),
        };
        let words = refusal_words(&spent, true);
        assert_eq!(
            words,
            "Your browser stopped training in this group: round 2 would bring your privacy \
             spent to ε 3.20, past your limit of 3 (spent so far: ε 2.50). Nothing was sent for \
             this round; the group goes on with the other members."
        );
        assert!(refusal_words(&spent, false).contains("the group's target you accepted"));
        let changed = Refused {
            round: 4,
            reason: "the group's privacy settings changed since this member joined: x".into(),
            spent: None,
            next: None,
            budget: None,
        };
        let words = refusal_words(&changed, false);
        assert!(
            words.contains("before round 4: the group's privacy"),
            "{words}"
        );
        assert!(
            words.ends_with("Nothing was sent for this round."),
            "{words}"
        );
        assert_eq!(parse_limit(" "), Ok(None));
        assert_eq!(parse_limit("2.5"), Ok(Some(2.5)));
        assert!(parse_limit("0").is_err());
        assert!(parse_limit("abc").unwrap_err().contains("“abc”"));
    }

    #[test]
    fn images_are_labelled_by_their_folder() {
        assert_eq!(image_label("digits/7/a.png", "a.png").as_deref(), Some("7"));
        assert_eq!(
            image_label("digits/cat/b.JPG", "b.JPG").as_deref(),
            Some("cat")
        );
        assert_eq!(image_label("a.png", "a.png"), None);
        assert_eq!(image_label("digits/7/notes.txt", "notes.txt"), None);
    }

    #[test]
    fn positions_and_summaries_read_well() {
        let p = TrainProgress {
            round: Some(2),
            rounds: Some(5),
            batch: Some(3),
            batches: Some(12),
            ..TrainProgress::default()
        };
        assert_eq!(position(&p), "round 2 of 5 · batch 3 of 12");
        let o = TrainOutcome {
            rounds_completed: 2,
            final_version: Some(7),
            metrics: Some([("accuracy".to_string(), 0.8)].into()),
            metrics_on: Some("test".into()),
        };
        let text = summary(&o);
        assert!(
            text.starts_with(
                "Training finished after 2 round(s); the group's model is now version 7. \
                 Scored by this browser on the rows of your file kept aside"
            ),
            "{text}"
        );
        assert!(text.contains("accuracy 0.8"), "{text}");
        assert!(text.contains("weighted by rows"), "{text}");
        let mut software = engine::Capabilities {
            webgpu: true,
            backend: "cpu".into(),
            cross_origin_isolated: false,
            software_gpu: true,
            adapter: Some("SwiftShader".into()),
        };
        assert!(capabilities_text(&software).contains("software"));
        assert!(capabilities_text(&software).contains("CPU, which is faster"));
        software.software_gpu = false;
        assert!(capabilities_text(&software).contains("graphics card"));
    }
}
