//! Drift monitoring of deployed models (issue #18): is a model still seeing the data it was
//! trained on? No request payload is logged anywhere: every inference route hands what it
//! scored to [`Monitor::record`] as a [`Summary`] (`b3o_models::monitor`: counts, missing
//! values, value sketches, category counts, predicted labels), merged into the deployment's
//! open **window**; the reference is the version's merged training summary
//! (`model_versions.reference_json`, made by the federation's statistics phase and by the demo
//! seeding), and `b3o_models::drift::compare` scores each feature with Evidently's tests.
//!
//! - **Windows** (`drift_windows`): one per deployment and replica at a time, closed after
//!   `--drift-window-secs` or `--drift-window-rows`, whichever first, or when the deployment
//!   serves another version. Each replica writes its windows every [`FLUSH_SECS`] seconds
//!   (and before it answers the drift API), so replicas' windows merge on read: summaries are
//!   mergeable.
//! - **Partners** contribute the summary of their own new data (never rows; `source =
//!   'partner'`), shown beside the serving windows.
//! - **Where people look**: `routes` (`GET /api/deployments/{name}/drift`: the current report,
//!   the predictions against the training labels, the history of windows, partners' checks;
//!   thresholds with `PUT .../drift/settings`; the reference for a partner's own check), the
//!   Prometheus gauges ([`refresh_gauges`]: public deployments by name; private ones only
//!   counted) and the model page's Monitoring tab.
//! - `drift_status`: each deployment's latest verdict, written at every flush, read by the
//!   deployment list (the catalogue's "drifting" badge).

mod routes;
mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use b3o_models::ModelSpec;
use b3o_models::drift::{DriftReport, DriftSettings, compare};
use b3o_models::monitor;
use b3o_models::stats::Summary;

pub use routes::{MonitoringApi, router};

use crate::error::ApiError;
use crate::state::AppState;

/// A new window's number, unique in this process.
fn next_window() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// How often a replica writes its open windows.
pub const FLUSH_SECS: u64 = 5;

/// `b3o serve`'s drift flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Summarise inputs at all (`--drift`).
    pub enabled: bool,
    pub window: Duration,
    pub window_rows: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(3600),
            window_rows: 10_000,
        }
    }
}

impl Settings {
    pub fn from_config(config: &crate::config::ServeConfig) -> Self {
        Self {
            enabled: config.drift,
            window: Duration::from_secs(config.drift_window_secs.max(1)),
            window_rows: config.drift_window_rows.max(1),
        }
    }
}

/// A window being filled in memory.
struct Open {
    /// Which window this is, for this process's life ([`next_window`]).
    seq: u64,
    /// Its `drift_windows` row, once written.
    id: Option<i64>,
    version_id: i64,
    opened_at: String,
    opened: Instant,
    summary: Summary,
    /// Changed since it was last written.
    dirty: bool,
}

/// A window to write: its state when taken, and whether it is over.
struct Snapshot {
    deployment: String,
    seq: u64,
    id: Option<i64>,
    version_id: i64,
    opened_at: String,
    summary: Summary,
    closed: bool,
}

/// The drift runtime of one replica (`AppState::monitoring`, and the inference runtime's
/// handle to it).
pub struct Monitor {
    pub settings: Settings,
    open: Mutex<HashMap<String, Open>>,
    /// Windows closed in memory, not written yet.
    closing: Mutex<Vec<Snapshot>>,
    /// One writer at a time (the periodic flush and the API's).
    flushing: tokio::sync::Mutex<()>,
    /// Reference summaries and specs by version id, read once.
    references: Mutex<HashMap<i64, Option<Arc<Reference>>>>,
}

/// What a version's windows are compared with.
pub struct Reference {
    pub summary: Summary,
    /// How the version reads raw cells (none for image models).
    pub preprocessing: Option<b3o_models::preprocess::PreprocessSpec>,
    /// The reference's target column also under `monitor::PREDICTION`.
    pub predictions: Summary,
    pub features: Vec<String>,
}

