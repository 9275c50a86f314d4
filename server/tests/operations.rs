//! Zero-downtime operations (issue #15): readiness (`/readyz`) through a replica's lifecycle,
//! the graceful shutdown of a real `b3o serve` process on SIGTERM (drain, then stop, event
//! streams ended with a reconnection hint, requests in flight finished, exit 0), and the
//! metrics the alert rules of `deploy/prometheus/alerts.yml` read.

use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use b3o_server::lifecycle::Lifecycle;

use crate::federation::{Server, group_body};
use crate::inference::{Raw, Server as InProcess, churn};
use crate::support::{PASSWORD, sign_up, unique_email};

/// A generous bound for anything that should take a moment.
const PATIENCE: Duration = Duration::from_secs(60);

// --- Readiness, in process ----------------------------------------------------------------------

#[tokio::test]
async fn readiness_follows_the_lifecycle_and_draining_closes_connections() {
    let s = InProcess::new().await;
    let r = s.send(Method::GET, "/readyz", &[], Vec::new()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), json!({ "status": "ok" }));
    assert_eq!(r.header("connection"), None);

    let r = s
        .send(Method::GET, "/v2/health/ready", &[], Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    s.state.lifecycle.begin_drain();
    // Open Inference Protocol clients and KServe's probes ask `/v2/health/ready`: the same.
    for path in ["/readyz", "/v2/health/ready"] {
        let r = s.send(Method::GET, path, &[], Vec::new()).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(r.json()["error"]["code"], "shutting_down", "{}", r.text());
        assert!(r.header("retry-after").is_some());
    }
    // Everything else is still served during the drain, asking clients to reconnect.
    let r = s.send(Method::GET, "/healthz", &[], Vec::new()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    // Start-up work finishing late does not make it ready again.
    s.state.lifecycle.mark_ready();
    let r = s.send(Method::GET, "/readyz", &[], Vec::new()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_starting_replica_is_live_but_not_ready() {
    let mut s = InProcess::new().await;
    s.state.lifecycle = Lifecycle::starting();
    s.router = b3o_server::app(s.state.clone(), Path::new("/nonexistent"));
    for path in ["/readyz", "/v2/health/ready"] {
        let r = s.send(Method::GET, path, &[], Vec::new()).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(r.json()["error"]["code"], "starting", "{}", r.text());
    }
    let r = s.send(Method::GET, "/healthz", &[], Vec::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    s.state.lifecycle.mark_ready();
    let r = s.send(Method::GET, "/readyz", &[], Vec::new()).await;
    assert_eq!(r.status, StatusCode::OK);
}

// --- Metrics for the alert rules ----------------------------------------------------------------

/// The value of the sample `name{labels…}` in a Prometheus text exposition, whatever the
/// order of its labels (and other labels it has).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            return None;
        }
        let has = |(k, v): &(&str, &str)| {
            rest.split(',')
                .any(|pair| pair == format!("{k}=\"{v}\"").as_str())
        };
        if labels.iter().all(has) {
            value.parse().ok()
        } else {
            None
        }
    })
}

