//! Who may use a deployed model, from which web origins, and the bookkeeping around every
//! model request (CORS headers, Prometheus counts and latencies per model and version).
//!
//! - A **public** deployment answers anyone; a **private** one those who may see its group
//!   (`membership::group_access`), and the pages of the partner sites it lists
//!   (`allowed_origins`): their visitors use it without an account. Anyone else: 401 for
//!   anonymous callers and 404 for others, with the same bodies as for a name that is not
//!   deployed, so names reveal nothing. The `Origin` is the browser's word: a program can
//!   forge it, so a listed site opens a private model to whoever claims to be that site; it
//!   keeps the model off other sites' pages and out of the app, it is not authentication
//!   (SECURITY.md).
//! - A request carrying an `Origin` from another site is served only if the deployment lists
//!   that origin (`allowed_origins`, compared scheme, host and port), or is public and may be
//!   embedded anywhere (`embed_anywhere`); otherwise 403 `origin_not_allowed` naming the
//!   origin and the model (or, private, the hidden answer). Our own origin is `Host` (or, with `--trust-proxy`,
//!   `X-Forwarded-Host`) over our scheme: `https` with `--behind-tls`, `http` otherwise, so a
//!   plain-HTTP page on our host is not taken for our own HTTPS pages. Allowed origins get `Access-Control-Allow-Origin`, on preflight
//!   (`OPTIONS`, [`preflight`]) and on every answer, errors included, so the partner's page can
//!   read the error. Refusals of a request from another site carry `Access-Control-Allow-Origin:
//!   *` ([`Call::rejected`]), so that its page can read why (the bodies name nothing the
//!   caller may not know; no credentials are allowed with `*`).
//! - A pinned version (`/versions/{v}`) must be one of the deployment's group; callers outside
//!   the group may pin only versions the deployment serves or has served.
//! - Text from the caller echoed in an error (a model name, an origin) goes through [`shown`]:
//!   cut to [`SHOWN_CHARS`] characters, control characters escaped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::deployments::Deployment;
use super::{Inference, RunInfo, Shared, telemetry};
use crate::accounts::CurrentUser;
use crate::accounts::extract::ApiPath;
use crate::error::ApiError;
use crate::membership;
use crate::registry;
use crate::state::AppState;

/// What a request may run: a deployment at one version.
#[derive(Debug, Clone)]
pub struct Target {
    pub deployment: Arc<Deployment>,
    pub version_id: i64,
    /// The caller's origin when it is another site on the allow-list: echoed in CORS headers.
    pub cors_origin: Option<HeaderValue>,
}

/// Most characters of caller-supplied text echoed in an error message.
pub const SHOWN_CHARS: usize = 64;

/// `text` as it may appear in an error message: at most [`SHOWN_CHARS`] characters (then
/// `…`), control characters escaped, so an answer never carries a caller's megabyte or their
/// terminal escapes back.
pub fn shown(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == SHOWN_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The answer for a name that is not deployed or that the caller may not see.
fn hidden(name: &str, user: Option<&CurrentUser>) -> ApiError {
    let name = shown(name);
    match user {
        None => ApiError::Unauthorized(format!(
            "no public model is deployed as `{name}`; sign in to use private models"
        )),
        Some(_) => ApiError::NotFound(format!("no deployed model named `{name}`")),
    }
}

fn no_version(name: &str, version: &str) -> ApiError {
    ApiError::NotFound(format!(
        "model `{}` has no version `{}`",
        shown(name),
        shown(version)
    ))
}

/// Checks that `user` (if any) may use deployment `name` (at `version`, if given) from the
/// request's origin.
pub async fn authorize(
    state: &AppState,
    shared: &super::Shared,
    user: Option<&CurrentUser>,
    headers: &HeaderMap,
    name: &str,
    version: Option<&str>,
) -> Result<Target, ApiError> {
    let deployment = shared
        .deployments
        .get(&state.db, name)
        .await?
        .ok_or_else(|| hidden(name, user))?;
    let origin = check_origin(state, headers, &deployment);
    // Whether the caller may see the group (checked when needed: public models need not, nor
    // private ones called from a listed partner site's page).
    let mut in_group = None;
    let from_partner = matches!(origin, Ok(Some(_)));
    if !deployment.public && !from_partner {
        let user = user.ok_or_else(|| hidden(name, None))?;
        membership::group_access(&state.db, user, deployment.group_id)
            .await
            .map_err(|e| match e {
                ApiError::NotFound(_) => hidden(name, Some(user)),
                e => e,
            })?;
        in_group = Some(true);
    }
    let cors_origin = origin?;
    let version_id = match version {
        None => deployment.version_id,
        Some(v) => {
            let id: i64 = v
                .parse()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| no_version(name, v))?;
            let same_group =
                shared.deployments.version_group(&state.db, id).await? == Some(deployment.group_id);
            if !same_group {
                return Err(no_version(name, v));
            }
            if !deployment.served.contains(&id) {
                let member = match (in_group, user) {
                    (Some(m), _) => m,
                    (None, Some(user)) => {
                        membership::group_access(&state.db, user, deployment.group_id)
                            .await
                            .is_ok()
                    }
                    (None, None) => false,
                };
                if !member {
                    return Err(no_version(name, v));
                }
            }
            id
        }
    };
    Ok(Target {
        deployment,
        version_id,
        cors_origin,
    })
}

