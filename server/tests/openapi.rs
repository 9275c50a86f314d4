//! The API contract as served: `GET /api/openapi.json` and the reference UI at `/api/docs`.
//! (That the document lists every route of `access::ROUTES` is a unit test of
//! `b3o_server::openapi`.)

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use tower::ServiceExt;

use crate::support::TestApp;

/// Status, content type, Content-Security-Policy and body of an anonymous `GET path`.
async fn get(app: &TestApp, path: &str) -> (StatusCode, String, String, Vec<u8>) {
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    let text = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (status, content_type, csp) = (
        response.status(),
        text(header::CONTENT_TYPE),
        text(header::CONTENT_SECURITY_POLICY),
    );
    let body = axum::body::to_bytes(response.into_body(), 8 << 20)
        .await
        .unwrap();
    (status, content_type, csp, body.to_vec())
}

#[tokio::test]
async fn the_openapi_document_is_served_to_anyone() {
    let app = TestApp::new().await;
    let (status, content_type, _, body) = get(&app, "/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "B3O Edge API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    // What `b3o openapi` prints.
    assert_eq!(
        doc,
        serde_json::from_str::<serde_json::Value>(b3o_server::openapi::document_json()).unwrap()
    );
    let infer = &doc["paths"]["/v2/models/{name}/infer"]["post"];
    assert_eq!(
        infer["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/V2InferResponse"
    );
}

/// The page, its script and its styles come from this server, under a CSP that forbids other
/// origins and inline scripts; the page has none.
#[tokio::test]
async fn api_docs_load_only_same_origin_assets() {
    let app = TestApp::new().await;
    let (status, content_type, csp, body) = get(&app, "/api/docs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("'unsafe-eval'"), "{csp}");
    let page = String::from_utf8(body).unwrap();
    assert_eq!(
        page.matches("<script").count(),
        page.matches("<script src=\"/").count(),
        "every script is a same-origin file: {page}"
    );
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in page.split(attr).skip(1) {
            assets.push(part[..part.find('"').unwrap()].to_string());
        }
    }
    assert!(assets.len() >= 3, "{assets:?}");
    for asset in &assets {
        assert!(
            asset.starts_with('/') && !asset.starts_with("//"),
            "{asset} is not on this server"
        );
        let (status, content_type, _, body) = get(&app, asset).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert!(!body.is_empty(), "{asset}");
        let expected = match asset.rsplit('.').next() {
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            _ => "application/json",
        };
        assert!(
            content_type.starts_with(expected),
            "{asset}: {content_type}"
        );
    }
    // The start-up script reads this server's document and calls no validator.
    let (_, _, _, init) = get(&app, "/api/docs/init.js").await;
    let init = String::from_utf8(init).unwrap();
    assert!(init.contains("\"/api/openapi.json\"") && init.contains("validatorUrl: null"));
    assert!(
        !init.contains("http://") && !init.contains("https://"),
        "{init}"
    );
}
