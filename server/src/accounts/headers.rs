//! Security headers on every response: a Content-Security-Policy fit for the wasm app,
//! `X-Content-Type-Options`, `Referrer-Policy`, framing rules and, behind TLS, HSTS.
//!
//! The app's `index.html` boots the wasm module with one inline `<script type="module">`. Rather
//! than allowing inline scripts, the policy lists the SHA-256 of each inline script found in
//! `index.html` when the router is built; rebuilding the web app therefore needs a server
//! restart (which deployments do anyway). A handler that sets one of these headers itself keeps
//! its own value.

use std::path::Path;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::Response;
use base64::Engine;
use sha2::{Digest, Sha256};
use tower::util::MapResponseLayer;

use super::Settings;

/// The layer `crate::app` puts around everything. `static_dir` is read once for inline script
/// hashes.
pub fn security_headers(
    settings: &Settings,
    static_dir: &Path,
) -> MapResponseLayer<impl Fn(Response) -> Response + Clone + Send + Sync + 'static> {
    let index = std::fs::read_to_string(static_dir.join("index.html")).unwrap_or_default();
    let headers = Arc::new(header_set(settings, &inline_script_hashes(&index)));
    MapResponseLayer::new(move |mut response: Response| {
        let out = response.headers_mut();
        for (name, value) in headers.iter() {
            if !out.contains_key(name) {
                out.insert(name.clone(), value.clone());
            }
        }
        response
    })
}

fn header_set(settings: &Settings, script_hashes: &[String]) -> HeaderMap {
    let mut frame_ancestors = vec!["'self'".to_string()];
    frame_ancestors.extend(settings.frame_ancestors.iter().cloned());
    let mut script_src = vec!["'self'".to_string(), "'wasm-unsafe-eval'".to_string()];
    script_src.extend(script_hashes.iter().cloned());
    let csp = [
        "default-src 'self'".to_string(),
        format!("script-src {}", script_src.join(" ")),
        // Leptos and the charts set `style` attributes.
        "style-src 'self' 'unsafe-inline'".to_string(),
        "img-src 'self' data: blob:".to_string(),
        "font-src 'self'".to_string(),
        "connect-src 'self'".to_string(),
        "worker-src 'self' blob:".to_string(),
        "object-src 'none'".to_string(),
        "base-uri 'self'".to_string(),
        "form-action 'self'".to_string(),
        format!("frame-ancestors {}", frame_ancestors.join(" ")),
    ]
    .join("; ");

    let mut headers = HeaderMap::new();
    // Origins are validated by `is_valid_frame_ancestor` and hashes are base64: always valid.
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if settings.frame_ancestors.is_empty() {
        // For browsers without CSP level 2; it cannot express a list of origins.
        headers.insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
    }
    if settings.behind_tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    headers
}

/// `'sha256-…'` sources for the inline `<script>` elements (those without `src`) of `html`.
fn inline_script_hashes(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut hashes = Vec::new();
    let mut at = 0;
    while let Some(start) = lower[at..].find("<script").map(|i| at + i) {
        let Some(tag_end) = lower[start..].find('>').map(|i| start + i) else {
            break;
        };
        let Some(close) = lower[tag_end..].find("</script").map(|i| tag_end + i) else {
            break;
        };
        if !lower[start..tag_end].contains("src=") {
            // Byte offsets are equal in `html` and `lower`: ASCII lowercasing keeps lengths.
            let body = &html[tag_end + 1..close];
            let digest = Sha256::digest(body.as_bytes());
            hashes.push(format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        at = close;
    }
    hashes
}

/// `scheme://host[:port]`, where host may start with `*.`; nothing that could end the directive.
pub(crate) fn is_valid_frame_ancestor(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.strip_prefix("*.").unwrap_or(rest);
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        && !host.starts_with(['.', ':'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_are_hashed_and_external_ones_skipped() {
        let html = r#"<html><head><script type="module" src="/a.js"></script></head>
<body><script type="module">
    import init from "/assets/x.js";
  </script><SCRIPT>alert(1)</SCRIPT></body></html>"#;
        let hashes = inline_script_hashes(html);
        assert_eq!(hashes.len(), 2, "{hashes:?}");
        let expected = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(
            b"\n    import init from \"/assets/x.js\";\n  ",
        ));
        assert_eq!(hashes[0], format!("'sha256-{expected}'"));
        assert!(inline_script_hashes("<script>unterminated").is_empty());
        assert!(inline_script_hashes("").is_empty());
    }

    #[test]
    fn frame_ancestors_cannot_inject_directives() {
        assert!(is_valid_frame_ancestor("https://intranet.example.org"));
        assert!(is_valid_frame_ancestor("https://*.example.org:8443"));
        assert!(is_valid_frame_ancestor("http://localhost:3000"));
        for bad in [
            "example.org",
            "https://",
            "https://a.org; script-src *",
            "https://a.org/path",
            "'unsafe-inline'",
            "*",
            "https://a.org b.org",
        ] {
            assert!(!is_valid_frame_ancestor(bad), "{bad}");
        }
    }

    #[test]
    fn the_policy_allows_wasm_and_the_configured_embedders() {
        let settings = Settings {
            frame_ancestors: vec!["https://intranet.example.org".into()],
            behind_tls: true,
            ..Settings::default()
        };
        let headers = header_set(&settings, &["'sha256-abc'".into()]);
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval' 'sha256-abc'"));
        assert!(csp.contains("frame-ancestors 'self' https://intranet.example.org"));
        assert!(!headers.contains_key(header::X_FRAME_OPTIONS));
        assert!(headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
    }
}
