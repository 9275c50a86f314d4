//! Passwords: the policy (length, not a common password, not the email address) and argon2id
//! hashing to PHC strings, off the async runtime and bounded by [`super::Accounts::hashing`].

use std::collections::HashSet;
use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use super::Accounts;
use crate::error::ApiError;

pub const MIN_CHARS: usize = 8;
/// Long passphrases are welcome; the bound only keeps request bodies and hashing time sane.
pub const MAX_CHARS: usize = 1024;

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
});

/// Why a password is refused, in words for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("password: at least {MIN_CHARS} characters")]
    TooShort,
    #[error("password: at most {MAX_CHARS} characters")]
    TooLong,
    #[error("password: this is one of the most common passwords; choose another")]
    Common,
    #[error("password: must not be your email address")]
    IsEmail,
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

/// `email` is the normalised (lowercase) address of the account.
pub fn check_policy(password: &str, email: &str) -> Result<(), PolicyError> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(PolicyError::TooShort);
    }
    if chars > MAX_CHARS {
        return Err(PolicyError::TooLong);
    }
    let lower = password.trim().to_lowercase();
    if COMMON.contains(lower.as_str()) {
        return Err(PolicyError::Common);
    }
    let local = email.rsplit_once('@').map_or(email, |(local, _)| local);
    if lower == email || lower == local {
        return Err(PolicyError::IsEmail);
    }
    Ok(())
}

/// A 20-character random password (about 115 bits) without look-alike characters, for the
/// generated first administrator.
pub fn generate() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's recommendation).
pub(crate) async fn hash(accounts: &Accounts, password: String) -> Result<String, ApiError> {
    let _permit = accounts
        .hashing
        .acquire()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Checks `password` against a stored PHC string. Without one (unknown account) it still does
/// the same work against a dummy hash, so response times do not tell which emails exist.
pub(crate) async fn verify(
    accounts: &Accounts,
    password: String,
    phc: Option<String>,
) -> Result<bool, ApiError> {
    static DUMMY: LazyLock<String> = LazyLock::new(|| {
        Argon2::default()
            .hash_password(generate().as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    });
    let _permit = accounts
        .hashing
        .acquire()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| DUMMY.clone());
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), phc.as_str())
            .is_ok();
        known && ok
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_embedded_and_lowercase() {
        assert!(COMMON.len() >= 300, "{}", COMMON.len());
        assert!(COMMON.iter().all(|p| *p == p.to_lowercase()));
    }

    #[test]
    fn policy() {
        let email = "ada@example.org";
        assert_eq!(check_policy("short", email), Err(PolicyError::TooShort));
        assert_eq!(check_policy("password", email), Err(PolicyError::Common));
        assert_eq!(check_policy("PassWord123", email), Err(PolicyError::Common));
        assert_eq!(check_policy("qwertyuiop", email), Err(PolicyError::Common));
        assert_eq!(
            check_policy("Ada@Example.org", email),
            Err(PolicyError::IsEmail)
        );
        assert_eq!(
            check_policy(&"x".repeat(MAX_CHARS + 1), email),
            Err(PolicyError::TooLong)
        );
        assert_eq!(check_policy("correct horse battery", email), Ok(()));
        // Counted in characters, not bytes.
        assert_eq!(check_policy("ééééééé", email), Err(PolicyError::TooShort));
    }

    #[test]
    fn generated_passwords_pass_the_policy() {
        let p = generate();
        assert_eq!(p.chars().count(), 20);
        assert_eq!(check_policy(&p, "admin@b3o.local"), Ok(()));
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_and_verify() {
        let accounts = Accounts::default();
        let phc = hash(&accounts, "correct horse battery".into())
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        assert!(
            verify(&accounts, "correct horse battery".into(), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify(&accounts, "wrong horse battery".into(), Some(phc))
                .await
                .unwrap()
        );
        assert!(
            !verify(&accounts, "anything".into(), None).await.unwrap(),
            "an unknown account never verifies"
        );
        assert!(
            !verify(&accounts, "x".into(), Some("not a phc string".into()))
                .await
                .unwrap()
        );
    }
}
