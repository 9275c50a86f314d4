//! The drift API of a deployment, for those who may see its group.

use axum::extract::State;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use b3o_models::drift::{DriftSettings, Histogram, compare};
use b3o_models::monitor::{CONFIDENCE, PREDICTION};
use b3o_models::protocol::monitoring::{
    DriftPoint, DriftReference, DriftView, PartnerCheck, PartnerSummary, PredictionDrift,
    SetDriftSettings,
};
use b3o_models::protocol::{ErrorBody, GroupRole};
use b3o_models::stats::{ColumnSummary, Summary};

use super::{Reference, store};
use crate::accounts::CurrentUser;
use crate::accounts::extract::{ApiJson, ApiPath};
use crate::error::ApiError;
use crate::registry::visible_deployment;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/deployments/{name}/drift", get(drift))
        .route("/api/deployments/{name}/drift/settings", put(set_settings))
        .route("/api/deployments/{name}/drift/reference", get(reference))
        .route("/api/deployments/{name}/drift/partner", post(partner))
}

/// Windows listed in a view's history at most.
const MAX_HISTORY: usize = 48;
/// Partners' checks listed at most.
const MAX_PARTNERS: usize = 20;

/// The drift of a deployment's inputs and predictions against its version's training data:
/// the current report, the history of windows and the members' own checks. For those who may
/// see the deployment's group, public model or not (the reference's histograms describe the
/// members' data).
#[utoipa::path(
    get,
    operation_id = "get_deployment_drift",
    path = "/api/deployments/{name}/drift",
    tag = "monitoring",
    params(("name" = String, Path, description = "Deployment name")),
    responses(
        (status = 200, description = "The deployment's drift", body = DriftView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see its group", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn drift(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<DriftView>, ApiError> {
    let deployment = visible_deployment(&state.db, &user, &name).await?;
    // This replica's windows are written first, so its latest requests count.
    state.monitoring.flush(&state).await?;
    let version_id = deployment.version_id;
    let settings = store::settings(&state.db, &name).await?;
    let reference = state.monitoring.reference(&state, version_id).await?;
    let rows = store::windows(&state.db, &name).await?;
    let mut view = DriftView {
        deployment: name,
        version_id,
        has_reference: reference.is_some(),
        settings: settings.clone(),
        window_secs: state.monitoring.settings.window.as_secs(),
        window_rows: state.monitoring.settings.window_rows,
        current: None,
        predictions: None,
        history: Vec::new(),
        partners: Vec::new(),
    };
    let Some(reference) = reference else {
        return Ok(Json(view));
    };
    let window = store::current(
        &rows,
        version_id,
        state.monitoring.settings.window,
        settings.min_rows,
    );
    if window.n_rows > 0 {
        view.current = Some(reference.inputs(&window, &settings));
        view.predictions = Some(predictions(&reference, &window, &settings));
    }
    for r in rows.iter().filter(|r| r.version_id == version_id) {
        let report = reference.inputs(&r.summary, &settings);
        let drifted = report
            .features
            .iter()
            .filter(|f| f.drifted)
            .map(|f| f.name.clone())
            .collect();
        match r.source.as_str() {
            "partner" if view.partners.len() < MAX_PARTNERS => view.partners.push(PartnerCheck {
                member: r.who.clone(),
                at: r.opened_at.clone(),
                rows: report.rows,
                drift_share: report.drift_share,
                drifting: report.drifting,
                drifted,
            }),
            "serving" if view.history.len() < MAX_HISTORY => view.history.push(DriftPoint {
                opened_at: r.opened_at.clone(),
                closed_at: r.closed_at.clone(),
                rows: report.rows,
                drift_share: report.drift_share,
                drifting: report.drifting,
                drifted,
            }),
            _ => {}
        }
    }
    Ok(Json(view))
}

/// The predictions of `window` against the training target, and the confidence histogram.
fn predictions(
    reference: &Reference,
    window: &Summary,
    settings: &DriftSettings,
) -> PredictionDrift {
    let drift = compare(
        &reference.predictions,
        window,
        &[PREDICTION.to_string()],
        settings,
    )
    .features
    .pop();
    let mut confidence = Histogram::default();
    let mut quantiles = Vec::new();
    if let Some(ColumnSummary::Numeric(c)) = window.columns.get(CONFIDENCE) {
        let mut counts = [0u64; 10];
        for (value, n) in c.sketch.points() {
            let bin = ((value * 10.0).floor().max(0.0) as usize).min(9);
            counts[bin] += n;
        }
        let total = counts.iter().sum::<u64>().max(1) as f64;
        confidence.edges = (0..=10).map(|i| f64::from(i) / 10.0).collect();
        confidence.labels = (0..10)
            .map(|i| format!("{:.1}–{:.1}", f64::from(i) / 10.0, f64::from(i + 1) / 10.0))
            .collect();
        confidence.current = counts.iter().map(|&n| n as f64 / total).collect();
    }
    if let Some(ColumnSummary::Numeric(p)) = window.columns.get(PREDICTION) {
        quantiles = [0.05, 0.5, 0.95]
            .iter()
            .filter_map(|&q| p.sketch.quantile(q))
            .collect();
    }
    PredictionDrift {
        drift,
        confidence,
        quantiles,
    }
}

/// Sets the deployment's drift thresholds (its group's owner or an administrator).
#[utoipa::path(
    put,
    operation_id = "set_deployment_drift_settings",
    path = "/api/deployments/{name}/drift/settings",
    tag = "monitoring",
    params(("name" = String, Path, description = "Deployment name")),
    request_body(content = SetDriftSettings, content_type = "application/json"),
    responses(
        (status = 200, description = "The thresholds now in force", body = DriftSettings),
        (status = 400, description = "A share or p-value outside [0, 1], a negative distance or PSI", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not the group's owner or an administrator, or a missing X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see its group", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn set_settings(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<DriftSettings>, ApiError> {
    let deployment = visible_deployment(&state.db, &user, &name).await?;
    deployment.access.require_owner()?;
    // Read as the settings only once the caller may change them.
    let req: SetDriftSettings = serde_json::from_value(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"settings\": {{drift_share, p_value, distance, psi, min_rows}}}}: {e}"
        ))
    })?;
    let s = req.settings;
    let unit = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
    let problem = if !unit(s.drift_share) {
        Some("drift_share must be between 0 and 1")
    } else if !unit(s.p_value) {
        Some("p_value must be between 0 and 1")
    } else if !(s.distance.is_finite() && s.distance >= 0.0) {
        Some("distance must be a number of at least 0")
    } else if !(s.psi.is_finite() && s.psi >= 0.0) {
        Some("psi must be a number of at least 0")
    } else {
        None
    };
    if let Some(p) = problem {
        return Err(ApiError::BadRequest(p.into()));
    }
    store::set_settings(&state.db, &name, &s).await?;
    // The catalogue's verdict follows the new thresholds at once.
    store::update_status(&state, &name).await?;
    Ok(Json(s))
}

