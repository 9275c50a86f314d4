//! Deployed models as something to share: the model package a browser (the app, the embed
//! widget, a partner's page) downloads to run a model itself, and the immutable ONNX bytes of
//! each version. A deployment's sharing settings (public or not, which other sites' origins
//! may call it) are the registry's ([`crate::registry::sharing`]).
//!
//! - `GET /api/deployments/{name}/package`: [`b3o_models::package::ModelPackage`] JSON of the
//!   version served now (`Cache-Control: no-cache`: it changes on promote).
//! - `GET /api/deployments/{name}/versions/{version}/onnx`: the ONNX bytes, cacheable forever
//!   (`immutable`; a version's bytes never change) with an `ETag` (its SHA-256).
//!
//! Both follow [`super::gate`] (public models answer anyone, CORS for allowed origins).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use b3o_models::package::{ModelPackage, PACKAGE_FORMAT};
use b3o_models::protocol::ErrorBody;
pub use b3o_models::protocol::registry::{Sharing, SharingView};

use super::Inference;
use super::gate::{self, Call};
use crate::accounts::OptionalUser;
use crate::accounts::extract::ApiPath;
use crate::error::ApiError;
use crate::state::AppState;

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

/// These routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(package, onnx))]
pub struct SharingApi;

/// The model package of the version a deployment serves now: what a browser downloads to run
/// the model itself (`Cache-Control: no-cache`: it changes on promote).
#[utoipa::path(
    get,
    operation_id = "get_model_package",
    path = "/api/deployments/{name}/package",
    tag = "inference",
    params(("name" = String, Path, description = "Deployment name")),
    responses(
        (status = 200, description = "The package", body = ModelPackage),
        (status = 401, description = "A private model and no (or a bad) credential", body = ErrorBody),
        (status = 403, description = "A cross-site `Origin` the deployment does not allow", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "A custom model without a built-in architecture (cannot be served)", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
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
            Err(e) => return call.rejected(&headers, e),
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
    call.finish(&shared, &target, result)
}

/// The ONNX bytes of one version of a deployment: immutable, cacheable forever, with its
/// SHA-256 as `ETag` (`If-None-Match` answers 304).
#[utoipa::path(
    get,
    operation_id = "get_deployment_onnx",
    path = "/api/deployments/{name}/versions/{version}/onnx",
    tag = "inference",
    params(
        ("name" = String, Path, description = "Deployment name"),
        ("version" = String, Path, description = "A version id the deployment serves or served (members: any of the group's)"),
    ),
    responses(
        (status = 200, description = "The ONNX model", content_type = "application/octet-stream", body = b3o_models::protocol::registry::Binary),
        (status = 304, description = "`If-None-Match` matched the ETag"),
        (status = 401, description = "A private model and no (or a bad) credential", body = ErrorBody),
        (status = 403, description = "A cross-site `Origin` the deployment does not allow", body = ErrorBody),
        (status = 404, description = "No such deployment or version, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "A custom model without a built-in architecture (cannot be served)", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
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
        Err(e) => return call.rejected(&headers, e),
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
    call.finish(&shared, &target, result)
}
