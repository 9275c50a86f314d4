//! Prometheus metrics of the inference routes, served at `GET /metrics` in the text format.
//!
//! The `metrics` facade records; the recorder is process-global, so it is installed once (the
//! first router built) and every app in the process (tests build many) shares it. Labels are
//! version ids, never user data.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: 10 µs (an MLP row) to 1 s (a large CSV).
const BUCKETS: &[f64] = &[
    1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0,
];

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
            Some(handle)
        })
        .as_ref()
}

/// Installs the recorder if needed (called when the router is built).
pub fn init() {
    handle();
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

/// `GET /metrics`.
pub async fn render() -> impl IntoResponse {
    let body = handle().map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
