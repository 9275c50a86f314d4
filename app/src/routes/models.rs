//! `/models`: the catalogue of deployed models the visitor may use (`GET /api/deployments`:
//! the public ones for everyone, plus those of a signed-in account's groups), each linking to
//! its page (`/models/{name}`) and to prediction.

use leptos::prelude::*;
use leptos_router::components::A;

use super::show_errors;
use b3o_models::Task;

use crate::api::{self, DeploymentView, ModelPackage};
use crate::metrics::{MetricSource, labelled_metrics};
use crate::session::use_session;

#[component]
pub fn Models() -> impl IntoView {
    let session = use_session();
    // Signing in or out changes the list (groups' private models).
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
    view! {
        <h1>"Models"</h1>
        <p class="muted">
            "Models trained by federated groups and promoted to a deployment. Each name points "
            "at one version of a group's global model. Public models are open to everyone, "
            "no account needed."
        </p>
        {move || session.user().is_none().then(|| view! {
            <p class="hint" id="models-sign-in">
                <A href="/sign-in">"Sign in"</A>
                " to see your groups' models too."
            </p>
        })}
        <Transition fallback=|| view! { <p>"Loading the models…"</p> }>
            <ErrorBoundary fallback=show_errors>
                {move || Suspend::new(async move {
                    deployments.await.map(catalogue)
                })}
            </ErrorBoundary>
        </Transition>
    }
}

fn catalogue(list: Vec<DeploymentView>) -> AnyView {
    if list.is_empty() {
        return view! {
            <div class="empty" id="models-empty">
                <p><strong>"No model is deployed yet."</strong></p>
                <p>
                    "When a training group finishes a round, its owner can promote that version "
                    "under a name; it then appears here. "
                    <A href="/groups">"Start or join a group"</A>
                    " to train one."
                </p>
            </div>
        }
        .into_any();
    }
    view! {
        <ul class="cards" id="models">
            {list.into_iter().map(|d| view! { <li><ModelCard d=d/></li> }).collect_view()}
        </ul>
    }
    .into_any()
}

#[component]
fn ModelCard(d: DeploymentView) -> impl IntoView {
    let previous = d.history.len().saturating_sub(1);
    let detail = format!("/models/{}", api::encode(&d.name));
    let predict = format!("/predict/{}", api::encode(&d.name));
    let source = MetricSource::of_version(d.round);
    let name = d.name.clone();
    let title = d.name.clone();
    view! {
        <article class="card" data-model=name>
            <h2>
                <A href=detail>{title}</A>
                {d.public.then(|| view! { " " <span class="tag">"public"</span> })}
                {(d.drifting == Some(true)).then(|| view! {
                    " " <span class="tag drifting" data-drifting="true"
                        title="Its recent inputs differ from its training data (see its Monitoring tab)">"drifting"</span>
                })}
            </h2>
            <p class="muted">
                {format!(
                    "Version {} · round {} · updated {}",
                    d.version_id,
                    d.round,
                    d.updated_at.get(..10).unwrap_or(&d.updated_at),
                )}
            </p>
            {labelled_metrics("", source, d.metrics.as_ref())}
            <p>
                <A href=predict attr:class="button">
                    "Predict"
                </A>
            </p>
            {(previous > 0)
                .then(|| view! { <p class="hint">{format!("{previous} earlier version(s) deployed under this name.")}</p> })}
        </article>
    }
}

/// What a model predicts, from its package, in one sentence for people.
pub fn what_it_predicts(p: &ModelPackage) -> String {
    let labels = &p.spec.labels;
    let classes = if labels.is_empty() {
        String::new()
    } else if labels.len() <= 12 {
        format!(": one of {}", labels.join(", "))
    } else {
        format!(": one of {} classes", labels.len())
    };
    match api::package_target(p) {
        Some(target) => {
            let (columns, _) = api::package_columns(p);
            let what = match p.spec.task {
                Task::Regression => format!("Predicts the number “{target}”"),
                _ => format!("Predicts “{target}”{classes}"),
            };
            format!("{what}, from {} columns of a table (CSV).", columns.len())
        }
        None => format!("Recognises images{classes}."),
    }
}
