//! Issue #21, as three partners tried it in their tabs: a partner who closes its tab is not
//! waited for (the rounds' 10-minute deadlines never matter) nor selected again, and the
//! owner sees each member's state and the round's deadline and can close a round now, remove
//! a member and cancel training. The owner's page is saved at laptop and phone sizes
//! (`e2e/artifacts/group-owner-*`).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use b3o_e2e::{Api, Browser, Server, churn_rows, temp_file};
use serde_json::Value;

const PASSWORD: &str = "violet staircase 42 harbour";
/// Far below the rounds' deadline (600 s, the default): a run that waited for one fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// The owner creates a churn group (`rounds`, at least `min_clients` per round) from its
/// file; two partners join with the code. Returns the group's id.
async fn create_group(
    server: &Server,
    browsers: [&Browser; 3],
    file: &std::path::Path,
    rounds: u32,
    min_clients: u32,
) -> Result<i64> {
    let [owner, second, third] = browsers;
    owner
        .sign_up(server, "owner@example.org", "Olive Owner", PASSWORD)
        .await?;
    owner
        .fill_churn_group(
            server,
            "Churn across branches",
            file,
            rounds,
            1,
            min_clients,
        )
        .await?;
    owner
        .click("#create-group-form button[type='submit']")
        .await?;
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
            .sign_up_and_join(
                server,
                (email, name, PASSWORD),
                &code,
                "Churn across branches",
            )
            .await?;
    }
    Ok(group_id)
}

async fn wait_ready(owner: &Browser, ready: u32) -> Result<()> {
    owner
        .wait_until(
            &format!(
                "const m = document.getElementById('group-members');
                 return m && m.dataset.ready === '{ready}';"
            ),
            Duration::from_secs(120),
        )
        .await
        .context("the members never became ready")?;
    Ok(())
}

/// Clicks the element `css` from the page itself, at once: the member list is rebuilt as
/// members' progress arrives, so an element found by WebDriver may be replaced before its click.
async fn click_now(browser: &Browser, css: &str) -> Result<()> {
    browser.wait_for(css).await?;
    let clicked = browser
        .js(
            "const e = document.querySelector(arguments[0]);
             if (!e) return false;
             e.click();
             return true;",
            vec![serde_json::json!(css)],
        )
        .await?;
    ensure!(clicked == true, "nothing to click at {css}");
    Ok(())
}

async fn round(api: &Api, group_id: i64, n: i64) -> Result<Value> {
    api.get_json(&format!("/api/groups/{group_id}/rounds/{n}"))
        .await
}

