//! Blobs: model updates, version weights, ONNX exports, optimiser states, job inputs and
//! results. Every one goes through [`BlobStore`] (`AppState::blobs`), an `object_store` backend
//! chosen by `--blob-store` ([`BlobLocation`]): by default the data directory itself, so a
//! row's relative path (`groups/7/versions/round-3.safetensors`) names the same file as it
//! always did; or a `file://` folder; or a bucket of any S3-compatible service.
//!
//! The invariant callers keep: a blob is stored durably ([`BlobStore::put`],
//! [`BlobStore::put_file`] return only then) before the row that points at it commits. The
//! local store fsyncs the file and its directory itself ([`durable`]: `object_store`'s local
//! backend does not); an S3 PUT (or multipart completion) is durable when it is acknowledged.
//! Blobs whose row never committed (a crash, a failed transaction) are deleted later by
//! [`collect`] once they are an hour old; temporary files that killed writes left are swept
//! by [`sweep`].
//!
//! Bodies that arrive over the network (updates, job CSVs) and job results are assembled in a
//! local [`ScratchFile`] with bounded memory, then handed to [`BlobStore::put_file`]: a
//! rename for the local store, a streamed (multipart when large) upload for S3.

pub mod collect;
pub mod durable;
mod error;
pub mod location;
mod scratch;
pub mod sweep;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

pub use collect::{ORPHAN_GRACE, collect_orphans, spawn_collector};
pub use error::BlobError;
pub use location::BlobLocation;
pub use scratch::ScratchFile;
pub use sweep::{spawn_temp_sweeper, sweep};

use error::Redactor;

/// Part size of uploads from a file to S3 (S3's minimum is 5 MiB); a smaller file is one PUT.
const UPLOAD_PART: usize = 8 << 20;
/// Parts of one upload in flight at once (memory: this many parts).
const UPLOAD_CONCURRENCY: usize = 2;
/// Buffer of copies between local files and the store.
const COPY_BUFFER: usize = 256 << 10;

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A stored blob as listed.
#[derive(Debug, Clone)]
pub struct BlobMeta {
    /// Its key, e.g. `groups/7/versions/round-3.onnx`.
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// A blob readable as a local file (for blocking readers): the store's own file for a local
/// store, a scratch copy (removed on drop) for S3.
#[derive(Debug)]
pub struct LocalBlob {
    path: PathBuf,
    _copy: Option<ScratchFile>,
}

impl LocalBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

enum Backend {
    /// A local folder: writes are ours ([`durable`]), the rest is `LocalFileSystem`'s.
    Local {
        fs: Arc<LocalFileSystem>,
        root: PathBuf,
    },
    S3 {
        described: String,
    },
}

/// Where blobs are kept; see the module documentation.
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    backend: Backend,
    data_dir: PathBuf,
    redactor: Redactor,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl BlobStore {
    /// The default store: the data directory (which must exist).
    pub fn local(data_dir: &Path) -> Result<Self, BlobError> {
        Self::folder(data_dir, data_dir)
    }

    /// The store `location` names (`None`: the data directory). Scratch files live under
    /// `data_dir` whatever the store.
    pub fn open(data_dir: &Path, location: Option<&BlobLocation>) -> Result<Self, BlobError> {
        match location {
            None => Self::local(data_dir),
            Some(BlobLocation::Folder(root)) => {
                std::fs::create_dir_all(root)
                    .map_err(|e| BlobError::Config(format!("creating {}: {e}", root.display())))?;
                Self::folder(data_dir, root)
            }
            Some(BlobLocation::S3 { bucket, options }) => Self::s3(data_dir, bucket, options),
        }
    }

    fn folder(data_dir: &Path, root: &Path) -> Result<Self, BlobError> {
        let fs = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| BlobError::Config(format!("{}: {e}", root.display())))?;
        let fs = Arc::new(fs);
        Ok(Self {
            store: fs.clone(),
            backend: Backend::Local {
                fs,
                root: root.to_path_buf(),
            },
            data_dir: data_dir.to_path_buf(),
            redactor: Redactor::default(),
        })
    }

