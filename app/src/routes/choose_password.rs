//! "Choose a new password": shown instead of every page while the signed-in account has a
//! one-time password (`must_change_password`: the generated first administrator's, or one an
//! administrator reset). The server refuses everything else until then (403
//! `password_change_required`), so the app asks for nothing else.

use leptos::prelude::*;

use super::form_error;
use crate::api;
use crate::session::use_session;

#[component]
pub fn ChooseNewPassword() -> impl IntoView {
    let session = use_session();
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let repeat = RwSignal::new(String::new());
    let change = Action::new_local(move |(current, new, repeat): &(String, String, String)| {
        let (current, new, repeat) = (current.clone(), new.clone(), repeat.clone());
        async move {
            if new != repeat {
                return Err(api::ApiError::Refused {
                    status: 400,
                    code: "bad_request".into(),
                    message: "the two new passwords differ; type the same one twice".into(),
                    retry_after: None,
                });
            }
            api::change_password(&session.csrf(), &current, &new).await?;
            // The account as the server now sees it (flag cleared).
            api::me().await
        }
    });
    // The app opens again once the action has finished: changing the session replaces this
    // form, which must not happen while the action it owns is still running.
    Effect::new(move |_| {
        if let Some(Ok(me)) = change.value().get() {
            match me {
                Some(me) => session.signed_in(me),
                None => session.signed_out(),
            }
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        change.dispatch((
            current.get_untracked(),
            new.get_untracked(),
            repeat.get_untracked(),
        ));
    };
    let email = move || session.user().map(|u| u.email).unwrap_or_default();
    view! {
        <section class="narrow" id="choose-password">
            <h1>"Choose a new password"</h1>
            <p>
                "You signed in as " <strong>{email}</strong> " with a one-time password. "
                "Choose your own password before you continue; nobody else will know it."
            </p>
            <form class="stack" on:submit=submit>
                <label for="one-time-current">"One-time password"</label>
                <input id="one-time-current" type="password" autocomplete="current-password"
                    required bind:value=current/>
                <label for="choose-new-password">"New password"</label>
                <input id="choose-new-password" type="password" autocomplete="new-password"
                    required minlength="8" maxlength="1024"
                    aria-describedby="choose-new-password-help" bind:value=new/>
                <label for="choose-repeat-password">"New password, again"</label>
                <input id="choose-repeat-password" type="password" autocomplete="new-password"
                    required minlength="8" maxlength="1024" bind:value=repeat/>
                <p id="choose-new-password-help" class="hint">
                    "At least 8 characters, not a common password, not your email address."
                </p>
                {form_error("choose-password-error", change.value())}
                <button type="submit" id="choose-password-submit"
                    disabled=move || change.pending().get()>
                    "Set my new password"
                </button>
            </form>
        </section>
    }
}
