//! Loading a deployed model for local inference: the package JSON
//! (`b3o_models::package::ModelPackage`), then its ONNX bytes, checked against the package's
//! SHA-256 and size, both kept in a cache so the model works offline.
//!
//! The decisions live here, over two small traits, so they are tested natively; the browser
//! implements the traits with `fetch` and the Cache API (`browser::web`).
//!
//! - A version's ONNX never changes, so it is cached under its versioned URL and never fetched
//!   twice.
//! - The package (which version is deployed) is always asked of the server first; only when the
//!   server cannot be reached (a network error or a 5xx) is the last cached package used.
//! - Cached bytes are checked like downloaded ones: a corrupt entry is refetched, never run.

use b3o_models::package::{ModelPackage, PACKAGE_FORMAT};
use sha2::{Digest, Sha256};

/// Largest ONNX file the engine downloads (the biggest model spec allowed is 50 M parameters).
pub const MAX_ONNX_BYTES: u64 = 256 << 20;

/// An HTTP answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// GET over the network. `Err` is a network failure (no answer at all), with its message.
// Single-threaded (a browser worker): the futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Fetch {
    async fn get(&self, url: &str) -> Result<HttpResponse, String>;
}

/// A persistent byte store keyed by URL (the Cache API). Best effort: a store that fails to
/// save or has nothing simply means downloading again.
#[allow(async_fn_in_trait)]
pub trait Store {
    async fn load(&self, url: &str) -> Option<Vec<u8>>;
    async fn save(&self, url: &str, bytes: &[u8], content_type: &str);
}

/// A model ready to run, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedPackage {
    pub package: ModelPackage,
    pub onnx: Vec<u8>,
    /// The ONNX bytes came from the cache (no model download).
    pub from_cache: bool,
    /// The server could not be reached: the last cached package was used.
    pub offline: bool,
}

/// Why a model could not be loaded. Messages are shown to people as they are.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("no deployed model is named `{0}`")]
    NotFound(String),
    #[error(
        "you may not use model `{model}` (HTTP {status}): sign in with an account of its group"
    )]
    Forbidden { model: String, status: u16 },
    #[error("the server answered HTTP {status} for {url}: {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
    },
    #[error(
        "cannot reach the server ({reason}) and model `{model}` has not been used on this device before"
    )]
    Offline { model: String, reason: String },
    #[error("the model package of `{model}` is not valid: {reason}")]
    BadPackage { model: String, reason: String },
    #[error("the downloaded model of `{model}` is corrupt (SHA-256 {found}, expected {expected})")]
    Integrity {
        model: String,
        expected: String,
        found: String,
    },
    #[error("model name `{0}` is empty or too long")]
    BadName(String),
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Percent-encodes one URL path segment (RFC 3986 unreserved characters pass through).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn base(server: &str) -> &str {
    server.trim_end_matches('/')
}

/// `{server}/api/deployments/{model}/package`; `server` is `""` for the page's own origin.
pub fn package_url(server: &str, model: &str) -> String {
    format!(
        "{}/api/deployments/{}/package",
        base(server),
        encode_segment(model)
    )
}

/// The ONNX URL of `package` on `server` (its `onnx_path` is server-relative).
pub fn onnx_url(server: &str, package: &ModelPackage) -> String {
    if package.onnx_path.starts_with("http://") || package.onnx_path.starts_with("https://") {
        package.onnx_path.clone()
    } else {
        format!("{}{}", base(server), package.onnx_path)
    }
}

/// The `message` of the server's `{"error": {"message": ..}}` body, else the body's start.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}

fn parse_package(model: &str, bytes: &[u8]) -> Result<ModelPackage, LoadError> {
    let bad = |reason: String| LoadError::BadPackage {
        model: model.to_string(),
        reason,
    };
    let package: ModelPackage =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not a model package: {e}")))?;
    if package.format != PACKAGE_FORMAT {
        return Err(bad(format!(
            "format `{}` is not `{PACKAGE_FORMAT}`: reload the page to update the engine",
            package.format
        )));
    }
    package.spec.validate().map_err(|e| bad(e.to_string()))?;
    if package.onnx_bytes > MAX_ONNX_BYTES {
        return Err(bad(format!(
            "its ONNX file is {} bytes, more than the {MAX_ONNX_BYTES} a browser loads",
            package.onnx_bytes
        )));
    }
    Ok(package)
}

