//! Codeless inference on `/predict`: a CSV scored in the browser gives exactly the server's
//! answer; a malformed CSV is explained and never sent; the server takes over when the engine
//! cannot run; a drawn digit gets live probabilities; an image unlike the digits gets an
//! out-of-distribution warning, a digit none.

use std::time::Duration;

use anyhow::{Result, ensure};
use b3o_e2e::{Api, Browser, Server, churn_rows, same_predictions, temp_file};

const PASSWORD: &str = "violet staircase 42 harbour";
const ENGINE_TIMEOUT: Duration = Duration::from_secs(90);

/// URLs of every request the page made so far (Resource Timing), for "nothing was sent".
async fn requested_urls(browser: &Browser) -> Result<Vec<String>> {
    let v = browser
        .js(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            vec![],
        )
        .await?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect())
}

/// A newcomer signs up, opens the churn model, drops a CSV, previews it, runs it in the
/// browser and downloads it: the file is byte for byte what the server's codeless endpoint
/// answers for the same CSV, and no prediction request reached the server.
#[tokio::test]
async fn csv_predictions_made_in_the_browser_equal_the_server_endpoint() -> Result<()> {
    let server = Server::start_demo()?;
    let csv = churn_rows(0, 25)?;
    let (_dir, path) = temp_file("customers.csv", csv.as_bytes())?;
    let browser = Browser::start().await?;
    let outcome = browser
        .check("predict_csv_local", async {
            browser
                .sign_up(&server, "ada@example.org", "Ada Lovelace", PASSWORD)
                .await?;
            browser
                .client
                .goto(&format!("{}/predict/churn", server.url))
                .await?;
            browser
                .wait_for_long("#engine-status[data-mode='local']", ENGINE_TIMEOUT)
                .await?;
            browser.upload("#csv-file", &path).await?;
            let preview = browser.wait_for_text("#csv-preview", "CreditScore").await?;
            ensure!(
                preview.contains("Hargrave"),
                "preview lacks the first row: {preview}"
            );
            browser.click("#run-csv").await?;
            browser
                .wait_for_long("#predict-result[data-mode='local']", ENGINE_TIMEOUT)
                .await?;
            browser.keep_screenshot("page-predict-csv").await?;
            let downloaded = browser.download_text("#download-csv").await?;
            let name = browser
                .wait_for("#download-csv")
                .await?
                .attr("download")
                .await?;
            ensure!(
                name.as_deref() == Some("customers-predictions.csv"),
                "download named {name:?}"
            );
            let urls = requested_urls(&browser).await?;
            ensure!(
                !urls.iter().any(|u| u.contains("/api/predict/")),
                "the browser asked the server to predict: {urls:#?}"
            );

            let api = Api::login(&server, "ada@example.org", PASSWORD).await?;
            let expected = api.predict_csv("churn", &csv).await?;
            same_predictions(&downloaded, &expected)?;
            ensure!(
                downloaded
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .contains("prediction_label,prediction_probability,probability_"),
                "no prediction columns: {}",
                downloaded.lines().next().unwrap_or_default()
            );
            let errors = browser.console_errors().await?;
            ensure!(errors.is_empty(), "console errors: {errors:#?}");
            Ok(())
        })
        .await;
    browser.close().await?;
    outcome
}

