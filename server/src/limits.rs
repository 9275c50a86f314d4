//! Every resource limit of `b3o serve` in one place: each is a flag (and a `B3O_*` environment
//! variable) with a default meant for one machine serving the public. SECURITY.md lists them
//! with the threat each one answers.
//!
//! The rule they serve: no request, anonymous or signed in, can crash, stall or exhaust the
//! server. Sizes a client sends are checked against these (and against what its body can hold)
//! before anything is allocated from them; work on the blocking pool is admitted under a
//! concurrency limit; per-account quotas answer 429 or 413 with the limit named.

/// Default upload limit: well above the largest demo model (the image CNN is a few MB).
pub const DEFAULT_MAX_UPDATE_BYTES: usize = 256 * 1024 * 1024;

/// Resource limits and quotas (flattened into [`crate::config::ServeConfig`]).
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    // --- Connections -------------------------------------------------------------------------
    /// Most open client connections; further connections wait in the kernel's backlog until
    /// one closes.
    #[arg(long, env = "B3O_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (also how long an idle keep-alive
    /// connection stays open).
    #[arg(long, env = "B3O_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds a request body may go without sending a byte before the request is dropped.
    #[arg(long, env = "B3O_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub body_timeout_secs: u64,

    // --- Inference -----------------------------------------------------------------------------
    /// Inference requests (V2, codeless CSV/rows/image) doing work at the same time; 0 means
    /// the number of CPU cores. Others wait up to `--inference-queue-timeout-ms`, then get 503.
    #[arg(long, env = "B3O_INFERENCE_CONCURRENCY", default_value_t = 0)]
    pub inference_concurrency: usize,
    /// Longest an inference request waits for its turn before a 503 with `Retry-After`.
    #[arg(long, env = "B3O_INFERENCE_QUEUE_TIMEOUT_MS", default_value_t = 10_000)]
    pub inference_queue_timeout_ms: u64,
    /// Longest an inference request waits for its model work, in seconds, before a 503 (the
    /// work itself still holds its slot until it ends).
    #[arg(long, env = "B3O_INFERENCE_TIMEOUT_SECS", default_value_t = 60)]
    pub inference_timeout_secs: u64,
    /// Request bodies of inference routes held in memory at once, in MiB, across all requests
    /// (each body counts its size against this budget while it is read and used).
    #[arg(long, env = "B3O_INFERENCE_BODY_BUDGET_MB", default_value_t = 64)]
    pub inference_body_budget_mb: usize,
    /// Most columns in a CSV header or a JSON row.
    #[arg(long, env = "B3O_MAX_COLUMNS", default_value_t = 10_000)]
    pub max_columns: usize,
    /// Most rows (CSV rows, JSON rows, V2 batch) in one inference request; larger inputs go
    /// to batch jobs.
    #[arg(long, env = "B3O_MAX_ROWS_PER_REQUEST", default_value_t = 100_000)]
    pub max_rows_per_request: usize,
    /// Largest decoded image, in MiB (width x height x bytes per pixel), checked before
    /// decoding.
    #[arg(long, env = "B3O_MAX_IMAGE_DECODED_MB", default_value_t = 64)]
    pub max_image_decoded_mb: usize,

    // --- Federation ----------------------------------------------------------------------------
    /// Most metrics (name/value pairs) an update or evaluation may carry.
    #[arg(long, env = "B3O_MAX_METRICS_PER_UPDATE", default_value_t = 64)]
    pub max_metrics_per_update: usize,
    /// Most parameters of a group's model (custom architectures included).
    #[arg(long, env = "B3O_MAX_MODEL_PARAMETERS", default_value_t = 10_000_000)]
    pub max_model_parameters: usize,
    /// Groups one account may own (administrators are exempt).
    #[arg(long, env = "B3O_MAX_GROUPS_PER_ACCOUNT", default_value_t = 20)]
    pub max_groups_per_account: usize,
    /// Failed join-code attempts per account and per client address in 15 minutes.
    #[arg(long, env = "B3O_MAX_JOIN_FAILURES", default_value_t = 20)]
    pub max_join_failures: u32,

    // --- Accounts ------------------------------------------------------------------------------
    /// Account registrations per client address per hour (then 429 with `Retry-After`); 0
    /// turns the limit off. Behind a reverse proxy, pass `--trust-proxy`: without it every
    /// client has the proxy's address and all share this one allowance.
    #[arg(long, env = "B3O_MAX_REGISTRATIONS_PER_HOUR", default_value_t = 10)]
    pub max_registrations_per_hour: u32,

    // --- Batch jobs ----------------------------------------------------------------------------
    /// Batch jobs one account may have queued or running, uploads in progress included
    /// (administrators are exempt).
    #[arg(long, env = "B3O_MAX_ACTIVE_JOBS_PER_ACCOUNT", default_value_t = 4)]
    pub max_active_jobs_per_account: usize,
    /// Disk space one account's stored job inputs and results may take, in MiB, uploads in
    /// progress included (administrators are exempt).
    #[arg(
        long,
        env = "B3O_MAX_JOB_STORAGE_MB_PER_ACCOUNT",
        default_value_t = 4096
    )]
    pub max_job_storage_mb_per_account: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            inference_concurrency: 0,
            inference_queue_timeout_ms: 10_000,
            inference_timeout_secs: 60,
            inference_body_budget_mb: 64,
            max_columns: 10_000,
            max_rows_per_request: 100_000,
            max_image_decoded_mb: 64,
            max_metrics_per_update: 64,
            max_model_parameters: 10_000_000,
            max_groups_per_account: 20,
            max_join_failures: 20,
            max_registrations_per_hour: 10,
            max_active_jobs_per_account: 4,
            max_job_storage_mb_per_account: 4096,
        }
    }
}

impl Limits {
    /// Inference requests working at once (`--inference-concurrency`, 0 = the cores).
    pub fn inference_concurrency(&self) -> usize {
        match self.inference_concurrency {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// The body budget in bytes.
    pub fn inference_body_budget_bytes(&self) -> usize {
        self.inference_body_budget_mb.saturating_mul(1 << 20)
    }

    /// The decoded-image cap in bytes.
    pub fn max_image_decoded_bytes(&self) -> u64 {
        (self.max_image_decoded_mb as u64).saturating_mul(1 << 20)
    }
}

/// Most bytes read and thrown away from a refused body ([`drain_refused`]), and for how long.
const DRAIN_BYTES: usize = 32 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and discards what is left of a refused body, within [`DRAIN_BYTES`] and
/// [`DRAIN_TIME`], holding none of it, before the refusal (413) is sent. A server that answers
/// and closes while the client still sends leaves unread bytes in its socket, and Linux then
/// resets the connection: a client that writes its whole body before reading the answer (most
/// HTTP clients) sees "broken pipe" or "connection reset" instead of the 413 that says why
/// (nginx's "lingering close" answers the same problem). Bodies far over the limit still get
/// the reset: reading them all would hand an attacker the server's bandwidth.
pub(crate) async fn drain_refused(stream: &mut axum::body::BodyDataStream) {
    use futures_util::StreamExt;
    let mut left = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            left = left.saturating_sub(chunk.len());
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: Limits,
    }

    /// The documented defaults are the flags' defaults (one list, not two that drift).
    #[test]
    fn defaults_match_the_flags() {
        let parsed = Cli::parse_from(["b3o"]).limits;
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Limits::default()));
    }
}
