//! `/groups`: the signed-in account's training groups (`GET /api/groups`), and the forms to
//! create one (description, a model template read from a sample of a CSV's header and target,
//! hyper-parameters, strategy) or join one by its code. Each group has its page
//! (`/groups/{id}`, [`page`]) where members train with their local data ([`training`]).

mod page;
pub mod training;

pub use page::GroupPage;
pub(crate) use page::privacy_text;

use b3o_models::tabular::{
    ColumnKind, CsvReader, CsvRecord, Delimiter, ExcludeReason, Excluded, FeatureColumn,
    MissingValues, Schema, TabularError, TargetColumn, split_fields,
};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;
use serde_json::json;

use super::{form_error, show_errors};
use crate::api::{self, ApiError, CreateGroup, GroupSummary, Hyperparameters, ModelTemplate};
use crate::browser;
use crate::charts::short_number;
use crate::session::{SessionState, use_session};
use b3o_models::compress::UpdateEncoding;
use b3o_models::dp::{AdaptiveClipping, DpConfig, DpParams, DpPlacement};
use b3o_models::protocol::AsyncConfig;

#[component]
pub fn Groups() -> impl IntoView {
    let session = use_session();
    let signed_in = Memo::new(move |_| match session.state() {
        SessionState::Checking => None,
        SessionState::SignedOut => Some(false),
        SessionState::SignedIn(_) => Some(true),
    });
    view! {
        <h1>"Training groups"</h1>
        <p class="muted lead">
            "A group trains one model together: each member trains on its own data in its "
            "browser, and only model updates reach the server, never rows of data."
        </p>
        {move || match signed_in.get() {
            None => view! { <p>"Loading…"</p> }.into_any(),
            Some(false) => view! {
                <p class="empty">
                    <A href="/sign-in">"Sign in"</A>
                    " or "
                    <A href="/sign-up">"create an account"</A>
                    " to create or join a training group."
                </p>
            }
            .into_any(),
            Some(true) => view! {
                <YourGroups/>
                <div class="columns">
                    <CreateGroup/>
                    <JoinGroup/>
                </div>
            }
            .into_any(),
        }}
    }
}

#[component]
fn YourGroups() -> impl IntoView {
    let groups = LocalResource::new(api::groups);
    view! {
        <section aria-labelledby="your-groups">
            <h2 id="your-groups">"Your groups"</h2>
            <Transition fallback=|| view! { <p>"Loading your groups…"</p> }>
                <ErrorBoundary fallback=show_errors>
                    {move || Suspend::new(async move { groups.await.map(group_cards) })}
                </ErrorBoundary>
            </Transition>
        </section>
    }
}

fn group_cards(list: Vec<GroupSummary>) -> AnyView {
    if list.is_empty() {
        return view! {
            <p class="empty" id="groups-empty">
                "You are in no group yet. Create one below, or join one with the code its owner "
                "gave you."
            </p>
        }
        .into_any();
    }
    view! {
        <ul class="cards" id="group-list">
            {list
                .into_iter()
                .map(|g| {
                    let href = format!("/groups/{}", g.id);
                    let round = match (g.current_round, g.current_round_state) {
                        (Some(n), Some(state)) => {
                            format!("round {n} of {} ({})", g.rounds, state.as_str())
                        }
                        _ => format!("{} round(s) planned", g.rounds),
                    };
                    let kind = match g.model_kind {
                        Some(api::ModelKind::ImageCnn) => "images",
                        Some(api::ModelKind::Tabular) => "table",
                        _ => "model",
                    };
                    view! {
                        <li>
                            <article class="card group-card" data-group-id=g.id>
                                <h3>
                                    <A href=href>{g.name.clone()}</A>
                                    " "
                                    <span class="tag">{g.role.as_str()}</span>
                                </h3>
                                {(!g.description.is_empty())
                                    .then(|| view! { <p class="muted clamp">{g.description.clone()}</p> })}
                                <p class="muted">
                                    {format!(
                                        "{} · {} · {} member(s) · {round}",
                                        kind,
                                        g.phase.as_str().replace('_', " "),
                                        g.members,
                                    )}
                                </p>
                            </article>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
    .into_any()
}

/// Which model a new group trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Template {
    Tabular,
    Image,
}

/// The create form's fields, as typed.
#[derive(Debug, Clone, Default)]
struct GroupForm {
    name: String,
    description: String,
    tabular: bool,
    csv_sample: String,
    target: String,
    task: String,
    exclude: String,
    labels: String,
    rounds: String,
    local_epochs: String,
    batch_size: String,
    optimizer: String,
    lr: String,
    strategy: String,
    strategy_param: String,
    min_clients: String,
    /// Secure aggregation (SecAgg+) with Flower's default settings.
    secure: bool,
    /// `f32`, `f16`, `int8`, `int8-tensor`, `topk:0.1`... (empty: f32).
    update_encoding: String,
    /// Differential privacy, as typed.
    dp: DpForm,
    /// Asynchronous buffered rounds (FedBuff), as typed.
    asynchronous: AsyncForm,
}

/// The asynchronous rounds section of the create form, as typed.
#[derive(Debug, Clone, PartialEq, Default)]
struct AsyncForm {
    enabled: bool,
    /// K: updates per version.
    buffer_size: String,
    /// Versions an update may be behind.
    max_staleness: String,
}

/// The asynchronous settings the form asks for, `None` when off.
fn async_config(form: &AsyncForm) -> Result<Option<AsyncConfig>, String> {
    if !form.enabled {
        return Ok(None);
    }
    let config = AsyncConfig {
        buffer_size: number("Updates per version (buffer size)", &form.buffer_size)?,
        max_staleness: number("Versions an update may be behind", &form.max_staleness)?,
        staleness_exponent: 0.5,
    };
    config.validate()?;
    Ok(Some(config))
}

/// The differential privacy section of the create form, as typed.
#[derive(Debug, Clone, PartialEq)]
struct DpForm {
    enabled: bool,
    epsilon: String,
    delta: String,
    /// `central` or `local`.
    placement: String,
    /// The clipping norm (the initial one with adaptive clipping).
    clip: String,
    adaptive: bool,
}

impl Default for DpForm {
    fn default() -> Self {
        DpForm {
            enabled: false,
            epsilon: "8".into(),
            delta: "1e-5".into(),
            placement: "central".into(),
            clip: "1.0".into(),
            adaptive: false,
        }
    }
}

/// The `dp` of the create request (`None` when not asked for), or what to fix. The noise
/// multiplier is left out: the server calibrates it for the planned rounds.
fn dp_config(dp: &DpForm, secure: bool) -> Result<Option<DpConfig>, String> {
    if !dp.enabled {
        return Ok(None);
    }
    let epsilon: f64 = number("Target epsilon (ε)", &dp.epsilon)?;
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(format!(
            "Target epsilon (ε) must be more than 0, got {epsilon}."
        ));
    }
    let delta: f64 = number("Delta (δ)", &dp.delta)?;
    if !(delta > 0.0 && delta < 1.0) {
        return Err(format!(
            "Delta (δ) must be between 0 and 1 (1e-5 is usual), got {delta}."
        ));
    }
    let placement: DpPlacement = dp
        .placement
        .parse()
        .map_err(|e| format!("Who adds the noise: {e}."))?;
    let clip: f64 = number("Clipping norm", &dp.clip)?;
    if !(clip.is_finite() && clip > 0.0) {
        return Err(format!(
            "The clipping norm must be more than 0, got {clip}."
        ));
    }
    let adaptive = dp.adaptive && adaptive_allowed(placement, secure);
    Ok(Some(DpConfig {
        epsilon,
        delta,
        placement,
        clipping_norm: Some(clip),
        noise_multiplier: None,
        adaptive: adaptive.then(AdaptiveClipping::default),
    }))
}

/// Adaptive clipping counts clipped updates with central noise, out of the server's sight
/// only when it can see each update's bit: not with local noise, nor with secure aggregation.
fn adaptive_allowed(placement: DpPlacement, secure: bool) -> bool {
    placement == DpPlacement::Central && !secure
}

/// What the server will run with at creation: the noise multiplier calibrated for `rounds`
/// rounds taking every ready member (`fraction_fit` 1, as this form asks), about `min_clients`
/// of them per round (`DpConfig::resolve`, the server's own calculation).
fn dp_preview(config: &DpConfig, rounds: &str, min_clients: &str) -> Result<DpParams, String> {
    let rounds: u32 = number("Rounds", rounds)?;
    let clients: u32 = number("Minimum members per round", min_clients)?;
    config
        .resolve(rounds, 1.0, f64::from(clients.max(2)))
        .map_err(|e| e.to_string())
}

/// The noise a round's result gets, in words: its standard deviation per model value, with
/// `clients` members per round (the minimum; more members, less noise on the mean).
fn noise_cost(params: &DpParams, clients: u32) -> String {
    let n = f64::from(clients.max(1));
    let sigma = params.update_noise_multiplier * params.clipping_norm;
    match params.placement {
        DpPlacement::Central => format!(
            "Each round's mean update gets Gaussian noise of standard deviation z × C / n = {} \
             per model value with {clients} members (n); less with more members, as the noise \
             is shared by the mean.",
            short_number(sigma / n)
        ),
        DpPlacement::Local => format!(
            "Each member's update gets Gaussian noise of standard deviation 2 × z × C = {} per \
             model value (the server sees each update, which can move by up to 2 × C); the mean \
             of {clients} members still carries {} (2√n times the noise of central placement).",
            short_number(2.0 * sigma),
            short_number(2.0 * sigma / n.sqrt())
        ),
    }
}

fn number<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{what}: “{}” is not a number; enter one.", text.trim()))
}

/// The sample's column names and rows, read by the project's one CSV reader
/// (`b3o_models::tabular::CsvReader`: quoted names may hold separators and line breaks); a
/// mistake is named by its line. An empty sample has no columns.
fn read_sample(sample: &str) -> Result<(Vec<String>, Vec<CsvRecord>), String> {
    let explain = |e: TabularError| format!("The CSV sample: {e}.");
    let reader = match CsvReader::new(sample.as_bytes()) {
        Ok(reader) => reader,
        Err(TabularError::Empty) => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(explain(e)),
    };
    let header = reader.header().to_vec();
    let rows = reader.collect::<Result<Vec<_>, _>>().map_err(explain)?;
    Ok((header, rows))
}

/// A column is numeric when every sample value in it is a number (or missing), categorical
/// otherwise; with a header and no rows, every column is numeric.
fn columns_from_sample(sample: &str) -> Result<Vec<(String, &'static str)>, String> {
    let (names, rows) = read_sample(sample)?;
    let missing = MissingValues::default();
    Ok(names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let numeric = rows.iter().all(|row| {
                row.value(i, &missing)
                    .is_none_or(|v| v.parse::<f64>().is_ok_and(f64::is_finite))
            });
            (name, if numeric { "numeric" } else { "categorical" })
        })
        .collect())
}

