//! Hardening (issue #19): see SECURITY.md.
//!
//! Accounts and the listener: login attempts in parallel, registrations per address, what a
//! password change revokes, slow and idle clients, the connection cap, and temporary files
//! left by killed uploads. Each test is a regression test
//! of one finding of the issue; the listener tests run against a spawned `b3o serve`, since
//! `oneshot` has no socket.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, StatusCode, header};
use serde_json::json;

use b3o_server::accounts::LoginLimits;
use b3o_server::limits::Limits;

use crate::support::{PASSWORD, TestApp, request, send_to, sign_up, unique_email};

// --- Sign-in and registration limits ----------------------------------------------------------

/// Issue #19 item 4: the limiter checked, ran argon2, then recorded the failure, so 20 guesses
/// sent at once all passed the check and all got 401. Attempts in flight now hold a slot.
#[tokio::test]
async fn parallel_wrong_passwords_cannot_exceed_the_account_limit() {
    let app = TestApp::new().await;
    let email = unique_email("target");
    app.register(&email).await;
    let wrong: Vec<String> = (0..20).map(|i| format!("wrong guess number {i}")).collect();
    let guesses = wrong.iter().map(|password| app.login(&email, password));
    let replies = futures_util::future::join_all(guesses).await;

    let limit = LoginLimits::default().per_account as usize;
    let unauthorized = replies
        .iter()
        .filter(|r| r.status == StatusCode::UNAUTHORIZED)
        .count();
    let limited: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(
        unauthorized <= limit,
        "{unauthorized} of 20 parallel guesses were checked; the limit is {limit}"
    );
    assert_eq!(unauthorized + limited.len(), 20, "only 401 or 429");
    for r in limited {
        let retry: u64 = r.headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1);
        let message = r.json["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&limit.to_string()), "{message}");
    }
}

/// Issue #19 item 5: registrations were unlimited. Now at most `--max-registrations-per-hour`
/// per client address, then 429 with `Retry-After`; other addresses are not affected.
#[tokio::test]
async fn registrations_per_client_address_are_limited_per_hour() {
    let app = TestApp::new().await;
    let limit = Limits::default().max_registrations_per_hour;
    let from = |ip: [u8; 4]| {
        app.router
            .clone()
            .layer(MockConnectInfo(SocketAddr::from((ip, 4444))))
    };
    let (busy, other) = (from([203, 0, 113, 20]), from([198, 51, 100, 20]));
    let register = |email: String| {
        request(
            Method::POST,
            "/api/auth/register",
            Some(json!({
                "email": email,
                "display_name": "Someone",
                "organisation": "Somewhere",
                "password": PASSWORD,
            })),
            &[],
        )
    };
    for i in 0..limit {
        let r = send_to(&busy, register(unique_email("many"))).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "registration {i}: {}",
            r.json
        );
    }
    let refused = send_to(&busy, register(unique_email("many"))).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.json
    );
    let retry: u64 = refused.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");
    let message = refused.json["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("{limit}")), "{message}");
    let fine = send_to(&other, register(unique_email("elsewhere"))).await;
    assert_eq!(fine.status, StatusCode::CREATED, "{}", fine.json);
}

