//! The model registry: every round's global model is a version (weights blob, spec, metrics,
//! lineage: group, round, parent, contributors). Versions can be listed and downloaded, and
//! promoted to a named deployment that can be rolled back to what it pointed at before.
//!
//! Access follows the version's group ([`crate::federation::auth`]): those who may see the
//! group see its versions and deployments (404 for everyone else, as for ids that do not
//! exist); its owner and administrators promote and roll back (403 for members).
//!
//! Deployment names are one namespace for the whole server (they are the models' URLs). A new
//! name follows [`check_new_name`]; names stored before that rule keep working for the group
//! that holds them. A name the caller's group does not hold is either free or *unavailable*
//! (held by another group, or reserved), and every unavailable name gets the same 409, so a
//! promote does not tell a private deployment from a reserved word (see `promote`).
//!
//! The registry owns the `model_versions` and `deployments` rows: it alone writes them
//! ([`versions`]: a version's files and row; [`deployments`]: new deployments, sharing
//! settings, the history; promote and rollback here; [`gate`]: the promotion gate) and it
//! calls no other module back when they change (readers compare [`Changes`]).
//!
//! Versions are shown with their federated evaluation ([`evaluation`]: the members' metrics
//! on their held-out rows, read from the federation's `evaluations` through the round that
//! made each version, one query per page), beside the trainers' own `metrics`. Members may
//! also evaluate any version of their group later (`POST /api/versions/{id}/evaluation`).
//!
//! A deployment's history (`deployment_history`) is both the stack a rollback walks (the
//! promotions not undone, [`deployments::SERVED`]) and an audit trail: every promotion,
//! override of the gate, rollback and gate change, with who made it and a note, read by the
//! group with `GET /api/deployments/{name}/events` (not in the deployment's view, which a
//! public model shows to anyone).

pub mod deployments;
mod evaluation;
mod gate;
pub mod sharing;
pub mod versions;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use b3o_models::protocol::registry::{
    Contributor, DeploymentAction, DeploymentEvent, DeploymentEvents, DeploymentList,
    DeploymentView, GateRefusal, MAX_REASON_CHARS, Promote, VersionDetail, VersionDetailList,
};
use b3o_models::protocol::{ErrorBody, VersionView};
use serde_json::Value;

use crate::accounts::extract::{ApiJson, ApiPath};
use crate::accounts::{CurrentUser, OptionalUser};
use crate::db::Db;
use crate::error::ApiError;
use crate::membership::{self, GroupAccess};
use crate::state::AppState;
pub use deployments::{Changes, Deployment, create_deployment, set_sharing};
pub use versions::{NewVersion, StoredWeights, insert_version, weights_response};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/groups/{id}/versions", get(list_versions))
        .route("/api/versions/{id}", get(get_version))
        .route("/api/versions/{id}/weights", get(version_weights))
        .route("/api/versions/{id}/onnx", get(version_onnx))
        .route(
            "/api/versions/{id}/evaluation",
            post(evaluation::report_version_evaluation),
        )
        .route("/api/deployments", get(list_deployments))
        .route("/api/deployments/{name}", put(promote).get(get_deployment))
        .route("/api/deployments/{name}/rollback", post(rollback))
        .route("/api/deployments/{name}/gate", put(gate::set_gate))
        .route("/api/deployments/{name}/events", get(deployment_events))
        .merge(sharing::router())
}

/// The registry's routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_versions,
        get_version,
        version_weights,
        version_onnx,
        evaluation::report_version_evaluation,
        list_deployments,
        get_deployment,
        promote,
        rollback,
        gate::set_gate,
        deployment_events
    ),
    components(schemas(GateRefusal))
)]
pub struct RegistryApi;

type VersionRow = (
    i64,
    i64,
    i64,
    Option<i64>,
    String,
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<f64>,
    Option<String>,
);

