//! The FL client: native `b3o client` processes and simulated participants (the library's
//! native transport) sharing one group on a running `b3o serve` over real HTTP, a client
//! killed and restarted mid-training, and what leaves a client (weight updates and column
//! summaries, never rows) checked on every request it sends.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use b3o_models::Dataset;
use b3o_models::metrics::Metrics;
use b3o_models::model::ModelSpec;
use b3o_models::protocol::{CreateGroup, Hyperparameters, ModelTemplate, Optimizer};
use b3o_models::stats::Summary;
use b3o_models::tabular::{InferOptions, Schema, infer_schema, read_csv};
use b3o_models::train::TrainOutcome;
use b3o_models::weights;
use b3o_models::weights::WeightSet;
use b3o_server::simulate::transport::InProcess;
use b3o_wasm_client::fl::data::LocalData;
use b3o_wasm_client::fl::native::HttpTransport;
use b3o_wasm_client::fl::trainer::{ProgressFn, ThreadTrainer, TrainJob, Trainer};
use b3o_wasm_client::fl::transport::Recording;
use b3o_wasm_client::fl::{
    Api, Auth, ClientEvent, FlError, Method, Participant, ParticipantOptions, Report, Request,
    Transport,
};
use serde_json::{Value, json};

use crate::support::{TestApp, sign_up, unique_email};

fn churn() -> Option<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/datasets/churn_modelling.csv"
    );
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(_) => {
            eprintln!("skipped: {path} is missing");
            None
        }
    }
}

