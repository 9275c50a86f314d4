//! `/models/{name}`: one deployed model. What it predicts and from which inputs (its package),
//! the version it serves and its metrics, each labelled with whose data they were computed on
//! (`crate::metrics`, `data-metric-source`), every version of its group with metrics by round
//! as charts, promote and roll back (the group's owner), who may use it — public, and the
//! partner sites allowed to embed it — and the embed snippet. A public model's page reads
//! without an account; its group's pages stay private.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;

use super::{form_error, show_errors};
use crate::api::{
    self, ApiError, DeploymentView, GroupExt, GroupView, Metrics, ModelPackage, Sharing,
    VersionView,
};
use crate::browser;
use crate::charts::{is_loss, is_quality, line_chart, metric_text, series_by_metric};
use crate::copy::CopyButton;
use crate::metrics::{MetricSource, labelled_metrics};
use crate::session::use_session;

#[derive(Debug, Clone, PartialEq)]
struct Detail {
    deployment: DeploymentView,
    versions: Vec<VersionView>,
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
            api::versions(deployment.group_id).await.unwrap_or_default(),
        )
    } else {
        (None, Vec::new())
    };
    Ok(Detail {
        deployment,
        versions,
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
    let predict = format!("/predict/{}", api::encode(&dep.name));
    let group_link = d.group.as_ref().map(|g| {
        let href = format!("/groups/{}", g.id);
        let name = g.name.clone();
        view! { " · trained by " <A href=href>{name}</A> }
    });
    let rows: Vec<(f64, Option<&Metrics>)> = d
        .versions
        .iter()
        .map(|v| (v.round as f64, v.metrics.as_ref()))
        .collect();
    // Versions of rounds carry the trainers' metrics (see `crate::metrics`).
    let prefix = format!("{} ", MetricSource::Training.short());
    let loss = series_by_metric(&rows, &prefix, is_loss);
    let quality = series_by_metric(&rows, &prefix, is_quality);
    let source = MetricSource::of_version(dep.round);
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
        {d.package.as_ref().map(about_model)}
        <section class="card" aria-labelledby="served-heading">
            <h2 id="served-heading">"How good is it?"</h2>
            {labelled_metrics("model-metrics", source, dep.metrics.as_ref())}
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
        {manage.then(|| view! { <SharingForm name=dep.name.clone()/> })}
        {(d.group.is_some()).then(|| view! { <Embed name=dep.name.clone()/> })}
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

#[component]
fn VersionTable(d: Detail, manage: bool, reload: RwSignal<u32>) -> impl IntoView {
    // Kept by the page across the reload that follows a change.
    let notice = expect_context::<Notice>().0;
    let session = use_session();
    let name = d.deployment.name.clone();
    let current = d.deployment.version_id;
    let history = d.deployment.history.clone();
    let promote = Action::new_local({
        let name = name.clone();
        move |version: &i64| {
            let (name, version) = (name.clone(), *version);
            async move {
                let r = api::promote(&session.csrf(), &name, version).await;
                if let Ok(d) = &r {
                    notice.set(Some(format!(
                        "Deployed: “{}” now serves version {}.",
                        d.name, d.version_id
                    )));
                    reload.update(|n| *n += 1);
                }
                r
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
        .map(|v| {
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
            view! {
                <tr data-version=id>
                    <td data-label="Version">{id}</td>
                    <td data-label="Round">{v.round}</td>
                    <td data-label="Metrics" data-metric-source=MetricSource::of_version(v.round).hook()>
                        {metric_text(v.metrics.as_ref())}
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
                                        promote.dispatch(id);
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
            {if d.versions.is_empty() {
                view! {
                    <p class="muted">"The versions are visible to the members of the model's group."</p>
                }
                .into_any()
            } else {
                view! {
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
                }
                .into_any()
            }}
            {form_error("promote-error", promote.value())}

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
