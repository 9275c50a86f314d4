//! The server's one error type. Every handler returns `Result<_, ApiError>`; its single
//! `IntoResponse` maps kinds to status codes and a JSON body `{"error": {"code", "message"}}`,
//! logging internal failures instead of showing them to clients.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// Missing, invalid, expired or revoked credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated but not allowed (403): wrong role, failed CSRF check.
    #[error("{0}")]
    Forbidden(String),
    /// Signed in with a one-time password that must be changed first (403,
    /// `password_change_required`).
    #[error("{0}")]
    PasswordChangeRequired(String),
    /// A page of another site may not use this model (403, `origin_not_allowed`).
    #[error("{0}")]
    OriginNotAllowed(String),
    /// The account was disabled by an administrator (403, `account_disabled`).
    #[error("{0}")]
    AccountDisabled(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A promotion the deployment's promotion gate refuses (409, `promotion_gate_failed`):
    /// the body's `error.gate` carries the numbers (`GateCheck`).
    #[error("{message}")]
    PromotionGateFailed {
        message: String,
        check: Box<b3o_models::protocol::registry::GateCheck>,
    },
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Rate limited (429); `retry_after_secs` becomes the `Retry-After` header.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    NotImplemented(String),
    /// Overloaded for now (503); `retry_after_secs` becomes the `Retry-After` header.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error (the gRPC service maps it to a gRPC code).
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    /// Seconds a client should wait before retrying (429 and 503), if any.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::TooManyRequests {
                retry_after_secs, ..
            }
            | ApiError::Unavailable {
                retry_after_secs, ..
            } => Some((*retry_after_secs).max(1)),
            _ => None,
        }
    }

    /// The message a client is shown: bounded (quoted values cut), and for server errors other
    /// than 503 only "internal server error" (the error itself is logged here).
    pub fn public_message(&self) -> String {
        if self.status().is_server_error() && !matches!(self, ApiError::Unavailable { .. }) {
            tracing::error!(error = %self, "request failed");
            "internal server error".to_string()
        } else {
            bounded(&self.to_string())
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::PasswordChangeRequired(_) => {
                (StatusCode::FORBIDDEN, "password_change_required")
            }
            ApiError::AccountDisabled(_) => (StatusCode::FORBIDDEN, "account_disabled"),
            ApiError::OriginNotAllowed(_) => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PromotionGateFailed { .. } => (StatusCode::CONFLICT, "promotion_gate_failed"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
            }
            ApiError::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, "not_implemented"),
            ApiError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Database(_) | ApiError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let retry_after = self.retry_after_secs().map(HeaderValue::from);
        let message = self.public_message();
        let mut body = json!({ "error": { "code": code, "message": message } });
        if let ApiError::PromotionGateFailed { check, .. } = &self {
            body["error"]["gate"] = serde_json::to_value(check).unwrap_or_default();
        }
        let mut response = (status, Json(body)).into_response();
        if let Some(value) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Longest quoted value (between backticks) an error message shows.
const MAX_QUOTED_CHARS: usize = 64;
/// Longest error message sent.
const MAX_MESSAGE_CHARS: usize = 2048;

/// `message` with every value quoted in backticks cut to [`MAX_QUOTED_CHARS`] characters (and
/// the whole to [`MAX_MESSAGE_CHARS`]): messages quote what the client sent (a column name, a
/// cell), and a 1 MB cell must not come back as a 1 MB error.
fn bounded(message: &str) -> String {
    if message.chars().count() <= MAX_QUOTED_CHARS {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS * 4));
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        // Odd parts are inside backticks.
        if i % 2 == 1 && part.chars().count() > MAX_QUOTED_CHARS {
            out.extend(part.chars().take(MAX_QUOTED_CHARS));
            out.push('…');
        } else {
            out.push_str(part);
        }
    }
    if out.chars().count() > MAX_MESSAGE_CHARS {
        out = out.chars().take(MAX_MESSAGE_CHARS).collect();
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::bounded;

    /// Regression: a 1 MB column name or cell came back whole in the 400's message.
    #[test]
    fn quoted_values_in_messages_are_cut() {
        let long = "9".repeat(1 << 20);
        let m = bounded(&format!("row 1, column `Age`: `{long}` is not a number"));
        assert!(m.len() < 200, "{}", m.len());
        assert!(m.starts_with("row 1, column `Age`: `9999"), "{m}");
        assert!(m.ends_with("…` is not a number"), "{m}");
        assert_eq!(bounded("short `x`"), "short `x`");
        assert!(bounded(&"y".repeat(10_000)).chars().count() <= 2049);
    }
}
