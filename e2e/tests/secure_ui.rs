//! Issue #13 in real browsers: three partners train a secure group (SecAgg+) in their tabs;
//! one closes its tab after its key shares were sent; the round still completes (its masks
//! are removed with the others' shares), the owner's page says who dropped and that unmasking
//! succeeded, and the new version is promoted and predicts.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use b3o_e2e::{Api, Browser, Server, churn_rows, temp_file};
use serde_json::Value;

const PASSWORD: &str = "amber lantern 17 meadow";

async fn create_secure_group(
    server: &Server,
    browsers: [&Browser; 3],
    file: &std::path::Path,
) -> Result<i64> {
    let [owner, second, third] = browsers;
    owner
        .sign_up(server, "owner@example.org", "Olive Owner", PASSWORD)
        .await?;
    owner
        .fill_churn_group(server, "Secure churn", file, 1, 10, 2)
        .await?;
    owner.click("#group-secure").await?;
    owner
        .click("#create-group-form button[type='submit']")
        .await?;
    owner.wait_for("#group-secure").await?;
    let code = owner.wait_for("#join-code-value").await?.text().await?;
    let url = owner.client.current_url().await?;
    let group_id: i64 = url
        .path()
        .trim_start_matches("/groups/")
        .parse()
        .context("group id in the address")?;
    for (browser, email, name) in [
        (second, "bea@example.org", "Bea Branch"),
        (third, "cal@example.org", "Cal Branch"),
    ] {
        browser
            .sign_up_and_join(server, (email, name, PASSWORD), &code, "Secure churn")
            .await?;
    }
    Ok(group_id)
}

fn member_named(view: &Value, name: &str) -> Option<i64> {
    view["member_list"]
        .as_array()?
        .iter()
        .find(|m| m["name"].as_str().is_some_and(|n| n.contains(name)))?["member_id"]
        .as_i64()
}

#[tokio::test]
async fn a_tab_closed_after_sharing_its_keys_does_not_stop_a_secure_round() -> Result<()> {
    let server = Server::start()?;
    // Cal has far more rows: its training lasts long enough to close the tab before its
    // masked update leaves.
    let small = [churn_rows(0, 150)?, churn_rows(150, 150)?];
    let big = churn_rows(300, 6000)?;
    let files = [
        temp_file("site-0.csv", small[0].as_bytes())?,
        temp_file("site-1.csv", small[1].as_bytes())?,
        temp_file("site-2.csv", big.as_bytes())?,
    ];
    let owner = Browser::start().await?;
    let second = Browser::start().await?;
    let third = Browser::start().await?;
    let started = Browser::check_all("secure_start", &[&owner, &second, &third], async {
        let group_id = create_secure_group(&server, [&owner, &second, &third], &files[0].1).await?;
        owner.train_with(&files[0].1, "cpu").await?;
        second.train_with(&files[1].1, "cpu").await?;
        third.train_with(&files[2].1, "cpu").await?;
        owner
            .wait_until(
                "const m = document.getElementById('group-members');
                 return m && m.dataset.ready === '3';",
                Duration::from_secs(120),
            )
            .await?;
        owner.click("#start-training").await?;
        let api = Api::login(&server, "owner@example.org", PASSWORD).await?;
        let view = api.get_json(&format!("/api/groups/{group_id}")).await?;
        let cal = member_named(&view, "Cal").context("Cal's membership")?;
        // Wait until every member's shares are in, then close Cal's tab at once.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let r = api
                .get_json(&format!("/api/groups/{group_id}/rounds/1"))
                .await?;
            if r["secagg"]["shared"] == 3 {
                break;
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "shares never arrived: {r}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok((group_id, cal))
    })
    .await;
    third.close().await?;
    let outcome = async {
        let (group_id, cal) = started?;
        Browser::check_all("secure_run", &[&owner, &second], async {
            for (i, browser) in [&owner, &second].iter().enumerate() {
                let (state, text) = browser.training_outcome(Duration::from_secs(300)).await?;
                ensure!(state == "done", "browser {i} training {state}: {text}");
            }
            let api = Api::login(&server, "owner@example.org", PASSWORD).await?;
            let r1 = api
                .get_json(&format!("/api/groups/{group_id}/rounds/1"))
                .await?;
            ensure!(r1["state"] == "closed", "round 1: {r1}");
            ensure!(r1["secagg"]["unmasked"] == true, "round 1: {r1}");
            ensure!(
                r1["secagg"]["dropped"] == serde_json::json!([cal]),
                "Cal shared its keys and dropped before its update: {r1}"
            );
            // The owner's page tells who dropped and that unmasking succeeded.
            owner
                .wait_for_text("#secure-rounds tr[data-round='1'] .secure-dropped", "Cal")
                .await?;
            owner
                .wait_for("#secure-rounds tr[data-round='1'][data-unmasked='ok']")
                .await?;
            owner.screenshots("group-secure-owner").await?;

            // The version is promoted and predicts.
            let version = r1["result_version_id"]
                .as_i64()
                .context("round 1's version")?;
            owner
                .wait_until(
                    &format!(
                        "const s = document.getElementById('promote-version');
                         return s && s.value === '{version}';"
                    ),
                    Duration::from_secs(30),
                )
                .await?;
            owner.fill("#promote-name", "churn-secure").await?;
            owner.click("#promote-button").await?;
            let promoted = owner
                .wait_for("#promote-ok")
                .await?
                .attr("data-version")
                .await?;
            ensure!(
                promoted.as_deref() == Some(version.to_string().as_str()),
                "promoted {promoted:?}, expected {version}"
            );
            let probe = churn_rows(7000, 20)?;
            let predicted = api.predict_csv("churn-secure", &probe).await?;
            ensure!(
                predicted.lines().count() == 21 && predicted.contains("prediction"),
                "predictions: {predicted}"
            );
            Ok(())
        })
        .await
    }
    .await;
    for browser in [owner, second] {
        browser.close().await?;
    }
    outcome
}
