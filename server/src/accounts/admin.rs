//! Administrator routes under `/api/admin/`.

use axum::Json;
use axum::extract::State;
use b3o_models::protocol::ErrorBody;
use b3o_models::protocol::accounts::{SetRole, UserView};

use super::extract::{AdminUser, ApiJson, ApiPath};
use super::now;
use super::users::{self, USER_COLUMNS, UserRow};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /api/admin/users`: every account, oldest first.
#[utoipa::path(
    get,
    path = "/api/admin/users",
    operation_id = "list_users",
    tag = "accounts",
    responses(
        (status = 200, description = "Every account", body = Vec<UserView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub(crate) async fn list_users(
    _admin: AdminUser,
    State(state): State<AppState>,
) -> Result<Json<Vec<UserView>>, ApiError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id");
    let rows: Vec<UserRow> = sqlx::query_as(&sql).fetch_all(&state.db).await?;
    Ok(Json(rows.into_iter().map(UserView::from).collect()))
}

/// `PUT /api/admin/users/{id}/role`: promotes or demotes; the last administrator stays one.
#[utoipa::path(
    put,
    path = "/api/admin/users/{id}/role",
    operation_id = "set_user_role",
    tag = "accounts",
    params(("id" = i64, Path, description = "The account")),
    request_body = SetRole,
    responses(
        (status = 200, description = "The account with its new role", body = UserView),
        (status = 400, description = "Unknown role or field, or the id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an administrator, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "The last administrator cannot be demoted", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
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
