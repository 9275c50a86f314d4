//! `GET /healthz`: liveness plus a database round trip, for operators and load balancers.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let created_at: String = sqlx::query_scalar("SELECT created_at FROM instance WHERE id = 1")
        .fetch_one(&state.db)
        .await?;
    Ok(Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "database": "ok",
        "instance_created_at": created_at,
    })))
}
