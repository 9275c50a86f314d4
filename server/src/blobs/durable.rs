//! Durable writes of the local store, done here rather than by `object_store`: its
//! `LocalFileSystem` writes a staging file and renames it into place without any fsync, so a
//! crash soon after could leave a short file under a blob's final name. Here a blob is written
//! to a temporary file in its directory, fsynced, renamed into place and its directory
//! fsynced: once a write returns, the bytes survive a crash or power loss.
//!
//! Temporary files are named `.tmp-` + 16 hex digits ([`TEMP_PREFIX`]); a failed write removes
//! its own, and [`super::sweep`] removes those a killed process left.
//! All functions block: call them from `spawn_blocking`.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Start of every temporary file name (then 16 hex digits).
pub const TEMP_PREFIX: &str = ".tmp-";

/// Writes `bytes` to `path` atomically and durably.
pub fn write_durable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent(path)?;
    std::fs::create_dir_all(dir)?;
    let (tmp_path, tmp) = tempfile_in(dir)?;
    let written = fill(tmp, bytes).and_then(|()| std::fs::rename(&tmp_path, path));
    if let Err(e) = written {
        // A full disk or an I/O error: leave nothing behind (the sweep is for killed processes).
        let _ = std::fs::remove_file(&tmp_path);
        return Err(e);
    }
    // The rename itself must reach the disk too.
    sync_dir(dir)
}

/// Moves the finished file `from` (a scratch file) to `to` durably: fsync, rename, fsync the
/// directory. When the two are on different file systems the content is copied into a
/// temporary file beside `to` first (same guarantees) and `from` is left to its owner.
pub fn place_file(from: &Path, to: &Path) -> std::io::Result<()> {
    let dir = parent(to)?;
    std::fs::create_dir_all(dir)?;
    std::fs::File::open(from)?.sync_all()?;
    match std::fs::rename(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            let (tmp_path, mut tmp) = tempfile_in(dir)?;
            let copied = std::fs::File::open(from)
                .and_then(|mut src| std::io::copy(&mut src, &mut tmp))
                .and_then(|_| tmp.sync_all())
                .and_then(|()| std::fs::rename(&tmp_path, to));
            if let Err(e) = copied {
                let _ = std::fs::remove_file(&tmp_path);
                return Err(e);
            }
        }
        Err(e) => return Err(e),
    }
    sync_dir(dir)
}

fn parent(path: &Path) -> std::io::Result<&Path> {
    path.parent()
        .ok_or_else(|| std::io::Error::other("blob path has no parent"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes and fsyncs `bytes`, then closes the file.
fn fill(mut file: std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

/// `.tmp-` + 16 hex digits: only the names [`tempfile_in`] makes, so a sweep never touches
/// anyone else's files even in a shared directory.
pub fn is_temp_name(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.strip_prefix(TEMP_PREFIX))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A new file named `.tmp-` + 16 random hex digits in `dir`.
pub fn temp_name() -> String {
    format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>())
}

pub fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    for _ in 0..16 {
        let path = dir.join(temp_name());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<std::ffi::OsString> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    }

    #[test]
    fn write_replaces_atomically_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c.bin");
        write_durable(&path, b"one").unwrap();
        write_durable(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(names(&dir.path().join("a/b")), vec!["c.bin"]);
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the blob should go: the rename fails.
        std::fs::create_dir_all(dir.path().join("a/b.bin/x")).unwrap();
        assert!(write_durable(&dir.path().join("a/b.bin"), b"one").is_err());
        assert_eq!(names(&dir.path().join("a")), vec!["b.bin"]);
    }

    #[test]
    fn a_placed_file_moves_into_a_new_directory() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join(temp_name());
        std::fs::write(&from, b"spooled").unwrap();
        let to = dir.path().join("groups/1/x.bin");
        place_file(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"spooled");
        assert!(!from.exists());
        assert!(is_temp_name(std::ffi::OsStr::new(&temp_name())));
        assert!(!is_temp_name(std::ffi::OsStr::new(".tmp-report")));
    }
}
