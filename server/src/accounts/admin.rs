//! Administrator routes under `/api/admin/`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::extract::{AdminUser, ApiJson, ApiPath};
use super::now;
use super::users::{self, Role, USER_COLUMNS, UserRow, UserView};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /api/admin/users`: every account, oldest first.
pub(crate) async fn list_users(
    _admin: AdminUser,
    State(state): State<AppState>,
) -> Result<Json<Vec<UserView>>, ApiError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id");
    let rows: Vec<UserRow> = sqlx::query_as(&sql).fetch_all(&state.db).await?;
    Ok(Json(rows.into_iter().map(UserView::from).collect()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetRole {
    role: Role,
}

/// `PUT /api/admin/users/{id}/role`: promotes or demotes; the last administrator stays one.
pub(crate) async fn set_role(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<SetRole>,
) -> Result<Json<UserView>, ApiError> {
    // One statement, so two concurrent demotions cannot leave no administrator.
    let updated = sqlx::query(
        "UPDATE users SET role = ?1, updated_at = ?2 WHERE id = ?3 AND (?1 = 'admin' OR \
         (SELECT COUNT(*) FROM users WHERE role = 'admin' AND id != ?3) > 0)",
    )
    .bind(body.role.as_str())
    .bind(now())
    .bind(id)
    .execute(&state.db)
    .await?
    .rows_affected();
    let row = users::fetch(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such user".into()))?;
    if updated == 0 {
        return Err(ApiError::Conflict(
            "the last administrator cannot be demoted".into(),
        ));
    }
    Ok(Json(row.into()))
}
