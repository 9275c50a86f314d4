//! Accounts over HTTP: registration, login, sessions, CSRF, API tokens, rate limits, the first
//! administrator and security headers, through `b3o_server::app` with `oneshot`.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;

use b3o_server::accounts::{self, Bootstrap, LoginLimits, Settings};
use b3o_server::db;
use b3o_server::state::AppState;

use crate::support::{Browser, PASSWORD, Reply, TestApp, request, send_to};

fn error_code(reply: &Reply) -> &str {
    reply.json["error"]["code"].as_str().unwrap_or_default()
}

fn error_message(reply: &Reply) -> &str {
    reply.json["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn registration_signs_in_and_the_profile_can_be_edited() {
    let app = TestApp::new().await;
    let ada = app.register("  Ada@Example.org ").await;
    assert!(ada.cookie.starts_with("b3o_session="));

    let me = app
        .as_browser(&ada, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["user"]["email"], "ada@example.org");
    assert_eq!(me.json["user"]["role"], "member");
    assert_eq!(me.json["user"]["organisation"], "Analytical Engines Ltd");
    assert_eq!(me.json["csrf_token"], ada.csrf.as_str());
    assert!(me.json["user"].get("password_hash").is_none());

    let edited = app
        .as_browser(
            &ada,
            Method::PATCH,
            "/api/me",
            Some(json!({ "organisation": "  Babbage & Co ", "display_name": "Ada L." })),
            true,
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.json);
    assert_eq!(edited.json["organisation"], "Babbage & Co");
    assert_eq!(edited.json["display_name"], "Ada L.");

    let empty_name = app
        .as_browser(
            &ada,
            Method::PATCH,
            "/api/me",
            Some(json!({ "display_name": "  " })),
            true,
        )
        .await;
    assert_eq!(empty_name.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn duplicate_email_is_a_conflict_whatever_the_case() {
    let app = TestApp::new().await;
    app.register("ada@example.org").await;
    let again = app
        .call(
            Method::POST,
            "/api/auth/register",
            Some(json!({
                "email": "ADA@example.ORG",
                "display_name": "Impostor",
                "organisation": "Elsewhere",
                "password": "another fine passphrase",
            })),
            &[],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.json);
    assert_eq!(error_code(&again), "conflict");
}

#[tokio::test]
async fn the_password_policy_is_enforced() {
    let app = TestApp::new().await;
    for (password, expected) in [
        ("short", "at least 8 characters"),
        ("password123", "most common passwords"),
        ("Qwertyuiop", "most common passwords"),
        ("grace@example.org", "email address"),
    ] {
        let reply = app
            .call(
                Method::POST,
                "/api/auth/register",
                Some(json!({
                    "email": "grace@example.org",
                    "display_name": "Grace",
                    "organisation": "Navy",
                    "password": password,
                })),
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{password}");
        assert!(
            error_message(&reply).contains(expected),
            "{password}: {}",
            reply.json
        );
    }
    let bad_email = app
        .call(
            Method::POST,
            "/api/auth/register",
            Some(json!({
                "email": "not-an-address",
                "display_name": "Grace",
                "organisation": "Navy",
                "password": PASSWORD,
            })),
            &[],
        )
        .await;
    assert_eq!(bad_email.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn malformed_bodies_get_json_errors() {
    let app = TestApp::new().await;
    let missing_field = app
        .call(
            Method::POST,
            "/api/auth/login",
            Some(json!({ "email": "a@b.c" })),
            &[],
        )
        .await;
    assert_eq!(missing_field.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&missing_field), "bad_request");

    let not_json = app
        .send(
            Request::post("/api/auth/login")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("email=a&password=b"))
                .unwrap(),
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&not_json), "bad_request");
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let app = TestApp::new().await;
    app.register("ada@example.org").await;
    let wrong = app.login("ada@example.org", "not the password").await;
    let unknown = app.login("nobody@example.org", PASSWORD).await;
    for reply in [&wrong, &unknown] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(reply), "unauthorized");
        assert_eq!(error_message(reply), "wrong email or password");
        assert!(!reply.headers.contains_key(header::SET_COOKIE));
    }
    // Email case does not matter at login either.
    app.login_ok("ADA@example.org", PASSWORD).await;
}

#[tokio::test]
async fn five_failures_lock_the_account_with_retry_after() {
    let app = TestApp::new().await;
    app.register("ada@example.org").await;
    app.register("grace@example.org").await;
    for _ in 0..5 {
        let reply = app.login("ada@example.org", "not the password").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right password is refused until the window passes.
    let locked = app.login("ada@example.org", PASSWORD).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.json
    );
    assert_eq!(error_code(&locked), "too_many_requests");
    let retry_after: u64 = locked.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15 * 60 + 1).contains(&retry_after), "{retry_after}");
    // Other accounts are unaffected.
    app.login_ok("grace@example.org", PASSWORD).await;
}

