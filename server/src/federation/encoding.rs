//! A group's update encoding (`groups.update_encoding`, migration 0006): what its members
//! upload (`models::compress`), sent to them in every round's config, and what
//! [`super::updates`] and the round's aggregation decode.

use b3o_models::compress::UpdateEncoding;
use sqlx::SqliteConnection;

use crate::db::Db;
use crate::error::ApiError;

/// The group's encoding (`f32` for a group that has none stored).
pub(crate) async fn load(db: &Db, group_id: i64) -> Result<UpdateEncoding, ApiError> {
    let raw: Option<String> = sqlx::query_scalar("SELECT update_encoding FROM groups WHERE id = $1")
        .bind(group_id)
        .fetch_optional(db)
        .await?;
    parse(group_id, raw.as_deref())
}

fn parse(group_id: i64, raw: Option<&str>) -> Result<UpdateEncoding, ApiError> {
    match raw {
        None => Ok(UpdateEncoding::F32),
        Some(raw) => raw.parse().map_err(|e| {
            ApiError::Internal(format!(
                "group {group_id}: stored update encoding unreadable: {e}"
            ))
        }),
    }
}

/// Stores a new group's encoding (in its creating transaction).
pub(crate) async fn store(
    conn: &mut SqliteConnection,
    group_id: i64,
    encoding: UpdateEncoding,
) -> Result<(), ApiError> {
    sqlx::query("UPDATE groups SET update_encoding = $1 WHERE id = $2")
        .bind(encoding.to_string())
        .bind(group_id)
        .execute(conn)
        .await?;
    Ok(())
}
