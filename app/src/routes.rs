//! The app shell (top navigation, client-side routes) and one module per page.
//!
//! | path       | page                                              |
//! |------------|---------------------------------------------------|
//! | `/`        | [`home`]: what B3O Edge is, public models to try, the server's status |
//! | `/how-it-works` | [`how_it_works`]: data, server, rounds, strategies, where models run |
//! | `/sign-up` | [`sign_up`]                                       |
//! | `/sign-in` | [`sign_in`]                                       |
//! | `/profile` | [`profile`]: name, organisation, password, tokens |
//! | `/models`  | [`models`]: the deployed models                   |
//! | `/models/{name}` | [`model_detail`]: versions, metrics, promote, sharing |
//! | `/predict`, `/predict/{model}` | [`predict`]: codeless inference |
//! | `/groups`  | [`groups`]: your groups; create or join one       |
//! | `/groups/{id}` | [`groups::GroupPage`]: members, rounds, training |
//! | `/history` | [`history`]: federated runs and inference jobs    |
//! | `/admin`   | [`admin`]: accounts, rounds, server health        |
//!
//! While the signed-in account must change its one-time password, every path shows
//! [`choose_password`] instead.

mod admin;
mod choose_password;
mod groups;
mod history;
mod home;
mod how_it_works;
mod model_detail;
mod models;
mod monitoring;
mod predict;
mod profile;
mod sign_in;
mod sign_up;

use leptos::prelude::*;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::hooks::use_navigate;
use leptos_router::path;

use crate::api::{self, ApiError};
use crate::session::{Session, SessionState, use_session};

#[component]
pub fn App() -> impl IntoView {
    let session = Session::provide();
    groups::training::TrainingRuns::provide();
    // A one-time password: nothing but choosing a new one (the server refuses the rest).
    let must_change = Memo::new(move |_| session.user().is_some_and(|u| u.must_change_password));
    view! {
        <Router>
            <a class="skip-link" href="#content">"Skip to content"</a>
            <Nav/>
            <main id="content" tabindex="-1">
                <Show when=move || !must_change.get() fallback=choose_password::ChooseNewPassword>
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=home::Home/>
                    <Route path=path!("/how-it-works") view=how_it_works::HowItWorks/>
                    <Route path=path!("/sign-up") view=sign_up::SignUp/>
                    <Route path=path!("/sign-in") view=sign_in::SignIn/>
                    <Route path=path!("/profile") view=profile::Profile/>
                    <Route path=path!("/models") view=models::Models/>
                    <Route path=path!("/models/:name") view=model_detail::ModelDetail/>
                    <Route path=path!("/predict") view=predict::Predict/>
                    <Route path=path!("/predict/:model") view=predict::Predict/>
                    <Route path=path!("/groups") view=groups::Groups/>
                    <Route path=path!("/groups/:id") view=groups::GroupPage/>
                    <Route path=path!("/history") view=history::History/>
                    <Route path=path!("/admin") view=admin::Admin/>
                </Routes>
                </Show>
            </main>
        </Router>
    }
}

#[component]
fn Nav() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let sign_out = Action::new_local(move |_: &()| {
        let csrf = session.csrf();
        let navigate = navigate.clone();
        async move {
            match api::logout(&csrf).await {
                // 401: the session had already ended (expired, revoked elsewhere).
                Ok(()) | Err(ApiError::Refused { status: 401, .. }) => {
                    crate::pwa::forget_cached_data();
                    session.signed_out();
                    navigate("/", Default::default());
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    });
    let account = move || match session.state() {
        SessionState::Checking => ().into_any(),
        SessionState::SignedOut => view! {
            <A href="/sign-in">"Sign in"</A>
            <A href="/sign-up" attr:class="button">"Sign up"</A>
        }
        .into_any(),
        SessionState::SignedIn(me) => view! {
            <A href="/profile" attr:id="nav-user" attr:title="Your profile">
                {me.user.display_name}
            </A>
            <button
                type="button"
                id="sign-out"
                class="secondary"
                disabled=move || sign_out.pending().get()
                on:click=move |_| {
                    sign_out.dispatch(());
                }
            >
                "Sign out"
            </button>
        }
        .into_any(),
    };
    view! {
        <header class="top">
            <nav aria-label="Main">
                <A href="/" attr:class="brand">"B3O Edge"</A>
                <ul class="nav-links">
                    <li><A href="/" exact=true>"Home"</A></li>
                    <li><A href="/models">"Models"</A></li>
                    <li><A href="/predict">"Predict"</A></li>
                    <li><A href="/groups">"Groups"</A></li>
                    <li><A href="/history">"History"</A></li>
                    <li><A href="/how-it-works">"How it works"</A></li>
                    {move || session.user().filter(|u| u.role == api::Role::Admin).map(|_| view! {
                        <li><A href="/admin">"Admin"</A></li>
                    })}
                </ul>
                <div class="nav-account" aria-live="polite">{account}</div>
            </nav>
            {move || {
                sign_out
                    .value()
                    .get()
                    .and_then(Result::err)
                    .map(|e| view! { <p class="error banner" role="alert">{e.to_string()}</p> })
            }}
        </header>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    view! {
        <section>
            <h1>"Page not found"</h1>
            <p>"There is no page at this address. " <A href="/">"Go to the home page"</A> "."</p>
        </section>
    }
}

/// The error of a form's last submission, next to the form, announced to screen readers.
/// `value` is an action's `.value()`.
fn form_error<T: 'static>(
    id: &'static str,
    value: impl Get<Value = Option<Result<T, ApiError>>> + Send + Sync + 'static,
) -> impl IntoView {
    move || {
        value.get().and_then(Result::err).map(|e| {
            view! {
                <p id=id class="form-error" role="alert">
                    {e.to_string()}
                </p>
            }
        })
    }
}

/// The errors an `ErrorBoundary` caught, in plain words.
fn show_errors(errors: ArcRwSignal<Errors>) -> impl IntoView {
    view! {
        <p class="error" role="alert">
            {move || {
                errors
                    .get()
                    .into_iter()
                    .map(|(_, e)| e.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            }}
        </p>
    }
}
