//! `/models`: the catalogue of deployed models the account may use (`GET /api/deployments`:
//! those of its groups), each linking to its page (`/models/{name}`) and to prediction.

use leptos::prelude::*;
use leptos_router::components::A;

use super::show_errors;
use crate::api::{self, DeploymentView, Metrics};

#[component]
pub fn Models() -> impl IntoView {
    let deployments = LocalResource::new(api::deployments);
    view! {
        <h1>"Models"</h1>
        <p class="muted">
            "Models trained by federated groups and promoted to a deployment. Each name points "
            "at one version of a group's global model."
        </p>
        <Transition fallback=|| view! { <p>"Loading the models…"</p> }>
            <ErrorBoundary fallback=show_errors>
                {move || Suspend::new(async move {
                    match deployments.await {
                        Err(e) if e.status() == Some(401) => Ok(view! {
                            <p class="empty">
                                <A href="/sign-in">"Sign in"</A>
                                " to see the models of your groups. A public model opens from "
                                "its link, e.g. /predict/churn."
                            </p>
                        }
                        .into_any()),
                        other => other.map(catalogue),
                    }
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
    let metrics = metric_rows(d.metrics.as_ref());
    let previous = d.history.len().saturating_sub(1);
    let detail = format!("/models/{}", api::encode(&d.name));
    let predict = format!("/predict/{}", api::encode(&d.name));
    view! {
        <article class="card">
            <h2><A href=detail>{d.name.clone()}</A></h2>
            <p class="muted">
                {format!(
                    "Version {} · group {} · round {} · updated {}",
                    d.version_id,
                    d.group_id,
                    d.round,
                    d.updated_at.get(..10).unwrap_or(&d.updated_at),
                )}
            </p>
            {if metrics.is_empty() {
                view! { <p class="muted">"No metrics reported for this version."</p> }.into_any()
            } else {
                view! {
                    <dl class="metrics">
                        {metrics
                            .into_iter()
                            .map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> })
                            .collect_view()}
                    </dl>
                }
                    .into_any()
            }}
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

/// Metrics as (name, value) rows, numbers rounded.
fn metric_rows(metrics: Option<&Metrics>) -> Vec<(String, String)> {
    metrics
        .into_iter()
        .flatten()
        .map(|(k, &x)| {
            let shown = if x.fract() == 0.0 && x.abs() < 1e12 {
                format!("{x:.0}")
            } else {
                format!("{x:.4}")
            };
            (k.replace('_', " "), shown)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_listed_and_rounded() {
        let m: Metrics = [("accuracy", 0.912345), ("num_examples", 120.0)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        assert_eq!(
            metric_rows(Some(&m)),
            vec![
                ("accuracy".to_string(), "0.9123".to_string()),
                ("num examples".to_string(), "120".to_string()),
            ]
        );
        assert!(metric_rows(None).is_empty());
    }
}
