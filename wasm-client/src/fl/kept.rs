//! Updates kept until the server has them (issue #17): a member's finished update is stored
//! before it is sent and removed once the server answered for it, so a tab closed (or a
//! connection lost) between the two does not lose the training. The next visit sends it with
//! [`upload_kept`] if its round, or an asynchronous group's buffer, still takes it, and drops it
//! with the server's reason otherwise.
//!
//! [`KeptStore`] is the member's own storage: [`MemoryKept`] (tests, `b3o simulate`,
//! `b3o client`, whose process ends with its training) and IndexedDB in the browser
//! (`browser::IndexedDbKept`, `js/kept-updates.js`). One update per group and membership
//! ([`kept_key`]): a member trains one round at a time.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::api::{Api, FlError};
use super::privacy::StoreFuture;
use super::transport::Transport;
use super::{MaybeSend, MaybeSync};

/// A kept update: the round it was trained in and its bytes.
pub type Kept = (i64, Vec<u8>);

/// A member's durable storage of its unsent update.
pub trait KeptStore: MaybeSend + MaybeSync {
    /// The update kept under `key`: the round it was trained in and its bytes.
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Result<Option<Kept>, String>>;
    /// Keeps `bytes` (trained in `round`) under `key`, durably before it returns.
    fn save<'a>(
        &'a self,
        key: &'a str,
        round: i64,
        bytes: &'a [u8],
    ) -> StoreFuture<'a, Result<(), String>>;
    /// Forgets the update under `key`.
    fn remove<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Result<(), String>>;
}

/// The key of a member's kept update in one group.
pub fn kept_key(group_id: i64, member_id: i64) -> String {
    format!("group-{group_id}-member-{member_id}")
}

/// Updates kept in memory: they last as long as the process.
#[derive(Debug, Default)]
pub struct MemoryKept(Mutex<BTreeMap<String, Kept>>);

impl MemoryKept {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (i64, Vec<u8>)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl KeptStore for MemoryKept {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Result<Option<Kept>, String>> {
        let found = self.map().get(key).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn save<'a>(
        &'a self,
        key: &'a str,
        round: i64,
        bytes: &'a [u8],
    ) -> StoreFuture<'a, Result<(), String>> {
        self.map().insert(key.to_string(), (round, bytes.to_vec()));
        Box::pin(async { Ok(()) })
    }

    fn remove<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Result<(), String>> {
        self.map().remove(key);
        Box::pin(async { Ok(()) })
    }
}

/// What became of a kept update.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum KeptOutcome {
    /// Nothing was kept.
    Nothing,
    /// The server took it (or had taken it already: a retry gets the same answer).
    Uploaded {
        round: i64,
        update_id: i64,
        /// An asynchronous group: the round whose buffer took it.
        #[serde(skip_serializing_if = "Option::is_none")]
        buffered_in: Option<i64>,
    },
    /// The server refused it for good (the round is over, the buffer moved too far, the
    /// member left...): dropped, with the server's words.
    Discarded { round: i64, reason: String },
}

/// Sends the update member `member_id` kept in group `group_id`, if any, and forgets it once
/// the server answered for it. A temporary failure (no connection) keeps it for next time and
/// returns the error.
pub async fn upload_kept<T: Transport>(
    api: &Api<T>,
    store: &dyn KeptStore,
    group_id: i64,
    member_id: i64,
) -> Result<KeptOutcome, FlError> {
    let key = kept_key(group_id, member_id);
    let Some((round, bytes)) = store.load(&key).await.map_err(FlError::Protocol)? else {
        return Ok(KeptOutcome::Nothing);
    };
    let outcome = match api.upload_update(group_id, round, bytes).await {
        Ok(accepted) => KeptOutcome::Uploaded {
            round,
            update_id: accepted.update_id,
            buffered_in: accepted.buffered_in,
        },
        // The server's final word on this update (the round closed, the member was dropped
        // or left, the group is gone, the update is not valid any more).
        Err(FlError::Api {
            status: 400 | 403 | 404 | 409 | 410 | 413,
            message,
            ..
        }) => KeptOutcome::Discarded {
            round,
            reason: message,
        },
        Err(e) => return Err(e),
    };
    store.remove(&key).await.map_err(FlError::Protocol)?;
    Ok(outcome)
}
