//! The authorisation matrix: every route of the server and who may call it.
//!
//! axum cannot list a router's routes, so this table is the single source of truth, and two
//! tests keep it honest (`server/tests/access.rs`): one calls every non-public route without
//! credentials and expects 401; the other reads the `.route("…", get(…).post(…))` calls in
//! `server/src/**/*.rs` and fails when a method and path pair is missing here, or listed here
//! but no longer routed.
//!
//! **Adding a route (federation: groups, rounds, registry, inference …)? Add a line here in the
//! same change**, with the rule its handler enforces. Handlers enforce the rule themselves with
//! the extractors of [`crate::accounts::extract`]; the table describes, it does not enforce.

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in account (session cookie or API token): `CurrentUser`.
    Authenticated,
    /// A signed-in account acting on something it owns or belongs to (its sessions, its
    /// tokens, its groups); anything else answers 404, as if it did not exist. Administrators
    /// may be allowed more, per route.
    Owner,
    /// Administrators only (403 for members): `AdminUser`.
    Admin,
}

/// One route: method (upper case), path as written in `.route(…)`, rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRule {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

const fn rule(method: &'static str, path: &'static str, access: Access) -> RouteRule {
    RouteRule {
        method,
        path,
        access,
    }
}

use Access::{Admin, Authenticated, Owner, Public};

/// Every route. The web app (static files, the fallback) is public and not listed.
pub const ROUTES: &[RouteRule] = &[
    // Operations
    rule("GET", "/healthz", Public),
    // Accounts (server/src/accounts)
    rule("POST", "/api/auth/register", Public),
    rule("POST", "/api/auth/login", Public),
    rule("POST", "/api/auth/logout", Authenticated),
    rule("POST", "/api/auth/password", Authenticated),
    rule("GET", "/api/me", Authenticated),
    rule("PATCH", "/api/me", Authenticated),
    rule("GET", "/api/auth/sessions", Authenticated),
    rule("DELETE", "/api/auth/sessions/{id}", Owner),
    rule("GET", "/api/auth/tokens", Authenticated),
    rule("POST", "/api/auth/tokens", Authenticated),
    rule("DELETE", "/api/auth/tokens/{id}", Owner),
    rule("GET", "/api/admin/users", Admin),
    rule("PUT", "/api/admin/users/{id}/role", Admin),
    // Every new route goes here, with the rule its handler enforces.
    // Federation (server/src/federation). Until accounts replace them, group routes take the
    // owner token (from creation) or a member token (from joining) as `Authorization: Bearer`:
    // `Owner` here means "the group's owner or one of its members", as each handler checks.
    rule("POST", "/api/groups", Public),
    rule("POST", "/api/groups/join", Public),
    rule("GET", "/api/groups/{id}", Owner),
    rule("POST", "/api/groups/{id}/ready", Owner),
    rule("POST", "/api/groups/{id}/leave", Owner),
    rule("POST", "/api/groups/{id}/statistics", Owner),
    rule("POST", "/api/groups/{id}/start", Owner),
    // EventSource cannot send headers; events carry no secrets.
    rule("GET", "/api/groups/{id}/events", Public),
    rule("GET", "/api/groups/{id}/weights", Owner),
    rule("GET", "/api/groups/{id}/rounds", Owner),
    rule("GET", "/api/groups/{id}/rounds/current", Owner),
    rule("GET", "/api/groups/{id}/rounds/{number}", Owner),
    rule("POST", "/api/groups/{id}/rounds/{number}/update", Owner),
    rule("POST", "/api/groups/{id}/rounds/{number}/failure", Owner),
    rule("POST", "/api/groups/{id}/rounds/{number}/evaluation", Owner),
    // Registry (server/src/registry)
    rule("GET", "/api/groups/{id}/versions", Owner),
    rule("GET", "/api/versions/{id}", Owner),
    rule("GET", "/api/versions/{id}/weights", Owner),
    rule("GET", "/api/versions/{id}/onnx", Owner),
    rule("GET", "/api/deployments", Public),
    rule("GET", "/api/deployments/{name}", Public),
    rule("PUT", "/api/deployments/{name}", Owner),
    rule("POST", "/api/deployments/{name}/rollback", Owner),
    // Inference (server/src/inference). Deployments have no "public" flag yet, so model routes
    // need a signed-in caller; health and server metadata are public (probes, discovery).
    rule("GET", "/v2/health/live", Public),
    rule("GET", "/v2/health/ready", Public),
    rule("GET", "/v2", Public),
    // Prometheus scrapes without credentials; labels are version ids, never user data.
    rule("GET", "/metrics", Public),
    rule("GET", "/v2/models/{name}", Authenticated),
    rule("GET", "/v2/models/{name}/ready", Authenticated),
    rule("POST", "/v2/models/{name}/infer", Authenticated),
    rule("GET", "/v2/models/{name}/versions/{version}", Authenticated),
    rule(
        "GET",
        "/v2/models/{name}/versions/{version}/ready",
        Authenticated,
    ),
    rule(
        "POST",
        "/v2/models/{name}/versions/{version}/infer",
        Authenticated,
    ),
    rule("POST", "/api/predict/{name}/csv", Authenticated),
    rule("POST", "/api/predict/{name}/rows", Authenticated),
    rule("POST", "/api/predict/{name}/image", Authenticated),
];

/// The rule for `method` and `path` (as written in the router), if listed.
pub fn lookup(method: &str, path: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
        .map(|r| r.access)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_route_is_listed_twice() {
        for (i, a) in ROUTES.iter().enumerate() {
            assert!(
                !ROUTES[i + 1..]
                    .iter()
                    .any(|b| a.method == b.method && a.path == b.path),
                "{} {} is listed twice",
                a.method,
                a.path
            );
            assert_eq!(a.method, a.method.to_ascii_uppercase());
        }
        assert_eq!(lookup("get", "/api/me"), Some(Access::Authenticated));
    }
}
