//! Issue #18, as an operator sees it: the demo churn model serves rows drawn like its
//! training data, then customers 25 years older, a third of them from a country it never saw.
//! Its Monitoring tab shows no drift at first, then exactly `Age` and `Geography` drifted, their
//! training and served distributions side by side and the history; once the owner lowers the
//! threshold, the catalogue marks the model as drifting. The tab is saved at laptop and phone
//! sizes (`e2e/artifacts/model-monitoring-*`).

use anyhow::{Context, Result, ensure};
use b3o_e2e::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, Browser, Server};
use fantoccini::Locator;

/// `csv` with every `Age` 25 years older and every third `Geography` a new country.
fn shifted(csv: &str) -> Result<String> {
    let mut lines = csv.lines();
    let header = lines.next().context("an empty CSV")?;
    let names: Vec<&str> = header.split(',').collect();
    let at = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .context("no such column")
    };
    let (age, geo) = (at("Age")?, at("Geography")?);
    let mut out = format!("{header}\n");
    for (i, line) in lines.enumerate() {
        let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
        cells[age] = (cells[age].parse::<i64>()? + 25).to_string();
        if i % 3 == 0 {
            cells[geo] = "Atlantis".into();
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// The features the tab's table marks as drifted.
async fn drifted(browser: &Browser) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for row in browser
        .client
        .find_all(Locator::Css("#drift-features tr[data-drifted='true']"))
        .await?
    {
        out.push(row.attr("data-feature").await?.unwrap_or_default());
    }
    Ok(out)
}

#[tokio::test]
async fn the_monitoring_tab_flags_exactly_the_shifted_features() -> Result<()> {
    let server = Server::start_with(&["--demo", "--drift-window-rows", "600"])?;
    let admin = Api::admin(&server).await?;
    let sample = reqwest::get(format!("{}/api/demo/churn-sample.csv", server.url))
        .await?
        .text()
        .await?;
    let mut lines = sample.lines();
    let header = lines.next().context("empty sample")?.to_string();
    let rows: Vec<&str> = lines.collect();
    let part = |r: &[&str]| format!("{header}\n{}\n", r.join("\n"));
    // Customers drawn like the training data: the first window (600 rows).
    admin.predict_csv("churn", &part(&rows[..600])).await?;

    let browser = Browser::start().await?;
    let outcome = browser
        .check("model-monitoring", async {
            browser
                .client
                .goto(&format!("{}/sign-in", server.url))
                .await?;
            browser.fill("#email", ADMIN_EMAIL).await?;
            browser.fill("#password", ADMIN_PASSWORD).await?;
            browser.click("form button[type='submit']").await?;
            browser.wait_for("#nav-user").await?;
            let tab = format!("{}/models/churn?tab=monitoring", server.url);
            browser.client.goto(&tab).await?;
            let verdict = browser.wait_for("#drift-verdict").await?;
            ensure!(
                verdict.attr("data-drifting").await?.as_deref() == Some("false"),
                "drifting before any shift: {}",
                verdict.text().await?
            );
            browser
                .wait_for("#drift-features tr[data-feature='Age']")
                .await?;
            ensure!(
                drifted(&browser).await?.is_empty(),
                "drift flagged on rows like the training data"
            );

            // The shifted customers fill the next window.
            admin
                .predict_csv("churn", &shifted(&part(&rows[600..]))?)
                .await?;
            browser.client.goto(&tab).await?;
            browser
                .wait_for("#drift-features tr[data-drifted='true']")
                .await?;
            let mut flagged = drifted(&browser).await?;
            flagged.sort();
            ensure!(flagged == ["Age", "Geography"], "drifted: {flagged:?}");
            let unseen = browser
                .wait_for_text("#drift-features tr[data-feature='Geography']", "Atlantis")
                .await?;
            ensure!(unseen.contains("Atlantis"), "{unseen}");
            // The worst features side by side, the history and the predictions.
            for css in [
                "#drift-hist-Age li.pair",
                "#drift-hist-Geography li[data-bin='Atlantis']",
                "#drift-history-chart",
                "#drift-predictions li.pair",
            ] {
                browser.wait_for(css).await?;
            }
            let atlantis = browser
                .wait_for("#drift-hist-Geography li[data-bin='Atlantis']")
                .await?;
            let (reference, current) = (
                atlantis.attr("data-reference").await?.unwrap_or_default(),
                atlantis.attr("data-current").await?.unwrap_or_default(),
            );
            ensure!(
                reference.parse::<f64>()? == 0.0 && current.parse::<f64>()? > 0.3,
                "Atlantis: training {reference}, served {current}"
            );

            // 2 of 10 features: drifting once the owner's threshold is 20 %.
            browser.fill("#drift-share", "20").await?;
            browser
                .click("#drift-thresholds button[type='submit']")
                .await?;
            browser
                .wait_for("#drift-verdict[data-drifting='true']")
                .await?;
            browser
                .js(
                    "document.getElementById('tab-monitoring').scrollIntoView()",
                    vec![],
                )
                .await?;
            let shots = browser.screenshots("model-monitoring").await?;
            for shot in &shots {
                let bytes = std::fs::metadata(shot)?.len();
                ensure!(bytes > 20_000, "{} is only {bytes} bytes", shot.display());
            }
            browser
                .client
                .goto(&format!("{}/models", server.url))
                .await?;
            browser
                .wait_for("article[data-model='churn'] .tag.drifting")
                .await?;
            Ok(())
        })
        .await;
    browser.close().await?;
    outcome
}