/// Bytes that match the package's digest and size.
fn verified(package: &ModelPackage, bytes: &[u8]) -> Result<(), LoadError> {
    let found = sha256_hex(bytes);
    if !found.eq_ignore_ascii_case(&package.onnx_sha256) || bytes.len() as u64 != package.onnx_bytes
    {
        return Err(LoadError::Integrity {
            model: package.name.clone(),
            expected: package.onnx_sha256.clone(),
            found,
        });
    }
    Ok(())
}

/// A package and its ONNX bytes already at hand (a page that ships its own model, tests,
/// benchmarks), checked like a download.
pub fn from_bytes(package_json: &[u8], onnx: Vec<u8>) -> Result<LoadedPackage, LoadError> {
    let name = serde_json::from_slice::<serde_json::Value>(package_json)
        .ok()
        .and_then(|v| v["name"].as_str().map(str::to_string))
        .unwrap_or_default();
    let package = parse_package(&name, package_json)?;
    verified(&package, &onnx)?;
    Ok(LoadedPackage {
        package,
        onnx,
        from_cache: false,
        offline: false,
    })
}

fn is_unreachable(status: u16) -> bool {
    // Gateways and an overloaded or restarting server: the model may still run from cache.
    matches!(status, 500 | 502 | 503 | 504)
}

