//! `b3o serve` replicas on one Postgres database and one blob store (issue #15): what a client
//! does on one is seen by clients of the others; three replicas behind a real haproxy lose no
//! acknowledged update when one is killed mid-round, and no request while all three are
//! restarted one after the other under load. Runs in the suite's Postgres
//! pass (`B3O_TEST_POSTGRES`, `scripts/test.sh`); on SQLite, one process per database is the
//! rule and the tests say they are skipped.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::federation::{
    Server, global, group_body, group_view, member_entry, setup, shifted, start, trainer_stream,
    update, upload, versions, wait_event, wait_round,
};
use crate::support::{free_port, wait_listening};

/// Polls `check` every 50 ms for up to `within`; true once it held.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Two replicas on the suite's Postgres database and one blob folder; the folders first, so
/// that a caller's binding drops them last.
fn two_replicas() -> ([tempfile::TempDir; 3], Server, Server) {
    let blobs = tempfile::tempdir().unwrap();
    let store = format!("file://{}", blobs.path().display());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start(dir_a.path(), &["--blob-store", &store]);
    crate::test_db::share_database(dir_a.path(), dir_b.path());
    let b = Server::start(dir_b.path(), &["--blob-store", &store]);
    ([blobs, dir_a, dir_b], a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_on_one_postgres_share_events_presence_rounds_and_deployment_changes() {
    if !crate::test_db::on_postgres() {
        eprintln!("skipped: replicas share a database on Postgres only (B3O_TEST_POSTGRES)");
        return;
    }
    let (_dirs, a, b) = two_replicas();
    let http = reqwest::Client::new();

    // Accounts and the group are made on A; B serves them (sessions live in the database).
    let g = setup(&a, &http, group_body(2, 2, 60), &[10, 30]).await;
    let events_url = |s: &Server| s.url(&format!("/api/groups/{}/events", g.id));
    let mut on_b = http
        .get(events_url(&b))
        .bearer_auth(&g.members[0].1)
        .send()
        .await
        .unwrap();
    assert_eq!(on_b.status(), StatusCode::OK);
    wait_event(&mut on_b, "snapshot", Duration::from_secs(5)).await;

    // Member 1's training client follows the group on A: the owner, reading B, sees it
    // connected, and a stream on B hears it.
    let trainer = trainer_stream(&a, &http, &g, 1).await;
    let presence = wait_event(&mut on_b, "member_presence", Duration::from_secs(5)).await;
    assert!(presence.contains("connected"), "{presence}");
    let member1 = g.members[1].0;
    let view = group_view(&b, &http, g.id, &g.owner).await;
    assert_eq!(
        member_entry(&view, member1)["presence"],
        "connected",
        "{view}"
    );

    // The owner starts the round on A: B's stream hears it.
    start(&a, &http, &g).await;
    let opened = wait_event(&mut on_b, "round_opened", Duration::from_secs(5)).await;
    assert!(opened.contains("\"round\":1"), "{opened}");

    // One update through each replica: the round closes once, with both, and exactly one
    // version is written.
    let base = global(&a, &http, &g, &g.members[0].1).await;
    let (st, v) = upload(
        &a,
        &http,
        &g,
        0,
        1,
        update(&g, 1, shifted(&base, 1.0), 10, 0.5),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = upload(
        &b,
        &http,
        &g,
        1,
        1,
        update(&g, 1, shifted(&base, 2.0), 30, 0.5),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    wait_round(&a, &http, &g, 1, "closed").await;
    let closed = wait_event(&mut on_b, "round_closed", Duration::from_secs(10)).await;
    assert!(closed.contains("\"round\":1"), "{closed}");
    for s in [&a, &b] {
        // (10 * (w + 1) + 30 * (w + 2)) / 40 = w + 1.75
        let model = global(s, &http, &g, &g.members[0].1).await;
        for (m, w) in model.iter().zip(&base) {
            assert!((m - (w + 1.75)).abs() < 1e-5, "{m} vs {w}");
        }
        let vs = versions(s, &http, &g).await;
        assert_eq!(vs.len(), 2, "the initial version and round 1's: {vs:?}");
    }
    drop(trainer);

    // A deployment change on A reaches B's inference cache at once, not after its 5 s TTL:
    // a private model answers anonymous callers 401; made public, it no longer does.
    let vs = versions(&a, &http, &g).await;
    let r = http
        .put(a.url("/api/deployments/replicated"))
        .bearer_auth(&g.owner)
        .json(&json!({ "version_id": vs[1]["id"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let anonymous = || async {
        http.get(b.url("/v2/models/replicated"))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(
        anonymous().await,
        StatusCode::UNAUTHORIZED,
        "private, and now cached on B"
    );
    let r = http
        .put(a.url("/api/deployments/replicated/sharing"))
        .bearer_auth(&g.owner)
        .json(&json!({ "public": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert!(
        eventually(Duration::from_secs(2), || async {
            anonymous().await != StatusCode::UNAUTHORIZED
        })
        .await,
        "B still serves the private deployment it cached"
    );
    let last: Value = http
        .get(b.url("/v2/models/replicated"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null);
    assert!(last.is_object(), "{last}");
}

/// `haproxy` from `$B3O_HAPROXY` or the `PATH` (`scripts/test.sh` installs Debian's).
fn haproxy() -> String {
    let bin = std::env::var("B3O_HAPROXY").unwrap_or_else(|_| "haproxy".into());
    let found = Command::new(&bin)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{bin} not found: these tests need a real load balancer (`apt-get install haproxy`, or \
         run scripts/test.sh)"
    );
    bin
}

/// haproxy on a free port in front of `backends` (`127.0.0.1:port`), as deploy/haproxy.cfg
/// configures it: health checks on `/readyz`, connection failures retried on another replica.
fn balancer(dir: &Path, backends: &[String]) -> Server {
    let port = free_port();
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("    server r{i} {b}\n"))
        .collect();
    let cfg = format!(
        "global\n    maxconn 2048\n\
         defaults\n    mode http\n    timeout connect 1s\n    timeout client 60s\n\
         \x20   timeout server 60s\n    timeout tunnel 1h\n    retries 3\n\
         \x20   retry-on conn-failure\n    option redispatch 1\n\
         frontend b3o\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\
         backend replicas\n    balance roundrobin\n    option httpchk\n\
         \x20   http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host b3o\n\
         \x20   http-check expect status 200\n\
         \x20   default-server check inter 300ms fall 1 rise 1\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new(haproxy())
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting haproxy");
    wait_listening(port, "haproxy");
    Server::wrap(child, format!("http://127.0.0.1:{port}"))
}

/// Reads SSE events until `want`; `None` when the stream ended first (its replica died) or
/// `within` passed.
async fn event_or_end(
    resp: &mut reqwest::Response,
    want: &str,
    within: Duration,
) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut buf = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .ok()?
            .ok()??;
        buf.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(at) = buf.find(&format!("event: {want}\n")) {
            return Some(buf[at..].to_string());
        }
    }
}

/// A wrong password sent to `server` for `email`: its status.
async fn wrong_password(http: &reqwest::Client, server: &Server, email: &str, i: usize) -> u16 {
    http.post(server.url("/api/auth/login"))
        .json(&json!({ "email": email, "password": format!("wrong guess {i}") }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Sign-in limits are counted in the database, not per process: guesses spread over two
/// replicas lock the account after five, as on one server (per-process counters allowed five
/// per replica), and a parallel burst over both is held to the same five.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_one_count_of_failed_sign_ins() {
    if !crate::test_db::on_postgres() {
        eprintln!("skipped: replicas share a database on Postgres only (B3O_TEST_POSTGRES)");
        return;
    }
    let (_dirs, a, b) = two_replicas();
    let http = reqwest::Client::new();

    let ada = crate::support::unique_email("ada");
    crate::support::sign_up(&http, &a.base, &ada, "Ada's lab").await;
    let mut seen = Vec::new();
    for (i, server) in [&a, &b, &a, &b, &a, &b, &a].into_iter().enumerate() {
        seen.push(wrong_password(&http, server, &ada, i).await);
    }
    assert_eq!(seen, [401, 401, 401, 401, 401, 429, 429]);
    // Locked on both, even for the right password.
    for server in [&a, &b] {
        let r = http
            .post(server.url("/api/auth/login"))
            .json(&json!({ "email": ada, "password": crate::support::PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    let bea = crate::support::unique_email("bea");
    crate::support::sign_up(&http, &b.base, &bea, "Bea's lab").await;
    let burst = (0..20).map(|i| wrong_password(&http, if i % 2 == 0 { &a } else { &b }, &bea, i));
    let answers = futures_util::future::join_all(burst).await;
    let checked = answers.iter().filter(|&&s| s == 401).count();
    let limited = answers.iter().filter(|&&s| s == 429).count();
    assert_eq!((checked, limited), (5, 15), "{answers:?}");
}

/// The credentials of the tests' `s3s-fs`, for every replica.
const S3_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", crate::blob_store::ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", crate::blob_store::SECRET_KEY),
];

/// Replicas on the suite's Postgres database and one `s3s-fs`, each on its own port (behind
/// the haproxy [`Fleet::start`] returns). Fields drop in order: the replicas, then their files.
struct Fleet {
    replicas: Vec<Option<Server>>,
    binds: Vec<String>,
    /// `b3o serve` arguments of every replica.
    args: Vec<String>,
    dirs: Vec<tempfile::TempDir>,
    _lb_dir: tempfile::TempDir,
    _s3: crate::blob_store::S3,
}

impl Fleet {
    /// `n` replicas with `args` (the first also seeds the demo models with `demo`), and the
    /// balancer in front of them.
    fn start(n: usize, args: &[&str], demo: bool) -> (Server, Fleet) {
        let s3 = crate::blob_store::S3::start();
        // Every test account registers from 127.0.0.1, and the registration limit per
        // address is shared by the replicas: off.
        let mut all = vec![
            "--blob-store".to_string(),
            s3.url(),
            "--max-registrations-per-hour".to_string(),
            "0".to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let dirs: Vec<tempfile::TempDir> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        for d in &dirs[1..] {
            crate::test_db::share_database(dirs[0].path(), d.path());
        }
        let binds: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let replicas = (0..n)
            .map(|i| {
                Some(Self::replica(
                    &binds[i],
                    dirs[i].path(),
                    &all,
                    demo && i == 0,
                ))
            })
            .collect();
        let lb_dir = tempfile::tempdir().unwrap();
        let lb = balancer(lb_dir.path(), &binds);
        let fleet = Fleet {
            replicas,
            binds,
            args: all,
            dirs,
            _lb_dir: lb_dir,
            _s3: s3,
        };
        (lb, fleet)
    }

    fn replica(bind: &str, dir: &Path, args: &[String], demo: bool) -> Server {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        if demo {
            args.push("--demo");
        }
        Server::start_on(bind, dir, &args, &S3_ENV)
    }

    /// Stops replica `i` as a supervisor does (SIGTERM, then it exits by itself) and starts
    /// it again on its port.
    async fn restart(&mut self, i: usize) {
        let old = self.replicas[i].take().unwrap();
        tokio::task::spawn_blocking(move || old.terminate(Duration::from_secs(20)))
            .await
            .unwrap();
        let (bind, dir, args) = (
            self.binds[i].clone(),
            self.dirs[i].path().to_path_buf(),
            self.args.clone(),
        );
        let again = tokio::task::spawn_blocking(move || Self::replica(&bind, &dir, &args, false))
            .await
            .unwrap();
        self.replicas[i] = Some(again);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_behind_haproxy_lose_no_acknowledged_update_when_one_is_killed() {
    if !crate::test_db::on_postgres() {
        eprintln!("skipped: replicas share a database on Postgres only (B3O_TEST_POSTGRES)");
        return;
    }
    let (lb, mut fleet) = Fleet::start(3, &[], false);
    let http = reqwest::Client::new();

    // 20 partners, everything through the balancer (so spread over the replicas).
    const MEMBERS: usize = 20;
    let samples: Vec<u64> = (0..MEMBERS as u64).map(|i| 10 + i).collect();
    let g = setup(&lb, &http, group_body(MEMBERS as u32, 2, 120), &samples).await;
    let mut streams = Vec::new();
    for m in 0..6 {
        let mut r = http
            .get(lb.url(&format!("/api/groups/{}/events", g.id)))
            .bearer_auth(&g.members[m].1)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        wait_event(&mut r, "snapshot", Duration::from_secs(5)).await;
        streams.push((m, r));
    }
    start(&lb, &http, &g).await;
    let base = global(&lb, &http, &g, &g.members[0].1).await;
    let shift = |m: usize| 0.1 * (m as f32 + 1.0);
    // An upload a client makes until acknowledged: a 502/503 from the balancer (the replica
    // died with the request) is retried, as `b3o client` does; a replay of an update already
    // accepted gets the same answer.
    let acknowledge = |m: usize| {
        let (lb, http, g, base, samples) = (&lb, &http, &g, &base, &samples);
        async move {
            let body = update(g, 1, shifted(base, shift(m)), samples[m], 0.5);
            for _ in 0..40 {
                let (st, v) = upload(lb, http, g, m, 1, body.clone()).await;
                if st == StatusCode::OK {
                    return;
                }
                assert!(st.is_server_error(), "member {m}: {st} {v}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            panic!("member {m}'s update was never acknowledged");
        }
    };
    for m in 0..MEMBERS / 2 {
        acknowledge(m).await;
    }
    // Kill -9 one replica mid-round, with streams and updates in flight on it.
    let killed = fleet.replicas[0].take().unwrap();
    let in_flight: Vec<_> = (MEMBERS / 2..MEMBERS).map(acknowledge).collect();
    killed.kill9();
    futures_util::future::join_all(in_flight).await;

    // The round closes once, with every acknowledged update; exactly one version.
    let r1 = wait_round(&lb, &http, &g, 1, "closed").await;
    assert_eq!(r1["reported"], MEMBERS, "{r1}");
    let vs = versions(&lb, &http, &g).await;
    let round1: Vec<&Value> = vs.iter().filter(|v| v["round"] == 1).collect();
    assert_eq!(round1.len(), 1, "{vs:?}");
    assert_eq!(
        round1[0]["contributors"].as_array().unwrap().len(),
        MEMBERS,
        "{vs:?}"
    );
    let total: u64 = samples.iter().sum();
    let mean_shift: f32 = (0..MEMBERS)
        .map(|m| shift(m) * samples[m] as f32)
        .sum::<f32>()
        / total as f32;
    let model = global(&lb, &http, &g, &g.members[0].1).await;
    for (x, w) in model.iter().zip(&base) {
        assert!(
            (x - (w + mean_shift)).abs() < 1e-4,
            "{x} vs {w} + {mean_shift}"
        );
    }

    // Every stream hears the round close; one cut by the kill reconnects through the
    // balancer and goes on from a snapshot of where the group stands.
    let mut reconnected = 0;
    for (m, mut r) in streams {
        if event_or_end(&mut r, "round_closed", Duration::from_secs(10))
            .await
            .is_some()
        {
            continue;
        }
        reconnected += 1;
        let mut again = http
            .get(lb.url(&format!("/api/groups/{}/events", g.id)))
            .bearer_auth(&g.members[m].1)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        let snapshot = wait_event(&mut again, "snapshot", Duration::from_secs(5)).await;
        assert!(snapshot.contains("\"current_round\":2"), "{snapshot}");
    }
    eprintln!("{reconnected} of 6 streams were on the killed replica and reconnected");
}

/// A client of the balancer sending requests in a loop until told to stop: (answered 2xx,
/// failed with what).
async fn load(
    http: reqwest::Client,
    url: String,
    body: Value,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u64, Vec<String>) {
    let (mut ok, mut failed) = (0, Vec::new());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match http.post(&url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
                ok += 1;
            }
            Ok(r) => failed.push(format!(
                "{} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => failed.push(format!("transport: {e}")),
        }
    }
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_of_three_replicas_under_load_fails_no_request_and_loses_no_update() {
    if !crate::test_db::on_postgres() {
        eprintln!("skipped: replicas share a database on Postgres only (B3O_TEST_POSTGRES)");
        return;
    }
    // Short drain: the balancer checks every 200 ms, so it stops sending well within 1 s. The
    // first replica seeds the demo models (the public `churn` model the load calls).
    let (lb, mut fleet) = Fleet::start(
        3,
        &["--shutdown-drain-secs", "1", "--shutdown-grace-secs", "10"],
        true,
    );
    let http = reqwest::Client::new();
    let row = json!({ "rows": [{ "CreditScore": 619, "Geography": "France", "Gender": "Female",
        "Age": 42, "Tenure": 2, "Balance": 0, "NumOfProducts": 1, "HasCrCard": 1,
        "IsActiveMember": 1, "EstimatedSalary": 101348.88 }] });
    let predict = lb.url("/api/predict/churn/rows");
    // Every replica has the model loaded before the clock starts.
    for _ in 0..6 {
        let r = http.post(&predict).json(&row).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    const MEMBERS: usize = 12;
    let samples: Vec<u64> = (0..MEMBERS as u64).map(|i| 5 + i).collect();
    let g = setup(&lb, &http, group_body(MEMBERS as u32, 2, 300), &samples).await;
    start(&lb, &http, &g).await;
    let base = global(&lb, &http, &g, &g.members[0].1).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load_started = Instant::now();
    let loaders: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(load(
                http.clone(),
                predict.clone(),
                row.clone(),
                stop.clone(),
            ))
        })
        .collect();
    // Partners upload while the replicas restart, one every 600 ms; each must be answered
    // 200 the first time.
    let uploads = {
        let (lb_base, http, g, base, samples) = (
            lb.base.clone(),
            http.clone(),
            (g.id, g.members.clone()),
            base.clone(),
            samples.clone(),
        );
        tokio::spawn(async move {
            let mut failed = Vec::new();
            for (m, &n) in samples.iter().enumerate() {
                tokio::time::sleep(Duration::from_millis(600)).await;
                let group = crate::federation::Group {
                    id: g.0,
                    owner: String::new(),
                    members: g.1.clone(),
                };
                let body = update(&group, 1, shifted(&base, m as f32), n, 0.5);
                let r = http
                    .post(format!("{lb_base}/api/groups/{}/rounds/1/update", g.0))
                    .bearer_auth(&g.1[m].1)
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::OK => {}
                    Ok(r) => failed.push(format!("member {m}: {}", r.status())),
                    Err(e) => failed.push(format!("member {m}: {e}")),
                }
            }
            failed
        })
    };
    // The rolling restart: SIGTERM one replica, wait for it to exit by itself, start it again
    // on its port, let the balancer see it ready, then the next.
    for i in 0..3 {
        fleet.restart(i).await;
        // The balancer sees it ready (checks every 200 ms) before the next one stops.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let upload_failures = uploads.await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut answered, mut failures) = (0, Vec::new());
    for l in loaders {
        let (ok, failed) = l.await.unwrap();
        answered += ok;
        failures.extend(failed);
    }
    eprintln!(
        "{answered} predictions answered during the rolling restart ({:.0}/s)",
        answered as f64 / load_started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(upload_failures.is_empty(), "{upload_failures:?}");
    assert!(answered > 100, "only {answered} predictions answered");

    // Every update counted once, in the one version of round 1.
    let r1 = wait_round(&lb, &http, &g, 1, "closed").await;
    assert_eq!(r1["reported"], MEMBERS, "{r1}");
    let vs = versions(&lb, &http, &g).await;
    assert_eq!(vs.iter().filter(|v| v["round"] == 1).count(), 1, "{vs:?}");
}

/// CPU seconds (user + system) process `pid` has used, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ: 100 on Linux.
    ticks / 100.0
}

/// BENCHMARKS.md, "A round of 1,000 clients": one federated round of `B3O_BENCH_CLIENTS`
/// (default 1,000) partners over 1 and over 3 replicas behind haproxy, on Postgres and
/// s3s-fs. Every partner has its own account, joins, gets ready; then all of them fetch the
/// global model and upload an update at once (64 in flight). Prints the time until every
/// update was acknowledged, the round's wall time (to its close: the aggregation included),
/// the updates per second, and the replicas' CPU per update. Run by `scripts/bench-round.sh`;
/// ignored in the suite.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: scripts/bench-round.sh"]
async fn bench_a_round_of_1000_clients_over_1_and_3_replicas() {
    use futures_util::StreamExt;
    assert!(crate::test_db::on_postgres(), "needs B3O_TEST_POSTGRES");
    let clients: usize = std::env::var("B3O_BENCH_CLIENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    for n in [1, 3] {
        let (lb, fleet) = Fleet::start(n, &[], false);
        let http = reqwest::Client::new();
        let mut g = setup(&lb, &http, group_body(clients as u32, 1, 3600), &[]).await;
        let code = group_view(&lb, &http, g.id, &g.owner).await["join_code"]
            .as_str()
            .unwrap()
            .to_string();
        let t = Instant::now();
        let joined: Vec<(i64, String)> = futures_util::stream::iter(0..clients)
            .map(|i| {
                let (lb, http, code, id) = (&lb, &http, &code, g.id);
                async move {
                    let who = crate::federation::account(lb, http, &format!("org{i}")).await;
                    let r = http
                        .post(lb.url("/api/groups/join"))
                        .bearer_auth(&who.token)
                        .json(&json!({ "join_code": code, "name": format!("org {i}") }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::CREATED);
                    let member = r.json::<Value>().await.unwrap()["member_id"]
                        .as_i64()
                        .unwrap();
                    let r = http
                        .post(lb.url(&format!("/api/groups/{id}/ready")))
                        .bearer_auth(&who.token)
                        .json(&json!({ "num_samples": 10 + i }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::OK);
                    (member, who.token)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let setup_secs = t.elapsed().as_secs_f64();
        g.members = joined;
        start(&lb, &http, &g).await;

        let pids: Vec<u32> = fleet.replicas.iter().flatten().map(Server::pid).collect();
        let cpu0: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
        let t = Instant::now();
        let g = &g;
        futures_util::stream::iter(0..clients)
            .map(|m| {
                let (lb, http) = (&lb, &http);
                async move {
                    let base = global(lb, http, g, &g.members[m].1).await;
                    let body = update(g, 1, shifted(&base, 0.01), 10 + m as u64, 0.5);
                    let (st, v) = upload(lb, http, g, m, 1, body).await;
                    assert_eq!(st, StatusCode::OK, "{v}");
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<()>>()
            .await;
        let uploads_secs = t.elapsed().as_secs_f64();
        let closed = wait_round(&lb, &http, g, 1, "closed").await;
        let round_secs = t.elapsed().as_secs_f64();
        let cpu = pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - cpu0;
        assert_eq!(closed["reported"], clients, "{closed}");
        eprintln!(
            "BENCH replicas={n} clients={clients} setup_s={setup_s:.1} \
             uploads_s={uploads_secs:.2} round_s={round_secs:.2} updates_per_s={:.0} \
             replica_cpu_ms_per_update={:.2}",
            clients as f64 / round_secs,
            cpu * 1000.0 / clients as f64,
            setup_s = setup_secs,
        );
    }
}
