//! What can go wrong with a blob, in words an operator can act on. Messages name the
//! operation and the key, never a credential: details that come from the store pass through
//! [`Redactor`] first.

use crate::error::ApiError;

/// Seconds a client is told to wait when the store is unreachable.
const RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob under `key` (a row pointing at it is then a server fault).
    #[error("blob `{key}` does not exist")]
    NotFound { key: String },
    /// The store could not be reached (connection refused, timeout, DNS): 503 to clients.
    #[error("the blob store is unreachable ({op} `{key}`): {detail}")]
    Unreachable {
        op: &'static str,
        key: String,
        detail: String,
    },
    /// The store answered with an error (permissions, a missing bucket, a full disk...).
    #[error("{op} blob `{key}` failed: {detail}")]
    Failed {
        op: &'static str,
        key: String,
        detail: String,
    },
    /// A key the server built that the store cannot hold (`..`, empty segments).
    #[error("`{key}` is not a valid blob key")]
    InvalidKey { key: String },
    /// `--blob-store` names something unusable.
    #[error("--blob-store: {0}")]
    Config(String),
}

impl BlobError {
    /// The store could not be reached: worth retrying, not a bug.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, BlobError::Unreachable { .. })
    }

    pub(super) fn io(op: &'static str, key: &str, e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::NotFound {
            return BlobError::NotFound { key: key.into() };
        }
        BlobError::Failed {
            op,
            key: key.into(),
            detail: e.to_string(),
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Unreachable { .. } => {
                // The details (endpoint, cause) are for the operator; clients learn to retry.
                tracing::error!(error = %e, "the blob store is unreachable");
                ApiError::Unavailable {
                    message: "the blob store is unreachable; try again shortly".into(),
                    retry_after_secs: RETRY_AFTER_SECS,
                }
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Replaces the configured secrets (access key id, secret key, session token) wherever a
/// store's message repeats them (some S3 services echo the access key id in a signature
/// error).
#[derive(Debug, Clone, Default)]
pub(super) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub(super) fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        Self {
            secrets: secrets.into_iter().filter(|s| s.len() >= 4).collect(),
        }
    }

    pub(super) fn clean(&self, text: String) -> String {
        self.secrets.iter().fold(text, |text, secret| {
            text.replace(secret.as_str(), "[redacted]")
        })
    }

    /// An `object_store` error as ours: not found, unreachable (a connection or timeout
    /// anywhere in its causes) or failed.
    pub(super) fn classify(
        &self,
        op: &'static str,
        key: &str,
        e: object_store::Error,
    ) -> BlobError {
        if let object_store::Error::NotFound { .. } = e {
            return BlobError::NotFound { key: key.into() };
        }
        let unreachable = causes(&e).any(|cause| {
            cause
                .downcast_ref::<object_store::client::HttpError>()
                .is_some_and(|h| {
                    use object_store::client::HttpErrorKind as K;
                    matches!(
                        h.kind(),
                        K::Connect | K::Timeout | K::Request | K::Interrupted
                    )
                })
        });
        let detail = self.clean(e.to_string());
        if unreachable {
            BlobError::Unreachable {
                op,
                key: key.into(),
                detail,
            }
        } else {
            BlobError::Failed {
                op,
                key: key.into(),
                detail,
            }
        }
    }
}

/// `e` and each of its sources in turn.
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_a_message() {
        let r = Redactor::new(["AKIDEXAMPLE".to_string(), "x".to_string()]);
        assert_eq!(
            r.clean("<AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId> x".into()),
            "<AWSAccessKeyId>[redacted]</AWSAccessKeyId> x"
        );
        let e = object_store::Error::Generic {
            store: "S3",
            source: "signature of AKIDEXAMPLE does not match".into(),
        };
        let classified = r.classify("reading", "groups/1/a", e);
        assert!(!classified.is_unreachable());
        assert!(
            !classified.to_string().contains("AKIDEXAMPLE"),
            "{classified}"
        );
    }

    #[test]
    fn an_unreachable_store_is_a_503_naming_no_detail() {
        let e = BlobError::Unreachable {
            op: "reading",
            key: "k".into(),
            detail: "connection refused".into(),
        };
        match ApiError::from(e) {
            ApiError::Unavailable { message, .. } => assert!(!message.contains("refused")),
            other => panic!("{other:?}"),
        }
    }
}
