use anyhow::{Context, Result, ensure};
use b3o_e2e::{Browser, Server};

/// A newcomer opens the app: the wasm bundle loads and runs, it reaches the server's API, and
/// nothing is logged as an error on the console.
#[tokio::test]
async fn home_page_loads_wasm_and_reaches_the_server_without_console_errors() -> Result<()> {
    let server = Server::start()?;
    let browser = Browser::start().await?;
    let outcome = browser
        .check("home_page", async {
            browser.client.goto(&server.url).await?;
            let status = browser.wait_for("#server-status[data-status]").await?;
            let text = status.text().await?;
            ensure!(
                status.attr("data-status").await?.as_deref() == Some("ok"),
                "server status shown as: {text}"
            );
            ensure!(text.contains("Server ok"), "unexpected status text: {text}");
            let errors = browser.console_errors().await?;
            ensure!(errors.is_empty(), "console errors: {errors:#?}");
            Ok(())
        })
        .await;
    browser.close().await?;
    outcome
}

/// The assets the page references are served with the types and caching browsers rely on.
#[tokio::test]
async fn assets_have_wasm_mime_type_compression_and_immutable_caching() -> Result<()> {
    let server = Server::start()?;
    let http = reqwest::Client::new();
    let index = http.get(&server.url).send().await?;
    ensure!(
        index.headers()["cache-control"] == "no-cache",
        "index.html must be revalidated"
    );
    let html = index.text().await?;
    let wasm = html
        .split('"')
        .find(|s| s.starts_with("/assets/") && s.ends_with(".wasm"))
        .context("index.html references no wasm asset")?;
    let response = http
        .get(format!("{}{wasm}", server.url))
        .header("accept-encoding", "gzip")
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "GET {wasm}: {}",
        response.status()
    );
    let headers = response.headers();
    ensure!(
        headers["content-type"] == "application/wasm",
        "content-type {:?}",
        headers["content-type"]
    );
    ensure!(
        headers.get("content-encoding").is_some_and(|v| v == "gzip"),
        "wasm not compressed"
    );
    ensure!(
        headers["cache-control"].to_str()?.contains("immutable"),
        "hashed asset not cached as immutable: {:?}",
        headers["cache-control"]
    );
    // Client-side routes fall back to the app shell rather than 404.
    let deep = http
        .get(format!("{}/models/churn", server.url))
        .send()
        .await?;
    ensure!(
        deep.status() == 200 && deep.text().await?.contains("<noscript>"),
        "SPA fallback missing"
    );
    Ok(())
}

/// Guards the guard: an error logged by the page must show up in `console_errors`, or the
/// "no console errors" checks above would pass vacuously.
#[tokio::test]
async fn console_errors_are_captured() -> Result<()> {
    let server = Server::start()?;
    let browser = Browser::start().await?;
    browser.client.goto(&server.url).await?;
    browser.wait_for("#server-status[data-status]").await?;
    browser
        .client
        .execute("console.error('e2e canary')", vec![])
        .await?;
    let errors = browser.console_errors().await?;
    browser.close().await?;
    ensure!(
        errors.iter().any(|e| e.contains("e2e canary")),
        "canary not captured: {errors:?}"
    );
    Ok(())
}

