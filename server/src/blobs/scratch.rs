//! Scratch files: a local file a blob is assembled in before it is stored (an update or a
//! job's CSV as it streams in, a job's result as it is computed) or a store's blob is copied to
//! for reading with blocking code. They live in `<data dir>/tmp`, are named like the durable
//! writes' temporary files (`.tmp-` + 16 hex digits, which the sweep removes when a killed
//! process leaves one), and are removed when dropped unless [`super::BlobStore::put_file`]
//! took them into the store.

use std::path::{Path, PathBuf};

use super::durable::temp_name;

/// A local file removed on drop.
#[derive(Debug)]
pub struct ScratchFile {
    path: Option<PathBuf>,
}

impl ScratchFile {
    /// A new empty scratch file in `dir` (created if needed), open for writing.
    pub(super) async fn create(dir: &Path) -> std::io::Result<(ScratchFile, tokio::fs::File)> {
        tokio::fs::create_dir_all(dir).await?;
        for _ in 0..16 {
            let path = dir.join(temp_name());
            match tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await
            {
                Ok(f) => return Ok((ScratchFile { path: Some(path) }, f)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("could not create a scratch file"))
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// The file is gone (moved into the store): nothing to remove on drop.
    pub(super) fn disarm(mut self) {
        self.path = None;
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        // Unlinking is one quick system call, so it is done here rather than handed to a
        // thread (and it may run where no runtime is).
        if let Some(path) = self.path.take()
            && let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a scratch file");
        }
    }
}
