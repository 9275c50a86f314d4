//! `/`: what B3O Edge is, the public models to try in one click (`#public-models`, a card per
//! model with "Try it": `#try-{name}`), and whether the server answers (`#server-status`,
//! checked by e2e).

use leptos::prelude::*;
use leptos_router::components::A;

use super::models::what_it_predicts;
use crate::api::{self, ApiError, DeploymentView, ModelPackage};
use crate::session::use_session;

/// The public deployments, each with its package when it could be read (what it predicts).
async fn public_models() -> Result<Vec<(DeploymentView, Option<ModelPackage>)>, ApiError> {
    let mut out = Vec::new();
    for d in api::deployments().await?.into_iter().filter(|d| d.public) {
        let package = api::package(&d.name).await.ok();
        out.push((d, package));
    }
    Ok(out)
}

#[component]
pub fn Home() -> impl IntoView {
    let health = LocalResource::new(api::health);
    let session = use_session();
    // Once the app knows who calls (a reload with a one-time password must not ask).
    let models = LocalResource::new(move || {
        let ready = session.may_call();
        async move {
            if ready {
                public_models().await
            } else {
                Ok(Vec::new())
            }
        }
    });
    view! {
        <section class="hero">
            <h1>"Train together. Keep your data."</h1>
            <p>
                "B3O Edge lets organisations train one model across their sites without sharing a "
                "single row: training runs in your browser, only weight updates leave it. Deployed "
                "models predict on your CSVs and images right here, without code. "
                <A href="/how-it-works" attr:id="how-it-works-link">"How it works"</A>
            </p>
            {move || match session.user() {
                Some(user) => {
                    let greeting = if session.is_new_account() { "Welcome" } else { "Welcome back" };
                    view! {
                        <p class="welcome" id="welcome">
                            {format!("{greeting}, {}. ", user.display_name)}
                            <A href="/groups">"Open your groups"</A>
                            " or "
                            <A href="/models">"browse the models"</A>
                            "."
                        </p>
                    }
                    .into_any()
                }
                None => view! {
                    <p class="actions">
                        <A href="/sign-up" attr:class="button">"Create an account"</A>
                        <A href="/models">"Browse the models"</A>
                    </p>
                }
                .into_any(),
            }}
        </section>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match models.await {
                    Ok(list) if !list.is_empty() => view! {
                        <section aria-labelledby="try-heading" class="try">
                            <h2 id="try-heading">"Try a public model, no account needed"</h2>
                            <ul class="cards" id="public-models">
                                {list.into_iter().map(|(d, p)| view! { <li><TryCard d p/></li> }).collect_view()}
                            </ul>
                        </section>
                    }
                    .into_any(),
                    // No public model, or the list could not be read: the server status says why.
                    _ => ().into_any(),
                }
            })}
        </Transition>
        <section aria-live="polite" class="status">
            <Suspense fallback=|| view! { <p>"Checking the server…"</p> }>
                {move || {
                    health
                        .get()
                        .map(|result| match result {
                            Ok(h) => {
                                view! {
                                    <p id="server-status" data-status=api::check_name(h.status)>
                                        {format!("Server {} (version {})", api::check_name(h.status), h.version)}
                                    </p>
                                }
                                    .into_any()
                            }
                            Err(e) => {
                                view! {
                                    <p id="server-status" class="error" data-status="error">
                                        {e.to_string()}
                                    </p>
                                }
                                    .into_any()
                            }
                        })
                }}
            </Suspense>
        </section>
    }
}

#[component]
fn TryCard(d: DeploymentView, p: Option<ModelPackage>) -> impl IntoView {
    let predict = format!("/predict/{}", api::encode(&d.name));
    let detail = format!("/models/{}", api::encode(&d.name));
    let what = p
        .as_ref()
        .map(what_it_predicts)
        .unwrap_or_else(|| "A public model.".to_string());
    let (name, title, id) = (d.name.clone(), d.name.clone(), format!("try-{}", d.name));
    view! {
        <article class="card try-card" data-model=name>
            <h3>{title}</h3>
            <p>{what}</p>
            <p class="actions">
                <A href=predict attr:class="button" attr:id=id>
                    "Try it"
                </A>
                <A href=detail>"About this model"</A>
            </p>
        </article>
    }
}
