//! Harness for B3O Edge's real-browser tests: starts the real `b3o` binary on a fresh data
//! directory and a real headless Chromium (through chromedriver), and gathers what a failing
//! test needs to be understood (console messages, screenshots).
//!
//! Fixtures are split into starting things ([`Server`], [`Browser`]), finding things on a
//! page ([`Browser::wait_for`]) and checks ([`Browser::console_errors`]).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// The repository root (this crate lives in `e2e/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e has a parent")
        .to_path_buf()
}

/// The `b3o` binary: `$B3O_BIN`, else the one cargo built next to this test binary.
fn b3o_binary() -> Result<PathBuf> {
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

/// A running `b3o serve` on 127.0.0.1 with its own temporary data directory.
pub struct Server {
    pub url: String,
    child: Child,
    _data: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Result<Self> {
        let data = tempfile::tempdir()?;
        let mut child = Command::new(b3o_binary()?)
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .arg("--static-dir")
            .arg(dist_dir()?)
            .env("RUST_LOG", "warn")
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
            child,
            _data: data,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Headless Chromium with a fresh profile and WebGPU through SwiftShader.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Result<Self> {
        let port = free_port()?;
        let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let mut driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting {chromedriver} (apt-get install chromium-driver)")
            })?;
        let profile = tempfile::tempdir()?;
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
                    format!("--user-data-dir={}", profile.path().display()),
                ],
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
                    let _ = driver.kill();
                    return Err(e).context("connecting to chromedriver");
                }
            }
        };
        Ok(Self {
            client,
            driver,
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

    /// Saves a screenshot to `e2e/artifacts/<name>.png` (for failed tests).
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let dir = repo_root().join("e2e/artifacts");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.client.screenshot().await?)?;
        Ok(path)
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

    pub async fn close(mut self) -> Result<()> {
        let result = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        result.context("closing the browser")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
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
