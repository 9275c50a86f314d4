//! The embed widget on partner sites: one script tag and `<b3o-predict>` on a page of another
//! origin runs the model in the visitor's browser when that origin is on the model's
//! allow-list, and shows a refusal everywhere else.

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
             return { state: w.getAttribute('data-state'), text: s ? s.textContent : '' };",
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

#[tokio::test]
async fn the_widget_runs_on_an_allowed_partner_site_and_is_refused_elsewhere() -> Result<()> {
    let server = Server::start_demo()?;
    let allowed = StaticSite::start(partner_page(&server)).await?;
    let other = StaticSite::start(partner_page(&server)).await?;
    let admin = Api::admin(&server).await?;
    admin
        .send_json(
            reqwest::Method::PUT,
            "/api/deployments/churn/sharing",
            &json!({ "public": true, "allowed_origins": [allowed.origin] }),
        )
        .await?;
    let csv = churn_rows(200, 8)?;
    let expected = admin.predict_csv("churn", &csv).await?;

    let browser = Browser::start().await?;
    let outcome = browser
        .check("embed_partner_sites", async {
            browser.client.goto(&allowed.origin).await?;
            let state = wait_state(&browser, &["ready", "refused", "error"]).await?;
            ensure!(
                state == "ready",
                "on the allowed site the widget is {state}: {}",
                widget(&browser).await?
            );
            // The visitor picks a CSV in the widget's own file input.
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
            let state = wait_state(&browser, &["done", "error"]).await?;
            ensure!(state == "done", "prediction: {}", widget(&browser).await?);
            let result = browser
                .js_async(
                    "const done = arguments[arguments.length - 1];
                     const a = document.querySelector('b3o-predict').shadowRoot.querySelector('a.download');
                     fetch(a.href).then(r => r.text()).then(done, e => done('error: ' + e));",
                    vec![],
                )
                .await?;
            same_predictions(result.as_str().unwrap_or_default(), &expected)?;

            browser.client.goto(&other.origin).await?;
            let state = wait_state(&browser, &["ready", "refused", "error"]).await?;
            let shown = widget(&browser).await?;
            ensure!(state == "refused", "on a site not allowed the widget is {state}: {shown}");
            let text = shown["text"].as_str().unwrap_or_default();
            ensure!(
                text.contains("not allowed") && text.contains(&other.origin),
                "the refusal is not clear: {text}"
            );
            Ok(())
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
