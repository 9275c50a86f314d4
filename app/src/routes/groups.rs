//! `/groups`: create a federated training group, join one by its code, and see the groups this
//! browser tab created or joined.
//!
//! Kept thin on purpose: groups still authenticate with the owner and member tokens returned at
//! creation and joining (not accounts), and the server has no "my groups" list yet, so the list
//! here lives in memory for this tab only and the tokens are shown once to keep.

use leptos::prelude::*;
use serde_json::{Value, json};

use super::{form_error, show_errors};
use crate::api::{self, ApiError};
use crate::session::use_session;

/// A group this tab created (owner) or joined (member), with the token that opens it.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownGroup {
    pub group_id: i64,
    pub owner: bool,
    pub token: String,
    pub join_code: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct KnownGroups(RwSignal<Vec<KnownGroup>>);

impl KnownGroups {
    /// Called by the app shell, so the list survives moving between pages.
    pub fn provide() {
        provide_context(KnownGroups(RwSignal::new(Vec::new())));
    }

    fn add(&self, group: KnownGroup) {
        self.0.update(|list| {
            list.retain(|g| g.group_id != group.group_id || g.owner != group.owner);
            list.insert(0, group);
        });
    }
}

#[component]
pub fn Groups() -> impl IntoView {
    view! {
        <h1>"Training groups"</h1>
        <p class="muted">
            "A group trains one model together: each member trains on its own data in the "
            "browser, and only weight updates reach the server."
        </p>
        <div class="columns">
            <CreateGroup/>
            <JoinGroup/>
        </div>
        <YourGroups/>
    }
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
}

fn number<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{what}: enter a number (got “{}”)", text.trim()))
}

/// Splits a comma-separated line, trimming spaces and surrounding quotes.
fn split_line(line: &str) -> Vec<String> {
    line.split(',')
        .map(|cell| cell.trim().trim_matches('"').trim().to_string())
        .collect()
}

/// A column is numeric when every sample value in it is a number (or empty), categorical
/// otherwise; with a header and no rows, every column is numeric. Quoted commas are not
/// supported: the server's statistics phase sees the real files.
fn columns_from_sample(sample: &str) -> Vec<(String, &'static str)> {
    let mut lines = sample.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let names = split_line(header);
    let rows: Vec<Vec<String>> = lines.map(split_line).collect();
    names
        .into_iter()
        .enumerate()
        .filter(|(_, name)| !name.is_empty())
        .map(|(i, name)| {
            let numeric = rows.iter().all(|row| {
                row.get(i)
                    .is_none_or(|v| v.is_empty() || v.parse::<f64>().is_ok())
            });
            (name, if numeric { "numeric" } else { "categorical" })
        })
        .collect()
}

/// The `POST /api/groups` body for `form`, or what to fix, in words.
fn create_request(form: &GroupForm) -> Result<Value, String> {
    let name = form.name.trim();
    if name.is_empty() {
        return Err("Give the group a name.".into());
    }
    let model = if form.tabular {
        let columns = columns_from_sample(&form.csv_sample);
        if columns.is_empty() {
            return Err("Paste at least the header line of a sample of your CSV.".into());
        }
        let target = form.target.trim();
        if !columns.iter().any(|(c, _)| c == target) {
            return Err(format!(
                "The target column “{target}” is not in the CSV header."
            ));
        }
        let excluded: Vec<String> = form
            .exclude
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        let features: Vec<Value> = columns
            .iter()
            .filter(|(c, _)| c != target && !excluded.contains(c))
            .map(|(c, kind)| json!({ "name": c, "kind": kind }))
            .collect();
        json!({
            "kind": "tabular",
            "schema": {
                "features": features,
                "target": { "name": target, "task": form.task },
                "excluded": excluded
                    .iter()
                    .map(|c| json!({ "column": c, "reason": "user" }))
                    .collect::<Vec<_>>(),
            },
        })
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
        json!({ "kind": "image_cnn", "labels": labels })
    };
    let hyperparameters = json!({
        "rounds": number::<u32>("Rounds", &form.rounds)?,
        "local_epochs": number::<u32>("Local epochs", &form.local_epochs)?,
        "batch_size": number::<u32>("Batch size", &form.batch_size)?,
        "optimizer": form.optimizer,
        "lr": number::<f64>("Learning rate", &form.lr)?,
    });
    let strategy = match form.strategy.as_str() {
        "fedprox" => json!({
            "name": "fedprox",
            "proximal_mu": number::<f32>("Proximal term μ", &form.strategy_param)?,
        }),
        "fedtrimmedavg" => json!({
            "name": "fedtrimmedavg",
            "beta": number::<f32>("Fraction trimmed", &form.strategy_param)?,
        }),
        "krum" => json!({
            "name": "krum",
            "num_malicious": number::<usize>("Malicious members tolerated", &form.strategy_param)?,
        }),
        other => json!({ "name": other }),
    };
    Ok(json!({
        "name": name,
        "description": form.description.trim(),
        "model": model,
        "hyperparameters": hyperparameters,
        "strategy": strategy,
        "min_clients": number::<u32>("Minimum members per round", &form.min_clients)?,
    }))
}