/// The request's `Origin` when it is another site's: `Ok(None)` for no origin or our own,
/// `Ok(Some)` for an allowed one (listed, or any for a public model embeddable anywhere), 403
/// otherwise.
fn check_origin(
    state: &AppState,
    headers: &HeaderMap,
    deployment: &Deployment,
) -> Result<Option<HeaderValue>, ApiError> {
    let Some(value) = headers.get(header::ORIGIN) else {
        return Ok(None);
    };
    let origin = value.to_str().unwrap_or_default();
    if let Some((scheme, authority)) = origin.split_once("://")
        && let Some((our_scheme, our_authority)) = our_origin(state, headers)
        && authority.eq_ignore_ascii_case(our_authority)
    {
        if scheme.eq_ignore_ascii_case(our_scheme) {
            return Ok(None);
        }
        // Our host over the other scheme. Behind TLS, a plain-HTTP page on our host: another
        // origin, which anyone on the network path can forge. Without `--behind-tls`, most
        // likely a TLS proxy the server was not told about: the message says so.
        let allowed = registry::sharing::normalise_origin(origin)
            .is_ok_and(|o: String| deployment.allows_origin(&o));
        if !allowed {
            let why = if our_scheme == "https" {
                "this server is served over HTTPS (--behind-tls), so a plain-HTTP page on its host is another site"
            } else {
                "this server serves plain HTTP; start it with --behind-tls when it is reached over HTTPS"
            };
            return Err(ApiError::Forbidden(format!(
                "origin `{}` is this server's host over another scheme: {why}",
                shown(origin)
            )));
        }
    }
    // Compared whole (scheme, host, port): `http://partner.example` is not an allow-listed
    // `https://partner.example`. An origin that does not parse matches nothing.
    let allowed = registry::sharing::normalise_origin(origin)
        .is_ok_and(|o: String| deployment.allows_origin(&o));
    if allowed {
        Ok(Some(value.clone()))
    } else {
        Err(ApiError::OriginNotAllowed(format!(
            "origin `{}` may not use model `{}`: its owner lets only the sites it lists embed \
             it, and has not added this one",
            shown(origin),
            deployment.name
        )))
    }
}

/// This server's origin as the browser reached it: the scheme it serves (`https` with
/// `--behind-tls`, else `http`) and `Host`, or with `--trust-proxy` the proxy's
/// `X-Forwarded-Host`. `None` without a host.
fn our_origin<'h>(state: &AppState, headers: &'h HeaderMap) -> Option<(&'static str, &'h str)> {
    let host = |name: &str| headers.get(name).and_then(|h| h.to_str().ok());
    let settings = &state.accounts.settings;
    let forwarded = settings
        .trust_proxy
        .then(|| host("x-forwarded-host"))
        .flatten()
        .and_then(|h| h.split(',').next_back())
        .map(str::trim);
    let scheme = if settings.behind_tls { "https" } else { "http" };
    forwarded.or_else(|| host("host")).map(|h| (scheme, h))
}

const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
/// With Triton's binary tensor data extension's length header, both ways.
const ALLOW_HEADERS: &str = "authorization, content-type, inference-header-content-length";
const EXPOSE_HEADERS: &str = "etag, content-disposition, inference-header-content-length";