/// A CSV with a row of the wrong width and a word in a number column: the page names the line
/// (and column), the Predict button stays disabled, and no request carries the file anywhere.
#[tokio::test]
async fn a_malformed_csv_is_explained_and_nothing_is_sent() -> Result<()> {
    let server = Server::start_demo()?;
    let good = churn_rows(0, 3)?;
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    // Line 3 (the second data row) loses its last cell.
    let cut = lines[2].rfind(',').unwrap_or(lines[2].len());
    lines[2].truncate(cut);
    let ragged = lines.join("\n") + "\n";
    let (_dir, ragged_path) = temp_file("ragged.csv", ragged.as_bytes())?;
    let browser = Browser::start().await?;
    let outcome = browser
        .check("predict_malformed_csv", async {
            browser
                .sign_up(&server, "grace@example.org", "Grace Hopper", PASSWORD)
                .await?;
            browser
                .client
                .goto(&format!("{}/predict/churn", server.url))
                .await?;
            browser
                .wait_for_long("#engine-status[data-mode]", ENGINE_TIMEOUT)
                .await?;
            browser.upload("#csv-file", &ragged_path).await?;
            let message = browser.wait_for_text("#csv-error", "Line 3").await?;
            ensure!(
                message.contains("ragged.csv") && message.contains("cells"),
                "unclear message: {message}"
            );
            let alert = browser.wait_for("#csv-error").await?.attr("role").await?;
            ensure!(
                alert.as_deref() == Some("alert"),
                "the error is not announced"
            );
            let run = browser.wait_for("#run-csv").await?;
            ensure!(
                run.attr("disabled").await?.is_some(),
                "Predict is enabled for a malformed file"
            );
            run.click().await.ok();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let urls = requested_urls(&browser).await?;
            ensure!(
                !urls
                    .iter()
                    .any(|u| u.contains("/api/predict/") || u.contains("/api/jobs")),
                "the malformed file was sent: {urls:#?}"
            );
            ensure!(
                browser
                    .client
                    .find_all(fantoccini::Locator::Css("#predict-result"))
                    .await?
                    .is_empty(),
                "a result appeared for a malformed file"
            );
            Ok(())
        })
        .await;
    browser.close().await?;
    outcome
}

/// When this browser cannot run the engine (no Web Workers here), the page says so and the
/// same CSV is scored by the server, with the same result as the endpoint.
#[tokio::test]
async fn the_server_predicts_when_the_browser_cannot_and_the_page_says_so() -> Result<()> {
    let server = Server::start_demo()?;
    let csv = churn_rows(100, 10)?;
    let (_dir, path) = temp_file("few.csv", csv.as_bytes())?;
    let browser = Browser::start().await?;
    let outcome = browser
        .check("predict_server_fallback", async {
            browser
                .sign_up(&server, "alan@example.org", "Alan Turing", PASSWORD)
                .await?;
            browser
                .client
                .goto(&format!("{}/predict", server.url))
                .await?;
            browser.wait_for("#model-select").await?;
            // An old browser: no workers. The engine is started on first use, after this.
            browser.js("window.Worker = undefined;", vec![]).await?;
            browser
                .js(
                    "const s = document.getElementById('model-select');
                     if (![...s.options].some(o => o.value === 'churn')) {
                       const o = document.createElement('option'); o.value = 'churn'; s.append(o);
                     }
                     s.value = 'churn'; s.dispatchEvent(new Event('change'));",
                    vec![],
                )
                .await?;
            let status = browser
                .wait_for_long("#engine-status[data-mode='server']", ENGINE_TIMEOUT)
                .await?
                .text()
                .await?;
            ensure!(
                status.contains("not available") && status.contains("server"),
                "the fallback is not explained: {status}"
            );
            browser.upload("#csv-file", &path).await?;
            browser.wait_for("#csv-preview").await?;
            browser.click("#run-csv").await?;
            browser
                .wait_for_long("#predict-result[data-mode='server']", ENGINE_TIMEOUT)
                .await?;
            let downloaded = browser.download_text("#download-csv").await?;
            let api = Api::login(&server, "alan@example.org", PASSWORD).await?;
            // The page asked the server itself: the very same bytes.
            let expected = api.predict_csv("churn", &csv).await?;
            ensure!(
                downloaded == expected,
                "the page's server prediction differs from the endpoint's:\n--- page\n{downloaded}\n--- endpoint\n{expected}"
            );
            Ok(())
        })
        .await;
    browser.close().await?;
    outcome
}

