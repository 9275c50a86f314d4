//! The monitoring tables: `drift_windows`, `drift_settings`, `drift_status` (migration 0207),
//! and the reference read from the registry.

use b3o_models::ModelSpec;
use b3o_models::drift::{DriftReport, DriftSettings};
use b3o_models::stats::Summary;

use super::{Reference, Snapshot};
use crate::db::Db;
use crate::error::ApiError;
use crate::state::AppState;

/// Windows a drift view reads at most (history and current together).
pub const MAX_WINDOWS: i64 = 200;

/// Writes `snap` (a new row, or its row again) and returns the row's id.
pub(super) async fn write_window(db: &Db, snap: &Snapshot) -> Result<i64, ApiError> {
    let json = serde_json::to_string(&snap.summary)
        .map_err(|e| ApiError::Internal(format!("a drift window: {e}")))?;
    let now = crate::db::now_text();
    let closed = snap.closed.then(|| now.clone());
    let rows = i64::try_from(snap.summary.n_rows).unwrap_or(i64::MAX);
    Ok(match snap.id {
        Some(id) => {
            sqlx::query(
                "UPDATE drift_windows SET summary_json = $1, rows = $2, updated_at = $3,
                 closed_at = $4 WHERE id = $5",
            )
            .bind(&json)
            .bind(rows)
            .bind(&now)
            .bind(&closed)
            .bind(id)
            .execute(db)
            .await?;
            id
        }
        None => {
            sqlx::query_scalar(
                "INSERT INTO drift_windows (deployment, version_id, source, replica_id,
                    opened_at, updated_at, closed_at, rows, summary_json)
                 VALUES ($1, $2, 'serving', $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(&snap.deployment)
            .bind(snap.version_id)
            .bind(crate::cluster::replica_tag())
            .bind(&snap.opened_at)
            .bind(&now)
            .bind(&closed)
            .bind(rows)
            .bind(&json)
            .fetch_one(db)
            .await?
        }
    })
}

/// Deletes `deployment`'s closed serving windows but the newest [`MAX_WINDOWS`] (what a view
/// reads): under heavy traffic windows close by rows every few seconds, and the history must
/// not grow the database without bound.
pub(super) async fn prune(db: &Db, deployment: &str) -> Result<(), ApiError> {
    sqlx::query(
        "DELETE FROM drift_windows WHERE deployment = $1 AND source = 'serving'
            AND closed_at IS NOT NULL AND id NOT IN (
                SELECT id FROM drift_windows WHERE deployment = $1
                ORDER BY id DESC LIMIT $2)",
    )
    .bind(deployment)
    .bind(MAX_WINDOWS)
    .execute(db)
    .await?;
    Ok(())
}

/// A partner's check of its own data, kept with the serving windows.
pub(super) async fn write_partner(
    db: &Db,
    deployment: &str,
    version_id: i64,
    member: &str,
    summary: &Summary,
) -> Result<i64, ApiError> {
    let json = serde_json::to_string(summary)
        .map_err(|e| ApiError::Internal(format!("a partner's summary: {e}")))?;
    let now = crate::db::now_text();
    Ok(sqlx::query_scalar(
        "INSERT INTO drift_windows (deployment, version_id, source, replica_id, opened_at,
            updated_at, closed_at, rows, summary_json)
         VALUES ($1, $2, 'partner', $3, $4, $4, $4, $5, $6) RETURNING id",
    )
    .bind(deployment)
    .bind(version_id)
    .bind(member)
    .bind(&now)
    .bind(i64::try_from(summary.n_rows).unwrap_or(i64::MAX))
    .bind(&json)
    .fetch_one(db)
    .await?)
}

/// A stored window: id, version, source, replica (or partner's name), opened, updated,
/// closed, summary.
pub(super) struct WindowRow {
    pub version_id: i64,
    pub source: String,
    pub who: String,
    pub opened_at: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
    pub summary: Summary,
}