fn set_cors(headers: &mut HeaderMap, origin: &HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

/// `OPTIONS` on a model route: the CORS preflight of a partner's page. 204 with the CORS
/// headers for an allowed origin (or our own), 403 naming the origin and the model otherwise;
/// a private model's preflight answers like an unknown name unless the origin is allowed.
pub async fn preflight(
    State(state): State<AppState>,
    Inference(shared): Inference,
    ApiPath(params): ApiPath<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let name = params.get("name").cloned().unwrap_or_default();
    let mut ok = (StatusCode::NO_CONTENT, [(header::ALLOW, ALLOW_METHODS)]).into_response();
    if !headers.contains_key(header::ORIGIN) {
        return ok;
    }
    let deployment = match shared.deployments.get(&state.db, &name).await {
        Ok(Some(d)) => d,
        Ok(None) => return hidden(&name, None).into_response(),
        Err(e) => return e.into_response(),
    };
    match check_origin(&state, &headers, &deployment) {
        Ok(Some(origin)) => {
            let h = ok.headers_mut();
            set_cors(h, &origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            ok
        }
        Ok(None) => ok,
        Err(_) if !deployment.public => hidden(&name, None).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The bookkeeping of one model request: started when the handler starts, finished with the
/// answer (CORS headers for allowed origins, counts and latency per model and version, and for
/// inference requests the model's statistics, [`super::stats`]). Any transport: the HTTP
/// routes end with [`Call::finish`] or [`Call::rejected`], the gRPC service with
/// [`Call::done`] or [`Call::refused`].
pub struct Call {
    route: &'static str,
    started: Instant,
    /// An inference request: counted in the deployment's statistics.
    inference: bool,
}

impl Call {
    /// `route` is a fixed label (`v2_metadata`, `grpc_ready`, ...), never user input.
    pub fn start(route: &'static str) -> Self {
        Self {
            route,
            started: Instant::now(),
            inference: false,
        }
    }

    /// An inference request (`v2_infer`, `grpc_infer`, `csv`, ...): also counted in the
    /// deployment's statistics once it reached the model, as a success when its answer
    /// carries the model's [`RunInfo`] (HTTP: in the response's extensions), else a failure.
    pub fn inference(route: &'static str) -> Self {
        Self {
            inference: true,
            ..Self::start(route)
        }
    }

    /// A request refused before it reached a model (unknown name, refused caller or origin).
    /// From another site's page (an `Origin`), readable there (`Access-Control-Allow-Origin:
    /// *`, no credentials), so a partner's widget can say why: the bodies are the same for
    /// every caller of that kind and name nothing it may not know.
    pub fn rejected(self, headers: &HeaderMap, e: ApiError) -> Response {
        let mut response = e.into_response();
        if headers.contains_key(header::ORIGIN) {
            let h = response.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            h.append(header::VARY, HeaderValue::from_static("origin"));
        }
        self.refused(response.status());
        response
    }

    /// A request refused before it reached a model, answered with `status` (or the gRPC code
    /// of that status).
    pub fn refused(self, status: StatusCode) {
        telemetry::record_rejected(self.route, status);
    }

    /// The answer of a request that reached `target`.
    pub fn finish(
        self,
        shared: &Shared,
        target: &Target,
        result: Result<Response, ApiError>,
    ) -> Response {
        let mut response = result.unwrap_or_else(IntoResponse::into_response);
        if let Some(origin) = &target.cors_origin {
            set_cors(response.headers_mut(), origin);
        }
        let run = response.extensions_mut().remove::<RunInfo>();
        self.done(shared, target, response.status(), run.as_ref());
        response
    }

    /// The end of a request that reached `target`, answered with `status` (a gRPC answer: the
    /// HTTP status of its error): Prometheus counts and latency, and for an inference request
    /// the deployment's statistics, a success with what the model did (`run`) or a failure.
    pub fn done(self, shared: &Shared, target: &Target, status: StatusCode, run: Option<&RunInfo>) {
        let elapsed = self.started.elapsed();
        telemetry::record_request(
            &target.deployment,
            target.version_id,
            self.route,
            status,
            elapsed,
        );
        if self.inference {
            let run = run.filter(|_| status.is_success());
            shared
                .stats
                .record(&target.deployment.name, target.version_id, elapsed, run);
        }
    }
}
