//! Prometheus metrics, served at `GET /metrics` in the text format: inference requests per
//! model and version (counts by status, latency histograms), model runs, loads, cache
//! evictions and models loaded, batch jobs, and the federation's round and update counters
//! (emitted from `federation::rounds` / `federation::updates` with the `metrics` macros).
//! For operations (`deploy/prometheus/alerts.yml`, `deploy/grafana/b3o.json`): every HTTP
//! request by method, route template and status class ([`track_http`]), the job queue (read
//! from the database at each scrape) and readiness (`b3o_ready`).
//!
//! The `metrics` facade records; the recorder is process-global, so it is installed once (the
//! first router built) and every app in the process (tests build many) shares it. Labels are
//! the names of **public** deployments, version ids and fixed route names, never user data:
//! `/metrics` answers anyone, so requests to private deployments are counted together under
//! the neutral label [`PRIVATE_LABEL`] (model and version alike; the registry reserves that
//! name), and names that are not deployed never become labels. Model runs and loads carry
//! the version id alone: a number that names no deployment or group.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::deployments::Deployment;
use crate::state::AppState;

/// The `model` and `version` label of requests to private deployments.
pub const PRIVATE_LABEL: &str = crate::registry::PRIVATE_DEPLOYMENTS_LABEL;

/// Latency buckets in seconds: 10 µs (an MLP row) to 10 s (a large CSV).
const BUCKETS: &[f64] = &[
    1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0,
];

/// Counters shown from the start (at 0), so dashboards and alerts see them before any event.
const COUNTERS: &[(&str, &str)] = &[
    (
        "b3o_inference_model_loads_total",
        "Model versions loaded into the inference cache.",
    ),
    (
        "b3o_inference_cache_evictions_total",
        "Model versions evicted from the inference cache (memory cap).",
    ),
    (
        "b3o_federation_rounds_opened_total",
        "Federated rounds opened.",
    ),
    (
        "b3o_federation_rounds_closed_total",
        "Federated rounds closed with a new global model.",
    ),
    (
        "b3o_federation_rounds_failed_total",
        "Federated rounds that failed (deadline, too few updates, aggregation error).",
    ),
    (
        "b3o_federation_updates_received_total",
        "Client model updates accepted.",
    ),
    (
        "b3o_federation_updates_rejected_total",
        "Client model updates refused (validation, wrong round, too large).",
    ),
    (
        "b3o_jobs_rows_total",
        "Rows of finished batch jobs (succeeded or failed).",
    ),
];

/// The `route` label of requests no route template matched (the web app's files, unknown
/// paths): one value, whatever the path.
pub const UNMATCHED_ROUTE: &str = "fallback";

fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then it owns the metrics.
            metrics::set_global_recorder(recorder).ok()?;
            for (name, help) in COUNTERS {
                metrics::describe_counter!(*name, *help);
                metrics::counter!(*name).increment(0);
            }
            metrics::describe_gauge!(
                "b3o_inference_models_loaded",
                "Model versions loaded in the inference cache."
            );
            metrics::gauge!("b3o_inference_models_loaded").set(0.0);
            metrics::describe_counter!(
                "b3o_inference_requests_total",
                "Inference requests that reached a model, by model, version, route and status."
            );
            metrics::describe_histogram!(
                "b3o_inference_request_seconds",
                "Inference request latency in the server, by model, version and route."
            );
            metrics::describe_counter!(
                "b3o_inference_rejected_total",
                "Inference requests refused before reaching a model (unknown model, access, origin)."
            );
            metrics::describe_counter!(
                "b3o_jobs_finished_total",
                "Batch jobs finished, by status (succeeded, failed)."
            );
            for status in ["succeeded", "failed"] {
                metrics::counter!("b3o_jobs_finished_total", "status" => status).increment(0);
            }
            metrics::describe_counter!(
                "b3o_http_requests_total",
                "HTTP requests answered, by method, route template and status class (2xx, 4xx, 5xx...)."
            );
            metrics::describe_histogram!(
                "b3o_http_request_seconds",
                "Time to the response's head (not to the end of a stream), by method and route template."
            );
            metrics::describe_gauge!(
                "b3o_jobs_queued",
                "Batch jobs waiting for a worker (in the database, read at each scrape)."
            );
            metrics::describe_gauge!(
                "b3o_jobs_running",
                "Batch jobs running (in the database, read at each scrape)."
            );
            metrics::describe_gauge!(
                "b3o_ready",
                "1 while this replica takes new work (GET /readyz answers 200), 0 while it starts or shuts down."
            );
            Some(handle)
        })
        .as_ref()
}

/// Installs the recorder if needed (called when the router is built).
pub fn init() {
    handle();
}

