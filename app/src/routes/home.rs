//! `/`: what B3O Edge is, and whether the server answers (`#server-status`, checked by e2e).

use leptos::prelude::*;
use leptos_router::components::A;

use crate::api;
use crate::session::use_session;

#[component]
pub fn Home() -> impl IntoView {
    let health = LocalResource::new(api::health);
    let session = use_session();
    view! {
        <section class="hero">
            <h1>"Train together. Keep your data."</h1>
            <p>
                "B3O Edge lets organisations train one model across their sites without sharing a "
                "single row: training runs in your browser, only weight updates leave it. Deployed "
                "models predict on your CSVs and images right here, without code."
            </p>
            {move || match session.user() {
                Some(user) => view! {
                    <p class="welcome">
                        {format!("Welcome back, {}. ", user.display_name)}
                        <A href="/groups">"Open your groups"</A>
                        " or "
                        <A href="/models">"browse the models"</A>
                        "."
                    </p>
                }
                .into_any(),
                None => view! {
                    <p class="actions">
                        <A href="/sign-up" attr:class="button">"Create an account"</A>
                        <A href="/models">"Browse the models"</A>
                    </p>
                }
                .into_any(),
            }}
        </section>
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
