//! Accounts and access control: registration, login with argon2id password hashes, cookie
//! sessions guarded by CSRF tokens, API tokens for programs, the `admin` / `member` roles, login
//! and registration rate limits, the first administrator, and the security headers every
//! response carries.
//!
//! Other modules require a signed-in caller with the extractors [`CurrentUser`],
//! [`OptionalUser`] and [`AdminUser`] (see [`extract`] for how federation routes use them), and
//! list every route they add in [`crate::access::ROUTES`].
//!
//! It is not an identity provider: no OAuth/OIDC, no email verification, no password reset by
//! email: an administrator resets a password (`POST /api/admin/users/{id}/password`) to a
//! one-time one, shown once, which the account must change before anything else
//! (`users.must_change_password`, enforced by the extractors), like the generated first
//! administrator's. Administrators also disable and delete accounts (`admin`).
//!
//! Browsers authenticate with the `b3o_session` cookie (`__Host-b3o_session` behind TLS) and
//! send `X-CSRF-Token` on state-changing requests; programs send `Authorization: Bearer b3o_…`.
//! Only a hash of either secret is stored.

pub mod extract;
pub mod password;
pub mod rate_limit;

mod admin;
mod csrf;
mod headers;
mod routes;
mod session;
mod tokens;
mod users;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::{delete, get, post, put};
use tokio::sync::Semaphore;
use tower_http::set_header::SetResponseHeaderLayer;

pub use extract::{
    AdminUser, ApiJson, ApiPath, AuthMethod, ClientIp, CurrentUser, OptionalUser,
    optional_bearer_user,
};
pub use headers::security_headers;
pub use rate_limit::{LoginLimiter, LoginLimits, RegistrationLimiter};
pub use users::{Role, UserView};

use crate::config::ServeConfig;
use crate::db::Db;
use crate::state::AppState;

/// `/api/auth/*`, `/api/me` and `/api/admin/*`. Every path here is also in
/// [`crate::access::ROUTES`].
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/register", post(routes::register))
        .route("/api/auth/login", post(routes::login))
        .route("/api/auth/logout", post(routes::logout))
        .route("/api/auth/password", post(routes::change_password))
        .route("/api/me", get(routes::me).patch(routes::update_me))
        .route("/api/auth/sessions", get(routes::list_sessions))
        .route("/api/auth/sessions/{id}", delete(routes::revoke_session))
        .route(
            "/api/auth/tokens",
            get(tokens::list_tokens).post(tokens::create_token),
        )
        .route("/api/auth/tokens/{id}", delete(tokens::revoke_token))
        .route("/api/admin/users", get(admin::list_users))
        .route("/api/admin/users/{id}", delete(admin::delete_user))
        .route("/api/admin/users/{id}/role", put(admin::set_role))
        .route(
            "/api/admin/users/{id}/password",
            post(admin::reset_password),
        )
        .route("/api/admin/users/{id}/disabled", put(admin::set_disabled))
        // Answers carry cookies, CSRF tokens and one-time API tokens: never cache them.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

/// The OpenAPI description of the routes of [`router`] (merged into `/api/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        routes::register,
        routes::login,
        routes::logout,
        routes::change_password,
        routes::me,
        routes::update_me,
        routes::list_sessions,
        routes::revoke_session,
        tokens::list_tokens,
        tokens::create_token,
        tokens::revoke_token,
        admin::list_users,
        admin::set_role,
        admin::reset_password,
        admin::set_disabled,
        admin::delete_user,
    ),
    components(schemas(
        b3o_models::protocol::ErrorBody,
        b3o_models::protocol::accounts::Role,
        b3o_models::protocol::accounts::UserView,
        b3o_models::protocol::accounts::Me,
        b3o_models::protocol::accounts::Register,
        b3o_models::protocol::accounts::Login,
        b3o_models::protocol::accounts::ChangePassword,
        b3o_models::protocol::accounts::PasswordChanged,
        b3o_models::protocol::accounts::UpdateProfile,
        b3o_models::protocol::accounts::SessionView,
        b3o_models::protocol::accounts::CreateToken,
        b3o_models::protocol::accounts::TokenView,
        b3o_models::protocol::accounts::CreatedToken,
        b3o_models::protocol::accounts::SetRole,
        b3o_models::protocol::accounts::SetDisabled,
        b3o_models::protocol::accounts::PasswordReset,
        b3o_models::protocol::accounts::AccountDeleted,
    )),
    tags((name = "accounts", description = "Registration, sign-in, the caller's profile, sessions and API tokens; administrators' accounts: list, roles, password resets, disabling and deleting")),
)]
pub struct AccountsApi;

