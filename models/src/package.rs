//! The model package: what a client (browser engine, embed widget, native client) downloads to
//! run a deployed model locally. The metadata is JSON; the ONNX graph is fetched separately from
//! `onnx_path` as bytes, so it can be cached by the browser under an immutable URL.
//!
//! Served by `GET /api/deployments/{name}/package`; the ONNX from
//! `GET /api/deployments/{name}/versions/{version}/onnx`. A package is keyed by
//! `(name, version)`: a version's bytes never change, so caches never need invalidation, only
//! a fresh package lookup to learn the current version.

use serde::{Deserialize, Serialize};

use crate::model::ModelSpec;

/// The format tag carried by every package, bumped on incompatible changes.
pub const PACKAGE_FORMAT: &str = "b3o-model-package/1";

/// A deployed model version, ready to run on the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelPackage {
    /// Always [`PACKAGE_FORMAT`].
    pub format: String,
    /// The deployment name (`churn`, `digits`, ...).
    pub name: String,
    /// The registry version id the deployment points at.
    pub version: i64,
    /// Architecture, preprocessing, task, labels, input shape.
    pub spec: ModelSpec,
    /// Server-relative URL of the ONNX bytes of this version.
    pub onnx_path: String,
    /// Lower-case hex SHA-256 of the ONNX bytes, checked by the client after download.
    pub onnx_sha256: String,
    /// Size of the ONNX bytes.
    pub onnx_bytes: u64,
}

impl ModelPackage {
    /// The ONNX URL path for `name` at `version`.
    pub fn onnx_path_for(name: &str, version: i64) -> String {
        format!("/api/deployments/{name}/versions/{version}/onnx")
    }
}