/// The name in `candidates` closest to `name` (edit distance, ignoring case), if it is close
/// enough to be a typo: at most a third of the longer name's characters differ (at least 2).
fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let a: Vec<char> = name.to_lowercase().chars().collect();
    candidates
        .iter()
        .map(|c| {
            let b: Vec<char> = c.to_lowercase().chars().collect();
            (edit_distance(&a, &b), a.len().max(b.len()), *c)
        })
        .filter(|&(d, longest, _)| d <= (longest / 3).max(2))
        .min_by_key(|&(d, _, _)| d)
        .map(|(_, _, c)| c)
}

/// Levenshtein distance between two character sequences.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The `POST /api/groups` body for `form`, or what to fix, in words.
fn create_request(form: &GroupForm) -> Result<CreateGroup, String> {
    let name = form.name.trim();
    if name.is_empty() {
        return Err("Give the group a name.".into());
    }
    let model = if form.tabular {
        let columns = columns_from_sample(&form.csv_sample)?;
        if columns.is_empty() {
            return Err("Paste at least the header line of a sample of your CSV.".into());
        }
        let target = form.target.trim();
        if !columns.iter().any(|(c, _)| c == target) {
            return Err(format!(
                "The target column “{target}” is not in the CSV header."
            ));
        }
        // Names as in a CSV header: a name with a comma in it is written in double quotes.
        let excluded: Vec<String> = split_fields(&form.exclude, Delimiter::Comma)
            .map_err(|e| format!("Columns to leave out: {e}."))?
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect();
        let header: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
        let unknown: Vec<String> = excluded
            .iter()
            .filter(|c| !header.contains(&c.as_str()))
            .map(|c| match closest(c, &header) {
                Some(near) => format!("“{c}” (did you mean “{near}”?)"),
                None => format!("“{c}”"),
            })
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "Columns to leave out: {} {} not in the CSV header. Write the names as in \
                 the header line, separated by commas.",
                unknown.join(", "),
                if unknown.len() == 1 { "is" } else { "are" },
            ));
        }
        let features = columns
            .iter()
            .filter(|(c, _)| c != target && !excluded.contains(c))
            .map(|(c, kind)| FeatureColumn {
                name: c.clone(),
                kind: if *kind == "numeric" {
                    ColumnKind::Numeric
                } else {
                    ColumnKind::Categorical
                },
            })
            .collect();
        let task = api::task_named(&form.task).ok_or_else(|| {
            format!(
                "Choose what the model predicts: “{}” is not one of the choices.",
                form.task
            )
        })?;
        ModelTemplate::Tabular {
            schema: Schema {
                features,
                target: TargetColumn {
                    name: target.to_string(),
                    task,
                },
                excluded: excluded
                    .into_iter()
                    .map(|column| Excluded {
                        column,
                        reason: ExcludeReason::User,
                    })
                    .collect(),
            },
            hidden: None,
        }
    } else {
        let labels: Vec<String> = form
            .labels
            .split(',')
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if labels.len() < 2 {
            return Err("An image model needs at least two labels, separated by commas.".into());
        }
        ModelTemplate::ImageCnn { labels }
    };
    let hyperparameters = Hyperparameters {
        rounds: number("Rounds", &form.rounds)?,
        local_epochs: number("Local epochs", &form.local_epochs)?,
        batch_size: number("Batch size", &form.batch_size)?,
        optimizer: api::optimizer_named(&form.optimizer).ok_or_else(|| {
            format!(
                "Choose an optimiser: “{}” is not one of the choices.",
                form.optimizer
            )
        })?,
        lr: number("Learning rate", &form.lr)?,
    };
    let strategy = match form.strategy.as_str() {
        "fedprox" => json!({
            "name": "fedprox",
            "proximal_mu": number::<f64>("Proximal term μ", &form.strategy_param)?,
        }),
        "fedtrimmedavg" => json!({
            "name": "fedtrimmedavg",
            "beta": number::<f64>("Fraction trimmed", &form.strategy_param)?,
        }),
        "krum" | "bulyan" => json!({
            "name": form.strategy,
            "num_malicious": number::<usize>("Malicious members tolerated", &form.strategy_param)?,
        }),
        other => json!({ "name": other }),
    };
    if form.secure
        && matches!(
            form.strategy.as_str(),
            "fedmedian" | "fedtrimmedavg" | "krum" | "bulyan"
        )
    {
        return Err(
            "Secure aggregation hides each member's update from the server, so it works with \
             the mean-type strategies only (FedAvg, FedProx, FedAvgM, FedAdam, FedYogi, \
             FedAdagrad): pick one of them, or turn secure aggregation off."
                .into(),
        );
    }
    let dp = dp_config(&form.dp, form.secure)?;
    let asynchronous = async_config(&form.asynchronous)?;
    if asynchronous.is_some() {
        if form.secure || dp.is_some() {
            return Err(
                "Asynchronous rounds cannot be combined with secure aggregation or differential \
                 privacy: both rely on synchronous rounds of the same members. Turn one off."
                    .into(),
            );
        }
        if matches!(
            form.strategy.as_str(),
            "fedmedian" | "fedtrimmedavg" | "krum" | "bulyan"
        ) {
            return Err(
                "Asynchronous rounds average each update as it arrives, so they work with the \
                 mean-type strategies only (FedAvg, FedProx, FedAvgM, FedAdam, FedYogi, \
                 FedAdagrad)."
                    .into(),
            );
        }
    }
    if dp.is_some() && !matches!(form.update_encoding.trim(), "" | "f32") {
        return Err(
            "Differential privacy clips and noises full-precision updates: set Update \
             compression to none (f32), or turn differential privacy off."
                .into(),
        );
    }
    Ok(CreateGroup {
        name: name.to_string(),
        description: form.description.trim().to_string(),
        model,
        hyperparameters,
        strategy,
        min_clients: number("Minimum members per round", &form.min_clients)?,
        // The server's defaults: every ready member per round, 10 minutes, no norm bound.
        fraction_fit: 1.0,
        round_deadline_secs: 600,
        max_update_norm: None,
        secagg: form.secure.then(b3o_models::secagg::SecAggConfig::default),
        update_encoding: match form.update_encoding.trim() {
            "" => UpdateEncoding::F32,
            e => e.parse().map_err(|e| format!("Update compression: {e}"))?,
        },
        dp,
        asynchronous,
    })
}