/// The version's columns, then its privacy: the epsilon stored with the round that made it
/// (0 for version 0 of a DP group) and its group's stored DP settings, whose delta is read here
/// (JSON is parsed in Rust, not by the SQL engine: the same on every dialect).
const VERSION_COLUMNS: &str = "id, group_id, round, parent_id, weights_sha256, size_bytes,
    num_params, spec_json, metrics_json, contributors_json, onnx_path, created_at, weights_path,
    CASE WHEN model_versions.round = 0 THEN 0.0 ELSE (SELECT d.epsilon FROM rounds r
        JOIN dp_rounds d ON d.round_id = r.id WHERE r.result_version_id = model_versions.id) END,
    (SELECT g.dp_json FROM groups g WHERE g.id = model_versions.group_id)";

/// The delta of a group's stored DP settings (`groups.dp_json`), if it has one.
fn dp_delta(dp_json: &str) -> Option<f64> {
    serde_json::from_str::<serde_json::Value>(dp_json)
        .ok()?
        .get("delta")?
        .as_f64()
}

fn version_view(r: &VersionRow) -> VersionView {
    VersionView {
        id: r.0,
        group_id: r.1,
        round: r.2,
        parent_id: r.3,
        weights_sha256: r.4.clone(),
        size_bytes: r.5,
        num_params: r.6,
        spec: serde_json::from_str::<Value>(&r.7).unwrap_or(Value::Null),
        metrics: parse_metrics(&r.8),
        contributors: serde_json::from_str::<Vec<Contributor>>(&r.9).unwrap_or_default(),
        has_onnx: r.10.is_some(),
        privacy: match (r.13, r.14.as_deref().and_then(dp_delta)) {
            (Some(epsilon), Some(delta)) => {
                Some(b3o_models::protocol::VersionPrivacy { epsilon, delta })
            }
            _ => None,
        },
        created_at: r.11.clone(),
    }
}

/// A stored metrics map (`metrics_json`): its numbers by name; `None` if it is not an object.
fn parse_metrics(text: &str) -> Option<BTreeMap<String, f64>> {
    let map = serde_json::from_str::<serde_json::Map<String, Value>>(text).ok()?;
    Some(
        map.into_iter()
            .filter_map(|(k, v)| v.as_f64().map(|v| (k, v)))
            .collect(),
    )
}

/// The answer for a version the caller may not see, identical to one that does not exist.
fn version_not_found() -> ApiError {
    ApiError::NotFound("no such model version".into())
}

/// The answer for a deployment the caller may not see, identical to one that does not exist.
fn deployment_not_found() -> ApiError {
    ApiError::NotFound("no such deployment".into())
}

async fn load_version(db: &Db, version_id: i64) -> Result<VersionRow, ApiError> {
    let row: Option<VersionRow> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} FROM model_versions WHERE id = $1"
    ))
    .bind(version_id)
    .fetch_optional(db)
    .await?;
    row.ok_or_else(version_not_found)
}

/// A version the caller may see, with the caller's access to its group; 404 otherwise.
async fn visible_version(
    db: &Db,
    user: &CurrentUser,
    version_id: i64,
) -> Result<(VersionRow, GroupAccess), ApiError> {
    let v = load_version(db, version_id).await?;
    let access = membership::group_access(db, user, v.1)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => version_not_found(),
            e => e,
        })?;
    Ok((v, access))
}

/// What a deployment serves, as [`visible_deployment`] finds it.
#[derive(Debug, Clone)]
pub struct DeploymentRef {
    pub name: String,
    pub version_id: i64,
    pub group_id: i64,
    /// The caller's access to the group whose model is deployed.
    pub access: GroupAccess,
}

/// The deployment `name` if `user` may see it (its group is visible to the caller), else
/// `404 no such deployment` exactly as for a name that is not deployed. For other modules
/// (inference, sharing) that serve deployments to signed-in callers.
pub async fn visible_deployment(
    db: &Db,
    user: &CurrentUser,
    name: &str,
) -> Result<DeploymentRef, ApiError> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT d.version_id, v.group_id FROM deployments d
         JOIN model_versions v ON v.id = d.version_id WHERE d.name = $1",
    )
    .bind(name)
    .fetch_optional(db)
    .await?;
    let (version_id, group_id) = row.ok_or_else(deployment_not_found)?;
    let access = membership::group_access(db, user, group_id)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => deployment_not_found(),
            e => e,
        })?;
    Ok(DeploymentRef {
        name: name.to_string(),
        version_id,
        group_id,
        access,
    })
}

