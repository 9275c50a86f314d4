//! Shared test helpers: accounts over HTTP.
//!
//! - [`TestApp`]: the whole `b3o_server::app` over a fresh database, called in-process with
//!   `oneshot`; [`TestApp::register_named`] signs someone up (a [`Browser`]: session cookie and
//!   CSRF token) and [`TestApp::api_token`] gives that account a token for programs.
//! - [`sign_up`]: the same against a spawned `b3o serve` with `reqwest`, returning an
//!   [`Account`] whose API token goes in `bearer_auth`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use b3o_server::accounts::{Accounts, Settings};
use b3o_server::db::{self, Db};
use b3o_server::state::AppState;

/// Every test account's password.
pub const PASSWORD: &str = "correct horse battery";

/// A unique email address per call in this test process: `{prefix}-{n}@example.org`.
pub fn unique_email(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}@example.org",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The app over a fresh database in a temporary directory.
pub struct TestApp {
    pub router: Router,
    pub db: Db,
    pub accounts: Arc<Accounts>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

/// A signed-in browser: its session cookie and CSRF token.
#[derive(Clone, Debug)]
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_settings(Settings::default()).await
    }

    pub async fn with_settings(settings: Settings) -> Self {
        Self::with_limits(settings, Default::default()).await
    }

    /// With the resource limits under test (`b3o serve`'s flags).
    pub async fn with_limits(settings: Settings, limits: b3o_server::limits::Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::test_db::database_url(dir.path());
        let db = db::connect(&url).await.unwrap();
        let accounts = Arc::new(Accounts::new(settings));
        let state = AppState::new(
            db.clone(),
            std::sync::Arc::new(b3o_server::blobs::BlobStore::local(dir.path()).unwrap()),
            accounts.clone(),
            Default::default(),
            Arc::new(limits),
        );
        let router = b3o_server::app(state, dir.path());
        TestApp {
            router,
            db,
            accounts,
            _dir: dir,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        send_to(&self.router, request).await
    }

    /// `method path` with an optional JSON body and extra headers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.send(request(method, path, body, headers)).await
    }

    /// Signs up `email` as "Ada" of "Analytical Engines Ltd".
    pub async fn register(&self, email: &str) -> Browser {
        self.register_named(email, "Ada", "Analytical Engines Ltd")
            .await
    }

    pub async fn register_named(
        &self,
        email: &str,
        display_name: &str,
        organisation: &str,
    ) -> Browser {
        let reply = self
            .call(
                Method::POST,
                "/api/auth/register",
                Some(json!({
                    "email": email,
                    "display_name": display_name,
                    "organisation": organisation,
                    "password": PASSWORD,
                })),
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
        assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
        browser(&reply)
    }

    /// A new API token of the signed-in `b` (`b3o_…`).
    pub async fn api_token(&self, b: &Browser) -> String {
        let reply = self
            .as_browser(
                b,
                Method::POST,
                "/api/auth/tokens",
                Some(json!({ "name": "tests" })),
                true,
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
        reply.json["token"].as_str().unwrap().to_string()
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/auth/login",
            Some(json!({ "email": email, "password": password })),
            &[],
        )
        .await
    }

    pub async fn login_ok(&self, email: &str, password: &str) -> Browser {
        let reply = self.login(email, password).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
        browser(&reply)
    }

    /// A request as the browser: cookie, plus the CSRF header when `with_csrf`.
    pub async fn as_browser(
        &self,
        b: &Browser,
        method: Method,
        path: &str,
        body: Option<Value>,
        with_csrf: bool,
    ) -> Reply {
        let mut headers = vec![("cookie", b.cookie.as_str())];
        if with_csrf {
            headers.push(("x-csrf-token", b.csrf.as_str()));
        }
        self.call(method, path, body, &headers).await
    }

    pub async fn as_program(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let auth = format!("Bearer {token}");
        self.call(method, path, body, &[("authorization", &auth)])
            .await
    }
}

