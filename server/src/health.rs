//! `GET /healthz`: liveness plus a database round trip, for operators and load balancers.
//! `GET /readyz`: readiness, from the replica's [`crate::lifecycle`]: 200 while it takes new
//! work, 503 while it starts or shuts down. It does not touch the database: a database outage
//! would make every replica unready at once, and a balancer with no replica left answers
//! nothing at all, where the replicas would have answered errors that say what is wrong.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use b3o_models::protocol::operations::{CheckStatus, Health, Readiness};
use b3o_models::protocol::{ErrorBody, ErrorDetail};

use crate::error::ApiError;
use crate::lifecycle::Phase;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The OpenAPI description of [`router`] (merged into `/api/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(healthz, readyz),
    components(schemas(Health, Readiness, CheckStatus, ErrorBody)),
    tags((name = "operations", description = "Health checks for operators and load balancers")),
)]
pub struct HealthApi;

/// The server runs and its database answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 500, description = "The database does not answer", body = ErrorBody),
    ),
)]
async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let created_at: String = sqlx::query_scalar("SELECT created_at FROM instance WHERE id = 1")
        .fetch_one(&state.db)
        .await?;
    Ok(Json(Health {
        status: CheckStatus::Ok,
        version: env!("CARGO_PKG_VERSION").to_string(),
        database: CheckStatus::Ok,
        instance_created_at: created_at,
    }))
}

/// The `Retry-After` of a 503 from `/readyz`, in seconds.
const RETRY_AFTER_SECS: u32 = 1;

/// This replica takes new work: a load balancer may send it requests. It answers 503 while it
/// starts (`starting`) and from the moment it is told to stop (`shutting_down`), while it goes
/// on serving what it is sent during the drain.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready for new work", body = Readiness),
        (status = 503, description = "Not ready: starting (`starting`) or shutting down (`shutting_down`); send requests to another replica", body = ErrorBody),
    ),
)]
async fn readyz(State(state): State<AppState>) -> Response {
    match not_ready(&state) {
        Some(refusal) => refusal,
        None => Json(Readiness {
            status: CheckStatus::Ok,
        })
        .into_response(),
    }
}

/// The 503 of a replica that takes no new work (starting, or shutting down), or `None` while
/// it does: `/readyz`'s answer, and the Open Inference Protocol's `/v2/health/ready`'s.
pub(crate) fn not_ready(state: &AppState) -> Option<Response> {
    let (code, message) = match state.lifecycle.phase() {
        Phase::Ready => return None,
        Phase::Starting => (
            "starting",
            "starting: start-up work is not done yet; this replica takes no new work",
        ),
        Phase::Draining | Phase::Stopping => (
            "shutting_down",
            "shutting down: this replica takes no new work; send requests to another one",
        ),
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.into(),
            message: message.into(),
        },
    };
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    Some(response)
}