/// A group's model versions, by round.
#[utoipa::path(
    get,
    operation_id = "list_group_versions",
    path = "/api/groups/{id}/versions",
    tag = "registry",
    params(("id" = i64, Path, description = "Group id")),
    responses(
        (status = 200, description = "The group's versions, oldest first, each with its federated evaluation", body = VersionDetailList),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such group, or the caller may not see it", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn list_versions(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(group_id): ApiPath<i64>,
) -> Result<Json<VersionDetailList>, ApiError> {
    membership::group_access(&state.db, &user, group_id).await?;
    let rows: Vec<VersionRow> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} FROM model_versions WHERE group_id = $1 ORDER BY round"
    ))
    .bind(group_id)
    .fetch_all(&state.db)
    .await?;
    let mut evaluated = evaluation::of_group(&mut *state.db.acquire().await?, group_id).await?;
    Ok(Json(VersionDetailList {
        versions: rows
            .iter()
            .map(|r| VersionDetail {
                version: version_view(r),
                federated: evaluated.remove(&r.0).unwrap_or_default(),
            })
            .collect(),
    }))
}

/// One model version: lineage, spec, the trainers' metrics, contributors, and its federated
/// evaluation (each member's metrics on its held-out rows and their sample-weighted mean).
#[utoipa::path(
    get,
    operation_id = "get_version",
    path = "/api/versions/{id}",
    tag = "registry",
    params(("id" = i64, Path, description = "Version id")),
    responses(
        (status = 200, description = "The version", body = VersionDetail),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such version, or the caller may not see its group", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn get_version(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(version_id): ApiPath<i64>,
) -> Result<Json<VersionDetail>, ApiError> {
    let (v, _) = visible_version(&state.db, &user, version_id).await?;
    let federated = evaluation::of_version(&mut *state.db.acquire().await?, v.1, v.0).await?;
    Ok(Json(VersionDetail {
        version: version_view(&v),
        federated,
    }))
}

/// A version's weights: a safetensors file in B3O's update format.
#[utoipa::path(
    get,
    operation_id = "get_version_weights",
    path = "/api/versions/{id}/weights",
    tag = "registry",
    params(("id" = i64, Path, description = "Version id")),
    responses(
        (status = 200, description = "The weights (safetensors)", content_type = "application/octet-stream", body = b3o_models::protocol::registry::Binary),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such version, or the caller may not see its group", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn version_weights(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(version_id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let (v, _) = visible_version(&state.db, &user, version_id).await?;
    versions::weights_response(&state, v.0, v.2, &v.12).await
}

/// A version's ONNX export.
#[utoipa::path(
    get,
    operation_id = "get_version_onnx",
    path = "/api/versions/{id}/onnx",
    tag = "registry",
    params(("id" = i64, Path, description = "Version id")),
    responses(
        (status = 200, description = "The ONNX model", content_type = "application/octet-stream", body = b3o_models::protocol::registry::Binary),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such version, the caller may not see its group, or it has no ONNX export (custom layouts)", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn version_onnx(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(version_id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let (v, _) = visible_version(&state.db, &user, version_id).await?;
    let path = v.10.ok_or_else(|| {
        ApiError::NotFound(format!(
            "model version {version_id} has no ONNX export (custom layouts have none)"
        ))
    })?;
    let bytes = state.blobs.get(&path).await?;
    Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/octet-stream")
        .header(
            axum::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"version-{version_id}.onnx\""),
        )
        .body(axum::body::Body::from(bytes))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Longest deployment name.
pub const MAX_NAME_CHARS: usize = 100;

/// The `/metrics` label that counts private deployments (`crate::inference::telemetry`), so
/// no deployment may take it.
pub const PRIVATE_DEPLOYMENTS_LABEL: &str = "private";

/// Names no deployment may take.
const RESERVED_NAMES: &[&str] = &[PRIVATE_DEPLOYMENTS_LABEL];

