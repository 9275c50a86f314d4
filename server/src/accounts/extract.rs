//! Extractors other modules use to know who is calling.
//!
//! # Requiring authentication in a route
//!
//! Take [`CurrentUser`] as the **first** argument of the handler: missing or invalid credentials
//! become `401 {"error": {"code": "unauthorized", ..}}` before the body is read, and cookie
//! requests that change state are checked for the CSRF token (403 without it). Use
//! [`AdminUser`] for administrator-only routes (403 for members), [`OptionalUser`] where
//! signing in is optional. Then add the route to [`crate::access::ROUTES`]; a test fails while
//! a `.route("…")` in `server/src` is missing there.
//!
//! ```ignore
//! use axum::{Json, extract::State};
//! use crate::accounts::{ApiPath, CurrentUser};
//! use crate::federation::auth;
//!
//! /// GET /api/groups/{id}/rounds: someone else's group answers 404, exactly like a missing
//! /// one, so ids do not reveal which groups exist. Administrators see every group.
//! async fn rounds(user: CurrentUser, State(state): State<AppState>, ApiPath(id): ApiPath<i64>)
//!     -> Result<Json<Value>, ApiError>
//! {
//!     let access = auth::group_access(&state.db, &user, id).await?; // 404 for outsiders
//!     access.require_owner()?; // only for what owners (and administrators) do: 403 otherwise
//!     // ...
//! }
//! ```
//!
//! For lists, put the rule in the SQL `WHERE` (`g.owner_user_id = ? OR EXISTS (SELECT 1 FROM
//! members m WHERE m.group_id = g.id AND m.user_id = ?) OR <is_admin>`) rather than filtering
//! afterwards: it cannot be forgotten on one branch. Deployments follow their version's group:
//! [`crate::registry::visible_deployment`].
//!
//! Programs (native client, inference API) send `Authorization: Bearer b3o_…` from
//! `POST /api/auth/tokens`; the same extractors accept it, with no CSRF check. Browsers use the
//! session cookie and must send `X-CSRF-Token` on POST/PUT/PATCH/DELETE.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use super::users::Role;
use super::{csrf, session, tokens};
use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller. 401 when credentials are missing or invalid.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub organisation: String,
    pub role: Role,
    /// Signed in with a one-time password: only [`allowed_before_password_change`] calls
    /// get through (the extractors answer 403 `password_change_required` to the others).
    pub must_change_password: bool,
    pub auth: AuthMethod,
}

/// What an account that must change its password may still call: read its account, change
/// the password, sign out.
pub(crate) fn allowed_before_password_change(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    matches!(
        (method, path),
        (&Method::GET, "/api/me") | (&Method::POST, "/api/auth/password" | "/api/auth/logout")
    )
}

/// How the caller proved who it is.
#[derive(Clone)]
pub enum AuthMethod {
    /// Browser session cookie (CSRF-checked).
    Session { session_id: i64, csrf_token: String },
    /// `Authorization: Bearer b3o_…`.
    ApiToken { token_id: i64 },
}

impl fmt::Debug for AuthMethod {
    // The CSRF token stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthMethod::Session { session_id, .. } => f
                .debug_struct("Session")
                .field("session_id", session_id)
                .finish_non_exhaustive(),
            AuthMethod::ApiToken { token_id } => f
                .debug_struct("ApiToken")
                .field("token_id", token_id)
                .finish(),
        }
    }
}

impl AuthMethod {
    /// Whether this session or API token is still live (not signed out, revoked or expired),
    /// by the same rule as when it was authenticated: for long-lived answers such as a group's
    /// event stream, which re-check now and then.
    pub async fn is_live(&self, db: &crate::db::Db) -> Result<bool, ApiError> {
        match self {
            AuthMethod::Session { session_id, .. } => session::is_live(db, *session_id).await,
            AuthMethod::ApiToken { token_id } => tokens::is_live(db, *token_id).await,
        }
    }
}

impl CurrentUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The session id, or 403 for API tokens: account management (password, sessions, tokens)
    /// needs a person signed in, so a leaked program token cannot mint itself successors.
    pub fn require_session(&self) -> Result<i64, ApiError> {
        match self.auth {
            AuthMethod::Session { session_id, .. } => Ok(session_id),
            AuthMethod::ApiToken { .. } => Err(ApiError::Forbidden(
                "this needs a signed-in session, not an API token".into(),
            )),
        }
    }

    pub(crate) fn csrf_token(&self) -> Option<&str> {
        match &self.auth {
            AuthMethod::Session { csrf_token, .. } => Some(csrf_token),
            AuthMethod::ApiToken { .. } => None,
        }
    }
}

