//! The `users` table: roles, the JSON view of an account, and validation of the fields people
//! type (email, display name, organisation).

pub use b3o_models::protocol::accounts::{Role, UserView};

use super::rfc3339;
use crate::db::Db;
use crate::error::ApiError;

/// The column has a CHECK constraint; anything else reads as the least privilege.
pub(crate) fn role_from_column(value: &str) -> Role {
    if value == "admin" {
        Role::Admin
    } else {
        Role::Member
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub organisation: String,
    pub role: String,
    pub must_change_password: bool,
    pub disabled: bool,
    pub created_at: i64,
}

pub(crate) const USER_COLUMNS: &str = "id, email, display_name, organisation, role, \
     must_change_password, disabled_at IS NOT NULL AS disabled, created_at";

impl From<UserRow> for UserView {
    fn from(row: UserRow) -> Self {
        UserView {
            id: row.id,
            email: row.email,
            display_name: row.display_name,
            organisation: row.organisation,
            role: role_from_column(&row.role),
            must_change_password: row.must_change_password,
            disabled: row.disabled,
            created_at: rfc3339(row.created_at),
        }
    }
}

pub(crate) async fn fetch(db: &Db, id: i64) -> Result<Option<UserRow>, ApiError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(db).await?)
}

pub(crate) const MAX_EMAIL: usize = 254;
const MAX_NAME: usize = 100;
const MAX_ORGANISATION: usize = 200;

/// Trimmed and lowercased, so `Ada@Example.org` and `ada@example.org` are one account.
pub fn normalise_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let bad = || ApiError::BadRequest("email: expected an address like name@example.org".into());
    if email.chars().count() > MAX_EMAIL {
        return Err(ApiError::BadRequest(format!(
            "email: at most {MAX_EMAIL} characters"
        )));
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(bad());
    };
    if local.is_empty()
        || domain.is_empty()
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains('@')
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(email)
}

pub(crate) fn clean_display_name(raw: &str) -> Result<String, ApiError> {
    clean_text("display_name", raw, 1, MAX_NAME)
}

pub(crate) fn clean_organisation(raw: &str) -> Result<String, ApiError> {
    clean_text("organisation", raw, 1, MAX_ORGANISATION)
}

/// Trimmed, within `min..=max` characters, no control characters (they break logs and UIs).
pub(crate) fn clean_text(
    field: &str,
    raw: &str,
    min: usize,
    max: usize,
) -> Result<String, ApiError> {
    let text = raw.trim();
    let len = text.chars().count();
    if len < min {
        return Err(ApiError::BadRequest(format!("{field}: required")));
    }
    if len > max {
        return Err(ApiError::BadRequest(format!(
            "{field}: at most {max} characters"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "{field}: control characters are not allowed"
        )));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalise_email("  Ada@Example.ORG ").unwrap(),
            "ada@example.org"
        );
        for bad in [
            "",
            "ada",
            "@example.org",
            "ada@",
            "ada@.org",
            "a da@example.org",
            "ada@example.org.",
        ] {
            assert!(normalise_email(bad).is_err(), "{bad:?}");
        }
        assert!(normalise_email(&format!("{}@example.org", "a".repeat(300))).is_err());
    }

    #[test]
    fn text_fields_are_trimmed_and_bounded() {
        assert_eq!(clean_display_name("  Ada ").unwrap(), "Ada");
        assert!(clean_display_name("   ").is_err());
        assert!(clean_display_name(&"x".repeat(101)).is_err());
        assert!(clean_organisation("ACME\u{0}").is_err());
    }
}
