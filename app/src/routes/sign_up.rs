//! `/sign-up`: create an account; the server signs it in at once.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

use super::form_error;
use crate::api::{self, Register};
use crate::session::use_session;

#[component]
pub fn SignUp() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let email = RwSignal::new(String::new());
    let display_name = RwSignal::new(String::new());
    let organisation = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());

    let register = Action::new_local(move |body: &Register| {
        let body = body.clone();
        let navigate = navigate.clone();
        async move {
            let me = api::register(&body).await?;
            session.registered(me);
            navigate("/", Default::default());
            Ok(())
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        register.dispatch(Register {
            email: email.get_untracked(),
            display_name: display_name.get_untracked(),
            organisation: organisation.get_untracked(),
            password: password.get_untracked(),
        });
    };

    view! {
        <section class="narrow">
            <h1>"Create your account"</h1>
            <p class="muted">
                "Already have one? " <A href="/sign-in">"Sign in"</A> "."
            </p>
            <form class="stack" on:submit=submit>
                <label for="email">"Email"</label>
                <input id="email" name="email" type="email" autocomplete="email" required
                    bind:value=email/>
                <label for="display-name">"Display name"</label>
                <input id="display-name" name="display_name" type="text" autocomplete="name"
                    required maxlength="100" bind:value=display_name
                    aria-describedby="display-name-help"/>
                <p id="display-name-help" class="hint">
                    "How other members of your training groups see you."
                </p>
                <label for="organisation">"Organisation"</label>
                <input id="organisation" name="organisation" type="text"
                    autocomplete="organization" required maxlength="200" bind:value=organisation/>
                <label for="password">"Password"</label>
                <input id="password" name="password" type="password" autocomplete="new-password"
                    required minlength="8" maxlength="1024" bind:value=password
                    aria-describedby="password-help"/>
                <p id="password-help" class="hint">
                    "At least 8 characters; a long passphrase is best. It may not be one of the "
                    "most common passwords, nor your email address."
                </p>
                {form_error("sign-up-error", register.value())}
                <button type="submit" disabled=move || register.pending().get()>
                    {move || if register.pending().get() { "Creating…" } else { "Create account" }}
                </button>
            </form>
        </section>
    }
}
