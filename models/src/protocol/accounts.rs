//! Wire types: accounts (see the module docs of `models::protocol`): registration, sign-in,
//! the caller's profile, its sessions and API tokens, and the administrators' account list.
//!
//! Browsers authenticate with the `b3o_session` cookie (`__Host-b3o_session` behind TLS) and
//! send the CSRF token of [`Me::csrf_token`] as `X-CSRF-Token` on state-changing requests;
//! programs send `Authorization: Bearer b3o_…` (an [`CreatedToken::token`]).

use serde::{Deserialize, Serialize};

/// An account's role on the instance.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    /// The wire (and database) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

/// An account as the API shows it (never the password hash).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub organisation: String,
    pub role: Role,
    /// The password is a one-time one (generated for the first administrator, or set by an
    /// administrator's reset): until it is changed with `POST /api/auth/password`, every other
    /// call but `GET /api/me` and sign-out answers 403 `password_change_required`.
    pub must_change_password: bool,
    /// Disabled by an administrator: cannot sign in; its sessions and API tokens were revoked.
    /// Absent from older servers: not disabled.
    #[serde(default)]
    pub disabled: bool,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
}

/// Body of a successful login or registration, and of `GET /api/me`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub user: UserView,
    /// Send as `X-CSRF-Token` on POST/PUT/PATCH/DELETE; absent with API tokens (not needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// `POST /api/auth/register`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// Trimmed and lowercased; at most 254 characters.
    pub email: String,
    /// 1 to 100 characters.
    pub display_name: String,
    /// 1 to 200 characters.
    pub organisation: String,
    /// 8 to 1024 characters, not one of the most common passwords, not the email.
    pub password: String,
}

/// `POST /api/auth/login`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    pub password: String,
}

/// `POST /api/auth/password`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    pub new_password: String,
}

/// The answer to a password change: the account's other sessions are signed out and its API
/// tokens revoked.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordChanged {
    /// Other sessions of the account that were signed out.
    pub revoked_sessions: u64,
    /// API tokens of the account that were revoked (programs need a new one).
    pub revoked_tokens: u64,
}

/// `PATCH /api/me`: the fields to change (omitted ones stay).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
}

/// One live session of the caller's account (`GET /api/auth/sessions`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub last_seen_at: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub expires_at: String,
    pub user_agent: String,
    pub ip: String,
    /// The session this request came with.
    pub current: bool,
}

/// `POST /api/auth/tokens`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// 1 to 100 characters.
    pub name: String,
    /// 1 to 3650; omitted: the token never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

/// An API token as listed (never the secret).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    /// The first characters of the token, e.g. `b3o_1a2b3c4d`.
    pub prefix: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub last_used_at: Option<String>,
    /// `None`: never expires.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub expires_at: Option<String>,
}

/// `201` answer to `POST /api/auth/tokens`: the token's listing plus the token itself.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub view: TokenView,
    /// The whole token (`b3o_` + 64 hex digits): shown in this response only.
    pub token: String,
}

/// `PUT /api/admin/users/{id}/role`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    pub role: Role,
}

/// `PUT /api/admin/users/{id}/disabled`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetDisabled {
    /// `true` disables the account (it cannot sign in; its sessions and API tokens are
    /// revoked), `false` enables it again.
    pub disabled: bool,
}

/// The answer to `POST /api/admin/users/{id}/password`: an administrator's password reset.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordReset {
    /// The account, now with `must_change_password` set.
    pub user: UserView,
    /// The new one-time password: shown in this answer only, never stored in clear. The
    /// account signs in with it and must choose a new password before anything else.
    pub one_time_password: String,
    /// Sessions of the account that were signed out.
    pub revoked_sessions: u64,
    /// API tokens of the account that were revoked.
    pub revoked_tokens: u64,
}

/// The answer to `DELETE /api/admin/users/{id}`: what happened to what the account had.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDeleted {
    /// Sessions signed out and API tokens revoked (deleted with the account).
    pub revoked_sessions: u64,
    pub revoked_tokens: u64,
    /// Groups the account owned: they stay (with their rounds, versions and deployments) and
    /// become system-owned, managed by administrators.
    pub groups_now_system_owned: u64,
    /// Memberships of the account: they stay in their groups' history (rounds and updates
    /// keep their rows), with no account behind them; active ones are ended (left).
    pub memberships_detached: u64,
    /// Batch jobs of the account, deleted with their input and result files.
    pub jobs_deleted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_created_token_is_its_listing_plus_the_secret() {
        let created = CreatedToken {
            view: TokenView {
                id: 1,
                name: "ci".into(),
                prefix: "b3o_12345678".into(),
                created_at: "2026-01-01T00:00:00Z".into(),
                last_used_at: None,
                expires_at: None,
            },
            token: "b3o_secret".into(),
        };
        let v = serde_json::to_value(&created).unwrap();
        assert_eq!(
            v,
            json!({ "id": 1, "name": "ci", "prefix": "b3o_12345678",
                    "created_at": "2026-01-01T00:00:00Z", "last_used_at": null,
                    "expires_at": null, "token": "b3o_secret" })
        );
        assert_eq!(serde_json::from_value::<CreatedToken>(v).unwrap(), created);
    }

    #[test]
    fn requests_refuse_unknown_fields_and_roles() {
        let typo = serde_json::from_value::<Login>(json!({ "email": "a@b.c", "pasword": "x" }));
        assert!(typo.unwrap_err().to_string().contains("pasword"));
        assert!(serde_json::from_value::<SetRole>(json!({ "role": "root" })).is_err());
        let me: Me = serde_json::from_value(json!({ "user": {
            "id": 1, "email": "a@b.c", "display_name": "A", "organisation": "O",
            "role": "admin", "must_change_password": false, "created_at": "2026-01-01T00:00:00Z"
        }}))
        .unwrap();
        assert_eq!((me.user.role, me.csrf_token), (Role::Admin, None));
        // Older servers send no `disabled`: the account is not disabled.
        assert!(!me.user.disabled);
        assert!(serde_json::from_value::<SetDisabled>(json!({})).is_err());
    }
}
