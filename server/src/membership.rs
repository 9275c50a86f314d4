//! Who may do what in a group, from the signed-in account ([`CurrentUser`]: session cookie or
//! API token).
//!
//! - A group is **visible** to its owner, to every account with a membership in it (active or
//!   left) and to administrators. Everyone else gets 404 with the same body as for an id that
//!   does not exist ([`not_found`]), so ids reveal nothing.
//! - **Training actions** (ready, statistics, updates, failures, evaluations, leave) are made by
//!   an active membership: the caller's own ([`GroupAccess::require_member`], 403 otherwise).
//!   The owner is a member from the creation of the group, so owners can train too.
//! - **Managing** (start, promote and roll back deployments, see the join code) is for the
//!   owner and administrators ([`GroupAccess::require_owner`], 403 for members).
//!
//! Put these checks right after the path is parsed, before anything about the group is read.

use crate::accounts::CurrentUser;
use crate::db::Db;
use crate::error::ApiError;

/// The answer for a group the caller may not see, identical to a group that does not exist.
pub fn not_found() -> ApiError {
    ApiError::NotFound("no such group".into())
}

/// A membership of a group.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Member {
    pub id: i64,
    pub group_id: i64,
    pub name: String,
    pub num_samples: Option<i64>,
    pub left_at: Option<String>,
}

/// How the caller relates to a visible group, strongest first (the wire type, shared with
/// the clients).
pub use b3o_models::protocol::GroupRole;

/// The caller's standing in a group it may see.
#[derive(Debug, Clone)]
pub struct GroupAccess {
    pub group_id: i64,
    pub role: GroupRole,
    /// The caller's active membership, else its newest one (left), else none.
    pub member: Option<Member>,
    is_admin: bool,
}

impl GroupAccess {
    /// The owner or an administrator.
    pub fn can_manage(&self) -> bool {
        self.role == GroupRole::Owner || self.is_admin
    }

    /// 403 unless the caller owns the group or is an administrator.
    pub fn require_owner(&self) -> Result<(), ApiError> {
        if self.can_manage() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "only the group's owner (or an administrator) may do this".into(),
            ))
        }
    }

    /// The caller's active membership, or 403 (left the group, or an administrator or owner
    /// who is not a member).
    pub fn require_member(&self) -> Result<&Member, ApiError> {
        match &self.member {
            Some(m) if m.left_at.is_none() => Ok(m),
            Some(_) => Err(ApiError::Forbidden("you have left this group".into())),
            None => Err(ApiError::Forbidden(
                "you are not a member of this group; join it with its code to train".into(),
            )),
        }
    }

    /// The caller's active membership, if any.
    pub fn active_member(&self) -> Option<&Member> {
        self.member.as_ref().filter(|m| m.left_at.is_none())
    }
}

#[derive(sqlx::FromRow)]
struct AccessRow {
    owner_user_id: Option<i64>,
    member_id: Option<i64>,
    member_name: Option<String>,
    num_samples: Option<i64>,
    left_at: Option<String>,
}

/// The caller's access to `group_id`, or [`not_found`] when the group does not exist or the
/// caller may not see it. The visibility rule is in the SQL so no branch can forget it.
pub async fn group_access(
    db: &Db,
    user: &CurrentUser,
    group_id: i64,
) -> Result<GroupAccess, ApiError> {
    let row: Option<AccessRow> = sqlx::query_as(
        "SELECT g.owner_user_id, m.id AS member_id, m.name AS member_name, m.num_samples,
                m.left_at
         FROM groups g
         LEFT JOIN members m ON m.id = (
             SELECT id FROM members WHERE group_id = g.id AND user_id = $1
             ORDER BY left_at IS NOT NULL, id DESC LIMIT 1)
         WHERE g.id = $2 AND ($3 OR g.owner_user_id = $1 OR m.id IS NOT NULL)",
    )
    .bind(user.id)
    .bind(group_id)
    .bind(user.is_admin())
    .fetch_optional(db)
    .await?;
    let row = row.ok_or_else(not_found)?;
    let member = match (row.member_id, row.member_name) {
        (Some(id), Some(name)) => Some(Member {
            id,
            group_id,
            name,
            num_samples: row.num_samples,
            left_at: row.left_at,
        }),
        _ => None,
    };
    let role = GroupRole::of(
        row.owner_user_id == Some(user.id),
        member.as_ref().map(|m| m.left_at.is_none()),
        user.is_admin(),
    )
    .ok_or_else(not_found)?;
    Ok(GroupAccess {
        group_id,
        role,
        member,
        is_admin: user.is_admin(),
    })
}

/// A value for the retired `owner_token_hash` / `token_hash` columns (NOT NULL, the latter
/// UNIQUE): the hash of a random secret that is thrown away, so it matches no token.
pub(crate) fn unusable_token_hash() -> String {
    crate::accounts::hash_secret(&crate::accounts::random_secret())
}

/// The name a membership gets when the join request names none: the account's organisation,
/// else its display name.
pub(crate) fn default_member_name(user: &CurrentUser) -> String {
    let org = user.organisation.trim();
    if org.is_empty() {
        user.display_name.trim().to_string()
    } else {
        org.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_rank_owner_then_member_then_admin_then_left() {
        assert_eq!(
            GroupRole::of(true, Some(false), true),
            Some(GroupRole::Owner)
        );
        assert_eq!(
            GroupRole::of(false, Some(true), true),
            Some(GroupRole::Member)
        );
        assert_eq!(
            GroupRole::of(false, Some(false), true),
            Some(GroupRole::Admin)
        );
        assert_eq!(
            GroupRole::of(false, Some(false), false),
            Some(GroupRole::Left)
        );
        assert_eq!(GroupRole::of(false, None, false), None);
    }
}