/// A digit drawn on the canvas (pointer events) is classified as it is drawn: ten labels with
/// probabilities summing to one, the most likely one named; Clear empties it.
#[tokio::test]
async fn a_drawn_digit_gets_live_probabilities() -> Result<()> {
    let server = Server::start_demo()?;
    let browser = Browser::start().await?;
    let outcome = browser
        .check("predict_draw_digit", async {
            browser
                .sign_up(&server, "kat@example.org", "Katherine Johnson", PASSWORD)
                .await?;
            browser
                .client
                .goto(&format!("{}/predict/digits", server.url))
                .await?;
            browser
                .wait_for_long("#engine-status[data-mode='local']", ENGINE_TIMEOUT)
                .await?;
            browser.wait_for("#digit-canvas").await?;
            // A vertical stroke: a "1".
            browser
                .js(
                    "const c = document.getElementById('digit-canvas');
                     const r = c.getBoundingClientRect();
                     const ev = (type, x, y) => c.dispatchEvent(new PointerEvent(type, {
                       clientX: r.left + x * r.width, clientY: r.top + y * r.height,
                       pointerId: 1, pointerType: 'mouse', isPrimary: true, buttons: 1, bubbles: true }));
                     ev('pointerdown', 0.5, 0.2);
                     for (let i = 1; i <= 12; i++) ev('pointermove', 0.5 + i * 0.004, 0.2 + i * 0.05);
                     ev('pointerup', 0.55, 0.8);",
                    vec![],
                )
                .await?;
            let bars = browser
                .wait_until(
                    "const bars = [...document.querySelectorAll('#digit-probabilities li')];
                     return bars.length ? bars.map(b => Number(b.dataset.probability)) : null;",
                    ENGINE_TIMEOUT,
                )
                .await?;
            let probabilities: Vec<f64> = bars
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_f64())
                .collect();
            ensure!(probabilities.len() == 10, "{} classes shown", probabilities.len());
            browser.keep_screenshot("page-predict-digit").await?;
            let sum: f64 = probabilities.iter().sum();
            ensure!((sum - 1.0).abs() < 1e-3, "probabilities sum to {sum}");
            let label = browser.wait_for("#digit-label").await?.attr("data-label").await?;
            ensure!(
                label.as_deref().is_some_and(|l| l.len() == 1),
                "no single-digit verdict: {label:?}"
            );
            browser.click("#clear-canvas").await?;
            browser
                .wait_until(
                    "return !document.querySelector('#digit-probabilities');",
                    Duration::from_secs(10),
                )
                .await?;
            let errors = browser.console_errors().await?;
            ensure!(errors.is_empty(), "console errors: {errors:#?}");
            Ok(())
        })
        .await;
    browser.close().await?;
    outcome
}

/// A grey image as a PNG file's bytes.
fn png(img: &image::GrayImage) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// Issue #21: trousers (two light legs from edge to edge) uploaded to the digits model get
/// an answer and a visible, non-blocking `.ood-warning`; a digit-like stroke gets none.
#[tokio::test]
async fn an_image_unlike_the_digits_gets_a_warning_and_a_digit_none() -> Result<()> {
    let server = Server::start_demo()?;
    let trousers = png(&image::GrayImage::from_fn(28, 28, |x, y| {
        let leg = (5..13).contains(&x) || (15..23).contains(&x);
        let waist = y < 5 && (5..23).contains(&x);
        image::Luma([if leg || waist { 200 } else { 0 }])
    }))?;
    let one = png(&image::GrayImage::from_fn(28, 28, |x, y| {
        image::Luma([if (13..16).contains(&x) && (4..24).contains(&y) {
            255
        } else {
            0
        }])
    }))?;
    let (_d1, trousers_path) = temp_file("trousers.png", &trousers)?;
    let (_d2, one_path) = temp_file("one.png", &one)?;
    let browser = Browser::start().await?;
    let outcome = browser
        .check("predict_image_ood", async {
            browser
                .sign_up(&server, "mary@example.org", "Mary Somerville", PASSWORD)
                .await?;
            browser
                .client
                .goto(&format!("{}/predict/digits", server.url))
                .await?;
            browser
                .wait_for_long("#engine-status[data-mode]", ENGINE_TIMEOUT)
                .await?;
            browser.upload("#image-file", &trousers_path).await?;
            browser
                .wait_for_long("#image-label[data-label]", ENGINE_TIMEOUT)
                .await?;
            let warning = browser
                .wait_for_long("#image-ood-warning.ood-warning", ENGINE_TIMEOUT)
                .await?
                .text()
                .await?;
            ensure!(
                warning.contains("out of distribution"),
                "unclear warning: {warning}"
            );
            browser.keep_screenshot("page-predict-image-ood").await?;
            browser.upload("#image-file", &one_path).await?;
            // The trousers' answer had a warning: an answer without one is the stroke's.
            let label = browser
                .wait_until(
                    "const l = document.querySelector('#image-label[data-label]');
                     return l && !document.querySelector('.ood-warning') ? l.dataset.label : null;",
                    ENGINE_TIMEOUT,
                )
                .await
                .map_err(|e| anyhow::anyhow!("the digit was warned about, or no answer: {e}"))?;
            ensure!(label == "1", "the stroke is not a 1: {label}");
            let errors = browser.console_errors().await?;
            ensure!(errors.is_empty(), "console errors: {errors:#?}");
            Ok(())
        })
        .await;
    browser.close().await?;
    outcome
}

