//! Deployed models as something to share: the model package a browser (the app, the embed
//! widget, a partner's page) downloads to run a model itself, the immutable ONNX bytes of each
//! version, and the sharing settings of a deployment (public or not, which other sites'
//! origins may call it).
//!
//! - `GET /api/deployments/{name}/package`: [`b3o_models::package::ModelPackage`] JSON of the
//!   version served now (`Cache-Control: no-cache`: it changes on promote).
//! - `GET /api/deployments/{name}/versions/{version}/onnx`: the ONNX bytes, cacheable forever
//!   (`immutable`; a version's bytes never change) with an `ETag` (its SHA-256).
//! - `GET/PUT /api/deployments/{name}/sharing`: `{"public": bool, "allowed_origins": [..]}`;
//!   read by those who see the deployment's group, changed by its owner or an administrator.
//!
//! The first two follow [`super::gate`] (public models answer anyone, CORS for allowed
//! origins).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use b3o_models::package::{ModelPackage, PACKAGE_FORMAT};
use serde::{Deserialize, Serialize};

use super::Inference;
use super::gate::{self, Call};
use crate::accounts::extract::{ApiJson, ApiPath};
use crate::accounts::{CurrentUser, OptionalUser};
use crate::db::Db;
use crate::error::ApiError;
use crate::registry;
use crate::state::AppState;

/// Most origins one deployment may list.
pub const MAX_ALLOWED_ORIGINS: usize = 64;

/// The package and ONNX routes (access per deployment, CORS preflight).
pub fn model_router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/deployments/{name}/package",
            get(package).options(gate::preflight),
        )
        .route(
            "/api/deployments/{name}/versions/{version}/onnx",
            get(onnx).options(gate::preflight),
        )
}

/// The sharing settings (group members read, the owner changes).
pub fn owner_router() -> Router<AppState> {
    Router::new().route(
        "/api/deployments/{name}/sharing",
        get(get_sharing).put(put_sharing),
    )
}

/// `GET /api/deployments/{name}/package`.
async fn package(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Response {
    let call = Call::start("package");
    let target =
        match gate::authorize(&state, &shared, user.0.as_ref(), &headers, &name, None).await {
            Ok(t) => t,
            Err(e) => return call.rejected(e),
        };
    let result = super::model(&state, &shared, target.version_id)
        .await
        .map(|m| {
            let package = ModelPackage {
                format: PACKAGE_FORMAT.to_string(),
                name: name.clone(),
                version: m.version_id,
                spec: m.spec.clone(),
                onnx_path: ModelPackage::onnx_path_for(&name, m.version_id),
                onnx_sha256: m.onnx_sha256.clone(),
                onnx_bytes: m.onnx.len() as u64,
            };
            ([(header::CACHE_CONTROL, "no-cache")], Json(package)).into_response()
        });
    call.finish(&target, result)
}

/// `GET /api/deployments/{name}/versions/{version}/onnx`.
async fn onnx(
    user: OptionalUser,
    State(state): State<AppState>,
    Inference(shared): Inference,
    headers: HeaderMap,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Response {
    let call = Call::start("onnx");
    let target = match gate::authorize(
        &state,
        &shared,
        user.0.as_ref(),
        &headers,
        &name,
        Some(&version),
    )
    .await
    {
        Ok(t) => t,
        Err(e) => return call.rejected(e),
    };
    let result = super::model(&state, &shared, target.version_id)
        .await
        .and_then(|m| {
            let etag = HeaderValue::from_str(&format!("\"{}\"", m.onnx_sha256))
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let cache = (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            let matches = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.split(',')
                        .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == etag)
                });
            if matches {
                return Ok(
                    (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), cache]).into_response()
                );
            }
            let disposition = HeaderValue::from_str(&format!(
                "attachment; filename=\"{name}-v{}.onnx\"",
                m.version_id
            ))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok((
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    ),
                    (header::ETAG, etag),
                    cache,
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                m.onnx.clone(),
            )
                .into_response())
        });
    call.finish(&target, result)
}

/// A deployment's sharing settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sharing {
    /// Anyone may use the model, without an account.
    pub public: bool,
    /// Other sites allowed to call it from their pages (CORS), e.g. `https://partner.example`.
    /// Our own origin always may.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

impl Sharing {
    /// Checks and normalises the origins (lower case, no default port, no duplicates).
    pub fn normalised(self) -> Result<Sharing, ApiError> {
        if self.allowed_origins.len() > MAX_ALLOWED_ORIGINS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_ALLOWED_ORIGINS} allowed origins, got {}",
                self.allowed_origins.len()
            )));
        }
        let mut origins = Vec::with_capacity(self.allowed_origins.len());
        for o in &self.allowed_origins {
            let o = gate::normalise_origin(o)
                .map_err(|m| ApiError::BadRequest(format!("allowed_origins: {m}")))?;
            if !origins.contains(&o) {
                origins.push(o);
            }
        }
        Ok(Sharing {
            public: self.public,
            allowed_origins: origins,
        })
    }
}

fn reply(name: &str, sharing: &Sharing, can_change: bool) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": name,
        "public": sharing.public,
        "allowed_origins": sharing.allowed_origins,
        "can_change": can_change,
    }))
}

/// Writes a deployment's sharing settings (the caller checked who may) and drops it from the
/// inference cache.
pub async fn set_sharing(state: &AppState, name: &str, sharing: &Sharing) -> Result<(), ApiError> {
    let origins = serde_json::to_string(&sharing.allowed_origins)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let changed = sqlx::query(
        "UPDATE deployments SET public = ?, allowed_origins_json = ?,
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
         WHERE name = ?",
    )
    .bind(sharing.public)
    .bind(origins)
    .bind(name)
    .execute(&state.db)
    .await?
    .rows_affected();
    super::deployment_changed(state, name);
    if changed == 0 {
        return Err(ApiError::NotFound("no such deployment".into()));
    }
    Ok(())
}

async fn read_sharing(db: &Db, name: &str) -> Result<Sharing, ApiError> {
    let d = super::deployments::load(db, name)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such deployment".into()))?;
    Ok(Sharing {
        public: d.public,
        allowed_origins: d.allowed_origins,
    })
}

/// `GET /api/deployments/{name}/sharing`.
async fn get_sharing(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let d = registry::visible_deployment(&state.db, &user, &name).await?;
    let sharing = read_sharing(&state.db, &name).await?;
    Ok(reply(&name, &sharing, d.access.can_manage()))
}

/// `PUT /api/deployments/{name}/sharing`: the owner of the deployed model's group (or an
/// administrator) makes it public or private and lists the origins allowed to call it.
async fn put_sharing(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<Sharing>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let d = registry::visible_deployment(&state.db, &user, &name).await?;
    d.access.require_owner()?;
    let sharing = req.normalised()?;
    set_sharing(&state, &name, &sharing).await?;
    tracing::info!(
        deployment = %name,
        public = sharing.public,
        origins = sharing.allowed_origins.len(),
        user_id = user.id,
        "deployment sharing changed"
    );
    Ok(reply(&name, &sharing, true))
}
