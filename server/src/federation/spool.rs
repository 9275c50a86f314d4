//! An update's body streamed to a temporary file beside its final place, never whole in
//! memory while it arrives: each chunk is hashed and written as it comes, and the byte limit
//! is enforced on the way (413 as soon as it is passed). Once the content has been checked,
//! [`Spooled::persist`] fsyncs the file, renames it into place and fsyncs the directory (the
//! order of [`crate::blobs`]), and only then may the row that points at it commit. A spool
//! that is dropped unpersisted (refused, client gone) removes its file; one left by a killed
//! process is named like [`crate::blobs`]' temporary files (`.tmp-` + 16 hex digits), which
//! its sweep removes.

use std::path::{Path, PathBuf};

use axum::body::Body;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::ApiError;

/// Bytes gathered before a write to the file.
const WRITE_BUFFER: usize = 256 * 1024;

/// A body on disk, checked for size, not yet in its final place.
#[derive(Debug)]
pub struct Spooled {
    /// The temporary file; `None` once persisted.
    temp: Option<PathBuf>,
    dir: PathBuf,
    file: Option<tokio::fs::File>,
    pub sha256: String,
    pub size: u64,
}

/// The 413 for an update over `max` bytes (`size` says how much is known).
pub fn too_large(size: &str, max: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "update is {size} bytes, more than the limit of {max} bytes (--max-update-bytes)"
    ))
}

/// Streams `body` into a new temporary file in `dir` (created if needed), at most `max`
/// bytes: 413 as soon as more arrive, 400 when the client breaks off.
pub async fn receive(dir: &Path, body: Body, max: usize) -> Result<Spooled, ApiError> {
    let internal = |e: std::io::Error| ApiError::Internal(format!("spooling an update: {e}"));
    tokio::fs::create_dir_all(dir).await.map_err(internal)?;
    let (temp, file) = create_temp(dir).await.map_err(internal)?;
    let mut spool = Spooled {
        temp: Some(temp),
        dir: dir.to_path_buf(),
        file: Some(file),
        sha256: String::new(),
        size: 0,
    };
    let mut hasher = Sha256::new();
    let mut pending: Vec<u8> = Vec::with_capacity(WRITE_BUFFER.min(max));
    let mut size: usize = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("reading the update failed: {e}")))?;
        size = size
            .checked_add(chunk.len())
            .filter(|&s| s <= max)
            .ok_or_else(|| too_large(&format!("more than {max}"), max))?;
        hasher.update(&chunk);
        if pending.len() + chunk.len() > WRITE_BUFFER {
            spool.write(&pending).await.map_err(internal)?;
            pending.clear();
        }
        if chunk.len() >= WRITE_BUFFER {
            spool.write(&chunk).await.map_err(internal)?;
        } else {
            pending.extend_from_slice(&chunk);
        }
    }
    spool.write(&pending).await.map_err(internal)?;
    if let Some(file) = spool.file.as_mut() {
        file.flush().await.map_err(internal)?;
    }
    spool.sha256 = hex::encode(hasher.finalize());
    spool.size = size as u64;
    Ok(spool)
}

/// Reads a replayed body only as far as it can still equal the accepted one (`size` bytes
/// with digest `sha256`), in constant memory: `Ok(true)` for the same bytes, `Ok(false)` as
/// soon as they cannot be.
pub async fn same_content(body: Body, size: u64, sha256: &str) -> Result<bool, ApiError> {
    let mut hasher = Sha256::new();
    let mut seen: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("reading the update failed: {e}")))?;
        seen = match seen.checked_add(chunk.len() as u64) {
            Some(s) if s <= size => s,
            _ => return Ok(false),
        };
        hasher.update(&chunk);
    }
    Ok(seen == size && hex::encode(hasher.finalize()) == sha256)
}

impl Spooled {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(file) if !bytes.is_empty() => file.write_all(bytes).await,
            _ => Ok(()),
        }
    }

    /// The spooled bytes, read back for validation (the decoder needs one slice).
    pub async fn read(&self) -> Result<Vec<u8>, ApiError> {
        let path = self
            .temp
            .as_ref()
            .ok_or_else(|| ApiError::Internal("the spooled update is gone".into()))?;
        tokio::fs::read(path)
            .await
            .map_err(|e| ApiError::Internal(format!("reading the spooled update: {e}")))
    }

    /// Makes the file durable under `name` in its directory: fsync, rename, fsync the
    /// directory. After this the caller may commit the row that points at it.
    pub async fn persist(mut self, name: &str) -> Result<(), ApiError> {
        let internal = |e: std::io::Error| ApiError::Internal(format!("storing an update: {e}"));
        let temp = self
            .temp
            .clone()
            .ok_or_else(|| ApiError::Internal("the spooled update is gone".into()))?;
        if let Some(file) = self.file.take() {
            file.sync_all().await.map_err(internal)?;
        }
        let target = self.dir.join(name);
        tokio::fs::rename(&temp, &target).await.map_err(internal)?;
        // Renamed: nothing left to remove on drop, whatever happens next.
        self.temp = None;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
            .await
            .map_err(|e| ApiError::Internal(format!("storing an update: {e}")))?
            .map_err(internal)
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        // Not persisted: the content was refused or never arrived whole. Unlinking is one
        // quick system call, so it is done here rather than handed to a thread.
        drop(self.file.take());
        if let Some(temp) = self.temp.take()
            && let Err(e) = std::fs::remove_file(&temp)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %temp.display(), error = %e, "could not remove a spooled update");
        }
    }
}

/// A new `.tmp-` + 16 hex digits file in `dir` (the names [`crate::blobs`] sweeps).
async fn create_temp(dir: &Path) -> std::io::Result<(PathBuf, tokio::fs::File)> {
    for _ in 0..16 {
        let path = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
        match tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
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

    fn names(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[tokio::test]
    async fn a_spool_persists_by_rename_or_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let body = Body::from(vec![7u8; 600_000]);
        let spool = receive(dir.path(), body, 1 << 20).await.unwrap();
        assert_eq!(spool.size, 600_000);
        assert_eq!(spool.sha256, crate::blobs::sha256_hex(&[7u8; 600_000]));
        assert_eq!(spool.read().await.unwrap(), vec![7u8; 600_000]);
        spool.persist("a.bin").await.unwrap();
        assert_eq!(names(dir.path()), vec!["a.bin"]);

        let refused = receive(dir.path(), Body::from(vec![1u8; 10]), 1 << 20)
            .await
            .unwrap();
        drop(refused);
        assert_eq!(names(dir.path()), vec!["a.bin"]);

        let err = receive(dir.path(), Body::from(vec![1u8; 11]), 10)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::PayloadTooLarge(_)), "{err}");
        assert_eq!(names(dir.path()), vec!["a.bin"]);
    }

    #[tokio::test]
    async fn a_replay_is_compared_without_reading_past_the_accepted_size() {
        let sha = crate::blobs::sha256_hex(b"abc");
        assert!(same_content(Body::from("abc"), 3, &sha).await.unwrap());
        assert!(!same_content(Body::from("abd"), 3, &sha).await.unwrap());
        assert!(!same_content(Body::from("ab"), 3, &sha).await.unwrap());
        let endless = futures_util::stream::once(async {
            Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"abcd"))
        })
        .chain(futures_util::stream::pending());
        assert!(
            !same_content(Body::from_stream(endless), 3, &sha)
                .await
                .unwrap()
        );
    }
}
