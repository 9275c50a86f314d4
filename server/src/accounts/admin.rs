//! Administrator routes under `/api/admin/`: the account list, roles, password resets,
//! disabling and deleting accounts.
//!
//! The instance always keeps an enabled administrator: the last one cannot be demoted,
//! disabled or deleted (409), each guard in the statement or transaction that writes, so two
//! concurrent requests cannot both pass it.

use axum::Json;
use axum::extract::State;
use b3o_models::protocol::ErrorBody;
use b3o_models::protocol::accounts::{
    AccountDeleted, PasswordReset, SetDisabled, SetRole, UserView,
};

use super::extract::{AdminUser, ApiJson, ApiPath};
use super::users::{self, USER_COLUMNS, UserRow};
use super::{now, password};
use crate::error::ApiError;
use crate::state::AppState;

/// SQL true when account `?1` is not the last enabled administrator (another enabled
/// administrator exists, or `?1` is none).
const NOT_LAST_ADMIN: &str = "(NOT EXISTS (SELECT 1 FROM users WHERE id = $1 AND role = 'admin' \
     AND disabled_at IS NULL) OR EXISTS (SELECT 1 FROM users WHERE role = 'admin' \
     AND disabled_at IS NULL AND id != $1))";

fn no_such_user() -> ApiError {
    ApiError::NotFound("no such user".into())
}

fn last_admin(what: &str) -> ApiError {
    ApiError::Conflict(format!(
        "the last enabled administrator cannot be {what}: make another account an \
         administrator first"
    ))
}

/// Signs every session of `id` out and revokes its API tokens, in `tx`.
async fn revoke_credentials(tx: &mut crate::db::Tx, id: i64) -> Result<(u64, u64), ApiError> {
    let sessions = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    let tokens = sqlx::query("DELETE FROM api_tokens WHERE user_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok((sessions, tokens))
}

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
    // One statement, so two concurrent demotions cannot leave no enabled administrator.
    let sql = format!(
        "UPDATE users SET role = $2, updated_at = $3 WHERE id = $1 AND ($2 = 'admin' OR \
         {NOT_LAST_ADMIN})"
    );
    let updated = sqlx::query(&sql)
        .bind(id)
        .bind(body.role.as_str())
        .bind(now())
        .execute(&state.db)
        .await?
        .rows_affected();
    let row = users::fetch(&state.db, id)
        .await?
        .ok_or_else(no_such_user)?;
    if updated == 0 {
        return Err(last_admin("demoted"));
    }
    Ok(Json(row.into()))
}

/// `POST /api/admin/users/{id}/password`: a new one-time password for the account, shown once
/// in the answer; the account must change it at its next sign-in, and every session and API
/// token it had is revoked. Administrators change their own password with
/// `POST /api/auth/password` (409 here).
#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/password",
    operation_id = "reset_user_password",
    tag = "accounts",
    params(("id" = i64, Path, description = "The account")),
    responses(
        (status = 200, description = "Reset: the one-time password (shown once), the account's sessions and API tokens revoked", body = PasswordReset),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an administrator, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "The caller's own account (change it with POST /api/auth/password)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub(crate) async fn reset_password(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<PasswordReset>, ApiError> {
    if users::fetch(&state.db, id).await?.is_none() {
        return Err(no_such_user());
    }
    if id == admin.id {
        return Err(ApiError::Conflict(
            "this is your own account: change your password on your account page (POST \
             /api/auth/password)"
                .into(),
        ));
    }
    let one_time = password::generate();
    let hash = password::hash(&state.accounts, one_time.clone()).await?;
    let mut tx = crate::db::begin_write(&state.db).await?;
    let updated = sqlx::query(
        "UPDATE users SET password_hash = $1, must_change_password = 1, updated_at = $2 \
         WHERE id = $3",
    )
    .bind(&hash)
    .bind(now())
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(no_such_user());
    }
    let (revoked_sessions, revoked_tokens) = revoke_credentials(&mut tx, id).await?;
    tx.commit().await?;
    let row = users::fetch(&state.db, id)
        .await?
        .ok_or_else(no_such_user)?;
    tracing::info!(
        admin = admin.id,
        user_id = id,
        revoked_sessions,
        revoked_tokens,
        "password reset by an administrator"
    );
    Ok(Json(PasswordReset {
        user: row.into(),
        one_time_password: one_time,
        revoked_sessions,
        revoked_tokens,
    }))
}

