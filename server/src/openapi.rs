//! The API contract: an OpenAPI 3.1 document generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types of `b3o_models::protocol` (utoipa), served at
//! `GET /api/openapi.json`, with a browsable reference at `GET /api/docs` (Swagger UI, vendored
//! in `server/api-docs/` and embedded in the binary: no CDN, no download; see its README).
//! `b3o openapi` prints the same document.
//!
//! Each area lists its own handlers (`registry::RegistryApi`, `accounts::AccountsApi`, ...);
//! [`document`] merges them under one `info`, the security schemes and the tags. The test
//! `every_route_of_the_access_table_is_documented` keeps it complete against
//! [`crate::access::ROUTES`].

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use b3o_models::protocol::{ErrorBody, ErrorDetail};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::state::AppState;

/// The auth schemes' names as operations' `security` lists name them.
pub const SESSION_SCHEME: &str = "session";
pub const BEARER_SCHEME: &str = "bearer";

const DESCRIPTION: &str = "B3O Edge's HTTP API: accounts, federated learning groups and \
rounds, the model registry, inference (codeless routes and KServe V2) and batch jobs.

**Authentication.** Browsers sign in with `POST /api/auth/login` and send the session cookie \
`b3o_session` (`__Host-b3o_session` on servers behind TLS); requests that change something \
(POST, PUT, PATCH, DELETE) must also carry the session's CSRF token, from `GET /api/me`, in \
the `X-CSRF-Token` header. Programs send an API token (`POST /api/auth/tokens`) as \
`Authorization: Bearer b3o_…` and need no CSRF token. Operations whose security lists an \
empty requirement (`{}`) also answer anonymous callers: public models, for instance.

**Errors.** Every 4xx and 5xx answer has the body `{\"error\": {\"code\", \"message\"}}` \
(`ErrorBody`); 429 and 503 carry `Retry-After`.

**Timestamps** are RFC 3339 strings in UTC.";

/// The document's frame: info, tags, security schemes, the shared error body, and the routes
/// of this module.
#[derive(OpenApi)]
#[openapi(
    info(title = "B3O Edge API", description = DESCRIPTION),
    tags(
        (name = "operations", description = "Health checks, metrics and this document"),
        (name = "registry", description = "Model versions, deployments and their sharing"),
        (name = "inference", description = "Codeless prediction (CSV, JSON rows, images), model packages"),
        (name = "kserve-v2", description = "KServe V2 / Open Inference Protocol over JSON tensors"),
        (name = "monitoring", description = "Drift of deployed models' inputs and predictions against their training data"),
        (name = "jobs", description = "Batch prediction over large CSV files"),
        (name = "demo", description = "Sample data for the demo models"),
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&SecuritySchemes),
    paths(openapi_json, docs_page, docs_script, docs_init, docs_style)
)]
struct Frame;

/// Adds the `session` and `bearer` schemes.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SESSION_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "b3o_session",
                "The session cookie set by `POST /api/auth/login` (`__Host-b3o_session` behind \
                 TLS). POST, PUT, PATCH and DELETE also need the header `X-CSRF-Token` with the \
                 session's token (`csrf_token` of `GET /api/me`).",
            ))),
        );
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token from `POST /api/auth/tokens`: `Authorization: Bearer b3o_…`. \
                         No CSRF token needed.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Frame::openapi();
    doc.merge(crate::registry::RegistryApi::openapi());
    doc.merge(crate::registry::sharing::SharingApi::openapi());
    doc.merge(crate::inference::api());
    doc.merge(crate::jobs::JobsApi::openapi());
    doc.merge(crate::monitoring::MonitoringApi::openapi());
    doc.merge(crate::demo::DemoApi::openapi());
    doc.merge(crate::health::HealthApi::openapi());
    doc.merge(crate::accounts::AccountsApi::openapi());
    doc.merge(crate::federation::FederationApi::openapi());
    one_time_password_refusals(&mut doc);
    // Areas describe their tags too: one tag per name (the first description wins).
    if let Some(tags) = &mut doc.tags {
        let mut seen = std::collections::BTreeSet::new();
        tags.retain(|t| seen.insert(t.name.clone()));
    }
    doc
}

/// Why an operation answers 403 to an account that has a one-time password.
const CHANGE_PASSWORD_FIRST: &str = "the account signed in with a one-time password and must \
choose a new one first (`password_change_required`)";