/// The rule for a new deployment name, as a 400 naming it: 1 to [`MAX_NAME_CHARS`] characters
/// among `a-z`, `0-9`, `-`, `_`, `.`, starting with a letter or digit, without `..` and not
/// ending in `.` (so never `.`, `..` or a hidden or extension-only file name). Lower case
/// only, so that `Churn` cannot pass for `churn`; the web app's slugs (which may end in `-`
/// when cut at 100 characters) and the demo names (`churn`, `digits`) follow it. Safe in URLs,
/// file names and headers.
pub fn check_new_name(name: &str) -> Result<(), ApiError> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    let ok = (1..=MAX_NAME_CHARS).contains(&bytes.len())
        && bytes
            .iter()
            .all(|&b| alnum(b) || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().copied().is_some_and(alnum)
        && bytes.last() != Some(&b'.')
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "a deployment name is 1 to {MAX_NAME_CHARS} characters among a-z, 0-9, `-`, `_` and \
             `.`, starts with a letter or digit, has no `..` and does not end with `.`"
        )))
    }
}

/// The one answer for a name the caller's group cannot take, whoever holds it.
fn name_unavailable(name: &str) -> ApiError {
    ApiError::Conflict(format!(
        "the deployment name `{name}` is not available (taken or reserved); choose another"
    ))
}

/// The owner of a version's group (or an administrator) points deployment `name` at it. A
/// name serves one group's models.
///
/// Disclosure: names are one namespace, so a create that fails must say the name cannot be
/// had; what it must not say is *why*. A name held by another group (private or not, visible
/// to the caller or not) and a reserved name both get [`name_unavailable`], word for word; a
/// malformed name gets the rule's 400 whether or not it is held (names stored before the rule
/// may not follow it), and only the group that holds a name skips the rule. Checked after the
/// caller is known to own the version, so callers who cannot promote learn nothing at all.
///
/// A deployment with a promotion gate (`PUT /api/deployments/{name}/gate`) refuses a version
/// whose members' evaluation of the gate's metric (sample-weighted) is worse than the deployed
/// version's by more than the gate's `max_drop` (lower is better for `loss`, `mse`, `mae`,
/// `rmse`, `log_loss` and `*_loss`, higher for other metrics), or that no member evaluated:
/// 409 `promotion_gate_failed` with the numbers in `error.gate`. When the deployed version
/// has no evaluation, the version passes. `override_gate` promotes it anyway; the history
/// records an `override` with the numbers, the caller and the `reason`.
#[utoipa::path(
    put,
    operation_id = "promote_deployment",
    path = "/api/deployments/{name}",
    tag = "registry",
    params(("name" = String, Path, description = "Deployment name: 1 to 100 of a-z, 0-9, `-`, `_`, `.`")),
    request_body(content = Promote, content_type = "application/json"),
    responses(
        (status = 200, description = "The deployment now serves the version", body = DeploymentView),
        (status = 201, description = "The deployment was created", body = DeploymentView),
        (status = 400, description = "Malformed body, a reason over 500 characters, or a name that breaks the naming rule", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not the group's owner or an administrator, or a missing X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such version, or the caller may not see its group", body = ErrorBody),
        (status = 409, description = "The name is taken by another group or reserved (`conflict`), or the deployment's promotion gate refuses the version (`promotion_gate_failed`, with the numbers in `error.gate`: the body is then a `GateRefusal`)", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn promote(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<Promote>,
) -> Result<(StatusCode, Json<DeploymentView>), ApiError> {
    let (v, access) = visible_version(&state.db, &user, req.version_id).await?;
    access.require_owner()?;
    let reason = req
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
        return Err(ApiError::BadRequest(format!(
            "reason: at most {MAX_REASON_CHARS} characters"
        )));
    }
    let mut tx = crate::db::begin_write(&state.db).await?;
    let current: Option<(i64, i64)> = sqlx::query_as(
        "SELECT d.version_id, v.group_id FROM deployments d
         JOIN model_versions v ON v.id = d.version_id WHERE d.name = $1",
    )
    .bind(&name)
    .fetch_optional(&mut *tx)
    .await?;
    let held_by_us = current.is_some_and(|(_, group)| group == v.1);
    if !held_by_us {
        check_new_name(&name)?;
        if current.is_some() || RESERVED_NAMES.contains(&name.as_str()) {
            return Err(name_unavailable(&name));
        }
    }
    // The gate, for a version that is not the one served (a new name has no gate).
    let mut action = DeploymentAction::Promote;
    let mut note = None;
    if let Some((deployed, _)) = current.filter(|&(deployed, _)| deployed != v.0)
        && let Some(g) = gate::gate_of(&mut tx, &name).await?
    {
        let candidate = evaluation::of_version(&mut tx, v.1, v.0).await?;
        let served = evaluation::of_version(&mut tx, v.1, deployed).await?;
        let check = gate::check(&g, v.0, &candidate, deployed, &served);
        match gate::decide(&name, &check) {
            gate::Verdict::Passed(passed) => note = Some(passed),
            gate::Verdict::Refused { note: refused, .. } if req.override_gate => {
                action = DeploymentAction::Override;
                note = Some(refused);
            }
            gate::Verdict::Refused { message, .. } => {
                return Err(ApiError::PromotionGateFailed {
                    message,
                    check: Box::new(check),
                });
            }
        }
    }
    let note = match (note, reason) {
        (Some(n), Some(r)) => Some(format!("{n}. Reason: {r}")),
        (None, Some(r)) => Some(format!("Reason: {r}")),
        (n, None) => n,
    };
    sqlx::query(
        "INSERT INTO deployments (name, version_id) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET version_id = excluded.version_id,
             updated_at = $3",
    )
    .bind(&name)
    .bind(v.0)
    .bind(crate::db::now_text())
    .execute(&mut *tx)
    .await?;
    deployments::record_event(&mut tx, &name, v.0, action, Some(&user), note.as_deref()).await?;
    tx.commit().await?;
    state.registry.bump();
    let status = if current.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(deployment_view(&state.db, &name).await?)))
}