/// One partner closes its tab right after the start: round 1 closes as soon as the two others
/// sent their updates, the next rounds select only them, and the run finishes in a fraction
/// of one round's deadline. The owner's page says the partner is gone.
#[tokio::test]
async fn a_closed_tab_is_not_waited_for_nor_selected_again() -> Result<()> {
    let server = Server::start()?;
    let mut files = Vec::new();
    for i in 0..3 {
        let csv = churn_rows(i * 60, 60)?;
        files.push(temp_file(&format!("site-{i}.csv"), csv.as_bytes())?);
    }
    let owner = Browser::start().await?;
    let second = Browser::start().await?;
    let third = Browser::start().await?;
    let closing = Browser::check_all("closed_tab", &[&owner, &second, &third], async {
        let group_id = create_group(&server, [&owner, &second, &third], &files[0].1, 3, 2).await?;
        owner.train_with(&files[0].1, "cpu").await?;
        second.train_with(&files[1].1, "cpu").await?;
        third.train_with(&files[2].1, "cpu").await?;
        wait_ready(&owner, 3).await?;
        owner.click("#start-training").await?;
        owner.wait_for("#round-deadline[data-round]").await?;
        Ok(group_id)
    })
    .await;
    // The third partner closes its tab (its whole browser) right after the start.
    third.close().await?;
    let outcome = async {
        let group_id = closing?;
        let third_member: i64 = {
            let api = Api::login(&server, "owner@example.org", PASSWORD).await?;
            let view = api.get_json(&format!("/api/groups/{group_id}")).await?;
            view["member_list"]
                .as_array()
                .and_then(|l| {
                    l.iter()
                        .find(|m| m["name"].as_str().is_some_and(|n| n.contains("Cal")))
                })
                .and_then(|m| m["member_id"].as_i64())
                .context("Cal's membership")?
        };
        Browser::check_all("closed_tab_run", &[&owner, &second], async {
            let started = std::time::Instant::now();
            // The owner's page tells that Cal is gone.
            owner
                .wait_until(
                    &format!(
                        "const li = document.querySelector('#member-list li[data-member=\"{third_member}\"]');
                         return li && li.dataset.presence === 'gone';"
                    ),
                    RUN_TIMEOUT,
                )
                .await
                .context("the owner's page never showed the closed tab as gone")?;
            for (i, browser) in [&owner, &second].iter().enumerate() {
                let (state, text) = browser.training_outcome(RUN_TIMEOUT).await?;
                ensure!(state == "done", "browser {i} training {state}: {text}");
            }
            let took = started.elapsed();
            ensure!(
                took < Duration::from_secs(300),
                "three rounds took {took:?}: a round waited for its deadline"
            );
            let api = Api::login(&server, "owner@example.org", PASSWORD).await?;
            let r1 = round(&api, group_id, 1).await?;
            ensure!(r1["state"] == "closed", "round 1: {r1}");
            for n in 2..=3 {
                let r = round(&api, group_id, n).await?;
                ensure!(r["state"] == "closed", "round {n}: {r}");
                ensure!(
                    r["selected"] == 2,
                    "round {n} selected the closed tab again: {r}"
                );
            }
            owner.screenshots("group-owner-finished").await?;
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

/// The owner watches a slow partner train (its progress shows), closes round 1 without it,
/// removes it, and cancels training: each click takes effect at once, for every member.
#[tokio::test]
async fn the_owner_closes_a_round_removes_a_member_and_cancels_training() -> Result<()> {
    let server = Server::start()?;
    let small_a = churn_rows(0, 60)?;
    let small_b = churn_rows(60, 60)?;
    // The slow partner: many rows on the software WebGPU adapter (SwiftShader).
    let big = churn_rows(200, 3000)?;
    let files = [
        temp_file("a.csv", small_a.as_bytes())?,
        temp_file("b.csv", small_b.as_bytes())?,
        temp_file("c.csv", big.as_bytes())?,
    ];
    let owner = Browser::start().await?;
    let second = Browser::start().await?;
    let third = Browser::start().await?;
    let all = [&owner, &second, &third];
    let outcome = Browser::check_all("owner_controls", &all, async {
        let group_id = create_group(&server, all, &files[0].1, 5, 2).await?;
        owner.train_with(&files[0].1, "cpu").await?;
        second.train_with(&files[1].1, "cpu").await?;
        third.train_with(&files[2].1, "wgpu").await?;
        wait_ready(&owner, 3).await?;
        owner.click("#start-training").await?;
        let deadline = owner
            .wait_for("#round-deadline[data-seconds]")
            .await?
            .attr("data-seconds")
            .await?
            .context("no countdown")?;
        let seconds: i64 = deadline.parse()?;
        ensure!(
            (500..=600).contains(&seconds),
            "the countdown shows {seconds} s of a 600 s deadline"
        );

        // Two updates arrive; the slow partner is still training, with its progress shown.
        owner
            .wait_until(
                "const p = document.getElementById('current-round');
                 return p && p.textContent.includes('2 of 3');",
                Duration::from_secs(180),
            )
            .await
            .context("the two quick members never sent round 1")?;
        owner
            .wait_until(
                "return [...document.querySelectorAll('#member-list li')]
                     .some(li => li.dataset.state === 'training' && li.dataset.progress);",
                Duration::from_secs(120),
            )
            .await
            .context("the slow member's progress never showed")?;
        owner.screenshots("group-owner").await?;

        owner.click("#close-round").await?;
        owner
            .wait_until(
                "const p = document.getElementById('rounds-progress');
                 return p && p.dataset.closed === '1';",
                Duration::from_secs(60),
            )
            .await
            .context("round 1 did not close when the owner closed it")?;
        let api = Api::login(&server, "owner@example.org", PASSWORD).await?;
        let r1 = round(&api, group_id, 1).await?;
        ensure!(r1["reported"] == 2, "round 1: {r1}");

        // Remove the slow partner: round 2 no longer waits for it.
        let view = api.get_json(&format!("/api/groups/{group_id}")).await?;
        let cal = view["member_list"]
            .as_array()
            .and_then(|l| {
                l.iter()
                    .find(|m| m["name"].as_str().is_some_and(|n| n.contains("Cal")))
            })
            .and_then(|m| m["member_id"].as_i64())
            .context("Cal's membership")?;
        click_now(
            &owner,
            &format!("button.remove-member[data-member='{cal}']"),
        )
        .await?;
        click_now(
            &owner,
            &format!("button.remove-member-confirm[data-member='{cal}']"),
        )
        .await?;
        owner
            .wait_until(
                &format!(
                    "const li = document.querySelector('#member-list li[data-member=\"{cal}\"]');
                     return li && li.dataset.state === 'left';"
                ),
                Duration::from_secs(30),
            )
            .await
            .context("the removed member is not shown as left")?;
        owner
            .wait_until(
                "const p = document.getElementById('rounds-progress');
                 return p && Number(p.dataset.closed) >= 2;",
                Duration::from_secs(180),
            )
            .await
            .context("round 2 waited for the removed member")?;

        // Cancel: confirmed, then the group is finished for everyone.
        click_now(&owner, "#cancel-training").await?;
        click_now(&owner, "#cancel-training-confirm").await?;
        owner
            .wait_for("#group-phase[data-cancelled='true'][data-phase='finished']")
            .await
            .context("the page does not show training cancelled")?;
        let view = api.get_json(&format!("/api/groups/{group_id}")).await?;
        ensure!(view["cancelled"] == true, "{view}");
        let (state, text) = second.training_outcome(Duration::from_secs(120)).await?;
        ensure!(
            state == "done",
            "a member after the cancel: {state}: {text}"
        );
        Ok(())
    })
    .await;
    for browser in [owner, second, third] {
        browser.close().await?;
    }
    outcome
}
