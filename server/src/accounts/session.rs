//! Login sessions: a random 256-bit secret in an HttpOnly, SameSite=Lax cookie; the server keeps
//! its SHA-256 with an expiry, so revoking is deleting the row.

use axum::http::{HeaderMap, HeaderValue, header};
use b3o_models::protocol::accounts::SessionView;
use cookie::{Cookie, SameSite};

use super::extract::AuthMethod;
use super::users::role_from_column;
use super::{CurrentUser, Settings, csrf, hash_secret, now, random_secret, rfc3339};
use crate::db::Db;
use crate::error::ApiError;

const COOKIE: &str = "b3o_session";
/// Behind TLS: the `__Host-` prefix makes browsers insist on Secure, Path=/ and no Domain, so a
/// sibling subdomain cannot plant its own session cookie on us.
const SECURE_COOKIE: &str = "__Host-b3o_session";

/// `last_seen_at` is written at most this often (seconds), not on every request.
const TOUCH_EVERY: i64 = 60;

fn cookie_name(settings: &Settings) -> &'static str {
    if settings.behind_tls {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

/// The session secret from the request's cookies, if it has the right shape.
pub(crate) fn read_cookie(headers: &HeaderMap, settings: &Settings) -> Option<String> {
    let name = cookie_name(settings);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// `Set-Cookie` for a new session.
pub(crate) fn set_cookie(settings: &Settings, secret: &str) -> HeaderValue {
    let max_age = cookie::time::Duration::seconds(
        i64::try_from(settings.session_ttl.as_secs()).unwrap_or(i64::MAX),
    );
    let cookie = Cookie::build((cookie_name(settings), secret.to_string()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(settings.behind_tls)
        .max_age(max_age)
        .build();
    header_value(&cookie)
}

/// `Set-Cookie` that makes the browser forget the session.
pub(crate) fn clear_cookie(settings: &Settings) -> HeaderValue {
    let cookie = Cookie::build((cookie_name(settings), ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(settings.behind_tls)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    header_value(&cookie)
}

fn header_value(cookie: &Cookie<'_>) -> HeaderValue {
    // Names and values are our own ASCII (hex digits), so this cannot fail.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A new session for `user_id`; returns the secret for the cookie.
pub(crate) async fn create(
    db: &Db,
    settings: &Settings,
    user_id: i64,
    user_agent: &str,
    ip: &str,
) -> Result<String, ApiError> {
    let secret = random_secret();
    let now = now();
    let ttl = i64::try_from(settings.session_ttl.as_secs()).unwrap_or(i64::MAX / 2);
    // Expired sessions of this user are dead weight; sweep them while we are here.
    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND expires_at <= $2")
        .bind(user_id)
        .bind(now)
        .execute(db)
        .await?;
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at, \
         user_agent, ip) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(hash_secret(&secret))
    .bind(user_id)
    .bind(now)
    .bind(now)
    .bind(now.saturating_add(ttl))
    .bind(truncate(user_agent, 200))
    .bind(ip)
    .execute(db)
    .await?;
    Ok(secret)
}

/// Deletes the session with this secret, if any (logging in over an old session).
pub(crate) async fn delete_by_secret(db: &Db, secret: &str) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(hash_secret(secret))
        .execute(db)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct SessionUser {
    session_id: i64,
    last_seen_at: i64,
    user_id: i64,
    email: String,
    display_name: String,
    organisation: String,
    role: String,
    must_change_password: bool,
}

/// The user of a live session, or `None` when the secret is unknown, revoked or expired.
pub(crate) async fn authenticate(db: &Db, secret: &str) -> Result<Option<CurrentUser>, ApiError> {
    if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let now = now();
    let row: Option<SessionUser> = sqlx::query_as(
        "SELECT s.id AS session_id, s.last_seen_at, u.id AS user_id, u.email, u.display_name, \
         u.organisation, u.role, u.must_change_password FROM sessions s \
         JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
    )
    .bind(hash_secret(secret))
    .bind(now)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    if now - row.last_seen_at >= TOUCH_EVERY {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(row.session_id)
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
        auth: AuthMethod::Session {
            session_id: row.session_id,
            csrf_token: csrf::token_for(secret),
        },
    }))
}

/// Whether session `session_id` is still live ([`authenticate`]'s rule, by id).
pub(crate) async fn is_live(db: &Db, session_id: i64) -> Result<bool, ApiError> {
    let live: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM sessions WHERE id = $1 AND expires_at > $2")
            .bind(session_id)
            .bind(now())
            .fetch_optional(db)
            .await?;
    Ok(live.is_some())
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub id: i64,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub user_agent: String,
    pub ip: String,
}

pub(crate) async fn list(
    db: &Db,
    user_id: i64,
    current: Option<i64>,
) -> Result<Vec<SessionView>, ApiError> {
    let rows: Vec<SessionRow> = sqlx::query_as(
        "SELECT id, created_at, last_seen_at, expires_at, user_agent, ip FROM sessions \
         WHERE user_id = $1 AND expires_at > $2 ORDER BY last_seen_at DESC",
    )
    .bind(user_id)
    .bind(now())
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| SessionView {
            current: Some(r.id) == current,
            id: r.id,
            created_at: rfc3339(r.created_at),
            last_seen_at: rfc3339(r.last_seen_at),
            expires_at: rfc3339(r.expires_at),
            user_agent: r.user_agent,
            ip: r.ip,
        })
        .collect())
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_lax_and_secure_behind_tls() {
        let plain = Settings::default();
        let value = set_cookie(&plain, "abc");
        let value = value.to_str().unwrap();
        assert!(value.starts_with("b3o_session=abc"), "{value}");
        assert!(value.contains("HttpOnly"));
        assert!(value.contains("SameSite=Lax"));
        assert!(value.contains("Path=/"));
        assert!(!value.contains("Secure"));

        let tls = Settings {
            behind_tls: true,
            ..Settings::default()
        };
        let value = set_cookie(&tls, "abc");
        let value = value.to_str().unwrap();
        assert!(value.starts_with("__Host-b3o_session=abc"), "{value}");
        assert!(value.contains("Secure"));
        assert!(clear_cookie(&tls).to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; b3o_session=0123; x=y"),
        );
        let settings = Settings::default();
        assert_eq!(read_cookie(&headers, &settings).as_deref(), Some("0123"));
        let tls = Settings {
            behind_tls: true,
            ..Settings::default()
        };
        assert_eq!(read_cookie(&headers, &tls), None);
    }
}