/// Points the deployment back at the version it served before the current one.
#[utoipa::path(
    post,
    operation_id = "rollback_deployment",
    path = "/api/deployments/{name}/rollback",
    tag = "registry",
    params(("name" = String, Path, description = "Deployment name")),
    responses(
        (status = 200, description = "The deployment serves its previous version", body = DeploymentView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not the group's owner or an administrator, or a missing X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "No earlier version to roll back to", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn rollback(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<DeploymentView>, ApiError> {
    visible_deployment(&state.db, &user, &name)
        .await?
        .access
        .require_owner()?;
    // The promotions not undone are a stack of what was served: the previous entry is the
    // target, and the rollback marks the current one undone so that repeated rollbacks walk
    // further back (the row stays, for the audit trail). Not gated: it returns to a version
    // that was served.
    let mut tx = crate::db::begin_write(&state.db).await?;
    let history: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT id, version_id FROM deployment_history WHERE name = $1 AND {}
         ORDER BY id DESC",
        deployments::SERVED
    ))
    .bind(&name)
    .fetch_all(&mut *tx)
    .await?;
    let Some(previous) = history.get(1) else {
        return Err(ApiError::Conflict(format!(
            "deployment `{name}` has no earlier version to roll back to"
        )));
    };
    sqlx::query("UPDATE deployment_history SET undone_at = $1 WHERE id = $2")
        .bind(crate::db::now_text())
        .bind(history[0].0)
        .execute(&mut *tx)
        .await?;
    deployments::record_event(
        &mut tx,
        &name,
        previous.1,
        DeploymentAction::Rollback,
        Some(&user),
        Some(&format!("rolled back from version {}", history[0].1)),
    )
    .await?;
    sqlx::query(
        "UPDATE deployments SET version_id = $1, updated_at = $3
         WHERE name = $2",
    )
    .bind(previous.1)
    .bind(&name)
    .bind(crate::db::now_text())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    state.registry.bump();
    Ok(Json(deployment_view(&state.db, &name).await?))
}

/// A `deployment_history` row as the view shows it: version, action, at, by, note.
type EventRow = (i64, String, String, Option<String>, Option<String>);

