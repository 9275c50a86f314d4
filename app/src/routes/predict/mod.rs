//! `/predict` and `/predict/{model}`: codeless inference. Pick a deployed model; for a tabular
//! model drop a CSV, see its first rows, run it and download it with predictions appended; for
//! an image model upload a picture or draw a digit and watch the probabilities.
//!
//! The model runs in the browser through the engine's inference worker whenever it can: the
//! file never leaves the machine, and a model used once keeps working offline. When the engine
//! cannot run (no module workers, its files missing, a crash), the page says so and sends the
//! work to the server's codeless endpoints instead ([`Runner::Server`]).

mod csv_panel;
mod draw;
mod image_panel;
mod ood;

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};

use crate::api::{self, ApiError};
use crate::csv_check::Expected;
use crate::engine::{self, EngineError, LoadedModel};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tabular,
    Image,
}

/// What the page knows of the model: from its package (server) or the engine's `load`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    pub task: String,
    pub labels: Vec<String>,
    pub expected: Expected,
    pub target: Option<String>,
}

impl ModelInfo {
    fn from_package(p: &api::ModelPackage) -> ModelInfo {
        let (columns, numeric) = api::package_columns(p);
        ModelInfo {
            name: p.name.clone(),
            version: p.version.to_string(),
            kind: if p.spec.preprocessing.is_some() {
                Kind::Tabular
            } else {
                Kind::Image
            },
            task: api::task_name(p.spec.task).to_string(),
            labels: p.spec.labels.clone(),
            expected: Expected { columns, numeric },
            target: api::package_target(p),
        }
    }

    fn from_engine(m: &LoadedModel) -> ModelInfo {
        ModelInfo {
            name: m.name.clone(),
            version: m.version.to_string(),
            kind: if m.kind == "image" {
                Kind::Image
            } else {
                Kind::Tabular
            },
            task: m.task.clone(),
            labels: m.labels.clone(),
            // The engine names the columns but not their kinds: numbers are checked by it.
            expected: Expected {
                columns: m.input_columns.clone(),
                numeric: Vec::new(),
            },
            target: m.target.clone(),
        }
    }
}

/// Where predictions run.
#[derive(Debug, Clone, PartialEq)]
pub enum Runner {
    /// In this browser, by the engine's worker; `offline`: the server could not be reached
    /// and the browser's saved copy of the model is used.
    Local { from_cache: bool, offline: bool },
    /// On the server, because the engine could not (`reason`, for people).
    Server { reason: String },
}

impl Runner {
    pub fn mode(&self) -> &'static str {
        match self {
            Runner::Local { .. } => "local",
            Runner::Server { .. } => "server",
        }
    }
}

/// Turns an engine failure into the switch to the server, or an error to show.
pub fn fall_back(runner: RwSignal<Runner>, e: EngineError) -> Result<(), String> {
    if e.is_unavailable() {
        engine::restart_inference();
        runner.set(Runner::Server {
            reason: e.to_string(),
        });
        Ok(())
    } else {
        Err(e.to_string())
    }
}