/// One request that reached a model: labelled with the deployment's name and version when it
/// is public, with [`PRIVATE_LABEL`] otherwise.
pub fn record_request(
    deployment: &Deployment,
    version_id: i64,
    route: &'static str,
    status: StatusCode,
    elapsed: Duration,
) {
    let (model, version) = if deployment.public {
        (deployment.name.clone(), version_id.to_string())
    } else {
        (PRIVATE_LABEL.to_string(), PRIVATE_LABEL.to_string())
    };
    metrics::histogram!(
        "b3o_inference_request_seconds",
        "model" => model.clone(),
        "version" => version.clone(),
        "route" => route,
    )
    .record(elapsed.as_secs_f64());
    metrics::counter!(
        "b3o_inference_requests_total",
        "model" => model,
        "version" => version,
        "route" => route,
        "status" => status.as_str().to_string(),
    )
    .increment(1);
}

/// A request refused before it reached a model.
pub fn record_rejected(route: &'static str, status: StatusCode) {
    metrics::counter!(
        "b3o_inference_rejected_total",
        "route" => route,
        "status" => status.as_str().to_string(),
    )
    .increment(1);
}

/// One model run: its duration and rows.
pub fn record_run(version_id: i64, rows: usize, elapsed: Duration, ok: bool) {
    let version = version_id.to_string();
    metrics::histogram!("b3o_inference_run_seconds", "version" => version.clone())
        .record(elapsed.as_secs_f64());
    metrics::counter!("b3o_inference_rows_total", "version" => version.clone())
        .increment(rows as u64);
    if !ok {
        metrics::counter!("b3o_inference_errors_total", "version" => version).increment(1);
    }
}

/// A model loaded into the cache.
pub fn record_load(version_id: i64, elapsed: Duration) {
    metrics::counter!("b3o_inference_model_loads_total").increment(1);
    metrics::histogram!("b3o_inference_model_load_seconds", "version" => version_id.to_string())
        .record(elapsed.as_secs_f64());
}

/// A model evicted from the cache.
pub fn record_eviction() {
    metrics::counter!("b3o_inference_cache_evictions_total").increment(1);
}

/// The number of models in the cache now.
pub fn set_models_loaded(n: usize) {
    metrics::gauge!("b3o_inference_models_loaded").set(n as f64);
}

/// A batch job finished (`succeeded` or `failed`) after `rows` rows.
pub fn record_job(status: &'static str, rows: u64) {
    metrics::counter!("b3o_jobs_finished_total", "status" => status).increment(1);
    metrics::counter!("b3o_jobs_rows_total").increment(rows);
}

/// Whether this replica takes new work (`b3o_ready`), set at each scrape from the
/// lifecycle of the app that answers it.
fn set_ready(ready: bool) {
    metrics::gauge!("b3o_ready").set(if ready { 1.0 } else { 0.0 });
}

/// Middleware over the whole router: counts every request by method, matched route template
/// (`/api/groups/{id}`, never the path itself) and status class, and times it to the
/// response's head. The labels have a few dozen values each, whatever clients send.
pub async fn track_http(request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => path.as_str().to_owned(),
        None => UNMATCHED_ROUTE.to_owned(),
    };
    let start = std::time::Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(
        "b3o_http_request_seconds",
        "method" => method,
        "route" => route.clone(),
    )
    .record(start.elapsed().as_secs_f64());
    metrics::counter!(
        "b3o_http_requests_total",
        "method" => method,
        "route" => route,
        "status_class" => status_class(response.status()),
    )
    .increment(1);
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Reads the job queue from the database into `b3o_jobs_queued` and `b3o_jobs_running` (the
/// database is the queue every replica shares). On error the gauges keep their last values.
async fn refresh_job_gauges(state: &AppState) {
    let counts: Result<Vec<(String, i64)>, sqlx::Error> = sqlx::query_as(
        "SELECT status, COUNT(*) FROM jobs WHERE status IN ('queued', 'running') GROUP BY status",
    )
    .fetch_all(&state.db)
    .await;
    match counts {
        Ok(counts) => {
            let count = |status: &str| {
                counts
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0.0, |(_, n)| *n as f64)
            };
            metrics::gauge!("b3o_jobs_queued").set(count("queued"));
            metrics::gauge!("b3o_jobs_running").set(count("running"));
        }
        Err(e) => tracing::warn!(error = %e, "counting batch jobs for /metrics"),
    }
}

/// Prometheus metrics in the text format (404 when the operator turned them off with
/// `--metrics false`). Labels are public deployments' names, version ids, route names and
/// templates, methods and status classes.
#[utoipa::path(
    get,
    operation_id = "get_metrics",
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "The metrics (Prometheus text format 0.0.4)", content_type = "text/plain", body = String),
        (status = 404, description = "Metrics are turned off on this server", body = b3o_models::protocol::ErrorBody),
    ),
)]
pub async fn render(State(state): State<AppState>) -> Response {
    if !state.inference.settings.metrics {
        return crate::error::ApiError::NotFound("metrics are turned off on this server".into())
            .into_response();
    }
    // The recorder is process-global: the gauges of this app's state are set now.
    set_ready(state.lifecycle.phase().is_ready());
    refresh_job_gauges(&state).await;
    crate::monitoring::refresh_gauges(&state).await;
    let body = handle().map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
