//! `/models/{name}`: one deployed model. What it predicts and from which inputs (its package),
//! the version it serves and its metrics, each labelled with whose data they were computed on
//! (`crate::metrics`, `data-metric-source`), every version of its group with metrics by round
//! as charts, promote and roll back (the group's owner), who may use it — public, and the
//! partner sites allowed to embed it — and the embed snippet. A public model's page reads
//! without an account; its group's pages stay private.
//!
//! Federated evaluation (issue #17): each version's members' evaluation on their held-out
//! rows, per member and weighted by rows, beside the trainers' metrics; the deployment's
//! promotion gate (set by the owner, read by others); a promotion the gate refuses shows the
//! numbers and an explicit "Promote anyway" with a reason; the history lists every change,
//! overrides included, with who made it.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::{form_error, show_errors};
use crate::api::{
    self, ApiError, DeploymentAction, DeploymentEvent, DeploymentView, FederatedEvaluation,
    GateCheck, GroupExt, GroupView, Metrics, ModelPackage, Promote, PromoteRefusal, PromotionGate,
    Sharing, VersionDetail,
};
use crate::browser;
use crate::charts::{is_loss, is_quality, line_chart, metric_text, series_by_metric, short_number};
use crate::copy::CopyButton;
use crate::metrics::{MetricSource, labelled_metrics};
use crate::session::use_session;

#[derive(Debug, Clone, PartialEq)]
struct Detail {
    deployment: DeploymentView,
    /// With their federated evaluation.
    versions: Vec<VersionDetail>,
    /// The deployment's history (its group's members only), newest first.
    events: Vec<DeploymentEvent>,
    /// The group, when the caller may see it (its role decides who manages).
    group: Option<GroupView>,
    /// What clients download to run it: task, inputs, labels (absent if it cannot be read).
    package: Option<ModelPackage>,
}