/// Every page renders for a signed-in administrator, headed by its title, with nothing logged
/// as an error. `B3O_E2E_SCREENSHOTS=1` saves each page to `e2e/artifacts/page-*.png`.
#[tokio::test]
async fn every_page_renders_for_an_administrator_without_console_errors() -> Result<()> {
    let server = Server::start_demo()?;
    let browser = Browser::start().await?;
    let outcome = browser
        .check("every_page", async {
            browser
                .client
                .goto(&format!("{}/sign-in", server.url))
                .await?;
            browser.fill("#email", b3o_e2e::ADMIN_EMAIL).await?;
            browser.fill("#password", b3o_e2e::ADMIN_PASSWORD).await?;
            browser.click("form button[type='submit']").await?;
            browser.wait_for("#nav-user").await?;
            for (path, heading) in [
                ("/models", "Models"),
                ("/models/churn", "churn"),
                ("/groups", "Training groups"),
                ("/history", "History"),
                ("/admin", "Administration"),
                ("/profile", "Your profile"),
            ] {
                browser
                    .client
                    .goto(&format!("{}{path}", server.url))
                    .await?;
                browser
                    .wait_for_text("main h1", heading)
                    .await
                    .with_context(|| format!("page {path}"))?;
                // Let the page's requests finish before reading the console.
                tokio::time::sleep(std::time::Duration::from_millis(800)).await;
                browser
                    .keep_screenshot(&format!("page{}", path.replace('/', "-")))
                    .await?;
                let errors = browser.console_errors().await?;
                ensure!(errors.is_empty(), "console errors on {path}: {errors:#?}");
            }
            Ok(())
        })
        .await;
    browser.close().await?;
    outcome
}

/// The API reference at `/api/docs` renders in a real browser from this server's files alone
/// (the Content-Security-Policy refuses anything else): the title, every documented operation,
/// and no console errors (a refused script or style would log one).
#[tokio::test]
async fn the_api_reference_renders_every_operation_without_console_errors() -> Result<()> {
    let server = Server::start()?;
    let doc: serde_json::Value = reqwest::get(format!("{}/api/openapi.json", server.url))
        .await?
        .json()
        .await?;
    let operations: usize = doc["paths"]
        .as_object()
        .context("no paths in /api/openapi.json")?
        .values()
        .map(|item| item.as_object().map_or(0, |m| m.len()))
        .sum();
    ensure!(operations > 50, "only {operations} operations documented");
    let browser = Browser::start().await?;
    let outcome = browser
        .check("api_docs", async {
            browser
                .client
                .goto(&format!("{}/api/docs", server.url))
                .await?;
            let title = browser
                .wait_for_text(".info .title", "B3O Edge API")
                .await?;
            ensure!(title.contains("B3O Edge API"), "title: {title}");
            let shown = browser
                .wait_until(
                    &format!(
                        "return document.querySelectorAll('.opblock').length >= {operations} \
                         ? document.querySelectorAll('.opblock').length : null"
                    ),
                    std::time::Duration::from_secs(30),
                )
                .await?;
            ensure!(
                shown.as_u64() >= Some(operations as u64),
                "{shown} operations shown, {operations} documented"
            );
            let errors = browser.console_errors().await?;
            ensure!(errors.is_empty(), "console errors: {errors:#?}");
            Ok(())
        })
        .await;
    browser.close().await?;
    outcome
}

/// Every Chromium process (browser, renderers, GPU process) still running with `profile` as
/// its `--user-data-dir`, read from /proc.
fn chromium_processes_of(profile: &std::path::Path) -> Vec<String> {
    let flag = format!("--user-data-dir={}", profile.join("chrome").display());
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.contains(&flag).then(|| format!("{pid} {}", args[0]))
        })
        .collect()
}

/// A test that returns early (a failed `?`, an `ensure!`) drops its browser without
/// `close()`: that must not leave the browser running. Killing chromedriver alone did, two
/// Chromiums a run from the first-load tests, which never closed theirs.
#[tokio::test]
async fn a_browser_dropped_without_close_leaves_no_chromium_running() -> Result<()> {
    let browser = Browser::start().await?;
    browser.client.goto("about:blank").await?;
    let profile = browser
        .downloads
        .parent()
        .context("the downloads folder is inside the profile")?
        .to_path_buf();
    ensure!(
        !chromium_processes_of(&profile).is_empty(),
        "no Chromium process found for {}: the check cannot see the browser",
        profile.display()
    );
    drop(browser);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = chromium_processes_of(&profile);
        if left.is_empty() {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "10 s after the browser was dropped, these Chromium processes still run: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