/// What a member's own drift check compares with: the served version's merged training
/// summary (counts and value sketches of every member's data together, never rows) and the
/// thresholds.
#[utoipa::path(
    get,
    operation_id = "get_deployment_drift_reference",
    path = "/api/deployments/{name}/drift/reference",
    tag = "monitoring",
    params(("name" = String, Path, description = "Deployment name")),
    responses(
        (status = 200, description = "The served version's reference", body = DriftReference),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such deployment, the caller may not see its group, or the version has no reference", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn reference(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<DriftReference>, ApiError> {
    let deployment = visible_deployment(&state.db, &user, &name).await?;
    let reference = state
        .monitoring
        .reference(&state, deployment.version_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "version {} of `{name}` has no training summary to compare with",
                deployment.version_id
            ))
        })?;
    Ok(Json(DriftReference {
        settings: store::settings(&state.db, &name).await?,
        deployment: name,
        version_id: deployment.version_id,
        features: reference.features.clone(),
        reference: reference.summary.clone(),
        preprocessing: reference.preprocessing.clone(),
    }))
}

/// A member's summary of its own new data (only the summary: counts and sketches), shown in
/// the deployment's drift view beside the serving windows.
#[utoipa::path(
    post,
    operation_id = "post_partner_drift",
    path = "/api/deployments/{name}/drift/partner",
    tag = "monitoring",
    params(("name" = String, Path, description = "Deployment name")),
    request_body(content = PartnerSummary, content_type = "application/json"),
    responses(
        (status = 201, description = "Kept; the check as the drift view lists it", body = PartnerCheck),
        (status = 400, description = "Not a summary, a value sketch over its bucket bound, or no rows", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Neither an active member nor the owner of the group, or a missing X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such deployment, or the caller may not see its group", body = ErrorBody),
        (status = 409, description = "The deployment serves another version now, or that version has no reference", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
async fn partner(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(axum::http::StatusCode, Json<PartnerCheck>), ApiError> {
    let deployment = visible_deployment(&state.db, &user, &name).await?;
    // An active member, or the group's owner (a published model's group has no members).
    let member = match deployment.access.require_member() {
        Ok(m) => m.name.clone(),
        Err(_) if deployment.access.role == GroupRole::Owner => user.display_name.clone(),
        Err(e) => return Err(e),
    };
    let req: PartnerSummary = serde_json::from_value(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"version_id\": .., \"summary\": <a column summary>}}: {e}"
        ))
    })?;
    if req.version_id != deployment.version_id {
        return Err(ApiError::Conflict(format!(
            "`{name}` serves version {} now, not {}: check again against it",
            deployment.version_id, req.version_id
        )));
    }
    check_summary(&req.summary)?;
    let reference = state
        .monitoring
        .reference(&state, deployment.version_id)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "version {} has no training summary to compare with",
                deployment.version_id
            ))
        })?;
    let settings = store::settings(&state.db, &name).await?;
    let report = reference.inputs(&req.summary, &settings);
    store::write_partner(
        &state.db,
        &name,
        deployment.version_id,
        &member,
        &req.summary,
    )
    .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(PartnerCheck {
            member,
            at: crate::db::now_text(),
            rows: report.rows,
            drift_share: report.drift_share,
            drifting: report.drifting,
            drifted: report
                .features
                .iter()
                .filter(|f| f.drifted)
                .map(|f| f.name.clone())
                .collect(),
        }),
    ))
}

/// 400 for a summary a client may not send: no rows, or a value sketch past its bound.
pub(crate) fn check_summary(s: &Summary) -> Result<(), ApiError> {
    if s.n_rows == 0 {
        return Err(ApiError::BadRequest("the summary has no rows".into()));
    }
    b3o_models::monitor::check_sketches(s).map_err(ApiError::BadRequest)
}

/// The drift routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(drift, set_settings, reference, partner))]
pub struct MonitoringApi;
