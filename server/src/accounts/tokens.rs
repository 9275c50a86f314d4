//! API tokens for programs: `b3o_` + 64 hex digits, shown once at creation, stored as SHA-256,
//! sent as `Authorization: Bearer b3o_…`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use b3o_models::protocol::ErrorBody;
use b3o_models::protocol::accounts::{CreateToken, CreatedToken, TokenView};

use super::extract::{ApiJson, ApiPath, AuthMethod, CurrentUser};
use super::users::{clean_text, role_from_column};
use super::{hash_secret, now, random_secret, rfc3339};
use crate::db::Db;
use crate::error::ApiError;
use crate::state::AppState;

const PREFIX: &str = "b3o_";
/// Characters of the token kept in clear to tell tokens apart (`b3o_` + 8 hex digits).
const SHOWN: usize = PREFIX.len() + 8;
const MAX_TOKENS_PER_USER: i64 = 100;
const MAX_DAYS: u32 = 3650;
/// `last_used_at` is written at most this often (seconds).
const TOUCH_EVERY: i64 = 60;

fn looks_like_token(token: &str) -> bool {
    token
        .strip_prefix(PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[derive(sqlx::FromRow)]
struct TokenUser {
    token_id: i64,
    last_used_at: Option<i64>,
    user_id: i64,
    email: String,
    display_name: String,
    organisation: String,
    role: String,
    must_change_password: bool,
}

/// The owner of a live token, or `None` when unknown, revoked or expired.
pub(crate) async fn authenticate(db: &Db, token: &str) -> Result<Option<CurrentUser>, ApiError> {
    if !looks_like_token(token) {
        return Ok(None);
    }
    let now = now();
    let row: Option<TokenUser> = sqlx::query_as(
        "SELECT t.id AS token_id, t.last_used_at, u.id AS user_id, u.email, u.display_name, \
         u.organisation, u.role, u.must_change_password FROM api_tokens t \
         JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = $1 AND (t.expires_at IS NULL OR t.expires_at > $2) \
         AND u.disabled_at IS NULL",
    )
    .bind(hash_secret(token))
    .bind(now)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    if row.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY) {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(row.token_id)
            .execute(db)
            .await?;
    }
    Ok(Some(CurrentUser {
        id: row.user_id,
        email: row.email,
        display_name: row.display_name,
        organisation: row.organisation,
        role: role_from_column(&row.role),
        must_change_password: row.must_change_password,
        auth: AuthMethod::ApiToken {
            token_id: row.token_id,
        },
    }))
}

/// Whether token `token_id` is still live ([`authenticate`]'s rule, by id).
pub(crate) async fn is_live(db: &Db, token_id: i64) -> Result<bool, ApiError> {
    let live: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM api_tokens WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(token_id)
    .bind(now())
    .fetch_optional(db)
    .await?;
    Ok(live.is_some())
}

#[derive(Debug, sqlx::FromRow)]
struct TokenRow {
    id: i64,
    name: String,
    prefix: String,
    created_at: i64,
    last_used_at: Option<i64>,
    expires_at: Option<i64>,
}

impl From<TokenRow> for TokenView {
    fn from(r: TokenRow) -> Self {
        TokenView {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            created_at: rfc3339(r.created_at),
            last_used_at: r.last_used_at.map(rfc3339),
            expires_at: r.expires_at.map(rfc3339),
        }
    }
}

/// `POST /api/auth/tokens`: a new API token, shown once.
#[utoipa::path(
    post,
    path = "/api/auth/tokens",
    operation_id = "create_token",
    tag = "accounts",
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token: keep it, it is not shown again", body = CreatedToken),
        (status = 400, description = "A field is missing, unknown or invalid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "An API token (this needs a session), or a missing or wrong CSRF token", body = ErrorBody),
        (status = 409, description = "The account has 100 tokens already", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = [])),
)]
pub(crate) async fn create_token(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    user.require_session()?;
    let name = clean_text("name", &body.name, 1, 100)?;
    if body.expires_in_days.is_some_and(|d| d == 0 || d > MAX_DAYS) {
        return Err(ApiError::BadRequest(format!(
            "expires_in_days: between 1 and {MAX_DAYS}"
        )));
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens WHERE user_id = $1")
        .bind(user.id)
        .fetch_one(&state.db)
        .await?;
    if count >= MAX_TOKENS_PER_USER {
        return Err(ApiError::Conflict(format!(
            "at most {MAX_TOKENS_PER_USER} API tokens per account; revoke some first"
        )));
    }
    let token = format!("{PREFIX}{}", random_secret());
    let prefix = token[..SHOWN].to_string();
    let now = now();
    let expires_at = body
        .expires_in_days
        .map(|d| now.saturating_add(i64::from(d) * 86_400));
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(user.id)
    .bind(&name)
    .bind(hash_secret(&token))
    .bind(&prefix)
    .bind(now)
    .bind(expires_at)
    .fetch_one(&state.db)
    .await?;
    let view = TokenView::from(TokenRow {
        id,
        name,
        prefix,
        created_at: now,
        last_used_at: None,
        expires_at,
    });
    Ok((StatusCode::CREATED, Json(CreatedToken { view, token })))
}

/// `GET /api/auth/tokens`: the account's tokens (never their secrets), oldest first.
#[utoipa::path(
    get,
    path = "/api/auth/tokens",
    operation_id = "list_tokens",
    tag = "accounts",
    responses(
        (status = 200, description = "The account's API tokens", body = Vec<TokenView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "An API token (this needs a session)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = [])),
)]
pub(crate) async fn list_tokens(
    user: CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    user.require_session()?;
    let rows: Vec<TokenRow> = sqlx::query_as(
        "SELECT id, name, prefix, created_at, last_used_at, expires_at FROM api_tokens \
         WHERE user_id = $1 ORDER BY id",
    )
    .bind(user.id)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(rows.into_iter().map(TokenView::from).collect()))
}

/// `DELETE /api/auth/tokens/{id}`: 404 for unknown ids and for other people's tokens alike.
#[utoipa::path(
    delete,
    path = "/api/auth/tokens/{id}",
    operation_id = "revoke_token",
    tag = "accounts",
    params(("id" = i64, Path, description = "A token of the caller's account")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "An API token (this needs a session), or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such token of the caller's", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = [])),
)]
pub(crate) async fn revoke_token(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    user.require_session()?;
    let deleted = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user.id)
        .execute(&state.db)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(ApiError::NotFound("no such API token".into()));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shape() {
        let token = format!("{PREFIX}{}", random_secret());
        assert!(looks_like_token(&token));
        assert!(!looks_like_token(&token[1..]));
        assert!(!looks_like_token("b3o_xyz"));
        assert!(!looks_like_token(&format!("{token}0")));
    }
}
