//! Hardening (issue #19, see SECURITY.md): load under attack. On a real `b3o serve --demo`,
//! two participants (the native client's state machine, in this process) train a round of a
//! tabular group and a client predicts single churn rows, while an attacker on 127.0.0.1 sends
//! the issue's worst inputs side by side for a bounded time: a V2 body whose shape asks for
//! 3 TB, a 100,000-column CSV header, 16 MiB V2 and `rows` bodies, a 4096x4096 16-bit PNG,
//! bursts of 20 parallel wrong passwords, bodies that trickle in and connections that send
//! nothing. The round must complete and write a version, every prediction must succeed within
//! a stated factor of its latency before the attack, the server's peak RSS must stay within
//! 300 MB of its idle size, and the server must be up afterwards.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use b3o_models::protocol::{CreateGroup, Hyperparameters, ModelTemplate, Optimizer};
use b3o_models::tabular::{InferOptions, infer_schema, read_csv};
use b3o_server::demo::churn_data;
use b3o_wasm_client::fl::data::LocalData;
use b3o_wasm_client::fl::native::HttpTransport;
use b3o_wasm_client::fl::trainer::ThreadTrainer;
use b3o_wasm_client::fl::{Api, Auth, ClientEvent, Participant, ParticipantOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::malformed_corpus::{churn_row, png_bomb};
use crate::support::{Spawned, sign_up, unique_email};

/// Peak RSS above the idle process the attack may cause (the issue's acceptance bound).
const MAX_PEAK_ABOVE_IDLE_KIB: u64 = 300 * 1024;
/// The legitimate median latency under attack may be at most this many times the median
/// before it, or [`LATENCY_FLOOR`], whichever is larger. A behaviour bound, not a speed goal:
/// under attack a prediction shares the (possibly two) cores with the attacker's parsing and
/// the round's training, so it is expected to be several times slower; what the bound rules
/// out is legitimate work queued behind the attack (seconds, or 503s). The floor exists
/// because an idle median of a few milliseconds in a debug build is below what a scheduler
/// with a dozen busy threads can promise.
const LATENCY_FACTOR: u32 = 20;
const LATENCY_FLOOR: Duration = Duration::from_millis(250);
/// The attack runs until the round is done and enough predictions were made under it, but
/// never longer than this.
const ATTACK_LIMIT: Duration = Duration::from_secs(60);
/// At least this long, so that every kind of attack is under way for a while.
const ATTACK_MIN: Duration = Duration::from_secs(10);
/// Predictions needed under attack before it may stop.
const MIN_PREDICTIONS: usize = 30;
/// Slow-body connections (each announcing 16 MiB and sending a byte every half second) and
/// connections that never finish their headers.
const SLOW_BODIES: usize = 8;
const IDLE_CONNECTIONS: usize = 16;
const MIB: usize = 1 << 20;

/// What each kind of attack got back: status (or "no answer") -> count.
type Tally = Arc<Mutex<BTreeMap<&'static str, BTreeMap<String, u32>>>>;

fn record(tally: &Tally, kind: &'static str, outcome: String) {
    *tally
        .lock()
        .unwrap()
        .entry(kind)
        .or_default()
        .entry(outcome)
        .or_default() += 1;
}

/// A V2 request for `digits` of `len` bytes whose data does not fit its one-image shape.
fn v2_sixteen_mib() -> Bytes {
    let mut body = Vec::with_capacity(16 * MIB + 64);
    body.extend_from_slice(
        br#"{"inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"FP32","data":["#,
    );
    while body.len() < 16 * MIB {
        body.extend_from_slice(b"0.5,");
    }
    body.extend_from_slice(b"0.5]}]}");
    Bytes::from(body)
}

/// 16 MiB of churn rows, each lacking `Balance`.
fn rows_sixteen_mib() -> Bytes {
    let mut row = churn_row();
    row.remove("Balance");
    let row = Value::Object(row).to_string();
    let mut body = Vec::with_capacity(16 * MIB + 1024);
    body.extend_from_slice(b"{\"rows\":[");
    while body.len() < 16 * MIB {
        body.extend_from_slice(row.as_bytes());
        body.push(b',');
    }
    body.extend_from_slice(row.as_bytes());
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

fn csv_header_100k() -> Bytes {
    let header: Vec<String> = (0..100_000).map(|i| format!("c{i}")).collect();
    Bytes::from(format!("{}\n", header.join(",")))
}

fn huge_shape() -> Bytes {
    Bytes::from(
        json!({ "inputs": [{ "name": "input", "shape": [1u64 << 30, 1, 28, 28], "datatype": "FP32", "data": [0.5] }] })
            .to_string(),
    )
}

/// Sends `body` to `path` over and over until `stop`, tallying the answers as `kind`.
fn attack(
    kind: &'static str,
    base: &str,
    path: &str,
    body: Bytes,
    stop: Arc<AtomicBool>,
    tally: Tally,
) -> tokio::task::JoinHandle<()> {
    let url = format!("{base}{path}");
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        while !stop.load(Ordering::Relaxed) {
            let outcome = match http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
            {
                Ok(r) => {
                    let status = r.status().as_u16().to_string();
                    let _ = r.bytes().await;
                    status
                }
                Err(e) => format!(
                    "no answer ({})",
                    if e.is_timeout() { "timeout" } else { "error" }
                ),
            };
            record(&tally, kind, outcome);
        }
    })
}