/// The strategy's one required parameter: label and default value.
fn strategy_param(strategy: &str) -> Option<(&'static str, &'static str)> {
    match strategy {
        "fedprox" => Some(("Proximal term μ", "0.01")),
        "fedtrimmedavg" => Some(("Fraction trimmed at each end", "0.2")),
        "krum" => Some(("Malicious members tolerated", "1")),
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
    let known = expect_context::<KnownGroups>();
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

    let columns = Memo::new(move |_| {
        csv_sample.with(|s| {
            columns_from_sample(s)
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
        async move {
            let body = request.map_err(invalid)?;
            let created = api::create_group(&body).await?;
            known.add(KnownGroup {
                group_id: created.group_id,
                owner: true,
                token: created.owner_token.clone(),
                join_code: Some(created.join_code.clone()),
            });
            Ok(created)
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
        });
    };

    let tabular_fields = move || {
        view! {
            <label for="group-csv">"Sample of your CSV"</label>
            <textarea id="group-csv" rows="4" required aria-describedby="group-csv-help"
                placeholder="age,balance,country,exited\n42,1200.5,FR,0"
                bind:value=csv_sample></textarea>
            <p id="group-csv-help" class="hint">
                "The header line and, if you like, a few rows. Columns whose sample values are "
                "all numbers are used as numbers, the others as categories. Your data stays "
                "here: only the column names and kinds are sent."
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
            <form class="stack" on:submit=submit>
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
                </fieldset>

                {form_error("create-group-error", create.value())}
                <button type="submit" disabled=move || create.pending().get()>"Create group"</button>
            </form>
            {move || {
                create
                    .value()
                    .get()
                    .and_then(Result::ok)
                    .map(|c| {
                        view! {
                            <div class="one-time" role="status">
                                <p>
                                    <strong>{format!("Group {} created.", c.group_id)}</strong>
                                    " Invite members with the join code "
                                    <code class="big">{c.join_code.clone()}</code>
                                    "."
                                </p>
                                <label for="owner-token">"Owner token"</label>
                                <input id="owner-token" type="text" readonly
                                    value=c.owner_token.clone()/>
                                <p class="hint">
                                    "Keep this token: it is shown only once, and you need it to "
                                    "start training and manage the group."
                                </p>
                            </div>
                        }
                    })
            }}
        </section>
    }
}

#[component]
fn JoinGroup() -> impl IntoView {
    let known = expect_context::<KnownGroups>();
    let session = use_session();
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
        async move {
            let joined = api::join_group(&code, &name).await?;
            known.add(KnownGroup {
                group_id: joined.group_id,
                owner: false,
                token: joined.member_token.clone(),
                join_code: None,
            });
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
            <form class="stack" on:submit=submit>
                <label for="join-code">"Join code"</label>
                <input id="join-code" type="text" required autocomplete="off"
                    autocapitalize="characters" spellcheck="false" placeholder="ABCD234XYZ"
                    bind:value=code/>
                <label for="join-name">"Your name in the group"</label>
                <input id="join-name" type="text" required maxlength="200"
                    aria-describedby="join-name-help" bind:value=name/>
                <p id="join-name-help" class="hint">"Usually your site or organisation."</p>
                {form_error("join-group-error", join.value())}
                <button type="submit" disabled=move || join.pending().get()>"Join"</button>
            </form>
            {move || {
                join.value()
                    .get()
                    .and_then(Result::ok)
                    .map(|j| {
                        view! {
                            <div class="one-time" role="status">
                                <p>
                                    <strong>
                                        {format!(
                                            "You joined group {} as member {}.",
                                            j.group_id,
                                            j.member_id,
                                        )}
                                    </strong>
                                </p>
                                <label for="member-token">"Member token"</label>
                                <input id="member-token" type="text" readonly
                                    value=j.member_token.clone()/>
                                <p class="hint">
                                    "Keep this token: it is shown only once, and training from "
                                    "another tab or device needs it."
                                </p>
                            </div>
                        }
                    })
            }}
        </section>
    }
}

#[component]
fn YourGroups() -> impl IntoView {
    let known = expect_context::<KnownGroups>();
    view! {
        <section>
            <h2>"Your groups in this tab"</h2>
            {move || {
                let list = known.0.get();
                if list.is_empty() {
                    view! {
                        <p class="empty">
                            "None yet. Groups you create or join appear here while this tab is "
                            "open; the server does not list groups by account yet."
                        </p>
                    }
                        .into_any()
                } else {
                    view! {
                        <ul class="cards">
                            {list
                                .into_iter()
                                .map(|g| view! { <li><GroupStatusCard group=g/></li> })
                                .collect_view()}
                        </ul>
                    }
                        .into_any()
                }
            }}
        </section>
    }
}

#[component]
fn GroupStatusCard(group: KnownGroup) -> impl IntoView {
    let (id, token) = (group.group_id, group.token.clone());
    let reload = RwSignal::new(0u32);
    let status = LocalResource::new(move || {
        reload.track();
        let token = token.clone();
        async move { api::group_status(id, &token).await }
    });
    let role = if group.owner { "owner" } else { "member" };
    view! {
        <article class="card">
            <h3>{format!("Group {id}")} <span class="tag">{role}</span></h3>
            {group.join_code.map(|c| view! { <p>"Join code " <code>{c}</code></p> })}
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                <ErrorBoundary fallback=show_errors>
                    {move || Suspend::new(async move {
                        status
                            .await
                            .map(|s| {
                                let round = match (s.current_round, s.current_round_state) {
                                    (Some(n), Some(state)) => {
                                        format!("round {n} of {} ({state})", s.rounds)
                                    }
                                    _ => format!("{} rounds planned", s.rounds),
                                };
                                view! {
                                    <p><strong>{s.name}</strong></p>
                                    <p class="muted">
                                        {format!(
                                            "Phase: {} · {} member(s), {} ready · {round}",
                                            s.phase.replace('_', " "),
                                            s.members,
                                            s.ready_members,
                                        )}
                                    </p>
                                }
                            })
                    })}
                </ErrorBoundary>
            </Transition>
            <button type="button" class="secondary" on:click=move |_| reload.update(|n| *n += 1)>
                "Refresh"
            </button>
        </article>
    }
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
    fn column_kinds_come_from_the_sample_rows() {
        assert_eq!(
            columns_from_sample("a, \"b\" ,c\n1,x,\n2,3,4"),
            vec![
                ("a".into(), "numeric"),
                ("b".into(), "categorical"),
                ("c".into(), "numeric")
            ]
        );
        assert!(columns_from_sample("  \n").is_empty());
    }

    #[test]
    fn a_tabular_request_names_features_target_and_exclusions() {
        let body = create_request(&form()).unwrap();
        assert_eq!(
            body["model"]["schema"]["features"],
            json!([{"name": "age", "kind": "numeric"}, {"name": "country", "kind": "categorical"}])
        );
        assert_eq!(body["model"]["schema"]["target"]["name"], "exited");
        assert_eq!(body["model"]["schema"]["excluded"][0]["column"], "id");
        assert_eq!(body["hyperparameters"]["rounds"], 5);
        assert_eq!(body["strategy"], json!({"name": "fedavg"}));
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
