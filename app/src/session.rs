//! Who is signed in, shared by every page through Leptos context.
//!
//! The session itself is an HttpOnly cookie the app cannot read; what it keeps is the account
//! and the CSRF token from `GET /api/me` or the sign-in answer, which every cookie-authenticated
//! write must send back.

use leptos::prelude::*;

use crate::api::{self, Me, UserView};

/// Where the app stands on the session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionState {
    /// `GET /api/me` has not answered yet: show neither "Sign in" nor a name.
    Checking,
    SignedOut,
    SignedIn(Me),
}

/// The session's state, and whether the account was created in this visit (the home page
/// greets a new account with "Welcome", a returning one with "Welcome back").
#[derive(Debug, Clone, Copy)]
pub struct Session(RwSignal<SessionState>, RwSignal<bool>);

impl Session {
    /// Creates the session, provides it as context and asks the server who is signed in.
    pub fn provide() -> Session {
        let session = Session(RwSignal::new(SessionState::Checking), RwSignal::new(false));
        provide_context(session);
        leptos::task::spawn_local(async move {
            // A failed check leaves the visitor signed out; pages that need the account say so.
            let state = match api::me().await {
                Ok(Some(me)) => SessionState::SignedIn(me),
                Ok(None) | Err(_) => SessionState::SignedOut,
            };
            session.0.set(state);
        });
        session
    }

    pub fn state(&self) -> SessionState {
        self.0.get()
    }

    /// Whether the app knows who is calling and that caller may use the API (no one-time
    /// password to replace first), tracked: pages wait for it before reading what depends on
    /// the caller, so a reload never sends a request the server must refuse.
    pub fn may_call(&self) -> bool {
        self.0.with(|s| match s {
            SessionState::Checking => false,
            SessionState::SignedOut => true,
            SessionState::SignedIn(me) => !me.user.must_change_password,
        })
    }

    /// The signed-in account (tracked).
    pub fn user(&self) -> Option<UserView> {
        self.0.with(|s| match s {
            SessionState::SignedIn(me) => Some(me.user.clone()),
            _ => None,
        })
    }

    /// The CSRF token for a write, read without subscribing (used in event handlers).
    pub fn csrf(&self) -> String {
        self.0.with_untracked(|s| match s {
            SessionState::SignedIn(me) => me.csrf_token.clone().unwrap_or_default(),
            _ => String::new(),
        })
    }

    pub fn signed_in(&self, me: Me) {
        self.1.set(false);
        self.0.set(SessionState::SignedIn(me));
    }

    /// Signed in by creating the account just now.
    pub fn registered(&self, me: Me) {
        self.1.set(true);
        self.0.set(SessionState::SignedIn(me));
    }

    /// The account was created in this visit (tracked).
    pub fn is_new_account(&self) -> bool {
        self.1.get()
    }

    pub fn signed_out(&self) {
        self.1.set(false);
        self.0.set(SessionState::SignedOut);
    }

    /// Replaces the account after a profile edit, keeping the session's CSRF token.
    pub fn update_user(&self, user: UserView) {
        self.0.update(|s| {
            if let SessionState::SignedIn(me) = s {
                me.user = user;
            }
        });
    }
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}
