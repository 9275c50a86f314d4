//! The authorisation matrix: every route of the server and who may call it.
//!
//! axum cannot list a router's routes, so this table is the single source of truth, and the
//! tests of `server/tests/access.rs` keep it honest: one reads the `.route("…", get(…).post(…))`
//! calls in `server/src/**/*.rs` and fails when a method and path pair is missing here, or
//! listed here but no longer routed; the matrix test calls every row, by its [`Access`]
//! variant, as an anonymous caller, a member of another group, a member, the group's owner and
//! an administrator, on real accounts and groups, and checks each answer (401, 403, 404 as for
//! an id that does not exist, or allowed); another keeps the list of public routes short.
//!
//! **Adding a route (federation: groups, rounds, registry, inference …)? Add a line here in the
//! same change**, with the rule its handler enforces. Handlers enforce the rule themselves with
//! the extractors of [`crate::accounts::extract`] and, for groups, versions and deployments,
//! [`crate::membership::group_access`] / [`crate::registry::visible_deployment`]; the
//! table describes, it does not enforce. A route whose path parameter the matrix fixture does
//! not know yet is still checked for 401/403/404; teach the fixture (`Fixture::param`) to
//! check its allowed callers too.

/// Who may call a route. `server/tests/access.rs` drives every row by its variant against an
/// anonymous caller, a member of another group, a member, the group's owner and an
/// administrator, and checks the answers below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in account (session cookie or API token): `CurrentUser`. 401 anonymous.
    Authenticated,
    /// A signed-in account acting on something of its own account (its sessions, its tokens,
    /// its jobs); someone else's answers 404, as if it did not exist. Administrators may be
    /// allowed more, per route.
    Owner,
    /// Reading a group, or what belongs to it (rounds, versions, deployments, its events):
    /// its members (also those who left), its owner and administrators. Anyone else: 404 with
    /// the body of an id that does not exist. (`membership::group_access`)
    GroupMember,
    /// Training in a group in the caller's own name (ready, statistics, updates, failures,
    /// evaluations, leave): an active membership (the owner is one from the start). 403 for
    /// administrators and owners who are not members and for members who left; 404 for
    /// everyone else. (`GroupAccess::require_member`)
    GroupParticipant,
    /// Managing a group (start training): its owner and administrators; 403 for its
    /// members, 404 for everyone else. (`GroupAccess::require_owner`)
    GroupOwner,
    /// Changing a deployment (promote, roll back, sharing): the owner of the group whose
    /// model it serves (or is to serve) and administrators; 403 for that group's members,
    /// 404 for everyone else.
    DeploymentOwner,
    /// A deployed model marked public: anyone. Otherwise as [`Access::GroupMember`] of the
    /// deployment's group (401 anonymous, 404 for non-members), except for requests from the
    /// page of a partner site the deployment lists (`Origin`), served without an account
    /// (`inference::gate`; the `Origin` is a browser's word, not authentication).
    PublicIfModelPublic,
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

// Every variant, so a row can name any of them without touching this line.
use Access::*;