async fn scrape(s: &InProcess) -> String {
    let r = s.send(Method::GET, "/metrics", &[], Vec::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    r.text()
}

#[tokio::test]
async fn http_job_queue_and_readiness_metrics_appear_and_move() {
    let d = churn().await;
    let s = &d.server;
    let healthz = [
        ("method", "GET"),
        ("route", "/healthz"),
        ("status_class", "2xx"),
    ];
    let before = sample(&scrape(s).await, "b3o_http_requests_total", &healthz).unwrap_or(0.0);
    for _ in 0..3 {
        assert_eq!(
            s.send(Method::GET, "/healthz", &[], Vec::new())
                .await
                .status,
            StatusCode::OK
        );
    }
    // A refused call is counted under its route template, never its concrete path.
    let missing: Raw = d.get("/api/groups/987654321").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let text = scrape(s).await;
    let after = sample(&text, "b3o_http_requests_total", &healthz).unwrap();
    assert!(after >= before + 3.0, "{before} -> {after}");
    let group_404 = [
        ("method", "GET"),
        ("route", "/api/groups/{id}"),
        ("status_class", "4xx"),
    ];
    assert!(sample(&text, "b3o_http_requests_total", &group_404).unwrap() >= 1.0);
    assert!(!text.contains("987654321"), "a path became a label");
    let timed = [("method", "GET"), ("route", "/healthz")];
    assert!(sample(&text, "b3o_http_request_seconds_count", &timed).unwrap() >= 3.0);
    assert!(
        sample(
            &text,
            "b3o_http_request_seconds_bucket",
            &[("method", "GET"), ("route", "/healthz"), ("le", "+Inf")]
        )
        .unwrap()
            >= 3.0
    );
    assert_eq!(sample(&text, "b3o_ready", &[]), Some(1.0));
    assert_eq!(sample(&text, "b3o_jobs_queued", &[]), Some(0.0));
    assert_eq!(sample(&text, "b3o_jobs_running", &[]), Some(0.0));
    assert!(sample(&text, "b3o_jobs_finished_total", &[("status", "failed")]).is_some());

    // Two jobs waiting for a worker (rows written as the submission writes them; no worker
    // is told about them, so they stay queued).
    for _ in 0..2 {
        sqlx::query(
            "INSERT INTO jobs (user_id, deployment, version_id, status, input_name, input_path,
                 input_bytes, created_at)
             VALUES ($1, 'churn', $2, 'queued', 'q.csv', 'jobs/q.csv', 1, 0)",
        )
        .bind(d.owner.id)
        .bind(d.version_id)
        .execute(&s.state.db)
        .await
        .unwrap();
    }
    s.state.lifecycle.begin_drain();
    let text = scrape(s).await;
    assert_eq!(sample(&text, "b3o_jobs_queued", &[]), Some(2.0), "{text}");
    assert_eq!(sample(&text, "b3o_ready", &[]), Some(0.0));
}

// --- Graceful shutdown of a real process --------------------------------------------------------

/// A `b3o serve` process ([`Server`]: killed on drop if it is still running) and its address.
struct Replica {
    server: Server,
    base: String,
    addr: String,
}

impl Replica {
    fn start(data_dir: &Path, extra: &[&str]) -> Replica {
        let server = Server::start(data_dir, extra);
        let base = server.base.clone();
        let addr = base.trim_start_matches("http://").to_string();
        Replica { server, base, addr }
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// SIGTERM, as Kubernetes, systemd and `docker stop` send it.
    fn terminate(&self) {
        self.server.sigterm();
    }

    /// Waits for the process to exit, within [`PATIENCE`].
    async fn exit_status(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.server.exit_status() {
                return status;
            }
            assert!(start.elapsed() < PATIENCE, "b3o serve did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` from `conn`: status and body.
async fn read_response(conn: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_len, content_length) = loop {
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            break (at + 4, length);
        }
    };
    while buf.len() < head_len + content_length {
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed in a response body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head}"));
    let body = String::from_utf8_lossy(&buf[head_len..head_len + content_length]).into_owned();
    (status, body)
}

/// SIGTERM to a serving replica: `/readyz` turns 503 at once while `/healthz` and a request
/// already in flight go on being served through the drain; then the listener closes, the
/// group's event stream ends with an SSE `retry:` hint, the request in flight completes and
/// the process exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_closes_event_streams_with_a_retry_hint_and_finishes_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut replica = Replica::start(
        dir.path(),
        &["--shutdown-drain-secs", "5", "--shutdown-grace-secs", "30"],
    );
    let http = reqwest::Client::new();
    let r = http.get(replica.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);

