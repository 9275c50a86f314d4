//! The built web app at `/`: correct MIME types (`application/wasm` included), compression,
//! long-lived caching for content-hashed assets and revalidation for everything else, and
//! `index.html` as the fallback so client-side routes survive a reload.

use std::path::Path;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::CACHE_CONTROL;
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::services::{ServeDir, ServeFile};

use crate::state::AppState;

/// Serves `dir` (the output of `scripts/build-web.sh`). Hashed assets live in `dir/assets/`.
pub fn router(dir: &Path) -> Router<AppState> {
    let index = dir.join("index.html");
    let serve = ServeDir::new(dir)
        .precompressed_gzip()
        .precompressed_br()
        .fallback(ServeFile::new(index));
    Router::new()
        .fallback_service(serve)
        .layer(middleware::from_fn(cache_headers))
}

async fn cache_headers(request: Request, next: Next) -> Response {
    let immutable = is_hashed_asset(request.uri().path());
    let mut response = next.run(request).await;
    let value = if immutable && response.status().is_success() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(value));
    response
}

/// `/assets/<name>-<16 hex digits>.<ext>`: the build names every asset after its content, so
/// such a URL never changes meaning and may be cached forever.
pub fn is_hashed_asset(path: &str) -> bool {
    let Some(file) = path.strip_prefix("/assets/") else {
        return false;
    };
    if file.contains('/') {
        return false;
    }
    let stem = file.split('.').next().unwrap_or_default();
    stem.rsplit_once('-').is_some_and(|(name, hash)| {
        !name.is_empty() && hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::is_hashed_asset;

    #[test]
    fn only_content_hashed_assets_are_immutable() {
        assert!(is_hashed_asset("/assets/b3o-app-0123456789abcdef.js"));
        assert!(is_hashed_asset("/assets/b3o-app_bg-0123456789abcdef.wasm"));
        assert!(!is_hashed_asset("/index.html"));
        assert!(!is_hashed_asset("/sw.js"));
        assert!(!is_hashed_asset("/assets/b3o-app.js"));
        assert!(!is_hashed_asset("/assets/b3o-app-0123456789abcdeg.js"));
        assert!(!is_hashed_asset("/assets/x/b3o-app-0123456789abcdef.js"));
    }
}

#[cfg(test)]
mod serving_tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt;

    use crate::state::AppState;

    async fn app_with(files: &[(&str, &[u8])]) -> (axum::Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let db = crate::db::connect("sqlite::memory:").await.unwrap();
        let state = AppState {
            db,
            data_dir: dir.path().to_path_buf(),
            accounts: Default::default(),
            federation: Default::default(),
        };
        (crate::app(state, dir.path()), dir)
    }

    async fn get(app: &axum::Router, path: &str) -> axum::response::Response {
        app.clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn wasm_is_served_as_application_wasm_and_cached_forever() {
        let (app, _dir) = app_with(&[
            ("index.html", b"<html>shell</html>"),
            (
                "assets/b3o-app_bg-0123456789abcdef.wasm",
                b"\0asm\x01\0\0\0",
            ),
        ])
        .await;
        let response = get(&app, "/assets/b3o-app_bg-0123456789abcdef.wasm").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/wasm");
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
    }

    #[tokio::test]
    async fn app_routes_fall_back_to_the_shell_which_is_revalidated() {
        let (app, _dir) = app_with(&[("index.html", b"<html>shell</html>")]).await;
        for path in ["/", "/groups/42"] {
            let response = get(&app, path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(
                response.headers()[header::CACHE_CONTROL],
                "no-cache",
                "{path}"
            );
            assert!(
                response.headers()[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html")
            );
        }
    }

    #[tokio::test]
    async fn healthz_reports_the_database() {
        let (app, _dir) = app_with(&[]).await;
        let response = get(&app, "/healthz").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["status"], "ok");
        assert_eq!(json["database"], "ok");
    }
}
