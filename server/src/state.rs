//! State shared by every handler.

use std::path::PathBuf;
use std::sync::Arc;

use crate::accounts::Accounts;
use crate::db::Db;
use crate::federation;
use crate::limits::Limits;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub data_dir: PathBuf,
    /// Account settings and the in-memory login rate limiter.
    pub accounts: Arc<Accounts>,
    /// Federation runtime: SSE fan-out, running aggregation sums, upload limit.
    pub federation: Arc<federation::Runtime>,
    /// Resource limits and quotas (`b3o serve` flags).
    pub limits: Arc<Limits>,
}
