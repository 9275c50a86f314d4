//! An update's body streamed to a scratch file ([`crate::blobs::ScratchFile`]), never whole in
//! memory while it arrives: each chunk is hashed and written as it comes, and the byte limit
//! is enforced on the way (413 as soon as it is passed). Once the content has been checked,
//! [`Spooled::persist`] hands the file to the blob store ([`BlobStore::put_file`]: fsync and
//! rename for the local store, an upload for S3), which returns once the update is durable;
//! only then may the row that points at it commit. A spool that is dropped unpersisted
//! (refused, client gone) removes its file; one left by a killed process is swept.

use axum::body::Body;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::blobs::{BlobStore, ScratchFile};
use crate::error::ApiError;

/// Bytes gathered before a write to the file.
const WRITE_BUFFER: usize = 256 * 1024;

/// A body on disk, checked for size, not yet in the store.
#[derive(Debug)]
pub struct Spooled {
    scratch: ScratchFile,
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

/// Streams `body` into a new scratch file of `store`, at most `max` bytes: 413 as soon as
/// more arrive, 400 when the client breaks off.
pub async fn receive(store: &BlobStore, body: Body, max: usize) -> Result<Spooled, ApiError> {
    let internal = |e: std::io::Error| ApiError::Internal(format!("spooling an update: {e}"));
    let (scratch, file) = store.scratch().await?;
    let mut spool = Spooled {
        scratch,
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
        let Some(more) = size.checked_add(chunk.len()).filter(|&s| s <= max) else {
            crate::limits::drain_refused(&mut stream).await;
            return Err(too_large(&format!("more than {max}"), max));
        };
        size = more;
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
        tokio::fs::read(self.scratch.path())
            .await
            .map_err(|e| ApiError::Internal(format!("reading the spooled update: {e}")))
    }

    /// Stores the update under `key`, durably (see the module). After this the caller may
    /// commit the row that points at it.
    pub async fn persist(mut self, store: &BlobStore, key: &str) -> Result<(), ApiError> {
        // Closed first: the store reads (or renames) the file.
        drop(self.file.take());
        store.put_file(key, self.scratch).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[tokio::test]
    async fn a_spool_persists_by_rename_or_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let body = Body::from(vec![7u8; 600_000]);
        let spool = receive(&store, body, 1 << 20).await.unwrap();
        assert_eq!(spool.size, 600_000);
        assert_eq!(spool.sha256, crate::blobs::sha256_hex(&[7u8; 600_000]));
        assert_eq!(spool.read().await.unwrap(), vec![7u8; 600_000]);
        spool.persist(&store, "u/a.bin").await.unwrap();
        assert_eq!(names(&dir.path().join("u")), vec!["a.bin"]);
        let scratch = dir.path().join("tmp");
        assert!(names(&scratch).is_empty());

        let refused = receive(&store, Body::from(vec![1u8; 10]), 1 << 20)
            .await
            .unwrap();
        assert_eq!(names(&scratch).len(), 1);
        drop(refused);
        assert!(names(&scratch).is_empty());

        let err = receive(&store, Body::from(vec![1u8; 11]), 10)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::PayloadTooLarge(_)), "{err}");
        assert!(names(&scratch).is_empty());
        assert_eq!(names(&dir.path().join("u")), vec!["a.bin"]);
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
