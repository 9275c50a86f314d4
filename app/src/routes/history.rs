//! `/history`: a placeholder saying what training history the server already records.

use leptos::prelude::*;
use leptos_router::components::A;

#[component]
pub fn History() -> impl IntoView {
    view! {
        <h1>"Training history"</h1>
        <p>
            "This page will show how your groups' models improved round after round. The "
            "server already records everything it needs; the charts come next."
        </p>
        <section class="card">
            <h2>"What the server keeps"</h2>
            <dl class="api-list">
                <dt>"Rounds of a group"</dt>
                <dd>
                    "Each round's state, who was selected, who sent an update or failed, and the "
                    "aggregated evaluation: " <code>"GET /api/groups/{id}/rounds"</code> "."
                </dd>
                <dt>"Model versions"</dt>
                <dd>
                    "Every round's global model with its metrics, size, parent version and "
                    "contributors: " <code>"GET /api/groups/{id}/versions"</code> "."
                </dd>
                <dt>"Deployments"</dt>
                <dd>
                    "Which version each deployed name points at and what it pointed at before: "
                    <code>"GET /api/deployments"</code> " (see " <A href="/models">"Models"</A> ")."
                </dd>
                <dt>"Live events"</dt>
                <dd>
                    "Rounds opening and closing, members joining, as they happen: "
                    <code>"GET /api/groups/{id}/events"</code> " (server-sent events)."
                </dd>
            </dl>
            <p class="hint">
                "Group data needs the group's owner or member token, shown when you create or "
                "join a group on the " <A href="/groups">"Groups"</A> " page."
            </p>
        </section>
    }
}
