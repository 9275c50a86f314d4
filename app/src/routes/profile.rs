//! `/profile`: the signed-in account's name and organisation, its password, and its API tokens
//! (for programs: `Authorization: Bearer b3o_…`).

use leptos::prelude::*;
use leptos_router::components::A;

use super::{form_error, show_errors};
use crate::api::{self, CreatedToken, TokenView};
use crate::session::{SessionState, use_session};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Checking,
    SignedOut,
    SignedIn,
}

#[component]
pub fn Profile() -> impl IntoView {
    let session = use_session();
    // Only a change of *whether* someone is signed in re-renders the page; editing the name
    // must not reset the forms below.
    let gate = Memo::new(move |_| match session.state() {
        SessionState::Checking => Gate::Checking,
        SessionState::SignedOut => Gate::SignedOut,
        SessionState::SignedIn(_) => Gate::SignedIn,
    });
    move || match gate.get() {
        Gate::Checking => view! { <p>"Loading your profile…"</p> }.into_any(),
        Gate::SignedOut => view! {
            <section class="narrow">
                <h1>"Your profile"</h1>
                <p>
                    <A href="/sign-in">"Sign in"</A>
                    " to see and edit your profile, or "
                    <A href="/sign-up">"create an account"</A>
                    "."
                </p>
            </section>
        }
        .into_any(),
        Gate::SignedIn => view! {
            <h1>"Your profile"</h1>
            <div class="columns">
                <ProfileForm/>
                <PasswordForm/>
            </div>
            <Tokens/>
        }
        .into_any(),
    }
}

