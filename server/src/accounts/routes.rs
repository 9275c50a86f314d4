//! Handlers of `/api/auth/*` and `/api/me`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use b3o_models::protocol::ErrorBody;
use b3o_models::protocol::accounts::{
    ChangePassword, Login, Me, PasswordChanged, Register, SessionView, UpdateProfile, UserView,
};

use super::extract::{ApiJson, ApiPath, ClientIp, CurrentUser};
use super::rate_limit::LoginLimiter;
use super::users::{self, MAX_EMAIL};
use super::{csrf, now, password, session};
use crate::error::ApiError;
use crate::state::AppState;

fn user_agent(headers: &HeaderMap) -> &str {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn ip_text(ip: ClientIp) -> String {
    ip.0.map(|ip| ip.to_string()).unwrap_or_default()
}

/// The 429 of a refused password check, naming the limits.
fn too_many_failures(limiter: &LoginLimiter, what: &str, wait: Duration) -> ApiError {
    let limits = limiter.limits();
    ApiError::TooManyRequests {
        message: format!(
            "too many {what}: at most {} per account and {} per address in {} minutes; try \
             again later",
            limits.per_account,
            limits.per_ip,
            limits.window.as_secs() / 60
        ),
        retry_after_secs: wait.as_secs().saturating_add(1),
    }
}

/// Opens a session for `user_id` and answers with the cookie, the user and its CSRF token.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    ip: ClientIp,
    user_id: i64,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let settings = &state.accounts.settings;
    // Never keep a session the client had before signing in (session fixation).
    if let Some(old) = session::read_cookie(headers, settings) {
        session::delete_by_secret(&state.db, &old).await?;
    }
    let secret = session::create(
        &state.db,
        settings,
        user_id,
        user_agent(headers),
        &ip_text(ip),
    )
    .await?;
    let user = users::fetch(&state.db, user_id)
        .await?
        .ok_or_else(|| ApiError::Internal("user vanished while signing in".into()))?;
    let body = Me {
        user: user.into(),
        csrf_token: Some(csrf::token_for(&secret)),
    };
    Ok((
        status,
        [(header::SET_COOKIE, session::set_cookie(settings, &secret))],
        Json(body),
    )
        .into_response())
}

/// `POST /api/auth/register`: creates a member account and signs it in (201); 429 with
/// `Retry-After` after `--max-registrations-per-hour` from one client address.
#[utoipa::path(
    post,
    path = "/api/auth/register",
    operation_id = "register",
    tag = "accounts",
    request_body = Register,
    responses(
        (status = 201, description = "Account created and signed in: the session cookie is set", body = Me,
            headers(("set-cookie" = String, description = "The session cookie `b3o_session` (`__Host-b3o_session` behind TLS)"))),
        (status = 400, description = "A field is missing, unknown or invalid (email, names, password policy)", body = ErrorBody),
        (status = 403, description = "Registration is closed, or a cross-site request", body = ErrorBody),
        (status = 409, description = "An account with this email exists", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address (`Retry-After`)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Register>,
) -> Result<Response, ApiError> {
    csrf::reject_cross_site(&headers)?;
    if !state.accounts.settings.allow_registration {
        return Err(ApiError::Forbidden(
            "registration is closed; ask an administrator for an account".into(),
        ));
    }
    let email = users::normalise_email(&body.email)?;
    let display_name = users::clean_display_name(&body.display_name)?;
    let organisation = users::clean_organisation(&body.organisation)?;
    password::check_policy(&body.password, &email)?;
    let taken = || ApiError::Conflict("an account with this email already exists".into());
    let crate::db::Flag(exists) =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)")
            .bind(&email)
            .fetch_one(&state.db)
            .await?;
    if exists {
        return Err(taken());
    }
    // Reserved before the (slow) hash, so parallel requests cannot all pass the check.
    let per_hour = state.limits.max_registrations_per_hour;
    let slot = state
        .accounts
        .registrations
        .begin(&state.db, ip.0, per_hour)
        .await
        .map_err(|e| {
            e.into_api(|wait| ApiError::TooManyRequests {
                message: format!(
                    "too many accounts registered from this address: at most {per_hour} per hour"
                ),
                retry_after_secs: wait.as_secs().saturating_add(1),
            })
        })?;
    let hash = password::hash(&state.accounts, body.password).await?;
    let now = now();
    let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "INSERT INTO users (email, display_name, organisation, password_hash, role, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, 'member', $5, $6) RETURNING id",
    )
    .bind(&email)
    .bind(&display_name)
    .bind(&organisation)
    .bind(&hash)
    .bind(now)
    .bind(now)
    .fetch_one(&state.db)
    .await;
    let id = match inserted {
        Ok(id) => id,
        // Two registrations racing for one address: the UNIQUE constraint decides.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(taken()),
        Err(e) => return Err(e.into()),
    };
    slot.completed().await;
    tracing::info!(user_id = id, "account registered");
    signed_in(&state, &headers, ip, id, StatusCode::CREATED).await
}

