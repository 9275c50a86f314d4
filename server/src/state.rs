//! State shared by every handler: the database, the data directory, the blob store, and each
//! area's runtime.

use std::path::PathBuf;
use std::sync::Arc;

use crate::accounts::Accounts;
use crate::blobs::BlobStore;
use crate::db::Db;
use crate::limits::Limits;
use crate::{federation, inference, jobs, monitoring, registry};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// The data directory (database file, scratch files, and the default blob store).
    pub data_dir: PathBuf,
    /// Where blobs are kept (`--blob-store`): updates, versions, ONNX, job files.
    pub blobs: Arc<BlobStore>,
    /// Account settings and the in-memory login rate limiter.
    pub accounts: Arc<Accounts>,
    /// Federation runtime: SSE fan-out, running aggregation sums, upload limit.
    pub federation: Arc<federation::Runtime>,
    /// Resource limits and quotas (`b3o serve` flags).
    pub limits: Arc<Limits>,
    /// Starting, ready, draining or stopping: `/readyz` and the shutdown sequence.
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    /// The registry's change generation: bumped by every deployment write, read by caches.
    pub registry: Arc<registry::Changes>,
    /// Inference runtime: loaded models, deployment cache, admission of requests.
    pub inference: Arc<inference::Shared>,
    /// Batch jobs runtime: workers, cancellation, uploads in progress.
    pub jobs: Arc<jobs::JobRuntime>,
    /// Drift monitoring: the deployments' open windows (also the inference runtime's).
    pub monitoring: Arc<monitoring::Monitor>,
}

/// The runtimes' settings that come from `b3o serve` flags (defaults elsewhere).
#[derive(Debug, Clone, Default)]
pub struct RuntimeSettings {
    pub inference: inference::Settings,
    pub jobs: jobs::Settings,
    pub monitoring: monitoring::Settings,
}

impl AppState {
    /// A state with the inference and jobs runtimes at their default settings, built for
    /// `limits` (tests, `b3o simulate`).
    pub fn new(
        db: Db,
        blobs: Arc<BlobStore>,
        accounts: Arc<Accounts>,
        federation: Arc<federation::Runtime>,
        limits: Arc<Limits>,
    ) -> Self {
        Self::with_settings(
            db,
            blobs,
            accounts,
            federation,
            limits,
            RuntimeSettings::default(),
        )
    }

    /// A state whose inference and jobs runtimes follow `settings` (`b3o serve`).
    pub fn with_settings(
        db: Db,
        blobs: Arc<BlobStore>,
        accounts: Arc<Accounts>,
        federation: Arc<federation::Runtime>,
        limits: Arc<Limits>,
        settings: RuntimeSettings,
    ) -> Self {
        let registry = Arc::new(registry::Changes::default());
        let monitoring = Arc::new(monitoring::Monitor::new(settings.monitoring));
        let inference = Arc::new(inference::Shared::new(
            settings.inference,
            &limits,
            registry.clone(),
            monitoring.clone(),
        ));
        Self {
            db,
            data_dir: blobs.data_dir().to_path_buf(),
            blobs,
            accounts,
            federation,
            limits,
            lifecycle: crate::lifecycle::Lifecycle::ready(),
            registry,
            inference,
            jobs: Arc::new(jobs::JobRuntime::new(settings.jobs)),
            monitoring,
        }
    }
}
