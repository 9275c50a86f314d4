//! The built web app at `/`: correct MIME types (`application/wasm` included), compression,
//! long-lived caching for content-hashed assets and revalidation for everything else, and
//! `index.html` as the fallback so client-side routes survive a reload.
//!
//! Besides the app shell it serves, at fixed addresses:
//! - `/sw.js`, the service worker (scope `/`, so no `Service-Worker-Allowed` is needed), and
//!   `/manifest.webmanifest` (`application/manifest+json`): both `no-cache`, so a new build is
//!   picked up at the next visit;
//! - `/engine/*`, the in-browser engine, and `/embed.js`, the partner-site widget: public static
//!   files with `Access-Control-Allow-Origin: *` and `Cross-Origin-Resource-Policy:
//!   cross-origin`, because the widget imports the engine from another origin's page. Who may
//!   *use* a model is decided by the model's package endpoint, not by these files.
//!
//! Files under `/assets`, `/engine` and `/icons`, and the fixed files above, answer 404 when
//! missing instead of the app shell: a browser asking for a script must not get HTML.

use std::path::Path;

use axum::Router;
use axum::extract::Request;
use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::services::{ServeDir, ServeFile};

use crate::state::AppState;

/// Serves `dir` (the output of `scripts/build-web.sh`). Hashed assets live in `dir/assets/`,
/// the engine in `dir/engine/`.
pub fn router(dir: &Path) -> Router<AppState> {
    let index = dir.join("index.html");
    let files = |sub: &str| {
        ServeDir::new(dir.join(sub))
            .precompressed_gzip()
            .precompressed_br()
    };
    let file = |name: &str| {
        ServeFile::new(dir.join(name))
            .precompressed_gzip()
            .precompressed_br()
    };
    let serve = ServeDir::new(dir)
        .precompressed_gzip()
        .precompressed_br()
        .fallback(
            ServeFile::new(index)
                .precompressed_gzip()
                .precompressed_br(),
        );
    Router::new()
        .nest_service("/assets", files("assets"))
        .nest_service("/engine", files("engine"))
        .nest_service("/icons", files("icons"))
        .route_service("/sw.js", file("sw.js"))
        .route_service("/embed.js", file("embed.js"))
        .route_service("/manifest.webmanifest", file("manifest.webmanifest"))
        .fallback_service(serve)
        .layer(middleware::from_fn(static_headers))
}

async fn static_headers(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let mut response = next.run(request).await;
    let immutable = is_hashed_asset(&path) && response.status().is_success();
    let headers = response.headers_mut();
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    if path == "/manifest.webmanifest" {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/manifest+json"),
        );
    }
    if is_cross_origin_asset(&path) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        headers.insert(
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("cross-origin"),
        );
    }
    response
}

/// The engine and the embed widget: loaded by partner sites' pages.
pub fn is_cross_origin_asset(path: &str) -> bool {
    path == "/embed.js" || path.starts_with("/engine/")
}

/// `/assets/<name>-<16 hex digits>.<ext>` (or the same under `/engine/`): the build names
/// these files after their content, so such a URL never changes meaning and may be cached
/// forever.
pub fn is_hashed_asset(path: &str) -> bool {
    let Some(file) = path
        .strip_prefix("/assets/")
        .or_else(|| path.strip_prefix("/engine/"))
    else {
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
    use super::{is_cross_origin_asset, is_hashed_asset};

    #[test]
    fn only_the_engine_and_the_widget_are_cross_origin() {
        assert!(is_cross_origin_asset("/embed.js"));
        assert!(is_cross_origin_asset("/engine/infer-worker.js"));
        assert!(!is_cross_origin_asset("/sw.js"));
        assert!(!is_cross_origin_asset(
            "/assets/b3o-app-0123456789abcdef.js"
        ));
        assert!(!is_cross_origin_asset("/api/deployments"));
    }

    #[test]
    fn only_content_hashed_assets_are_immutable() {
        assert!(is_hashed_asset("/assets/b3o-app-0123456789abcdef.js"));
        assert!(is_hashed_asset("/assets/b3o-app_bg-0123456789abcdef.wasm"));
        assert!(!is_hashed_asset("/index.html"));
        assert!(!is_hashed_asset("/sw.js"));
        assert!(!is_hashed_asset("/assets/b3o-app.js"));
        assert!(!is_hashed_asset("/assets/b3o-app-0123456789abcdeg.js"));
        assert!(!is_hashed_asset("/assets/x/b3o-app-0123456789abcdef.js"));
        assert!(is_hashed_asset(
            "/engine/b3o_engine_bg-0123456789abcdef.wasm"
        ));
        assert!(!is_hashed_asset("/engine/infer-worker.js"));
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
        let state = AppState::new(
            db,
            std::sync::Arc::new(crate::blobs::BlobStore::local(dir.path()).unwrap()),
            Default::default(),
            Default::default(),
            Default::default(),
        );
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
    async fn the_service_worker_and_manifest_are_revalidated_with_their_types() {
        let (app, _dir) = app_with(&[
            ("index.html", b"<html>shell</html>"),
            ("sw.js", b"self.addEventListener('fetch', () => {});"),
            ("manifest.webmanifest", b"{\"name\": \"B3O Edge\"}"),
        ])
        .await;
        let sw = get(&app, "/sw.js").await;
        assert_eq!(sw.status(), StatusCode::OK);
        assert_eq!(sw.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(
            sw.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .contains("javascript")
        );
        let manifest = get(&app, "/manifest.webmanifest").await;
        assert_eq!(manifest.status(), StatusCode::OK);
        assert_eq!(
            manifest.headers()[header::CONTENT_TYPE],
            "application/manifest+json"
        );
        assert_eq!(manifest.headers()[header::CACHE_CONTROL], "no-cache");
    }

    #[tokio::test]
    async fn engine_files_and_the_widget_may_be_loaded_by_other_origins() {
        let (app, _dir) = app_with(&[
            ("index.html", b"<html>shell</html>"),
            (
                "embed.js",
                b"customElements.define('b3o-predict', class {});",
            ),
            ("engine/infer-worker.js", b"import './b3o_engine.js';"),
            ("engine/b3o_engine_bg.wasm", b"\0asm\x01\0\0\0"),
        ])
        .await;
        for path in [
            "/embed.js",
            "/engine/infer-worker.js",
            "/engine/b3o_engine_bg.wasm",
        ] {
            let response = get(&app, path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(
                response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
                "*",
                "{path}"
            );
            assert_eq!(
                response.headers()["cross-origin-resource-policy"],
                "cross-origin",
                "{path}"
            );
        }
        let wasm = get(&app, "/engine/b3o_engine_bg.wasm").await;
        assert_eq!(wasm.headers()[header::CONTENT_TYPE], "application/wasm");
        // The app itself stays same-origin.
        let shell = get(&app, "/").await;
        assert!(
            !shell
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
    }

    #[tokio::test]
    async fn a_missing_script_is_404_not_the_app_shell() {
        let (app, _dir) = app_with(&[("index.html", b"<html>shell</html>")]).await;
        for path in [
            "/engine/infer-worker.js",
            "/assets/b3o-app-0123456789abcdef.js",
            "/sw.js",
            "/embed.js",
            "/icons/icon.svg",
        ] {
            let response = get(&app, path).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
        // Client-side routes still get the shell.
        assert_eq!(get(&app, "/predict/churn").await.status(), StatusCode::OK);
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