enum Resolved {
    Anonymous,
    /// A session cookie that is unknown, expired or revoked.
    StaleCookie,
    /// A malformed `Authorization` header or an unknown/revoked/expired API token.
    BadToken(&'static str),
    /// Signed in with a one-time password, calling something else than changing it.
    MustChangePassword,
    User(CurrentUser),
}

const CHANGE_PASSWORD_FIRST: &str = "this account signed in with a one-time password: choose a \
     new password (POST /api/auth/password) before anything else";

async fn resolve(parts: &mut Parts, state: &AppState) -> Result<Resolved, ApiError> {
    if let Some(user) = parts.extensions.get::<CurrentUser>() {
        return Ok(Resolved::User(user.clone()));
    }
    let user = if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        // A request with an Authorization header is judged by it alone, never by cookies.
        match bearer(&state.db, value).await? {
            Ok(user) => user,
            Err(message) => return Ok(Resolved::BadToken(message)),
        }
    } else if let Some(secret) = session::read_cookie(&parts.headers, &state.accounts.settings) {
        match session::authenticate(&state.db, &secret).await? {
            Some(user) => user,
            None => return Ok(Resolved::StaleCookie),
        }
    } else {
        return Ok(Resolved::Anonymous);
    };
    if let Some(expected) = user.csrf_token() {
        csrf::check(parts, expected)?;
    }
    if user.must_change_password && !allowed_before_password_change(&parts.method, parts.uri.path())
    {
        return Ok(Resolved::MustChangePassword);
    }
    parts.extensions.insert(user.clone());
    Ok(Resolved::User(user))
}

/// The account of an `Authorization: Bearer b3o_…` value, or why it names none (a malformed
/// value, or a token that is unknown, revoked or expired): the one reading of API tokens.
async fn bearer(
    db: &crate::db::Db,
    value: &header::HeaderValue,
) -> Result<Result<CurrentUser, &'static str>, ApiError> {
    let Some(token) = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
    else {
        return Ok(Err(
            "malformed Authorization header: expected `Bearer b3o_…`",
        ));
    };
    Ok(tokens::authenticate(db, token)
        .await?
        .ok_or("invalid, expired or revoked API token"))
}

/// The caller of a transport without cookies (the gRPC service of
/// `crate::inference::grpc`), by [`OptionalUser`]'s rules for API tokens: anonymous without an
/// `authorization` header; 401 for a malformed one or a token that is unknown, revoked or
/// expired; 403 `password_change_required` for an account that must choose a new password
/// first. Session cookies are not read.
pub async fn optional_bearer_user(
    db: &crate::db::Db,
    headers: &axum::http::HeaderMap,
) -> Result<Option<CurrentUser>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let user = bearer(db, value)
        .await?
        .map_err(|m| ApiError::Unauthorized(m.into()))?;
    if user.must_change_password {
        return Err(ApiError::PasswordChangeRequired(
            CHANGE_PASSWORD_FIRST.into(),
        ));
    }
    Ok(Some(user))
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match resolve(parts, state).await? {
            Resolved::User(user) => Ok(user),
            Resolved::Anonymous => Err(ApiError::Unauthorized("sign in first".into())),
            Resolved::StaleCookie => Err(ApiError::Unauthorized(
                "session expired or signed out; sign in again".into(),
            )),
            Resolved::BadToken(message) => Err(ApiError::Unauthorized(message.into())),
            Resolved::MustChangePassword => Err(ApiError::PasswordChangeRequired(
                CHANGE_PASSWORD_FIRST.into(),
            )),
        }
    }
}

/// The caller if signed in. A stale session cookie counts as anonymous (public pages keep
/// working); a bad API token is still 401, since a program should hear about it.
#[derive(Debug, Clone)]
pub struct OptionalUser(pub Option<CurrentUser>);

impl FromRequestParts<AppState> for OptionalUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match resolve(parts, state).await? {
            Resolved::User(user) => Ok(OptionalUser(Some(user))),
            Resolved::Anonymous | Resolved::StaleCookie => Ok(OptionalUser(None)),
            Resolved::BadToken(message) => Err(ApiError::Unauthorized(message.into())),
            // Public routes too: the account is signed in, and it must change its password
            // before it does anything else with it.
            Resolved::MustChangePassword => Err(ApiError::PasswordChangeRequired(
                CHANGE_PASSWORD_FIRST.into(),
            )),
        }
    }
}

/// An administrator: 401 when not signed in, 403 for members.
#[derive(Debug, Clone)]
pub struct AdminUser(pub CurrentUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        if user.is_admin() {
            Ok(AdminUser(user))
        } else {
            Err(ApiError::Forbidden("administrators only".into()))
        }
    }
}

/// The client's address for rate limits and the session list: the socket peer, or with
/// `--trust-proxy` the last `X-Forwarded-For` entry (the one our proxy appended). `None` when
/// unknown (tests without `ConnectInfo`).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.accounts.settings.trust_proxy {
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .and_then(|last| last.trim().parse::<IpAddr>().ok());
            if forwarded.is_some() {
                return Ok(ClientIp(forwarded));
            }
        }
        // The extractor, not the extension: it also honours `MockConnectInfo` in tests.
        let peer = ConnectInfo::<SocketAddr>::from_request_parts(parts, state).await;
        Ok(ClientIp(peer.ok().map(|ConnectInfo(addr)| addr.ip())))
    }
}

/// `axum::Json` whose rejections (wrong content type, malformed or mistyped JSON) are
/// [`ApiError`]s, so clients get the same `{"error": …}` body as everywhere else.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// `axum::extract::Path` with [`ApiError`] rejections (`/api/auth/tokens/abc` is a 400 JSON).
#[derive(Debug, Clone, Copy, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}