async fn deployment_view(db: &Db, name: &str) -> Result<DeploymentView, ApiError> {
    let row: Option<(i64, String, crate::db::Flag)> =
        sqlx::query_as("SELECT version_id, updated_at, public FROM deployments WHERE name = $1")
            .bind(name)
            .fetch_optional(db)
            .await?;
    let (version_id, updated_at, crate::db::Flag(public)) = row.ok_or_else(deployment_not_found)?;
    let v = load_version(db, version_id).await?;
    let history: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version_id FROM deployment_history WHERE name = $1 AND {}
         ORDER BY id DESC",
        deployments::SERVED
    ))
    .bind(name)
    .fetch_all(db)
    .await?;
    let gate = gate::gate_of(&mut *db.acquire().await?, name).await?;
    // Written by `monitoring` at each flush of its windows.
    let drifting: Option<crate::db::Flag> =
        sqlx::query_scalar("SELECT drifting FROM drift_status WHERE deployment = $1")
            .bind(name)
            .fetch_optional(db)
            .await?;
    Ok(DeploymentView {
        drifting: drifting.map(|f| f.0),
        name: name.to_string(),
        version_id,
        group_id: v.1,
        round: v.2,
        metrics: parse_metrics(&v.8),
        updated_at,
        history,
        public,
        gate,
    })
}

/// The most events [`deployment_events`] returns.
const MAX_EVENTS: i64 = 200;

/// A deployment's audit trail: every promotion, override of the promotion gate, rollback and
/// gate change, newest first, with who made it and a note (the gate's numbers, the reason).
/// For those who may see the deployment's group, public model or not.
#[utoipa::path(
    get,
    operation_id = "get_deployment_events",
    path = "/api/deployments/{name}/events",
    tag = "registry",
    params(("name" = String, Path, description = "Deployment name")),
    responses(
        (status = 200, description = "The newest 200 changes, newest first", body = DeploymentEvents),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see its group", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn deployment_events(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<DeploymentEvents>, ApiError> {
    visible_deployment(&state.db, &user, &name).await?;
    let events: Vec<EventRow> = sqlx::query_as(
        "SELECT version_id, action, at, actor_name, note FROM deployment_history
         WHERE name = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(&name)
    .bind(MAX_EVENTS)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(DeploymentEvents {
        name,
        events: events
            .into_iter()
            .map(|(version_id, action, at, by, note)| DeploymentEvent {
                version_id,
                action: DeploymentAction::parse(&action),
                at,
                by,
                note,
            })
            .collect(),
    }))
}

/// A deployment: a public one for anyone, signed in or not; a private one for those who may
/// see its group. A private deployment answers an anonymous caller 401 and an outsider 404,
/// word for word as a name that is not deployed, so names reveal nothing.
#[utoipa::path(
    get,
    operation_id = "get_deployment",
    path = "/api/deployments/{name}",
    tag = "registry",
    params(("name" = String, Path, description = "Deployment name")),
    responses(
        (status = 200, description = "The deployment", body = DeploymentView),
        (status = 401, description = "Not signed in, and the model is not public (or not deployed)", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see it", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
async fn get_deployment(
    OptionalUser(user): OptionalUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<DeploymentView>, ApiError> {
    let public = deployments::load(&state.db, &name)
        .await?
        .is_some_and(|d| d.public);
    if !public {
        let user = user.ok_or_else(|| ApiError::Unauthorized("sign in first".into()))?;
        visible_deployment(&state.db, &user, &name).await?;
    }
    Ok(Json(deployment_view(&state.db, &name).await?))
}

/// The deployments the caller may use: the public ones for everyone, plus, for a signed-in
/// caller, those of the groups it may see (administrators: all).
#[utoipa::path(
    get,
    operation_id = "list_deployments",
    path = "/api/deployments",
    tag = "registry",
    responses(
        (status = 200, description = "The deployments, by name: public ones, and those of the caller's groups", body = DeploymentList),
        (status = 401, description = "An API token that is not valid", body = ErrorBody),
        (status = 403, description = "A signed-in account with a one-time password, which must choose a new one first (`password_change_required`)", body = ErrorBody),
    ),
    security((), ("session" = []), ("bearer" = [])),
)]
async fn list_deployments(
    OptionalUser(user): OptionalUser,
    State(state): State<AppState>,
) -> Result<Json<DeploymentList>, ApiError> {
    let (user_id, admin) = user.map_or((None, false), |u| (Some(u.id), u.is_admin()));
    let names = deployments::visible(&state.db, user_id, admin).await?;
    let mut out = Vec::with_capacity(names.len());
    for (n, _) in names {
        out.push(deployment_view(&state.db, &n).await?);
    }
    Ok(Json(DeploymentList { deployments: out }))
}
