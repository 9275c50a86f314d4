//! What each deployment serves and who may use it, kept in memory so that a prediction reads no
//! database: the version it points at, its group, whether it is public and its allowed origins,
//! and the versions it has served (read from the registry, [`crate::registry::deployments`]).
//!
//! An entry is current while the registry's [`Changes`] generation is the one it was read at
//! (every promote, rollback and sharing change bumps it), and in any case re-read after [`TTL`],
//! so a change made behind the server's back (another process on the same database) shows within
//! seconds. The generation is read before the row, so a request that read the old row just
//! before a promote stores an entry that is already stale.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::db::Db;
use crate::error::ApiError;
pub use crate::registry::Deployment;
use crate::registry::{self, Changes};

/// Longest time an entry is trusted without re-reading the database.
pub const TTL: Duration = Duration::from_secs(5);

struct Entry {
    at: Instant,
    /// The registry's generation when the entry was read.
    generation: u64,
    deployment: Arc<Deployment>,
}

/// The cache of deployments by name, and of versions' groups (which never change).
pub struct Deployments {
    changes: Arc<Changes>,
    entries: RwLock<HashMap<String, Entry>>,
    version_groups: RwLock<HashMap<i64, i64>>,
}

impl Deployments {
    /// An empty cache validated against `changes` (the registry's, from `AppState`).
    pub fn new(changes: Arc<Changes>) -> Self {
        Self {
            changes,
            entries: RwLock::default(),
            version_groups: RwLock::default(),
        }
    }

    /// The deployment `name`, or `None` if nothing is deployed under it (not cached: unknown
    /// names cost a query, but cannot fill memory).
    pub async fn get(&self, db: &Db, name: &str) -> Result<Option<Arc<Deployment>>, ApiError> {
        let generation = self.changes.generation();
        {
            let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = entries.get(name)
                && e.generation == generation
                && e.at.elapsed() < TTL
            {
                return Ok(Some(e.deployment.clone()));
            }
        }
        let Some(deployment) = registry::deployments::load(db, name).await? else {
            return Ok(None);
        };
        let deployment = Arc::new(deployment);
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                name.to_string(),
                Entry {
                    at: Instant::now(),
                    generation,
                    deployment: deployment.clone(),
                },
            );
        Ok(Some(deployment))
    }

    /// The group of `version_id`, `None` if no such version.
    pub async fn version_group(&self, db: &Db, version_id: i64) -> Result<Option<i64>, ApiError> {
        if let Some(g) = self
            .version_groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&version_id)
        {
            return Ok(Some(*g));
        }
        let group = registry::versions::version_group(db, version_id).await?;
        if let Some(g) = group {
            self.version_groups
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(version_id, g);
        }
        Ok(group)
    }
}