/// `POST /api/auth/login`: 200 with the session cookie; 401 for a wrong email or password
/// (the same answer for both); 429 with `Retry-After` after too many failures, counting the
/// attempts still being verified (see [`super::rate_limit`]).
#[utoipa::path(
    post,
    path = "/api/auth/login",
    operation_id = "login",
    tag = "accounts",
    request_body = Login,
    responses(
        (status = 200, description = "Signed in: the session cookie is set", body = Me,
            headers(("set-cookie" = String, description = "The session cookie `b3o_session` (`__Host-b3o_session` behind TLS)"))),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 403, description = "A cross-site request, or the account is disabled (`account_disabled`)", body = ErrorBody),
        (status = 429, description = "Too many failed attempts for the account or address (`Retry-After`)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Login>,
) -> Result<Response, ApiError> {
    csrf::reject_cross_site(&headers)?;
    // Malformed addresses are looked up too (and fail): one code path, one timing.
    let email = users::normalise_email(&body.email).unwrap_or_else(|_| {
        body.email
            .trim()
            .to_lowercase()
            .chars()
            .take(MAX_EMAIL)
            .collect()
    });
    let limiter = &state.accounts.limiter;
    let attempt = limiter.begin(&state.db, &email, ip.0).await.map_err(|e| {
        e.into_api(|wait| too_many_failures(limiter, "failed sign-in attempts", wait))
    })?;
    let row: Option<(i64, String, crate::db::Flag)> = sqlx::query_as(
        "SELECT id, password_hash, disabled_at IS NOT NULL FROM users WHERE email = $1",
    )
    .bind(&email)
    .fetch_optional(&state.db)
    .await?;
    let (id, (phc, disabled)) = match row {
        Some((id, phc, disabled)) => (Some(id), (Some(phc), disabled.0)),
        None => (None, (None, false)),
    };
    let ok = body.password.chars().count() <= password::MAX_CHARS
        && password::verify(&state.accounts, body.password, phc).await?;
    let Some(id) = id.filter(|_| ok) else {
        attempt.failed().await;
        tracing::info!(ip = ?ip.0, "failed sign-in");
        return Err(ApiError::Unauthorized("wrong email or password".into()));
    };
    attempt.succeeded().await;
    // Said only to whoever knows the password: it reveals nothing to others.
    if disabled {
        tracing::info!(user_id = id, "sign-in of a disabled account refused");
        return Err(ApiError::AccountDisabled(
            "this account is disabled: ask an administrator to enable it".into(),
        ));
    }
    signed_in(&state, &headers, ip, id, StatusCode::OK).await
}

/// `POST /api/auth/logout`: ends this session (204) and clears the cookie.
#[utoipa::path(
    post,
    path = "/api/auth/logout",
    operation_id = "logout",
    tag = "accounts",
    responses(
        (status = 204, description = "Signed out: the session cookie is cleared",
            headers(("set-cookie" = String, description = "Clears the session cookie"))),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "An API token (this needs a session), or a missing or wrong CSRF token", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = [])),
)]
pub(crate) async fn logout(
    user: CurrentUser,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let session_id = user.require_session()?;
    sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(session_id)
        .execute(&state.db)
        .await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            session::clear_cookie(&state.accounts.settings),
        )],
    )
        .into_response())
}

