//! Federated training through the web app: an owner creates a group from a sample of its CSV,
//! two more people join with the code, the three browsers (separate profiles, their own local
//! files) train two rounds — one on WebGPU (SwiftShader), the others on the CPU — the new
//! version is promoted, and inference in the browser uses it.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use b3o_e2e::{Api, Browser, Server, churn_rows, same_predictions, temp_file};

const PASSWORD: &str = "violet staircase 42 harbour";
const TRAINING_TIMEOUT: Duration = Duration::from_secs(600);
const ROWS_PER_MEMBER: usize = 60;

#[tokio::test]
async fn three_browsers_train_a_group_model_which_is_promoted_and_used() -> Result<()> {
    let server = Server::start()?;
    let mut files = Vec::new();
    for i in 0..3 {
        let csv = churn_rows(i * ROWS_PER_MEMBER, ROWS_PER_MEMBER)?;
        files.push(temp_file(&format!("site-{i}.csv"), csv.as_bytes())?);
    }
    let probe_csv = churn_rows(1000, 15)?;
    let (_probe_dir, probe) = temp_file("probe.csv", probe_csv.as_bytes())?;

    let owner = Browser::start().await?;
    let second = Browser::start().await?;
    let third = Browser::start().await?;
    let all = [&owner, &second, &third];
    let outcome = Browser::check_all("federated_three_browsers", &all, async {
        // The owner creates the group from a sample of its file.
        owner
            .sign_up(&server, "owner@example.org", "Olive Owner", PASSWORD)
            .await?;
        owner
            .fill_churn_group(&server, "Churn across branches", &files[0].1, 2, 1, 3)
            .await?;
        owner
            .fill(
                "#group-description",
                "Which customers leave, from three branches' data.",
            )
            .await?;
        owner
            .click("#create-group-form button[type='submit']")
            .await?;
        let code = owner.wait_for("#join-code-value").await?.text().await?;
        let group_url = owner.client.current_url().await?;
        ensure!(
            group_url.path().starts_with("/groups/"),
            "not on the group page: {group_url}"
        );
        let data_note = owner
            .wait_for_text("#data-stays", "stays on this machine")
            .await?;
        ensure!(
            data_note.contains("never rows"),
            "privacy note: {data_note}"
        );

        // Two members join with the code, each from its own browser profile.
        for (browser, email, name) in [
            (&second, "bea@example.org", "Bea Branch"),
            (&third, "cal@example.org", "Cal Branch"),
        ] {
            browser
                .sign_up_and_join(
                    &server,
                    (email, name, PASSWORD),
                    &code,
                    "Churn across branches",
                )
                .await?;
        }

        // Everyone picks its own local file; the owner trains on the GPU, the others on the CPU.
        owner.train_with(&files[0].1, "wgpu").await?;
        second.train_with(&files[1].1, "cpu").await?;
        third.train_with(&files[2].1, "cpu").await?;

        owner
            .wait_until(
                "const m = document.getElementById('group-members');
                 return m && m.dataset.ready === '3';",
                Duration::from_secs(120),
            )
            .await
            .context("the three members never became ready")?;
        owner.click("#start-training").await?;

        for (i, browser) in all.iter().enumerate() {
            let (state, text) = browser.training_outcome(TRAINING_TIMEOUT).await?;
            ensure!(state == "done", "browser {i} training {state}: {text}");
        }
        let gpu = owner
            .wait_for("#train-backend-used")
            .await?
            .attr("data-backend")
            .await?;
        ensure!(
            gpu.as_deref() == Some("WebGPU"),
            "the owner trained on {gpu:?}"
        );
        let cpu = second
            .wait_for("#train-backend-used")
            .await?
            .attr("data-backend")
            .await?;
        ensure!(
            cpu.as_deref() == Some("CPU"),
            "the second member trained on {cpu:?}"
        );

        // A new version appeared; the owner deploys it.
        owner
            .wait_until(
                "const p = document.getElementById('rounds-progress');
                 return p && p.dataset.closed === '2';",
                Duration::from_secs(60),
            )
            .await?;
        let api = Api::login(&server, "owner@example.org", PASSWORD).await?;
        let group_id: i64 = group_url
            .path()
            .trim_start_matches("/groups/")
            .parse()
            .context("group id in the address")?;
        let versions = api
            .get_json(&format!("/api/groups/{group_id}/versions"))
            .await?;
        let newest = versions["versions"]
            .as_array()
            .and_then(|v| v.iter().max_by_key(|v| v["round"].as_i64()))
            .cloned()
            .context("no versions")?;
        ensure!(newest["round"] == 2, "newest version: {newest}");
        let newest_id = newest["id"].as_i64().context("version id")?;
        owner
            .wait_until(
                &format!(
                    "const s = document.getElementById('promote-version');
                     return s && s.value === '{newest_id}';"
                ),
                Duration::from_secs(30),
            )
            .await?;
        owner.fill("#promote-name", "churn-fl").await?;
        owner.click("#promote-button").await?;
        let promoted = owner
            .wait_for("#promote-ok")
            .await?
            .attr("data-version")
            .await?;
        ensure!(
            promoted.as_deref() == Some(newest_id.to_string().as_str()),
            "promoted {promoted:?}, expected {newest_id}"
        );

        owner.keep_screenshot("page-group-owner").await?;
        second.keep_screenshot("page-group-member").await?;

        // Inference in the browser uses the promoted version.
        owner
            .client
            .goto(&format!("{}/predict/churn-fl", server.url))
            .await?;
        owner
            .wait_for_long("#engine-status[data-mode='local']", Duration::from_secs(90))
            .await?;
        owner
            .wait_for_text("#model-about", &format!("version {newest_id}"))
            .await?;
        owner.upload("#csv-file", &probe).await?;
        owner.click("#run-csv").await?;
        owner
            .wait_for_long(
                "#predict-result[data-mode='local']",
                Duration::from_secs(90),
            )
            .await?;
        let downloaded = owner.download_text("#download-csv").await?;
        same_predictions(&downloaded, &api.predict_csv("churn-fl", &probe_csv).await?)
            .context("the browser's predictions with the promoted model")?;

        // The trained model's page names its metrics' source: the trainers' training split,
        // weighted by rows (issue #21); the owner's Deploy buttons stay reachable on a phone.
        owner
            .client
            .goto(&format!("{}/models/churn-fl", server.url))
            .await?;
        let label = owner
            .wait_for_text(
                "#model-metrics[data-metric-source='training'] .metric-source",
                "training split",
            )
            .await?;
        ensure!(label.contains("weighted by their rows"), "label: {label}");
        owner
            .wait_for("#model-versions th[data-metric-source='training']")
            .await?;
        owner.screenshots("model-trained-owner").await?;
        owner.client.set_window_size(390, 844).await?;
        let right = owner
            .js(
                "const b = document.querySelector('#model-versions .promote-version'); \
                 return b ? b.getBoundingClientRect().right : null;",
                vec![],
            )
            .await?;
        owner.client.set_window_size(1280, 900).await?;
        ensure!(
            right.as_f64().is_some_and(|r| r > 0.0 && r <= 390.0),
            "a Deploy button is off-screen at 390 px: right edge {right}"
        );
        Ok(())
    })
    .await;
    for browser in [owner, second, third] {
        browser.close().await?;
    }
    outcome
}
