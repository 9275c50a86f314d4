//! `/sign-in`: email and password; too many failures are rate limited by the server.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

use super::form_error;
use crate::api;
use crate::session::use_session;

#[component]
pub fn SignIn() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());

    let login = Action::new_local(move |(email, password): &(String, String)| {
        let (email, password) = (email.clone(), password.clone());
        let navigate = navigate.clone();
        async move {
            let me = api::login(&email, &password).await?;
            session.signed_in(me);
            navigate("/", Default::default());
            Ok(())
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        login.dispatch((email.get_untracked(), password.get_untracked()));
    };

    view! {
        <section class="narrow">
            <h1>"Sign in"</h1>
            <p class="muted">"New here? " <A href="/sign-up">"Create an account"</A> "."</p>
            <form class="stack" on:submit=submit>
                <label for="email">"Email"</label>
                <input id="email" name="email" type="email" autocomplete="username" required
                    bind:value=email/>
                <label for="password">"Password"</label>
                <input id="password" name="password" type="password"
                    autocomplete="current-password" required bind:value=password/>
                {form_error("sign-in-error", login.value())}
                <button type="submit" disabled=move || login.pending().get()>
                    {move || if login.pending().get() { "Signing in…" } else { "Sign in" }}
                </button>
            </form>
            <p class="hint">
                "Forgot your password? Ask an administrator of this server to reset it."
            </p>
        </section>
    }
}
