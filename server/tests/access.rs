//! The authorisation matrix (`b3o_server::access::ROUTES`) against the real router and the
//! sources: anonymous calls to protected routes are refused, and no route escapes the table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use axum::http::{Method, StatusCode};
use serde_json::json;

use b3o_server::access::{Access, ROUTES};

use crate::accounts::TestApp;

/// `/api/groups/{id}/rounds/{number}` -> `/api/groups/1/rounds/1`.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                out.push('1');
            }
            _ if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn anonymous_callers_get_401_on_every_protected_route() {
    let app = TestApp::new().await;
    let mut failures = Vec::new();
    for rule in ROUTES.iter().filter(|r| r.access != Access::Public) {
        let method = Method::from_bytes(rule.method.as_bytes()).unwrap();
        // A JSON body, so a handler that reads the body before checking credentials (wrong
        // extractor order) shows up as a 400/422 instead of a 401.
        let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
        let reply = app.call(method, &concrete(rule.path), body, &[]).await;
        if reply.status != StatusCode::UNAUTHORIZED {
            failures.push(format!(
                "{} {} ({:?}): {} {}",
                rule.method, rule.path, rule.access, reply.status, reply.json
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "routes that do not refuse anonymous callers:\n{}",
        failures.join("\n")
    );
}

/// Every `(METHOD, path)` registered with `.route("path", get(..).post(..))` in the modules that
/// `lib.rs` declares.
fn routes_in_sources() -> BTreeSet<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut files = vec![src.join("lib.rs")];
    // Only modules compiled into the crate: a module still being written, not yet declared
    // in lib.rs, serves nothing.
    for line in lib.lines() {
        let line = line.trim();
        let Some(name) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
            .and_then(|rest| rest.strip_suffix(';'))
        else {
            continue;
        };
        let file = src.join(format!("{name}.rs"));
        if file.exists() {
            files.push(file);
        }
        collect_rs(&src.join(name), &mut files);
    }
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Comments (docs showing `.route(…)`) route nothing.
        let code: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .map(|line| format!("{line}\n"))
            .collect();
        routes.extend(routes_in(&code));
    }
    routes
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `.route(` calls of one source file: the path literal, then the method routers named
/// up to the call's closing parenthesis.
fn routes_in(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let args = rest.trim_start();
        let Some(literal) = args.strip_prefix('"') else {
            continue;
        };
        let Some(end) = literal.find('"') else { break };
        let path = &literal[..end];
        // The arguments up to the matching `)` of `.route(`.
        let mut depth = 1;
        let mut close = literal.len();
        for (i, c) in literal.char_indices().filter(|(i, _)| *i > end) {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let handlers = &literal[end + 1..close];
        for method in ["get", "post", "put", "patch", "delete"] {
            let needle = format!("{method}(");
            let mut from = 0;
            while let Some(i) = handlers[from..].find(&needle).map(|i| from + i) {
                let before = handlers[..i].chars().next_back();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    found.push((method.to_ascii_uppercase(), path.to_string()));
                }
                from = i + needle.len();
            }
        }
    }
    found
}

#[test]
fn every_routed_path_is_in_the_access_table_and_back() {
    let in_code = routes_in_sources();
    let in_table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let missing: Vec<_> = in_code.difference(&in_table).collect();
    let stale: Vec<_> = in_table.difference(&in_code).collect();
    assert!(
        missing.is_empty(),
        "routes missing from server/src/access.rs ROUTES (add them with their rule): {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "ROUTES lists routes no module registers (remove or fix them): {stale:?}"
    );
    assert!(in_code.contains(&("GET".to_string(), "/api/me".to_string())));
}

#[test]
fn the_route_scanner_reads_multi_line_and_chained_routes() {
    let text = r#"
        Router::new()
            .route("/a", get(list).post(create))
            .route(
                "/a/{id}",
                delete(remove),
            )
            .route("/b", get(get_thing))
            .merge(other())
    "#;
    let found = routes_in(text);
    assert_eq!(
        found,
        vec![
            ("GET".into(), "/a".into()),
            ("POST".into(), "/a".into()),
            ("DELETE".into(), "/a/{id}".into()),
            ("GET".into(), "/b".into()),
        ]
    );
    assert_eq!(concrete("/x/{id}/y/{n}"), "/x/1/y/1");
}