/// Operator settings of the accounts module, from [`ServeConfig`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Cookies get `Secure` and the `__Host-` prefix; responses get HSTS.
    pub behind_tls: bool,
    pub allow_registration: bool,
    pub session_ttl: Duration,
    /// Client address from the last `X-Forwarded-For` entry (rate limits), our host from
    /// `X-Forwarded-Host` (origin checks of model calls).
    pub trust_proxy: bool,
    /// Origins besides `'self'` allowed in CSP `frame-ancestors`; validated, so they cannot
    /// inject other directives.
    pub frame_ancestors: Vec<String>,
    pub login_limits: LoginLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            behind_tls: false,
            allow_registration: true,
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            trust_proxy: false,
            frame_ancestors: Vec::new(),
            login_limits: LoginLimits::default(),
        }
    }
}

impl Settings {
    pub fn from_config(config: &ServeConfig) -> anyhow::Result<Self> {
        if config.session_ttl_hours == 0 {
            bail!("--session-ttl-hours must be at least 1");
        }
        let mut frame_ancestors = Vec::new();
        for origin in &config.frame_ancestors {
            let origin = origin.trim();
            if origin.is_empty() {
                continue;
            }
            if !headers::is_valid_frame_ancestor(origin) {
                bail!(
                    "--frame-ancestors: `{origin}` is not an origin like https://example.org or https://*.example.org:8443"
                );
            }
            frame_ancestors.push(origin.to_string());
        }
        Ok(Settings {
            behind_tls: config.behind_tls,
            allow_registration: config.allow_registration,
            session_ttl: Duration::from_secs(u64::from(config.session_ttl_hours) * 3600),
            trust_proxy: config.trust_proxy,
            frame_ancestors,
            login_limits: LoginLimits::default(),
        })
    }
}

/// The accounts part of [`AppState`]: settings plus in-memory state.
pub struct Accounts {
    pub settings: Settings,
    pub(crate) limiter: LoginLimiter,
    /// Registrations per client address per hour (`--max-registrations-per-hour`).
    pub(crate) registrations: RegistrationLimiter,
    /// Bounds concurrent argon2 computations (about 19 MiB and tens of milliseconds each) so a
    /// burst of logins queues instead of exhausting memory and the blocking thread pool.
    pub(crate) hashing: Semaphore,
}

impl Accounts {
    pub fn new(settings: Settings) -> Self {
        let permits = std::thread::available_parallelism().map_or(2, |n| n.get());
        Accounts {
            limiter: LoginLimiter::new(settings.login_limits),
            registrations: RegistrationLimiter::default(),
            hashing: Semaphore::new(permits),
            settings,
        }
    }
}

impl Default for Accounts {
    fn default() -> Self {
        Accounts::new(Settings::default())
    }
}