impl Monitor {
    /// Whether requests should summarise what they score (`--drift`).
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            open: Mutex::new(HashMap::new()),
            closing: Mutex::new(Vec::new()),
            flushing: tokio::sync::Mutex::new(()),
            references: Mutex::new(HashMap::new()),
        }
    }

    /// Adds what one request scored (`window`: its inputs' and answers' summary, made by
    /// version `version_id`) to the open window of `deployment`, which serves `serving`
    /// now: requests pinned to another version are not the deployment's traffic. Cheap: a
    /// merge under a short lock; nothing is written here.
    pub fn record(&self, deployment: &str, serving: i64, version_id: i64, window: &Summary) {
        if !self.settings.enabled || window.n_rows == 0 || serving != version_id {
            return;
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(w) = open.get(deployment)
            && (w.version_id != version_id
                || w.summary.n_rows >= self.settings.window_rows
                || now.duration_since(w.opened) >= self.settings.window)
            && let Some(w) = open.remove(deployment)
        {
            self.closing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Snapshot {
                    deployment: deployment.to_string(),
                    seq: w.seq,
                    id: w.id,
                    version_id: w.version_id,
                    opened_at: w.opened_at,
                    summary: w.summary,
                    closed: true,
                });
        }
        // The key is allocated only when a window opens: this runs for every request.
        if !open.contains_key(deployment) {
            let w = Open {
                seq: next_window(),
                id: None,
                version_id,
                opened_at: crate::db::now_text(),
                opened: now,
                summary: Summary::default(),
                dirty: false,
            };
            open.insert(deployment.to_string(), w);
        }
        // Columns of one kind on both sides by construction (one spec per version).
        if let Some(w) = open.get_mut(deployment)
            && w.summary.merge(window).is_ok()
        {
            w.dirty = true;
        }
    }

    /// Writes the windows closed and the open ones changed since the last flush.
    pub async fn flush(&self, state: &AppState) -> Result<(), ApiError> {
        let _one = self.flushing.lock().await;
        let mut work: Vec<Snapshot> =
            std::mem::take(&mut *self.closing.lock().unwrap_or_else(|e| e.into_inner()));
        {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let expired: Vec<String> = open
                .iter()
                .filter(|(_, w)| now.duration_since(w.opened) >= self.settings.window)
                .map(|(k, _)| k.clone())
                .collect();
            for name in expired {
                if let Some(w) = open.remove(&name) {
                    work.push(Snapshot {
                        deployment: name,
                        seq: w.seq,
                        id: w.id,
                        version_id: w.version_id,
                        opened_at: w.opened_at,
                        summary: w.summary,
                        closed: true,
                    });
                }
            }
            for (name, w) in open.iter_mut().filter(|(_, w)| w.dirty) {
                w.dirty = false;
                work.push(Snapshot {
                    deployment: name.clone(),
                    seq: w.seq,
                    id: w.id,
                    version_id: w.version_id,
                    opened_at: w.opened_at.clone(),
                    summary: w.summary.clone(),
                    closed: false,
                });
            }
        }
        let mut touched = Vec::new();
        for snap in work {
            let id = store::write_window(&state.db, &snap).await?;
            if !snap.closed {
                let still_open = {
                    let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                    match open.get_mut(&snap.deployment) {
                        Some(w) if w.seq == snap.seq => {
                            w.id = Some(id);
                            true
                        }
                        _ => false,
                    }
                };
                if !still_open {
                    // It closed while its first row was being written: its final state waits
                    // in `closing`, and must update that row rather than add another.
                    for c in self
                        .closing
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter_mut()
                        .filter(|c| c.seq == snap.seq)
                    {
                        c.id = Some(id);
                    }
                }
            }
            if !touched.contains(&snap.deployment) {
                touched.push(snap.deployment);
            }
        }
        for deployment in touched {
            store::prune(&state.db, &deployment).await?;
            store::update_status(state, &deployment).await?;
        }
        Ok(())
    }

    /// The reference of `version_id` (`None`: the version has none), read once.
    pub async fn reference(
        &self,
        state: &AppState,
        version_id: i64,
    ) -> Result<Option<Arc<Reference>>, ApiError> {
        if let Some(r) = self
            .references
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&version_id)
        {
            return Ok(r.clone());
        }
        let loaded = store::load_reference(state, version_id)
            .await?
            .map(Arc::new);
        self.references
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(version_id, loaded.clone());
        Ok(loaded)
    }

    /// This replica's open windows: deployment, version and summary (for the gauges).
    fn open_windows(&self) -> Vec<(String, i64, Summary)> {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, w)| (k.clone(), w.version_id, w.summary.clone()))
            .collect()
    }
}

