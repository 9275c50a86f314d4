//! Issue #17: a partner's tab closes after training but before its update reached the server
//! (its network was gone: a proxy holds the upload). The update was kept in the browser's
//! IndexedDB; reopening the group page sends it, says so, and the round counts it. The page is
//! saved at laptop and phone sizes (`e2e/artifacts/kept-update-*`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use b3o_e2e::holding_proxy::HoldingProxy;
use b3o_e2e::{Api, Browser, Server, churn_rows, temp_file};
use serde_json::Value;

const PASSWORD: &str = "amber lantern 42 keeps";
const EMAIL: &str = "kim@example.org";

async fn round(api: &Api, group_id: i64, n: i64) -> Result<Value> {
    api.get_json(&format!("/api/groups/{group_id}/rounds/{n}"))
        .await
}

#[tokio::test]
async fn a_tab_closed_before_its_upload_sends_the_kept_update_at_the_next_visit() -> Result<()> {
    let server = Server::start()?;
    let proxy = HoldingProxy::start(&server.url).await?;
    // The browser sees the server only through the proxy.
    let front = Server::alias(proxy.url.clone())?;
    let (_dir, file) = temp_file("branch.csv", churn_rows(0, 80)?.as_bytes())?;
    let tab = Browser::start().await?;
    let outcome = tab
        .check("kept_update", async {
            tab.sign_up(&front, EMAIL, "Kim Keeper", PASSWORD).await?;
            tab.fill_churn_group(&front, "Kept updates", &file, 2, 1, 1)
                .await?;
            tab.click("#create-group-form button[type='submit']")
                .await?;
            tab.wait_for("#join-code-value").await?;
            let url = tab.client.current_url().await?;
            let group_id: i64 = url
                .path()
                .trim_start_matches("/groups/")
                .parse()
                .context("group id in the address")?;
            tab.train_with(&file, "cpu").await?;
            tab.wait_until(
                "const m = document.getElementById('group-members');
                 return m && m.dataset.ready === '1';",
                Duration::from_secs(120),
            )
            .await
            .context("the member never became ready")?;

            // The network goes away just as the update leaves.
            proxy.hold_uploads(true);
            tab.click("#start-training").await?;
            tab.wait_until(
                &format!("return localStorage.getItem('b3o-kept-update-{group_id}') !== null;"),
                Duration::from_secs(180),
            )
            .await
            .context("the finished update was never kept")?;
            let started = Instant::now();
            while proxy.held() == 0 {
                ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "the update was never sent"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // The tab closes before any answer.
            tab.client.goto("about:blank").await?;
            let api = Api::login(&server, EMAIL, PASSWORD).await?;
            let r1 = round(&api, group_id, 1).await?;
            ensure!(
                r1["reported"] == 0 && r1["state"] == "open",
                "the held update reached the server: {r1}"
            );

            // The network is back; the partner opens the group page again.
            proxy.hold_uploads(false);
            tab.client
                .goto(&format!("{}/groups/{group_id}", front.url))
                .await?;
            let notice = tab
                .wait_for_long("#kept-update", Duration::from_secs(120))
                .await?;
            let text = notice.text().await?;
            ensure!(
                notice.attr("data-outcome").await?.as_deref() == Some("uploaded"),
                "the kept update was not uploaded: {text}"
            );
            ensure!(text.contains("round 1"), "{text}");
            let started = Instant::now();
            let r1 = loop {
                let r1 = round(&api, group_id, 1).await?;
                if r1["state"] == "closed" {
                    break r1;
                }
                ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "round 1 never closed: {r1}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            ensure!(r1["reported"] == 1, "{r1}");
            let versions = api
                .get_json(&format!("/api/groups/{group_id}/versions"))
                .await?;
            let v1 = versions["versions"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["round"] == 1))
                .context("no version from round 1")?;
            ensure!(
                v1["contributors"].as_array().map(Vec::len) == Some(1),
                "version 1 does not count the kept update: {v1}"
            );
            ensure!(
                tab.js(
                    &format!("return localStorage.getItem('b3o-kept-update-{group_id}');"),
                    vec![]
                )
                .await?
                .is_null(),
                "the page still thinks an update is kept"
            );
            tab.screenshots("kept-update").await?;

            // Members score any version on their own held-out rows from the model's page.
            let v1_id = v1["id"].as_i64().context("version id")?;
            api.send_json(
                reqwest::Method::PUT,
                "/api/deployments/kept-churn",
                &serde_json::json!({ "version_id": v1_id }),
            )
            .await?;
            tab.client
                .goto(&format!("{}/models/kept-churn", front.url))
                .await?;
            tab.wait_for("#score-version").await?;
            tab.set_select("#score-version-id", &v1_id.to_string())
                .await?;
            tab.upload("#score-file", &file).await?;
            tab.click("#score-start").await?;
            let scored = tab
                .wait_for_long("#deploy-done", Duration::from_secs(120))
                .await?
                .text()
                .await?;
            ensure!(scored.contains("held-out rows"), "{scored}");
            let version = api.get_json(&format!("/api/versions/{v1_id}")).await?;
            ensure!(
                version["federated"]["num_members"] == 1
                    && version["federated"]["num_samples"].as_u64() == Some(16),
                "the version does not count the member's evaluation: {version}"
            );
            Ok(())
        })
        .await;
    tab.close().await?;
    outcome
}
