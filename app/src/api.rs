//! Every HTTP call the app makes, with typed results and errors in plain words.
//!
//! Reads (`GET`) made for a page are aborted when the page goes away; writes are not (a form
//! that was sent should finish). Cookie-authenticated writes carry the session's CSRF token as
//! `X-CSRF-Token`, which the caller passes in from [`crate::session::Session`].

use gloo_net::http::{Request, RequestBuilder, Response};
use leptos::prelude::on_cleanup;
use send_wrapper::SendWrapper;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A failed request, phrased for a person by its `Display`.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// No answer at all: offline, server down, or the request was cancelled.
    Unreachable,
    /// The server refused, saying why (`{"error": {"code", "message"}}`).
    Refused {
        status: u16,
        code: String,
        message: String,
        /// Seconds to wait, from `Retry-After` (rate limits).
        retry_after: Option<u64>,
    },
    /// An answer that is not what this app expects (a version mismatch, a proxy's error page).
    Unreadable,
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `"password: at least 8 characters"` -> `"Password: at least 8 characters."`
fn sentence(message: &str) -> String {
    let message = message.trim();
    let mut chars = message.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Unreachable => {
                f.write_str("The server could not be reached. Check your connection and try again.")
            }
            ApiError::Unreadable => f.write_str(
                "The server's answer could not be understood. Reload the page and try again.",
            ),
            ApiError::Refused { status, .. } if *status >= 500 => f.write_str(
                "Something went wrong on the server. Try again in a moment; if it keeps \
                 happening, tell your administrator.",
            ),
            ApiError::Refused {
                message,
                retry_after,
                ..
            } => {
                f.write_str(&sentence(message))?;
                if let Some(secs) = retry_after {
                    let minutes = secs.div_ceil(60);
                    if *secs < 120 {
                        write!(f, " You can try again in {secs} seconds.")?;
                    } else {
                        write!(f, " You can try again in {minutes} minutes.")?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ApiError {}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// Turns a non-2xx answer into [`ApiError::Refused`].
async fn refusal(response: Response) -> ApiError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.trim().parse().ok());
    match response.json::<ErrorBody>().await {
        Ok(body) => ApiError::Refused {
            status,
            code: body.error.code,
            message: body.error.message,
            retry_after,
        },
        // Not our JSON (a proxy, a 502 page): the status is all we know.
        Err(_) => ApiError::Refused {
            status,
            code: String::new(),
            message: format!("the server answered {} {}", status, response.status_text()),
            retry_after,
        },
    }
}

async fn send(request: Result<Request, gloo_net::Error>) -> Result<Response, ApiError> {
    let request = request.map_err(|_| ApiError::Unreachable)?;
    let response = request.send().await.map_err(|_| ApiError::Unreachable)?;
    if response.ok() {
        Ok(response)
    } else {
        Err(refusal(response).await)
    }
}

async fn json<T: DeserializeOwned>(
    request: Result<Request, gloo_net::Error>,
) -> Result<T, ApiError> {
    send(request)
        .await?
        .json::<T>()
        .await
        .map_err(|_| ApiError::Unreadable)
}

/// A `GET` for a page's data, aborted if the page (the reactive owner) is cleaned up first.
async fn get<T: DeserializeOwned>(url: &str) -> Result<T, ApiError> {
    let controller = web_sys::AbortController::new().ok();
    let signal = controller.as_ref().map(|c| c.signal());
    let controller = SendWrapper::new(controller);
    on_cleanup(move || {
        if let Some(controller) = controller.take() {
            controller.abort();
        }
    });
    json(Request::get(url).abort_signal(signal.as_ref()).build()).await
}

fn with_csrf(builder: RequestBuilder, csrf: &str) -> RequestBuilder {
    builder.header("X-CSRF-Token", csrf)
}

// ---------------------------------------------------------------------------------------------
// Health

#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}

pub async fn health() -> Result<Health, ApiError> {
    get("/healthz").await
}

// ---------------------------------------------------------------------------------------------
// Accounts

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub organisation: String,
    pub role: String,
    #[serde(default)]
    pub must_change_password: bool,
    pub created_at: String,
}

/// The signed-in account and the CSRF token of its session.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Me {
    pub user: User,
    /// Absent only for API-token callers, which this app never is.
    #[serde(default)]
    pub csrf_token: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Register {
    pub email: String,
    pub display_name: String,
    pub organisation: String,
    pub password: String,
}

pub async fn register(body: &Register) -> Result<Me, ApiError> {
    json(Request::post("/api/auth/register").json(body)).await
}

pub async fn login(email: &str, password: &str) -> Result<Me, ApiError> {
    let body = serde_json::json!({ "email": email, "password": password });
    match json(Request::post("/api/auth/login").json(&body)).await {
        // The server's wording is lower-case and terse; this is the one people meet most.
        Err(ApiError::Refused {
            status: 401,
            code,
            retry_after,
            ..
        }) => Err(ApiError::Refused {
            status: 401,
            code,
            message: "Wrong email or password. Check both and try again.".into(),
            retry_after,
        }),
        other => other,
    }
}

pub async fn logout(csrf: &str) -> Result<(), ApiError> {
    send(with_csrf(Request::post("/api/auth/logout"), csrf).build()).await?;
    Ok(())
}

/// `Ok(None)` when nobody is signed in.
pub async fn me() -> Result<Option<Me>, ApiError> {
    match json(Request::get("/api/me").build()).await {
        Ok(me) => Ok(Some(me)),
        Err(e) if e.status() == Some(401) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn update_profile(
    csrf: &str,
    display_name: &str,
    organisation: &str,
) -> Result<User, ApiError> {
    let body = serde_json::json!({ "display_name": display_name, "organisation": organisation });
    json(with_csrf(Request::patch("/api/me"), csrf).json(&body)).await
}

#[derive(Debug, Clone, Deserialize)]
pub struct PasswordChanged {
    pub revoked_sessions: u64,
}

pub async fn change_password(
    csrf: &str,
    current_password: &str,
    new_password: &str,
) -> Result<PasswordChanged, ApiError> {
    let body = serde_json::json!({
        "current_password": current_password,
        "new_password": new_password,
    });
    json(with_csrf(Request::post("/api/auth/password"), csrf).json(&body)).await
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    /// The first characters, e.g. `b3o_1a2b3c4d`.
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub view: ApiToken,
    /// The whole token: this answer is the only time it is shown.
    pub token: String,
}

pub async fn tokens() -> Result<Vec<ApiToken>, ApiError> {
    get("/api/auth/tokens").await
}

pub async fn create_token(
    csrf: &str,
    name: &str,
    expires_in_days: Option<u32>,
) -> Result<CreatedToken, ApiError> {
    let body = serde_json::json!({ "name": name, "expires_in_days": expires_in_days });
    json(with_csrf(Request::post("/api/auth/tokens"), csrf).json(&body)).await
}

pub async fn revoke_token(csrf: &str, id: i64) -> Result<(), ApiError> {
    let url = format!("/api/auth/tokens/{id}");
    send(with_csrf(Request::delete(&url), csrf).build()).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Registry

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Deployment {
    pub name: String,
    pub version_id: i64,
    pub group_id: i64,
    pub round: i64,
    /// Whatever the round's evaluation reported, e.g. `{"accuracy": 0.91, "loss": 0.3}`.
    #[serde(default)]
    pub metrics: Value,
    pub updated_at: String,
    /// Version ids this name pointed at before, newest first.
    #[serde(default)]
    pub history: Vec<i64>,
}

#[derive(Deserialize)]
struct Deployments {
    deployments: Vec<Deployment>,
}

pub async fn deployments() -> Result<Vec<Deployment>, ApiError> {
    get::<Deployments>("/api/deployments")
        .await
        .map(|d| d.deployments)
}

// ---------------------------------------------------------------------------------------------
// Federation. Until groups move to accounts, the owner and member tokens returned here are the
// only credentials for a group (`Authorization: Bearer`), so they are shown once to keep.

#[derive(Debug, Clone, Deserialize)]
pub struct CreatedGroup {
    pub group_id: i64,
    pub join_code: String,
    pub owner_token: String,
}

/// `body` is the `POST /api/groups` request, built by the groups page.
pub async fn create_group(body: &Value) -> Result<CreatedGroup, ApiError> {
    json(Request::post("/api/groups").json(body)).await
}

#[derive(Debug, Clone, Deserialize)]
pub struct JoinedGroup {
    pub group_id: i64,
    pub member_id: i64,
    pub member_token: String,
}

pub async fn join_group(join_code: &str, name: &str) -> Result<JoinedGroup, ApiError> {
    let body = serde_json::json!({ "join_code": join_code, "name": name });
    json(Request::post("/api/groups/join").json(&body)).await
}

/// The fields of `GET /api/groups/{id}` this app shows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GroupStatus {
    pub id: i64,
    pub name: String,
    pub phase: String,
    pub rounds: i64,
    pub members: i64,
    pub ready_members: i64,
    pub current_round: Option<i64>,
    pub current_round_state: Option<String>,
}

pub async fn group_status(group_id: i64, token: &str) -> Result<GroupStatus, ApiError> {
    let url = format!("/api/groups/{group_id}");
    json(
        Request::get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .build(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_become_sentences() {
        let e = ApiError::Refused {
            status: 400,
            code: "bad_request".into(),
            message: "password: at least 8 characters".into(),
            retry_after: None,
        };
        assert_eq!(e.to_string(), "Password: at least 8 characters.");
        let limited = ApiError::Refused {
            status: 429,
            code: "too_many_requests".into(),
            message: "too many failed sign-in attempts; try again later".into(),
            retry_after: Some(300),
        };
        assert!(limited.to_string().ends_with("try again in 5 minutes."));
        let internal = ApiError::Refused {
            status: 500,
            code: "internal".into(),
            message: "internal server error".into(),
            retry_after: None,
        };
        assert!(internal.to_string().starts_with("Something went wrong"));
    }
}
