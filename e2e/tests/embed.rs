//! The embed widget on partner sites: one script tag and `<b3o-predict>` on a page of another
//! origin runs the model in the visitor's browser when the model's sharing settings let that
//! site embed it (listed, private or public; or any site, public), and says why not elsewhere.

use std::time::Duration;

use anyhow::{Result, ensure};
use b3o_e2e::{Api, Browser, Server, StaticSite, churn_rows, same_predictions};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(90);

fn partner_page(server: &Server) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Partner</title></head>\
         <body><h1>Partner shop</h1>\
         <script src=\"{0}/embed.js\"></script>\
         <b3o-predict model=\"churn\" server=\"{0}\"></b3o-predict></body></html>",
        server.url
    )
}

/// The widget's state and status text (inside its shadow root).
async fn widget(browser: &Browser) -> Result<Value> {
    browser
        .js(
            "const w = document.querySelector('b3o-predict');
             if (!w || !w.shadowRoot) return null;
             const s = w.shadowRoot.querySelector('[part=status]');
             return { state: w.getAttribute('data-state'), reason: w.getAttribute('data-reason'),
                      text: s ? s.textContent : '' };",
            vec![],
        )
        .await
}

async fn wait_state(browser: &Browser, states: &[&str]) -> Result<Value> {
    let list = json!(states).to_string();
    browser
        .wait_until(
            &format!(
                "const w = document.querySelector('b3o-predict');
                 const s = w && w.getAttribute('data-state');
                 return {list}.includes(s) ? s : null;"
            ),
            TIMEOUT,
        )
        .await
}

/// The visitor picks `csv` in the widget's own file input; the predictions it offers for
/// download must be the server's `expected` ones.
async fn predict_in_widget(browser: &Browser, csv: &str, expected: &str) -> Result<()> {
    browser
        .js(
            "const input = document.querySelector('b3o-predict').shadowRoot.querySelector('input[type=file]');
             const dt = new DataTransfer();
             dt.items.add(new File([arguments[0]], 'visitors.csv', { type: 'text/csv' }));
             input.files = dt.files;
             input.dispatchEvent(new Event('change'));",
            vec![json!(csv)],
        )
        .await?;
    let state = wait_state(browser, &["done", "error"]).await?;
    ensure!(state == "done", "prediction: {}", widget(browser).await?);
    let result = browser
        .js_async(
            "const done = arguments[arguments.length - 1];
             const a = document.querySelector('b3o-predict').shadowRoot.querySelector('a.download');
             fetch(a.href).then(r => r.text()).then(done, e => done('error: ' + e));",
            vec![],
        )
        .await?;
    same_predictions(result.as_str().unwrap_or_default(), expected)
}

/// Opens `site` and waits for the widget to settle; its state, reason and text.
async fn visit(browser: &Browser, site: &StaticSite) -> Result<(String, String, String)> {
    browser.client.goto(&site.origin).await?;
    let state = wait_state(browser, &["ready", "refused", "error"]).await?;
    let shown = widget(browser).await?;
    Ok((
        state.as_str().unwrap_or_default().to_string(),
        shown["reason"].as_str().unwrap_or_default().to_string(),
        shown["text"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Issue #21: sharing means what the model page says, on a partner site (listed) and on
/// another site (not listed), both other origins than the server's.
/// - private + the partner listed: the partner's visitors run it, without an account; the
///   other site hears that no such model is available to it;
/// - public + the partner listed: the partner runs it; the other site hears the model is
///   public but embedded by listed sites only;
/// - public + any site: the other site runs it too.
#[tokio::test]
async fn the_widget_follows_the_models_sharing_settings() -> Result<()> {
    let server = Server::start_demo()?;
    let partner = StaticSite::start(partner_page(&server)).await?;
    let other = StaticSite::start(partner_page(&server)).await?;
    let admin = Api::admin(&server).await?;
    let share = |body: Value| {
        let admin = &admin;
        async move {
            admin
                .send_json(
                    reqwest::Method::PUT,
                    "/api/deployments/churn/sharing",
                    &body,
                )
                .await
        }
    };
    let csv = churn_rows(200, 8)?;
    let expected = admin.predict_csv("churn", &csv).await?;

    let browser = Browser::start().await?;
    let outcome = browser
        .check("embed_partner_sites", async {
            // Private, the partner listed.
            share(json!({ "public": false, "allowed_origins": [partner.origin] })).await?;
            let (state, _, text) = visit(&browser, &partner).await?;
            ensure!(
                state == "ready",
                "private, on the listed site: {state}: {text}"
            );
            predict_in_widget(&browser, &csv, &expected).await?;
            let (state, reason, text) = visit(&browser, &other).await?;
            ensure!(
                state == "refused" && reason == "not-available",
                "private, on another site: {state} ({reason}): {text}"
            );
            ensure!(
                text.contains("private") && text.contains(&other.origin),
                "the refusal does not say why: {text}"
            );

            // Public, embedded by the listed partner only.
            share(json!({ "public": true, "allowed_origins": [partner.origin] })).await?;
            let (state, _, text) = visit(&browser, &partner).await?;
            ensure!(
                state == "ready",
                "public, on the listed site: {state}: {text}"
            );
            let (state, reason, text) = visit(&browser, &other).await?;
            ensure!(
                state == "refused" && reason == "site-not-listed",
                "public, listed sites only, on another site: {state} ({reason}): {text}"
            );
            ensure!(
                text.contains("public")
                    && text.contains("lets only the partner sites it lists")
                    && text.contains(&other.origin),
                "the refusal does not say why: {text}"
            );

            // Public, any site.
            share(json!({
                "public": true,
                "allowed_origins": [partner.origin],
                "embed_anywhere": true,
            }))
            .await?;
            let (state, _, text) = visit(&browser, &other).await?;
            ensure!(
                state == "ready",
                "public, any site, on another site: {state}: {text}"
            );
            predict_in_widget(&browser, &csv, &expected).await
        })
        .await;
    browser.close().await?;
    outcome
}

/// The engine and the widget are readable from any origin (CORS), so a partner page can load
/// them; the app itself is not.
#[tokio::test]
async fn engine_files_and_the_widget_are_public_static_assets() -> Result<()> {
    let server = Server::start()?;
    let http = reqwest::Client::new();
    let widget = http
        .get(format!("{}/embed.js", server.url))
        .header("origin", "http://partner.example")
        .send()
        .await?;
    ensure!(widget.status() == 200, "embed.js: {}", widget.status());
    ensure!(
        widget.headers()["access-control-allow-origin"] == "*",
        "embed.js without CORS"
    );
    let body = widget.text().await?;
    ensure!(
        body.contains("customElements.define(\"b3o-predict\""),
        "not the widget"
    );
    let shell = http.get(&server.url).send().await?;
    ensure!(
        !shell.headers().contains_key("access-control-allow-origin"),
        "the app shell must not be readable cross-origin"
    );
    Ok(())
}