async fn load(name: String, signed_in: bool) -> Result<Detail, ApiError> {
    let deployment = api::deployment(&name).await.map_err(|e| match e {
        // The same answer for a private model and a name that is not deployed.
        ApiError::Refused { status: 401, .. } => ApiError::Refused {
            status: 401,
            code: "unauthorized".into(),
            message: format!(
                "There is no public model named “{name}”. If it belongs to one of your groups, \
                 sign in to see it"
            ),
            retry_after: None,
        },
        e => e,
    })?;
    let package = api::package(&name).await.ok();
    // A visitor without an account reads a public model only: its group stays private.
    let (group, versions) = if signed_in {
        (
            api::group(deployment.group_id).await.ok(),
            api::version_details(deployment.group_id)
                .await
                .unwrap_or_default(),
        )
    } else {
        (None, Vec::new())
    };
    let events = if group.is_some() {
        api::deployment_events(&name).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(Detail {
        deployment,
        versions,
        events,
        group,
        package,
    })
}

/// The last change's confirmation (deploy, roll back), shown above the page.
#[derive(Debug, Clone, Copy)]
struct Notice(RwSignal<Option<String>>);

#[component]
pub fn ModelDetail() -> impl IntoView {
    let params = use_params_map();
    let name = Memo::new(move |_| params.with(|p| p.get("name")).unwrap_or_default());
    let reload = RwSignal::new(0u32);
    let session = use_session();
    let notice = Notice(RwSignal::new(None));
    provide_context(notice);
    let detail = LocalResource::new(move || {
        reload.track();
        load(name.get(), session.user().is_some())
    });
    view! {
        <p class="crumbs"><A href="/models">"Models"</A> " / "</p>
        {move || notice.0.get().map(|text| view! {
            <p class="ok toast" id="deploy-done" role="status">
                {text}
                " "
                <button type="button" class="link" aria-label="Dismiss"
                    on:click=move |_| notice.0.set(None)>"×"</button>
            </p>
        })}
        <Transition fallback=|| view! { <p>"Loading the model…"</p> }>
            <ErrorBoundary fallback=show_errors>
                {move || Suspend::new(async move {
                    detail.await.map(|d| view! { <DetailView d reload/> })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

#[component]
fn DetailView(d: Detail, reload: RwSignal<u32>) -> impl IntoView {
    let dep = d.deployment.clone();
    let manage = d.group.as_ref().is_some_and(GroupView::can_manage);
    // The Monitoring tab, for those who may see the group (`?tab=monitoring` opens it).
    let query = use_query_map();
    let monitoring = RwSignal::new(
        d.group.is_some()
            && query.with_untracked(|q| q.get("tab").as_deref() == Some("monitoring")),
    );
    let tabs = d.group.as_ref().map(|g| {
        let (name, package) = (dep.name.clone(), d.package.clone());
        // Who may send a check of its own data: an active member, or the group's owner.
        let member = matches!(g.role, Some(b3o_models::protocol::GroupRole::Owner | b3o_models::protocol::GroupRole::Member));
        let drifting = dep.drifting == Some(true);
        view! {
            <div class="tabs" role="tablist">
                <button type="button" role="tab" id="tab-overview"
                    aria-selected=move || (!monitoring.get()).to_string()
                    on:click=move |_| monitoring.set(false)>"Overview"</button>
                <button type="button" role="tab" id="tab-monitoring"
                    aria-selected=move || monitoring.get().to_string()
                    on:click=move |_| monitoring.set(true)>
                    "Monitoring"
                    {drifting.then(|| view! { " " <span class="tag drifting">"drifting"</span> })}
                </button>
            </div>
            {move || monitoring.get().then(|| view! {
                <super::monitoring::Monitoring name=name.clone() manage member package=package.clone()/>
            })}
        }
    });
    let predict = format!("/predict/{}", api::encode(&dep.name));
    let group_link = d.group.as_ref().map(|g| {
        let href = format!("/groups/{}", g.id);
        let name = g.name.clone();
        view! { " · trained by " <A href=href>{name}</A> }
    });
    let rows: Vec<(f64, Option<&Metrics>)> = d
        .versions
        .iter()
        .map(|v| (v.version.round as f64, v.version.metrics.as_ref()))
        .collect();
    // Versions of rounds carry the trainers' metrics (see `crate::metrics`).
    let prefix = format!("{} ", MetricSource::Training.short());
    let loss = series_by_metric(&rows, &prefix, is_loss);
    let quality = series_by_metric(&rows, &prefix, is_quality);
    let source = MetricSource::of_version(dep.round);
    let served_evaluation = d
        .versions
        .iter()
        .find(|v| v.version.id == dep.version_id)
        .map(|v| v.federated.clone())
        .filter(|f| f.num_members > 0);
    view! {
        <h1 id="model-name">
            {dep.name.clone()}
            {dep.public.then(|| view! { " " <span class="tag" id="model-public">"public"</span> })}
        </h1>
        <p class="muted">
            {format!(
                "Serves version {} (round {}) since {}",
                dep.version_id,
                dep.round,
                dep.updated_at.get(..10).unwrap_or(&dep.updated_at)
            )}
            {group_link}
        </p>
        {tabs}
        <div hidden=move || monitoring.get()>
        {d.package.as_ref().map(about_model)}
        <section class="card" aria-labelledby="served-heading">
            <h2 id="served-heading">"How good is it?"</h2>
            {labelled_metrics("model-metrics", source, dep.metrics.as_ref())}
            {served_evaluation.map(|f| view! {
                {labelled_metrics("model-federated-metrics", MetricSource::Evaluation, Some(&f.weighted))}
                <p class="hint" id="model-federated-count">{members_text(&f)}</p>
            })}
        </section>
        <p class="actions">
            <A href=predict attr:class="button" attr:id="predict-link">"Predict with this model"</A>
        </p>
        {(!d.versions.is_empty()).then(|| view! {
            <section class="card charts" aria-labelledby="metrics-heading">
                <h2 id="metrics-heading">"Metrics by round"</h2>
                <p class="hint metric-source" data-metric-source="training">
                    {MetricSource::Training.explanation()}
                </p>
                <div class="columns">
                    {line_chart("model-loss-chart".into(), "Training loss by round".into(), "round", loss)}
                    {line_chart("model-accuracy-chart".into(), "Training accuracy by round".into(), "round", quality)}
                </div>
            </section>
        })}
        {(!d.versions.is_empty()).then(|| view! { <VersionTable d=d.clone() manage reload/> })}
        {(!d.versions.is_empty()).then(|| member_evaluations(&d.versions))}
        {d.group.as_ref().filter(|g| g.member_id.is_some()).map(|g| {
            let versions: Vec<(i64, i64)> = d
                .versions
                .iter()
                .filter(|v| v.version.round > 0)
                .map(|v| (v.version.id, v.version.round))
                .collect();
            let images = g.model.kind() == b3o_models::protocol::ModelKind::ImageCnn;
            (!versions.is_empty()).then(|| view! { <ScoreVersion versions images reload/> })
        })}
        {(d.group.is_some() || dep.gate.is_some()).then(|| view! {
            <GateCard deployment=dep.clone() manage reload/>
        })}
        {(!d.events.is_empty()).then(|| history_list(&d.events))}
        {manage.then(|| view! { <SharingForm name=dep.name.clone()/> })}
        {(d.group.is_some()).then(|| view! { <Embed name=dep.name.clone()/> })}
        </div>
    }
}

/// What the model predicts and from which inputs, from its package: readable by anyone who
/// may use the model.
fn about_model(p: &ModelPackage) -> AnyView {
    let (columns, numeric) = api::package_columns(p);
    let inputs = (!columns.is_empty()).then(|| {
        let items = columns
            .iter()
            .map(|c| {
                let kind = if numeric.contains(c) {
                    "number"
                } else {
                    "category"
                };
                view! { <li><code>{c.clone()}</code> " " <span class="hint">{kind}</span></li> }
            })
            .collect_view();
        view! {
            <h3>"Inputs"</h3>
            <ul class="inputs" id="model-inputs">{items}</ul>
        }
    });
    let labels = (!p.spec.labels.is_empty()).then(|| {
        view! {
            <h3>"Labels it predicts"</h3>
            <p id="model-labels">{p.spec.labels.join(", ")}</p>
        }
    });
    view! {
        <section class="card" aria-labelledby="about-heading">
            <h2 id="about-heading">"What it predicts"</h2>
            <p id="model-what">{super::models::what_it_predicts(p)}</p>
            {inputs}
            {labels}
        </section>
    }
    .into_any()
}

/// "3 members, 120 rows": who the federated figure counts.
fn members_text(f: &FederatedEvaluation) -> String {
    let members = if f.num_members == 1 {
        "1 member".to_string()
    } else {
        format!("{} members", f.num_members)
    };
    format!(
        "{members}, {} held-out rows; each metric weighted by the rows of the members who \
         reported it",
        f.num_samples
    )
}

/// The gate's numbers in plain words, for the owner who must decide.
fn gate_check_text(c: &GateCheck) -> String {
    let better = if c.lower_is_better { "lower" } else { "higher" };
    let value = |v: Option<f64>, n: i64| match v {
        Some(v) => format!(
            "{} ({n} member{})",
            short_number(v),
            if n == 1 { "" } else { "s" }
        ),
        None => "not evaluated by any member".to_string(),
    };
    let drop = c.drop.map_or(String::new(), |d| {
        format!(" It is worse by {}.", short_number(d))
    });
    format!(
        "{} ({better} is better): version {} {}; version {} (deployed) {}. The gate allows a \
         drop of at most {}.{drop}",
        c.metric,
        c.candidate_version_id,
        value(c.candidate, c.candidate_members),
        c.deployed_version_id,
        value(c.deployed, c.deployed_members),
        short_number(c.max_drop),
    )
}

/// A refused promotion that the owner may push through: version, the gate's numbers, the
/// server's message.
#[derive(Debug, Clone, PartialEq)]
struct Refused {
    version: i64,
    check: GateCheck,
    message: String,
}

#[component]
fn VersionTable(d: Detail, manage: bool, reload: RwSignal<u32>) -> impl IntoView {
    // Kept by the page across the reload that follows a change.
    let notice = expect_context::<Notice>().0;
    let session = use_session();
    let name = d.deployment.name.clone();
    let current = d.deployment.version_id;
    let history = d.deployment.history.clone();
    let refused = RwSignal::new(None::<Refused>);
    let reason = RwSignal::new(String::new());
    // (version, Some(reason) to override the promotion gate).
    let promote = Action::new_local({
        let name = name.clone();
        move |(version, override_reason): &(i64, Option<String>)| {
            let (name, version) = (name.clone(), *version);
            let body = Promote {
                version_id: version,
                override_gate: override_reason.is_some(),
                reason: override_reason.clone().filter(|r| !r.trim().is_empty()),
            };
            async move {
                let r = api::promote_gated(&session.csrf(), &name, &body).await;
                match &r {
                    Ok(d) => {
                        refused.set(None);
                        notice.set(Some(format!(
                            "Deployed: “{}” now serves version {}{}.",
                            d.name,
                            d.version_id,
                            if body.override_gate {
                                ", past its promotion gate"
                            } else {
                                ""
                            }
                        )));
                        reload.update(|n| *n += 1);
                    }
                    Err(PromoteRefusal {
                        gate: Some(check),
                        error,
                    }) => refused.set(Some(Refused {
                        version,
                        check: check.clone(),
                        message: error.to_string(),
                    })),
                    Err(_) => refused.set(None),
                }
                r.map_err(|e| e.error)
            }
        }
    });
    let rollback = Action::new_local({
        let name = name.clone();
        move |_: &()| {
            let name = name.clone();
            async move {
                let r = api::rollback(&session.csrf(), &name).await;
                if let Ok(d) = &r {
                    notice.set(Some(format!(
                        "Rolled back: “{}” now serves version {}.",
                        d.name, d.version_id
                    )));
                    reload.update(|n| *n += 1);
                }
                r
            }
        }
    });
    let previous = history.get(1).copied();
    let rows = d
        .versions
        .iter()
        .rev()
        .map(|detail| {
            let v = &detail.version;
            let f = &detail.federated;
            let id = v.id;
            let state = if id == current {
                "serving"
            } else if history.contains(&id) {
                "served before"
            } else {
                ""
            };
            let label = format!("Deploy version {id} as {name}");
            let privacy = crate::routes::groups::privacy_text(v.privacy.as_ref());
            let evaluated = if f.num_members == 0 {
                "—".to_string()
            } else {
                format!(
                    "{} ({} member{})",
                    metric_text(Some(&f.weighted)),
                    f.num_members,
                    if f.num_members == 1 { "" } else { "s" }
                )
            };
            view! {
                <tr data-version=id>
                    <td data-label="Version">{id}</td>
                    <td data-label="Round">{v.round}</td>
                    <td data-label="Metrics" data-metric-source=MetricSource::of_version(v.round).hook()>
                        {metric_text(v.metrics.as_ref())}
                    </td>
                    <td data-label="Members' evaluation" class="version-federated"
                        data-metric-source=MetricSource::Evaluation.hook()
                        data-members=f.num_members>
                        {evaluated}
                    </td>
                    <td data-label="Privacy (ε, δ)" class="version-privacy" data-privacy=privacy.clone()
                        data-epsilon=v.privacy.map(|p| p.epsilon.to_string())>{privacy.clone()}</td>
                    <td data-label="State">{(!state.is_empty()).then(|| view! { <span class="tag">{state}</span> })}</td>
                    {manage.then(|| view! {
                        <td class="actions-cell">
                            {(id != current).then(|| view! {
                                <button type="button" class="secondary promote-version"
                                    data-version=id aria-label=label.clone()
                                    disabled=move || promote.pending().get()
                                    on:click=move |_| {
                                        promote.dispatch((id, None));
                                    }>
                                    "Deploy"
                                </button>
                            })}
                        </td>
                    })}
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="card" aria-labelledby="versions-heading">
            <h2 id="versions-heading">"Versions"</h2>
            <div class="table-wrap">
                <table id="model-versions" class="stack-on-mobile">
                    <thead>
                        <tr>
                            <th scope="col">"Version"</th>
                            <th scope="col">"Round"</th>
                            <th scope="col" data-metric-source="training">
                                "Metrics "
                                <span class="hint">"(training split; round 0: server test set)"</span>
                            </th>
                            <th scope="col" data-metric-source="evaluation">
                                <abbr title=MetricSource::Evaluation.explanation()>"Members' evaluation"</abbr>
                                " "
                                <span class="hint">"(held-out rows, weighted)"</span>
                            </th>
                            <th scope="col">
                                <abbr title="What the version cost each partner's privacy (differential privacy): ε, at δ">"Privacy (ε, δ)"</abbr>
                            </th>
                            <th scope="col">"State"</th>
                            {manage.then(|| view! {
                                <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                            })}
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
            {move || match (refused.get(), promote.value().get()) {
                (Some(r), _) => view! {
                    <div class="form-error gate-refusal" id="gate-refusal" role="alert"
                        data-version=r.version>
                        <p><strong>{format!("The promotion gate refused version {}.", r.version)}</strong></p>
                        <p id="gate-refusal-numbers">{gate_check_text(&r.check)}</p>
                        <p class="hint">{r.message.clone()}</p>
                        <label for="gate-override-reason">"Why deploy it anyway? (kept in the history)"</label>
                        <input type="text" id="gate-override-reason" maxlength="500" bind:value=reason/>
                        <p class="actions">
                            <button type="button" id="gate-override" class="danger"
                                disabled=move || promote.pending().get()
                                on:click=move |_| {
                                    promote.dispatch((r.version, Some(reason.get_untracked())));
                                }>
                                "Promote anyway"
                            </button>
                            " "
                            <button type="button" class="secondary" id="gate-override-cancel"
                                on:click=move |_| refused.set(None)>
                                "Cancel"
                            </button>
                        </p>
                    </div>
                }
                .into_any(),
                (None, Some(Err(e))) => view! {
                    <p id="promote-error" class="form-error" role="alert">{e.to_string()}</p>
                }
                .into_any(),
                _ => ().into_any(),
            }}

            {(manage && previous.is_some()).then(|| view! {
                <p>
                    <button type="button" id="rollback" class="secondary"
                        disabled=move || rollback.pending().get()
                        on:click=move |_| {
                            rollback.dispatch(());
                        }>
                        {format!("Roll back to version {}", previous.unwrap_or_default())}
                    </button>
                </p>
            })}
            {form_error("rollback-error", rollback.value())}

        </section>
    }
}

/// Each evaluated version's members' evaluation: a table of member, rows and each metric,
/// newest version first.
fn member_evaluations(versions: &[VersionDetail]) -> AnyView {
    let evaluated: Vec<&VersionDetail> = versions
        .iter()
        .rev()
        .filter(|v| !v.federated.members.is_empty())
        .collect();
    let tables = evaluated
        .iter()
        .map(|v| {
            let f = &v.federated;
            let names: Vec<String> = f
                .weighted
                .keys()
                .cloned()
                .collect();
            let head = names
                .iter()
                .map(|k| view! { <th scope="col">{crate::metrics::metric_name(k)}</th> })
                .collect_view();
            let rows = f
                .members
                .iter()
                .map(|m| {
                    let cells = names
                        .iter()
                        .map(|k| {
                            let text = m.metrics.get(k).map_or("—".to_string(), |v| short_number(*v));
                            view! { <td data-label=crate::metrics::metric_name(k)>{text}</td> }
                        })
                        .collect_view();
                    view! {
                        <tr data-member=m.member_id>
                            <td data-label="Member">{m.name.clone()}</td>
                            <td data-label="Rows">{m.num_samples}</td>
                            {cells}
                        </tr>
                    }
                })
                .collect_view();
            let weighted = names
                .iter()
                .map(|k| {
                    let text = f.weighted.get(k).map_or(String::new(), |v| short_number(*v));
                    view! { <td data-label=crate::metrics::metric_name(k)><strong>{text}</strong></td> }
                })
                .collect_view();
            let id = v.version.id;
            let newest = evaluated.first().is_some_and(|n| n.version.id == id);
            view! {
                <details class="version-evaluation" data-version=id open=newest>
                    <summary>{format!("Version {id} (round {}): {}", v.version.round, members_text(f))}</summary>
                    <div class="table-wrap">
                        <table class="stack-on-mobile member-evaluation" data-metric-source=MetricSource::Evaluation.hook()>
                            <thead><tr>
                                <th scope="col">"Member"</th>
                                <th scope="col">"Rows"</th>
                                {head}
                            </tr></thead>
                            <tbody>
                                {rows}
                                <tr class="weighted">
                                    <td data-label="Member"><strong>"Weighted by rows"</strong></td>
                                    <td data-label="Rows">{f.num_samples}</td>
                                    {weighted}
                                </tr>
                            </tbody>
                        </table>
                    </div>
                </details>
            }
        })
        .collect_view();
    view! {
        <section class="card" aria-labelledby="evaluation-heading" id="member-evaluations">
            <h2 id="evaluation-heading">"Members' evaluation"</h2>
            <p class="hint metric-source" data-metric-source=MetricSource::Evaluation.hook()>
                {MetricSource::Evaluation.explanation()}
                " Members evaluate each round's model in the training page, any version below \
                 (Evaluate a version on your data), or with "
                <code>"b3o client --evaluate-version <id>"</code>
                "."
            </p>
            {if evaluated.is_empty() {
                view! { <p class="muted">"No member has evaluated a version yet."</p> }.into_any()
            } else {
                tables.into_any()
            }}
        </section>
    }
    .into_any()
}

/// A member scores any version of its group on the rows of its own file held out from
/// training (in the browser's training worker; only the metrics and the row count leave).
#[component]
fn ScoreVersion(versions: Vec<(i64, i64)>, images: bool, reload: RwSignal<u32>) -> impl IntoView {
    use crate::engine::{TrainData, Training};
    use send_wrapper::SendWrapper;
    let session = use_session();
    // Success is told above the page, which reloads with the new evaluation.
    let notice = expect_context::<Notice>();
    let chosen = RwSignal::new(
        versions
            .last()
            .map(|(id, _)| id.to_string())
            .unwrap_or_default(),
    );
    let data = RwSignal::new(None::<SendWrapper<TrainData>>);
    let failure = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let file_input = crate::routes::groups::training::data_input(images);
    let score = move |_| {
        let Some(picked) = data.with_untracked(|d| d.as_ref().map(|w| (**w).clone())) else {
            failure.set(Some("Pick your file first.".into()));
            return;
        };
        let Ok(version_id) = chosen.get_untracked().parse::<i64>() else {
            return;
        };
        let csrf = session.csrf();
        busy.set(true);
        failure.set(None);
        leptos::task::spawn_local(async move {
            let kind = if images { "images" } else { "csv" };
            let result = match Training::spawn() {
                Ok(worker) => {
                    worker
                        .evaluate_version(version_id, kind, &picked, &csrf)
                        .await
                }
                Err(e) => Err(e),
            };
            busy.set(false);
            match result {
                Ok(s) => {
                    notice.0.set(Some(format!(
                        "Version {} (round {}) on your {} held-out rows: {}. Only these figures \
                         and the row count were sent.",
                        s.version_id,
                        s.round,
                        s.num_samples,
                        metric_text(Some(&s.metrics))
                    )));
                    reload.update(|n| *n += 1);
                }
                Err(e) => failure.set(Some(e.to_string())),
            }
        });
    };
    let what = if images {
        "a folder of images, one subfolder per class"
    } else {
        "your CSV file"
    };
    let accept = if images {
        "image/png,image/jpeg"
    } else {
        ".csv,.tsv,.txt,text/csv"
    };
    view! {
        <section class="card" aria-labelledby="score-heading" id="score-version">
            <h2 id="score-heading">"Evaluate a version on your data"</h2>
            <p class="hint">
                "Scores the version on the fifth of your rows that training holds out (never \
                 trained on), in this browser; only the metrics and the number of rows are \
                 sent, and they count in the members' evaluation above."
            </p>
            <div class="stack">
                <label for="score-version-id">"Version"</label>
                <select id="score-version-id" bind:value=chosen>
                    {versions.iter().rev().map(|(id, round)| view! {
                        <option value=id.to_string()>{format!("Version {id} (round {round})")}</option>
                    }).collect_view()}
                </select>
                <label for="score-file">{format!("Your local data: {what}")}</label>
                <input id="score-file" type="file" node_ref=file_input accept=accept
                    on:change=move |ev| {
                        match crate::routes::groups::training::picked_data(&ev, images) {
                            Ok(d) => data.set(Some(SendWrapper::new(d))),
                            Err(e) => {
                                data.set(None);
                                if !e.is_empty() {
                                    failure.set(Some(e));
                                }
                            }
                        }
                    }/>
                <button type="button" id="score-start" disabled=move || busy.get() on:click=score>
                    {move || if busy.get() { "Scoring…" } else { "Evaluate on my held-out rows" }}
                </button>
            </div>
            {move || failure.get().map(|text| view! {
                <p class="form-error" id="score-outcome" role="alert">{text}</p>
            })}
        </section>
    }
}

/// The deployment's promotion gate: the owner's form, or the rule read-only.
#[component]
fn GateCard(deployment: DeploymentView, manage: bool, reload: RwSignal<u32>) -> impl IntoView {
    let notice = expect_context::<Notice>().0;
    let session = use_session();
    let name = deployment.name.clone();
    let gate = deployment.gate.clone();
    let metric = RwSignal::new(
        gate.as_ref()
            .map_or_else(|| "accuracy".to_string(), |g| g.metric.clone()),
    );
    let max_drop = RwSignal::new(
        gate.as_ref()
            .map_or_else(|| "0.02".to_string(), |g| g.max_drop.to_string()),
    );
    let save = Action::new_local(move |set: &Option<(String, String)>| {
        let (name, set) = (name.clone(), set.clone());
        async move {
            let gate = match set {
                None => None,
                Some((metric, drop)) => {
                    let max_drop = drop
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|d| d.is_finite() && *d >= 0.0)
                        .ok_or_else(|| ApiError::Refused {
                            status: 400,
                            code: "bad_request".into(),
                            message: format!("“{}” is not a number of at least 0", drop.trim()),
                            retry_after: None,
                        })?;
                    Some(PromotionGate {
                        metric: metric.trim().to_string(),
                        max_drop,
                    })
                }
            };
            let removed = gate.is_none();
            let r = api::set_gate(&session.csrf(), &name, gate).await;
            if r.is_ok() {
                notice.set(Some(if removed {
                    "Promotion gate removed.".to_string()
                } else {
                    "Promotion gate saved.".to_string()
                }));
                reload.update(|n| *n += 1);
            }
            r
        }
    });
    let rule = match &gate {
        Some(g) => format!(
            "A new version is deployed only if its members' evaluation of {} ({} is better) is \
             at most {} worse than the deployed version's. A version no member evaluated is \
             refused; the owner may deploy a refused version anyway, which the history records.",
            g.metric,
            if api::lower_is_better(&g.metric) {
                "lower"
            } else {
                "higher"
            },
            short_number(g.max_drop)
        ),
        None => "No promotion gate: any version may be deployed.".to_string(),
    };
    let has_gate = gate.is_some();
    view! {
        <section class="card" aria-labelledby="gate-heading" id="promotion-gate">
            <h2 id="gate-heading">"Promotion gate"</h2>
            <p id="gate-rule" data-gate-metric=gate.as_ref().map(|g| g.metric.clone())>{rule}</p>
            {manage.then(|| view! {
                <form class="stack" on:submit=move |ev: leptos::ev::SubmitEvent| {
                    ev.prevent_default();
                    save.dispatch(Some((metric.get_untracked(), max_drop.get_untracked())));
                }>
                    <label for="gate-metric">"Metric"</label>
                    <input type="text" id="gate-metric" maxlength="64" required bind:value=metric
                        aria-describedby="gate-metric-help"/>
                    <p class="hint" id="gate-metric-help">
                        "As members report it, e.g. accuracy or loss. Lower is better for loss, mse, \
                         mae, rmse, log_loss and names ending in _loss; higher for the others."
                    </p>
                    <label for="gate-max-drop">"Largest drop allowed"</label>
                    <input type="text" inputmode="decimal" id="gate-max-drop" required bind:value=max_drop/>
                    {form_error("gate-error", save.value())}
                    <p class="actions">
                        <button type="submit" id="gate-save" disabled=move || save.pending().get()>
                            "Save gate"
                        </button>
                        " "
                        {has_gate.then(|| view! {
                            <button type="button" class="secondary" id="gate-remove"
                                disabled=move || save.pending().get()
                                on:click=move |_| {
                                    save.dispatch(None);
                                }>
                                "Remove gate"
                            </button>
                        })}
                    </p>
                </form>
            })}
        </section>
    }
}

/// Every change of the deployment, newest first, with who made it; overrides of the gate
/// stand out.
fn history_list(events: &[DeploymentEvent]) -> AnyView {
    let items = events
        .iter()
        .map(|e| {
            let what = match e.action {
                DeploymentAction::Promote => format!("Deployed version {}", e.version_id),
                DeploymentAction::Override => {
                    format!("Deployed version {} past the promotion gate", e.version_id)
                }
                DeploymentAction::Rollback => format!("Rolled back to version {}", e.version_id),
                DeploymentAction::Gate => "Changed the promotion gate".to_string(),
                DeploymentAction::Unknown => format!("Changed (version {})", e.version_id),
            };
            let by = e.by.clone().map(|b| format!(" by {b}")).unwrap_or_default();
            let when = e.at.get(..16).unwrap_or(&e.at).replace('T', " ");
            let class = if e.action == DeploymentAction::Override {
                "event override"
            } else {
                "event"
            };
            view! {
                <li class=class data-action=e.action.as_str() data-version=e.version_id>
                    {(e.action == DeploymentAction::Override).then(|| view! {
                        <span class="tag state-failed">"override"</span> " "
                    })}
                    <strong>{what}</strong>
                    {format!("{by}, {when} UTC")}
                    {e.note.clone().map(|n| view! { <br/><span class="hint">{n}</span> })}
                </li>
            }
        })
        .collect_view();
    view! {
        <section class="card" aria-labelledby="history-heading">
            <h2 id="history-heading">"History"</h2>
            <ul id="deployment-history" class="events">{items}</ul>
        </section>
    }
    .into_any()
}

/// `"https://shop.example.org/"` -> `Ok("https://shop.example.org")`; anything with a path,
/// query or other scheme is refused with a reason.
pub fn normalise_origin(text: &str) -> Result<String, String> {
    let t = text.trim().trim_end_matches('/');
    let rest = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
        .ok_or_else(|| format!("“{t}” must start with https:// (or http://)"))?;
    if rest.is_empty()
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    {
        return Err(format!(
            "“{t}” is not an origin: write only the scheme, host and port, e.g. https://shop.example.org"
        ));
    }
    Ok(t.to_ascii_lowercase())
}

/// What the sharing settings mean, in plain words: who runs the model, where.
pub fn sharing_summary(public: bool, embed_anywhere: bool, sites: usize) -> String {
    let listed = match sites {
        0 => "no other site".to_string(),
        1 => "the 1 partner site listed below".to_string(),
        n => format!("the {n} partner sites listed below"),
    };
    match (public, embed_anywhere) {
        (false, _) if sites == 0 => "Private: only the members of its group can run it, in this \
             app and through the API. No other site can embed it."
            .to_string(),
        (false, _) => format!(
            "Private: the members of its group can run it in this app and through the API; \
             visitors of {listed} can run it without an account, only through the widget on \
             that site's pages. Nobody else."
        ),
        (true, true) => "Public: anyone can run it in this app and through the API, without an \
             account, and any site can embed it with the widget."
            .to_string(),
        (true, false) => format!(
            "Public: anyone can run it in this app and through the API, without an account; \
             only {listed} can embed it with the widget."
        ),
    }
}

#[component]
fn SharingForm(name: String) -> impl IntoView {
    let session = use_session();
    let current = LocalResource::new({
        let name = name.clone();
        move || {
            let name = name.clone();
            async move { api::sharing(&name).await }
        }
    });
    let public = RwSignal::new(false);
    let anywhere = RwSignal::new(false);
    let origins = RwSignal::new(String::new());
    Effect::new(move |_| {
        if let Some(Ok(s)) = current.get() {
            public.set(s.public);
            anywhere.set(s.embed_anywhere);
            origins.set(s.allowed_origins.join("\n"));
        }
    });
    let save = Action::new_local(move |(public, anywhere, text): &(bool, bool, String)| {
        let (public, anywhere, text) = (*public, *anywhere, text.clone());
        let name = name.clone();
        async move {
            let allowed_origins = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(normalise_origin)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|message| ApiError::Refused {
                    status: 400,
                    code: "bad_request".into(),
                    message,
                    retry_after: None,
                })?;
            api::set_sharing(
                &session.csrf(),
                &name,
                &Sharing {
                    public,
                    allowed_origins,
                    // Any site: public models only (the server refuses it for private ones).
                    embed_anywhere: public && anywhere,
                },
            )
            .await
        }
    });
    let sites = move || origins.with(|t| t.lines().filter(|l| !l.trim().is_empty()).count());
    view! {
        <section class="card" aria-labelledby="sharing-heading">
            <h2 id="sharing-heading">"Who may use this model"</h2>
            {move || current.get().and_then(Result::err).map(|e| view! {
                <p class="form-error" role="alert">{e.to_string()}</p>
            })}
            <form class="stack" on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                save.dispatch((public.get_untracked(), anywhere.get_untracked(), origins.get_untracked()));
            }>
                <label class="choice">
                    <input type="checkbox" id="share-public" bind:checked=public/>
                    "Public: anyone may run it in this app and through the API, without an account"
                </label>
                <fieldset class="choices" id="share-embed" disabled=move || !public.get()>
                    <legend>"Which sites may embed it (public models)"</legend>
                    <label class="choice">
                        <input type="radio" name="share-embed" id="embed-listed"
                            prop:checked=move || !anywhere.get()
                            on:change=move |_| anywhere.set(false)/>
                        "Only the partner sites listed below"
                    </label>
                    <label class="choice">
                        <input type="radio" name="share-embed" id="embed-anywhere"
                            prop:checked=move || anywhere.get()
                            on:change=move |_| anywhere.set(true)/>
                        "Any site"
                    </label>
                </fieldset>
                <label for="share-origins">"Partner sites allowed to embed it"</label>
                <textarea id="share-origins" rows="3" aria-describedby="share-origins-help"
                    placeholder="https://shop.example.org" bind:value=origins></textarea>
                <p class="hint" id="share-origins-help">
                    "One origin per line (scheme, host and port). Pages of these sites can run "
                    "the model in their visitors' browsers with the embed widget below, even "
                    "when it is private: their visitors need no account. The site is told by the "
                    "visitor's browser; a program can pretend to be a listed site, so a private "
                    "model listed here is kept off other sites and out of this app, but it is "
                    "not secret."
                </p>
                <p id="sharing-summary" role="status">
                    {move || sharing_summary(public.get(), anywhere.get(), sites())}
                </p>
                {form_error("sharing-error", save.value())}
                {move || save.value().get().and_then(Result::ok).map(|_| view! {
                    <p class="ok" id="sharing-saved" role="status">"Saved."</p>
                })}
                <button type="submit" id="share-save" disabled=move || save.pending().get()>
                    "Save"
                </button>
            </form>
        </section>
    }
}

#[component]
fn Embed(name: String) -> impl IntoView {
    let origin = browser::origin();
    let snippet = format!(
        "<script src=\"{origin}/embed.js\" async></script>\n<b3o-predict model=\"{name}\" server=\"{origin}\"></b3o-predict>"
    );
    view! {
        <section class="card" aria-labelledby="embed-heading">
            <h2 id="embed-heading">"Embed it on a partner site"</h2>
            <p class="muted">
                "Paste this in a page of a site allowed above: its visitors pick a file and get "
                "predictions computed in their own browser."
            </p>
            <label for="embed-snippet">"HTML snippet"</label>
            <textarea id="embed-snippet" rows="3" readonly>{snippet.clone()}</textarea>
            <CopyButton id="copy-embed" text=snippet what="the HTML snippet"/>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_and_normalised() {
        assert_eq!(
            normalise_origin(" https://Shop.Example.org/ ").unwrap(),
            "https://shop.example.org"
        );
        assert_eq!(
            normalise_origin("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(normalise_origin("shop.example.org").is_err());
        assert!(normalise_origin("https://a.org/path").is_err());
        assert!(normalise_origin("https://").is_err());
    }

    #[test]
    fn the_sharing_summary_says_who_runs_it_where() {
        let private = sharing_summary(false, false, 0);
        assert!(private.starts_with("Private") && private.contains("No other site"));
        let partner = sharing_summary(false, false, 1);
        assert!(partner.contains("the 1 partner site") && partner.contains("without an account"));
        // `embed_anywhere` means nothing for a private model.
        assert_eq!(
            sharing_summary(false, true, 2),
            sharing_summary(false, false, 2)
        );
        assert!(sharing_summary(true, true, 0).contains("any site can embed it"));
        let limited = sharing_summary(true, false, 2);
        assert!(limited.contains("only the 2 partner sites"), "{limited}");
    }
}
