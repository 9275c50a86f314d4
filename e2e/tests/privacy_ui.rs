//! Issue #14 in real browsers: differential privacy through the web app. The owner creates a
//! DP group with the form (the noise multiplier it shows live is the one the server
//! calibrates), two partners join; one sets its own privacy limit between what one and two
//! rounds cost. Round 1 gets its update; in round 2 its browser refuses (the page says why,
//! nothing is uploaded) and the group goes on with the others. After a reload, its browser
//! still knows what it spent (the IndexedDB ledger) and refuses round 3 at once. The group
//! page charts the epsilon spent by round and the versions carry their (ε, δ).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use b3o_e2e::{Api, Browser, Server, churn_rows, temp_file};
use b3o_models::dp::DpParams;
use serde_json::Value;

const PASSWORD: &str = "quiet harbour 58 lantern";
const TRAINING_TIMEOUT: Duration = Duration::from_secs(300);

fn member_named(view: &Value, name: &str) -> Option<i64> {
    view["member_list"]
        .as_array()?
        .iter()
        .find(|m| m["name"].as_str().is_some_and(|n| n.contains(name)))?["member_id"]
        .as_i64()
}

/// The member ids whose update a round accepted.
fn contributors(round: &Value) -> Vec<i64> {
    round["client_metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["member_id"].as_i64())
        .collect()
}

/// The rows of a chart's table (one per round it shows).
async fn chart_rounds(browser: &Browser, id: &str) -> Result<Vec<f64>> {
    let rows = browser
        .js(
            "const f = document.getElementById(arguments[0]);
             if (!f) return null;
             return [...f.querySelectorAll('tbody tr th')].map(th => Number(th.textContent));",
            vec![serde_json::json!(id)],
        )
        .await?;
    let rows = rows.as_array().with_context(|| format!("no chart #{id}"))?;
    Ok(rows.iter().filter_map(Value::as_f64).collect())
}

/// Polls `check` on `GET path` every 50 ms until it holds, at most `timeout`.
async fn poll(
    api: &Api,
    path: &str,
    timeout: Duration,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let v = api.get_json(path).await?;
        if check(&v) {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("waiting {}s for {what}: {v}", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `data-*` attribute `name` of `css` as a number.
async fn number_attr(browser: &Browser, css: &str, name: &str) -> Result<f64> {
    let v = browser
        .wait_for(css)
        .await?
        .attr(name)
        .await?
        .with_context(|| format!("`{css}` has no {name}"))?;
    v.parse()
        .with_context(|| format!("`{css}` {name} = {v:?} is not a number"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[tokio::test]
async fn a_partner_s_own_privacy_limit_stops_its_browser_and_survives_a_reload() -> Result<()> {
    let server = Server::start()?;
    // Cal has more rows: each round stays open while it trains, long enough for the owner
    // to pause right after round 2 opens.
    let files = [
        temp_file("owner.csv", churn_rows(0, 200)?.as_bytes())?,
        temp_file("bea.csv", churn_rows(200, 200)?.as_bytes())?,
        temp_file("cal.csv", churn_rows(400, 4000)?.as_bytes())?,
    ];
    let owner = Browser::start().await?;
    let bea = Browser::start().await?;
    let cal = Browser::start().await?;
    let all = [&owner, &bea, &cal];
    let outcome = Browser::check_all("privacy_ui", &all, async {
        // The owner creates a DP group through the form.
        owner
            .sign_up(&server, "owner@example.org", "Olive Owner", PASSWORD)
            .await?;
        owner
            .fill_churn_group(&server, "Private churn", &files[0].1, 3, 2, 2)
            .await?;
        owner.click("#group-dp").await?;
        owner.fill("#group-dp-epsilon", "8").await?;
        owner.fill("#group-dp-delta", "1e-5").await?;
        owner.fill("#group-dp-clip", "1.0").await?;
        // Adaptive clipping is offered with central noise only.
        owner.set_select("#group-dp-placement", "local").await?;
        let disabled = owner
            .js(
                "return document.getElementById('group-dp-adaptive').disabled;",
                vec![],
            )
            .await?;
        ensure!(disabled == true, "adaptive clipping with local noise");
        owner.set_select("#group-dp-placement", "central").await?;
        // The noise multiplier, computed as the owner types.
        let live_noise = number_attr(&owner, "#group-dp-noise", "data-noise").await?;
        let text = owner
            .wait_for_text("#group-dp-noise", "Noise multiplier")
            .await?;
        ensure!(text.contains("3 round(s)"), "noise text: {text}");

        // A robust strategy is refused by the server, and the form says why.
        owner.set_select("#group-strategy", "fedmedian").await?;
        owner
            .click("#create-group-form button[type='submit']")
            .await?;
        let refused = owner
            .wait_for_text("#create-group-error", "mean-type strategy")
            .await?;
        ensure!(refused.contains("differential privacy"), "{refused}");
        owner.set_select("#group-strategy", "fedavg").await?;
        owner
            .click("#create-group-form button[type='submit']")
            .await?;

        // The group page shows the DP tag with the server's noise multiplier.
        owner.wait_for("#group-dp").await?;
        let code = owner.wait_for("#join-code-value").await?.text().await?;
        let url = owner.client.current_url().await?;
        let group_id: i64 = url
            .path()
            .trim_start_matches("/groups/")
            .parse()
            .context("group id in the address")?;
        let api = Api::login(&server, "owner@example.org", PASSWORD).await?;
        let group_path = format!("/api/groups/{group_id}");
        let view = api.get_json(&group_path).await?;
        let params: DpParams = serde_json::from_value(view["dp"]["params"].clone())
            .with_context(|| format!("the group's dp.params: {view}"))?;
        ensure!(
            params.epsilon == 8.0 && params.delta == 1e-5 && params.clipping_norm == 1.0,
            "{params:?}"
        );
        ensure!(params.adaptive.is_none(), "{params:?}");
        ensure!(
            close(live_noise, params.noise_multiplier),
            "the form computed z = {live_noise}, the server {}",
            params.noise_multiplier
        );
        let shown = number_attr(&owner, "#group-dp", "data-noise-multiplier").await?;
        ensure!(
            close(shown, params.noise_multiplier),
            "page {shown} vs {params:?}"
        );
        let placement = owner
            .wait_for("#group-dp")
            .await?
            .attr("data-placement")
            .await?;
        ensure!(placement.as_deref() == Some("central"), "{placement:?}");
        let z_text = short_number(params.noise_multiplier);
        owner
            .wait_for_text("#group-dp-settings", &format!("noise multiplier {z_text}"))
            .await?;
        owner
            .wait_for_text("#group-dp-settings", "clipping norm 1")
            .await?;

        // Two partners join; Bea sets a limit between what one and two rounds cost.
        for (browser, email, name) in [
            (&bea, "bea@example.org", "Bea Branch"),
            (&cal, "cal@example.org", "Cal Branch"),
        ] {
            browser
                .sign_up_and_join(&server, (email, name, PASSWORD), &code, "Private churn")
                .await?;
        }
        let (e1, e2) = (params.epsilon_after(1), params.epsilon_after(2));
        ensure!(0.0 < e1 && e1 < e2 && e2 < params.epsilon, "ε {e1}, {e2}");
        let limit = (e1 + e2) / 2.0;
        bea.fill("#train-max-epsilon", &format!("{limit:.6}"))
            .await?;

        owner.train_with(&files[0].1, "cpu").await?;
        bea.train_with(&files[1].1, "cpu").await?;
        cal.train_with(&files[2].1, "cpu").await?;
        // Each browser opened its privacy ledger: nothing spent yet, Bea's budget is hers.
        let budget = number_attr(&bea, "#my-privacy-spent", "data-budget").await?;
        ensure!(
            (budget - limit).abs() < 1e-5,
            "Bea's budget {budget}, limit {limit}"
        );
        let cal_budget = number_attr(&cal, "#my-privacy-spent", "data-budget").await?;
        ensure!(
            close(cal_budget, params.epsilon),
            "Cal's budget {cal_budget}"
        );
        owner
            .wait_until(
                "const m = document.getElementById('group-members');
                 return m && m.dataset.ready === '3';",
                Duration::from_secs(120),
            )
            .await
            .context("the three members never became ready")?;
        let view = api.get_json(&group_path).await?;
        let bea_id = member_named(&view, "Bea").context("Bea's membership")?;
        let cal_id = member_named(&view, "Cal").context("Cal's membership")?;
        owner.click("#start-training").await?;
        // Training resolved the parameters again for the members ready: still between.
        let view = api.get_json(&group_path).await?;
        let params: DpParams = serde_json::from_value(view["dp"]["params"].clone())?;
        let (e1, e2) = (params.epsilon_after(1), params.epsilon_after(2));
        ensure!(
            e1 < limit && limit < e2,
            "{limit} no longer between one and two rounds: {params:?}"
        );

        // As soon as round 2 opens, the owner pauses: no round 3 until Bea is back.
        poll(
            &api,
            &group_path,
            TRAINING_TIMEOUT,
            "round 2 to open",
            |g| g["current_round"].as_i64() >= Some(2),
        )
        .await?;
        owner
            .wait_until(
                "const b = document.getElementById('pause-training');
                 if (!b) return false;
                 b.click();
                 return true;",
                Duration::from_secs(10),
            )
            .await?;
        poll(
            &api,
            &group_path,
            Duration::from_secs(10),
            "the pause",
            |g| g["paused"] == true,
        )
        .await?;

        // Round 1 got Bea's update.
        let r1 = api.get_json(&format!("{group_path}/rounds/1")).await?;
        ensure!(r1["state"] == "closed", "round 1: {r1}");
        ensure!(
            contributors(&r1).contains(&bea_id),
            "round 1 has no update from Bea: {r1}"
        );

        // In round 2 Bea's browser refuses, and says why in plain words.
        let words = bea
            .wait_for_text("#privacy-refused", "Nothing was sent")
            .await?;
        ensure!(
            words.contains("round 2") && words.contains("your limit"),
            "refusal: {words}"
        );
        let refused_round = bea
            .wait_for("#privacy-refused")
            .await?
            .attr("data-round")
            .await?;
        ensure!(refused_round.as_deref() == Some("2"), "{refused_round:?}");
        let (state, _) = bea.training_outcome(Duration::from_secs(30)).await?;
        ensure!(state == "failed", "Bea's run {state}");
        bea.wait_for_text("#train-outcome", "your privacy budget")
            .await?;
        // The engine's own reason, under the refusal's details (closed: read its text).
        let reason = bea
            .js(
                "const r = document.querySelector('#privacy-refused .privacy-reason');
                 return r ? r.textContent : null;",
                vec![],
            )
            .await?;
        ensure!(
            reason
                .as_str()
                .is_some_and(|r| r.contains("privacy budget is spent")),
            "the refusal's reason: {reason}"
        );
        // Its ledger counted round 1 only: one point.
        ensure!(
            chart_rounds(&bea, "my-privacy-chart").await? == [1.0],
            "Bea's chart"
        );
        let spent = number_attr(&bea, "#my-privacy-spent", "data-spent").await?;
        ensure!(
            (spent - e1).abs() < 1e-6 * e1,
            "Bea spent {spent}, one round costs {e1}"
        );

        // Round 2 closes with the owner and Cal; the pause holds round 3 back.
        let r2 = poll(
            &api,
            &format!("{group_path}/rounds/2"),
            TRAINING_TIMEOUT,
            "round 2 to close",
            |r| r["state"] == "closed" || r["state"] == "failed",
        )
        .await?;
        ensure!(r2["state"] == "closed", "round 2: {r2}");
        let got = contributors(&r2);
        ensure!(!got.contains(&bea_id), "round 2 has Bea's update: {r2}");
        ensure!(got.contains(&cal_id) && got.len() == 2, "round 2: {r2}");
        let rounds = api.get_json(&format!("{group_path}/rounds")).await?;
        ensure!(
            rounds["rounds"].as_array().map(Vec::len) == Some(2),
            "a round opened during the pause: {rounds}"
        );
        // The server knows Bea failed round 2.
        let bea_api = Api::login(&server, "bea@example.org", PASSWORD).await?;
        let runs = bea_api.get_json("/api/history/runs").await?;
        let run = runs["runs"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["group_id"] == group_id))
            .context("Bea's run")?;
        let status = |n: i64| {
            run["rounds"]
                .as_array()
                .and_then(|r| r.iter().find(|r| r["round"] == n))
                .map(|r| r["your_status"].clone())
        };
        ensure!(status(1) == Some("reported".into()), "{run}");
        ensure!(status(2) == Some("failed".into()), "{run}");

        // Bea reloads and trains again without typing a limit: its browser remembers.
        bea.client.refresh().await?;
        bea.wait_for_text("#group-name", "Private churn").await?;
        bea.train_with(&files[1].1, "cpu").await?;
        let remembered = bea.wait_for_text("#my-privacy-spent", "your limit").await?;
        ensure!(
            number_attr(&bea, "#my-privacy-spent", "data-rounds").await? == 1.0,
            "after the reload: {remembered}"
        );
        let budget = number_attr(&bea, "#my-privacy-spent", "data-budget").await?;
        ensure!(
            (budget - limit).abs() < 1e-5,
            "budget after reload {budget}"
        );
        poll(
            &api,
            &group_path,
            Duration::from_secs(60),
            "Bea connected and ready",
            |g| {
                g["member_list"].as_array().is_some_and(|list| {
                    list.iter().any(|m| {
                        m["member_id"] == bea_id
                            && m["ready"] == true
                            && m["presence"] == "connected"
                    })
                })
            },
        )
        .await?;
        bea.wait_until(
            "const r = document.getElementById('train-run');
             return r && r.dataset.phase === 'waiting';",
            Duration::from_secs(60),
        )
        .await?;

        // Round 3 selects Bea again: its browser refuses at once, without training.
        owner.click("#resume-training").await?;
        bea.wait_until(
            "const p = document.getElementById('privacy-refused');
             return p && p.dataset.round === '3';",
            Duration::from_secs(60),
        )
        .await?;
        bea.wait_for_text("#privacy-refused", "Nothing was sent")
            .await?;
        let trained = bea
            .js(
                "return !!document.getElementById('train-loss-chart');",
                vec![],
            )
            .await?;
        ensure!(trained == false, "Bea trained round 3 before refusing");
        ensure!(
            chart_rounds(&bea, "my-privacy-chart").await? == [1.0],
            "Bea's chart after the reload"
        );

        // The group completes its rounds with the owner and Cal.
        for (i, browser) in [&owner, &cal].iter().enumerate() {
            let (state, text) = browser.training_outcome(TRAINING_TIMEOUT).await?;
            ensure!(state == "done", "browser {i} training {state}: {text}");
        }
        let r3 = api.get_json(&format!("{group_path}/rounds/3")).await?;
        ensure!(r3["state"] == "closed", "round 3: {r3}");
        ensure!(
            !contributors(&r3).contains(&bea_id),
            "round 3 has Bea's update: {r3}"
        );
        let runs = bea_api.get_json("/api/history/runs").await?;
        let run = runs["runs"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["group_id"] == group_id))
            .context("Bea's run")?;
        ensure!(
            run["rounds_contributed"] == 1,
            "Bea contributed more than round 1: {run}"
        );

        // The group page: epsilon spent by round, the same figure as the API's.
        let view = api.get_json(&group_path).await?;
        let spent_api = view["dp"]["spent_epsilon"]
            .as_f64()
            .context("dp.spent_epsilon")?;
        ensure!(view["dp"]["rounds_counted"] == 3, "{view}");
        owner
            .wait_until(
                "const s = document.getElementById('privacy-spent');
                 return s && s.dataset.rounds === '3';",
                Duration::from_secs(30),
            )
            .await?;
        let spent_page = number_attr(&owner, "#privacy-spent", "data-spent").await?;
        ensure!(
            close(spent_page, spent_api),
            "page {spent_page}, API {spent_api}"
        );
        ensure!(
            spent_api <= params.epsilon * (1.0 + 1e-9) && spent_api > e2,
            "{spent_api}"
        );
        owner
            .wait_until(
                "const f = document.getElementById('privacy-chart');
                 return f && f.querySelectorAll('tbody tr').length === 3;",
                Duration::from_secs(30),
            )
            .await?;
        ensure!(
            chart_rounds(&owner, "privacy-chart").await? == [1.0, 2.0, 3.0],
            "the group's privacy chart"
        );
        let exhausted = owner
            .js(
                "const e = document.getElementById('privacy-exhausted');
                 return e ? e.textContent : null;",
                vec![],
            )
            .await?;
        match view["dp"]["budget_exhausted"].as_str() {
            Some(why) => ensure!(
                exhausted.as_str().is_some_and(|t| t.contains(why)),
                "{exhausted}"
            ),
            None => ensure!(exhausted.is_null(), "{exhausted}"),
        }

        // Versions carry their (ε, δ).
        let versions = api.get_json(&format!("{group_path}/versions")).await?;
        let mut checked = 0;
        for v in versions["versions"].as_array().context("versions")? {
            let id = v["id"].as_i64().context("version id")?;
            let cell = owner
                .wait_for(&format!(
                    "#version-table tr[data-version='{id}'] .version-privacy"
                ))
                .await?;
            let shown = cell.attr("data-privacy").await?.unwrap_or_default();
            match v["privacy"]["epsilon"].as_f64() {
                Some(eps) => {
                    let epsilon = cell
                        .attr("data-epsilon")
                        .await?
                        .and_then(|e| e.parse::<f64>().ok())
                        .context("data-epsilon")?;
                    ensure!(close(epsilon, eps), "version {id}: {epsilon} vs {eps}");
                    ensure!(shown.contains("δ 1e-5"), "version {id}: {shown}");
                    checked += 1;
                }
                None => ensure!(shown == "—", "version {id}: {shown}"),
            }
        }
        ensure!(checked >= 3, "{checked} versions with privacy: {versions}");
        owner.screenshots("group-privacy-owner").await?;
        bea.screenshots("group-privacy-refused").await?;
        Ok(())
    })
    .await;
    for browser in [owner, bea, cal] {
        browser.close().await?;
    }
    outcome
}

/// A number as the app shows it (`charts::short_number`).
fn short_number(v: f64) -> String {
    if (v.fract() == 0.0 && v.abs() < 1e9) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}