pub fn request(
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

/// Sends `request` and reads the JSON answer (`Null` if it is not JSON). An event stream is
/// not read (it does not end): its status and headers are enough. Every answer goes to
/// [`record::response`] (the API contract check).
pub async fn send_to(router: &Router, request: Request<Body>) -> Reply {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let streaming = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let json = if streaming {
        record::response(&method, &path, status, &headers, None);
        Value::Null
    } else {
        let bytes = tokio::time::timeout(
            Duration::from_secs(30),
            axum::body::to_bytes(response.into_body(), 64 << 20),
        )
        .await
        .expect("the body did not end within 30 s")
        .unwrap();
        record::response(&method, &path, status, &headers, Some(&bytes));
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Reply {
        status,
        headers,
        json,
    }
}

/// The session of a sign-up or sign-in answer.
pub fn browser(reply: &Reply) -> Browser {
    let set_cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let csrf = reply.json["csrf_token"].as_str().unwrap().to_string();
    Browser { cookie, csrf }
}

/// An account on a spawned server: its session and an API token for programs.
#[derive(Clone, Debug)]
pub struct Account {
    // Read by the native client's tests (signing in with email and password).
    #[allow(dead_code)]
    pub email: String,
    pub browser: Browser,
    /// `b3o_…`: send it with `bearer_auth`.
    pub token: String,
}

/// Signs up `email` (organisation `organisation`) on the server at `base` over real HTTP and
/// creates an API token for it, as a person setting up the native client would.
pub async fn sign_up(
    http: &reqwest::Client,
    base: &str,
    email: &str,
    organisation: &str,
) -> Account {
    let r = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({
            "email": email,
            "display_name": email.split('@').next().unwrap_or("someone"),
            "organisation": organisation,
            "password": PASSWORD,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let cookie = r.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let body: Value = r.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_string();
    let r = http
        .post(format!("{base}/api/auth/tokens"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({ "name": "b3o client" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    Account {
        email: email.to_string(),
        browser: Browser { cookie, csrf },
        token: body["token"].as_str().unwrap().to_string(),
    }
}

/// A `b3o serve --demo` process on a fresh data directory, for the tests that need the real
/// binary and its memory figures (the malformed-input corpus, load under attack); killed on
/// drop.
pub struct Spawned {
    child: std::process::Child,
    pub base: String,
    pub data_dir: tempfile::TempDir,
}

impl Spawned {
    /// Starts `b3o serve --demo` on 127.0.0.1 with the `extra` flags and waits for its
    /// "listening" line (the demo models are seeded before it).
    pub fn demo(extra: &[&str]) -> Spawned {
        use std::io::{BufRead, BufReader};
        let data_dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_b3o"))
            .args(["serve", "--demo", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path().join("data"))
            .envs(crate::test_db::serve_env(&data_dir.path().join("data")))
            .arg("--static-dir")
            .arg(data_dir.path().join("no-static"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawning b3o serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("b3o exited before listening").unwrap();
            if let Some(rest) = line.strip_prefix("B3O Edge is listening on ") {
                break rest.trim_end_matches('/').to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Spawned {
            child,
            base,
            data_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The server's data directory (database and blobs).
    pub fn data_path(&self) -> std::path::PathBuf {
        self.data_dir.path().join("data")
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("reading the server's /proc status (is it still running?)");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }

    /// Resets the peak resident size (`VmHWM`) to the current one.
    pub fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .expect("resetting the server's peak RSS");
    }

    /// Whether the process is still running (it did not abort).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The answers the tests receive, for the API contract check (`scripts/contract.sh`). With
/// `B3O_RECORD_RESPONSES=<dir>` set (`scripts/test.sh` sets it), each answer read by
/// [`send_to`] is appended to `<dir>/<process id>.jsonl` as one JSON line: the test, method,
/// path, its route template in [`b3o_server::access::ROUTES`] (`null` when none matches),
/// status, content type, body length and the body itself when it is JSON.
/// `scripts/contract/check_responses.py` validates them against the OpenAPI document.
pub mod record {
    use std::fs::{File, OpenOptions};
    use std::io::Write;
    use std::sync::{Mutex, OnceLock, PoisonError};

    use axum::http::{HeaderMap, Method, StatusCode, header};
    use serde_json::{Value, json};

    /// Larger JSON bodies are recorded without their body (status and content type only).
    const MAX_BODY: usize = 4 << 20;

    fn file() -> Option<&'static Mutex<File>> {
        static FILE: OnceLock<Option<Mutex<File>>> = OnceLock::new();
        FILE.get_or_init(|| {
            let dir = std::env::var_os("B3O_RECORD_RESPONSES").filter(|d| !d.is_empty())?;
            std::fs::create_dir_all(&dir).expect("creating B3O_RECORD_RESPONSES");
            let path = std::path::Path::new(&dir).join(format!("{}.jsonl", std::process::id()));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
            Some(Mutex::new(file))
        })
        .as_ref()
    }

    /// The route of `ROUTES` that `method path` reaches: `{…}` segments match any segment,
    /// and literal segments win (`/rounds/current` over `/rounds/{number}`).
    pub fn route_of(method: &str, path: &str) -> Option<&'static str> {
        let segments: Vec<&str> = path.split('/').collect();
        b3o_server::access::ROUTES
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method))
            .filter_map(|r| {
                let template: Vec<&str> = r.path.split('/').collect();
                if template.len() != segments.len() {
                    return None;
                }
                let mut literals = 0;
                for (t, s) in template.iter().zip(&segments) {
                    if t.starts_with('{') && t.ends_with('}') {
                        if s.is_empty() {
                            return None;
                        }
                    } else if t == s {
                        literals += 1;
                    } else {
                        return None;
                    }
                }
                Some((literals, r.path))
            })
            .max_by_key(|(literals, _)| *literals)
            .map(|(_, path)| path)
    }

    /// Appends one answer when recording is on (see the module's documentation).
    pub fn response(
        method: &Method,
        path: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) {
        let Some(file) = file() else { return };
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let json_type = content_type.is_some_and(|t| {
            let t = t.split(';').next().unwrap_or_default().trim();
            t == "application/json" || t.ends_with("+json")
        });
        let (body_json, body_error) = match body {
            Some(bytes) if json_type && bytes.len() <= MAX_BODY => {
                match serde_json::from_slice::<Value>(bytes) {
                    Ok(value) => (Some(value), None),
                    Err(e) => (None, Some(format!("not JSON: {e}"))),
                }
            }
            _ => (None, None),
        };
        // nextest runs each test in its own process: `<binary> --exact <name> …`.
        let test = std::env::args().skip(1).find(|a| !a.starts_with('-'));
        let line = json!({
            "test": test,
            "method": method.as_str(),
            "path": path,
            "route": route_of(method.as_str(), path),
            "status": status.as_u16(),
            "content_type": content_type,
            "body_bytes": body.map(<[u8]>::len),
            "body": body_json,
            "body_error": body_error,
        });
        let mut line = line.to_string().into_bytes();
        line.push(b'\n');
        file.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_all(&line)
            .expect("writing to B3O_RECORD_RESPONSES");
    }

    #[test]
    fn concrete_paths_map_back_to_their_route_templates() {
        for (method, path, route) in [
            (
                "GET",
                "/api/groups/7/rounds/2",
                Some("/api/groups/{id}/rounds/{number}"),
            ),
            (
                "GET",
                "/api/groups/7/rounds/current",
                Some("/api/groups/{id}/rounds/current"),
            ),
            ("POST", "/api/groups/join", Some("/api/groups/join")),
            ("GET", "/api/groups/join", Some("/api/groups/{id}")),
            ("post", "/api/groups", Some("/api/groups")),
            ("GET", "/v2", Some("/v2")),
            ("DELETE", "/api/groups/7", None),
            ("GET", "/api/groups//rounds", None),
            ("GET", "/api/nothing-here", None),
        ] {
            assert_eq!(route_of(method, path), route, "{method} {path}");
        }
    }
}

/// A free TCP port on 127.0.0.1 (for a process the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (up to 10 s) until `what` accepts connections on 127.0.0.1:`port`.
pub fn wait_listening(port: u16, what: &str) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{what} did not listen on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `csv` (the churn columns) with every `Age` 25 years older and every third row's
/// `Geography` a country no bank has (`Atlantis`): a shifted numeric column and a new category,
/// for the drift tests.
pub fn shifted_ages_and_countries(csv: &str) -> String {
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let names: Vec<&str> = header.split(',').collect();
    let age = names.iter().position(|n| *n == "Age").unwrap();
    let geo = names.iter().position(|n| *n == "Geography").unwrap();
    let mut out = format!("{header}\n");
    for (i, line) in lines.enumerate() {
        let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
        cells[age] = (cells[age].parse::<i64>().unwrap() + 25).to_string();
        if i % 3 == 0 {
            cells[geo] = "Atlantis".into();
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}