/// The newest windows of `deployment`, newest first.
pub(super) async fn windows(db: &Db, deployment: &str) -> Result<Vec<WindowRow>, ApiError> {
    type Row = (i64, String, String, String, String, Option<String>, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT version_id, source, replica_id, opened_at, updated_at, closed_at, summary_json
         FROM drift_windows WHERE deployment = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(deployment)
    .bind(MAX_WINDOWS)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(
            |(version_id, source, who, opened_at, updated_at, closed_at, json)| {
                let summary = serde_json::from_str(&json)
                    .map_err(|e| ApiError::Internal(format!("a stored drift window: {e}")))?;
                Ok(WindowRow {
                    version_id,
                    source,
                    who,
                    opened_at,
                    updated_at,
                    closed_at,
                    summary,
                })
            },
        )
        .collect()
}

/// The thresholds of `deployment` (the defaults unless its owner set others).
pub(super) async fn settings(db: &Db, deployment: &str) -> Result<DriftSettings, ApiError> {
    let json: Option<String> =
        sqlx::query_scalar("SELECT settings_json FROM drift_settings WHERE deployment = $1")
            .bind(deployment)
            .fetch_optional(db)
            .await?;
    Ok(json
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default())
}

pub(super) async fn set_settings(
    db: &Db,
    deployment: &str,
    settings: &DriftSettings,
) -> Result<(), ApiError> {
    let json = serde_json::to_string(settings)
        .map_err(|e| ApiError::Internal(format!("drift settings: {e}")))?;
    sqlx::query(
        "INSERT INTO drift_settings (deployment, settings_json, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (deployment) DO UPDATE SET settings_json = excluded.settings_json,
            updated_at = excluded.updated_at",
    )
    .bind(deployment)
    .bind(json)
    .bind(crate::db::now_text())
    .execute(db)
    .await?;
    Ok(())
}

/// The reference of `version_id`: its training summary and spec (`None` without a summary or
/// a built-in spec).
pub(super) async fn load_reference(
    state: &AppState,
    version_id: i64,
) -> Result<Option<Reference>, ApiError> {
    let Some(json) = crate::registry::versions::reference(&state.db, version_id).await? else {
        return Ok(None);
    };
    let Some(servable) = crate::registry::versions::servable(&state.db, version_id).await? else {
        return Ok(None);
    };
    let (Ok(summary), Ok(spec)) = (
        serde_json::from_str::<Summary>(&json),
        serde_json::from_str::<ModelSpec>(&servable.spec_json),
    ) else {
        return Ok(None);
    };
    Ok(Some(Reference::new(&spec, summary)))
}

/// The serving windows of `version_id` that make its current report, merged: each replica's
/// newest window updated within the last window span, with the one before it while the
/// newest has fewer than `min_rows` rows (a window that just opened is too small to judge).
pub(super) fn current(
    rows: &[WindowRow],
    version_id: i64,
    window: std::time::Duration,
    min_rows: u64,
) -> Summary {
    let cutoff = crate::db::text_at(time::OffsetDateTime::now_utc() - window);
    let mut merged = Summary::default();
    let mut taken: Vec<(&str, u64)> = Vec::new();
    // Newest first: a replica's first window here is its newest.
    for r in rows.iter().filter(|r| {
        r.source == "serving"
            && r.version_id == version_id
            && (r.closed_at.is_none() || r.updated_at >= cutoff)
    }) {
        let rows_so_far = taken.iter().find(|(w, _)| *w == r.who).map(|(_, n)| *n);
        match rows_so_far {
            Some(n) if n >= min_rows => continue,
            Some(_) => {
                if let Some(t) = taken.iter_mut().find(|(w, _)| *w == r.who) {
                    t.1 = u64::MAX;
                }
            }
            None => taken.push((&r.who, r.summary.n_rows)),
        }
        // Windows of one version share their columns' kinds.
        let _ = merged.merge(&r.summary);
    }
    merged
}

/// Records the verdict of `deployment`'s current window (`drift_status`).
pub(super) async fn update_status(state: &AppState, deployment: &str) -> Result<(), ApiError> {
    let Some(d) = crate::registry::deployments::load(&state.db, deployment).await? else {
        return Ok(());
    };
    let Some(reference) = state.monitoring.reference(state, d.version_id).await? else {
        return Ok(());
    };
    let rows = windows(&state.db, deployment).await?;
    let settings = settings(&state.db, deployment).await?;
    let window = current(
        &rows,
        d.version_id,
        state.monitoring.settings.window,
        settings.min_rows,
    );
    let report: DriftReport = reference.inputs(&window, &settings);
    sqlx::query(
        "INSERT INTO drift_status (deployment, drifting, drift_share, rows, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (deployment) DO UPDATE SET drifting = excluded.drifting,
            drift_share = excluded.drift_share, rows = excluded.rows,
            updated_at = excluded.updated_at",
    )
    .bind(deployment)
    .bind(i64::from(report.drifting))
    .bind(report.drift_share)
    .bind(i64::try_from(report.rows).unwrap_or(i64::MAX))
    .bind(crate::db::now_text())
    .execute(&state.db)
    .await?;
    Ok(())
}
