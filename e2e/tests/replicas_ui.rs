//! Issue #15's acceptance run: three replicas of `b3o serve` on one Postgres and one
//! S3-compatible store (`s3s-fs`) behind a real haproxy; a browser tab (the group's owner)
//! and twenty `b3o client` processes train a tabular group through the balancer, so their
//! requests and event streams spread over the replicas; one replica is killed with SIGKILL
//! while a round is collecting. Every round completes once with every member's update in it
//! (exactly one version per round), and every participant, the tab included, goes on to the
//! end: streams cut by the kill reconnect through the balancer, uploads that died with the
//! replica are retried. Skipped, saying why, without Postgres, s3s-fs or haproxy
//! (`scripts/test.sh` provides them).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use b3o_e2e::fleet::{self, Fleet};
use b3o_e2e::{Api, Browser, b3o_binary, churn_rows, temp_file};
use serde_json::Value;

const PASSWORD: &str = "violet staircase 42 harbour";
const CLIENTS: usize = 20;
const ROUNDS: u32 = 3;
const ROWS_PER_MEMBER: usize = 60;
const TIMEOUT: Duration = Duration::from_secs(600);

/// A `b3o client` process, as a partner runs it: signs in (creating its API token), joins
/// with the code, trains every round on its own CSV.
fn client(server: &str, code: &str, email: &str, data: &std::path::Path) -> Result<Child> {
    Command::new(b3o_binary()?)
        .arg("client")
        .args(["--server", server, "--code", code, "--target", "Exited"])
        .args(["--email", email, "--password", PASSWORD])
        .arg("--data")
        .arg(data)
        .args(["--quiet", "--json"])
        .arg("--privacy-ledger")
        .arg(data.with_extension("ledger.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting b3o client")
}

/// Waits for every client until `deadline`: each one's exit status and output.
fn wait_all(children: Vec<Child>, deadline: Instant) -> Result<Vec<(bool, String, String)>> {
    let mut outcomes = Vec::new();
    for mut child in children {
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let out = child.wait_with_output()?;
        outcomes.push((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(outcomes)
}

/// Round `n` as the API shows it, once it exists.
async fn round(api: &Api, group: i64, n: u32) -> Option<Value> {
    api.get_json(&format!("/api/groups/{group}/rounds/{n}"))
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tab_and_twenty_clients_train_across_three_replicas_while_one_is_killed() -> Result<()> {
    if let Some(missing) = fleet::missing() {
        eprintln!("skipped: three replicas need {missing} (scripts/test.sh provides them)");
        return Ok(());
    }
    let mut fleet = Fleet::start(3, &["--max-registrations-per-hour", "0"])?;
    let lb = fleet.balancer.url.clone();
    let mut files = Vec::new();
    for i in 0..=CLIENTS {
        let csv = churn_rows(i * ROWS_PER_MEMBER, ROWS_PER_MEMBER)?;
        files.push(temp_file(&format!("partner-{i}.csv"), csv.as_bytes())?);
    }

    let owner = Browser::start().await?;
    let outcome = owner
        .check("replicas_tab_and_clients", async {
            owner
                .sign_up(
                    &fleet.balancer,
                    "owner@example.org",
                    "Olive Owner",
                    PASSWORD,
                )
                .await?;
            owner
                .fill_churn_group(
                    &fleet.balancer,
                    "Churn across replicas",
                    &files[0].1,
                    ROUNDS,
                    1,
                    CLIENTS as u32 + 1,
                )
                .await?;
            owner
                .click("#create-group-form button[type='submit']")
                .await?;
            let code = owner.wait_for("#join-code-value").await?.text().await?;
            let group_url = owner.client.current_url().await?;
            let group: i64 = group_url
                .path()
                .trim_start_matches("/groups/")
                .parse()
                .context("group id in the address")?;
            let api = Api::login(&fleet.balancer, "owner@example.org", PASSWORD).await?;

            // Twenty partners with their own accounts and files, each a `b3o client`.
            let mut children = Vec::new();
            for (i, (_dir, file)) in files[1..].iter().enumerate() {
                let email = format!("partner{i}@example.org");
                Api::register(&fleet.balancer, &email, PASSWORD).await?;
                children.push(client(&lb, &code, &email, file)?);
            }
            owner.train_with(&files[0].1, "cpu").await?;
            owner
                .wait_until(
                    &format!(
                        "const m = document.getElementById('group-members');
                         return m && m.dataset.ready === '{}';",
                        CLIENTS + 1
                    ),
                    Duration::from_secs(240),
                )
                .await
                .context("the 21 members never became ready")?;
            owner.click("#start-training").await?;

            // Round 2 collecting, some updates in: kill -9 one replica.
            let started = Instant::now();
            let at_kill = loop {
                if let Some(r) = round(&api, group, 2).await
                    && r["state"] == "collecting"
                    && r["reported"].as_u64().is_some_and(|n| n >= 1)
                {
                    break r;
                }
                if started.elapsed() > TIMEOUT {
                    bail!("round 2 never collected an update");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            fleet.kill9(1);
            let reported_at_kill = at_kill["reported"].as_u64().unwrap_or(0);
            ensure!(
                reported_at_kill < CLIENTS as u64 + 1,
                "round 2 was complete before the kill: {at_kill}"
            );

            // Everyone goes on to the end.
            let deadline = Instant::now() + TIMEOUT;
            let clients =
                tokio::task::spawn_blocking(move || wait_all(children, deadline)).await??;
            for (i, (ok, stdout, stderr)) in clients.iter().enumerate() {
                ensure!(*ok, "b3o client {i} failed:\n{stdout}\n{stderr}");
                let report: Value = stdout
                    .lines()
                    .rev()
                    .find_map(|l| serde_json::from_str(l).ok())
                    .with_context(|| format!("client {i} printed no report:\n{stdout}"))?;
                ensure!(
                    report["rounds_trained"].as_array().map(Vec::len) == Some(ROUNDS as usize),
                    "client {i} did not train every round: {report}"
                );
            }
            let (state, text) = owner.training_outcome(TIMEOUT).await?;
            ensure!(state == "done", "the tab's training {state}: {text}");

            // One version per round, each with all 21 members' updates.
            let versions = api
                .get_json(&format!("/api/groups/{group}/versions"))
                .await?;
            let versions = versions["versions"].as_array().context("versions")?;
            for n in 1..=ROUNDS {
                let of_round: Vec<&Value> = versions.iter().filter(|v| v["round"] == n).collect();
                ensure!(of_round.len() == 1, "round {n}: {of_round:?}");
                let contributors = of_round[0]["contributors"].as_array().map(Vec::len);
                ensure!(
                    contributors == Some(CLIENTS + 1),
                    "round {n}'s version has {contributors:?} contributors: {}",
                    of_round[0]
                );
                let r = round(&api, group, n).await.context("round")?;
                ensure!(
                    r["state"] == "closed" && r["reported"] == CLIENTS as u64 + 1,
                    "round {n}: {r}"
                );
            }
            eprintln!(
                "replica 1 killed with {reported_at_kill} of {} updates of round 2 in",
                CLIENTS + 1
            );
            Ok(())
        })
        .await;
    owner.close().await?;
    outcome
}