/// `PUT /api/admin/users/{id}/disabled`: disables the account (it cannot sign in; its sessions
/// and API tokens are revoked) or enables it again. The last enabled administrator cannot be
/// disabled (409).
#[utoipa::path(
    put,
    path = "/api/admin/users/{id}/disabled",
    operation_id = "set_user_disabled",
    tag = "accounts",
    params(("id" = i64, Path, description = "The account")),
    request_body = SetDisabled,
    responses(
        (status = 200, description = "The account, disabled or enabled", body = UserView),
        (status = 400, description = "Unknown or missing field, or the id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an administrator, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "The last enabled administrator cannot be disabled", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub(crate) async fn set_disabled(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<SetDisabled>,
) -> Result<Json<UserView>, ApiError> {
    let mut tx = crate::db::begin_write(&state.db).await?;
    let crate::db::Flag(exists) =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    if !exists {
        return Err(no_such_user());
    }
    if body.disabled {
        let sql = format!(
            "UPDATE users SET disabled_at = COALESCE(disabled_at, $2), updated_at = $2 \
             WHERE id = $1 AND {NOT_LAST_ADMIN}"
        );
        let updated = sqlx::query(&sql)
            .bind(id)
            .bind(now())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(last_admin("disabled"));
        }
        let (sessions, tokens) = revoke_credentials(&mut tx, id).await?;
        tracing::info!(
            admin = admin.id,
            user_id = id,
            sessions,
            tokens,
            "account disabled"
        );
    } else {
        sqlx::query("UPDATE users SET disabled_at = NULL, updated_at = $1 WHERE id = $2")
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tracing::info!(admin = admin.id, user_id = id, "account enabled");
    }
    tx.commit().await?;
    let row = users::fetch(&state.db, id)
        .await?
        .ok_or_else(no_such_user)?;
    Ok(Json(row.into()))
}

/// `DELETE /api/admin/users/{id}`: deletes the account. Its sessions and API tokens go with
/// it; its finished batch jobs are deleted with their files; the groups it owns stay, with
/// their history, versions and deployments, as system-owned groups (administrators manage
/// them); its memberships stay in their groups' history with no account behind them (active
/// ones end, as if it had left). 409 while it has batch jobs queued or running (disable it,
/// then delete it once they finished), and for the last enabled administrator.
#[utoipa::path(
    delete,
    path = "/api/admin/users/{id}",
    operation_id = "delete_user",
    tag = "accounts",
    params(("id" = i64, Path, description = "The account")),
    responses(
        (status = 200, description = "Deleted; what happened to what it had", body = AccountDeleted),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an administrator, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "The last enabled administrator, or batch jobs of the account are still queued or running", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub(crate) async fn delete_user(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<AccountDeleted>, ApiError> {
    let mut tx = crate::db::begin_write(&state.db).await?;
    let sql = format!("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1), {NOT_LAST_ADMIN}");
    let (crate::db::Flag(exists), crate::db::Flag(not_last)): (crate::db::Flag, crate::db::Flag) =
        sqlx::query_as(&sql).bind(id).fetch_one(&mut *tx).await?;
    if !exists {
        return Err(no_such_user());
    }
    if !not_last {
        return Err(last_admin("deleted"));
    }
    let active_jobs: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE user_id = $1 AND status IN ('queued', 'running')",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    if active_jobs > 0 {
        return Err(ApiError::Conflict(format!(
            "the account has {active_jobs} batch job(s) queued or running: disable it now, and \
             delete it once they have finished"
        )));
    }
    let files: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT input_path, result_path FROM jobs WHERE user_id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
    let jobs_deleted = sqlx::query("DELETE FROM jobs WHERE user_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let (revoked_sessions, revoked_tokens) = revoke_credentials(&mut tx, id).await?;
    let groups_now_system_owned =
        sqlx::query("UPDATE groups SET owner_user_id = NULL WHERE owner_user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    // As a leave does (`federation::groups::leave`): its selections in a live round are
    // dropped, so the round does not wait for it. The round itself is re-checked at its next
    // event or its deadline (accounts cannot call federation, which depends on it), and the
    // account's event streams end with its sessions and tokens.
    sqlx::query(
        "UPDATE round_members SET status = 'dropped' WHERE status = 'selected' AND member_id IN \
         (SELECT id FROM members WHERE user_id = $1 AND left_at IS NULL)",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let memberships_detached = sqlx::query(
        "UPDATE members SET user_id = NULL, \
         left_at = COALESCE(left_at, $2) WHERE user_id = $1",
    )
    .bind(id)
    .bind(crate::db::now_text())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    // After the commit: a failed delete leaves the files of the jobs it kept.
    for path in files
        .into_iter()
        .flat_map(|(input, result)| [Some(input), result])
        .flatten()
    {
        // (What fails here, the orphan collector deletes later.)
        state.blobs.remove(&path).await;
    }
    tracing::info!(
        admin = admin.id,
        user_id = id,
        groups_now_system_owned,
        memberships_detached,
        jobs_deleted,
        "account deleted"
    );
    Ok(Json(AccountDeleted {
        revoked_sessions,
        revoked_tokens,
        groups_now_system_owned,
        memberships_detached,
        jobs_deleted,
    }))
}