/// A short name for an update encoding in the form's choices.
pub(crate) fn encoding_name(e: &UpdateEncoding) -> String {
    match e {
        UpdateEncoding::F32 => "None: full precision (f32)".into(),
        UpdateEncoding::F16 => "Half precision (f16)".into(),
        UpdateEncoding::Int8 { per_channel: true } => "8-bit, per neuron (int8)".into(),
        UpdateEncoding::Int8 { per_channel: false } => "8-bit, per tensor (int8-tensor)".into(),
        UpdateEncoding::TopK { fraction } => {
            format!("Largest {}% of changes (topk:{fraction})", fraction * 100.0)
        }
    }
}

/// The strategy's one required parameter: label and default value.
fn strategy_param(strategy: &str) -> Option<(&'static str, &'static str)> {
    match strategy {
        "fedprox" => Some(("Proximal term μ", "0.01")),
        "fedtrimmedavg" => Some(("Fraction trimmed at each end", "0.2")),
        "krum" | "bulyan" => Some(("Malicious members tolerated", "1")),
        _ => None,
    }
}

/// A client-side mistake shown like a server refusal.
fn invalid(message: String) -> ApiError {
    ApiError::Refused {
        status: 400,
        code: "bad_request".into(),
        message,
        retry_after: None,
    }
}