/// The header and data rows `rows` of a CSV text, as CSV text.
fn csv_rows(text: &str, rows: std::ops::Range<usize>) -> String {
    let mut lines = text.lines();
    let mut out = String::from(lines.next().unwrap());
    out.push('\n');
    for line in lines.skip(rows.start).take(rows.len()) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn schema_of(csv: &str) -> Schema {
    let table = read_csv(csv.as_bytes()).unwrap();
    let options = InferOptions {
        target: Some("Exited".into()),
        ..Default::default()
    };
    infer_schema(&table, &options).unwrap()
}

fn group_request(schema: Schema, rounds: u32, min_clients: u32) -> CreateGroup {
    CreateGroup {
        name: "churn across banks".into(),
        description: String::new(),
        model: ModelTemplate::Tabular {
            schema,
            hidden: Some(vec![16]),
        },
        hyperparameters: Hyperparameters {
            rounds,
            local_epochs: 1,
            batch_size: 32,
            optimizer: Optimizer::Adam,
            lr: 3e-3,
        },
        strategy: json!({ "name": "fedavg" }),
        min_clients,
        fraction_fit: 1.0,
        round_deadline_secs: 300,
        max_update_norm: None,
        secagg: None,
        update_encoding: Default::default(),
        dp: None,
        asynchronous: None,
    }
}

/// Polls the group (as its owner) until `ready` members are ready.
async fn wait_ready<T: Transport>(owner: &Api<T>, group: i64, ready: i64) {
    let start = Instant::now();
    loop {
        let g = owner.group(group).await.unwrap();
        if g.ready_members >= ready {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {} of {ready} members ready",
            g.ready_members
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn quiet(_: &ClientEvent) {}

/// The `b3o serve` process; killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_b3o"))
            .arg("serve")
            .args(["--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .envs(crate::test_db::serve_env(data_dir))
            .arg("--static-dir")
            .arg(data_dir.join("no-static"))
            .env("RUST_LOG", "warn")
            .env("B3O_ADMIN_EMAIL", "admin@example.org")
            .env("B3O_ADMIN_PASSWORD", "correct horse battery staple 42")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning b3o serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines.next().expect("b3o exited before listening").unwrap();
            if let Some(rest) = line.strip_prefix("B3O Edge is listening on ") {
                break rest.trim_end_matches('/').to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Server { child, base }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `b3o client` process; its stdout is collected, stderr passes through.
fn spawn_client(base: &str, code: &str, data: &Path, auth: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_b3o"))
        .arg("client")
        .args([
            "--server", base, "--code", code, "--target", "Exited", "--quiet", "--json",
        ])
        .arg("--data")
        .arg(data)
        .args(auth)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning b3o client")
}

/// Waits for a `b3o client` to exit (in a blocking thread) and returns its last stdout
/// line (the JSON report) and success.
async fn finish(child: Child) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success(), stdout)
    })
    .await
    .unwrap()
}

/// A trainer that waits for the test to open its gate before every job.
struct Gated {
    inner: ThreadTrainer,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Trainer for Gated {
    async fn train(&self, job: TrainJob, progress: ProgressFn) -> Result<TrainOutcome, FlError> {
        let _open = self.gate.acquire().await;
        self.inner.train(job, progress).await
    }

    async fn evaluate(
        &self,
        spec: Arc<ModelSpec>,
        weights: WeightSet,
        data: Arc<Dataset>,
    ) -> Result<Metrics, FlError> {
        self.inner.evaluate(spec, weights, data).await
    }
}

/// The interoperability test: two native `b3o client` processes (one with an API
/// token, one signing in with email and password) and two simulated participants (the same
/// state machine through the native transport) train together in one group of a running
/// `b3o serve`. One simulated participant holds round 1 open; meanwhile `b3o client` A, whose
/// round-1 update is in, is killed (SIGKILL) and started again: it joins again (idempotent),
/// sees its update counted, and trains rounds 2 and 3 with the others. Round 3's model is a
/// new registry version, and every member reported its evaluation of it.
#[tokio::test(flavor = "multi_thread")]
async fn native_clients_and_simulated_participants_train_together_over_http() {
    let Some(text) = churn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let http = reqwest::Client::new();
    let base = server.base.clone();

    let owner = sign_up(&http, &base, &unique_email("owner"), "Owner Bank").await;
    let owner_api = Api::new(
        HttpTransport::new(&base).unwrap(),
        Auth::Bearer(owner.token),
    );
    let schema = schema_of(&csv_rows(&text, 0..2000));
    let created = owner_api
        .create_group(&group_request(schema, 3, 4))
        .await
        .unwrap();
    let gid = created.group_id;

    // Two native client processes on their own files.
    let mut files: Vec<PathBuf> = Vec::new();
    for (i, rows) in [0..500, 500..1000].into_iter().enumerate() {
        let path = dir.path().join(format!("bank{i}.csv"));
        std::fs::write(&path, csv_rows(&text, rows)).unwrap();
        files.push(path);
    }
    let token_user = sign_up(&http, &base, &unique_email("bank-a"), "Bank A").await;
    let password_email = unique_email("bank-b");
    sign_up(&http, &base, &password_email, "Bank B").await;
    let token_args = ["--token", token_user.token.as_str()];
    let a = spawn_client(&base, &created.join_code, &files[0], &token_args);
    let b = spawn_client(
        &base,
        &created.join_code,
        &files[1],
        &[
            "--email",
            &password_email,
            "--password",
            crate::support::PASSWORD,
        ],
    );

    // Two simulated participants through the native transport.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let open = Arc::new(tokio::sync::Semaphore::new(1000));
    let mut simulated = Vec::new();
    for (i, rows) in [1000..1500, 1500..2000].into_iter().enumerate() {
        let account = sign_up(&http, &base, &unique_email("sim"), &format!("Sim {i}")).await;
        let api = Api::new(
            HttpTransport::new(&base).unwrap(),
            Auth::Bearer(account.token),
        );
        let data = LocalData::from_csv(csv_rows(&text, rows).as_bytes()).unwrap();
        let options = ParticipantOptions {
            seed: i as u64,
            poll_interval: Duration::from_secs(2),
            ..Default::default()
        };
        // The first one trains only once the test opens the gate.
        let trainer = Gated {
            inner: ThreadTrainer::cpu(),
            gate: if i == 0 { gate.clone() } else { open.clone() },
        };
        let mut p = Participant::new(api, trainer, quiet, data, options);
        let code = created.join_code.clone();
        simulated.push(tokio::spawn(async move {
            p.join(&code).await?;
            p.run().await
        }));
    }

    wait_ready(&owner_api, gid, 4).await;
    owner_api.start(gid).await.unwrap();

    // Round 1 waits for the gated participant; once both processes' updates are in, kill
    // client A and start it again.
    let start = Instant::now();
    loop {
        let r = owner_api.round(gid, 1).await.unwrap();
        assert!(r.state.is_live(), "round 1 cannot close yet: {r:?}");
        if r.reported == 3 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "round 1 stuck: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut a = a;
    a.kill().unwrap();
    a.wait().unwrap();
    let a = spawn_client(&base, &created.join_code, &files[0], &token_args);
    gate.add_permits(1000);

    let outcomes = tokio::time::timeout(Duration::from_secs(300), async {
        let (a, b) = tokio::join!(finish(a), finish(b));
        let mut reports: Vec<Report> = Vec::new();
        for s in simulated {
            reports.push(s.await.unwrap().unwrap());
        }
        (a, b, reports)
    })
    .await
    .expect("the group finished within 5 minutes");
    let ((a_ok, a_out), (b_ok, b_out), reports) = outcomes;
    assert!(a_ok && b_ok, "b3o client failed:\n{a_out}\n{b_out}");
    for out in [&a_out, &b_out] {
        assert!(out.contains("Training finished"), "{out}");
        let report: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        assert_eq!(report["group_id"], gid);
        assert_eq!(report["last_round"], 3);
        assert_eq!(report["metrics_on"], "test");
        assert!(
            report["metrics"]["accuracy"].as_f64().unwrap() > 0.5,
            "{report}"
        );
    }
    let b_report: Value = serde_json::from_str(b_out.lines().last().unwrap()).unwrap();
    assert_eq!(b_report["rounds_trained"], json!([1, 2, 3]));
    // The restarted A found its round-1 update accepted and trained the rest.
    let a_report: Value = serde_json::from_str(a_out.lines().last().unwrap()).unwrap();
    assert_eq!(a_report["rounds_trained"], json!([2, 3]));
    for r in &reports {
        assert_eq!(r.rounds_trained, vec![1, 2, 3]);
        assert!(r.metrics.as_ref().unwrap().accuracy.unwrap() > 0.5);
    }

    // The registry holds the initial model and one version per round; round 3 aggregated
    // all four members and got their evaluations.
    let versions = owner_api.versions(gid).await.unwrap().versions;
    let rounds: Vec<i64> = versions.iter().map(|v| v.round).collect();
    if rounds != [0, 1, 2, 3] {
        let mut states = Vec::new();
        for n in 1..=3 {
            let r = owner_api.round(gid, n).await.unwrap();
            states.push(format!(
                "round {n}: {:?}, failure {:?}, {} of {} reported",
                r.state, r.failure, r.reported, r.selected
            ));
        }
        panic!("versions of rounds {rounds:?}; {states:#?}\n{a_out}\n{b_out}");
    }
    let last = owner_api.round(gid, 3).await.unwrap();
    assert_eq!(last.reported, 4);
    let evaluation = last
        .evaluation
        .expect("a full round view has its evaluations");
    assert_eq!(evaluation.clients.len(), 4, "{evaluation:?}");
    assert!(evaluation.aggregate["accuracy"] > 0.5);
}

/// `b3o client` processes in a secure group (SecAgg+): the same command, the group decides;
/// every round is unmasked and the members end with a useful model.
#[tokio::test(flavor = "multi_thread")]
async fn b3o_client_processes_train_a_secure_group() {
    let Some(text) = churn() else { return };
    let Bank {
        dir,
        server: _server,
        http,
        base,
        owner_api,
    } = bank().await;
    let mut request = group_request(schema_of(&csv_rows(&text, 0..1500)), 2, 3);
    request.secagg = Some(b3o_models::secagg::SecAggConfig::default());
    let created = owner_api.create_group(&request).await.unwrap();
    let gid = created.group_id;
    let mut clients = Vec::new();
    for (i, rows) in [0..500, 500..1000, 1000..1500].into_iter().enumerate() {
        let path = dir.path().join(format!("bank{i}.csv"));
        std::fs::write(&path, csv_rows(&text, rows)).unwrap();
        let account = sign_up(&http, &base, &unique_email("bank"), &format!("Bank {i}")).await;
        clients.push(spawn_client(
            &base,
            &created.join_code,
            &path,
            &["--token", account.token.as_str()],
        ));
    }
    wait_ready(&owner_api, gid, 3).await;
    owner_api.start(gid).await.unwrap();
    let outcomes = tokio::time::timeout(Duration::from_secs(300), async {
        let mut out = Vec::new();
        for c in clients {
            out.push(finish(c).await);
        }
        out
    })
    .await
    .expect("the secure group finished within 5 minutes");
    for (ok, out) in &outcomes {
        assert!(ok, "b3o client failed:\n{out}");
        let report: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        assert_eq!(report["rounds_trained"], json!([1, 2]), "{report}");
        assert!(
            report["metrics"]["accuracy"].as_f64().unwrap() > 0.5,
            "{report}"
        );
    }
    for n in 1..=2 {
        let r = owner_api.round(gid, n).await.unwrap();
        let secagg = r.secagg.expect("a secure round");
        assert_eq!(secagg.unmasked, Some(true), "round {n}: {secagg:?}");
        assert_eq!((secagg.survived, secagg.answered), (3, 3), "round {n}");
        // No sample count reached the server: each update's is hidden in its vector.
        assert!(
            r.client_metrics
                .unwrap_or_default()
                .iter()
                .all(|c| c.num_samples == 0)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn b3o_client_names_what_is_wrong_with_its_input() {
    let Some(text) = churn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let http = reqwest::Client::new();
    let owner = sign_up(&http, &server.base, &unique_email("owner"), "Owner").await;
    let owner_api = Api::new(
        HttpTransport::new(&server.base).unwrap(),
        Auth::Bearer(owner.token),
    );
    let created = owner_api
        .create_group(&group_request(schema_of(&csv_rows(&text, 0..500)), 1, 1))
        .await
        .unwrap();
    let member = sign_up(&http, &server.base, &unique_email("member"), "Member").await;
    let run = |data: &Path, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_b3o"))
            .arg("client")
            .args([
                "--server",
                &server.base,
                "--code",
                &created.join_code,
                "--quiet",
            ])
            .arg("--data")
            .arg(data)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let token = ["--token", member.token.as_str()];

    let wrong = dir.path().join("wrong.csv");
    std::fs::write(&wrong, "Age,Exited\n40,1\n50,0\n").unwrap();
    let (ok, err) = run(&wrong, &token);
    assert!(!ok && err.contains("lacks the group's column(s)"), "{err}");
    assert!(err.contains("CreditScore"), "{err}");

    let good = dir.path().join("good.csv");
    std::fs::write(&good, csv_rows(&text, 0..100)).unwrap();
    let mut with_target = token.to_vec();
    with_target.extend(["--target", "Balance"]);
    let (ok, err) = run(&good, &with_target);
    assert!(
        !ok && err.contains("predicts `Exited`, not `Balance`"),
        "{err}"
    );

    let (ok, err) = run(&good, &["--token", "b3o_0000"]);
    assert!(!ok && err.contains("401"), "{err}");

    let (ok, err) = run(&dir.path().join("missing.csv"), &token);
    assert!(!ok && err.contains("missing.csv"), "{err}");
}

/// Rows stay on the client: every request two participants send during a whole federation
/// (join, statistics, ready, rounds, updates, evaluations) is recorded and checked. Bodies
/// are empty (reads), small control messages, column summaries or safetensors updates; no
/// cell of a row appears in any of them, except numeric minima and maxima (part of a
/// column's summary by design).
#[tokio::test(flavor = "multi_thread")]
async fn only_weight_updates_and_column_summaries_leave_a_client() {
    let Some(text) = churn() else { return };
    let app = TestApp::new().await;
    let mut tokens = Vec::new();
    for who in ["owner", "bank-a", "bank-b"] {
        let browser = app.register(&unique_email(who)).await;
        tokens.push(app.api_token(&browser).await);
    }
    let transport = InProcess::new(app.router.clone());
    let owner = Api::new(transport.clone(), Auth::Bearer(tokens[0].clone()));
    let created = owner
        .create_group(&group_request(schema_of(&csv_rows(&text, 0..800)), 2, 2))
        .await
        .unwrap();

    let parts = [csv_rows(&text, 0..400), csv_rows(&text, 400..800)];
    let mut tasks = Vec::new();
    let mut logs = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let recording = Recording::new(transport.clone());
        logs.push(recording.log());
        let api = Api::new(recording, Auth::Bearer(tokens[i + 1].clone()));
        let data = LocalData::from_csv(part.as_bytes()).unwrap();
        let options = ParticipantOptions {
            seed: i as u64,
            poll_interval: Duration::from_secs(1),
            ..Default::default()
        };
        let mut p = Participant::new(api, ThreadTrainer::cpu(), quiet, data, options);
        let code = created.join_code.clone();
        tasks.push(tokio::spawn(async move {
            p.join(&code).await?;
            p.run().await
        }));
    }
    wait_ready(&owner, created.group_id, 2).await;
    owner.start(created.group_id).await.unwrap();
    for t in tasks {
        let report = t.await.unwrap().unwrap();
        assert_eq!(report.rounds_trained, vec![1, 2]);
    }
    // Members poll the brief form of the current round: no other member's numbers in it.
    let brief = owner
        .current_round(created.group_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(brief.round, 2);
    assert!(brief.client_metrics.is_none() && brief.evaluation.is_none());
    let full = owner.round(created.group_id, 2).await.unwrap();
    assert_eq!(full.client_metrics.map(|c| c.len()), Some(2));
    let spec: ModelSpec = serde_json::from_value(
        owner.versions(created.group_id).await.unwrap().versions[0]
            .spec
            .clone(),
    )
    .unwrap();

    for (part, log) in parts.iter().zip(&logs) {
        let sent: Vec<Request> = log.lock().unwrap().clone();
        let table = read_csv(part.as_bytes()).unwrap();
        let cells = |name: &str| -> Vec<String> {
            table
                .column(name)
                .unwrap()
                .values
                .iter()
                .flatten()
                .cloned()
                .collect()
        };
        let salaries: Vec<f64> = cells("EstimatedSalary")
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let (min, max) = salaries
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &s| (a.min(s), b.max(s)));
        let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
        for request in &sent {
            let path = request.path.as_str();
            let kind = match request.method {
                Method::Get => {
                    assert!(request.body.is_empty(), "GET {path} has a body");
                    "read"
                }
                Method::Post if path.ends_with("/update") => {
                    weights::decode(&request.body, &spec.layout(), usize::MAX)
                        .expect("an update is a safetensors file of the model's layout");
                    "update"
                }
                Method::Post if path.ends_with("/statistics") => {
                    serde_json::from_slice::<Summary>(&request.body)
                        .expect("statistics are a column summary");
                    "statistics"
                }
                Method::Post => {
                    let body: Value = serde_json::from_slice(&request.body).unwrap();
                    let keys: Vec<&str> = body
                        .as_object()
                        .unwrap()
                        .keys()
                        .map(String::as_str)
                        .collect();
                    let allowed: &[&str] = if path == "/api/groups/join" {
                        &["join_code", "name"]
                    } else if path.ends_with("/ready") {
                        &["num_samples"]
                    } else if path.ends_with("/evaluation") {
                        &["num_samples", "metrics"]
                    } else if path.ends_with("/progress") {
                        // The heartbeat: how much of the round's training is done.
                        &["fraction"]
                    } else {
                        panic!("unexpected POST {path}")
                    };
                    assert!(keys.iter().all(|k| allowed.contains(k)), "{path}: {body}");
                    "control"
                }
            };
            *kinds.entry(kind).or_default() += 1;
            // No row cell in any body: names, identifiers, salaries (but the extremes).
            let body = String::from_utf8_lossy(&request.body);
            for surname in cells("Surname").iter().filter(|s| s.len() > 5) {
                assert!(
                    !body.contains(surname.as_str()),
                    "{path} carries `{surname}`"
                );
            }
            for id in cells("CustomerId") {
                assert!(!body.contains(&id), "{path} carries customer id {id}");
            }
            for (text, value) in cells("EstimatedSalary").iter().zip(&salaries) {
                if *value != min && *value != max && text.len() > 6 {
                    assert!(
                        !body.contains(text.as_str()),
                        "{path} carries salary {text}"
                    );
                }
            }
        }
        assert_eq!(kinds.get("update"), Some(&2), "{kinds:?}");
        assert_eq!(kinds.get("statistics"), Some(&1), "{kinds:?}");
        assert!(kinds["control"] >= 3, "join, ready, evaluations: {kinds:?}");
    }
}

/// `b3o client --data DIR` with one subfolder per class trains an image group's CNN.
#[tokio::test(flavor = "multi_thread")]
async fn b3o_client_trains_on_a_folder_of_class_subfolders() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let http = reqwest::Client::new();
    let owner = sign_up(&http, &server.base, &unique_email("owner"), "Clinic").await;
    let owner_api = Api::new(
        HttpTransport::new(&server.base).unwrap(),
        Auth::Bearer(owner.token.clone()),
    );
    let mut request = group_request(schema_of("a,Exited\n1,0\n2,1\n"), 2, 1);
    request.model = ModelTemplate::ImageCnn {
        labels: vec!["ring".into(), "bar".into()],
    };
    let created = owner_api.create_group(&request).await.unwrap();

    // Light rings and bars on a dark background, 12 of each.
    let images = dir.path().join("images");
    for (class, draw) in [("ring", 0), ("bar", 1)] {
        std::fs::create_dir_all(images.join(class)).unwrap();
        for k in 0..12u32 {
            let img = image::GrayImage::from_fn(28, 28, |x, y| {
                let (dx, dy) = (x as i32 - 14, y as i32 - 14);
                let on = if draw == 0 {
                    (dx * dx + dy * dy - 64).abs() < 12 + k as i32
                } else {
                    (x as i32 - 10 - (k % 4) as i32).abs() < 2
                };
                image::Luma([if on { 230 } else { 10 }])
            });
            img.save(images.join(class).join(format!("{k}.png")))
                .unwrap();
        }
    }
    let member = sign_up(&http, &server.base, &unique_email("member"), "Lab").await;
    let child = Command::new(env!("CARGO_BIN_EXE_b3o"))
        .arg("client")
        .args([
            "--server",
            &server.base,
            "--code",
            &created.join_code,
            "--quiet",
            "--json",
        ])
        .args(["--token", &member.token, "--test-fraction", "0.25"])
        .arg("--data")
        .arg(&images)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_ready(&owner_api, created.group_id, 1).await;
    owner_api.start(created.group_id).await.unwrap();
    let (ok, out) = tokio::time::timeout(Duration::from_secs(120), finish(child))
        .await
        .expect("the image group finished within 2 minutes");
    assert!(ok, "{out}");
    let report: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(report["rounds_trained"], json!([1, 2]));
    assert_eq!(
        report["metrics"]["num_samples"], 6,
        "a quarter of 24 pictures held out"
    );

    // The client sent its pictures' statistics (never the pictures): deployed, the trained
    // version compares what it is sent with all 24.
    let version_id = owner_api
        .round(created.group_id, 2)
        .await
        .unwrap()
        .result_version_id
        .unwrap();
    let r = http
        .put(format!("{}/api/deployments/shapes", server.base))
        .bearer_auth(&owner.token)
        .json(&json!({ "version_id": version_id }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let reference: Value = http
        .get(format!(
            "{}/api/deployments/shapes/drift/reference",
            server.base
        ))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        reference["features"],
        json!(["mean_intensity", "border_share"])
    );
    assert_eq!(reference["reference"]["n_rows"], 24, "{reference}");
    assert_eq!(
        reference["reference"]["columns"]["(prediction)"]["counts"],
        json!({ "bar": 12, "ring": 12 })
    );
}

/// A running `b3o serve` (its data in `dir/server`) and its first account, a bank that owns
/// the groups.
struct Bank {
    dir: tempfile::TempDir,
    server: Server,
    http: reqwest::Client,
    base: String,
    owner_api: Api<HttpTransport>,
}

async fn bank() -> Bank {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let owner = sign_up(&http, &base, &unique_email("owner"), "Owner Bank").await;
    let owner_api = Api::new(
        HttpTransport::new(&base).unwrap(),
        Auth::Bearer(owner.token),
    );
    Bank {
        dir,
        server,
        http,
        base,
        owner_api,
    }
}

/// Reads a `b3o client` privacy ledger file: `(key, ledger)` of its only entry.
fn read_ledger(path: &Path) -> (String, b3o_models::dp::ledger::GroupLedger) {
    let file: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let ledgers = file["ledgers"].as_object().unwrap();
    assert_eq!(ledgers.len(), 1, "{file}");
    let (key, ledger) = ledgers.iter().next().unwrap();
    (key.clone(), serde_json::from_value(ledger.clone()).unwrap())
}

/// Issue #14: three `b3o client` processes train a secure group with central differential
/// privacy (each adds its share of the noise before masking). Bank C set its own budget between
/// the cost of one round and of two: its ledger file counts round 1, it refuses round 2 (tells
/// the server, which goes on with the other two) and stops with an error; A and B train every
/// round, and their ledgers agree with the group's published epsilon.
#[tokio::test(flavor = "multi_thread")]
async fn b3o_client_keeps_its_privacy_ledger_and_stops_at_its_own_budget() {
    let Some(text) = churn() else { return };
    let Bank {
        dir,
        server: _server,
        http,
        base,
        owner_api,
    } = bank().await;
    let mut request = group_request(schema_of(&csv_rows(&text, 0..1500)), 3, 2);
    request.secagg = Some(b3o_models::secagg::SecAggConfig::default());
    request.dp = Some(b3o_models::dp::DpConfig {
        epsilon: 8.0,
        delta: 1e-5,
        placement: b3o_models::dp::DpPlacement::Central,
        clipping_norm: Some(1.0),
        noise_multiplier: None,
        adaptive: None,
    });
    let created = owner_api.create_group(&request).await.unwrap();
    let gid = created.group_id;
    let params = owner_api.group(gid).await.unwrap().dp.unwrap().params;
    let (one, two) = (params.epsilon_after(1), params.epsilon_after(2));
    let limit = (one + two) / 2.0;
    let mut clients = Vec::new();
    let mut ledgers = Vec::new();
    for (i, rows) in [0..500, 500..1000, 1000..1500].into_iter().enumerate() {
        let path = dir.path().join(format!("bank{i}.csv"));
        std::fs::write(&path, csv_rows(&text, rows)).unwrap();
        let ledger = dir.path().join(format!("ledger{i}.json"));
        let account = sign_up(&http, &base, &unique_email("bank"), &format!("Bank {i}")).await;
        let mut args = vec![
            "--token".to_string(),
            account.token.clone(),
            "--privacy-ledger".into(),
            ledger.display().to_string(),
        ];
        if i == 2 {
            args.extend(["--max-epsilon".into(), limit.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        clients.push(spawn_client(&base, &created.join_code, &path, &args));
        ledgers.push(ledger);
    }
    wait_ready(&owner_api, gid, 3).await;
    owner_api.start(gid).await.unwrap();
    let outcomes = tokio::time::timeout(Duration::from_secs(300), async {
        let mut out = Vec::new();
        for c in clients {
            out.push(finish(c).await);
        }
        out
    })
    .await
    .expect("the group finished within 5 minutes");
    let group = owner_api.group(gid).await.unwrap();
    let spent = group.dp.as_ref().unwrap().spent_epsilon;
    assert!(
        (spent - params.epsilon_after(3)).abs() < 1e-9 && spent <= 8.0,
        "{spent}"
    );
    for (i, (ok, out)) in outcomes.iter().enumerate().take(2) {
        assert!(ok, "b3o client {i} failed:\n{out}");
        let report: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        assert_eq!(report["rounds_trained"], json!([1, 2, 3]), "{report}");
        let (key, ledger) = read_ledger(&ledgers[i]);
        assert!(
            key.starts_with(&base) && key.contains(&format!("group-{gid}-")),
            "{key}"
        );
        let rounds: Vec<i64> = ledger.rounds.iter().map(|r| r.round).collect();
        assert_eq!(rounds, [1, 2, 3]);
        // Counted on the member's machine, the same as the server's accountant.
        assert!(
            (ledger.spent() - spent).abs() < 1e-9,
            "{} vs {spent}",
            ledger.spent()
        );
        assert_eq!(ledger.accepted.epsilon, 8.0);
    }
    let (ok, out) = &outcomes[2];
    assert!(!ok, "bank C went past its budget:\n{out}");
    let (_, ledger) = read_ledger(&ledgers[2]);
    assert_eq!(ledger.rounds.len(), 1, "{ledger:?}");
    assert_eq!(ledger.user_epsilon, Some(limit));
    assert!((ledger.spent() - one).abs() < 1e-9);
    // Round 2: C told the server why, and the round went on with the other two.
    let r2 = owner_api.round(gid, 2).await.unwrap();
    assert_eq!(r2.reported, 2, "{r2:?}");
    let members = group.member_list;
    let c = members
        .iter()
        .find(|m| m.name == "Bank 2")
        .expect("bank C's membership");
    let rounds = owner_api.rounds(gid).await.unwrap().rounds;
    let in_round_2 = rounds[1]
        .client_metrics
        .as_ref()
        .unwrap()
        .iter()
        .any(|m| m.member_id == c.member_id);
    assert!(!in_round_2, "bank C's round-2 update reached the server");
    let failure: Option<String> = r2_failure(&dir.path().join("server"), gid, c.member_id).await;
    let failure = failure.unwrap_or_default();
    assert!(failure.contains("privacy budget is spent"), "{failure}");
}

/// The failure a member reported for round 2, read from the server's database.
async fn r2_failure(data_dir: &Path, gid: i64, member: i64) -> Option<String> {
    let pool = crate::test_db::open(data_dir).await;
    sqlx::query_scalar(
        "SELECT rm.failure FROM round_members rm JOIN rounds r ON r.id = rm.round_id
         WHERE r.group_id = $1 AND r.number = 2 AND rm.member_id = $2",
    )
    .bind(gid)
    .bind(member)
    .fetch_optional(&pool)
    .await
    .unwrap()
    .flatten()
}

/// A group whose privacy settings weaken after a member joined cannot spend more of the budget
/// the member accepted: here its owner (with access to the database) lowers the noise and
/// raises the target before training starts; the server now plans with them, but the member's
/// ledger still holds the target it accepted and refuses round 1 with the numbers.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_refuses_privacy_settings_weakened_after_it_joined() {
    let Some(text) = churn() else { return };
    let Bank {
        dir,
        server: _server,
        http,
        base,
        owner_api,
    } = bank().await;
    let data_dir = dir.path().join("server");
    let mut request = group_request(schema_of(&csv_rows(&text, 0..1000)), 2, 1);
    request.dp = Some(b3o_models::dp::DpConfig {
        epsilon: 3.0,
        delta: 1e-5,
        placement: b3o_models::dp::DpPlacement::Local,
        clipping_norm: Some(1.0),
        noise_multiplier: None,
        adaptive: None,
    });
    let created = owner_api.create_group(&request).await.unwrap();
    let gid = created.group_id;
    let path = dir.path().join("bank.csv");
    std::fs::write(&path, csv_rows(&text, 0..1000)).unwrap();
    let ledger = dir.path().join("ledger.json");
    let account = sign_up(&http, &base, &unique_email("bank"), "Bank A").await;
    let client = spawn_client(
        &base,
        &created.join_code,
        &path,
        &[
            "--token",
            account.token.as_str(),
            "--privacy-ledger",
            ledger.to_str().unwrap(),
        ],
    );
    wait_ready(&owner_api, gid, 1).await;
    let pool = crate::test_db::open(&data_dir).await;
    let stored: String = sqlx::query_scalar("SELECT dp_config_json FROM groups WHERE id = $1")
        .bind(gid)
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut dp: serde_json::Value = serde_json::from_str(&stored).unwrap();
    dp["epsilon"] = 100.0.into();
    dp["noise_multiplier"] = 0.3.into();
    dp["placement"] = "central".into();
    let changed = sqlx::query("UPDATE groups SET dp_config_json = $1 WHERE id = $2")
        .bind(dp.to_string())
        .bind(gid)
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 1);
    owner_api.start(gid).await.unwrap();
    let r1 = owner_api.round(gid, 1).await.unwrap();
    let published = r1.config.dp().unwrap();
    assert_eq!(
        (published.noise_multiplier, published.epsilon),
        (0.3, 100.0)
    );
    let (ok, out) = tokio::time::timeout(Duration::from_secs(120), finish(client))
        .await
        .expect("the client stopped");
    assert!(!ok, "the member trained with weakened privacy:\n{out}");
    let (_, kept) = read_ledger(&ledger);
    assert_eq!(kept.accepted.epsilon, 3.0);
    assert_eq!(kept.accepted.placement, b3o_models::dp::DpPlacement::Local);
    assert!(kept.rounds.is_empty(), "{kept:?}");
    let failure: Option<String> = sqlx::query_scalar(
        "SELECT rm.failure FROM round_members rm JOIN rounds r ON r.id = rm.round_id
         WHERE r.group_id = $1 AND r.number = 1",
    )
    .bind(gid)
    .fetch_optional(&pool)
    .await
    .unwrap()
    .flatten();
    let failure = failure.unwrap_or_default();
    assert!(failure.contains("local noise"), "{failure}");
    let view = owner_api.round(gid, 1).await.unwrap();
    assert_eq!(view.reported, 0);
}

/// A reload in the middle of a synchronous round's training (the participant's task dropped
/// as a closed tab drops its worker): the next session resumes from the epochs it finished,
/// trains only the others, and its update counts in the round.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_mid_training_resumes_from_the_epochs_already_done() {
    use b3o_wasm_client::fl::kept::{KeptStore, MemoryKept, kept_key};
    let Some(text) = churn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let owner = sign_up(&http, &base, &unique_email("owner"), "Owner Bank").await;
    let owner_api = Api::new(
        HttpTransport::new(&base).unwrap(),
        Auth::Bearer(owner.token),
    );
    let mut request = group_request(schema_of(&csv_rows(&text, 0..2000)), 1, 1);
    request.hyperparameters.local_epochs = 20;
    let created = owner_api.create_group(&request).await.unwrap();
    let gid = created.group_id;
    let member = sign_up(&http, &base, &unique_email("bank"), "Bank").await;
    let data = || LocalData::from_csv(csv_rows(&text, 0..2000).as_bytes()).unwrap();
    let store = Arc::new(MemoryKept::default());
    let events = Arc::new(std::sync::Mutex::new(Vec::<ClientEvent>::new()));
    let participant = |slow: bool| {
        let api = Api::new(
            HttpTransport::new(&base).unwrap(),
            Auth::Bearer(member.token.clone()),
        );
        let events = events.clone();
        let observer = move |e: &ClientEvent| {
            if slow && matches!(e, ClientEvent::Training { .. }) {
                // A slow machine: every batch takes a few milliseconds more.
                std::thread::sleep(Duration::from_millis(4));
            }
            events.lock().unwrap().push(e.clone());
        };
        let options = ParticipantOptions {
            seed: 7,
            poll_interval: Duration::from_secs(2),
            ..Default::default()
        };
        Participant::new(api, ThreadTrainer::cpu(), observer, data(), options)
            .with_kept(store.clone())
    };

    let mut first = participant(true);
    let code = created.join_code.clone();
    let running = tokio::spawn(async move {
        first.join(&code).await?;
        first.run().await
    });
    wait_ready(&owner_api, gid, 1).await;
    let member_id = owner_api.group(gid).await.unwrap().member_list[1].member_id;
    let key = format!("{}-progress", kept_key(gid, member_id));
    owner_api.start(gid).await.unwrap();
    let r1 = owner_api.round(gid, 1).await.unwrap();
    let version = owner_api.version(r1.base_version_id).await.unwrap();
    let layout = serde_json::from_value::<ModelSpec>(version.spec)
        .unwrap()
        .layout();
    // The tab closes once a few epochs are kept.
    let start = Instant::now();
    loop {
        if let Some((1, bytes)) = store.load(&key).await.unwrap() {
            let (_, meta) = weights::decode(&bytes, &layout, usize::MAX).unwrap();
            if meta.metrics["epochs_done"] >= 3.0 {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no progress kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.abort();
    let _ = running.await;
    let done_before = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Training { epoch, .. } => Some(*epoch),
            _ => None,
        })
        .max()
        .unwrap();
    assert!(done_before < 19, "the first session finished training");
    events.lock().unwrap().clear();

    // The next visit: the same member, the same store.
    let mut second = participant(false);
    second.attach(gid);
    let report = second.run().await.unwrap();
    assert_eq!(report.rounds_trained, vec![1]);
    let events = events.lock().unwrap().clone();
    let resumed = events
        .iter()
        .find_map(|e| match e {
            ClientEvent::Resumed {
                round: 1,
                epochs_done,
            } => Some(*epochs_done),
            _ => None,
        })
        .expect("the second session resumed");
    assert!(resumed >= 3, "{resumed}");
    let first_epoch = events
        .iter()
        .find_map(|e| match e {
            ClientEvent::Training { epoch, .. } => Some(*epoch),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        first_epoch, resumed,
        "the epochs done are not trained again"
    );
    let r1 = owner_api.round(gid, 1).await.unwrap();
    assert_eq!(r1.reported, 1);
    assert!(
        store.load(&key).await.unwrap().is_none(),
        "the progress is dropped"
    );
}

/// `b3o client --evaluate-version`: a member scores a version the group made on the rows it
/// holds out, and only the metrics and the row count reach the server, where the version's
/// federated evaluation counts them. The browser's worker calls the same
/// `fl::evaluate::evaluate_version`.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_scores_any_version_with_b3o_client_evaluate_version() {
    let Some(text) = churn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let owner = sign_up(&http, &base, &unique_email("owner"), "Owner Bank").await;
    let owner_api = Api::new(
        HttpTransport::new(&base).unwrap(),
        Auth::Bearer(owner.token),
    );
    let created = owner_api
        .create_group(&group_request(schema_of(&csv_rows(&text, 0..500)), 1, 1))
        .await
        .unwrap();
    let gid = created.group_id;
    let member = sign_up(&http, &base, &unique_email("bank"), "Bank").await;
    let file = dir.path().join("bank.csv");
    std::fs::write(&file, csv_rows(&text, 0..500)).unwrap();
    // The member trains round 1 without evaluating it.
    let api = Api::new(
        HttpTransport::new(&base).unwrap(),
        Auth::Bearer(member.token.clone()),
    );
    let options = ParticipantOptions {
        evaluate: false,
        poll_interval: Duration::from_secs(2),
        ..Default::default()
    };
    let data = LocalData::from_csv(csv_rows(&text, 0..500).as_bytes()).unwrap();
    let mut p = Participant::new(api, ThreadTrainer::cpu(), quiet, data, options);
    let code = created.join_code.clone();
    let training = tokio::spawn(async move {
        p.join(&code).await?;
        p.run().await
    });
    wait_ready(&owner_api, gid, 1).await;
    owner_api.start(gid).await.unwrap();
    training.await.unwrap().unwrap();
    let version_id = owner_api
        .round(gid, 1)
        .await
        .unwrap()
        .result_version_id
        .unwrap();
    let url = format!("{base}/api/versions/{version_id}");
    let before: Value = http
        .get(&url)
        .bearer_auth(&member.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(before["federated"]["num_members"], 0, "{before}");

    let out = Command::new(env!("CARGO_BIN_EXE_b3o"))
        .args([
            "client",
            "--server",
            &base,
            "--token",
            &member.token,
            "--json",
        ])
        .arg("--data")
        .arg(&file)
        .args(["--evaluate-version", &version_id.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["version_id"], version_id);
    assert_eq!(
        report["num_samples"], 100,
        "a fifth of 500 rows is held out"
    );
    let after: Value = http
        .get(&url)
        .bearer_auth(&member.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["federated"]["num_members"], 1, "{after}");
    assert_eq!(after["federated"]["num_samples"], 100);
    assert_eq!(
        after["federated"]["weighted"]["accuracy"],
        report["metrics"]["accuracy"]
    );
}

/// Issue #18's partner-side drift: a federated group's version carries the members' merged
/// statistics as its drift reference; a member checks new files against the deployment with
/// `b3o client --check-drift` (computed locally), and shares only the summary of one.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_checks_its_new_data_for_drift_with_b3o_client() {
    let Some(text) = churn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let owner = sign_up(&http, &base, &unique_email("owner"), "Owner Bank").await;
    let owner_api = Api::new(
        HttpTransport::new(&base).unwrap(),
        Auth::Bearer(owner.token.clone()),
    );
    let training_rows = csv_rows(&text, 0..1500);
    let created = owner_api
        .create_group(&group_request(schema_of(&training_rows), 1, 1))
        .await
        .unwrap();
    let gid = created.group_id;
    let member = sign_up(&http, &base, &unique_email("bank"), "Bank").await;
    let api = Api::new(
        HttpTransport::new(&base).unwrap(),
        Auth::Bearer(member.token.clone()),
    );
    let data = LocalData::from_csv(training_rows.as_bytes()).unwrap();
    let options = ParticipantOptions {
        poll_interval: Duration::from_secs(2),
        ..Default::default()
    };
    let mut p = Participant::new(api, ThreadTrainer::cpu(), quiet, data, options);
    let code = created.join_code.clone();
    let training = tokio::spawn(async move {
        p.join(&code).await?;
        p.run().await
    });
    wait_ready(&owner_api, gid, 1).await;
    owner_api.start(gid).await.unwrap();
    training.await.unwrap().unwrap();
    let version_id = owner_api
        .round(gid, 1)
        .await
        .unwrap()
        .result_version_id
        .unwrap();
    let r = http
        .put(format!("{base}/api/deployments/bank-churn"))
        .bearer_auth(&owner.token)
        .json(&serde_json::json!({ "version_id": version_id }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());

    let check = |file: &Path, share: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_b3o"));
        cmd.args([
            "client",
            "--server",
            &base,
            "--token",
            &member.token,
            "--json",
        ])
        .arg("--data")
        .arg(file)
        .args(["--check-drift", "bank-churn"]);
        if share {
            cmd.arg("--share-drift");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        let drifted: Vec<String> = report["features"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["drifted"] == true)
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        (stdout, drifted)
    };
    // New customers like the old: nothing drifted, nothing sent.
    let same = dir.path().join("same.csv");
    std::fs::write(&same, csv_rows(&text, 1500..2100)).unwrap();
    let (stdout, drifted) = check(&same, false);
    assert!(drifted.is_empty(), "{stdout}");
    assert!(stdout.contains("Nothing was sent"), "{stdout}");
    // Older customers, some from a new country: exactly those two, shared.
    let moved = dir.path().join("moved.csv");
    std::fs::write(
        &moved,
        crate::support::shifted_ages_and_countries(&csv_rows(&text, 1500..2100)),
    )
    .unwrap();
    let (stdout, drifted) = check(&moved, true);
    assert_eq!(drifted, ["Geography", "Age"], "{stdout}");
    assert!(stdout.contains("Atlantis (200)"), "{stdout}");
    assert!(stdout.contains("Shared your file's summary"), "{stdout}");
    let view: Value = http
        .get(format!("{base}/api/deployments/bank-churn/drift"))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["has_reference"], true, "{view}");
    assert_eq!(view["partners"].as_array().unwrap().len(), 1, "{view}");
    assert_eq!(view["partners"][0]["member"], "Bank");
    assert_eq!(
        view["partners"][0]["drifted"],
        serde_json::json!(["Geography", "Age"])
    );
}