    fn s3(
        data_dir: &Path,
        bucket: &str,
        options: &[(AmazonS3ConfigKey, String)],
    ) -> Result<Self, BlobError> {
        let client = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(300));
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(client)
            // A few quick retries: an unreachable store should answer 503 in seconds, not
            // after object_store's default of minutes.
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(15),
                ..RetryConfig::default()
            })
            // Path-style (`endpoint/bucket/key`) unless the URL asks otherwise.
            .with_virtual_hosted_style_request(false);
        for (key, value) in options {
            builder = builder.with_config(*key, value);
        }
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        if let Some(endpoint) = &endpoint {
            location::check_endpoint(endpoint)?;
            if endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
        }
        let redactor = Redactor::new(
            [
                AmazonS3ConfigKey::AccessKeyId,
                AmazonS3ConfigKey::SecretAccessKey,
                AmazonS3ConfigKey::Token,
            ]
            .iter()
            .filter_map(|k| builder.get_config_value(k)),
        );
        let described = format!(
            "s3://{bucket}{}",
            endpoint.map(|e| format!(" at {e}")).unwrap_or_default()
        );
        let store = builder
            .build()
            .map_err(|e| BlobError::Config(redactor.clean(e.to_string())))?;
        Ok(Self {
            store: Arc::new(store),
            backend: Backend::S3 { described },
            data_dir: data_dir.to_path_buf(),
            redactor,
        })
    }

    /// Where blobs go, for logs and errors (no credentials).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Local { root, .. } => format!("the folder {}", root.display()),
            Backend::S3 { described } => described.clone(),
        }
    }

    /// The data directory (scratch files live in its `tmp/`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The local folders holding temporary files of ours: the data directory, and a `file://`
    /// store's folder when it is elsewhere.
    pub fn local_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.data_dir.clone()];
        if let Backend::Local { root, .. } = &self.backend
            && !root.starts_with(&self.data_dir)
        {
            dirs.push(root.clone());
        }
        dirs
    }

    /// Fails unless the store answers (S3: the bucket exists and the credentials are good), so
    /// that `b3o serve` stops at start-up with the reason rather than answering 5xx later.
    pub async fn check(&self) -> Result<(), BlobError> {
        if let Backend::S3 { .. } = self.backend {
            self.store
                .list_with_delimiter(None)
                .await
                .map_err(|e| self.redactor.classify("listing", "", e))?;
        }
        Ok(())
    }

    fn key(key: &str) -> Result<Key, BlobError> {
        let parsed = Key::parse(key).map_err(|_| BlobError::InvalidKey { key: key.into() })?;
        // `parse` accepts what it would have to encode; ours are plain relative paths.
        if parsed.as_ref() != key || key.is_empty() {
            return Err(BlobError::InvalidKey { key: key.into() });
        }
        Ok(parsed)
    }

    fn local_path(fs: &LocalFileSystem, key: &str) -> Result<PathBuf, BlobError> {
        fs.path_to_filesystem(&Self::key(key)?)
            .map_err(|_| BlobError::InvalidKey { key: key.into() })
    }

    /// Stores `bytes` under `key`, replacing what was there; durable when it returns.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), BlobError> {
        match &self.backend {
            Backend::Local { fs, .. } => {
                let path = Self::local_path(fs, key)?;
                tokio::task::spawn_blocking(move || durable::write_durable(&path, &bytes))
                    .await
                    .map_err(|e| join_error("writing", key, e))?
                    .map_err(|e| BlobError::io("writing", key, e))
            }
            Backend::S3 { .. } => {
                self.store
                    .put(&Self::key(key)?, bytes.into())
                    .await
                    .map_err(|e| self.redactor.classify("writing", key, e))?;
                Ok(())
            }
        }
    }

    /// A new scratch file in `<data dir>/tmp`, open for writing.
    pub async fn scratch(&self) -> Result<(ScratchFile, tokio::fs::File), BlobError> {
        ScratchFile::create(&self.data_dir.join("tmp"))
            .await
            .map_err(|e| BlobError::io("creating a scratch file for", "tmp", e))
    }

    /// Stores the finished `file` under `key` (a rename for the local store, a streamed upload,
    /// multipart when large, for S3); durable when it returns. The scratch file is gone
    /// afterwards either way.
    pub async fn put_file(&self, key: &str, file: ScratchFile) -> Result<(), BlobError> {
        match &self.backend {
            Backend::Local { fs, .. } => {
                let to = Self::local_path(fs, key)?;
                let from = file.path().to_path_buf();
                tokio::task::spawn_blocking(move || durable::place_file(&from, &to))
                    .await
                    .map_err(|e| join_error("writing", key, e))?
                    .map_err(|e| BlobError::io("writing", key, e))?;
                file.disarm();
                Ok(())
            }
            Backend::S3 { .. } => self.upload(key, &file).await,
        }
    }

    async fn upload(&self, key: &str, file: &ScratchFile) -> Result<(), BlobError> {
        let mut source = tokio::fs::File::open(file.path())
            .await
            .map_err(|e| BlobError::io("uploading", key, e))?;
        let mut sink = object_store::buffered::BufWriter::with_capacity(
            self.store.clone(),
            Self::key(key)?,
            UPLOAD_PART,
        )
        .with_max_concurrency(UPLOAD_CONCURRENCY);
        let copied = async {
            let mut buf = tokio::io::BufReader::with_capacity(COPY_BUFFER, &mut source);
            tokio::io::copy_buf(&mut buf, &mut sink).await?;
            sink.shutdown().await
        }
        .await;
        if let Err(e) = copied {
            // A multipart upload left open costs storage until aborted.
            let _ = sink.abort().await;
            return Err(self.upload_error(key, e));
        }
        Ok(())
    }

    /// An upload's I/O error: `object_store`'s own error when it carries one.
    fn upload_error(&self, key: &str, e: std::io::Error) -> BlobError {
        match e.downcast::<object_store::Error>() {
            Ok(inner) => self.redactor.classify("uploading", key, inner),
            Err(e) => BlobError::io("uploading", key, e),
        }
    }

    /// The whole blob.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        let got = self
            .store
            .get(&Self::key(key)?)
            .await
            .map_err(|e| self.redactor.classify("reading", key, e))?;
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.redactor.classify("reading", key, e))?;
        Ok(bytes.into())
    }

    /// The blob as a stream of chunks (for large downloads).
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let got = self
            .store
            .get(&Self::key(key)?)
            .await
            .map_err(|e| self.redactor.classify("reading", key, e))?;
        let redactor = self.redactor.clone();
        let owned = key.to_string();
        Ok(got
            .into_stream()
            .map_err(move |e| redactor.classify("reading", &owned, e))
            .boxed())
    }

    /// The blob as a local file for blocking readers (see [`LocalBlob`]).
    pub async fn local_copy(&self, key: &str) -> Result<LocalBlob, BlobError> {
        if let Backend::Local { fs, .. } = &self.backend {
            let path = Self::local_path(fs, key)?;
            tokio::fs::metadata(&path)
                .await
                .map_err(|e| BlobError::io("reading", key, e))?;
            return Ok(LocalBlob { path, _copy: None });
        }
        let mut chunks = self.get_stream(key).await?;
        let (scratch, mut file) = self.scratch().await?;
        let io = |e| BlobError::io("downloading", key, e);
        while let Some(chunk) = chunks.next().await {
            file.write_all(&chunk?).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        Ok(LocalBlob {
            path: scratch.path().to_path_buf(),
            _copy: Some(scratch),
        })
    }

    /// The blob's size and time, `None` when there is none.
    pub async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        match self.store.head(&Self::key(key)?).await {
            Ok(meta) => Ok(Some(meta_of(meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.redactor.classify("reading", key, e)),
        }
    }

    /// Deletes the blob; one already gone is no error.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&Self::key(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.redactor.classify("deleting", key, e)),
        }
    }

    /// [`BlobStore::delete`], logging instead of failing (the orphan collector retries).
    pub async fn remove(&self, key: &str) {
        if let Err(e) = self.delete(key).await {
            tracing::warn!(key, error = %e, "could not delete a blob");
        }
    }

    /// Every blob under `prefix` (a folder: `groups/7`), in no particular order.
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<BlobMeta, BlobError>> {
        let key = match Self::key(prefix) {
            Ok(key) => key,
            Err(e) => return futures_util::stream::once(async move { Err(e) }).boxed(),
        };
        let redactor = self.redactor.clone();
        let owned = prefix.to_string();
        self.store
            .list(Some(&key))
            .map_ok(meta_of)
            .map_err(move |e| redactor.classify("listing", &owned, e))
            .boxed()
    }

    /// The folders directly under `prefix` (`groups` -> `groups/1`, `groups/2`...).
    pub async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&Self::key(prefix)?))
            .await;
        match listed {
            Ok(listed) => Ok(listed
                .common_prefixes
                .into_iter()
                .map(|p| p.as_ref().to_string())
                .collect()),
            // The local store has no folder until its first blob.
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(self.redactor.classify("listing", prefix, e)),
        }
    }
}