impl Reference {
    /// The reference of a version with `spec` and its training `summary`.
    pub fn new(spec: &ModelSpec, summary: Summary) -> Self {
        Self {
            preprocessing: spec.preprocessing.clone(),
            predictions: monitor::prediction_reference(&summary, spec),
            features: monitor::feature_columns(spec),
            summary,
        }
    }

    /// The inputs' drift report of `window`.
    pub fn inputs(&self, window: &Summary, settings: &DriftSettings) -> DriftReport {
        compare(&self.summary, window, &self.features, settings)
    }
}

/// Writes every replica's windows every [`FLUSH_SECS`] seconds, until the process ends.
pub fn spawn_flusher(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(FLUSH_SECS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = state.monitoring.flush(&state).await {
                tracing::warn!(error = %e, "writing drift windows");
            }
        }
    });
}

/// Sets the drift gauges from this replica's open windows: by name for public deployments
/// (`/metrics` answers anyone, so a private deployment's name and features never become
/// labels); every deployment, private ones included, counts in
/// `b3o_drift_deployments_drifting` (what an alert rule watches).
pub async fn refresh_gauges(state: &AppState) {
    let monitor = &state.monitoring;
    let mut drifting = 0u64;
    for (deployment, version_id, window) in monitor.open_windows() {
        let Ok(Some(reference)) = monitor.reference(state, version_id).await else {
            continue;
        };
        let settings = store::settings(&state.db, &deployment)
            .await
            .unwrap_or_default();
        let report = reference.inputs(&window, &settings);
        let public = crate::registry::deployments::load(&state.db, &deployment)
            .await
            .ok()
            .flatten()
            .is_some_and(|d| d.public);
        drifting += u64::from(report.drifting);
        if !public {
            continue;
        }
        let labels = [("deployment", deployment.clone())];
        metrics::gauge!("b3o_drift_share", &labels).set(report.drift_share);
        metrics::gauge!("b3o_drift_drifting", &labels).set(f64::from(u8::from(report.drifting)));
        metrics::gauge!("b3o_drift_window_rows", &labels).set(window.n_rows as f64);
        let mut worst: Vec<_> = report.features.iter().collect();
        worst.sort_by(|a, b| b.psi.total_cmp(&a.psi));
        for f in worst.into_iter().take(TOP_FEATURES) {
            metrics::gauge!(
                "b3o_drift_feature_psi",
                "deployment" => deployment.clone(),
                "feature" => f.name.clone()
            )
            .set(f.psi);
        }
        if let Some(b3o_models::stats::ColumnSummary::Categorical(c)) =
            window.columns.get(monitor::PREDICTION)
        {
            let total: u64 = c.counts.values().sum();
            for (label, n) in c.counts.iter().take(TOP_LABELS) {
                metrics::gauge!(
                    "b3o_prediction_share",
                    "deployment" => deployment.clone(),
                    "label" => label.clone()
                )
                .set(*n as f64 / total.max(1) as f64);
            }
        }
    }
    metrics::gauge!("b3o_drift_deployments_drifting").set(drifting as f64);
}

/// Features per public deployment with a PSI gauge (the largest).
const TOP_FEATURES: usize = 5;
/// Labels per public deployment with a prediction-share gauge.
const TOP_LABELS: usize = 20;
