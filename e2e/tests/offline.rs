//! The app as an installed, offline-capable web app: manifest and service worker are served
//! as browsers need them, and a model used once keeps predicting with the server stopped.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use b3o_e2e::{Browser, Server, churn_rows, temp_file};

const PASSWORD: &str = "violet staircase 42 harbour";
const ENGINE_TIMEOUT: Duration = Duration::from_secs(90);

/// The manifest is JSON of the right type naming its icons, the service worker is a script
/// at the root that is always revalidated, and the icons it lists exist.
#[tokio::test]
async fn the_manifest_and_service_worker_are_served_for_installation() -> Result<()> {
    let server = Server::start()?;
    let http = reqwest::Client::new();
    let manifest = http
        .get(format!("{}/manifest.webmanifest", server.url))
        .send()
        .await?;
    ensure!(manifest.status() == 200, "manifest: {}", manifest.status());
    ensure!(
        manifest.headers()["content-type"] == "application/manifest+json",
        "manifest type {:?}",
        manifest.headers()["content-type"]
    );
    let manifest: serde_json::Value = manifest.json().await?;
    ensure!(manifest["start_url"].is_string() && manifest["display"] == "standalone");
    for icon in manifest["icons"].as_array().context("no icons")? {
        let src = icon["src"].as_str().context("icon without src")?;
        let r = http.get(format!("{}{src}", server.url)).send().await?;
        ensure!(r.status() == 200, "icon {src}: {}", r.status());
    }
    let sw = http.get(format!("{}/sw.js", server.url)).send().await?;
    ensure!(sw.status() == 200, "sw.js: {}", sw.status());
    ensure!(
        sw.headers()["cache-control"] == "no-cache",
        "sw.js cache-control {:?}",
        sw.headers()["cache-control"]
    );
    ensure!(
        sw.headers()["content-type"]
            .to_str()?
            .contains("javascript"),
        "sw.js type {:?}",
        sw.headers()["content-type"]
    );
    let body = sw.text().await?;
    ensure!(
        !body.contains("{{PRECACHE}}") && !body.contains("{{VERSION}}"),
        "the build did not fill in the service worker"
    );
    // A script that does not exist is a 404, not the app shell (a worker must not get HTML).
    let missing = http
        .get(format!("{}/engine/no-such-file.js", server.url))
        .send()
        .await?;
    ensure!(
        missing.status() == 404,
        "missing engine file: {}",
        missing.status()
    );
    Ok(())
}

/// A person predicts with the churn model once; the server then stops. Reloading the page
/// still shows the app (from the service worker) and the same model still scores a CSV in the
/// browser (from the engine's cache).
#[tokio::test]
async fn a_model_used_before_still_predicts_with_the_server_stopped() -> Result<()> {
    let mut server = Server::start_demo()?;
    let csv = churn_rows(10, 12)?;
    let (_dir, path) = temp_file("offline.csv", csv.as_bytes())?;
    let browser = Browser::start().await?;
    let url = format!("{}/predict/churn", server.url);
    let outcome = browser
        .check("offline_prediction", async {
            browser
                .sign_up(&server, "offline@example.org", "Off Line", PASSWORD)
                .await?;
            browser.client.goto(&url).await?;
            browser
                .wait_for_long("#engine-status[data-mode='local']", ENGINE_TIMEOUT)
                .await?;
            browser.upload("#csv-file", &path).await?;
            browser.click("#run-csv").await?;
            browser
                .wait_for_long("#predict-result[data-mode='local']", ENGINE_TIMEOUT)
                .await?;
            let online = browser.download_text("#download-csv").await?;
            // The service worker controls the page and finished caching the shell.
            browser
                .wait_until(
                    "return !!navigator.serviceWorker.controller;",
                    Duration::from_secs(30),
                )
                .await?;
            browser
                .js_async(
                    "const done = arguments[arguments.length - 1];
                     navigator.serviceWorker.ready.then(() => done(true), () => done(false));",
                    vec![],
                )
                .await?;

            server.stop();
            let down = reqwest::get(&url).await;
            ensure!(down.is_err(), "the server still answers");

            browser.client.goto(&url).await?;
            let status = browser
                .wait_for_long("#engine-status[data-mode='local']", ENGINE_TIMEOUT)
                .await?
                .text()
                .await?;
            ensure!(status.contains("browser"), "status offline: {status}");
            browser.upload("#csv-file", &path).await?;
            browser.wait_for("#csv-preview").await?;
            browser.click("#run-csv").await?;
            browser
                .wait_for_long("#predict-result[data-mode='local']", ENGINE_TIMEOUT)
                .await?;
            let offline = browser.download_text("#download-csv").await?;
            ensure!(
                offline == online,
                "offline predictions differ from online ones:\n{offline}\n---\n{online}"
            );
            Ok(())
        })
        .await;
    browser.close().await?;
    outcome
}