/// Every route a signed-in account may call answers 403 `password_change_required` while the
/// account has a one-time password (`accounts::extract`), but reading the account, changing
/// the password and signing out: documented on each, as its 403 or in its 403's description.
fn one_time_password_refusals(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    for rule in crate::access::ROUTES {
        let Ok(method) = axum::http::Method::from_bytes(rule.method.as_bytes()) else {
            continue;
        };
        if rule.access == crate::access::Access::Public
            || crate::accounts::extract::allowed_before_password_change(&method, rule.path)
        {
            continue;
        }
        let Some(item) = doc.paths.paths.get_mut(rule.path) else {
            continue;
        };
        let operation = match rule.method {
            "GET" => item.get.as_mut(),
            "POST" => item.post.as_mut(),
            "PUT" => item.put.as_mut(),
            "PATCH" => item.patch.as_mut(),
            "DELETE" => item.delete.as_mut(),
            _ => None,
        };
        let Some(operation) = operation else {
            continue;
        };
        match operation.responses.responses.get_mut("403") {
            Some(RefOr::T(response)) => {
                response.description =
                    format!("{}; or {CHANGE_PASSWORD_FIRST}", response.description);
            }
            Some(RefOr::Ref(_)) => {}
            None => {
                let mut why = CHANGE_PASSWORD_FIRST.to_string();
                why[..1].make_ascii_uppercase();
                let response = ResponseBuilder::new()
                    .description(why)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build();
                operation
                    .responses
                    .responses
                    .insert("403".into(), RefOr::T(response));
            }
        }
    }
}

/// The document as JSON, built once per process.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"the document did not serialise: {e}\"}}"))
    })
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/docs", get(docs_page))
        .route("/api/docs/swagger-ui-bundle.js", get(docs_script))
        .route("/api/docs/init.js", get(docs_init))
        .route("/api/docs/swagger-ui.css", get(docs_style))
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    operation_id = "get_openapi_document",
    path = "/api/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = serde_json::Value)),
)]
async fn openapi_json() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        document_json(),
    )
        .into_response()
}

/// The vendored UI's files (see `server/api-docs/README.md`).
const PAGE: &[u8] = include_bytes!("../api-docs/index.html");
const INIT: &[u8] = include_bytes!("../api-docs/init.js");
const BUNDLE: &[u8] = include_bytes!("../api-docs/swagger-ui-bundle.js");
const STYLE: &[u8] = include_bytes!("../api-docs/swagger-ui.css");

fn asset(content_type: &'static str, bytes: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Revalidated after an hour: a new server version may ship another UI.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// The browsable API reference (Swagger UI over `/api/openapi.json`).
#[utoipa::path(
    get,
    operation_id = "get_api_docs",
    path = "/api/docs",
    tag = "operations",
    responses((status = 200, description = "The reference's page", content_type = "text/html", body = String)),
)]
async fn docs_page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// The reference's script (Swagger UI's bundle).
#[utoipa::path(
    get,
    operation_id = "get_api_docs_script",
    path = "/api/docs/swagger-ui-bundle.js",
    tag = "operations",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String)),
)]
async fn docs_script() -> Response {
    asset("text/javascript; charset=utf-8", BUNDLE)
}

/// The script that starts the reference on this server's document.
#[utoipa::path(
    get,
    operation_id = "get_api_docs_init",
    path = "/api/docs/init.js",
    tag = "operations",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String)),
)]
async fn docs_init() -> Response {
    asset("text/javascript; charset=utf-8", INIT)
}