#[tokio::test]
async fn one_address_failing_on_many_accounts_is_refused() {
    let settings = Settings {
        login_limits: LoginLimits {
            per_ip: 3,
            ..LoginLimits::default()
        },
        ..Settings::default()
    };
    let app = TestApp::with_settings(settings).await;
    app.register("ada@example.org").await;
    let attacker = app
        .router
        .clone()
        .layer(MockConnectInfo(SocketAddr::from(([203, 0, 113, 9], 4444))));
    let other = app
        .router
        .clone()
        .layer(MockConnectInfo(SocketAddr::from(([198, 51, 100, 1], 4444))));
    let login = |email: &str| {
        request(
            Method::POST,
            "/api/auth/login",
            Some(json!({ "email": email, "password": PASSWORD })),
            &[],
        )
    };
    for i in 0..3 {
        let reply = send_to(&attacker, login(&format!("user{i}@example.org"))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let refused = send_to(&attacker, login("ada@example.org")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers.contains_key(header::RETRY_AFTER));
    let fine = send_to(&other, login("ada@example.org")).await;
    assert_eq!(fine.status, StatusCode::OK);
}

#[tokio::test]
async fn a_cookie_is_useless_after_logout() {
    let app = TestApp::new().await;
    app.register("ada@example.org").await;
    let ada = app.login_ok("ada@example.org", PASSWORD).await;
    let out = app
        .as_browser(&ada, Method::POST, "/api/auth/logout", None, true)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let cleared = out.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    let me = app
        .as_browser(&ada, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&me), "unauthorized");
    // Garbage cookies are just as unauthorised, and do not error.
    let forged = app
        .call(
            Method::GET,
            "/api/me",
            None,
            &[("cookie", "b3o_session=../../etc/passwd")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_are_listed_and_revocable() {
    let app = TestApp::new().await;
    let laptop = app.register("ada@example.org").await;
    let phone = app.login_ok("ada@example.org", PASSWORD).await;
    let list = app
        .as_browser(&laptop, Method::GET, "/api/auth/sessions", None, false)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let sessions = list.json.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let other = sessions.iter().find(|s| s["current"] == false).unwrap();
    let other_id = other["id"].as_i64().unwrap();

    // Someone else cannot revoke Ada's sessions: 404, as if they did not exist.
    let grace = app.register("grace@example.org").await;
    let path = format!("/api/auth/sessions/{other_id}");
    let foreign = app
        .as_browser(&grace, Method::DELETE, &path, None, true)
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);

    let revoked = app
        .as_browser(&laptop, Method::DELETE, &path, None, true)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let me = app
        .as_browser(&phone, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    let still = app
        .as_browser(&laptop, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(still.status, StatusCode::OK);

    let bad_id = app
        .as_browser(
            &laptop,
            Method::DELETE,
            "/api/auth/sessions/abc",
            None,
            true,
        )
        .await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&bad_id), "bad_request");
}

#[tokio::test]
async fn changing_the_password_signs_out_other_sessions() {
    let app = TestApp::new().await;
    let laptop = app.register("ada@example.org").await;
    let phone = app.login_ok("ada@example.org", PASSWORD).await;
    let new_password = "a brand new passphrase";

    let wrong = app
        .as_browser(
            &laptop,
            Method::POST,
            "/api/auth/password",
            Some(json!({ "current_password": "nope nope", "new_password": new_password })),
            true,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let weak = app
        .as_browser(
            &laptop,
            Method::POST,
            "/api/auth/password",
            Some(json!({ "current_password": PASSWORD, "new_password": "password1" })),
            true,
        )
        .await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST);

    let changed = app
        .as_browser(
            &laptop,
            Method::POST,
            "/api/auth/password",
            Some(json!({ "current_password": PASSWORD, "new_password": new_password })),
            true,
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.json);
    assert_eq!(changed.json["revoked_sessions"], 1);

    let phone_me = app
        .as_browser(&phone, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(phone_me.status, StatusCode::UNAUTHORIZED);
    let laptop_me = app
        .as_browser(&laptop, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(laptop_me.status, StatusCode::OK);
    assert_eq!(
        app.login("ada@example.org", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    app.login_ok("ada@example.org", new_password).await;
}

#[tokio::test]
async fn cookie_requests_that_change_state_need_the_csrf_token() {
    let app = TestApp::new().await;
    let ada = app.register("ada@example.org").await;
    let body = Some(json!({ "display_name": "Mallory was here" }));

    let without = app
        .as_browser(&ada, Method::PATCH, "/api/me", body.clone(), false)
        .await;
    assert_eq!(without.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&without), "forbidden");

    let wrong = app
        .call(
            Method::PATCH,
            "/api/me",
            body.clone(),
            &[("cookie", &ada.cookie), ("x-csrf-token", "0000")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);

    let cross_site = app
        .call(
            Method::PATCH,
            "/api/me",
            body.clone(),
            &[
                ("cookie", &ada.cookie),
                ("x-csrf-token", &ada.csrf),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);

    let logout = app
        .as_browser(&ada, Method::POST, "/api/auth/logout", None, false)
        .await;
    assert_eq!(logout.status, StatusCode::FORBIDDEN);

    // A cross-site login (login CSRF) is refused too.
    let login = app
        .call(
            Method::POST,
            "/api/auth/login",
            Some(json!({ "email": "ada@example.org", "password": PASSWORD })),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);

    let me = app
        .as_browser(&ada, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(me.json["user"]["display_name"], "Ada", "nothing changed");
    let with = app
        .as_browser(&ada, Method::PATCH, "/api/me", body, true)
        .await;
    assert_eq!(with.status, StatusCode::OK);
}

#[tokio::test]
async fn api_tokens_work_until_revoked() {
    let app = TestApp::new().await;
    let ada = app.register("ada@example.org").await;
    let created = app
        .as_browser(
            &ada,
            Method::POST,
            "/api/auth/tokens",
            Some(json!({ "name": "lab workstation" })),
            true,
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let token = created.json["token"].as_str().unwrap().to_string();
    let id = created.json["id"].as_i64().unwrap();
    assert!(token.starts_with("b3o_") && token.len() == 68, "{token}");
    assert!(token.starts_with(created.json["prefix"].as_str().unwrap()));

    // Programs need no CSRF token, and get none.
    let me = app.as_program(&token, Method::GET, "/api/me", None).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["user"]["email"], "ada@example.org");
    assert!(me.json.get("csrf_token").is_none());
    let patched = app
        .as_program(
            &token,
            Method::PATCH,
            "/api/me",
            Some(json!({ "organisation": "Lab" })),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);

    // A token cannot mint more tokens or manage the account.
    let mint = app
        .as_program(
            &token,
            Method::POST,
            "/api/auth/tokens",
            Some(json!({ "name": "escalation" })),
        )
        .await;
    assert_eq!(mint.status, StatusCode::FORBIDDEN);

    let list = app
        .as_browser(&ada, Method::GET, "/api/auth/tokens", None, false)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json.as_array().unwrap().len(), 1);
    assert!(list.json[0].get("token").is_none(), "shown once only");
    assert!(list.json[0]["last_used_at"].is_string());

    let path = format!("/api/auth/tokens/{id}");
    let revoked = app
        .as_browser(&ada, Method::DELETE, &path, None, true)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = app.as_program(&token, Method::GET, "/api/me", None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    let again = app
        .as_browser(&ada, Method::DELETE, &path, None, true)
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    for bad in ["Bearer nope", "Basic YWRhOnB3", "Bearer", ""] {
        let reply = app
            .call(Method::GET, "/api/me", None, &[("authorization", bad)])
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{bad:?}");
    }
}

#[tokio::test]
async fn the_first_administrator_comes_from_the_environment() {
    let app = TestApp::new().await;
    let made = accounts::bootstrap_admin(
        &app.db,
        &app.accounts,
        Some("Root@Example.org"),
        Some("operator chosen passphrase"),
    )
    .await
    .unwrap();
    assert_eq!(
        made,
        Bootstrap::Created {
            email: "root@example.org".into()
        }
    );
    let admin = app
        .login_ok("root@example.org", "operator chosen passphrase")
        .await;
    let me = app
        .as_browser(&admin, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(me.json["user"]["role"], "admin");
    assert_eq!(me.json["user"]["must_change_password"], false);
    // Later starts do nothing, whatever the environment says.
    let again = accounts::bootstrap_admin(&app.db, &app.accounts, Some("x@example.org"), None)
        .await
        .unwrap();
    assert_eq!(again, Bootstrap::AlreadyInitialised);

    // A weak password from the environment stops the start-up instead.
    let other = TestApp::new().await;
    let weak = accounts::bootstrap_admin(&other.db, &other.accounts, None, Some("password"))
        .await
        .unwrap_err();
    assert!(weak.to_string().contains("B3O_ADMIN_PASSWORD"), "{weak}");
}

#[tokio::test]
async fn without_a_password_the_first_administrator_gets_a_one_time_one() {
    let app = TestApp::new().await;
    let made = accounts::bootstrap_admin(&app.db, &app.accounts, None, None)
        .await
        .unwrap();
    let Bootstrap::Generated { email, password } = made else {
        panic!("expected a generated password, got {made:?}");
    };
    assert_eq!(email, accounts::DEFAULT_ADMIN_EMAIL);
    let admin = app.login_ok(&email, &password).await;
    let me = app
        .as_browser(&admin, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(me.json["user"]["role"], "admin");
    assert_eq!(me.json["user"]["must_change_password"], true);
    // Never shown again: the next start finds the account and generates nothing.
    let again = accounts::bootstrap_admin(&app.db, &app.accounts, None, None)
        .await
        .unwrap();
    assert_eq!(again, Bootstrap::AlreadyInitialised);
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$") && !stored.contains(&password));
}

#[tokio::test]
async fn admin_routes_are_for_administrators() {
    let app = TestApp::new().await;
    accounts::bootstrap_admin(
        &app.db,
        &app.accounts,
        Some("root@example.org"),
        Some(PASSWORD),
    )
    .await
    .unwrap();
    let admin = app.login_ok("root@example.org", PASSWORD).await;
    let member = app.register("ada@example.org").await;

    let refused = app
        .as_browser(&member, Method::GET, "/api/admin/users", None, false)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let users = app
        .as_browser(&admin, Method::GET, "/api/admin/users", None, false)
        .await;
    assert_eq!(users.status, StatusCode::OK);
    let users = users.json.as_array().unwrap().clone();
    assert_eq!(users.len(), 2);
    let admin_id = users[0]["id"].as_i64().unwrap();
    let ada_id = users[1]["id"].as_i64().unwrap();

    let last = app
        .as_browser(
            &admin,
            Method::PUT,
            &format!("/api/admin/users/{admin_id}/role"),
            Some(json!({ "role": "member" })),
            true,
        )
        .await;
    assert_eq!(last.status, StatusCode::CONFLICT, "{}", last.json);
    let promoted = app
        .as_browser(
            &admin,
            Method::PUT,
            &format!("/api/admin/users/{ada_id}/role"),
            Some(json!({ "role": "admin" })),
            true,
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK);
    assert_eq!(promoted.json["role"], "admin");
    let missing = app
        .as_browser(
            &admin,
            Method::PUT,
            "/api/admin/users/9999/role",
            Some(json!({ "role": "admin" })),
            true,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad_role = app
        .as_browser(
            &admin,
            Method::PUT,
            &format!("/api/admin/users/{ada_id}/role"),
            Some(json!({ "role": "root" })),
            true,
        )
        .await;
    assert_eq!(bad_role.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn closed_registration_is_refused() {
    let app = TestApp::with_settings(Settings {
        allow_registration: false,
        ..Settings::default()
    })
    .await;
    let reply = app
        .call(
            Method::POST,
            "/api/auth/register",
            Some(json!({
                "email": "ada@example.org",
                "display_name": "Ada",
                "organisation": "AE",
                "password": PASSWORD,
            })),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::new().await;
    for (method, path) in [
        (Method::GET, "/healthz"),
        (Method::GET, "/api/me"),
        (Method::GET, "/some/app/route"),
    ] {
        let reply = app.call(method, path, None, &[]).await;
        let csp = reply.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'self'"), "{path}: {csp}");
        assert!(csp.contains("object-src 'none'"), "{path}: {csp}");
        assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(
            reply.headers.contains_key(header::REFERRER_POLICY),
            "{path}"
        );
        assert_eq!(reply.headers[header::X_FRAME_OPTIONS], "SAMEORIGIN");
        assert!(
            !reply
                .headers
                .contains_key(header::STRICT_TRANSPORT_SECURITY)
        );
    }

    let embedded = TestApp::with_settings(Settings {
        frame_ancestors: vec!["https://intranet.example.org".into()],
        behind_tls: true,
        ..Settings::default()
    })
    .await;
    let reply = embedded.call(Method::GET, "/healthz", None, &[]).await;
    let csp = reply.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'self' https://intranet.example.org"));
    assert!(!reply.headers.contains_key(header::X_FRAME_OPTIONS));
    assert!(
        reply
            .headers
            .contains_key(header::STRICT_TRANSPORT_SECURITY)
    );
}

#[tokio::test]
async fn the_inline_boot_script_of_the_app_is_allowed_by_hash() {
    let dir = tempfile::tempdir().unwrap();
    let boot = "\n    import init from \"/assets/b3o-app-0123456789abcdef.js\";\n  ";
    std::fs::write(
        dir.path().join("index.html"),
        format!("<html><body><script type=\"module\">{boot}</script></body></html>"),
    )
    .unwrap();
    let url = crate::test_db::database_url(dir.path());
    let state = AppState::new(
        db::connect(&url).await.unwrap(),
        std::sync::Arc::new(b3o_server::blobs::BlobStore::local(dir.path()).unwrap()),
        Default::default(),
        Default::default(),
        Default::default(),
    );
    let router = b3o_server::app(state, dir.path());
    let reply = send_to(&router, request(Method::GET, "/", None, &[])).await;
    assert_eq!(reply.status, StatusCode::OK);
    let csp = reply.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(boot));
    assert!(csp.contains(&format!("'sha256-{hash}'")), "{csp}");
    assert!(!csp.contains("'unsafe-inline' ") && !csp.contains("script-src 'unsafe-inline'"));
}

#[tokio::test]
async fn sessions_use_secure_host_cookies_behind_tls() {
    let app = TestApp::with_settings(Settings {
        behind_tls: true,
        ..Settings::default()
    })
    .await;
    let reply = app
        .call(
            Method::POST,
            "/api/auth/register",
            Some(json!({
                "email": "ada@example.org",
                "display_name": "Ada",
                "organisation": "AE",
                "password": PASSWORD,
            })),
            &[],
        )
        .await;
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("__Host-b3o_session="), "{cookie}");
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
}

/// An instance with the administrator `root@example.org` (password [`PASSWORD`]), signed in,
/// and the member `ada@example.org`, signed in; with their ids.
async fn admin_and_member(app: &TestApp) -> (Browser, i64, Browser, i64) {
    accounts::bootstrap_admin(
        &app.db,
        &app.accounts,
        Some("root@example.org"),
        Some(PASSWORD),
    )
    .await
    .unwrap();
    let admin = app.login_ok("root@example.org", PASSWORD).await;
    let ada = app.register("ada@example.org").await;
    let id_of = |reply: Reply| reply.json["user"]["id"].as_i64().unwrap();
    let admin_id = id_of(
        app.as_browser(&admin, Method::GET, "/api/me", None, false)
            .await,
    );
    let ada_id = id_of(
        app.as_browser(&ada, Method::GET, "/api/me", None, false)
            .await,
    );
    (admin, admin_id, ada, ada_id)
}

#[tokio::test]
async fn an_administrator_resets_a_password_and_the_account_must_change_it() {
    let app = TestApp::new().await;
    let (admin, admin_id, ada, ada_id) = admin_and_member(&app).await;
    let ada_token = app.api_token(&ada).await;
    let reset = format!("/api/admin/users/{ada_id}/password");

    let refused = app.as_browser(&ada, Method::POST, &reset, None, true).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let own = app
        .as_browser(
            &admin,
            Method::POST,
            &format!("/api/admin/users/{admin_id}/password"),
            None,
            true,
        )
        .await;
    assert_eq!(own.status, StatusCode::CONFLICT, "{}", own.json);
    let missing = app
        .as_browser(
            &admin,
            Method::POST,
            "/api/admin/users/9999/password",
            None,
            true,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let done = app
        .as_browser(&admin, Method::POST, &reset, None, true)
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.json);
    assert_eq!(done.json["user"]["must_change_password"], true);
    assert_eq!(done.json["revoked_sessions"], 1);
    assert_eq!(done.json["revoked_tokens"], 1);
    let one_time = done.json["one_time_password"].as_str().unwrap().to_string();
    assert!(one_time.chars().count() >= 16, "{one_time}");

    // Everything the account held is revoked, and the old password no longer works.
    let old_session = app
        .as_browser(&ada, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(old_session.status, StatusCode::UNAUTHORIZED);
    let old_token = app
        .as_program(&ada_token, Method::GET, "/api/me", None)
        .await;
    assert_eq!(old_token.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.login("ada@example.org", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Signed in with the one-time password: only /api/me, the password change and sign-out.
    let ada = app.login_ok("ada@example.org", &one_time).await;
    let me = app
        .as_browser(&ada, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["user"]["must_change_password"], true);
    for (method, path) in [
        (Method::GET, "/api/groups"),
        (Method::GET, "/api/auth/sessions"),
        (Method::GET, "/api/deployments"),
        (Method::POST, "/api/auth/tokens"),
        (Method::PATCH, "/api/me"),
    ] {
        let body = (method != Method::GET).then(|| json!({ "name": "x" }));
        let blocked = app.as_browser(&ada, method.clone(), path, body, true).await;
        assert_eq!(blocked.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(error_code(&blocked), "password_change_required", "{path}");
        assert!(
            error_message(&blocked).contains("new password"),
            "{}",
            blocked.json
        );
    }
    let same = app
        .as_browser(
            &ada,
            Method::POST,
            "/api/auth/password",
            Some(json!({ "current_password": one_time, "new_password": one_time })),
            true,
        )
        .await;
    assert_eq!(same.status, StatusCode::BAD_REQUEST, "{}", same.json);
    let changed = app
        .as_browser(
            &ada,
            Method::POST,
            "/api/auth/password",
            Some(json!({ "current_password": one_time, "new_password": "my own new passphrase" })),
            true,
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.json);
    let me = app
        .as_browser(&ada, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(me.json["user"]["must_change_password"], false);
    let groups = app
        .as_browser(&ada, Method::GET, "/api/groups", None, false)
        .await;
    assert_eq!(groups.status, StatusCode::OK, "{}", groups.json);
    app.login_ok("ada@example.org", "my own new passphrase")
        .await;
}

#[tokio::test]
async fn a_one_time_password_blocks_everything_but_changing_it_and_signing_out() {
    let app = TestApp::new().await;
    let Bootstrap::Generated { email, password } =
        accounts::bootstrap_admin(&app.db, &app.accounts, None, None)
            .await
            .unwrap()
    else {
        panic!("expected a generated password");
    };
    let admin = app.login_ok(&email, &password).await;
    let users = app
        .as_browser(&admin, Method::GET, "/api/admin/users", None, false)
        .await;
    assert_eq!(users.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&users), "password_change_required");
    // Routes open to anonymous callers too: the caller is signed in, with a password it must
    // change first.
    let model = app
        .as_browser(&admin, Method::GET, "/v2/models/churn", None, false)
        .await;
    assert_eq!(model.status, StatusCode::FORBIDDEN, "{}", model.json);
    assert_eq!(error_code(&model), "password_change_required");
    let out = app
        .as_browser(&admin, Method::POST, "/api/auth/logout", None, true)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn disabled_accounts_cannot_sign_in_until_enabled_again() {
    let app = TestApp::new().await;
    let (admin, admin_id, ada, ada_id) = admin_and_member(&app).await;
    let ada_token = app.api_token(&ada).await;
    let path = format!("/api/admin/users/{ada_id}/disabled");

    let refused = app
        .as_browser(
            &ada,
            Method::PUT,
            &path,
            Some(json!({ "disabled": true })),
            true,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let no_field = app
        .as_browser(&admin, Method::PUT, &path, Some(json!({})), true)
        .await;
    assert_eq!(no_field.status, StatusCode::BAD_REQUEST);
    let missing = app
        .as_browser(
            &admin,
            Method::PUT,
            "/api/admin/users/9999/disabled",
            Some(json!({ "disabled": true })),
            true,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let disabled = app
        .as_browser(
            &admin,
            Method::PUT,
            &path,
            Some(json!({ "disabled": true })),
            true,
        )
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.json);
    assert_eq!(disabled.json["disabled"], true);
    for reply in [
        app.as_browser(&ada, Method::GET, "/api/me", None, false)
            .await,
        app.as_program(&ada_token, Method::GET, "/api/me", None)
            .await,
    ] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.json);
    }
    // The right password hears why; a wrong one hears nothing more than usual.
    let login = app.login("ada@example.org", PASSWORD).await;
    assert_eq!(login.status, StatusCode::FORBIDDEN, "{}", login.json);
    assert_eq!(error_code(&login), "account_disabled");
    assert!(error_message(&login).contains("administrator"));
    let wrong = app.login("ada@example.org", "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let listed = app
        .as_browser(&admin, Method::GET, "/api/admin/users", None, false)
        .await;
    assert_eq!(listed.json[1]["disabled"], true);
    assert_eq!(listed.json[0]["disabled"], false);

    let enabled = app
        .as_browser(
            &admin,
            Method::PUT,
            &path,
            Some(json!({ "disabled": false })),
            true,
        )
        .await;
    assert_eq!(enabled.status, StatusCode::OK);
    assert_eq!(enabled.json["disabled"], false);
    app.login_ok("ada@example.org", PASSWORD).await;

    // The last enabled administrator stays one: not disabled, not demoted, even when another
    // (disabled) administrator exists.
    let own = format!("/api/admin/users/{admin_id}/disabled");
    let last = app
        .as_browser(
            &admin,
            Method::PUT,
            &own,
            Some(json!({ "disabled": true })),
            true,
        )
        .await;
    assert_eq!(last.status, StatusCode::CONFLICT, "{}", last.json);
    assert!(error_message(&last).contains("last enabled administrator"));
    let promoted = app
        .as_browser(
            &admin,
            Method::PUT,
            &format!("/api/admin/users/{ada_id}/role"),
            Some(json!({ "role": "admin" })),
            true,
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK);
    let disabled = app
        .as_browser(
            &admin,
            Method::PUT,
            &path,
            Some(json!({ "disabled": true })),
            true,
        )
        .await;
    assert_eq!(disabled.status, StatusCode::OK);
    let demote = app
        .as_browser(
            &admin,
            Method::PUT,
            &format!("/api/admin/users/{admin_id}/role"),
            Some(json!({ "role": "member" })),
            true,
        )
        .await;
    assert_eq!(demote.status, StatusCode::CONFLICT, "{}", demote.json);
    let delete = app
        .as_browser(
            &admin,
            Method::DELETE,
            &format!("/api/admin/users/{admin_id}"),
            None,
            true,
        )
        .await;
    assert_eq!(delete.status, StatusCode::CONFLICT, "{}", delete.json);
}

#[tokio::test]
async fn deleting_an_account_keeps_its_groups_and_their_history() {
    let app = TestApp::new().await;
    let (admin, _admin_id, ada, ada_id) = admin_and_member(&app).await;
    let bob = app.register("bob@example.org").await;
    let bob_id = app
        .as_browser(&bob, Method::GET, "/api/me", None, false)
        .await
        .json["user"]["id"]
        .as_i64()
        .unwrap();
    let body = json!({
        "name": "ada's group",
        "model": { "kind": "custom", "layout": [{ "name": "w", "shape": [2] }] },
        "hyperparameters": { "rounds": 1 },
        "min_clients": 1,
    });
    let created = app
        .as_browser(&ada, Method::POST, "/api/groups", Some(body), true)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let group = created.json["group_id"].as_i64().unwrap();
    let code = created.json["join_code"].as_str().unwrap();
    let joined = app
        .as_browser(
            &bob,
            Method::POST,
            "/api/groups/join",
            Some(json!({ "join_code": code })),
            true,
        )
        .await;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.json);
    let bob_member = joined.json["member_id"].as_i64().unwrap();
    // Bob is selected in the live round 1.
    let ready = app
        .as_browser(
            &bob,
            Method::POST,
            &format!("/api/groups/{group}/ready"),
            Some(json!({ "num_samples": 5 })),
            true,
        )
        .await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.json);
    let started = app
        .as_browser(
            &ada,
            Method::POST,
            &format!("/api/groups/{group}/start"),
            None,
            true,
        )
        .await;
    assert!(started.status.is_success(), "{}", started.json);
    let selection = |member: i64| {
        sqlx::query_scalar::<_, String>("SELECT status FROM round_members WHERE member_id = $1")
            .bind(member)
            .fetch_all(&app.db)
    };
    assert_eq!(selection(bob_member).await.unwrap(), ["selected"]);

    let refused = app
        .as_browser(
            &ada,
            Method::DELETE,
            &format!("/api/admin/users/{bob_id}"),
            None,
            true,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let bob_gone = app
        .as_browser(
            &admin,
            Method::DELETE,
            &format!("/api/admin/users/{bob_id}"),
            None,
            true,
        )
        .await;
    assert_eq!(bob_gone.status, StatusCode::OK, "{}", bob_gone.json);
    assert_eq!(bob_gone.json["memberships_detached"], 1);
    assert_eq!(bob_gone.json["groups_now_system_owned"], 0);
    assert_eq!(bob_gone.json["revoked_sessions"], 1);
    // As if Bob had left: the round does not wait for him.
    assert_eq!(selection(bob_member).await.unwrap(), ["dropped"]);
    let bob_me = app
        .as_browser(&bob, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(bob_me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.login("bob@example.org", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    let again = app
        .as_browser(
            &admin,
            Method::DELETE,
            &format!("/api/admin/users/{bob_id}"),
            None,
            true,
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    // The owner's group stays, system-owned, with its member rows: administrators still see it.
    let ada_gone = app
        .as_browser(
            &admin,
            Method::DELETE,
            &format!("/api/admin/users/{ada_id}"),
            None,
            true,
        )
        .await;
    assert_eq!(ada_gone.status, StatusCode::OK, "{}", ada_gone.json);
    assert_eq!(ada_gone.json["groups_now_system_owned"], 1);
    assert_eq!(ada_gone.json["memberships_detached"], 1);
    assert_eq!(ada_gone.json["jobs_deleted"], 0);
    let view = app
        .as_browser(
            &admin,
            Method::GET,
            &format!("/api/groups/{group}"),
            None,
            false,
        )
        .await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.json);
    let members: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE group_id = $1")
        .bind(group)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(members, 2);
    // Postgres enforces foreign keys on every statement; SQLite is asked.
    if !crate::test_db::on_postgres() {
        let orphans: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pragma_foreign_key_check")
            .fetch_one(&app.db)
            .await
            .unwrap();
        assert_eq!(orphans, 0);
    }
    let users = app
        .as_browser(&admin, Method::GET, "/api/admin/users", None, false)
        .await;
    assert_eq!(users.json.as_array().unwrap().len(), 1);
    // The email can be registered again, as a new account.
    app.register("ada@example.org").await;
}