/// Bursts of 20 parallel wrong passwords for one account until `stop`.
fn wrong_logins(
    base: &str,
    email: String,
    stop: Arc<AtomicBool>,
    tally: Tally,
) -> tokio::task::JoinHandle<()> {
    let url = format!("{base}/api/auth/login");
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        while !stop.load(Ordering::Relaxed) {
            let burst = (0..20).map(|i| {
                http.post(&url)
                    .json(&json!({ "email": email, "password": format!("wrong guess {i}") }))
                    .send()
            });
            for r in futures_util::future::join_all(burst).await {
                let outcome =
                    r.map_or_else(|_| "no answer".into(), |r| r.status().as_u16().to_string());
                record(&tally, "20 parallel wrong logins", outcome);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// A request whose body announces 16 MiB and trickles in a byte every half second, until
/// `stop` or until the server closes it. Tallies whether the server closed it.
fn slow_body(addr: String, stop: Arc<AtomicBool>, tally: Tally) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut sock) = TcpStream::connect(&addr).await else {
            record(&tally, "slow body", "refused".into());
            return;
        };
        let head = format!(
            "POST /v2/models/digits/infer HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
            16 * MIB
        );
        if sock.write_all(head.as_bytes()).await.is_err() {
            record(&tally, "slow body", "closed".into());
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if sock.write_all(b" ").await.is_err() {
                record(&tally, "slow body", "closed by the server".into());
                return;
            }
        }
        record(&tally, "slow body", "held to the end".into());
    })
}

/// A connection that sends half a request line and nothing more, until `stop` or until the
/// server closes it.
fn idle_connection(
    addr: String,
    stop: Arc<AtomicBool>,
    tally: Tally,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut sock) = TcpStream::connect(&addr).await else {
            record(&tally, "idle connection", "refused".into());
            return;
        };
        let _ = sock.write_all(b"GET /healthz HT").await;
        let mut buf = [0u8; 256];
        loop {
            if stop.load(Ordering::Relaxed) {
                record(&tally, "idle connection", "held to the end".into());
                return;
            }
            match tokio::time::timeout(Duration::from_millis(500), sock.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    record(&tally, "idle connection", "closed by the server".into());
                    return;
                }
                Ok(Ok(_)) | Err(_) => {}
            }
        }
    })
}