/// The reference's style sheet.
#[utoipa::path(
    get,
    operation_id = "get_api_docs_style",
    path = "/api/docs/swagger-ui.css",
    tag = "operations",
    responses((status = 200, description = "CSS", content_type = "text/css", body = String)),
)]
async fn docs_style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::access::Access;

    /// Every route of the access table, by method and path, is in the document.
    #[test]
    fn every_route_of_the_access_table_is_documented() {
        let doc = serde_json::to_value(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let missing: Vec<String> = crate::access::ROUTES
            .iter()
            .filter(|r| {
                paths
                    .get(r.path)
                    .and_then(|item| item.get(r.method.to_ascii_lowercase()))
                    .is_none()
            })
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(
            missing.is_empty(),
            "{} route(s) of access::ROUTES missing from /api/openapi.json:\n{}",
            missing.len(),
            missing.join("\n")
        );
        // Operation ids name generated clients' functions: each once.
        let mut ids = BTreeSet::new();
        for item in paths.values() {
            for op in item.as_object().unwrap().values() {
                if let Some(id) = op.get("operationId").and_then(|i| i.as_str()) {
                    assert!(
                        ids.insert(id.to_string()),
                        "operationId `{id}` is used twice"
                    );
                }
            }
        }
        // And nothing documented that is not routed.
        let listed: BTreeSet<(String, String)> = crate::access::ROUTES
            .iter()
            .map(|r| (r.method.to_ascii_lowercase(), r.path.to_string()))
            .collect();
        for (path, item) in paths {
            for method in ["get", "put", "post", "delete", "patch"] {
                if item.get(method).is_some() {
                    assert!(
                        listed.contains(&(method.to_string(), path.clone())),
                        "{method} {path} is documented but not in access::ROUTES"
                    );
                }
            }
        }
    }

    /// Each operation names a declared tag and, unless public, its schemes (`session`, and
    /// `bearer` where API tokens are accepted); each error answer has the `ErrorBody` schema.
    #[test]
    fn operations_have_tags_security_and_error_bodies() {
        let doc = serde_json::to_value(document()).unwrap();
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["session"]["in"], "cookie");
        assert_eq!(schemes["session"]["name"], "b3o_session");
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        let tags: Vec<&str> = doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        let unique: BTreeSet<&str> = tags.iter().copied().collect();
        assert_eq!(
            unique.len(),
            tags.len(),
            "a tag is declared twice: {tags:?}"
        );
        let mut problems = Vec::new();
        for rule in crate::access::ROUTES {
            let Some(op) = doc["paths"][rule.path].get(rule.method.to_ascii_lowercase()) else {
                continue; // reported by the test above
            };
            let what = format!("{} {}", rule.method, rule.path);
            let tag = op["tags"][0].as_str().unwrap_or_default();
            if !unique.contains(tag) {
                problems.push(format!("{what} has no declared tag: `{tag}`"));
            }
            let requirements = op["security"].as_array().cloned().unwrap_or_default();
            let schemes: Vec<&str> = requirements
                .iter()
                .filter_map(|r| r.as_object())
                .flat_map(|r| r.keys().map(String::as_str))
                .collect();
            let known = schemes
                .iter()
                .all(|s| *s == SESSION_SCHEME || *s == BEARER_SCHEME);
            let anonymous = requirements
                .iter()
                .any(|r| r.as_object().is_some_and(|r| r.is_empty()));
            // Public: no scheme, or anonymous first with optional credentials where the
            // answer depends on the caller (the list of deployments: public ones for anyone,
            // plus the caller's groups'). Otherwise the session, and the bearer token where API
            // tokens are accepted (account management needs a person signed in); an empty
            // requirement (anonymous callers) exactly for public models.
            let ok = match rule.access {
                Access::Public => schemes.is_empty() || (known && anonymous),
                access => {
                    known
                        && schemes.contains(&SESSION_SCHEME)
                        && anonymous == (access == Access::PublicIfModelPublic)
                }
            };
            if !ok {
                problems.push(format!(
                    "{what} ({:?}) has security {}",
                    rule.access, op["security"]
                ));
            }
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                let error = status.starts_with('4') || status.starts_with('5');
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                if error && schema != "#/components/schemas/ErrorBody" {
                    problems.push(format!(
                        "{what} answers {status} without the ErrorBody schema"
                    ));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "{} problem(s) in the document:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }

    /// Issue #21: the 403 of an account with a one-time password is documented wherever a
    /// signed-in account can meet it, and not where it cannot.
    #[test]
    fn the_one_time_password_refusal_is_documented() {
        let doc = serde_json::to_value(document()).unwrap();
        let forbidden = |method: &str, path: &str| {
            doc["paths"][path][method]["responses"]["403"]["description"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        for (method, path) in [
            ("get", "/api/groups"),
            ("put", "/api/admin/users/{id}/role"),
            ("post", "/api/predict/{name}/csv"),
        ] {
            assert!(
                forbidden(method, path).contains("password_change_required"),
                "{method} {path}: {}",
                forbidden(method, path)
            );
        }
        assert!(!forbidden("get", "/api/me").contains("password_change_required"));
        assert!(!forbidden("post", "/api/auth/password").contains("password_change_required"));
        assert!(!forbidden("get", "/healthz").contains("password_change_required"));
    }

    /// The page loads its script and styles from this server only, with no inline script
    /// (the CSP forbids them).
    #[test]
    fn the_docs_page_uses_same_origin_assets_only() {
        let page = std::str::from_utf8(PAGE).unwrap();
        let mut refs = Vec::new();
        for attr in ["src=\"", "href=\""] {
            let mut rest = page;
            while let Some(at) = rest.find(attr) {
                rest = &rest[at + attr.len()..];
                refs.push(rest[..rest.find('"').unwrap()].to_string());
            }
        }
        let routed = [
            "/api/docs/swagger-ui-bundle.js",
            "/api/docs/init.js",
            "/api/docs/swagger-ui.css",
            "/api/openapi.json",
        ];
        assert!(refs.len() >= 3, "{refs:?}");
        for r in &refs {
            assert!(routed.contains(&r.as_str()), "the page refers to {r}");
        }
        assert_eq!(
            page.matches("<script").count(),
            page.matches("<script src=").count(),
            "an inline script"
        );
        let init = std::str::from_utf8(INIT).unwrap();
        assert!(init.contains("url: \"/api/openapi.json\""));
        assert!(init.contains("validatorUrl: null"));
    }
}