/// Loads `model` from `server` (`""`: the page's origin) through `net`, caching in `store`.
pub async fn load(
    server: &str,
    model: &str,
    net: &impl Fetch,
    store: &impl Store,
) -> Result<LoadedPackage, LoadError> {
    if model.is_empty() || model.len() > 200 {
        return Err(LoadError::BadName(model.to_string()));
    }
    let pkg_url = package_url(server, model);
    let offline_reason = match net.get(&pkg_url).await {
        Ok(r) if r.status == 200 => {
            let package = parse_package(model, &r.body)?;
            let url = onnx_url(server, &package);
            if let Some(bytes) = store.load(&url).await
                && verified(&package, &bytes).is_ok()
            {
                store.save(&pkg_url, &r.body, "application/json").await;
                return Ok(LoadedPackage {
                    package,
                    onnx: bytes,
                    from_cache: true,
                    offline: false,
                });
            }
            let onnx = match net.get(&url).await {
                Ok(o) if o.status == 200 => o.body,
                Ok(o) => {
                    return Err(LoadError::Http {
                        url,
                        status: o.status,
                        message: error_message(&o.body),
                    });
                }
                Err(e) => {
                    return Err(LoadError::Offline {
                        model: model.to_string(),
                        reason: e,
                    });
                }
            };
            verified(&package, &onnx)?;
            // The ONNX first: a cached package always has its model beside it.
            store.save(&url, &onnx, "application/octet-stream").await;
            store.save(&pkg_url, &r.body, "application/json").await;
            return Ok(LoadedPackage {
                package,
                onnx,
                from_cache: false,
                offline: false,
            });
        }
        Ok(r) if r.status == 404 => return Err(LoadError::NotFound(model.to_string())),
        Ok(r) if r.status == 401 || r.status == 403 => {
            return Err(LoadError::Forbidden {
                model: model.to_string(),
                status: r.status,
            });
        }
        Ok(r) if is_unreachable(r.status) => format!("HTTP {}", r.status),
        Ok(r) => {
            return Err(LoadError::Http {
                url: pkg_url,
                status: r.status,
                message: error_message(&r.body),
            });
        }
        Err(e) => e,
    };
    let offline = || LoadError::Offline {
        model: model.to_string(),
        reason: offline_reason.clone(),
    };
    let cached = store.load(&pkg_url).await.ok_or_else(offline)?;
    let package = parse_package(model, &cached).map_err(|_| offline())?;
    let onnx = store
        .load(&onnx_url(server, &package))
        .await
        .ok_or_else(offline)?;
    verified(&package, &onnx).map_err(|_| offline())?;
    Ok(LoadedPackage {
        package,
        onnx,
        from_cache: true,
        offline: true,
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use b3o_models::model::ModelSpec;

    use super::*;

    /// A server (URL -> answer, or a network failure when absent) that counts requests.
    #[derive(Default)]
    struct FakeNet {
        routes: HashMap<String, HttpResponse>,
        down: bool,
        requests: RefCell<Vec<String>>,
    }

    impl Fetch for FakeNet {
        async fn get(&self, url: &str) -> Result<HttpResponse, String> {
            self.requests.borrow_mut().push(url.to_string());
            if self.down {
                return Err("Failed to fetch".into());
            }
            Ok(self.routes.get(url).cloned().unwrap_or(HttpResponse {
                status: 404,
                body: br#"{"error":{"code":"not_found","message":"no such thing"}}"#.to_vec(),
            }))
        }
    }

    #[derive(Default)]
    struct FakeStore(RefCell<HashMap<String, Vec<u8>>>);

    impl Store for FakeStore {
        async fn load(&self, url: &str) -> Option<Vec<u8>> {
            self.0.borrow().get(url).cloned()
        }
        async fn save(&self, url: &str, bytes: &[u8], _content_type: &str) {
            self.0.borrow_mut().insert(url.to_string(), bytes.to_vec());
        }
    }

    fn ok(body: Vec<u8>) -> HttpResponse {
        HttpResponse { status: 200, body }
    }

    fn package(version: i64, onnx: &[u8]) -> ModelPackage {
        ModelPackage {
            format: PACKAGE_FORMAT.into(),
            name: "digits".into(),
            version,
            spec: ModelSpec::mnist_cnn(),
            onnx_path: ModelPackage::onnx_path_for("digits", version),
            onnx_sha256: sha256_hex(onnx),
            onnx_bytes: onnx.len() as u64,
        }
    }

    fn serve(net: &mut FakeNet, server: &str, version: i64, onnx: &[u8]) {
        let p = package(version, onnx);
        net.routes.insert(
            package_url(server, "digits"),
            ok(serde_json::to_vec(&p).unwrap()),
        );
        net.routes.insert(onnx_url(server, &p), ok(onnx.to_vec()));
    }

    /// Futures here never wait on anything: one poll completes them.
    fn run<T>(f: impl Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        match f
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => unreachable!(),
        }
    }

    #[test]
    fn urls_are_built_for_same_origin_and_other_servers() {
        assert_eq!(package_url("", "churn"), "/api/deployments/churn/package");
        assert_eq!(
            package_url("https://b3o.example/", "my model/é"),
            "https://b3o.example/api/deployments/my%20model%2F%C3%A9/package"
        );
        let p = package(3, b"x");
        assert_eq!(
            onnx_url("https://b3o.example", &p),
            "https://b3o.example/api/deployments/digits/versions/3/onnx"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn downloads_once_then_serves_the_version_from_cache_and_works_offline() {
        let mut net = FakeNet::default();
        serve(&mut net, "", 1, b"model-v1");
        let store = FakeStore::default();
        let first = run(load("", "digits", &net, &store)).unwrap();
        assert_eq!(
            (first.onnx.as_slice(), first.from_cache, first.offline),
            (&b"model-v1"[..], false, false)
        );
        assert_eq!(net.requests.borrow().len(), 2);

        // Same version again: only the package is asked for.
        let again = run(load("", "digits", &net, &store)).unwrap();
        assert!(again.from_cache && !again.offline);
        assert_eq!(net.requests.borrow().len(), 3);

        // A new version is deployed: downloaded, both versions stay cached.
        serve(&mut net, "", 2, b"model-v2");
        let v2 = run(load("", "digits", &net, &store)).unwrap();
        assert_eq!((v2.package.version, v2.from_cache), (2, false));

        // Server gone: the last package seen is used.
        net.down = true;
        let off = run(load("", "digits", &net, &store)).unwrap();
        assert_eq!(
            (off.package.version, off.onnx.as_slice()),
            (2, &b"model-v2"[..])
        );
        assert!(off.offline && off.from_cache);

        // A 503 counts as unreachable too.
        net.down = false;
        net.routes.insert(
            package_url("", "digits"),
            HttpResponse {
                status: 503,
                body: vec![],
            },
        );
        assert!(run(load("", "digits", &net, &store)).unwrap().offline);
    }

    #[test]
    fn corrupt_downloads_and_cache_entries_are_never_run() {
        let mut net = FakeNet::default();
        serve(&mut net, "", 1, b"model-v1");
        let url = onnx_url("", &package(1, b"model-v1"));
        net.routes
            .insert(url.clone(), ok(b"model-v1 tampered".to_vec()));
        let store = FakeStore::default();
        let err = run(load("", "digits", &net, &store)).unwrap_err();
        assert!(matches!(err, LoadError::Integrity { .. }), "{err}");
        assert!(store.0.borrow().is_empty(), "nothing corrupt is cached");

        // A corrupt cache entry is replaced by a fresh download.
        net.routes.insert(url.clone(), ok(b"model-v1".to_vec()));
        store
            .0
            .borrow_mut()
            .insert(url.clone(), b"garbage".to_vec());
        let fresh = run(load("", "digits", &net, &store)).unwrap();
        assert!(!fresh.from_cache);
        assert_eq!(store.0.borrow()[&url], b"model-v1");

        // ...and offline, a corrupt entry is an error, not a model.
        store.0.borrow_mut().insert(url, b"garbage".to_vec());
        net.down = true;
        let err = run(load("", "digits", &net, &store)).unwrap_err();
        assert!(matches!(err, LoadError::Offline { .. }), "{err}");
    }

    #[test]
    fn packages_at_hand_are_checked_like_downloads() {
        let p = package(1, b"m");
        let json = serde_json::to_vec(&p).unwrap();
        let ok = from_bytes(&json, b"m".to_vec()).unwrap();
        assert_eq!(ok.package, p);
        assert!(matches!(
            from_bytes(&json, b"n".to_vec()),
            Err(LoadError::Integrity { .. })
        ));
        assert!(matches!(
            from_bytes(b"{}", b"m".to_vec()),
            Err(LoadError::BadPackage { .. })
        ));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let net = FakeNet::default();
        let store = FakeStore::default();
        let err = run(load("", "nope", &net, &store)).unwrap_err();
        assert_eq!(err, LoadError::NotFound("nope".into()));
        let mut net = FakeNet::default();
        net.routes.insert(
            package_url("", "secret"),
            HttpResponse {
                status: 403,
                body: vec![],
            },
        );
        assert!(matches!(
            run(load("", "secret", &net, &store)),
            Err(LoadError::Forbidden { status: 403, .. })
        ));
        net.routes
            .insert(package_url("", "junk"), ok(b"<html>".to_vec()));
        let err = run(load("", "junk", &net, &store)).unwrap_err();
        assert!(err.to_string().contains("not a model package"), "{err}");
        let mut p = package(1, b"m");
        p.format = "b3o-model-package/9".into();
        net.routes
            .insert(package_url("", "new"), ok(serde_json::to_vec(&p).unwrap()));
        let err = run(load("", "new", &net, &store)).unwrap_err();
        assert!(err.to_string().contains("reload the page"), "{err}");
        let down = FakeNet {
            down: true,
            ..Default::default()
        };
        let err = run(load("", "digits", &down, &store)).unwrap_err();
        assert!(
            err.to_string().contains("has not been used on this device"),
            "{err}"
        );
        assert!(matches!(
            run(load("", "", &net, &store)),
            Err(LoadError::BadName(_))
        ));
    }
}
