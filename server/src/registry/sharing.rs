//! A deployment's sharing settings: public or not, which other sites' pages may embed it, and
//! for a public one whether any site may. `GET/PUT /api/deployments/{name}/sharing`
//! (`{"public": bool, "allowed_origins": [..], "embed_anywhere": bool}`):
//! read by those who see the deployment's group, changed by its owner or an administrator,
//! stored by [`super::set_sharing`]. The inference gate reads them
//! ([`crate::inference::gate`]) and never writes them.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use b3o_models::protocol::ErrorBody;
pub use b3o_models::protocol::registry::{Sharing, SharingView};

use crate::accounts::CurrentUser;
use crate::accounts::extract::{ApiJson, ApiPath};
use crate::db::Db;
use crate::error::ApiError;
use crate::registry;
use crate::state::AppState;

/// Most origins one deployment may list.
pub const MAX_ALLOWED_ORIGINS: usize = 64;

/// The sharing settings (group members read, the owner changes).
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/deployments/{name}/sharing",
        get(get_sharing).put(put_sharing),
    )
}

/// These routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(get_sharing, put_sharing))]
pub struct SharingApi;

/// `sharing` checked, with its origins normalised (lower case, no default port, no
/// duplicates).
pub fn normalised(sharing: Sharing) -> Result<Sharing, ApiError> {
    if sharing.embed_anywhere && !sharing.public {
        return Err(ApiError::BadRequest(
            "embed_anywhere needs public: a private model is embedded only by the sites in \
             allowed_origins"
                .into(),
        ));
    }
    if sharing.allowed_origins.len() > MAX_ALLOWED_ORIGINS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_ALLOWED_ORIGINS} allowed origins, got {}",
            sharing.allowed_origins.len()
        )));
    }
    let mut origins = Vec::with_capacity(sharing.allowed_origins.len());
    for o in &sharing.allowed_origins {
        let o = normalise_origin(o)
            .map_err(|m| ApiError::BadRequest(format!("allowed_origins: {m}")))?;
        if !origins.contains(&o) {
            origins.push(o);
        }
    }
    Ok(Sharing {
        public: sharing.public,
        allowed_origins: origins,
        embed_anywhere: sharing.embed_anywhere,
    })
}

fn reply(name: &str, sharing: Sharing, can_change: bool) -> Json<SharingView> {
    Json(SharingView {
        name: name.to_string(),
        public: sharing.public,
        allowed_origins: sharing.allowed_origins,
        embed_anywhere: sharing.embed_anywhere,
        can_change,
    })
}

async fn read_sharing(db: &Db, name: &str) -> Result<Sharing, ApiError> {
    let d = registry::deployments::load(db, name)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such deployment".into()))?;
    Ok(Sharing {
        public: d.public,
        allowed_origins: d.allowed_origins,
        embed_anywhere: d.embed_anywhere,
    })
}

/// A deployment's sharing settings, for those who may see its group.
#[utoipa::path(
    get,
    operation_id = "get_sharing",
    path = "/api/deployments/{name}/sharing",
    tag = "registry",
    params(("name" = String, Path, description = "Deployment name")),
    responses(
        (status = 200, description = "The settings, and whether the caller may change them", body = SharingView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see it", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn get_sharing(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<SharingView>, ApiError> {
    let d = registry::visible_deployment(&state.db, &user, &name).await?;
    let sharing = read_sharing(&state.db, &name).await?;
    Ok(reply(&name, sharing, d.access.can_manage()))
}

/// The owner of the deployed model's group (or an administrator) makes it public or private,
/// lists the other sites whose pages may embed it (for a private model: their visitors use it
/// without an account) and, for a public one, may let any site embed it.
#[utoipa::path(
    put,
    operation_id = "set_sharing",
    path = "/api/deployments/{name}/sharing",
    tag = "registry",
    params(("name" = String, Path, description = "Deployment name")),
    request_body(content = Sharing, content_type = "application/json"),
    responses(
        (status = 200, description = "The settings as stored (origins normalised)", body = SharingView),
        (status = 400, description = "Malformed body, a bad origin or more than 64 of them, or embed_anywhere on a private model", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not the group's owner or an administrator, or a missing X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see it", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn put_sharing(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<Sharing>,
) -> Result<Json<SharingView>, ApiError> {
    let d = registry::visible_deployment(&state.db, &user, &name).await?;
    d.access.require_owner()?;
    let sharing = normalised(req)?;
    registry::set_sharing(&state.db, &state.registry, &name, &sharing).await?;
    tracing::info!(
        deployment = %name,
        public = sharing.public,
        embed_anywhere = sharing.embed_anywhere,
        origins = sharing.allowed_origins.len(),
        user_id = user.id,
        "deployment sharing changed"
    );
    Ok(reply(&name, sharing, true))
}

/// A web origin as browsers send it: `http(s)://host[:port]`, lower case, without a default
/// port, path, query or credentials. The error names what is wrong.
pub fn normalise_origin(origin: &str) -> Result<String, String> {
    let o = origin.trim().to_ascii_lowercase();
    let (scheme, rest) = o
        .split_once("://")
        .ok_or_else(|| format!("`{origin}` is not an origin like https://partner.example"))?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => {
            return Err(format!(
                "`{origin}`: only http and https origins can call models"
            ));
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ', '*']) {
        return Err(format!(
            "`{origin}` is not an origin like https://partner.example (no path, wildcard or credentials)"
        ));
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (inner, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("`{origin}` has an invalid host"))?;
        let ipv6 = !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        if !ipv6 {
            return Err(format!("`{origin}` has an invalid host"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("`{origin}` has an invalid port"))?,
            ),
        };
        (&rest[..inner.len() + 2], port)
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let name_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !name_ok {
            return Err(format!("`{origin}` has an invalid host"));
        }
        (host, port)
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("`{origin}` has an invalid port"));
    }
    let port = port
        .map(|p| format!(":{p}"))
        .filter(|p| p != default_port)
        .unwrap_or_default();
    Ok(format!("{scheme}://{host}{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_or_refused_with_a_reason() {
        let ok = |o: &str| normalise_origin(o).unwrap();
        assert_eq!(ok("https://Partner.Example"), "https://partner.example");
        assert_eq!(ok("https://partner.example/"), "https://partner.example");
        assert_eq!(ok("https://partner.example:443"), "https://partner.example");
        assert_eq!(ok("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(ok("http://[::1]:3000"), "http://[::1]:3000");
        for bad in [
            "partner.example",
            "ftp://x.example",
            "https://x.example/path",
            "https://*.example",
            "https://user@x.example",
            "https://x.example:port",
            "https://",
            "https://exa mple.com",
        ] {
            assert!(normalise_origin(bad).is_err(), "{bad}");
        }
    }
}
