//! Temporary files left by killed processes: a write or a scratch file removes its own, but a
//! process killed mid-write leaves one behind, so [`sweep_stale_temp_files`] removes those
//! untouched for [`STALE_TEMP_AFTER`] (at start-up, then every [`SWEEP_EVERY`] while serving:
//! [`spawn_temp_sweeper`]), under the data directory (scratch files, blobs of the default
//! store) and a `file://` store's folder. A write takes seconds at most, and a scratch file
//! being written is touched all the time, so an hour-old temporary file belongs to no write in
//! progress; younger ones are left alone in case one does.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::BlobStore;
use super::durable::is_temp_name;

/// Temporary files untouched this long are swept.
pub const STALE_TEMP_AFTER: Duration = Duration::from_secs(3600);
/// How often a running server sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(15 * 60);
/// Directory levels below the data directory that a sweep visits (blobs sit a few levels
/// down; the bound keeps a misconfigured `--data-dir /` from walking the whole disk).
const SWEEP_DEPTH: usize = 8;

/// Removes the temporary files under `data_dir` (at most [`SWEEP_DEPTH`] levels down, not
/// following symbolic links) last modified more than `older_than` ago; returns how many.
/// Best effort (blocking; call from `spawn_blocking`): unreadable directories and files that
/// vanish meanwhile are skipped, so a sweep never stops the server.
pub fn sweep_stale_temp_files(data_dir: &Path, older_than: Duration) -> usize {
    let cutoff = SystemTime::now().checked_sub(older_than);
    let mut removed = 0;
    let mut dirs = vec![(data_dir.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // `DirEntry::file_type` does not follow symbolic links.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if depth < SWEEP_DEPTH {
                    dirs.push((entry.path(), depth + 1));
                }
                continue;
            }
            if !kind.is_file() || !is_temp_name(&entry.file_name()) {
                continue;
            }
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| cutoff.is_some_and(|c| modified < c));
            if stale {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a stale temporary file");
                    }
                }
            }
        }
    }
    removed
}

/// Async [`sweep_stale_temp_files`] with [`STALE_TEMP_AFTER`] over the store's local
/// folders, logging what it removed.
pub async fn sweep(store: &BlobStore) {
    let dirs = store.local_dirs();
    let swept = tokio::task::spawn_blocking(move || {
        dirs.iter()
            .map(|dir| sweep_stale_temp_files(dir, STALE_TEMP_AFTER))
            .sum::<usize>()
    })
    .await;
    match swept {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            removed = n,
            "removed temporary files left by interrupted writes"
        ),
        Err(e) => tracing::warn!(error = %e, "the temporary file sweep failed"),
    }
}

/// Sweeps every [`SWEEP_EVERY`] for as long as the runtime runs (the first sweep is the
/// caller's, at start-up).
pub fn spawn_temp_sweeper(store: Arc<BlobStore>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; start-up has just swept.
        every.tick().await;
        loop {
            every.tick().await;
            sweep(&store).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_temporary_files_of_ours_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("groups/7/rounds");
        std::fs::create_dir_all(&deep).unwrap();
        let old = SystemTime::now() - Duration::from_secs(7200);
        let make = |name: &str, modified: Option<SystemTime>| {
            let path = deep.join(name);
            let f = std::fs::File::create(&path).unwrap();
            if let Some(t) = modified {
                f.set_modified(t).unwrap();
            }
            path
        };
        let stale = make(".tmp-0123456789abcdef", Some(old));
        let fresh = make(".tmp-fedcba9876543210", None);
        let other = make(".tmp-report", Some(old));
        let blob = make("3.bin", Some(old));
        assert_eq!(sweep_stale_temp_files(dir.path(), STALE_TEMP_AFTER), 1);
        assert!(!stale.exists());
        assert!(fresh.exists() && other.exists() && blob.exists());
        assert_eq!(sweep_stale_temp_files(dir.path(), STALE_TEMP_AFTER), 0);
    }
}