/// Every route. The web app (static files, the fallback) is public and not listed.
pub const ROUTES: &[RouteRule] = &[
    // Operations
    rule("GET", "/healthz", Public),
    rule("GET", "/readyz", Public),
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
    // Password reset (one-time password, shown once), disable / enable, delete. The last
    // enabled administrator cannot be demoted, disabled or deleted (409).
    rule("POST", "/api/admin/users/{id}/password", Admin),
    rule("PUT", "/api/admin/users/{id}/disabled", Admin),
    rule("DELETE", "/api/admin/users/{id}", Admin),
    // Every new route goes here, with the rule its handler enforces.
    // Federation (server/src/federation): accounts own and join groups.
    rule("GET", "/api/groups", Authenticated),
    rule("POST", "/api/groups", Authenticated),
    rule("POST", "/api/groups/join", Authenticated),
    rule("GET", "/api/groups/{id}", GroupMember),
    rule("POST", "/api/groups/{id}/ready", GroupParticipant),
    rule("POST", "/api/groups/{id}/leave", GroupParticipant),
    rule("POST", "/api/groups/{id}/statistics", GroupParticipant),
    rule("POST", "/api/groups/{id}/start", GroupOwner),
    rule("POST", "/api/groups/{id}/pause", GroupOwner),
    rule("POST", "/api/groups/{id}/resume", GroupOwner),
    rule("POST", "/api/groups/{id}/cancel", GroupOwner),
    rule("POST", "/api/groups/{id}/rounds/current/close", GroupOwner),
    rule(
        "POST",
        "/api/groups/{id}/members/{member_id}/remove",
        GroupOwner,
    ),
    // EventSource sends the session cookie (same origin); programs their API token. A member
    // who left gets 403, and an open stream ends when it leaves or its credentials are revoked.
    rule("GET", "/api/groups/{id}/events", GroupMember),
    rule("GET", "/api/groups/{id}/weights", GroupMember),
    rule("GET", "/api/groups/{id}/rounds", GroupMember),
    rule("GET", "/api/groups/{id}/rounds/current", GroupMember),
    rule("GET", "/api/groups/{id}/rounds/{number}", GroupMember),
    rule(
        "POST",
        "/api/groups/{id}/rounds/{number}/update",
        GroupParticipant,
    ),
    // Secure aggregation's stages: a selected member's messages.
    rule(
        "GET",
        "/api/groups/{id}/rounds/{number}/secagg",
        GroupParticipant,
    ),
    rule(
        "POST",
        "/api/groups/{id}/rounds/{number}/secagg/keys",
        GroupParticipant,
    ),
    rule(
        "POST",
        "/api/groups/{id}/rounds/{number}/secagg/shares",
        GroupParticipant,
    ),
    rule(
        "POST",
        "/api/groups/{id}/rounds/{number}/secagg/unmask",
        GroupParticipant,
    ),
    rule(
        "POST",
        "/api/groups/{id}/rounds/{number}/failure",
        GroupParticipant,
    ),
    rule(
        "POST",
        "/api/groups/{id}/rounds/{number}/progress",
        GroupParticipant,
    ),
    rule(
        "POST",
        "/api/groups/{id}/rounds/{number}/evaluation",
        GroupParticipant,
    ),
    // The caller's own runs (groups it owns or joined), with model download links.
    rule("GET", "/api/history/runs", Authenticated),
    // Registry (server/src/registry): versions and deployments follow their group.
    rule("GET", "/api/groups/{id}/versions", GroupMember),
    rule("GET", "/api/versions/{id}", GroupMember),
    rule("GET", "/api/versions/{id}/weights", GroupMember),
    rule("GET", "/api/versions/{id}/onnx", GroupMember),
    // A member's evaluation of a version on its held-out rows (only metrics).
    rule("POST", "/api/versions/{id}/evaluation", GroupParticipant),
    // Lists the public deployments to anyone, plus, signed in, those of the caller's groups
    // (administrators: all): visitors find the demo models (issue #21). Private ones are
    // never listed to outsiders.
    rule("GET", "/api/deployments", Public),
    // A public model's page reads without an account; a private one as `GroupMember`.
    rule("GET", "/api/deployments/{name}", PublicIfModelPublic),
    rule("PUT", "/api/deployments/{name}", DeploymentOwner),
    rule("POST", "/api/deployments/{name}/rollback", DeploymentOwner),
    rule("PUT", "/api/deployments/{name}/gate", DeploymentOwner),
    // The audit trail (who promoted, overrode the gate, rolled back): the group only, even
    // for a public model.
    rule("GET", "/api/deployments/{name}/events", GroupMember),
    rule("GET", "/api/deployments/{name}/drift", GroupMember),
    rule(
        "PUT",
        "/api/deployments/{name}/drift/settings",
        DeploymentOwner,
    ),
    rule(
        "GET",
        "/api/deployments/{name}/drift/reference",
        GroupMember,
    ),
    rule(
        "POST",
        "/api/deployments/{name}/drift/partner",
        GroupParticipant,
    ),
    // Inference (server/src/inference): model routes answer per deployment, public ones
    // anyone (with CORS for allowed origins; their OPTIONS preflights are public and not
    // listed), private ones their group and the pages of the partner sites they list; health and server metadata are public (probes,
    // discovery).
    rule("GET", "/v2/health/live", Public),
    rule("GET", "/v2/health/ready", Public),
    rule("GET", "/v2", Public),
    // The models the caller may call: public ones for anyone, like GET /api/deployments.
    rule("POST", "/v2/repository/index", Public),
    // Prometheus scrapes without credentials (`--metrics false` turns it off); labels are
    // public deployments' names (private ones count as `private`), version ids and route
    // names, never user data.
    rule("GET", "/metrics", Public),
    rule("GET", "/v2/models/{name}", PublicIfModelPublic),
    rule("GET", "/v2/models/{name}/ready", PublicIfModelPublic),
    rule("POST", "/v2/models/{name}/infer", PublicIfModelPublic),
    rule(
        "GET",
        "/v2/models/{name}/versions/{version}",
        PublicIfModelPublic,
    ),
    rule(
        "GET",
        "/v2/models/{name}/versions/{version}/ready",
        PublicIfModelPublic,
    ),
    rule(
        "POST",
        "/v2/models/{name}/versions/{version}/infer",
        PublicIfModelPublic,
    ),
    // Triton's statistics extension: gated like the model's metadata.
    rule("GET", "/v2/models/{name}/stats", PublicIfModelPublic),
    rule(
        "GET",
        "/v2/models/{name}/versions/{version}/stats",
        PublicIfModelPublic,
    ),
    rule("POST", "/api/predict/{name}/csv", PublicIfModelPublic),
    rule("POST", "/api/predict/{name}/rows", PublicIfModelPublic),
    rule("POST", "/api/predict/{name}/image", PublicIfModelPublic),
    rule(
        "GET",
        "/api/deployments/{name}/package",
        PublicIfModelPublic,
    ),
    rule(
        "GET",
        "/api/deployments/{name}/versions/{version}/onnx",
        PublicIfModelPublic,
    ),
    rule("GET", "/api/deployments/{name}/sharing", GroupMember),
    rule("PUT", "/api/deployments/{name}/sharing", DeploymentOwner),
    // Batch jobs (server/src/jobs): the caller's own; others' answer 404.
    rule("POST", "/api/jobs", Authenticated),
    rule("GET", "/api/jobs", Authenticated),
    rule("GET", "/api/jobs/{id}", Owner),
    rule("GET", "/api/jobs/{id}/result", Owner),
    rule("DELETE", "/api/jobs/{id}", Owner),
    // Demo (server/src/demo): the sample CSV for trying the demo churn model.
    rule("GET", "/api/demo/churn-sample.csv", Public),
    // The API contract (server/src/openapi.rs): the OpenAPI document and its reference UI
    // (a page and its three static files), the same for everyone.
    rule("GET", "/api/openapi.json", Public),
    rule("GET", "/api/docs", Public),
    rule("GET", "/api/docs/swagger-ui-bundle.js", Public),
    rule("GET", "/api/docs/init.js", Public),
    rule("GET", "/api/docs/swagger-ui.css", Public),
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