/// A server refusal, in the words of this page (a 401 means "sign in").
pub fn server_error(e: ApiError) -> String {
    if e.status() == Some(401) {
        "Running the model on the server needs an account: sign in and try again.".into()
    } else {
        e.to_string()
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Prepared {
    info: ModelInfo,
    runner: Runner,
}

async fn prepare(name: String) -> Result<Prepared, String> {
    let package = api::package(&name).await;
    let loaded = match engine::inference() {
        Ok(engine) => engine.load(&name).await,
        Err(e) => Err(e),
    };
    match (package, loaded) {
        (package, Ok(loaded)) => Ok(Prepared {
            info: package
                .as_ref()
                .map(ModelInfo::from_package)
                .unwrap_or_else(|_| ModelInfo::from_engine(&loaded)),
            runner: Runner::Local {
                from_cache: loaded.from_cache,
                offline: loaded.offline,
            },
        }),
        (Ok(package), Err(e)) => {
            if e.is_unavailable() {
                engine::restart_inference();
            }
            Ok(Prepared {
                info: ModelInfo::from_package(&package),
                runner: Runner::Server {
                    reason: e.to_string(),
                },
            })
        }
        (Err(pe), Err(_)) if pe.status() == Some(404) => Err(format!(
            "There is no deployed model named “{name}” that you can use. Pick one from the list."
        )),
        (Err(pe), Err(e)) => Err(match pe {
            ApiError::Refused { status: 401, .. } => {
                "Sign in to use this model: it is shared with its group's members only.".into()
            }
            ApiError::Unreachable => format!(
                "The server cannot be reached and this browser has no saved copy of “{name}”. \
                 The in-browser engine said: {e}"
            ),
            other => other.to_string(),
        }),
    }
}

#[component]
pub fn Predict() -> impl IntoView {
    let params = use_params_map();
    let model = Memo::new(move |_| {
        params
            .with(|p| p.get("model"))
            .filter(|m| !m.trim().is_empty())
    });
    let session = crate::session::use_session();
    // Where the chosen model runs (`local` or `server`), once it is loaded.
    let mode = RwSignal::new(None::<&'static str>);
    let intro = move || match mode.get() {
        Some("local") => {
            "Your file is read and scored here, in your browser: it stays on this machine."
        }
        Some(_) => {
            "This model runs on the server: your file is sent to the server to predict, and \
             not kept."
        }
        None => {
            "Your file is scored in your browser when it can run the model: it then stays on \
             this machine. Otherwise it is sent to the server to predict, and not kept."
        }
    };
    view! {
        <h1>"Predict"</h1>
        <p class="muted lead" id="predict-intro" data-mode=move || mode.get().unwrap_or("")>
            "Run a deployed model on your own data, without code. "
            {intro}
        </p>
        <ModelPicker model/>
        {move || session.user().is_none().then(|| view! {
            <p class="hint" id="predict-sign-in">
                "Public models need no account. "
                <A href="/sign-in">"Sign in"</A>
                " to use your groups' models too."
            </p>
        })}
        {move || model.get().map(|name| view! { <ModelRunner name mode/> })}
    }
}

#[component]
fn ModelPicker(model: Memo<Option<String>>) -> impl IntoView {
    let navigate = use_navigate();
    let session = crate::session::use_session();
    // Everyone sees the public models; signing in adds the groups' ones.
    let deployments = LocalResource::new(move || {
        session.user();
        let ready = session.may_call();
        async move {
            if ready {
                api::deployments().await
            } else {
                Ok(Vec::new())
            }
        }
    });
    let pick = move |ev: leptos::ev::Event| {
        let name = event_target_value(&ev);
        if !name.is_empty() {
            navigate(
                &format!("/predict/{}", api::encode(&name)),
                Default::default(),
            );
        }
    };
    let options = move || {
        let current = model.get();
        let list: Vec<String> = deployments
            .get()
            .and_then(Result::ok)
            .map(|d| d.into_iter().map(|d| d.name).collect())
            .unwrap_or_default();
        let mut names = list;
        // The model in the address stays selectable even when the list is unavailable.
        if let Some(c) = &current
            && !names.contains(c)
        {
            names.insert(0, c.clone());
        }
        names
            .into_iter()
            .map(|n| {
                let selected = current.as_deref() == Some(n.as_str());
                view! { <option value=n.clone() selected=selected>{n.clone()}</option> }
            })
            .collect_view()
    };
    let list_problem = move || {
        deployments.get().and_then(|r| match r {
            Ok(list) if list.is_empty() && model.get().is_none() => Some(
                view! {
                    <p class="hint" id="no-models">
                        "No model is deployed yet. Public models and your groups' models "
                        "appear here once their owners deploy them."
                    </p>
                }
                .into_any(),
            ),
            Ok(_) => None,
            Err(e) => Some(view! { <p class="hint">{e.to_string()}</p> }.into_any()),
        })
    };
    view! {
        <div class="picker">
            <label for="model-select">"Model"</label>
            <select id="model-select" on:change=pick>
                <option value="" disabled selected=move || model.get().is_none()>
                    "Choose a model…"
                </option>
                {options}
            </select>
        </div>
        {list_problem}
    }
}

#[component]
fn ModelRunner(name: String, mode: RwSignal<Option<&'static str>>) -> impl IntoView {
    let prepared = LocalResource::new({
        let name = name.clone();
        move || prepare(name.clone())
    });
    view! {
        <Transition fallback=move || view! {
            <p class="loading" role="status">"Loading the model…"</p>
        }>
            {move || Suspend::new(async move {
                match prepared.await {
                    Ok(p) => view! { <Ready p mode/> }.into_any(),
                    Err(e) => view! {
                        <p class="form-error" id="model-error" role="alert">{e}</p>
                    }
                    .into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Ready(p: Prepared, mode: RwSignal<Option<&'static str>>) -> impl IntoView {
    let runner = RwSignal::new(p.runner);
    let info = p.info;
    // The page's intro follows the runner (the engine may fail later and hand over to the
    // server), and forgets it when another model replaces this one.
    Effect::new(move |_| mode.set(Some(runner.with(Runner::mode))));
    on_cleanup(move || mode.set(None));
    let status = move || {
        let r = runner.get();
        let mode = r.mode();
        let text = match r {
            Runner::Local { offline: true, .. } => {
                "The server cannot be reached: the model runs in your browser from the copy it \
                 saved when you last used it. Your data never leaves this computer."
                    .to_string()
            }
            Runner::Local {
                from_cache: true, ..
            } => "Runs in your browser, from its saved copy of the model: your data never \
                  leaves this computer, and it works offline."
                .to_string(),
            Runner::Local { .. } => {
                "Runs in your browser: your data never leaves this computer.".to_string()
            }
            Runner::Server { reason } => format!(
                "{reason} Predictions therefore run on the server: your file is sent to it for \
                 this prediction and not kept."
            ),
        };
        let class = if mode == "local" {
            "status-note ok"
        } else {
            "status-note warn"
        };
        view! { <p id="engine-status" class=class data-mode=mode role="status">{text}</p> }
    };
    let about = {
        let what = match info.kind {
            Kind::Tabular => format!(
                "a {} model over a table{}",
                info.task.replace('_', " "),
                info.target
                    .as_ref()
                    .map(|t| format!(", predicting “{t}”"))
                    .unwrap_or_default()
            ),
            Kind::Image => format!("an image classifier ({})", info.labels.join(", ")),
        };
        format!("{} · version {} · {what}", info.name, info.version)
    };
    let panel = match info.kind {
        Kind::Tabular => view! { <csv_panel::CsvPanel info=info.clone() runner/> }.into_any(),
        Kind::Image => view! { <image_panel::ImagePanel info=info.clone() runner/> }.into_any(),
    };
    view! {
        <p class="muted" id="model-about">{about}</p>
        {status}
        {panel}
    }
}
