//! Deployments as data: the rows the registry writes (promote and rollback in [`super`], new
//! deployments with [`create_deployment`], sharing settings with [`set_sharing`]) and how other
//! modules read them ([`load`]).
//!
//! The registry calls no reader back when a deployment changes: every write bumps the
//! [`Changes`] generation held in `AppState`, and readers that cache deployments (the
//! inference routes, `crate::inference::deployments`) compare it on each use.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::cluster::{Notice, Outbox};
use crate::db::Conn;
use b3o_models::protocol::registry::{DeploymentAction, Sharing};

use crate::accounts::CurrentUser;
use crate::db::Db;
use crate::error::ApiError;

/// The generation of the deployments: bumped after every committed write to one, so that a
/// cache filled at an older generation knows it may be stale.
#[derive(Debug, Default)]
pub struct Changes {
    generation: AtomicU64,
    /// Other replicas' caches (`crate::cluster`).
    outbox: Outbox,
}

impl Changes {
    /// The current generation. Read it *before* reading a deployment: an entry read at `g` is
    /// current while the generation is still `g`.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Called after a write to a deployment has committed: this replica's readers and the
    /// other replicas' learn it.
    pub(super) fn bump(&self) {
        self.bump_local();
        self.outbox.send(Notice::Deployments);
    }

    /// Marks every cached deployment of this replica stale (another replica changed one, or
    /// its notices may have been missed).
    pub(crate) fn bump_local(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

/// A deployment as its readers need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub name: String,
    /// The version served now.
    pub version_id: i64,
    /// The group whose model it is.
    pub group_id: i64,
    /// Answers callers without an account.
    pub public: bool,
    /// Other sites' origins allowed to call it from a browser (CORS); for a private model,
    /// their visitors may call it without an account.
    pub allowed_origins: Vec<String>,
    /// Public and any site may embed it (CORS for every origin).
    pub embed_anywhere: bool,
    /// The versions this deployment serves or served (current and promotion history): what a
    /// caller outside the group may pin with `/versions/{v}`.
    pub served: Vec<i64>,
}

impl Deployment {
    /// Whether a page of `origin` (normalised) may call it: a listed site, or any site for a
    /// public model that may be embedded anywhere.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.lists_origin(origin) || (self.public && self.embed_anywhere)
    }

    /// Whether `origin` (normalised) is one of the listed partner sites.
    pub fn lists_origin(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }
}

/// Reads deployment `name`, `None` if nothing is deployed under it.
pub async fn load(db: &Db, name: &str) -> Result<Option<Deployment>, ApiError> {
    let row: Option<(i64, i64, crate::db::Flag, String, crate::db::Flag)> = sqlx::query_as(
        "SELECT d.version_id, v.group_id, d.public, d.allowed_origins_json, d.embed_anywhere
         FROM deployments d JOIN model_versions v ON v.id = d.version_id WHERE d.name = $1",
    )
    .bind(name)
    .fetch_optional(db)
    .await?;
    let Some((
        version_id,
        group_id,
        crate::db::Flag(public),
        origins,
        crate::db::Flag(embed_anywhere),
    )) = row
    else {
        return Ok(None);
    };
    let allowed_origins: Vec<String> = serde_json::from_str(&origins).unwrap_or_default();
    let mut served: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT DISTINCT version_id FROM deployment_history WHERE name = $1 AND {SERVED}"
    ))
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
        embed_anywhere,
        served,
    }))
}

/// The history rows that make up what a rollback walks (`deployment_history`, 0205): the
/// promotions (gated or not) that no rollback undid. The others (rollbacks, gate changes,
/// undone promotions) are the audit trail.
pub(super) const SERVED: &str = "action IN ('promote', 'override') AND undone_at IS NULL";

/// Appends a change of deployment `name` to its history, in the caller's transaction: the
/// version served after it, who (an account, or nobody for the server's own seeding) and a
/// note.
pub(super) async fn record_event(
    conn: &mut Conn,
    name: &str,
    version_id: i64,
    action: DeploymentAction,
    actor: Option<&CurrentUser>,
    note: Option<&str>,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO deployment_history (name, version_id, action, at, actor_user_id,
             actor_name, note)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(name)
    .bind(version_id)
    .bind(action.as_str())
    .bind(crate::db::now_text())
    .bind(actor.map(|u| u.id))
    .bind(actor.map(|u| u.display_name.clone()))
    .bind(note)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deploys `version_id` under the new name `name` with `sharing` (already checked), in the
/// caller's transaction: 409 if the name exists. (No reader caches a name that is not deployed,
/// so nothing is bumped.)
pub async fn create_deployment(
    conn: &mut Conn,
    name: &str,
    version_id: i64,
    sharing: &Sharing,
) -> Result<(), ApiError> {
    let origins = serde_json::to_string(&sharing.allowed_origins)
        .map_err(|e| ApiError::Internal(format!("origins: {e}")))?;
    sqlx::query(
        "INSERT INTO deployments (name, version_id, public, allowed_origins_json, embed_anywhere)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(name)
    .bind(version_id)
    .bind(i64::from(sharing.public))
    .bind(origins)
    .bind(i64::from(sharing.embed_anywhere))
    .execute(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            ApiError::Conflict(format!("deployment `{name}` exists"))
        }
        e => e.into(),
    })?;
    record_event(
        conn,
        name,
        version_id,
        DeploymentAction::Promote,
        None,
        None,
    )
    .await
}

/// Writes deployment `name`'s sharing settings (checked and normalised by the caller, who also
/// checked who may): 404 if there is no such deployment.
pub async fn set_sharing(
    db: &Db,
    changes: &Changes,
    name: &str,
    sharing: &Sharing,
) -> Result<(), ApiError> {
    let origins = serde_json::to_string(&sharing.allowed_origins)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let changed = sqlx::query(
        "UPDATE deployments SET public = $1, allowed_origins_json = $2, embed_anywhere = $3,
             updated_at = $5
         WHERE name = $4",
    )
    .bind(i64::from(sharing.public))
    .bind(origins)
    .bind(i64::from(sharing.embed_anywhere))
    .bind(name)
    .bind(crate::db::now_text())
    .execute(db)
    .await?
    .rows_affected();
    changes.bump();
    if changed == 0 {
        return Err(ApiError::NotFound("no such deployment".into()));
    }
    Ok(())
}

/// The deployments a caller may use, by name, with the version each serves: the public ones
/// for everyone, plus, for a signed-in caller (`user_id`), those of the groups it owns or
/// belongs to (administrators: all).
pub async fn visible(
    db: &Db,
    user_id: Option<i64>,
    admin: bool,
) -> Result<Vec<(String, i64)>, ApiError> {
    // Anonymous callers bind NULL, which equals nothing: only `d.public` matches.
    Ok(sqlx::query_as(
        "SELECT d.name, d.version_id FROM deployments d
         JOIN model_versions v ON v.id = d.version_id
         JOIN groups g ON g.id = v.group_id
         WHERE d.public = 1 OR $2 OR g.owner_user_id = $1
            OR EXISTS (SELECT 1 FROM members m WHERE m.group_id = g.id AND m.user_id = $1)
         ORDER BY d.name",
    )
    .bind(user_id)
    .bind(admin)
    .fetch_all(db)
    .await?)
}

/// Whether anything is deployed under `name`.
pub async fn exists(db: &Db, name: &str) -> Result<bool, ApiError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deployments WHERE name = $1")
        .bind(name)
        .fetch_one(db)
        .await?;
    Ok(n > 0)
}