    // A group's live events, followed by its owner.
    let owner = sign_up(&http, &replica.base, &unique_email("owner"), "owner").await;
    let r = http
        .post(replica.url("/api/groups"))
        .bearer_auth(&owner.token)
        .json(&group_body(2, 2, 60))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let group: Value = r.json().await.unwrap();
    let mut events = http
        .get(replica.url(&format!(
            "/api/groups/{}/events",
            group["group_id"].as_i64().unwrap()
        )))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), reqwest::StatusCode::OK);
    let mut seen = String::new();
    while !seen.contains("event: snapshot") {
        let chunk = tokio::time::timeout(PATIENCE, events.chunk())
            .await
            .expect("the snapshot event")
            .unwrap()
            .expect("the stream ended before its snapshot");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }

    // A slow request: a sign-up whose body arrives in two halves, the second after the stop.
    // The connection serves a first request so that it is surely accepted before the signal.
    let mut slow = TcpStream::connect(&replica.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: b3o\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut slow).await.0, 200);
    let body = json!({
        "email": unique_email("in-flight"),
        "display_name": "in flight",
        "organisation": "slow",
        "password": PASSWORD,
    })
    .to_string();
    let (first, second) = body.split_at(body.len() / 2);
    slow.write_all(
        format!(
            "POST /api/auth/register HTTP/1.1\r\nHost: b3o\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{first}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();

    replica.terminate();

    // Not ready at once; still serving.
    let start = Instant::now();
    loop {
        let r = http.get(replica.url("/readyz")).send().await.unwrap();
        if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(
                r.headers().get("connection").map(|v| v.to_str().unwrap()),
                Some("close")
            );
            let e: Value = r.json().await.unwrap();
            assert_eq!(e["error"]["code"], "shutting_down", "{e}");
            break;
        }
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        assert!(start.elapsed() < PATIENCE, "/readyz never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = http.get(replica.url("/healthz")).send().await.unwrap();
    assert_eq!(
        r.status(),
        reqwest::StatusCode::OK,
        "/healthz during the drain"
    );

    // At the end of the drain the stream ends, its last block a reconnection delay.
    loop {
        match tokio::time::timeout(PATIENCE, events.chunk())
            .await
            .expect("the event stream ends after the drain")
        {
            Ok(Some(chunk)) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(None) => break,
            Err(e) => panic!("the event stream broke instead of ending: {e}; got {seen}"),
        }
    }
    let tail = seen.rsplit("\n\n").find(|b| !b.trim().is_empty()).unwrap();
    let retry_ms: u64 = tail
        .lines()
        .find_map(|l| l.strip_prefix("retry:"))
        .unwrap_or_else(|| panic!("no retry hint at the end of the stream: {seen:?}"))
        .trim()
        .parse()
        .unwrap();
    assert!((1..=10_000).contains(&retry_ms), "{retry_ms}");
    assert!(!tail.contains("data:"), "the goodbye is no event: {tail:?}");

    // The listener is closed: new connections are refused.
    let start = Instant::now();
    while TcpStream::connect(&replica.addr).await.is_ok() {
        assert!(
            start.elapsed() < PATIENCE,
            "still accepting after the drain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The request in flight is still served, and completes.
    slow.write_all(second.as_bytes()).await.unwrap();
    let (status, answer) = read_response(&mut slow).await;
    assert_eq!(status, 201, "{answer}");

    let status = replica.exit_status().await;
    assert!(status.success(), "b3o serve exited with {status}");
}

/// A second signal cuts the drain short (an operator's Ctrl-C twice, `docker stop` after its
/// own timeout): the process exits long before a drain it was told to wait out.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_ends_the_drain_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut replica = Replica::start(dir.path(), &["--shutdown-drain-secs", "3600"]);
    let http = reqwest::Client::new();
    replica.terminate();
    let start = Instant::now();
    while http
        .get(replica.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != reqwest::StatusCode::SERVICE_UNAVAILABLE
    {
        assert!(start.elapsed() < PATIENCE, "/readyz never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replica.terminate();
    let status = replica.exit_status().await;
    assert!(status.success(), "b3o serve exited with {status}");
}