#[component]
fn ProfileForm() -> impl IntoView {
    let session = use_session();
    let user = session.user();
    let email = user.as_ref().map(|u| u.email.clone()).unwrap_or_default();
    let display_name = RwSignal::new(
        user.as_ref()
            .map(|u| u.display_name.clone())
            .unwrap_or_default(),
    );
    let organisation = RwSignal::new(
        user.as_ref()
            .map(|u| u.organisation.clone())
            .unwrap_or_default(),
    );
    let save = Action::new_local(move |(name, org): &(String, String)| {
        let (name, org) = (name.clone(), org.clone());
        async move {
            let user = api::update_profile(&session.csrf(), &name, &org).await?;
            session.update_user(user);
            Ok(())
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        save.dispatch((display_name.get_untracked(), organisation.get_untracked()));
    };
    view! {
        <section class="card">
            <h2>"Profile"</h2>
            <p class="muted">"Signed in as " <strong>{email}</strong></p>
            <form class="stack" on:submit=submit>
                <label for="profile-display-name">"Display name"</label>
                <input id="profile-display-name" type="text" autocomplete="name" required
                    maxlength="100" bind:value=display_name/>
                <label for="profile-organisation">"Organisation"</label>
                <input id="profile-organisation" type="text" autocomplete="organization" required
                    maxlength="200" bind:value=organisation/>
                {form_error("profile-error", save.value())}
                {move || {
                    matches!(save.value().get(), Some(Ok(())))
                        .then(|| view! { <p class="ok" role="status">"Saved."</p> })
                }}
                <button type="submit" disabled=move || save.pending().get()>"Save"</button>
            </form>
        </section>
    }
}

#[component]
fn PasswordForm() -> impl IntoView {
    let session = use_session();
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let change = Action::new_local(move |(current, new): &(String, String)| {
        let (current, new) = (current.clone(), new.clone());
        async move { api::change_password(&session.csrf(), &current, &new).await }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        change.dispatch((current.get_untracked(), new.get_untracked()));
    };
    // Clear the fields once the change went through.
    Effect::new(move |_| {
        if matches!(change.value().get(), Some(Ok(_))) {
            current.set(String::new());
            new.set(String::new());
        }
    });
    view! {
        <section class="card">
            <h2>"Change password"</h2>
            <form class="stack" on:submit=submit>
                <label for="current-password">"Current password"</label>
                <input id="current-password" type="password" autocomplete="current-password"
                    required bind:value=current/>
                <label for="new-password">"New password"</label>
                <input id="new-password" type="password" autocomplete="new-password" required
                    minlength="8" maxlength="1024" aria-describedby="new-password-help"
                    bind:value=new/>
                <p id="new-password-help" class="hint">
                    "At least 8 characters, not a common password, not your email address. "
                    "Your other sessions are signed out."
                </p>
                {form_error("password-error", change.value())}
                {move || {
                    change
                        .value()
                        .get()
                        .and_then(Result::ok)
                        .map(|done| {
                            let others = match done.revoked_sessions {
                                0 => String::new(),
                                1 => " One other session was signed out.".into(),
                                n => format!(" {n} other sessions were signed out."),
                            };
                            view! {
                                <p class="ok" role="status">{format!("Password changed.{others}")}</p>
                            }
                        })
                }}
                <button type="submit" disabled=move || change.pending().get()>
                    "Change password"
                </button>
            </form>
        </section>
    }
}

#[component]
fn Tokens() -> impl IntoView {
    let session = use_session();
    let reload = RwSignal::new(0u32);
    let tokens = LocalResource::new(move || {
        reload.track();
        api::tokens()
    });
    let name = RwSignal::new(String::new());
    let days = RwSignal::new(String::new());
    let create = Action::new_local(move |(name, days): &(String, String)| {
        let name = name.clone();
        let days = days.trim().to_string();
        async move {
            let days = if days.is_empty() {
                None
            } else {
                Some(days.parse::<u32>().map_err(|_| api::ApiError::Refused {
                    status: 400,
                    code: "bad_request".into(),
                    message: "expiry: a whole number of days, or empty for no expiry".into(),
                    retry_after: None,
                })?)
            };
            let created = api::create_token(&session.csrf(), &name, days).await?;
            reload.update(|n| *n += 1);
            Ok(created)
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        create.dispatch((name.get_untracked(), days.get_untracked()));
    };
    Effect::new(move |_| {
        if matches!(create.value().get(), Some(Ok(_))) {
            name.set(String::new());
        }
    });
    let revoke = Action::new_local(move |id: &i64| {
        let id = *id;
        async move {
            api::revoke_token(&session.csrf(), id).await?;
            reload.update(|n| *n += 1);
            Ok(())
        }
    });

    view! {
        <section class="card">
            <h2>"API tokens"</h2>
            <p class="muted">
                "Programs and scripts use a token instead of your password: they send "
                <code>"Authorization: Bearer <token>"</code>
                ". A token acts as you until you revoke it. Every call is described in the "
                <a href="/api/docs" rel="external" id="api-docs-link">"API reference"</a>
                " (try calls from your browser), also as an "
                <a href="/api/openapi.json" rel="external">"OpenAPI document"</a>
                "."
            </p>
            <form class="inline" on:submit=submit>
                <div>
                    <label for="token-name">"Token name"</label>
                    <input id="token-name" type="text" required maxlength="100"
                        placeholder="e.g. nightly export" bind:value=name/>
                </div>
                <div>
                    <label for="token-days">"Expires after (days, optional)"</label>
                    <input id="token-days" type="number" min="1" inputmode="numeric"
                        bind:value=days/>
                </div>
                <button type="submit" disabled=move || create.pending().get()>"Create token"</button>
            </form>
            {form_error("token-error", create.value())}
            {move || create.value().get().and_then(Result::ok).map(|c| view! { <NewToken created=c/> })}
            <h3>"Your tokens"</h3>
            <Transition fallback=|| view! { <p>"Loading tokens…"</p> }>
                <ErrorBoundary fallback=show_errors>
                    {move || Suspend::new(async move {
                        tokens.await.map(|list| token_list(list, revoke))
                    })}
                </ErrorBoundary>
            </Transition>
            {form_error("revoke-error", revoke.value())}
        </section>
    }
}

/// The whole token, shown this once.
#[component]
fn NewToken(created: CreatedToken) -> impl IntoView {
    let token = created.token.clone();
    let copied = RwSignal::new(None::<bool>);
    let copy = move |_| {
        let token = token.clone();
        leptos::task::spawn_local(async move {
            let clipboard = web_sys::window().map(|w| w.navigator().clipboard());
            let done = match clipboard {
                Some(c) => wasm_bindgen_futures::JsFuture::from(c.write_text(&token))
                    .await
                    .is_ok(),
                None => false,
            };
            copied.set(Some(done));
        });
    };
    view! {
        <div class="one-time" role="status">
            <label for="new-token">{format!("Your new token “{}”", created.view.name)}</label>
            <div class="inline">
                <input id="new-token" type="text" readonly value=created.token.clone()
                    aria-describedby="new-token-help"
                    on:focus=|ev| {
                        use wasm_bindgen::JsCast;
                        if let Some(input) = ev
                            .target()
                            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
                        {
                            input.select();
                        }
                    }/>
                <button type="button" class="secondary" on:click=copy>"Copy"</button>
            </div>
            <p id="new-token-help" class="hint">
                {move || match copied.get() {
                    Some(true) => "Copied. ",
                    Some(false) => "Could not copy: select the token and press Ctrl+C (⌘C). ",
                    None => "",
                }}
                "Copy it now and keep it somewhere safe: it is shown only this once."
            </p>
        </div>
    }
}

fn token_list(list: Vec<TokenView>, revoke: Action<i64, Result<(), api::ApiError>>) -> AnyView {
    if list.is_empty() {
        return view! { <p class="empty">"You have no API tokens."</p> }.into_any();
    }
    view! {
        <div class="table-wrap">
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Starts with"</th>
                        <th scope="col">"Created"</th>
                        <th scope="col">"Last used"</th>
                        <th scope="col">"Expires"</th>
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {list
                        .into_iter()
                        .map(|t| {
                            let id = t.id;
                            let label = format!("Revoke token {}", t.name);
                            view! {
                                <tr>
                                    <td>{t.name}</td>
                                    <td><code>{t.prefix}"…"</code></td>
                                    <td>{day(&t.created_at)}</td>
                                    <td>{t.last_used_at.as_deref().map_or("never".into(), day)}</td>
                                    <td>{t.expires_at.as_deref().map_or("never".into(), day)}</td>
                                    <td>
                                        <button type="button" class="danger" aria-label=label
                                            disabled=move || revoke.pending().get()
                                            on:click=move |_| {
                                                revoke.dispatch(id);
                                            }>
                                            "Revoke"
                                        </button>
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

/// `2025-03-01T10:20:30Z` -> `2025-03-01`.
fn day(rfc3339: &str) -> String {
    rfc3339.get(..10).unwrap_or(rfc3339).to_string()
}