/// At `b3o serve` start: settings from `config`, then the first administrator if the instance
/// has no account yet, announced once on stdout with `println!` (not as a tracing event, so
/// it reaches the operator's terminal but no structured log pipeline).
pub async fn start(config: &ServeConfig, db: &Db) -> anyhow::Result<Arc<Accounts>> {
    let accounts = Accounts::new(Settings::from_config(config)?);
    let bootstrap = bootstrap_admin(
        db,
        &accounts,
        config.admin_email.as_deref(),
        config.admin_password.as_deref(),
    )
    .await
    .context("creating the first administrator")?;
    match bootstrap {
        Bootstrap::AlreadyInitialised => {}
        Bootstrap::Created { email } => {
            println!("B3O Edge first start: created administrator {email} from B3O_ADMIN_EMAIL.");
        }
        Bootstrap::Generated { email, password } => {
            println!(
                "B3O Edge first start: created administrator {email} with the one-time password\n\n    \
                 {password}\n\nSign in and change it now: it will not be shown again."
            );
        }
    }
    Ok(Arc::new(accounts))
}

/// What [`bootstrap_admin`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// Accounts exist already: nothing created, nothing to print.
    AlreadyInitialised,
    /// Created from `B3O_ADMIN_EMAIL` / `B3O_ADMIN_PASSWORD`.
    Created { email: String },
    /// Created with a random password, which the caller prints once; it is never stored in
    /// clear and cannot be shown again.
    Generated { email: String, password: String },
}

/// Email of the generated first administrator when `B3O_ADMIN_EMAIL` is not set.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@b3o.local";

/// Creates the first administrator if the instance has no account at all. Runs at every start;
/// only the first does anything, so a generated password is shown exactly once.
pub async fn bootstrap_admin(
    db: &Db,
    accounts: &Accounts,
    email: Option<&str>,
    password: Option<&str>,
) -> anyhow::Result<Bootstrap> {
    let crate::db::Flag(has_users) = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)")
        .fetch_one(db)
        .await?;
    if has_users {
        return Ok(Bootstrap::AlreadyInitialised);
    }
    let email = users::normalise_email(email.unwrap_or(DEFAULT_ADMIN_EMAIL))
        .map_err(|e| anyhow::anyhow!("B3O_ADMIN_EMAIL: {e}"))?;
    let (password, generated) = match password {
        Some(p) => {
            password::check_policy(p, &email)
                .map_err(|e| anyhow::anyhow!("B3O_ADMIN_PASSWORD: {e}"))?;
            (p.to_string(), false)
        }
        None => (password::generate(), true),
    };
    let hash = password::hash(accounts, password.clone())
        .await
        .map_err(|e| anyhow::anyhow!("hashing the administrator password: {e}"))?;
    let now = now();
    // `WHERE NOT EXISTS`: two processes starting on one database create one administrator
    // (`ON CONFLICT`: on Postgres both may pass the check; the unique email stops the second).
    let inserted = sqlx::query(
        "INSERT INTO users (email, display_name, organisation, password_hash, role, \
         must_change_password, created_at, updated_at) \
         SELECT $1, 'Administrator', '', $2, 'admin', $3, $4, $5 \
         WHERE NOT EXISTS (SELECT 1 FROM users) ON CONFLICT DO NOTHING",
    )
    .bind(&email)
    .bind(&hash)
    .bind(i64::from(generated))
    .bind(now)
    .bind(now)
    .execute(db)
    .await
    .context("creating the first administrator")?;
    Ok(match (inserted.rows_affected(), generated) {
        (0, _) => Bootstrap::AlreadyInitialised,
        (_, false) => Bootstrap::Created { email },
        (_, true) => Bootstrap::Generated { email, password },
    })
}

/// Seconds since the Unix epoch: the unit of every timestamp column of this module.
pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// RFC 3339 in UTC for JSON bodies.
pub(crate) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// 32 random bytes, hex: session ids and API token secrets (256 bits).
pub(crate) fn random_secret() -> String {
    use rand::Rng;
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

/// How secrets are stored: hex SHA-256. Secrets are 256-bit random, so an unsalted fast hash
/// is enough; a database leak reveals no usable cookie or token.
pub(crate) fn hash_secret(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn secrets_are_256_bit_and_distinct() {
        let (a, b) = (random_secret(), random_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), a);
    }
}