fn meta_of(meta: object_store::ObjectMeta) -> BlobMeta {
    BlobMeta {
        key: meta.location.as_ref().to_string(),
        size: meta.size,
        modified: meta.last_modified.into(),
    }
}

fn join_error(op: &'static str, key: &str, e: tokio::task::JoinError) -> BlobError {
    BlobError::Failed {
        op,
        key: key.into(),
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_store_keeps_todays_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        store
            .put("groups/7/versions/round-1.onnx", b"onnx".to_vec())
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("groups/7/versions/round-1.onnx")).unwrap(),
            b"onnx"
        );
        assert_eq!(
            store.get("groups/7/versions/round-1.onnx").await.unwrap(),
            b"onnx"
        );
        let (scratch, mut file) = store.scratch().await.unwrap();
        file.write_all(b"csv").await.unwrap();
        drop(file);
        let temp = scratch.path().to_path_buf();
        assert!(temp.starts_with(dir.path().join("tmp")));
        store.put_file("jobs/user-1/a.csv", scratch).await.unwrap();
        assert!(!temp.exists());
        let local = store.local_copy("jobs/user-1/a.csv").await.unwrap();
        assert_eq!(local.path(), dir.path().join("jobs/user-1/a.csv"));
        assert_eq!(store.list_folders("groups").await.unwrap(), ["groups/7"]);
        assert!(store.list_folders("nothing").await.unwrap().is_empty());
        store.delete("jobs/user-1/a.csv").await.unwrap();
        store.delete("jobs/user-1/a.csv").await.unwrap();
        assert!(matches!(
            store.get("jobs/user-1/a.csv").await,
            Err(BlobError::NotFound { .. })
        ));
        for bad in ["../x", "a//b", "", "/abs"] {
            assert!(
                matches!(
                    store.put(bad, vec![]).await,
                    Err(BlobError::InvalidKey { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
