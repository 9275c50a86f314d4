//! Durable blob files under the data directory. A blob is written to a temporary file in the
//! same directory, fsynced, renamed into place and its directory fsynced, so that once
//! [`write_durable`] returns the bytes survive a crash or power loss; callers commit the
//! database row that points at a blob only after that.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

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
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(bytes)?;
    tmp.1.sync_all()?;
    drop(tmp.1);
    std::fs::rename(&tmp.0, &path)?;
    // The rename itself must reach the disk too.
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
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
}