/// The page's JSON shapes stay in step with the server: the package the predict page reads.
#[tokio::test]
async fn the_demo_package_names_the_columns_the_page_checks() -> Result<()> {
    let server = Server::start_demo()?;
    let api = Api::register(&server, "pkg@example.org", PASSWORD).await?;
    let package = api.get_json("/api/deployments/churn/package").await?;
    let features = package["spec"]["preprocessing"]["features"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(!features.is_empty(), "no features in {package}");
    ensure!(
        features
            .iter()
            .all(|f| f["column"].is_string() && f["kind"].is_string()),
        "features without column or kind: {features:?}"
    );
    ensure!(
        package["version"].is_i64(),
        "version: {}",
        package["version"]
    );
    Ok(())
}

/// A batch job (a file scored on the server) shows on the history page, which follows it to
/// the end by itself, and its result downloads as the same CSV the codeless endpoint returns.
#[tokio::test]
async fn a_batch_job_shows_in_history_and_its_result_downloads() -> Result<()> {
    let server = Server::start_demo()?;
    let csv = churn_rows(200, 400)?;
    let browser = Browser::start().await?;
    let outcome = browser
        .check("history_job", async {
            browser
                .sign_up(&server, "grace@example.org", "Grace Hopper", PASSWORD)
                .await?;
            let api = Api::login(&server, "grace@example.org", PASSWORD).await?;
            let response = api
                .request(
                    reqwest::Method::POST,
                    "/api/jobs?model=churn&filename=customers.csv",
                )
                .header("content-type", "text/csv")
                .body(csv.clone())
                .send()
                .await?;
            let status = response.status();
            ensure!(
                status.as_u16() == 202,
                "POST /api/jobs answered {status}: {}",
                response.text().await?
            );
            browser
                .client
                .goto(&format!("{}/history", server.url))
                .await?;
            // No click on Refresh: the page looks again while the job is queued or running.
            browser
                .wait_for_long("#job-table tr[data-status='succeeded']", ENGINE_TIMEOUT)
                .await?;
            let table = browser.wait_for_text("#job-table", "customers.csv").await?;
            ensure!(
                table.contains("churn"),
                "the job's model is not shown: {table}"
            );
            let downloaded = browser.download_text(".job-result").await?;
            let answer = api.predict_csv("churn", &csv).await?;
            // Which line differs first, and the sizes: a partial download and a number rounded
            // differently read differently.
            let first = downloaded
                .lines()
                .zip(answer.lines())
                .position(|(a, b)| a != b);
            ensure!(
                downloaded == answer,
                "the job's result differs from the codeless endpoint's answer: {} vs {} bytes, \
                 first difference at line {first:?}: {:?} vs {:?}",
                downloaded.len(),
                answer.len(),
                first.and_then(|i| downloaded.lines().nth(i)),
                first.and_then(|i| answer.lines().nth(i)),
            );
            Ok(())
        })
        .await;
    browser.close().await?;
    outcome
}
