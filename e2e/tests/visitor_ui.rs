//! A visitor without an account, as issue #21 tried it: from the home page to a prediction of
//! a public demo model by clicks only; a public model's page readable anonymously, its metrics
//! labelled with whose data they were computed on (`data-metric-source`). Every page is saved
//! at laptop and phone sizes (`Browser::screenshots`, `e2e/artifacts/visitor-*`).

use std::time::Duration;

use anyhow::{Result, ensure};
use b3o_e2e::{Browser, Server, churn_rows, temp_file};

const PASSWORD: &str = "violet staircase 42 harbour";
const ENGINE_TIMEOUT: Duration = Duration::from_secs(90);

/// Home → "Try it" on churn → the predict page → a CSV → predictions, the added columns
/// first in the preview and explained; no account at any point.
#[tokio::test]
async fn an_anonymous_visitor_reaches_a_demo_prediction_from_the_home_page() -> Result<()> {
    let server = Server::start_demo()?;
    let csv = churn_rows(0, 12)?;
    let (_dir, path) = temp_file("customers.csv", csv.as_bytes())?;
    let browser = Browser::start().await?;
    let outcome = browser
        .check("visitor_home_to_prediction", async {
            browser.client.goto(&server.url).await?;
            let card = browser.wait_for_text("#public-models", "Try it").await?;
            ensure!(
                card.contains("churn"),
                "no churn card on the home page: {card}"
            );
            ensure!(
                card.contains("digits"),
                "no digits card on the home page: {card}"
            );
            browser.screenshots("visitor-home").await?;

            browser.click("#try-churn").await?;
            browser
                .wait_for_long("#engine-status[data-mode]", ENGINE_TIMEOUT)
                .await?;
            let url = browser.client.current_url().await?;
            ensure!(url.path() == "/predict/churn", "Try it opened {url}");
            // The picker lists the public models for visitors too.
            browser
                .wait_for("#model-select option[value='digits']")
                .await?;
            browser.upload("#csv-file", &path).await?;
            browser.wait_for("#csv-preview").await?;
            browser.click("#run-csv").await?;
            let result = browser
                .wait_for_long("#predict-result", ENGINE_TIMEOUT)
                .await?
                .text()
                .await?;
            ensure!(result.contains("12 row(s) predicted"), "result: {result}");
            // The model's columns lead the preview, and each is explained.
            let first = browser
                .js(
                    "return [...document.querySelectorAll('#result-preview thead th')]\
                     .slice(0, 2).map(th => th.textContent);",
                    vec![],
                )
                .await?;
            ensure!(
                first == serde_json::json!(["prediction_label", "prediction_probability"]),
                "the preview starts with {first}"
            );
            let help = browser
                .wait_for_text("#prediction-help", "prediction_probability")
                .await?;
            ensure!(
                help.contains("probability (0 to 1) of the label it predicted"),
                "prediction_probability unexplained: {help}"
            );
            browser.screenshots("visitor-predict").await?;
            Ok(())
        })
        .await;
    browser.close().await?;
    outcome
}

/// `/models` lists the public demos to visitors; churn's page reads without an account: what
/// it predicts, its inputs, its served version's metrics labelled as the server's test set.
/// A new account is greeted "Welcome" (not "Welcome back") and still sees the public demos.
#[tokio::test]
async fn a_public_models_page_reads_anonymously_with_labelled_metrics() -> Result<()> {
    let server = Server::start_demo()?;
    let browser = Browser::start().await?;
    let outcome = browser
        .check("visitor_model_page", async {
            browser
                .client
                .goto(&format!("{}/models", server.url))
                .await?;
            browser.wait_for("#models [data-model='churn']").await?;
            browser.wait_for("#models [data-model='digits']").await?;
            browser.click("#models a[href='/models/churn']").await?;
            let label = browser
                .wait_for_text(
                    "#model-metrics[data-metric-source='test'] .metric-source",
                    "test set",
                )
                .await?;
            ensure!(label.contains("every row counted once"), "label: {label}");
            let metrics = browser
                .wait_for_text("#model-metrics dl", "accuracy")
                .await?;
            ensure!(metrics.contains("rows scored"), "metrics: {metrics}");
            let what = browser.wait_for_text("#model-what", "Predicts").await?;
            ensure!(what.contains("columns"), "what it predicts: {what}");
            browser.wait_for("#model-inputs li").await?;
            browser.wait_for("#model-public").await?;
            let body = browser.wait_for("body").await?.text().await?;
            ensure!(
                !body.contains("Sign in first"),
                "the page asks to sign in: {body}"
            );
            browser.screenshots("visitor-model").await?;

            browser
                .sign_up(&server, "grace@example.org", "Grace Hopper", PASSWORD)
                .await?;
            let welcome = browser.wait_for_text("#welcome", "Grace Hopper").await?;
            ensure!(
                welcome.starts_with("Welcome, Grace Hopper"),
                "a new account is greeted: {welcome}"
            );
            browser
                .client
                .goto(&format!("{}/models", server.url))
                .await?;
            browser.wait_for("#models [data-model='churn']").await?;
            Ok(())
        })
        .await;
    browser.close().await?;
    outcome
}
