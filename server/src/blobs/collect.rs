//! The orphan collector. A blob is stored before the row that points at it commits, so a crash
//! or a failed transaction in between leaves a blob no row references. Every
//! [`COLLECT_EVERY`] (and once at start-up) [`collect_orphans`] walks the server's two blob
//! folders, `groups/{id}/` and `jobs/user-{id}/` (nothing else in the store is looked at: the
//! default store is the data directory, with the database in it), and deletes the blobs older
//! than [`ORPHAN_GRACE`] that no row references:
//! `model_versions.{weights,optimizer_state,onnx}_path`, `updates.blob_path`,
//! `jobs.{input,result}_path`. Deleted groups' and accounts' leftovers go the same way.
//!
//! A write takes seconds and its row commits right after, so an hour-old blob without a row
//! will never get one. Each deletion is checked three times: against the folder's references
//! loaded before listing, against an exact query of every reference column just before, and
//! against a fresh `head` (a blob rewritten since it was listed is young again and kept).
//! Several replicas may collect at once: deletions are idempotent.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;

use super::durable::TEMP_PREFIX;
use super::{BlobError, BlobMeta, BlobStore};
use crate::db::Db;

/// Blobs younger than this are never collected (their row may be about to commit).
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);
/// How often a running server collects.
pub const COLLECT_EVERY: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("reading blob references: {0}")]
    Database(#[from] sqlx::Error),
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    /// Blobs looked at.
    pub seen: usize,
    /// Orphans deleted.
    pub deleted: usize,
}

/// One pass: deletes the blobs older than `grace` that no row references.
pub async fn collect_orphans(
    store: &BlobStore,
    db: &Db,
    grace: Duration,
) -> Result<Collected, CollectError> {
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut done = Collected::default();
    for folder in store.list_folders("groups").await? {
        let Some(id) = id_after(&folder, "groups/") else {
            continue;
        };
        let refs = group_references(db, id).await?;
        collect_folder(store, db, &folder, &refs, cutoff, &mut done).await?;
    }
    for folder in store.list_folders("jobs").await? {
        let Some(id) = id_after(&folder, "jobs/user-") else {
            continue;
        };
        let refs = job_references(db, id).await?;
        collect_folder(store, db, &folder, &refs, cutoff, &mut done).await?;
    }
    Ok(done)
}

/// `groups/7` -> 7 for prefix `groups/`; `None` for a folder not of ours.
fn id_after(folder: &str, prefix: &str) -> Option<i64> {
    folder.strip_prefix(prefix)?.parse().ok()
}

async fn group_references(db: &Db, group_id: i64) -> Result<HashSet<String>, sqlx::Error> {
    let versions: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT weights_path, optimizer_state_path, onnx_path FROM model_versions
         WHERE group_id = $1",
    )
    .bind(group_id)
    .fetch_all(db)
    .await?;
    let updates: Vec<String> = sqlx::query_scalar(
        "SELECT u.blob_path FROM updates u JOIN rounds r ON r.id = u.round_id
         WHERE r.group_id = $1",
    )
    .bind(group_id)
    .fetch_all(db)
    .await?;
    Ok(versions
        .into_iter()
        .flat_map(|(w, o, x)| [Some(w), o, x])
        .flatten()
        .chain(updates)
        .collect())
}

async fn job_references(db: &Db, user_id: i64) -> Result<HashSet<String>, sqlx::Error> {
    let jobs: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT input_path, result_path FROM jobs WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(db)
            .await?;
    Ok(jobs
        .into_iter()
        .flat_map(|(i, r)| [Some(i), r])
        .flatten()
        .collect())
}

/// Whether any row anywhere references `key` (the last check before a deletion).
async fn referenced(db: &Db, key: &str) -> Result<bool, sqlx::Error> {
    let versions: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM model_versions
         WHERE weights_path = $1 OR optimizer_state_path = $2 OR onnx_path = $3",
    )
    .bind(key)
    .bind(key)
    .bind(key)
    .fetch_one(db)
    .await?;
    let updates: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM updates WHERE blob_path = $1")
        .bind(key)
        .fetch_one(db)
        .await?;
    let jobs: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE input_path = $1 OR result_path = $2")
            .bind(key)
            .bind(key)
            .fetch_one(db)
            .await?;
    Ok(versions + updates + jobs > 0)
}

/// A candidate: old, not a temporary file of a write in progress (the sweep's), unreferenced.
fn candidate(blob: &BlobMeta, refs: &HashSet<String>, cutoff: SystemTime) -> bool {
    let name = blob.key.rsplit('/').next().unwrap_or_default();
    blob.modified < cutoff && !name.starts_with(TEMP_PREFIX) && !refs.contains(&blob.key)
}

async fn collect_folder(
    store: &BlobStore,
    db: &Db,
    folder: &str,
    refs: &HashSet<String>,
    cutoff: SystemTime,
    done: &mut Collected,
) -> Result<(), CollectError> {
    let mut orphans = Vec::new();
    let mut listed = store.list(folder);
    while let Some(blob) = listed.next().await {
        let blob = blob?;
        done.seen += 1;
        if candidate(&blob, refs, cutoff) {
            orphans.push(blob.key);
        }
    }
    drop(listed);
    for key in orphans {
        if referenced(db, &key).await? {
            continue;
        }
        // Rewritten since it was listed (a retried write about to commit its row): keep it.
        match store.head(&key).await? {
            Some(now) if now.modified < cutoff => {}
            _ => continue,
        }
        store.delete(&key).await?;
        tracing::info!(key, "deleted an orphaned blob (no row references it)");
        done.deleted += 1;
    }
    Ok(())
}

/// Collects once now and then every [`COLLECT_EVERY`] for as long as the runtime runs, logging
/// failures (an unreachable store is tried again next time).
pub fn spawn_collector(store: Arc<BlobStore>, db: Db) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(COLLECT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match collect_orphans(&store, &db, ORPHAN_GRACE).await {
                Ok(Collected { deleted: 0, .. }) => {}
                Ok(c) => tracing::info!(
                    deleted = c.deleted,
                    seen = c.seen,
                    "orphaned blobs collected"
                ),
                Err(e) => tracing::warn!(error = %e, "the orphaned blob collection failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_unreferenced_blobs_of_ours_are_candidates() {
        let now = SystemTime::now();
        let cutoff = now - ORPHAN_GRACE;
        let old = now - 2 * ORPHAN_GRACE;
        let blob = |key: &str, modified| BlobMeta {
            key: key.into(),
            size: 1,
            modified,
        };
        let refs = HashSet::from(["groups/1/versions/round-1.onnx".to_string()]);
        assert!(candidate(&blob("groups/1/x.bin", old), &refs, cutoff));
        assert!(!candidate(&blob("groups/1/x.bin", now), &refs, cutoff));
        assert!(!candidate(
            &blob("groups/1/versions/round-1.onnx", old),
            &refs,
            cutoff
        ));
        assert!(!candidate(
            &blob("groups/1/.tmp-0123456789abcdef", old),
            &refs,
            cutoff
        ));
        assert_eq!(id_after("groups/12", "groups/"), Some(12));
        assert_eq!(id_after("jobs/user-3", "jobs/user-"), Some(3));
        assert_eq!(id_after("jobs/other", "jobs/user-"), None);
    }
}
