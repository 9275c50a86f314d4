//! The app shell and its pages.

use leptos::prelude::*;

use crate::api;

#[component]
pub fn App() -> impl IntoView {
    view! {
        <header class="top">
            <a class="brand" href="/">"B3O Edge"</a>
        </header>
        <main>
            <Home/>
        </main>
    }
}

#[component]
fn Home() -> impl IntoView {
    let health = LocalResource::new(api::health);
    view! {
        <section class="hero">
            <h1>"Train together. Keep your data."</h1>
            <p>
                "B3O Edge lets organisations train one model across their sites without sharing a "
                "single row: training runs in your browser, only weight updates leave it. Deployed "
                "models predict on your CSVs and images right here, without code."
            </p>
        </section>
        <section aria-live="polite" class="status">
            <Suspense fallback=|| view! { <p>"Checking the server…"</p> }>
                {move || {
                    health
                        .get()
                        .map(|result| match result {
                            Ok(h) => {
                                view! {
                                    <p id="server-status" data-status=h.status.clone()>
                                        {format!("Server {} (version {})", h.status, h.version)}
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