/// One single-row churn prediction; its latency, or why it failed.
async fn predict(http: &reqwest::Client, url: &str, body: &Value) -> Result<Duration, String> {
    let t = Instant::now();
    let r = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = r.status();
    let text = r
        .text()
        .await
        .map_err(|e| format!("{status}, body cut: {e}"))?;
    let elapsed = t.elapsed();
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status != reqwest::StatusCode::OK
        || answer["predictions"].as_array().map(Vec::len) != Some(1)
    {
        return Err(format!(
            "{status}: {}",
            text.chars().take(300).collect::<String>()
        ));
    }
    Ok(elapsed)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn quiet(_: &ClientEvent) {}

/// A federated round of two participants in group `gid` (the owner starts it once both
/// are ready); the participants' reports.
async fn round(
    base: String,
    owner: Api<HttpTransport>,
    gid: i64,
    code: String,
    participants: Vec<(String, String)>,
) -> Result<(), String> {
    let mut running = Vec::new();
    for (i, (token, csv)) in participants.into_iter().enumerate() {
        let api = Api::new(HttpTransport::new(&base).unwrap(), Auth::Bearer(token));
        let data = LocalData::from_csv(csv.as_bytes()).map_err(|e| e.to_string())?;
        let options = ParticipantOptions {
            seed: i as u64,
            poll_interval: Duration::from_millis(500),
            ..Default::default()
        };
        let mut p = Participant::new(api, ThreadTrainer::cpu(), quiet, data, options);
        let code = code.clone();
        running.push(tokio::spawn(async move {
            p.join(&code).await?;
            p.run().await
        }));
    }
    loop {
        let g = owner.group(gid).await.map_err(|e| format!("group: {e}"))?;
        if g.ready_members >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    owner.start(gid).await.map_err(|e| format!("start: {e}"))?;
    for r in running {
        let report = r
            .await
            .map_err(|e| format!("participant panicked: {e}"))?
            .map_err(|e| format!("participant failed: {e}"))?;
        if report.rounds_trained != [1] {
            return Err(format!(
                "a participant trained rounds {:?}",
                report.rounds_trained
            ));
        }
    }
    let versions = owner
        .versions(gid)
        .await
        .map_err(|e| format!("versions: {e}"))?;
    if !versions.versions.iter().any(|v| v.round == 1) {
        return Err(format!(
            "no version of round 1: {:?}",
            versions
                .versions
                .iter()
                .map(|v| v.round)
                .collect::<Vec<_>>()
        ));
    }
    Ok(())
}

/// Issue #19: legitimate training and prediction go on while an attacker sends the worst
/// inputs; memory stays bounded and the server stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn legitimate_work_completes_while_an_attacker_sends_the_worst_inputs() {
    let started = Instant::now();
    let mut s = Spawned::demo(&["--max-registrations-per-hour", "1000"]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = s.base.clone();
    let addr = base.trim_start_matches("http://").to_string();

    // The federated group: tabular churn, one round, two participants with their own rows.
    let owner = sign_up(&http, &base, &unique_email("attack-owner"), "Owner Bank").await;
    let victim = sign_up(&http, &base, &unique_email("attack-victim"), "Victim Ltd").await;
    let mut participants = Vec::new();
    for i in 0..2u64 {
        let who = sign_up(
            &http,
            &base,
            &unique_email("attack-bank"),
            &format!("Bank {i}"),
        )
        .await;
        participants.push((who.token, churn_data::churn_csv(1000 + i, 300)));
    }
    let table = read_csv(churn_data::churn_csv(999, 300).as_bytes()).unwrap();
    let schema = infer_schema(
        &table,
        &InferOptions {
            target: Some("Exited".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let owner_api = Api::new(
        HttpTransport::new(&base).unwrap(),
        Auth::Bearer(owner.token),
    );
    let created = owner_api
        .create_group(&CreateGroup {
            name: "under attack".into(),
            description: String::new(),
            model: ModelTemplate::Tabular {
                schema,
                hidden: Some(vec![16]),
            },
            hyperparameters: Hyperparameters {
                rounds: 1,
                local_epochs: 1,
                batch_size: 32,
                optimizer: Optimizer::Adam,
                lr: 3e-3,
            },
            strategy: json!({ "name": "fedavg" }),
            min_clients: 2,
            fraction_fit: 1.0,
            round_deadline_secs: 300,
            max_update_norm: None,
            secagg: None,
            update_encoding: Default::default(),
            dp: None,
            asynchronous: None,
        })
        .await
        .unwrap();

    // The legitimate predictor's latency before the attack.
    let predict_url = format!("{base}/api/predict/churn/rows");
    let row = json!({ "rows": [churn_row()] });
    let legit = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    for _ in 0..5 {
        predict(&legit, &predict_url, &row)
            .await
            .expect("warm-up prediction");
    }
    let mut before = Vec::new();
    for _ in 0..30 {
        before.push(
            predict(&legit, &predict_url, &row)
                .await
                .expect("prediction before the attack"),
        );
    }
    let before = median(before);

    // Bodies built before the clock starts.
    let bodies = [
        (
            "V2 shape [2^30,1,28,28] with one value",
            "/v2/models/digits/infer",
            huge_shape(),
        ),
        (
            "100,000-column CSV header",
            "/api/predict/churn/csv",
            csv_header_100k(),
        ),
        (
            "16 MiB V2 body",
            "/v2/models/digits/infer",
            v2_sixteen_mib(),
        ),
        (
            "16 MiB rows body",
            "/api/predict/churn/rows",
            rows_sixteen_mib(),
        ),
        (
            "4096x4096 16-bit RGBA PNG",
            "/api/predict/digits/image",
            Bytes::from(png_bomb()),
        ),
    ];

    let idle = s.memory_kib("VmRSS");
    s.reset_peak();
    let attack_started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tally: Tally = Arc::default();
    let mut attackers = Vec::new();
    for (kind, path, body) in bodies {
        attackers.push(attack(kind, &base, path, body, stop.clone(), tally.clone()));
    }
    attackers.push(wrong_logins(
        &base,
        victim.email.clone(),
        stop.clone(),
        tally.clone(),
    ));
    for _ in 0..SLOW_BODIES {
        attackers.push(slow_body(addr.clone(), stop.clone(), tally.clone()));
    }
    for _ in 0..IDLE_CONNECTIONS {
        attackers.push(idle_connection(addr.clone(), stop.clone(), tally.clone()));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The legitimate work, under attack.
    let round_task = tokio::spawn(round(
        base.clone(),
        owner_api,
        created.group_id,
        created.join_code.clone(),
        participants,
    ));
    let predictions: Arc<Mutex<Vec<Result<Duration, String>>>> = Arc::default();
    let predictor = {
        let (stop, predictions, url) = (stop.clone(), predictions.clone(), predict_url.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = predict(&legit, &url, &row).await;
                predictions.lock().unwrap().push(r);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut round_result = None;
    let mut round_task = Some(round_task);
    loop {
        if let Some(task) = round_task.take_if(|t| t.is_finished()) {
            round_result = Some(
                task.await
                    .unwrap_or_else(|e| Err(format!("round task: {e}"))),
            );
        }
        let enough = predictions.lock().unwrap().len() >= MIN_PREDICTIONS;
        let elapsed = attack_started.elapsed();
        if (round_result.is_some() && enough && elapsed >= ATTACK_MIN) || elapsed >= ATTACK_LIMIT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let attack_time = attack_started.elapsed();
    predictor.await.unwrap();
    for a in attackers {
        // Each attacker finishes the request it has in flight (30 s timeout at most).
        let _ = tokio::time::timeout(Duration::from_secs(40), a).await;
    }
    if let Some(task) = round_task {
        task.abort();
    }
    let peak = s.memory_kib("VmHWM");

    let running = s.running();
    let health = http.get(s.url("/healthz")).send().await;
    let predictions = std::mem::take(&mut *predictions.lock().unwrap());
    let latencies: Vec<Duration> = predictions
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    let failed: Vec<&String> = predictions
        .iter()
        .filter_map(|r| r.as_ref().err())
        .collect();
    let under = if latencies.is_empty() {
        Duration::MAX
    } else {
        median(latencies.clone())
    };
    let bound = (before * LATENCY_FACTOR).max(LATENCY_FLOOR);

    eprintln!(
        "under attack: {:.1?} of attack (test {:.1?}); {} predictions, median {before:.1?} before, \
         {under:.1?} under attack (bound {bound:.1?}), slowest {:.1?}; RSS idle {} MiB, peak {} MiB \
         (+{} MiB); attacker answers: {:#?}",
        attack_time,
        started.elapsed(),
        predictions.len(),
        latencies.iter().max().copied().unwrap_or_default(),
        idle / 1024,
        peak / 1024,
        peak.saturating_sub(idle) / 1024,
        tally.lock().unwrap(),
    );

    let mut problems = Vec::new();
    if !running {
        problems.push("the server died during the attack".to_string());
    }
    if !health.as_ref().is_ok_and(|r| r.status().is_success()) {
        problems.push(format!("the health check fails afterwards: {health:?}"));
    }
    match round_result {
        Some(Ok(())) => {}
        Some(Err(e)) => problems.push(format!("the round failed: {e}")),
        None => problems.push(format!(
            "the round did not complete within {ATTACK_LIMIT:?}"
        )),
    }
    if predictions.len() < MIN_PREDICTIONS {
        problems.push(format!(
            "only {} predictions were made under attack",
            predictions.len()
        ));
    }
    if !failed.is_empty() {
        problems.push(format!(
            "{} of {} legitimate predictions failed: {:?}",
            failed.len(),
            predictions.len(),
            &failed[..failed.len().min(10)]
        ));
    }
    if under > bound {
        problems.push(format!(
            "the median prediction took {under:?} under attack, more than {bound:?} \
             ({LATENCY_FACTOR}x the {before:?} before it)"
        ));
    }
    if peak.saturating_sub(idle) > MAX_PEAK_ABOVE_IDLE_KIB {
        problems.push(format!(
            "peak RSS {} MiB is more than 300 MiB above the idle {} MiB",
            peak / 1024,
            idle / 1024
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
