//! Bearer tokens standing in for accounts until those exist: a group's owner holds the owner
//! token returned at creation, each member the member token returned when joining. Tokens are
//! 32 random bytes in hex; only their sha256 is stored. When accounts land, [`Caller`] is the
//! one place to swap: handlers only ask "is this the owner / which member is this".

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::blobs::sha256_hex;
use crate::db::Db;
use crate::error::ApiError;
use crate::state::AppState;

/// A fresh random token (64 hex digits).
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

pub fn hash_token(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// The bearer token of a request, if any.
pub struct Bearer(pub String);

impl FromRequestParts<AppState> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let value = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized("missing `Authorization: Bearer <token>`".into())
        })?;
        let value = value
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
        let token = value
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("Authorization must be `Bearer <token>`".into())
            })?;
        Ok(Bearer(token.to_string()))
    }
}

/// A group member identified by their token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Member {
    pub id: i64,
    pub group_id: i64,
    pub name: String,
    pub num_samples: Option<i64>,
    pub left_at: Option<String>,
}

/// The member of `group_id` holding `token`: 401 for an unknown token, 403 for a member of
/// another group or one who left.
pub async fn member(db: &Db, group_id: i64, token: &Bearer) -> Result<Member, ApiError> {
    let member: Option<Member> = sqlx::query_as(
        "SELECT id, group_id, name, num_samples, left_at FROM members WHERE token_hash = ?",
    )
    .bind(hash_token(&token.0))
    .fetch_optional(db)
    .await?;
    let member = member.ok_or_else(|| ApiError::Unauthorized("unknown member token".into()))?;
    if member.group_id != group_id {
        return Err(ApiError::Forbidden(format!(
            "this member token belongs to group {}, not group {group_id}",
            member.group_id
        )));
    }
    if member.left_at.is_some() {
        return Err(ApiError::Forbidden("this member has left the group".into()));
    }
    Ok(member)
}

/// Checks that `token` is the owner token of `group_id` (404 if the group does not exist).
pub async fn owner(db: &Db, group_id: i64, token: &Bearer) -> Result<(), ApiError> {
    let hash: Option<String> =
        sqlx::query_scalar("SELECT owner_token_hash FROM groups WHERE id = ?")
            .bind(group_id)
            .fetch_optional(db)
            .await?;
    let hash =
        hash.ok_or_else(|| ApiError::NotFound(format!("group {group_id} does not exist")))?;
    if hash != hash_token(&token.0) {
        return Err(ApiError::Forbidden(format!(
            "only the owner of group {group_id} may do this"
        )));
    }
    Ok(())
}

/// Who is calling about a group: its owner or one of its members.
#[derive(Debug, Clone)]
pub enum Participant {
    Owner,
    Member(Member),
}

/// The owner or a member of `group_id` (401 / 403 / 404 otherwise).
pub async fn participant(db: &Db, group_id: i64, token: &Bearer) -> Result<Participant, ApiError> {
    match owner(db, group_id, token).await {
        Ok(()) => return Ok(Participant::Owner),
        Err(ApiError::Forbidden(_)) => {}
        Err(e) => return Err(e),
    }
    member(db, group_id, token).await.map(Participant::Member)
}
