//! Issue #20: what a first visit costs, counted twice and held to the budget both ways:
//! Chromium's own count (the sum of the page's Resource Timing `transferSize`: headers and
//! compressed bodies of the document and everything the page fetched) and everything the
//! server sent the browser on the wire (a proxy in front of the server), which also counts
//! what the engine's worker and the service worker fetch, outside the page's entries.
//! - An anonymous visitor opening the predict page, until the model runs in the browser and
//!   the service worker has cached the app for offline use: at most 1.5 MB.
//! - The embed widget on a partner's page, until it is ready: at most 1 MB (on the wire only:
//!   the partner's page sees the widget's cross-origin files as 0 bytes).

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use b3o_e2e::holding_proxy::HoldingProxy;
use b3o_e2e::{Api, Browser, Server, StaticSite};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(90);
/// 1.5 MB, in bytes (10^6: the budget is not stretched to MiB).
const PREDICT_PAGE_BUDGET: u64 = 1_500_000;
const EMBED_BUDGET: u64 = 1_000_000;

/// Waits until the proxy has sent nothing for a second (at most 30 s), then returns its count.
async fn settled(proxy: &HoldingProxy) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = proxy.downloaded();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = proxy.downloaded();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// The page's Resource Timing entries: `(url, transferSize)`, largest first.
async fn page_entries(browser: &Browser) -> Result<Vec<(String, u64)>> {
    let v = browser
        .js(
            "return performance.getEntries()
               .filter(e => e.transferSize !== undefined)
               .map(e => [e.name, e.transferSize]);",
            vec![],
        )
        .await?;
    let mut entries: Vec<(String, u64)> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e[0].as_str()?.to_string(), e[1].as_u64()?)))
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.1));
    Ok(entries)
}

fn report(what: &str, total: u64, entries: &[(String, u64)]) -> String {
    let listed: Vec<String> = entries
        .iter()
        .map(|(url, n)| format!("  {n:>9}  {url}"))
        .collect();
    let page: u64 = entries.iter().map(|e| e.1).sum();
    format!(
        "{what}: {total} bytes on the wire; the page's own entries (transferSize), {page} in all:\n{}",
        listed.join("\n")
    )
}

/// Both counts under `budget`: the page's entries (Chromium's `transferSize`, which leaves
/// out workers' fetches) and the proxy's (all of them). The page's count must have seen the
/// compressed assets: an empty or zero sum means the entries were not read.
fn within_budget(wire: u64, entries: &[(String, u64)], budget: u64, shown: &str) -> Result<()> {
    let page: u64 = entries.iter().map(|e| e.1).sum();
    ensure!(
        page > 10_000,
        "the page's entries count only {page} bytes: {shown}"
    );
    ensure!(
        page <= budget,
        "the page's entries count {page} bytes, over the {budget}-byte budget: {shown}"
    );
    ensure!(
        wire <= budget,
        "{wire} bytes on the wire, over the {budget}-byte budget: {shown}"
    );
    Ok(())
}

#[tokio::test]
async fn a_first_visit_to_the_predict_page_downloads_at_most_1_5_mb() -> Result<()> {
    let server = Server::start_demo()?;
    let proxy = HoldingProxy::start(&server.url).await?;
    let browser = Browser::start().await?;
    browser
        .check("first_load_predict", async {
            browser
                .client
                .goto(&format!("{}/predict/churn", proxy.url))
                .await?;
            browser
                .wait_for_long("#engine-status[data-mode='local']", TIMEOUT)
                .await?;
            // The app cached for offline use is part of a first visit.
            let sw = browser
                .js_async(
                    "const done = arguments[arguments.length - 1];
                     navigator.serviceWorker.ready.then(() => done(true), () => done(false));",
                    vec![],
                )
                .await?;
            ensure!(sw == json!(true), "the service worker did not install");
            let total = settled(&proxy).await;
            let entries = page_entries(&browser).await?;
            let shown = report("predict page, first visit", total, &entries);
            eprintln!("{shown}");
            ensure!(
                entries.iter().any(|(u, _)| u.contains("/assets/b3o-app")),
                "the app was not fetched through the proxy: {shown}"
            );
            within_budget(total, &entries, PREDICT_PAGE_BUDGET, &shown)?;
            Ok(())
        })
        .await
}

#[tokio::test]
async fn the_embed_widget_downloads_at_most_1_mb() -> Result<()> {
    let server = Server::start_demo()?;
    let proxy = HoldingProxy::start(&server.url).await?;
    let partner = StaticSite::start(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Partner</title></head>\
         <body><h1>Partner shop</h1>\
         <script src=\"{0}/embed.js\"></script>\
         <b3o-predict model=\"churn\" server=\"{0}\"></b3o-predict></body></html>",
        proxy.url
    ))
    .await?;
    let admin = Api::admin(&server).await?;
    admin
        .send_json(
            reqwest::Method::PUT,
            "/api/deployments/churn/sharing",
            &json!({ "public": true, "allowed_origins": [partner.origin] }),
        )
        .await?;
    let browser = Browser::start().await?;
    browser
        .check("first_load_embed", async {
            browser.client.goto(&partner.origin).await?;
            let state: Value = browser
                .wait_until(
                    "const w = document.querySelector('b3o-predict');
                     const s = w && w.getAttribute('data-state');
                     return ['ready', 'refused', 'error'].includes(s) ? s : null;",
                    TIMEOUT,
                )
                .await?;
            ensure!(state == json!("ready"), "the widget is {state}");
            let total = settled(&proxy).await;
            let entries = page_entries(&browser).await?;
            let shown = report("embed widget, first visit", total, &entries);
            eprintln!("{shown}");
            // The widget's files come from another origin than the partner's page, so the
            // page's entries show them as 0 bytes (no `Timing-Allow-Origin`): the wire counts.
            ensure!(
                total <= EMBED_BUDGET,
                "{total} bytes on the wire, over the {EMBED_BUDGET}-byte budget: {shown}"
            );
            Ok(())
        })
        .await
}
