//! `--blob-store <url>`: where blobs live. Without it, the data directory (as always); with
//! `file:///abs/path`, another local folder; with `s3://bucket?endpoint=...&region=...`, a
//! bucket of any S3-compatible service.
//!
//! S3 settings come from the standard AWS environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`...) and from
//! the URL's query, which wins: `endpoint`, `region`, `access_key_id`, `secret_access_key`,
//! `session_token` and the other keys `object_store`'s `AmazonS3ConfigKey` knows. Requests
//! use path-style addressing (`endpoint/bucket/key`, what MinIO, s3s, Garage, Ceph... serve)
//! unless `virtual_hosted_style_request=true`; an `http://` endpoint is allowed as given.
//! Credentials belong in the environment (a URL shows in `ps` and in shell history); a
//! location never prints them: its `Debug` and [`BlobLocation::describe`] leave them out.

use std::path::PathBuf;
use std::str::FromStr;

use object_store::aws::AmazonS3ConfigKey;

use super::BlobError;

/// A parsed `--blob-store` value.
#[derive(Clone)]
pub enum BlobLocation {
    /// A local folder (absolute path).
    Folder(PathBuf),
    /// A bucket, with the URL's settings in their given order.
    S3 {
        bucket: String,
        options: Vec<(AmazonS3ConfigKey, String)>,
    },
}

impl BlobLocation {
    /// Where blobs go, for logs and errors: the folder, or the bucket and endpoint (never a
    /// credential).
    pub fn describe(&self) -> String {
        match self {
            BlobLocation::Folder(path) => format!("the folder {}", path.display()),
            BlobLocation::S3 { bucket, options } => {
                let endpoint = options
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == AmazonS3ConfigKey::Endpoint)
                    .map(|(_, v)| format!(" at {v}"))
                    .unwrap_or_default();
                format!("s3://{bucket}{endpoint}")
            }
        }
    }
}

impl std::fmt::Debug for BlobLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl FromStr for BlobLocation {
    type Err = BlobError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| BlobError::Config(why);
        let url = url::Url::parse(s).map_err(|e| {
            bad(format!(
                "not a URL ({e}): use s3://bucket?endpoint=... or file:///path"
            ))
        })?;
        match url.scheme() {
            "file" => {
                if url.query().is_some() || url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(bad("a file:// location is file:///absolute/path".into()));
                }
                let path = url
                    .to_file_path()
                    .map_err(|()| bad("a file:// location is file:///absolute/path".into()))?;
                Ok(BlobLocation::Folder(path))
            }
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad("name the bucket: s3://bucket?endpoint=...".into()))?
                    .to_string();
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(bad(
                        "put credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, not \
                         before the bucket's name"
                            .into(),
                    ));
                }
                if !matches!(url.path(), "" | "/") {
                    return Err(bad(
                        "blobs go at the bucket's root: s3://bucket, without a path".into(),
                    ));
                }
                let mut options = Vec::new();
                for (key, value) in url.query_pairs() {
                    let config = AmazonS3ConfigKey::from_str(&key)
                        .map_err(|_| bad(format!("unknown S3 setting `{key}`")))?;
                    if config == AmazonS3ConfigKey::Endpoint {
                        check_endpoint(&value)?;
                    }
                    options.push((config, value.into_owned()));
                }
                Ok(BlobLocation::S3 { bucket, options })
            }
            other => Err(bad(format!(
                "unsupported scheme `{other}`: use s3:// (any S3-compatible service) or file://"
            ))),
        }
    }
}

/// An endpoint is `http(s)://host[:port]`, without credentials in it.
pub(super) fn check_endpoint(endpoint: &str) -> Result<(), BlobError> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| BlobError::Config(format!("the endpoint is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BlobError::Config(
            "the endpoint is http://host:port or https://host:port".into(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BlobError::Config(
            "the endpoint may not carry credentials: use AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY"
                .into(),
        ));
    }
    Ok(())
}

/// For clap: the error as text.
pub fn parse(s: &str) -> Result<BlobLocation, String> {
    s.parse().map_err(|e: BlobError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_carry_bucket_endpoint_and_settings_and_never_print_secrets() {
        let loc: BlobLocation = "s3://models?endpoint=http://127.0.0.1:9000&region=eu-west-3\
                                 &secret_access_key=sh%2Bh"
            .parse()
            .unwrap();
        let BlobLocation::S3 { bucket, options } = &loc else {
            panic!("{loc:?}")
        };
        assert_eq!(bucket, "models");
        assert_eq!(
            options[0],
            (AmazonS3ConfigKey::Endpoint, "http://127.0.0.1:9000".into())
        );
        assert_eq!(options[1], (AmazonS3ConfigKey::Region, "eu-west-3".into()));
        assert_eq!(options[2].1, "sh+h");
        let shown = format!("{loc:?} {}", loc.describe());
        assert!(
            !shown.contains("sh+h") && !shown.contains("sh%2Bh"),
            "{shown}"
        );
        assert!(
            shown.contains("s3://models at http://127.0.0.1:9000"),
            "{shown}"
        );
    }

    #[test]
    fn bad_locations_say_what_to_write() {
        for (url, says) in [
            ("s3://?endpoint=http://x", "bucket"),
            ("s3://b?colour=blue", "unknown S3 setting `colour`"),
            ("s3://b/prefix", "root"),
            ("s3://key:secret@b", "AWS_ACCESS_KEY_ID"),
            ("s3://b?endpoint=http://k:s@host:9000", "credentials"),
            ("s3://b?endpoint=ftp://host", "http://"),
            ("gs://b", "unsupported scheme"),
            ("file://host/x", "file:///"),
            ("bucket", "not a URL"),
        ] {
            let err = url.parse::<BlobLocation>().unwrap_err().to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
        let err = "s3://key:secret@b".parse::<BlobLocation>().unwrap_err();
        assert!(!err.to_string().contains("key:secret"), "{err}");
        match "file:///var/lib/b3o".parse::<BlobLocation>().unwrap() {
            BlobLocation::Folder(p) => assert_eq!(p, PathBuf::from("/var/lib/b3o")),
            other => panic!("{other:?}"),
        }
    }
}
