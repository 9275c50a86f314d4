//! CSRF protection for cookie-authenticated requests.
//!
//! A state-changing request (anything but GET, HEAD, OPTIONS, TRACE) that carries the session
//! cookie must also carry `X-CSRF-Token` equal to the session's token. Another site can make a
//! browser send our cookie (SameSite=Lax still allows top-level POST navigations from
//! same-site subdomains, and older browsers ignore SameSite) but cannot read the token, which
//! the app gets from the login response or `GET /api/me`. Setting a custom header cross-origin
//! also needs a CORS preflight, which this server never grants.
//!
//! The token is derived from the session secret (`SHA-256("b3o-csrf:" + secret)`), so nothing
//! more is stored and it changes with every session. Requests with a bearer API token are
//! exempt: browsers never attach those on their own.
//!
//! As a second layer, a request the browser labels `Sec-Fetch-Site: cross-site` is refused
//! when it is cookie-authenticated and state-changing, and at login and registration (login
//! CSRF). The `Origin` header is not compared with `Host`: behind reverse proxies that rewrite
//! `Host` that check refuses legitimate requests, and the token already covers the case.

use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

pub(crate) const HEADER: &str = "x-csrf-token";

pub(crate) fn token_for(session_secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"b3o-csrf:");
    hasher.update(session_secret.as_bytes());
    hex::encode(hasher.finalize())
}

pub(crate) fn is_state_changing(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// For a request authenticated by the session whose CSRF token is `expected`.
pub(crate) fn check(parts: &Parts, expected: &str) -> Result<(), ApiError> {
    if !is_state_changing(&parts.method) {
        return Ok(());
    }
    reject_cross_site(&parts.headers)?;
    let sent = parts
        .headers
        .get(HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if constant_time_eq(sent, expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "missing or wrong X-CSRF-Token header (get the token from GET /api/me)".into(),
        ))
    }
}

/// Refuses requests the browser says come from another site.
pub(crate) fn reject_cross_site(headers: &HeaderMap) -> Result<(), ApiError> {
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    if cross_site {
        return Err(ApiError::Forbidden("cross-site request refused".into()));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder().method(method).uri("/api/me");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn tokens_depend_on_the_session() {
        assert_ne!(token_for("a"), token_for("b"));
        assert_eq!(token_for("a"), token_for("a"));
        assert_ne!(token_for("a"), super::super::hash_secret("a"));
    }

    #[test]
    fn unsafe_methods_need_the_token() {
        let token = token_for("secret");
        assert!(check(&parts(Method::GET, &[]), &token).is_ok());
        assert!(check(&parts(Method::POST, &[]), &token).is_err());
        assert!(check(&parts(Method::DELETE, &[(HEADER, "nope")]), &token).is_err());
        assert!(check(&parts(Method::PATCH, &[(HEADER, &token)]), &token).is_ok());
        let cross = parts(
            Method::POST,
            &[(HEADER, &token), ("sec-fetch-site", "cross-site")],
        );
        assert!(check(&cross, &token).is_err());
    }
}
