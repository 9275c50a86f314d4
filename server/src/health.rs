//! `GET /healthz`: liveness plus a database round trip, for operators and load balancers.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use b3o_models::protocol::ErrorBody;
use b3o_models::protocol::operations::{CheckStatus, Health};

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

/// The OpenAPI description of [`router`] (merged into `/api/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(healthz),
    components(schemas(Health, CheckStatus, ErrorBody)),
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