#[component]
fn CreateGroup() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let name = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let template = RwSignal::new(Template::Tabular);
    let csv_sample = RwSignal::new(String::new());
    let target = RwSignal::new(String::new());
    let task = RwSignal::new("binary_classification".to_string());
    let exclude = RwSignal::new(String::new());
    let labels = RwSignal::new(String::new());
    let rounds = RwSignal::new("10".to_string());
    let local_epochs = RwSignal::new("1".to_string());
    let batch_size = RwSignal::new("32".to_string());
    let optimizer = RwSignal::new("adam".to_string());
    let lr = RwSignal::new("0.001".to_string());
    let strategy = RwSignal::new("fedavg".to_string());
    let strategy_value = RwSignal::new(String::new());
    let min_clients = RwSignal::new("2".to_string());
    let secure = RwSignal::new(false);
    let update_encoding = RwSignal::new("f32".to_string());
    let dp_defaults = DpForm::default();
    let dp_on = RwSignal::new(false);
    let dp_epsilon = RwSignal::new(dp_defaults.epsilon);
    let dp_delta = RwSignal::new(dp_defaults.delta);
    let dp_placement = RwSignal::new(dp_defaults.placement);
    let dp_clip = RwSignal::new(dp_defaults.clip);
    let dp_adaptive = RwSignal::new(false);
    let async_on = RwSignal::new(false);
    let async_buffer = RwSignal::new("2".to_string());
    let async_staleness = RwSignal::new("10".to_string());
    // Differential privacy noises full-precision updates: no compression.
    Effect::new(move |_| {
        if dp_on.get() {
            update_encoding.set("f32".to_string());
        }
    });
    let adaptive_possible = Memo::new(move |_| {
        let placement = dp_placement.get().parse().unwrap_or_default();
        adaptive_allowed(placement, secure.get())
    });
    Effect::new(move |_| {
        if !adaptive_possible.get() {
            dp_adaptive.set(false);
        }
    });
    // Adaptive clipping starts from a small norm (Andrew et al.): swap the defaults while the
    // person has not typed one.
    Effect::new(move |previous: Option<bool>| {
        let adaptive = dp_adaptive.get();
        if previous.is_some_and(|p| p != adaptive) {
            let (from, to) = if adaptive {
                ("1.0", "0.1")
            } else {
                ("0.1", "1.0")
            };
            if dp_clip.get_untracked().trim() == from {
                dp_clip.set(to.to_string());
            }
        }
        adaptive
    });
    let dp_form = move || DpForm {
        enabled: dp_on.get_untracked(),
        epsilon: dp_epsilon.get_untracked(),
        delta: dp_delta.get_untracked(),
        placement: dp_placement.get_untracked(),
        clip: dp_clip.get_untracked(),
        adaptive: dp_adaptive.get_untracked(),
    };

    let columns = Memo::new(move |_| {
        csv_sample.with(|s| {
            columns_from_sample(s)
                .unwrap_or_default()
                .into_iter()
                .map(|(c, _)| c)
                .collect::<Vec<_>>()
        })
    });
    // Suggest the last column as the target until the person picks one.
    Effect::new(move |_| {
        let cols = columns.get();
        if !cols.contains(&target.get_untracked())
            && let Some(last) = cols.last()
        {
            target.set(last.clone());
        }
    });
    Effect::new(move |_| {
        let default = strategy_param(&strategy.get()).map_or("", |(_, d)| d);
        strategy_value.set(default.to_string());
    });

    let create = Action::new_local(move |form: &GroupForm| {
        let request = create_request(form);
        let navigate = navigate.clone();
        async move {
            let body = request.map_err(invalid)?;
            let created = api::create_group(&session.csrf(), &body).await?;
            navigate(&format!("/groups/{}", created.group_id), Default::default());
            Ok(created)
        }
    });
    // Reads the header and first rows of a CSV picked here; nothing of it is sent but the
    // column names and kinds.
    let sample_error = RwSignal::new(None::<String>);
    let pick_sample = move |ev: leptos::ev::Event| {
        let Some(file) = browser::picked_file(&ev) else {
            return;
        };
        sample_error.set(None);
        leptos::task::spawn_local(async move {
            // Only the start of the file is needed.
            let head = file.slice_with_f64_and_f64(0.0, 65536.0).ok();
            let text = match head {
                Some(blob) => browser::read_text(&blob).await,
                None => Err("The file could not be read.".into()),
            };
            match text {
                Ok(text) => match sample_lines(&text, 20) {
                    Ok(sample) => csv_sample.set(sample),
                    Err(e) => sample_error.set(Some(e)),
                },
                Err(e) => sample_error.set(Some(e)),
            }
        });
    };
    // Suggest the task from the sample values of the target.
    Effect::new(move |_| {
        let t = target.get();
        if let Some(suggested) = csv_sample.with(|s| suggest_task(s, &t)) {
            task.set(suggested.to_string());
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        create.dispatch(GroupForm {
            name: name.get_untracked(),
            description: description.get_untracked(),
            tabular: template.get_untracked() == Template::Tabular,
            csv_sample: csv_sample.get_untracked(),
            target: target.get_untracked(),
            task: task.get_untracked(),
            exclude: exclude.get_untracked(),
            labels: labels.get_untracked(),
            rounds: rounds.get_untracked(),
            local_epochs: local_epochs.get_untracked(),
            batch_size: batch_size.get_untracked(),
            optimizer: optimizer.get_untracked(),
            lr: lr.get_untracked(),
            strategy: strategy.get_untracked(),
            strategy_param: strategy_value.get_untracked(),
            min_clients: min_clients.get_untracked(),
            secure: secure.get_untracked(),
            update_encoding: update_encoding.get_untracked(),
            dp: dp_form(),
            asynchronous: AsyncForm {
                enabled: async_on.get_untracked(),
                buffer_size: async_buffer.get_untracked(),
                max_staleness: async_staleness.get_untracked(),
            },
        });
    };

    let tabular_fields = move || {
        view! {
            <label for="group-csv-file">"Read the columns from a CSV file (optional)"</label>
            <input id="group-csv-file" type="file" accept=".csv,.tsv,.txt,text/csv"
                aria-describedby="group-csv-help" on:change=pick_sample/>
            {move || sample_error.get().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
            <label for="group-csv">"Sample of your CSV"</label>
            <textarea id="group-csv" rows="4" required aria-describedby="group-csv-help"
                placeholder="age,balance,country,exited\n42,1200.5,FR,0"
                bind:value=csv_sample></textarea>
            {move || {
                csv_sample
                    .with(|s| columns_from_sample(s).err())
                    .map(|e| view! { <p class="form-error" role="alert">{e}</p> })
            }}
            <p id="group-csv-help" class="hint">
                "The header line and, if you like, a few rows. Columns whose sample values are "
                "all numbers are used as numbers, the others as categories. Your data stays "
                "here: only the column names and kinds are sent, and members train on their "
                "own files later."
            </p>
            <label for="group-target">"Target column (what to predict)"</label>
            <select id="group-target" bind:value=target>
                {move || {
                    columns
                        .get()
                        .into_iter()
                        .map(|c| view! { <option value=c.clone()>{c.clone()}</option> })
                        .collect_view()
                }}
            </select>
            <label for="group-task">"Task"</label>
            <select id="group-task" bind:value=task>
                <option value="binary_classification">"Two classes (yes / no)"</option>
                <option value="multiclass_classification">"Three or more classes"</option>
                <option value="regression">"A number (regression)"</option>
            </select>
            <label for="group-exclude">"Columns to leave out (optional)"</label>
            <input id="group-exclude" type="text" placeholder="customer_id, surname"
                bind:value=exclude/>
        }
    };
    let image_fields = move || {
        view! {
            <label for="group-labels">"Class labels"</label>
            <input id="group-labels" type="text" required placeholder="cat, dog, bird"
                aria-describedby="group-labels-help" bind:value=labels/>
            <p id="group-labels-help" class="hint">
                "At least two, separated by commas. The model is B3O's image CNN."
            </p>
        }
    };

    view! {
        <section class="card">
            <h2>"Create a group"</h2>
            <form class="stack" id="create-group-form" on:submit=submit>
                <label for="group-name">"Name"</label>
                <input id="group-name" type="text" required maxlength="200" bind:value=name/>
                <label for="group-description">"Description"</label>
                <textarea id="group-description" rows="2" maxlength="10000"
                    bind:value=description></textarea>

                <fieldset>
                    <legend>"Model"</legend>
                    <label class="choice">
                        <input type="radio" name="template" value="tabular"
                            prop:checked=move || template.get() == Template::Tabular
                            on:change=move |_| template.set(Template::Tabular)/>
                        "Tabular (a CSV file)"
                    </label>
                    <label class="choice">
                        <input type="radio" name="template" value="image"
                            prop:checked=move || template.get() == Template::Image
                            on:change=move |_| template.set(Template::Image)/>
                        "Images (a CNN classifier)"
                    </label>
                    {move || match template.get() {
                        Template::Tabular => tabular_fields().into_any(),
                        Template::Image => image_fields().into_any(),
                    }}
                </fieldset>

                <fieldset class="grid">
                    <legend>"Training"</legend>
                    <div>
                        <label for="group-rounds">"Rounds"</label>
                        <input id="group-rounds" type="number" min="1" max="10000" required
                            bind:value=rounds/>
                    </div>
                    <div>
                        <label for="group-epochs">"Local epochs per round"</label>
                        <input id="group-epochs" type="number" min="1" max="1000" required
                            bind:value=local_epochs/>
                    </div>
                    <div>
                        <label for="group-batch">"Batch size"</label>
                        <input id="group-batch" type="number" min="1" max="65536" required
                            bind:value=batch_size/>
                    </div>
                    <div>
                        <label for="group-optimizer">"Optimizer"</label>
                        <select id="group-optimizer" bind:value=optimizer>
                            <option value="adam">"Adam"</option>
                            <option value="sgd">"SGD"</option>
                        </select>
                    </div>
                    <div>
                        <label for="group-lr">"Learning rate"</label>
                        <input id="group-lr" type="number" min="0" max="10" step="any" required
                            bind:value=lr/>
                    </div>
                    <div>
                        <label for="group-min-clients">"Minimum members per round"</label>
                        <input id="group-min-clients" type="number" min="1" max="10000" required
                            bind:value=min_clients/>
                    </div>
                </fieldset>

                <fieldset class="grid">
                    <legend>"Aggregation"</legend>
                    <div>
                        <label for="group-strategy">"Strategy"</label>
                        <select id="group-strategy" bind:value=strategy>
                            <option value="fedavg">"FedAvg (weighted mean)"</option>
                            <option value="fedprox">"FedProx (for uneven data)"</option>
                            <option value="fedavgm">"FedAvgM (server momentum)"</option>
                            <option value="fedadam">"FedAdam"</option>
                            <option value="fedyogi">"FedYogi"</option>
                            <option value="fedadagrad">"FedAdagrad"</option>
                            <option value="fedmedian">"Median (robust)"</option>
                            <option value="fedtrimmedavg">"Trimmed mean (robust)"</option>
                            <option value="krum">"Krum (robust)"</option>
                            <option value="bulyan">"Bulyan (robust; 4f + 3 members)"</option>
                        </select>
                    </div>
                    {move || {
                        strategy_param(&strategy.get())
                            .map(|(label, _)| {
                                view! {
                                    <div>
                                        <label for="group-strategy-param">{label}</label>
                                        <input id="group-strategy-param" type="number" min="0"
                                            step="any" required bind:value=strategy_value/>
                                    </div>
                                }
                            })
                    }}
                    <div class="async-rounds">
                        <label for="group-async">
                            <input id="group-async" type="checkbox" bind:checked=async_on/>
                            " Asynchronous rounds (don't wait for the slowest)"
                        </label>
                        <small>
                            "Members train whenever they are ready; a new version is published \
                             every few updates, and an update trained from an older version \
                             counts less (FedBuff). Rounds then count versions."
                        </small>
                        {move || async_on.get().then(|| view! {
                            <div class="async-settings">
                                <label for="group-async-buffer">"Updates per version (buffer size)"</label>
                                <input id="group-async-buffer" type="number" min="1" max="10000"
                                    required bind:value=async_buffer/>
                                <label for="group-async-staleness">"Versions an update may be behind"</label>
                                <input id="group-async-staleness" type="number" min="0" max="1000"
                                    required bind:value=async_staleness/>
                            </div>
                        })}
                    </div>
                    <div class="secure-aggregation">
                        <label for="group-secure">
                            <input id="group-secure" type="checkbox" bind:checked=secure/>
                            " Secure aggregation"
                        </label>
                        <small>
                            "The server only ever learns the sum of each round's updates, never \
                             one member's (SecAgg+); members who drop out mid-round are recovered \
                             by the others. Mean-type strategies only."
                        </small>
                    </div>
                    <div>
                        <label for="group-update-encoding">"Update compression"</label>
                        <select id="group-update-encoding" bind:value=update_encoding
                            disabled=move || dp_on.get()>
                            {UpdateEncoding::EXAMPLES
                                .iter()
                                .map(|e| {
                                    view! {
                                        <option value=e.to_string()>{encoding_name(e)}</option>
                                    }
                                })
                                .collect_view()}
                        </select>
                        <p class="muted" id="group-update-encoding-help">
                            {move || {
                                update_encoding
                                    .get()
                                    .parse::<UpdateEncoding>()
                                    .map(|e| e.explanation())
                                    .unwrap_or_default()
                            }}
                            {move || dp_on.get().then_some(
                                " Differential privacy needs full-precision updates."
                            )}
                        </p>
                    </div>
                </fieldset>

                <DpFields dp_on dp_epsilon dp_delta dp_placement dp_clip dp_adaptive
                    adaptive_possible secure rounds min_clients/>

                {form_error("create-group-error", create.value())}
                <button type="submit" disabled=move || create.pending().get()>"Create group"</button>
            </form>
        </section>
    }
}

/// The create form's differential privacy section: the target, who adds the noise, clipping,
/// and the noise multiplier that target costs, computed as the person types.
#[allow(clippy::too_many_arguments)]
#[component]
fn DpFields(
    dp_on: RwSignal<bool>,
    dp_epsilon: RwSignal<String>,
    dp_delta: RwSignal<String>,
    dp_placement: RwSignal<String>,
    dp_clip: RwSignal<String>,
    dp_adaptive: RwSignal<bool>,
    adaptive_possible: Memo<bool>,
    secure: RwSignal<bool>,
    rounds: RwSignal<String>,
    min_clients: RwSignal<String>,
) -> impl IntoView {
    // The server's own calculation, as the person types.
    let preview = Memo::new(move |_| {
        let form = DpForm {
            enabled: dp_on.get(),
            epsilon: dp_epsilon.get(),
            delta: dp_delta.get(),
            placement: dp_placement.get(),
            clip: dp_clip.get(),
            adaptive: dp_adaptive.get(),
        };
        if !form.enabled {
            return None;
        }
        let secure = secure.get();
        let (rounds, clients) = (rounds.get(), min_clients.get());
        Some(
            dp_config(&form, secure)
                .and_then(|c| c.ok_or_else(|| "Turn differential privacy on.".to_string()))
                .and_then(|c| dp_preview(&c, &rounds, &clients))
                .map(|params| {
                    let clients = clients.trim().parse().unwrap_or(2u32).max(2);
                    (params.clone(), noise_cost(&params, clients))
                }),
        )
    });
    view! {
        <fieldset class="dp" aria-describedby="group-dp-help">
            <legend>"Differential privacy"</legend>
            <label for="group-dp" class="choice">
                <input id="group-dp" type="checkbox" bind:checked=dp_on/>
                " Protect each partner with differential privacy"
            </label>
            <p class="hint" id="group-dp-help">
                "Every update is clipped to a bounded size and noise is added, so that no model "
                "version reveals much more about any one partner's rows than a model trained "
                "without that partner. Epsilon (ε) measures how much more: 8 is a common "
                "practical target, 1 is strong, smaller is stronger. Training stops before a "
                "round would pass it."
            </p>
            {move || dp_on.get().then(|| view! {
                <div class="dp-fields">
                    <div>
                        <label for="group-dp-epsilon">"Target epsilon (ε)"</label>
                        // Text, not number: a bound number field reads "5." as no value and
                        // puts the caret back at the start while the person types "5.2".
                        <input id="group-dp-epsilon" type="text" inputmode="decimal" required
                            aria-describedby="group-dp-help" bind:value=dp_epsilon/>
                    </div>
                    <div>
                        <label for="group-dp-delta">"Delta (δ)"</label>
                        <input id="group-dp-delta" type="text" inputmode="decimal" required
                            aria-describedby="group-dp-delta-help" bind:value=dp_delta/>
                        <small id="group-dp-delta-help">
                            "The small chance the guarantee does not hold: well below 1 / the \
                             number of partners; 1e-5 is usual."
                        </small>
                    </div>
                    <div>
                        <label for="group-dp-placement">"Who adds the noise"</label>
                        <select id="group-dp-placement" bind:value=dp_placement
                            aria-describedby="group-dp-placement-help">
                            <option value="central">"Central"</option>
                            <option value="local">"Local"</option>
                        </select>
                        <ul class="hint" id="group-dp-placement-help">
                            <li>
                                <strong>"Central: "</strong>
                                "members clip their updates; the server adds the noise to each \
                                 round's mean (with secure aggregation, members add shares of it)."
                            </li>
                            <li>
                                <strong>"Local: "</strong>
                                "each member adds its full noise before its update leaves its \
                                 browser: no trust in the server, but much more noise for the \
                                 same ε."
                            </li>
                        </ul>
                    </div>
                    <div>
                        <label for="group-dp-clip">
                            {move || if dp_adaptive.get() {
                                "Initial clipping norm (C)"
                            } else {
                                "Clipping norm (C)"
                            }}
                        </label>
                        <input id="group-dp-clip" type="text" inputmode="decimal" required
                            aria-describedby="group-dp-clip-help" bind:value=dp_clip/>
                        <label for="group-dp-adaptive" class="choice">
                            <input id="group-dp-adaptive" type="checkbox" bind:checked=dp_adaptive
                                disabled=move || !adaptive_possible.get()/>
                            " Adaptive clipping"
                        </label>
                        <small id="group-dp-clip-help">
                            {move || if !adaptive_possible.get() {
                                "The largest size (L2 norm) of one member's update in a round. \
                                 Adaptive clipping needs central noise without secure \
                                 aggregation."
                            } else if dp_adaptive.get() {
                                "The norm follows the median size of the updates, learned from \
                                 a noisy count of the clipped ones."
                            } else {
                                "The largest size (L2 norm) of one member's update in a round: \
                                 larger updates are scaled down to it."
                            }}
                        </small>
                    </div>
                </div>
                <div class="dp-noise" id="group-dp-noise" role="status"
                    data-noise=move || preview.get().and_then(|p| p.ok()).map(|(p, _)| p.noise_multiplier.to_string())>
                    {move || match preview.get() {
                        Some(Ok((params, cost))) => view! {
                            <p>
                                <strong>{format!(
                                    "Noise multiplier z = {}",
                                    short_number(params.noise_multiplier)
                                )}</strong>
                                {format!(
                                    " keeps {} round(s) within ε {} at δ {:e}. ",
                                    params.planned_rounds,
                                    short_number(params.epsilon),
                                    params.delta
                                )}
                                {cost}
                            </p>
                            <p class="hint">
                                "More noise costs accuracy: a smaller ε, more rounds or fewer \
                                 members per round make the model less accurate. The server \
                                 calibrates the final value when training starts, for the \
                                 members then ready."
                            </p>
                        }
                        .into_any(),
                        Some(Err(e)) => view! {
                            <p class="form-error" role="alert">{e}</p>
                        }
                        .into_any(),
                        None => ().into_any(),
                    }}
                </div>
            })}
        </fieldset>
    }
}

#[component]
fn JoinGroup() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let code = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    // Offer the account's organisation as the member name, once known.
    Effect::new(move |_| {
        if let Some(user) = session.user()
            && name.get_untracked().is_empty()
        {
            name.set(user.organisation);
        }
    });
    let join = Action::new_local(move |(code, name): &(String, String)| {
        let (code, name) = (code.clone(), name.clone());
        let navigate = navigate.clone();
        async move {
            let joined = api::join_group(&session.csrf(), &code, &name).await?;
            navigate(&format!("/groups/{}", joined.group_id), Default::default());
            Ok(joined)
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        join.dispatch((code.get_untracked(), name.get_untracked()));
    };
    view! {
        <section class="card">
            <h2>"Join a group"</h2>
            <form class="stack" id="join-group-form" on:submit=submit>
                <label for="join-code">"Join code"</label>
                <input id="join-code" type="text" required autocomplete="off"
                    autocapitalize="characters" spellcheck="false" placeholder="ABCD234XYZ"
                    bind:value=code/>
                <label for="join-name">"Your name in the group"</label>
                <input id="join-name" type="text" maxlength="200"
                    aria-describedby="join-name-help" bind:value=name/>
                <p id="join-name-help" class="hint">
                    "Usually your site or organisation; the other members see it."
                </p>
                {form_error("join-group-error", join.value())}
                <button type="submit" disabled=move || join.pending().get()>"Join"</button>
            </form>
        </section>
    }
}

/// The header and up to `rows` data records of `text`, as written there (a record with a
/// quoted line break stays whole; blank lines and a BOM dropped; a last record cut by the read
/// limit dropped), or why the header cannot be read.
fn sample_lines(text: &str, rows: usize) -> Result<String, String> {
    // The reader skips a BOM itself; its spans are offsets in `complete` as given.
    let complete = match text.rfind(['\n', '\r']) {
        Some(end) if text.len() >= 65536 => &text[..end],
        _ => text,
    };
    let reader = match CsvReader::new(complete.as_bytes()) {
        Ok(reader) => reader,
        Err(TabularError::Empty) => return Ok(String::new()),
        Err(e) => return Err(format!("The CSV file: {e}.")),
    };
    let as_written = |r: &CsvRecord| {
        let span = r.span();
        let (start, end) = (
            usize::try_from(span.start).unwrap_or(usize::MAX),
            usize::try_from(span.end).unwrap_or(usize::MAX),
        );
        complete.get(start..end).unwrap_or_default().to_string()
    };
    let mut lines = vec![as_written(reader.header_record())];
    // A malformed record (such as one cut by the read limit) ends the sample.
    lines.extend(
        reader
            .take(rows)
            .map_while(Result::ok)
            .map(|r| as_written(&r)),
    );
    Ok(lines.join("\n"))
}

/// The task the sample values of `target` suggest: two distinct values -> two classes, more
/// numbers -> regression, more words -> several classes. `None` without values.
fn suggest_task(sample: &str, target: &str) -> Option<&'static str> {
    let (header, rows) = read_sample(sample).ok()?;
    let i = header.iter().position(|h| h == target)?;
    let missing = MissingValues::default();
    let mut values: Vec<&str> = rows.iter().filter_map(|r| r.value(i, &missing)).collect();
    if values.is_empty() {
        return None;
    }
    let numeric = values.iter().all(|v| v.parse::<f64>().is_ok());
    values.sort_unstable();
    values.dedup();
    Some(match values.len() {
        0..=2 => "binary_classification",
        _ if numeric && values.iter().any(|v| v.contains('.')) => "regression",
        _ if numeric && values.len() > 10 => "regression",
        _ => "multiclass_classification",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> GroupForm {
        GroupForm {
            name: "churn".into(),
            tabular: true,
            csv_sample: "id,age,country,exited\n1,42,FR,0\n2,35.5,DE,1".into(),
            target: "exited".into(),
            task: "binary_classification".into(),
            exclude: "id".into(),
            rounds: "5".into(),
            local_epochs: "1".into(),
            batch_size: "32".into(),
            optimizer: "adam".into(),
            lr: "0.001".into(),
            strategy: "fedavg".into(),
            min_clients: "2".into(),
            ..GroupForm::default()
        }
    }

    #[test]
    fn asynchronous_rounds_send_the_buffer_and_refuse_what_they_cannot_combine_with() {
        let mut f = form();
        assert!(create_request(&f).unwrap().asynchronous.is_none());
        f.asynchronous = AsyncForm {
            enabled: true,
            buffer_size: "3".into(),
            max_staleness: "4".into(),
        };
        let a = create_request(&f).unwrap().asynchronous.expect("async");
        assert_eq!((a.buffer_size, a.max_staleness), (3, 4));
        f.asynchronous.buffer_size = "0".into();
        let e = create_request(&f).unwrap_err();
        assert!(e.contains("buffer_size"), "{e}");
        f.asynchronous.buffer_size = "3".into();
        f.secure = true;
        assert!(
            create_request(&f)
                .unwrap_err()
                .contains("secure aggregation")
        );
        f.secure = false;
        f.strategy = "fedmedian".into();
        assert!(create_request(&f).unwrap_err().contains("mean-type"));
    }

    #[test]
    fn secure_aggregation_asks_for_flowers_defaults_and_refuses_robust_strategies() {
        let mut f = form();
        f.secure = true;
        let request = create_request(&f).unwrap();
        let secagg = request.secagg.expect("a secure group");
        assert_eq!(secagg.clipping_range, 8.0);
        assert_eq!(secagg.quantization_range, 1 << 22);
        assert_eq!(secagg.modulus_range, 1 << 32);
        f.strategy = "krum".into();
        f.strategy_param = "1".into();
        let e = create_request(&f).unwrap_err();
        assert!(e.contains("mean-type strategies only"), "{e}");
        f.secure = false;
        assert!(create_request(&f).unwrap().secagg.is_none());
    }

    #[test]
    fn differential_privacy_is_sent_for_the_server_to_calibrate() {
        let mut f = form();
        assert!(create_request(&f).unwrap().dp.is_none());
        f.dp.enabled = true;
        let body = create_request(&f).unwrap();
        let dp = body.dp.clone().expect("a DP group");
        assert_eq!((dp.epsilon, dp.delta), (8.0, 1e-5));
        assert_eq!(dp.placement, DpPlacement::Central);
        assert_eq!(dp.clipping_norm, Some(1.0));
        // The server calibrates the noise: the request leaves it out.
        assert_eq!(dp.noise_multiplier, None);
        assert!(dp.adaptive.is_none());
        let json = serde_json::to_value(&body).unwrap();
        assert!(
            json["dp"]
                .get("noise_multiplier")
                .is_none_or(|v| v.is_null())
        );
        body.validate().unwrap();
        // Adaptive clipping with central noise only, and not with secure aggregation.
        f.dp.adaptive = true;
        assert!(create_request(&f).unwrap().dp.unwrap().adaptive.is_some());
        f.secure = true;
        assert!(create_request(&f).unwrap().dp.unwrap().adaptive.is_none());
        f.secure = false;
        f.dp.placement = "local".into();
        let dp = create_request(&f).unwrap().dp.unwrap();
        assert_eq!(dp.placement, DpPlacement::Local);
        assert!(dp.adaptive.is_none());
        // Mistakes are named.
        f.dp.epsilon = "0".into();
        assert!(
            create_request(&f)
                .unwrap_err()
                .starts_with("Target epsilon")
        );
        f.dp.epsilon = "8".into();
        f.dp.delta = "2".into();
        assert!(create_request(&f).unwrap_err().starts_with("Delta"));
        f.dp.delta = "1e-5".into();
        f.dp.clip = "-1".into();
        assert!(create_request(&f).unwrap_err().contains("clipping norm"));
        f.dp.clip = "1".into();
        f.update_encoding = "int8".into();
        assert!(create_request(&f).unwrap_err().contains("full-precision"));
    }

    #[test]
    fn the_noise_multiplier_shown_is_the_servers_calibration() {
        let mut f = form();
        f.dp.enabled = true;
        let config = dp_config(&f.dp, false).unwrap().unwrap();
        let params = dp_preview(&config, "3", "2").unwrap();
        // What the server computes at creation (fraction_fit 1, min_clients 2).
        let server = config.resolve(3, 1.0, 2.0).unwrap();
        assert_eq!(params, server);
        assert!(params.epsilon_after(3) <= 8.0 * (1.0 + 1e-9));
        assert!(params.noise_multiplier > 0.0);
        // A stricter target or more rounds need more noise.
        let mut strict = config.clone();
        strict.epsilon = 1.0;
        assert!(dp_preview(&strict, "3", "2").unwrap().noise_multiplier > params.noise_multiplier);
        assert!(dp_preview(&config, "30", "2").unwrap().noise_multiplier > params.noise_multiplier);
        assert!(
            dp_preview(&config, "three", "2")
                .unwrap_err()
                .starts_with("Rounds")
        );
        // The cost in words: the mean's noise with central placement, the member's with local.
        let sigma = params.noise_multiplier * params.clipping_norm;
        let central = noise_cost(&params, 4);
        assert!(central.contains("z × C / n"), "{central}");
        assert!(
            central.contains(&format!("= {} per", short_number(sigma / 4.0))),
            "{central}"
        );
        let mut local = params.clone();
        local.placement = DpPlacement::Local;
        let local = noise_cost(&local, 4);
        // Each member's own noise scales with 2C (its update can move by up to 2C).
        assert!(
            local.contains(&format!("= {} per", short_number(2.0 * sigma))),
            "{local}"
        );
        assert!(
            local.contains(&format!("carries {} (2√n", short_number(sigma))),
            "{local}"
        );
        for text in [&central, &local] {
            assert!(!text.contains("  "), "a broken line in {text:?}");
        }
    }

    #[test]
    fn unknown_columns_to_leave_out_are_refused_with_the_closest_name() {
        let mut f = form();
        f.exclude = "idd, age".into();
        let e = create_request(&f).unwrap_err();
        assert!(e.contains("“idd” (did you mean “id”?)"), "{e}");
        assert!(e.contains("is not in the CSV header"), "{e}");
        assert!(!e.contains("“age”"), "{e}");
        f.exclude = "Country, surname".into();
        let e = create_request(&f).unwrap_err();
        assert!(e.contains("“Country” (did you mean “country”?)"), "{e}");
        assert!(
            e.contains("“surname”, ") || e.contains("“surname” are"),
            "{e}"
        );
        assert_eq!(closest("surname", &["id", "age", "country"]), None);
        assert_eq!(edit_distance(&['a', 'b'], &['b']), 1);
    }

    fn tabular_schema(request: CreateGroup) -> Schema {
        match request.model {
            ModelTemplate::Tabular { schema, .. } => schema,
            other => panic!("not a tabular model: {other:?}"),
        }
    }

    #[test]
    fn samples_keep_the_header_and_first_rows() {
        let text = "\u{feff}a,b\n\n1,2\n3,4\n5,6\n";
        assert_eq!(sample_lines(text, 2).unwrap(), "a,b\n1,2\n3,4");
        // A record with a quoted line break is one record; CRLF files keep their records.
        let text = "a,\"b\"\r\n1,\"x\r\ny\"\r\n2,z\r\n";
        assert_eq!(sample_lines(text, 1).unwrap(), "a,\"b\"\n1,\"x\r\ny\"");
        // A last record cut by the read limit (an unclosed quote) is dropped.
        assert_eq!(sample_lines("a,b\n1,2\n3,\"cut", 5).unwrap(), "a,b\n1,2");
        let e = sample_lines("a,a\n1,2\n", 5).unwrap_err();
        assert!(e.contains("line 1") && e.contains("twice"), "{e}");
    }

    #[test]
    fn the_task_is_suggested_from_the_target_values() {
        let s = "x,y,z,w\n1,0,a,1.5\n2,1,b,2.5\n3,1,c,7\n";
        assert_eq!(suggest_task(s, "y"), Some("binary_classification"));
        assert_eq!(suggest_task(s, "z"), Some("multiclass_classification"));
        assert_eq!(suggest_task(s, "w"), Some("regression"));
        assert_eq!(suggest_task("x,y\n", "y"), None);
    }

    #[test]
    fn column_kinds_come_from_the_sample_rows() {
        assert_eq!(
            columns_from_sample("a, \"b\" ,c\n1,x,\n2,3,4").unwrap(),
            vec![
                ("a".into(), "numeric"),
                ("b".into(), "categorical"),
                ("c".into(), "numeric")
            ]
        );
        assert!(columns_from_sample("  \n").unwrap().is_empty());
        // Semicolon- and tab-separated samples (European exports, spreadsheets) read the same.
        for sample in ["a;b;c\n1,5;x;2", "a\tb\tc\n1.5\tx\t2"] {
            let names: Vec<String> = columns_from_sample(sample)
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            assert_eq!(names, ["a", "b", "c"], "{sample:?}");
        }
        assert_eq!(
            suggest_task("a;y\n1;yes\n2;no", "y"),
            Some("binary_classification")
        );
    }

    /// Issue #16: the sample is read by the one CSV reader, not split at commas: a quoted
    /// column name may hold a comma, BOM and CRLF are handled, and a ragged row is named by
    /// its line.
    #[test]
    fn the_sample_is_read_like_any_csv() {
        assert_eq!(
            columns_from_sample("id,\"last, first\",exited\n1,\"Smith, J\",0\n2,Doe,1").unwrap(),
            vec![
                ("id".into(), "numeric"),
                ("last, first".into(), "categorical"),
                ("exited".into(), "numeric")
            ]
        );
        assert_eq!(
            columns_from_sample("\u{feff}a;b\r\n1,5;x\r\nNA;y\r\n").unwrap(),
            vec![("a".into(), "categorical"), ("b".into(), "categorical")]
        );
        assert_eq!(
            columns_from_sample("\u{feff}a;b\r\n1.5;x\r\nNA;y\r\n").unwrap(),
            vec![("a".into(), "numeric"), ("b".into(), "categorical")]
        );
        let e = columns_from_sample("a,b\n1,2\n\n3\n").unwrap_err();
        assert!(e.contains("line 4"), "{e}");
        let mut f = form();
        f.csv_sample = "id,\"last, first\",age,exited\n1,\"Smith, J\",42,0".into();
        f.exclude = "id, \"last, first\"".into();
        let schema = tabular_schema(create_request(&f).unwrap());
        assert_eq!(
            schema.features,
            [FeatureColumn {
                name: "age".into(),
                kind: ColumnKind::Numeric
            }]
        );
        assert_eq!(schema.excluded[1].column, "last, first");
        f.csv_sample = "a,b\n1\n".into();
        assert!(create_request(&f).unwrap_err().contains("line 2"));
    }

    #[test]
    fn the_update_compression_is_sent_and_checked() {
        let mut f = form();
        f.update_encoding = "topk:0.01".into();
        let body = create_request(&f).unwrap();
        assert_eq!(
            body.update_encoding,
            UpdateEncoding::TopK { fraction: 0.01 }
        );
        assert_eq!(
            serde_json::to_value(&body).unwrap()["update_encoding"],
            json!("topk:0.01")
        );
        f.update_encoding = "topk:5".into();
        let e = create_request(&f).unwrap_err();
        assert!(e.starts_with("Update compression:"), "{e}");
        for e in UpdateEncoding::EXAMPLES {
            assert!(!encoding_name(&e).is_empty());
        }
    }

    #[test]
    fn a_tabular_request_names_features_target_and_exclusions() {
        let body = create_request(&form()).unwrap();
        assert_eq!(body.hyperparameters.rounds, 5);
        assert_eq!(body.strategy, json!({"name": "fedavg"}));
        assert_eq!(body.update_encoding, UpdateEncoding::F32);
        // The server's own checks accept it.
        body.validate().unwrap();
        let schema = tabular_schema(body);
        let features: Vec<(&str, ColumnKind)> = schema
            .features
            .iter()
            .map(|f| (f.name.as_str(), f.kind))
            .collect();
        assert_eq!(
            features,
            [
                ("age", ColumnKind::Numeric),
                ("country", ColumnKind::Categorical)
            ]
        );
        assert_eq!(schema.target.name, "exited");
        assert_eq!(
            (
                schema.excluded[0].column.as_str(),
                schema.excluded[0].reason
            ),
            ("id", ExcludeReason::User)
        );
    }

    #[test]
    fn mistakes_are_explained() {
        let mut f = form();
        f.target = "missing".into();
        assert!(
            create_request(&f)
                .unwrap_err()
                .contains("not in the CSV header")
        );
        let mut f = form();
        f.rounds = "ten".into();
        assert!(create_request(&f).unwrap_err().starts_with("Rounds"));
        let mut f = form();
        f.tabular = false;
        f.labels = "cat".into();
        assert!(create_request(&f).unwrap_err().contains("two labels"));
    }
}
