//! Per-account quotas of batch jobs, checked before an upload is read and again when its job
//! is recorded:
//!
//! - **Active jobs** (`--max-active-jobs-per-account`): queued and running jobs, plus uploads
//!   in progress, at most this many; one more is a 429 naming the limit.
//! - **Storage** (`--max-job-storage-mb-per-account`): the account's stored job inputs and
//!   results, plus uploads in progress, at most this many MiB. An account at its cap is
//!   refused before its upload is read; an upload that would pass it is cut off while it
//!   streams; both are 413 naming the limit. Results are written by the server and not cut
//!   short: a result that takes an account past its cap makes its next upload a 413 until it
//!   deletes jobs.
//!
//! Uploads in progress are counted in memory ([`InFlight`], per account) by an [`UploadSlot`]
//! that gives its counts back when dropped, however the request ends, so concurrent uploads
//! of one account share its quota. The database is the authority when the job is recorded:
//! [`UploadSlot::check_commit`] counts again inside the write transaction that inserts it.
//!
//! Administrators are exempt, as from the group quota: they run the server (and can delete any
//! file from it); `--max-job-mb` still bounds each upload.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::SqliteConnection;

use super::JobRuntime;
use crate::accounts::CurrentUser;
use crate::error::ApiError;
use crate::state::AppState;

/// How long a caller refused for too many active jobs is asked to wait.
const RETRY_AFTER_SECS: u64 = 30;

/// One account's uploads in progress.
#[derive(Debug, Default, Clone, Copy)]
struct Ledger {
    uploads: usize,
    bytes: u64,
}

/// Uploads in progress, per account.
#[derive(Debug, Default)]
pub struct InFlight(Mutex<HashMap<i64, Ledger>>);

impl InFlight {
    fn with<T>(&self, user_id: i64, f: impl FnOnce(&mut Ledger) -> T) -> T {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let ledger = map.entry(user_id).or_default();
        let out = f(ledger);
        if ledger.uploads == 0 && ledger.bytes == 0 {
            map.remove(&user_id);
        }
        out
    }
}

/// An account's limits (an [`UploadSlot`] of an administrator has none).
#[derive(Debug, Clone, Copy)]
struct Quota {
    max_active: usize,
    max_bytes: u64,
}

/// An admitted upload: holds its place among the account's active jobs and counts its bytes
/// against the account's storage until it is dropped.
pub(super) struct UploadSlot {
    jobs: Arc<JobRuntime>,
    user_id: i64,
    quota: Option<Quota>,
    /// Bytes of the account's jobs stored when the upload was admitted.
    stored: u64,
    /// Bytes of this upload counted in the ledger.
    bytes: u64,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        if self.quota.is_some() {
            let bytes = self.bytes;
            self.jobs.uploads.with(self.user_id, |l| {
                l.uploads = l.uploads.saturating_sub(1);
                l.bytes = l.bytes.saturating_sub(bytes);
            });
        }
    }
}

fn too_many(max_active: usize) -> ApiError {
    ApiError::TooManyRequests {
        message: format!(
            "an account may have at most {max_active} batch jobs queued or running \
             (--max-active-jobs-per-account); wait for one to finish or delete one"
        ),
        retry_after_secs: RETRY_AFTER_SECS,
    }
}

fn storage_full(max_bytes: u64, stored: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "an account's batch job files (inputs and results) may take at most {} MiB \
         (--max-job-storage-mb-per-account); yours take {} MiB and this upload would pass the \
         limit: delete finished jobs to make room",
        max_bytes >> 20,
        stored.div_ceil(1 << 20)
    ))
}

/// Queued and running jobs of `user_id`.
async fn active_jobs(db: &mut SqliteConnection, user_id: i64) -> Result<u64, ApiError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE user_id = $1 AND status IN ('queued', 'running')",
    )
    .bind(user_id)
    .fetch_one(db)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Bytes of `user_id`'s stored job inputs and results.
async fn stored_bytes(db: &mut SqliteConnection, user_id: i64) -> Result<u64, ApiError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(MAX(input_bytes, 0) + MAX(COALESCE(result_bytes, 0), 0)), 0)
         FROM jobs WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(db)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Admits one more upload of `user` (429 past the active-job limit, 413 at the storage cap),
/// before a byte of it is read.
pub(super) async fn admit(state: &AppState, user: &CurrentUser) -> Result<UploadSlot, ApiError> {
    let quota = (!user.is_admin()).then(|| Quota {
        max_active: state.limits.max_active_jobs_per_account,
        max_bytes: state
            .limits
            .max_job_storage_mb_per_account
            .saturating_mul(1 << 20),
    });
    // Counted first and given back on any refusal (the slot's drop): two uploads racing for
    // the last place both see each other and at worst both are refused, never both admitted.
    let uploads = match quota {
        Some(_) => state.jobs.uploads.with(user.id, |l| {
            l.uploads = l.uploads.saturating_add(1);
            l.uploads
        }),
        None => 0,
    };
    let mut slot = UploadSlot {
        jobs: state.jobs.clone(),
        user_id: user.id,
        quota,
        stored: 0,
        bytes: 0,
    };
    let Some(quota) = quota else {
        return Ok(slot);
    };
    let mut db = state.db.acquire().await?;
    let active = active_jobs(&mut db, user.id).await?;
    let uploads = u64::try_from(uploads).unwrap_or(u64::MAX);
    if active.saturating_add(uploads) > quota.max_active as u64 {
        return Err(too_many(quota.max_active));
    }
    slot.stored = stored_bytes(&mut db, user.id).await?;
    if slot.stored >= quota.max_bytes {
        return Err(storage_full(quota.max_bytes, slot.stored));
    }
    Ok(slot)
}

impl UploadSlot {
    /// Counts `n` more bytes of this upload: 413 when the account's stored jobs and its
    /// uploads in progress would pass its storage quota.
    pub(super) fn add(&mut self, n: u64) -> Result<(), ApiError> {
        let Some(quota) = self.quota else {
            return Ok(());
        };
        let in_flight = self.jobs.uploads.with(self.user_id, |l| {
            l.bytes = l.bytes.saturating_add(n);
            l.bytes
        });
        self.bytes = self.bytes.saturating_add(n);
        if self.stored.saturating_add(in_flight) > quota.max_bytes {
            return Err(storage_full(quota.max_bytes, self.stored));
        }
        Ok(())
    }

    /// Inside the transaction that records the job: the account's active jobs and stored
    /// bytes counted again from the database, with this upload's `bytes` (the last word when
    /// uploads of one account raced).
    pub(super) async fn check_commit(
        &self,
        db: &mut SqliteConnection,
        bytes: u64,
    ) -> Result<(), ApiError> {
        let Some(quota) = self.quota else {
            return Ok(());
        };
        if active_jobs(db, self.user_id).await? >= quota.max_active as u64 {
            return Err(too_many(quota.max_active));
        }
        let stored = stored_bytes(db, self.user_id).await?;
        if stored.saturating_add(bytes) > quota.max_bytes {
            return Err(storage_full(quota.max_bytes, stored));
        }
        Ok(())
    }
}
