//! Operator-facing settings of `b3o serve`: flags, each also settable by environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "B3O_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Also serve the Open Inference Protocol over gRPC (KServe's and Triton's
    /// `inference.GRPCInferenceService`, HTTP/2 without TLS) on this address, e.g.
    /// `0.0.0.0:8001`; off when absent. Same authorisation and limits as the HTTP routes.
    #[arg(long, env = "B3O_GRPC_BIND")]
    pub grpc_bind: Option<SocketAddr>,
    /// Directory holding the SQLite database, scratch files and (without `--blob-store`) the
    /// blobs; created if missing.
    #[arg(long, env = "B3O_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Database URL; defaults to the SQLite file `b3o.sqlite3` inside the data directory.
    #[arg(long, env = "B3O_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where blobs (updates, model versions, ONNX exports, job files) are kept: by default the
    /// data directory; `s3://bucket?endpoint=http://host:9000&region=...` for a bucket of any
    /// S3-compatible service (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), or
    /// `file:///path` for another folder.
    #[arg(long, env = "B3O_BLOB_STORE", value_parser = crate::blobs::location::parse, hide_env_values = true)]
    pub blob_store: Option<crate::blobs::BlobLocation>,
    /// Directory of the built web app (index.html, assets/); the API runs without it.
    #[arg(long, env = "B3O_STATIC_DIR", default_value = "./dist")]
    pub static_dir: PathBuf,
    /// The server is reached over HTTPS (directly or through a TLS-terminating proxy): session
    /// cookies get `Secure` and the `__Host-` name prefix.
    #[arg(long, env = "B3O_BEHIND_TLS")]
    pub behind_tls: bool,
    /// Let anyone create an account at `POST /api/auth/register`.
    #[arg(long, env = "B3O_ALLOW_REGISTRATION", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_registration: bool,
    /// How long a login session lasts, in hours.
    #[arg(long, env = "B3O_SESSION_TTL_HOURS", default_value_t = 168)]
    pub session_ttl_hours: u32,
    /// Take the client address for rate limits (failed sign-ins, registrations per hour, join
    /// codes) from the last `X-Forwarded-For` entry, and our host (for the `Origin` check of
    /// model calls) from `X-Forwarded-Host`. Set it behind a reverse proxy that sets them:
    /// without it every client has the proxy's address and shares the proxy's limits (one
    /// allowance of registrations for the whole world). Never set it without such a proxy:
    /// clients could forge the headers.
    #[arg(long, env = "B3O_TRUST_PROXY")]
    pub trust_proxy: bool,
    /// Origins besides our own allowed to embed the app in a frame (the embed widget), comma
    /// separated, e.g. `https://intranet.example.org`.
    #[arg(long, env = "B3O_FRAME_ANCESTORS", value_delimiter = ',')]
    pub frame_ancestors: Vec<String>,
    /// Email of the first administrator, created at first start only.
    #[arg(long, env = "B3O_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// Password of the first administrator; without it a one-time password is generated and
    /// printed once. Prefer the environment variable to the flag (flags show in `ps`).
    #[arg(long, env = "B3O_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Largest accepted model update upload, in bytes.
    #[arg(long, env = "B3O_MAX_UPDATE_BYTES", default_value_t = crate::limits::DEFAULT_MAX_UPDATE_BYTES)]
    pub max_update_bytes: usize,
    /// Seed the demo models (`churn`, trained on generated data, and `digits`, on MNIST; both
    /// ship as weights),
    /// public to this site, when they are not deployed yet.
    #[arg(long, env = "B3O_DEMO")]
    pub demo: bool,
    /// Most single-row inference requests run together as one batch.
    #[arg(long, env = "B3O_MAX_BATCH", default_value_t = 64)]
    pub max_batch: usize,
    /// Longest a single-row request waits for others to share its batch, in microseconds.
    #[arg(long, env = "B3O_MAX_BATCH_DELAY_US", default_value_t = 500)]
    pub max_batch_delay_us: u64,
    /// Memory cap of the loaded-model cache, in MiB (least recently used models leave first).
    #[arg(long, env = "B3O_MODEL_CACHE_MB", default_value_t = 256)]
    pub model_cache_mb: usize,
    /// Summarise what each deployment scores, for drift monitoring (counts and sketches per
    /// column, never rows).
    #[arg(long, env = "B3O_DRIFT", default_value_t = true, action = clap::ArgAction::Set)]
    pub drift: bool,
    /// A drift window closes after this many seconds ...
    #[arg(long, env = "B3O_DRIFT_WINDOW_SECS", default_value_t = 3600)]
    pub drift_window_secs: u64,
    /// ... or this many rows, whichever comes first (per replica).
    #[arg(long, env = "B3O_DRIFT_WINDOW_ROWS", default_value_t = 10_000)]
    pub drift_window_rows: u64,
    /// Largest CSV a batch job accepts, in MiB.
    #[arg(long, env = "B3O_MAX_JOB_MB", default_value_t = 1024)]
    pub max_job_mb: u64,
    /// Batch jobs run at the same time; more wait in the queue.
    #[arg(long, env = "B3O_JOB_WORKERS", default_value_t = 1)]
    pub job_workers: usize,
    /// Serve Prometheus metrics at `GET /metrics` (without authentication: keep the port
    /// private or turn this off).
    #[arg(long, env = "B3O_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics: bool,
    /// The drain and grace periods of a graceful shutdown (`lifecycle`).
    #[command(flatten)]
    pub shutdown: crate::lifecycle::ShutdownSettings,
    /// Resource limits and quotas (see SECURITY.md).
    #[command(flatten)]
    pub limits: crate::limits::Limits,
}

impl ServeConfig {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("b3o.sqlite3").display()))
    }
}
