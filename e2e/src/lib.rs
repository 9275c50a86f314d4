//! Harness for B3O Edge's real-browser tests: starts the real `b3o` binary on a fresh data
//! directory and a real headless Chromium (through chromedriver), and gathers what a failing
//! test needs to be understood (console messages, screenshots).
//!
//! Fixtures are split into starting things ([`Server`], [`Browser`]), finding things on a
//! page ([`Browser::wait_for`]) and checks ([`Browser::console_errors`]).

pub mod fleet;
pub mod holding_proxy;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// The repository root (this crate lives in `e2e/`). The runtime `CARGO_MANIFEST_DIR` (set by
/// cargo and nextest) comes first: a test binary reused from a build of another checkout
/// (shared target directory) would otherwise use that checkout's files.
pub fn repo_root() -> PathBuf {
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    Path::new(&manifest_dir)
        .parent()
        .expect("e2e has a parent")
        .to_path_buf()
}

/// The `b3o` binary: `$B3O_BIN`, else the one cargo built next to this test binary.
pub fn b3o_binary() -> Result<PathBuf> {
    if let Ok(bin) = std::env::var("B3O_BIN") {
        return Ok(bin.into());
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/b3o
    let bin = exe.parent().and_then(Path::parent).map(|p| p.join("b3o"));
    match bin {
        Some(bin) if bin.exists() => Ok(bin),
        _ => bail!(
            "no b3o binary next to {}: run `cargo build -p b3o-server` or set B3O_BIN",
            exe.display()
        ),
    }
}

/// The built web app: `$B3O_DIST`, else `dist/` at the repository root.
pub fn dist_dir() -> Result<PathBuf> {
    let dir = std::env::var("B3O_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("dist"));
    if !dir.join("index.html").exists() {
        bail!(
            "{} has no index.html: run scripts/build-web.sh first",
            dir.display()
        );
    }
    Ok(dir)
}

/// The administrator every test server starts with (`B3O_ADMIN_EMAIL` / `B3O_ADMIN_PASSWORD`).
pub const ADMIN_EMAIL: &str = "admin@e2e.test";
pub const ADMIN_PASSWORD: &str = "e2e administrator passphrase 42";

/// A running `b3o serve` on 127.0.0.1 with its own temporary data directory.
pub struct Server {
    pub url: String,
    child: Option<Child>,
    _data: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// With the demo models (`churn`, `digits`) deployed: `b3o serve --demo`.
    pub fn start_demo() -> Result<Self> {
        Self::start_with(&["--demo"])
    }

    /// `b3o serve` with extra `args`.
    pub fn start_with(args: &[&str]) -> Result<Self> {
        Self::start_env(args, &[])
    }

    /// `b3o serve` with extra `args` and environment variables `env`.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let data = tempfile::tempdir()?;
        let mut child = Command::new(b3o_binary()?)
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .arg("--static-dir")
            .arg(dist_dir()?)
            .args(args)
            .env("RUST_LOG", "warn")
            .env("B3O_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("B3O_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting b3o serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let Some(line) = lines.next() else {
                let status = child.wait()?;
                bail!("b3o serve exited ({status}) before listening");
            };
            if let Some(url) = line?.strip_prefix("B3O Edge is listening on ") {
                break url.trim_end_matches('/').to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self {
            url,
            child: Some(child),
            _data: data,
        })
    }

    /// Another address of a running server (a proxy in front of it): the same API, no process
    /// of its own.
    pub fn alias(url: String) -> Result<Self> {
        Ok(Self {
            url,
            child: None,
            _data: tempfile::tempdir()?,
        })
    }

    /// Another process serving at `url` (a load balancer), stopped like a server.
    pub fn wrap(child: Child, url: String) -> Result<Self> {
        Ok(Self {
            url,
            child: Some(child),
            _data: tempfile::tempdir()?,
        })
    }

    /// Stops the server with SIGKILL, as `kill -9` does (its data directory stays until the
    /// `Server` is dropped): for tests of what keeps working offline or on other replicas.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// This server's origin, e.g. `http://127.0.0.1:40123`.
    pub fn origin(&self) -> &str {
        &self.url
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A signed-in HTTP client of the API (session cookie + CSRF token), for arranging what a
/// test needs and for checking what the browser did against the server's own answers.
pub struct Api {
    pub base: String,
    http: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Api {
    /// Signs in as `email`.
    pub async fn login(server: &Server, email: &str, password: &str) -> Result<Api> {
        let http = reqwest::Client::new();
        let response = http
            .post(format!("{}/api/auth/login", server.url))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .context("signing in over HTTP")?;
        Self::from_auth_response(server, http, response).await
    }

    /// The administrator the server started with.
    pub async fn admin(server: &Server) -> Result<Api> {
        Self::login(server, ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Creates an account and signs it in.
    pub async fn register(server: &Server, email: &str, password: &str) -> Result<Api> {
        let http = reqwest::Client::new();
        let response = http
            .post(format!("{}/api/auth/register", server.url))
            .json(&json!({
                "email": email,
                "display_name": email.split('@').next().unwrap_or(email),
                "organisation": "E2E",
                "password": password,
            }))
            .send()
            .await
            .context("registering over HTTP")?;
        Self::from_auth_response(server, http, response).await
    }

    async fn from_auth_response(
        server: &Server,
        http: reqwest::Client,
        response: reqwest::Response,
    ) -> Result<Api> {
        let status = response.status();
        let cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .collect::<Vec<_>>()
            .join("; ");
        let body: Value = response.json().await.unwrap_or_default();
        ensure!(status.is_success(), "signing in answered {status}: {body}");
        let csrf = body["csrf_token"].as_str().unwrap_or_default().to_string();
        Ok(Api {
            base: server.url.clone(),
            http,
            cookie,
            csrf,
        })
    }

    /// A request to `path` (server-relative) with the session and, for writes, the CSRF token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
    }

    /// `GET path` as JSON, failing on a non-2xx answer.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let response = self.request(reqwest::Method::GET, path).send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        ensure!(status.is_success(), "GET {path} answered {status}: {body}");
        Ok(body)
    }

    /// `method path` with a JSON body, failing on a non-2xx answer.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> Result<Value> {
        let response = self.request(method.clone(), path).json(body).send().await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or_default();
        ensure!(
            status.is_success(),
            "{method} {path} answered {status}: {answer}"
        );
        Ok(answer)
    }

    /// The server's codeless CSV prediction of `csv` with deployment `model`.
    pub async fn predict_csv(&self, model: &str, csv: &str) -> Result<String> {
        let path = format!("/api/predict/{model}/csv");
        let response = self
            .request(reqwest::Method::POST, &path)
            .header("content-type", "text/csv")
            .body(csv.to_string())
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status.is_success(), "POST {path} answered {status}: {text}");
        Ok(text)
    }
}

/// A tiny web server on its own port: a "partner site" of another origin, answering `html`
/// for every path.
pub struct StaticSite {
    pub origin: String,
    task: tokio::task::JoinHandle<()>,
}

impl StaticSite {
    pub async fn start(html: String) -> Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let origin = format!("http://{}", listener.local_addr()?);
        let html = std::sync::Arc::new(html);
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let html = html.clone();
                tokio::spawn(async move {
                    // Read the request head; the body (there is none for GET) is ignored.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let (status, body) = if head.starts_with(b"GET /favicon.ico") {
                        ("404 Not Found", String::new())
                    } else {
                        ("200 OK", html.to_string())
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Ok(Self { origin, task })
    }
}

impl Drop for StaticSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Checks that two prediction CSVs (`actual` from the browser, `expected` from the server's
/// endpoint) say the same: the same lines and cells, the same labels, and probabilities or
/// values equal to within `1e-5` (the browser's WebAssembly and the server's native build of the
/// same model may round the sixth decimal differently).
pub fn same_predictions(actual: &str, expected: &str) -> Result<()> {
    let a: Vec<&str> = actual.lines().collect();
    let e: Vec<&str> = expected.lines().collect();
    ensure!(
        a.len() == e.len(),
        "{} lines, expected {}:\n{actual}\n---\n{expected}",
        a.len(),
        e.len()
    );
    ensure!(
        a.first() == e.first(),
        "headers differ: {:?} vs {:?}",
        a.first(),
        e.first()
    );
    let header: Vec<&str> = e
        .first()
        .map(|h| h.split(',').collect())
        .unwrap_or_default();
    ensure!(
        header.iter().any(|h| h.starts_with("prediction_")),
        "no prediction columns in {header:?}"
    );
    for (line, (ra, re)) in a.iter().zip(&e).enumerate().skip(1) {
        let (ca, ce): (Vec<&str>, Vec<&str>) = (ra.split(',').collect(), re.split(',').collect());
        ensure!(ca.len() == ce.len(), "line {}: {ra:?} vs {re:?}", line + 1);
        for (i, (x, y)) in ca.iter().zip(&ce).enumerate() {
            let numeric = matches!(
                header.get(i),
                Some(&"prediction_probability") | Some(&"prediction_value")
            ) || header.get(i).is_some_and(|h| h.starts_with("probability_"));
            let same = if numeric {
                match (x.parse::<f64>(), y.parse::<f64>()) {
                    (Ok(p), Ok(q)) => (p - q).abs() <= 1e-5,
                    _ => x == y,
                }
            } else {
                x == y
            };
            ensure!(
                same,
                "line {}, column {:?}: {x:?} in the browser, {y:?} from the server",
                line + 1,
                header.get(i)
            );
        }
    }
    Ok(())
}

/// The churn dataset's header and rows `skip..skip + rows` as a CSV (tests keep data tiny).
pub fn churn_rows(skip: usize, rows: usize) -> Result<String> {
    let path = repo_root().join("../shared/datasets/churn_modelling.csv");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().context("empty churn dataset")?;
    let mut out = String::from(header);
    out.push('\n');
    for line in lines.skip(skip).take(rows) {
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// Writes `content` to `name` in a fresh temporary directory (kept alive by the returned
/// guard), for `<input type="file">` uploads.
pub fn temp_file(name: &str, content: &[u8]) -> Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(name);
    std::fs::write(&path, content)?;
    Ok((dir, path))
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Headless Chromium with a fresh profile and WebGPU through SwiftShader.
pub struct Browser {
    pub client: Client,
    /// Dropped before the profile: no Chromium is left writing into a deleted folder.
    _driver: DriverGroup,
    /// Where this browser saves downloads (inside its profile).
    pub downloads: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Result<Self> {
        let port = free_port()?;
        let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let driver = DriverGroup(
            Command::new(&chromedriver)
                .process_group(0)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| {
                    format!("starting {chromedriver} (apt-get install chromium-driver)")
                })?,
        );
        let profile = tempfile::tempdir()?;
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads)?;
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": std::env::var("CHROME").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless", "--no-sandbox", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-quic",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader", "--enable-features=Vulkan",
                    format!("--user-data-dir={}", profile.path().join("chrome").display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                },
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let webdriver = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&webdriver)
                .await
            {
                Ok(client) => break client,
                // chromedriver takes a moment to open its port.
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    drop(driver);
                    return Err(e).context("connecting to chromedriver");
                }
            }
        };
        Ok(Self {
            client,
            _driver: driver,
            downloads,
            _profile: profile,
        })
    }

    /// Waits up to 30 s for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> Result<Element> {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting for `{css}`"))
    }

    /// Console messages of level SEVERE since the last call (chromedriver's log endpoint),
    /// except the browser's own network lines for API answers of 401: the app asks `/api/me`
    /// whether someone is signed in and gets 401 when nobody is, and a wrong password is a
    /// 401 too. Those are answers the app handles, not errors; any other failed request, and
    /// everything the page itself logs, still counts.
    pub async fn console_errors(&self) -> Result<Vec<String>> {
        let logs = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .context("reading the browser log")?;
        Ok(logs
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .filter(|entry| !is_expected_unauthorized(entry))
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_string())
            .collect())
    }

    /// Types `text` into the (empty) field matching `css`.
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let field = self.wait_for(css).await?;
        field
            .clear()
            .await
            .with_context(|| format!("clearing `{css}`"))?;
        field
            .send_keys(text)
            .await
            .with_context(|| format!("typing into `{css}`"))
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) -> Result<()> {
        self.wait_for(css)
            .await?
            .click()
            .await
            .with_context(|| format!("clicking `{css}`"))
    }

    /// Waits up to 30 s for an element matching `css` whose text contains `needle`; returns
    /// its text.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = None;
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
            {
                if text.contains(needle) {
                    return Ok(text);
                }
                last = Some(text);
            }
            if Instant::now() > deadline {
                bail!("waiting for `{css}` to contain {needle:?}; last text: {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets the file input matching `css` to the local file `path` (as a person picking it).
    pub async fn upload(&self, css: &str, path: &Path) -> Result<()> {
        let input = self.wait_for(css).await?;
        input
            .send_keys(&path.display().to_string())
            .await
            .with_context(|| format!("choosing {} in `{css}`", path.display()))
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.client
            .execute(script, args)
            .await
            .with_context(|| format!("running script: {}", first_line(script)))
    }

    /// Runs an asynchronous `script`: it ends by calling `arguments[arguments.length - 1]`
    /// with its result.
    pub async fn js_async(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.client
            .execute_async(script, args)
            .await
            .with_context(|| format!("running async script: {}", first_line(script)))
    }

    /// Polls the JS expression `condition` (a function body returning a value) until it
    /// returns something truthy, at most `timeout`; returns that value.
    pub async fn wait_until(&self, condition: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            if let Ok(v) = self.client.execute(condition, vec![]).await {
                let truthy = match &v {
                    Value::Null => false,
                    Value::Bool(b) => *b,
                    Value::String(s) => !s.is_empty(),
                    Value::Number(n) => n.as_f64() != Some(0.0),
                    _ => true,
                };
                if truthy {
                    return Ok(v);
                }
                last = v;
            }
            if Instant::now() > deadline {
                bail!(
                    "waiting {}s for `{}`; last value {last}",
                    timeout.as_secs(),
                    first_line(condition)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sets the `<select>` at `css` to `value` as a person's choice does (`change` and
    /// `input` events).
    pub async fn set_select(&self, css: &str, value: &str) -> Result<()> {
        self.wait_for(css).await?;
        self.js(
            "const s = document.querySelector(arguments[0]);
             s.value = arguments[1];
             s.dispatchEvent(new Event('change', { bubbles: true }));
             s.dispatchEvent(new Event('input', { bubbles: true }));",
            vec![json!(css), json!(value)],
        )
        .await?;
        Ok(())
    }

    /// On a group's page, once training ended (within `timeout`): its outcome's state
    /// (`done`, `failed`) and the text the person reads.
    pub async fn training_outcome(&self, timeout: Duration) -> Result<(String, String)> {
        let state = self
            .wait_until(
                "const o = document.getElementById('train-outcome');
                 return o && o.dataset.state;",
                timeout,
            )
            .await?;
        let text = self.wait_for("#train-outcome").await?.text().await?;
        Ok((state.as_str().unwrap_or_default().to_string(), text))
    }

    /// On a group's page: picks the local file and the backend and starts training (the
    /// worker then waits for its rounds).
    pub async fn train_with(&self, file: &Path, backend: &str) -> Result<()> {
        self.upload("#train-file", file).await?;
        self.set_select("#train-backend", backend).await?;
        self.click("#train-start").await?;
        self.wait_for("#train-run").await?;
        Ok(())
    }

    /// Waits up to `timeout` for an element matching `css`.
    pub async fn wait_for_long(&self, css: &str, timeout: Duration) -> Result<Element> {
        self.client
            .wait()
            .at_most(timeout)
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting {}s for `{css}`", timeout.as_secs()))
    }

    /// Clicks the download link matching `css` and returns the content of the file the
    /// browser saved (in this browser's own download folder): what the person downloaded.
    pub async fn download_text(&self, css: &str) -> Result<String> {
        let before: Vec<PathBuf> = list_dir(&self.downloads);
        self.click(css).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut empty_since = Instant::now();
        loop {
            let files = list_dir(&self.downloads);
            let pending = files
                .iter()
                .any(|f| f.extension().is_some_and(|e| e == "crdownload"));
            // Chromium reserves the final name with an empty file before the `.crdownload`
            // appears: an empty file counts as done only once it has stayed empty a while.
            if let Some(new) = files.iter().find(|f| !before.contains(f))
                && !pending
            {
                let text = std::fs::read_to_string(new)
                    .with_context(|| format!("reading the download {}", new.display()))?;
                if !text.is_empty() || Instant::now() > empty_since + Duration::from_secs(3) {
                    return Ok(text);
                }
            } else {
                empty_since = Instant::now();
            }
            if Instant::now() > deadline {
                bail!(
                    "clicking `{css}` downloaded nothing into {}",
                    self.downloads.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Signs up through the form and waits until the app shows the new account.
    pub async fn sign_up(
        &self,
        server: &Server,
        email: &str,
        name: &str,
        password: &str,
    ) -> Result<()> {
        self.client.goto(&format!("{}/sign-up", server.url)).await?;
        self.fill("#email", email).await?;
        self.fill("#display-name", name).await?;
        self.fill("#organisation", &format!("{name}'s lab")).await?;
        self.fill("#password", password).await?;
        self.click("form button[type='submit']").await?;
        self.wait_for_text("#nav-user", name).await?;
        Ok(())
    }

    /// Opens the groups page and fills the create form for a churn group trained on `sample`
    /// (target `Exited`, binary classification, the identifier columns left out, batch 16);
    /// the caller adds its own settings and submits.
    pub async fn fill_churn_group(
        &self,
        server: &Server,
        name: &str,
        sample: &Path,
        rounds: u32,
        epochs: u32,
        min_clients: u32,
    ) -> Result<()> {
        self.client.goto(&format!("{}/groups", server.url)).await?;
        self.fill("#group-name", name).await?;
        self.upload("#group-csv-file", sample).await?;
        self.wait_for_text("#group-target", "Exited").await?;
        self.set_select("#group-target", "Exited").await?;
        self.set_select("#group-task", "binary_classification")
            .await?;
        self.fill("#group-exclude", "RowNumber, CustomerId, Surname")
            .await?;
        self.fill("#group-rounds", &rounds.to_string()).await?;
        self.fill("#group-epochs", &epochs.to_string()).await?;
        self.fill("#group-batch", "16").await?;
        self.fill("#group-min-clients", &min_clients.to_string())
            .await?;
        Ok(())
    }

    /// Signs up, joins the group with `code` through the join form, and waits for the page of
    /// the group named `group`.
    pub async fn sign_up_and_join(
        &self,
        server: &Server,
        (email, name, password): (&str, &str, &str),
        code: &str,
        group: &str,
    ) -> Result<()> {
        self.sign_up(server, email, name, password).await?;
        self.client.goto(&format!("{}/groups", server.url)).await?;
        self.fill("#join-code", code).await?;
        self.click("#join-group-form button[type='submit']").await?;
        self.wait_for_text("#group-name", group).await?;
        Ok(())
    }

    /// Saves a screenshot to `e2e/artifacts/<name>.png` (for failed tests).
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let dir = repo_root().join("e2e/artifacts");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.client.screenshot().await?)?;
        Ok(path)
    }

    /// Saves a screenshot of the page as it is when `B3O_E2E_SCREENSHOTS=1` (to look at the
    /// pages a passing test went through); does nothing otherwise.
    pub async fn keep_screenshot(&self, name: &str) -> Result<()> {
        if std::env::var("B3O_E2E_SCREENSHOTS").is_ok_and(|v| v == "1") {
            self.screenshot(name).await?;
        }
        Ok(())
    }

    /// The window sizes [`screenshots`](Self::screenshots) shows a page at: a laptop and a
    /// phone (iPhone 12-15 viewport). The browser starts at the first.
    pub const SCREENSHOT_SIZES: [(u32, u32); 2] = [(1280, 900), (390, 844)];

    /// Saves the page at each of [`SCREENSHOT_SIZES`](Self::SCREENSHOT_SIZES) as
    /// `e2e/artifacts/<name>-<w>x<h>.png` (the window is resized through WebDriver, the page
    /// given a moment to lay out again), then restores the first size. Returns the paths.
    pub async fn screenshots(&self, name: &str) -> Result<Vec<PathBuf>> {
        let mut paths = Vec::new();
        for (w, h) in Self::SCREENSHOT_SIZES {
            self.client
                .set_window_size(w, h)
                .await
                .with_context(|| format!("resizing the window to {w}x{h}"))?;
            // Two animation frames: the resize is applied and the page laid out again.
            self.js_async(
                "const done = arguments[0];                  requestAnimationFrame(() => requestAnimationFrame(() => done(null)));",
                vec![],
            )
            .await?;
            paths.push(self.screenshot(&format!("{name}-{w}x{h}")).await?);
        }
        let (w, h) = Self::SCREENSHOT_SIZES[0];
        self.client.set_window_size(w, h).await?;
        Ok(paths)
    }

    /// Runs `check`; when it fails, saves a screenshot named after the test before returning.
    pub async fn check<F, T>(&self, name: &str, check: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        match check.await {
            Ok(value) => Ok(value),
            Err(e) => {
                match self.screenshot(name).await {
                    Ok(path) => eprintln!("screenshot of the failure: {}", path.display()),
                    Err(shot) => eprintln!("could not save a screenshot: {shot:#}"),
                }
                Err(e)
            }
        }
    }

    /// Like [`check`](Self::check) for tests driving several browsers: on failure, every
    /// browser's page is saved as `<name>-<i>.png`.
    pub async fn check_all<F, T>(name: &str, browsers: &[&Browser], check: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        match check.await {
            Ok(value) => Ok(value),
            Err(e) => {
                for (i, b) in browsers.iter().enumerate() {
                    match b.screenshot(&format!("{name}-{i}")).await {
                        Ok(path) => eprintln!("screenshot of the failure: {}", path.display()),
                        Err(shot) => eprintln!("could not save a screenshot: {shot:#}"),
                    }
                }
                Err(e)
            }
        }
    }

    /// Ends the WebDriver session, then (dropping `self`) chromedriver's process group.
    pub async fn close(self) -> Result<()> {
        self.client
            .clone()
            .close()
            .await
            .context("closing the browser")
    }
}

/// chromedriver started as the leader of its own process group, which the Chromium it starts
/// joins. Dropping it (a test's end, `close()`, or an early return without `close()`) kills the
/// whole group, then reaps chromedriver: killing chromedriver alone left its browser running.
/// Drop runs once, before the reaped id could name another group.
struct DriverGroup(Child);

impl Drop for DriverGroup {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn list_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

fn first_line(script: &str) -> &str {
    script.trim().lines().next().unwrap_or_default()
}

/// Chromium's network line for a 401 answer of the API, e.g. `http://127.0.0.1:1234/api/me -
/// Failed to load resource: the server responded with a status of 401 (Unauthorized)`.
fn is_expected_unauthorized(entry: &Value) -> bool {
    let message = entry["message"].as_str().unwrap_or_default();
    entry["source"] == "network" && message.contains("/api/") && message.contains("status of 401")
}

/// chromedriver's `POST /session/{id}/se/log` for the browser console.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::same_predictions;

    #[test]
    fn predictions_compare_labels_exactly_and_probabilities_within_tolerance() {
        let server = "id,x,prediction_label,prediction_probability\n1,a,yes,0.891628\n";
        assert!(
            same_predictions(
                "id,x,prediction_label,prediction_probability\n1,a,yes,0.891629\n",
                server
            )
            .is_ok()
        );
        assert!(
            same_predictions(
                "id,x,prediction_label,prediction_probability\n1,a,no,0.891628\n",
                server
            )
            .is_err()
        );
        assert!(
            same_predictions(
                "id,x,prediction_label,prediction_probability\n1,a,yes,0.9\n",
                server
            )
            .is_err()
        );
        assert!(
            same_predictions(
                "id,x,prediction_label,prediction_probability\n1,b,yes,0.891628\n",
                server
            )
            .is_err()
        );
        // Issue #21: every label's probability within the tolerance too; warnings exactly.
        let head =
            "id,prediction_label,prediction_probability,probability_no,probability_yes,warning\n";
        let server = format!("{head}1,yes,0.891628,0.108372,0.891628,\n");
        let close = format!("{head}1,yes,0.891628,0.108373,0.891629,\n");
        let far = format!("{head}1,yes,0.891628,0.2,0.891628,\n");
        let warned = format!("{head}1,yes,0.891628,0.108372,0.891628,x\n");
        assert!(same_predictions(&close, &server).is_ok());
        assert!(same_predictions(&far, &server).is_err());
        assert!(same_predictions(&warned, &server).is_err());
        assert!(
            same_predictions("id,x\n1,a\n", "id,x\n1,a\n").is_err(),
            "no prediction columns"
        );
    }
}