/// Issue #19 item 8: API tokens survived a password change, so someone who had taken a token
/// kept the account after its owner changed the password. Now the change revokes the tokens
/// and every other session; the session that changed it stays signed in.
#[tokio::test]
async fn a_password_change_revokes_api_tokens_and_other_sessions() {
    let app = TestApp::new().await;
    let email = unique_email("changer");
    let here = app.register(&email).await;
    let elsewhere = app.login_ok(&email, PASSWORD).await;
    let token = app.api_token(&here).await;
    let before = app.as_program(&token, Method::GET, "/api/me", None).await;
    assert_eq!(before.status, StatusCode::OK);

    let changed = app
        .as_browser(
            &here,
            Method::POST,
            "/api/auth/password",
            Some(json!({
                "current_password": PASSWORD,
                "new_password": "a brand new passphrase 7",
            })),
            true,
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.json);
    assert_eq!(changed.json["revoked_sessions"], 1, "{}", changed.json);
    assert_eq!(changed.json["revoked_tokens"], 1, "{}", changed.json);

    let with_token = app.as_program(&token, Method::GET, "/api/me", None).await;
    assert_eq!(with_token.status, StatusCode::UNAUTHORIZED);
    let other_session = app
        .as_browser(&elsewhere, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(other_session.status, StatusCode::UNAUTHORIZED);
    let this_session = app
        .as_browser(&here, Method::GET, "/api/me", None, false)
        .await;
    assert_eq!(this_session.status, StatusCode::OK);
    let tokens = app
        .as_browser(&here, Method::GET, "/api/auth/tokens", None, false)
        .await;
    assert_eq!(tokens.json, json!([]));
}

// --- The listener, against a spawned `b3o serve` ---------------------------------------------

/// A `b3o serve` process; killed on drop.
struct Spawned {
    child: Child,
    base: String,
    addr: SocketAddr,
}

impl Spawned {
    fn start(data_dir: &Path, extra: &[&str]) -> Spawned {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(env!("CARGO_BIN_EXE_b3o"))
            .arg("serve")
            .args(["--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .envs(crate::test_db::serve_env(data_dir))
            .arg("--static-dir")
            .arg(data_dir.join("no-static"))
            .args(extra)
            .env("RUST_LOG", "error")
            .env("B3O_ADMIN_EMAIL", "admin@example.org")
            .env("B3O_ADMIN_PASSWORD", "correct horse battery staple 42")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning b3o serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines.next().expect("b3o exited before listening").unwrap();
            if let Some(rest) = line.strip_prefix("B3O Edge is listening on ") {
                break rest.trim_end_matches('/').to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let addr = base.trim_start_matches("http://").parse().unwrap();
        Spawned { child, base, addr }
    }

    /// A raw connection; reads give up after `read_timeout`.
    fn connect(&self, read_timeout: Duration) -> TcpStream {
        let c = TcpStream::connect(self.addr).unwrap();
        c.set_read_timeout(Some(read_timeout)).unwrap();
        c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        c
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a test waits for the server to close a connection its 1 s timeouts should close.
const CLOSE_WITHIN: Duration = Duration::from_secs(15);

/// 1 s header and body timeouts.
const IMPATIENT: [&str; 4] = ["--header-timeout-secs", "1", "--body-timeout-secs", "1"];

/// What the server sent until it closed the connection, or `Err` with what it sent if it was
/// still open when a read timed out.
fn read_until_closed(c: &mut TcpStream) -> Result<Vec<u8>, Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.len() > 1 << 20 {
                    return Err(got);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(got);
            }
            // Reset: closed too.
            Err(_) => return Ok(got),
        }
    }
}

/// Reads one response with a `Content-Length` body from a kept-alive connection: its status.
fn read_response(c: &mut TcpStream) -> u16 {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert!(got.len() < 64 * 1024, "response head too long");
        let n = c.read(&mut byte).expect("reading a response head");
        assert_eq!(n, 1, "closed before the response head ended");
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    c.read_exact(&mut body).expect("reading a response body");
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Issue #19 item 7: a connection that never sends a request stayed open forever.
#[test]
fn an_idle_connection_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spawned::start(dir.path(), &IMPATIENT);
    let mut c = s.connect(CLOSE_WITHIN);
    let got = read_until_closed(&mut c).expect("an idle connection was still open after 15 s");
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "{got:?}"
    );

    // Idle after a request (keep-alive) is idle too.
    let mut c = s.connect(CLOSE_WITHIN);
    c.write_all(HEALTH).unwrap();
    assert_eq!(read_response(&mut c), 200);
    read_until_closed(&mut c).expect("an idle keep-alive connection was still open after 15 s");
}

/// Issue #19 item 7: headers sent a line at a time (slowloris) kept the connection forever.
#[test]
fn a_slow_header_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spawned::start(dir.path(), &IMPATIENT);
    let mut c = s.connect(CLOSE_WITHIN);
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let mut writer = c.try_clone().unwrap();
    // One header line every 200 ms for at most 20 s, until the server hangs up.
    let trickle = std::thread::spawn(move || {
        for _ in 0..100 {
            if writer.write_all(b"X-Slow: 1\r\n").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let got = read_until_closed(&mut c);
    let _ = c.shutdown(std::net::Shutdown::Both);
    trickle.join().unwrap();
    let got = got.expect("a slow-header connection was still open after 15 s");
    assert!(
        !got.starts_with(b"HTTP/1.1 2"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// Issue #19 item 7: a request whose body stopped arriving held its handler and connection
/// forever.
#[test]
fn a_stalled_request_body_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spawned::start(dir.path(), &IMPATIENT);
    let mut c = s.connect(CLOSE_WITHIN);
    c.write_all(
        b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"email\": ",
    )
    .unwrap();
    let got = read_until_closed(&mut c).expect("a stalled body was still open after 15 s");
    let text = String::from_utf8_lossy(&got);
    assert!(!text.starts_with("HTTP/1.1 2"), "{text}");
}

/// Issue #19 item 7: no connection cap. With `--max-connections 1`, a second connection is
/// not served while the first stays open, and is served once it closes.
#[test]
fn a_connection_above_the_cap_waits_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spawned::start(
        dir.path(),
        &["--max-connections", "1", "--header-timeout-secs", "60"],
    );
    let mut first = s.connect(CLOSE_WITHIN);
    first.write_all(HEALTH).unwrap();
    assert_eq!(read_response(&mut first), 200);

    // The kernel completes the handshake (backlog); the server does not take it yet.
    let mut second = s.connect(Duration::from_secs(1));
    second.write_all(HEALTH).unwrap();
    let mut byte = [0u8; 1];
    match second.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("served above the cap while the first connection was open: {other:?}"),
    }

    drop(first);
    second.set_read_timeout(Some(CLOSE_WITHIN)).unwrap();
    assert_eq!(read_response(&mut second), 200);
}

/// The timeouts are for reading requests: a Server-Sent Events stream, whose request is
/// complete, must stay open past them.
#[tokio::test]
async fn an_event_stream_outlives_the_header_and_body_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spawned::start(dir.path(), &IMPATIENT);
    let http = reqwest::Client::new();
    let owner = sign_up(&http, &s.base, &unique_email("sse"), "Stream Ltd").await;
    let r = http
        .post(format!("{}/api/groups", s.base))
        .bearer_auth(&owner.token)
        .json(&json!({
            "name": "streams",
            "description": "listener test",
            "model": { "kind": "custom", "layout": [
                { "name": "dense.weight", "shape": [4, 3] },
                { "name": "dense.bias", "shape": [3] },
            ] },
            "hyperparameters": { "rounds": 1, "local_epochs": 1, "lr": 0.01 },
            "strategy": { "name": "fedavg" },
            "min_clients": 2,
            "fraction_fit": 1.0,
            "round_deadline_secs": 60,
        }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let created: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");
    let id = created["group_id"].as_i64().unwrap();

    let mut c = s.connect(CLOSE_WITHIN);
    let ask = format!(
        "GET /api/groups/{id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\
         Authorization: Bearer {}\r\n\r\n",
        owner.token
    );
    c.write_all(ask.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("snapshot") {
        let n = c.read(&mut buf).expect("reading the stream's first event");
        assert!(n > 0, "closed before the first event");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Three times the timeouts: still open (a read times out, or a keep-alive comment comes).
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    match c.read(&mut buf) {
        Ok(n) if n > 0 => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the event stream was cut: {other:?}"),
    }
}

// --- Temporary blob files ------------------------------------------------------------------------

/// Issue #19 item 8: `.tmp-*` files of uploads killed mid-write stayed forever. At start-up
/// the server removes those untouched for an hour; a fresh one may belong to a write in
/// progress and stays, and so do other files.
#[test]
fn stale_upload_temp_files_are_swept_at_start_and_fresh_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("groups/1/rounds");
    std::fs::create_dir_all(&blobs).unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    let file = |name: &str, modified: Option<SystemTime>| {
        let path = blobs.join(name);
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(1024).unwrap();
        if let Some(t) = modified {
            f.set_modified(t).unwrap();
        }
        path
    };
    let stale = file(".tmp-00000000000000aa", Some(two_hours_ago));
    let fresh = file(".tmp-00000000000000bb", None);
    // (Young: an old blob no row references is the orphan collector's, `blob_store.rs`.)
    let blob = file("1.bin", None);
    let not_ours = file(".tmp-notes.txt", Some(two_hours_ago));

    let _s = Spawned::start(dir.path(), &[]);
    assert!(!stale.exists(), "a stale temporary file survived start-up");
    assert!(fresh.exists(), "a fresh temporary file was removed");
    assert!(blob.exists() && not_ours.exists());
}
