//! What each deployment serves and who may use it, kept in memory so that a prediction reads no
//! database: the version it points at, its group, whether it is public and its allowed origins,
//! and the versions it has served.
//!
//! Entries are dropped by [`Deployments::invalidate`] when a deployment changes (promote and
//! rollback in the registry, a sharing change here), and in any case re-read after [`TTL`], so
//! a change made behind the server's back (another process on the same database) shows within
//! seconds. A load that raced with an invalidation is not stored (generation check), so a
//! request that read the old row just before a promote cannot put it back in the cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::db::Db;
use crate::error::ApiError;

/// Longest time an entry is trusted without re-reading the database.
pub const TTL: Duration = Duration::from_secs(5);

/// A deployment as the inference routes need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub name: String,
    /// The version served now.
    pub version_id: i64,
    /// The group whose model it is.
    pub group_id: i64,
    /// Answers callers without an account.
    pub public: bool,
    /// Other sites' origins allowed to call it from a browser (CORS).
    pub allowed_origins: Vec<String>,
    /// The versions this deployment serves or served (current and promotion history): what a
    /// caller outside the group may pin with `/versions/{v}`.
    pub served: Vec<i64>,
}

impl Deployment {
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }
}

struct Entry {
    at: Instant,
    deployment: Arc<Deployment>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Bumped by every invalidation.
    generation: u64,
}

/// The cache of deployments by name, and of versions' groups (which never change).
#[derive(Default)]
pub struct Deployments {
    inner: RwLock<Inner>,
    version_groups: RwLock<HashMap<i64, i64>>,
}

impl Deployments {
    /// The deployment `name`, or `None` if nothing is deployed under it (not cached: unknown
    /// names cost a query, but cannot fill memory).
    pub async fn get(&self, db: &Db, name: &str) -> Result<Option<Arc<Deployment>>, ApiError> {
        let generation = {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = inner.entries.get(name)
                && e.at.elapsed() < TTL
            {
                return Ok(Some(e.deployment.clone()));
            }
            inner.generation
        };
        let Some(deployment) = load(db, name).await? else {
            return Ok(None);
        };
        let deployment = Arc::new(deployment);
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.generation == generation {
            inner.entries.insert(
                name.to_string(),
                Entry {
                    at: Instant::now(),
                    deployment: deployment.clone(),
                },
            );
        }
        Ok(Some(deployment))
    }

    /// Forgets `name`: the next request reads it from the database.
    pub fn invalidate(&self, name: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.generation += 1;
        inner.entries.remove(name);
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
        let group: Option<i64> =
            sqlx::query_scalar("SELECT group_id FROM model_versions WHERE id = ?")
                .bind(version_id)
                .fetch_optional(db)
                .await?;
        if let Some(g) = group {
            self.version_groups
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(version_id, g);
        }
        Ok(group)
    }
}

/// Reads a deployment from the database.
pub async fn load(db: &Db, name: &str) -> Result<Option<Deployment>, ApiError> {
    let row: Option<(i64, i64, bool, String)> = sqlx::query_as(
        "SELECT d.version_id, v.group_id, d.public, d.allowed_origins_json
         FROM deployments d JOIN model_versions v ON v.id = d.version_id WHERE d.name = ?",
    )
    .bind(name)
    .fetch_optional(db)
    .await?;
    let Some((version_id, group_id, public, origins)) = row else {
        return Ok(None);
    };
    let allowed_origins: Vec<String> = serde_json::from_str(&origins).unwrap_or_default();
    let mut served: Vec<i64> =
        sqlx::query_scalar("SELECT DISTINCT version_id FROM deployment_history WHERE name = ?")
            .bind(name)
            .fetch_all(db)
            .await?;
    if !served.contains(&version_id) {
        served.push(version_id);
    }
    Ok(Some(Deployment {
        name: name.to_string(),
        version_id,
        group_id,
        public,
        allowed_origins,
        served,
    }))
}
