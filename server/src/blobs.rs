//! Durable blob files under the data directory. A blob is written to a temporary file in the
//! same directory, fsynced, renamed into place and its directory fsynced, so that once
//! [`write_durable`] returns the bytes survive a crash or power loss; callers commit the
//! database row that points at a blob only after that.
//!
//! Temporary files are named `.tmp-` + 16 hex digits. A failed write removes its own; a
//! process killed mid-write leaves one behind, so [`sweep_stale_temp_files`] removes those
//! untouched for [`STALE_TEMP_AFTER`] (at start-up, then every [`SWEEP_EVERY`] while serving:
//! [`spawn_temp_sweeper`]). A write takes seconds at most, so an hour-old temporary file
//! belongs to no write in progress; younger ones are left alone in case one does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// Start of every temporary file name (then 16 hex digits).
const TEMP_PREFIX: &str = ".tmp-";
/// Temporary files untouched this long are swept.
pub const STALE_TEMP_AFTER: Duration = Duration::from_secs(3600);
/// How often a running server sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(15 * 60);
/// Directory levels below the data directory that a sweep visits (blobs sit a few levels
/// down; the bound keeps a misconfigured `--data-dir /` from walking the whole disk).
const SWEEP_DEPTH: usize = 8;

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `bytes` to `data_dir/rel` atomically and durably (blocking; call from
/// `spawn_blocking`). `rel` is a path the server built, never client input.
pub fn write_durable(data_dir: &Path, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = data_dir.join(rel);
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("blob path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let (tmp_path, tmp) = tempfile_in(dir)?;
    let written = fill(tmp, bytes).and_then(|()| std::fs::rename(&tmp_path, &path));
    if let Err(e) = written {
        // A full disk or an I/O error: leave nothing behind (the sweep is for killed processes).
        let _ = std::fs::remove_file(&tmp_path);
        return Err(e);
    }
    // The rename itself must reach the disk too.
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Writes and fsyncs `bytes`, then closes the file.
fn fill(mut file: std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

/// `.tmp-` + 16 hex digits: only the names [`tempfile_in`] makes, so a sweep never touches
/// anyone else's files even in a shared directory.
fn is_temp_name(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.strip_prefix(TEMP_PREFIX))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

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

/// Async [`sweep_stale_temp_files`] with [`STALE_TEMP_AFTER`], logging what it removed.
pub async fn sweep(data_dir: &Path) {
    let dir = data_dir.to_path_buf();
    match tokio::task::spawn_blocking(move || sweep_stale_temp_files(&dir, STALE_TEMP_AFTER)).await
    {
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
pub fn spawn_temp_sweeper(data_dir: PathBuf) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; start-up has just swept.
        every.tick().await;
        loop {
            every.tick().await;
            sweep(&data_dir).await;
        }
    });
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    for _ in 0..16 {
        let name = format!(".tmp-{:016x}", rand::random::<u64>());
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("could not create a temporary file"))
}

/// Async wrapper of [`write_durable`].
pub async fn write(data_dir: &Path, rel: String, bytes: Vec<u8>) -> std::io::Result<()> {
    let dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || write_durable(&dir, &rel, &bytes))
        .await
        .map_err(std::io::Error::other)?
}

/// Reads `data_dir/rel`.
pub async fn read(data_dir: &Path, rel: &str) -> std::io::Result<Vec<u8>> {
    tokio::fs::read(data_dir.join(rel)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_atomically_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        write_durable(dir.path(), "a/b/c.bin", b"one").unwrap();
        write_durable(dir.path(), "a/b/c.bin", b"two").unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/b/c.bin")).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["c.bin"]);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the blob should go: the rename fails.
        std::fs::create_dir_all(dir.path().join("a/b.bin/x")).unwrap();
        assert!(write_durable(dir.path(), "a/b.bin", b"one").is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["b.bin"]);
    }

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