/// `GET /api/me`: the caller's account (with its CSRF token when signed in with a session).
/// Answers also while the account must change its password (`user.must_change_password`).
#[utoipa::path(
    get,
    path = "/api/me",
    operation_id = "get_me",
    tag = "accounts",
    responses(
        (status = 200, description = "The caller's account", body = Me),
        (status = 401, description = "Not signed in, or the account no longer exists", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub(crate) async fn me(
    user: CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<Me>, ApiError> {
    let row = users::fetch(&state.db, user.id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("account no longer exists".into()))?;
    Ok(Json(Me {
        user: row.into(),
        csrf_token: user.csrf_token().map(str::to_string),
    }))
}

/// `PATCH /api/me`: display name and/or organisation.
#[utoipa::path(
    patch,
    path = "/api/me",
    operation_id = "update_me",
    tag = "accounts",
    request_body = UpdateProfile,
    responses(
        (status = 200, description = "The updated account", body = UserView),
        (status = 400, description = "A field is unknown or invalid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing or wrong CSRF token (sessions)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub(crate) async fn update_me(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<UpdateProfile>,
) -> Result<Json<UserView>, ApiError> {
    let display_name = body
        .display_name
        .as_deref()
        .map(users::clean_display_name)
        .transpose()?;
    let organisation = body
        .organisation
        .as_deref()
        .map(users::clean_organisation)
        .transpose()?;
    sqlx::query(
        "UPDATE users SET display_name = COALESCE($1, display_name), \
         organisation = COALESCE($2, organisation), updated_at = $3 WHERE id = $4",
    )
    .bind(display_name)
    .bind(organisation)
    .bind(now())
    .bind(user.id)
    .execute(&state.db)
    .await?;
    let row = users::fetch(&state.db, user.id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("account no longer exists".into()))?;
    Ok(Json(row.into()))
}

/// `POST /api/auth/password`: needs the current password; signs out every other session and
/// revokes every API token of the account, since whoever made the owner change the password
/// may hold one (issue #19). The session that changed it stays signed in.
/// Wrong current passwords count towards the account's login rate limit, so a stolen session
/// cannot be used to guess it.
#[utoipa::path(
    post,
    path = "/api/auth/password",
    operation_id = "change_password",
    tag = "accounts",
    request_body = ChangePassword,
    responses(
        (status = 200, description = "Changed; other sessions signed out, API tokens revoked", body = PasswordChanged),
        (status = 400, description = "The new password breaks the policy, or a malformed body", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The current password is wrong, an API token (this needs a session), or a missing or wrong CSRF token", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords (`Retry-After`)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = [])),
)]
pub(crate) async fn change_password(
    user: CurrentUser,
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<Json<PasswordChanged>, ApiError> {
    let session_id = user.require_session()?;
    let limiter = &state.accounts.limiter;
    let attempt = limiter
        .begin(&state.db, &user.email, ip.0)
        .await
        .map_err(|e| e.into_api(|wait| too_many_failures(limiter, "wrong passwords", wait)))?;
    let phc: Option<String> = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_optional(&state.db)
        .await?;
    let same = body.new_password == body.current_password;
    let ok = body.current_password.chars().count() <= password::MAX_CHARS
        && password::verify(&state.accounts, body.current_password, phc).await?;
    if !ok {
        attempt.failed().await;
        // 403, not 401: the session is fine, the confirmation is not.
        return Err(ApiError::Forbidden("current password is wrong".into()));
    }
    attempt.succeeded().await;
    if same {
        return Err(ApiError::BadRequest(
            "new_password: choose a password different from the current one".into(),
        ));
    }
    password::check_policy(&body.new_password, &user.email)?;
    let hash = password::hash(&state.accounts, body.new_password).await?;
    let mut tx = crate::db::begin_write(&state.db).await?;
    sqlx::query(
        "UPDATE users SET password_hash = $1, must_change_password = 0, updated_at = $2 \
         WHERE id = $3",
    )
    .bind(&hash)
    .bind(now())
    .bind(user.id)
    .execute(&mut *tx)
    .await?;
    let revoked_sessions = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id != $2")
        .bind(user.id)
        .bind(session_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let revoked_tokens = sqlx::query("DELETE FROM api_tokens WHERE user_id = $1")
        .bind(user.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    tracing::info!(
        user_id = user.id,
        revoked_sessions,
        revoked_tokens,
        "password changed"
    );
    Ok(Json(PasswordChanged {
        revoked_sessions,
        revoked_tokens,
    }))
}

/// `GET /api/auth/sessions`: this account's live sessions, `current` marking this one.
#[utoipa::path(
    get,
    path = "/api/auth/sessions",
    operation_id = "list_sessions",
    tag = "accounts",
    responses(
        (status = 200, description = "Live sessions, most recently seen first", body = Vec<SessionView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "An API token (this needs a session)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = [])),
)]
pub(crate) async fn list_sessions(
    user: CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let current = user.require_session()?;
    Ok(Json(
        session::list(&state.db, user.id, Some(current)).await?,
    ))
}

/// `DELETE /api/auth/sessions/{id}`: signs that session out (404 if not one of the caller's).
#[utoipa::path(
    delete,
    path = "/api/auth/sessions/{id}",
    operation_id = "revoke_session",
    tag = "accounts",
    params(("id" = i64, Path, description = "A session of the caller's account")),
    responses(
        (status = 204, description = "Signed out (the cookie is cleared when it was this session)"),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "An API token (this needs a session), or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such session of the caller's", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = [])),
)]
pub(crate) async fn revoke_session(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let current = user.require_session()?;
    let deleted = sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user.id)
        .execute(&state.db)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(ApiError::NotFound("no such session".into()));
    }
    if id == current {
        let clear = session::clear_cookie(&state.accounts.settings);
        return Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
