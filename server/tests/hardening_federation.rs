//! Hardening (issue #19): see SECURITY.md. The federation's findings, each reproduced by the
//! test named after what it checks:
//!
//! - 6a: one member's finite but huge weights (3e38) must not fail the round under any
//!   strategy (sums and distances in `f64`);
//! - 6b: an update's metadata, or an evaluation report, may carry at most
//!   `--max-metrics-per-update` metrics with short names;
//! - 5: a group's model is limited to `--max-model-parameters`, an account to
//!   `--max-groups-per-account` groups; update bodies stream to disk after the caller and round
//!   are checked, and a replay is refused without reading its body; wrong join codes are
//!   limited per account and per address (`--max-join-failures` per 15 minutes);
//! - 8: an open event stream ends when its member leaves or its credentials are revoked.
//!
//! Most tests call the app in-process (`oneshot`) with their own [`Limits`]; the event
//! streams are read over a real socket.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode, header};
use b3o_models::weights::{self, Dtype, TensorSpec, UpdateMeta, WeightLayout, WeightSet};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use b3o_server::accounts::{Accounts, Settings};
use b3o_server::db::Db;
use b3o_server::federation::Runtime;
use b3o_server::limits::Limits;
use b3o_server::state::AppState;

use crate::support::{Browser, PASSWORD, Reply, browser, request, send_to, unique_email};

/// The app over a fresh database, with the limits under test.
struct App {
    router: Router,
    db: Db,
    dir: tempfile::TempDir,
}

impl App {
    async fn new(limits: Limits) -> App {
        App::build(
            limits,
            Settings::default(),
            b3o_server::limits::DEFAULT_MAX_UPDATE_BYTES,
        )
        .await
    }

    async fn build(limits: Limits, settings: Settings, max_update_bytes: usize) -> App {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::test_db::database_url(dir.path());
        let db = b3o_server::db::connect(&url).await.unwrap();
        let state = AppState::new(
            db.clone(),
            std::sync::Arc::new(b3o_server::blobs::BlobStore::local(dir.path()).unwrap()),
            Arc::new(Accounts::new(settings)),
            Arc::new(Runtime::new(max_update_bytes)),
            Arc::new(limits),
        );
        let router = b3o_server::app(state, dir.path());
        App { router, db, dir }
    }

    /// Serves the app on 127.0.0.1 (for event streams); the server stops with the test.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = self
            .router
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// A new account: its browser session and an API token.
    async fn account(&self, who: &str) -> (Browser, String) {
        let reply = self
            .send(request(
                Method::POST,
                "/api/auth/register",
                Some(json!({
                    "email": unique_email(who),
                    "display_name": who,
                    "organisation": who,
                    "password": PASSWORD,
                })),
                &[],
            ))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
        let b = browser(&reply);
        let reply = self
            .send(request(
                Method::POST,
                "/api/auth/tokens",
                Some(json!({ "name": "tests" })),
                &[("cookie", &b.cookie), ("x-csrf-token", &b.csrf)],
            ))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
        let token = reply.json["token"].as_str().unwrap().to_string();
        (b, token)
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        send_to(&self.router, request).await
    }

    /// `method path` as a program with `token`.
    async fn call(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
        let auth = format!("Bearer {token}");
        self.send(request(method, path, body, &[("authorization", &auth)]))
            .await
    }

    /// A raw request's status and body bytes.
    async fn raw(&self, request: Request<Body>) -> (StatusCode, Bytes) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = tokio::time::timeout(
            Duration::from_secs(60),
            axum::body::to_bytes(response.into_body(), 1 << 30),
        )
        .await
        .expect("the answer's body did not end")
        .unwrap();
        (status, bytes)
    }

    /// Uploads `body` as `token`'s update to `round` (with its Content-Length, as hyper
    /// would send it).
    async fn upload(&self, token: &str, group: i64, round: i64, body: Vec<u8>) -> Reply {
        let request = Request::post(format!("/api/groups/{group}/rounds/{round}/update"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    async fn global(&self, token: &str, group: i64, layout: &WeightLayout) -> Vec<f32> {
        let request = Request::get(format!("/api/groups/{group}/weights"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let (status, bytes) = self.raw(request).await;
        assert_eq!(status, StatusCode::OK);
        let (set, _) = weights::decode(&bytes, layout, usize::MAX).unwrap();
        set.flatten()
    }

    /// Round `n` once it is closed or failed (bounded wait).
    async fn finished_round(&self, token: &str, group: i64, n: i64) -> Value {
        for _ in 0..600 {
            let r = self
                .call(
                    token,
                    Method::GET,
                    &format!("/api/groups/{group}/rounds/{n}"),
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json);
            if r.json["state"] == "closed" || r.json["state"] == "failed" {
                return r.json;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("round {n} of group {group} did not finish");
    }
}

fn layout(params: usize) -> WeightLayout {
    WeightLayout(vec![
        TensorSpec::new("dense.weight", vec![params - 1]),
        TensorSpec::new("dense.bias", vec![1]),
    ])
}

fn group_body(layout: &WeightLayout, min_clients: u32, strategy: Value) -> Value {
    json!({
        "name": "hardening",
        "description": "",
        "model": { "kind": "custom", "layout": layout },
        "hyperparameters": { "rounds": 2, "local_epochs": 1, "lr": 0.01 },
        "strategy": strategy,
        "min_clients": min_clients,
        "fraction_fit": 1.0,
        "round_deadline_secs": 600,
    })
}

fn update(
    layout: &WeightLayout,
    group: i64,
    round: u64,
    params: Vec<f32>,
    num_samples: u64,
    metrics: BTreeMap<String, f64>,
) -> Vec<u8> {
    let set = WeightSet::from_flat(layout, params).unwrap();
    let meta = UpdateMeta {
        model_id: format!("group-{group}"),
        round,
        num_samples,
        metrics,
    };
    weights::encode(&set, &meta, Dtype::F32).unwrap()
}

fn message(reply: &Reply) -> String {
    reply.json["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A group of the owner and `members` (each joined and ready), started: its id.
async fn started_group(
    app: &App,
    owner: &str,
    members: &[&str],
    layout: &WeightLayout,
    strategy: Value,
) -> i64 {
    let all = 1 + members.len() as u32;
    let r = app
        .call(
            owner,
            Method::POST,
            "/api/groups",
            Some(group_body(layout, all, strategy)),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let group = r.json["group_id"].as_i64().unwrap();
    let code = r.json["join_code"].as_str().unwrap().to_string();
    for member in members {
        let r = app
            .call(
                member,
                Method::POST,
                "/api/groups/join",
                Some(json!({ "join_code": code })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    for token in std::iter::once(&owner).chain(members) {
        let r = app
            .call(
                token,
                Method::POST,
                &format!("/api/groups/{group}/ready"),
                Some(json!({ "num_samples": 10 })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }
    let r = app
        .call(
            owner,
            Method::POST,
            &format!("/api/groups/{group}/start"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    group
}

/// Every file under `dir` whose name starts with `.tmp-`, with its size.
fn temp_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if e.file_name().to_string_lossy().starts_with(".tmp-") {
                out.push((path, meta.len()));
            }
        }
    }
    out
}

// --- 6a: huge finite weights --------------------------------------------------------------

/// Regression (issue #19, 6a): a member sending finite weights of ±3e38 with the most samples
/// allowed overflowed the `f32` running sum (and Krum's `f32` differences) to infinity, and
/// the round failed with "internal error", every round. Under every strategy the round must
/// now close with a finite model.
#[tokio::test(flavor = "multi_thread")]
async fn huge_finite_weights_from_one_member_do_not_fail_the_round_under_any_strategy() {
    let app = App::new(Limits::default()).await;
    let (_, owner) = app.account("owner").await;
    let (_, honest) = app.account("honest").await;
    let (_, attacker) = app.account("attacker").await;
    let layout = layout(40);
    let strategies = [
        json!({ "name": "fedavg" }),
        json!({ "name": "fedprox", "proximal_mu": 0.1 }),
        json!({ "name": "fedavgm", "server_lr": 1.0, "server_momentum": 0.9 }),
        json!({ "name": "fedadam" }),
        json!({ "name": "fedyogi" }),
        json!({ "name": "fedadagrad" }),
        json!({ "name": "fedmedian" }),
        json!({ "name": "fedtrimmedavg", "beta": 0.2 }),
        json!({ "name": "krum", "num_malicious": 0, "num_to_keep": 3 }),
    ];
    for strategy in strategies {
        let group = started_group(
            &app,
            &owner,
            &[&honest, &attacker],
            &layout,
            strategy.clone(),
        )
        .await;
        let base = app.global(&owner, group, &layout).await;
        let sends = [
            (
                &owner,
                base.iter().map(|w| w + 0.5).collect::<Vec<f32>>(),
                10,
            ),
            // Opposite extremes: their difference is beyond f32 too.
            (&honest, vec![-3e38; base.len()], 1 << 40),
            (&attacker, vec![3e38; base.len()], 1 << 40),
        ];
        for (token, params, samples) in sends {
            let body = update(&layout, group, 1, params, samples, BTreeMap::new());
            let r = app.upload(token, group, 1, body).await;
            assert_eq!(r.status, StatusCode::OK, "{strategy}: {}", r.json);
        }
        let round = app.finished_round(&owner, group, 1).await;
        assert_eq!(round["state"], "closed", "{strategy}: {round}");
        let model = app.global(&owner, group, &layout).await;
        assert!(model.iter().all(|w| w.is_finite()), "{strategy}: {model:?}");
    }
}

// --- 6b: metrics --------------------------------------------------------------------------

/// Regression (issue #19, 6b): an update's metadata could carry 200,000 metrics (and names of
/// any length), all parsed, stored and aggregated. Now 400 naming the limit.
#[tokio::test(flavor = "multi_thread")]
async fn update_metadata_with_too_many_or_too_long_metrics_is_refused_naming_the_limit() {
    let app = App::new(Limits::default()).await;
    let (_, owner) = app.account("owner").await;
    let (_, member) = app.account("member").await;
    let layout = layout(8);
    let group = started_group(
        &app,
        &owner,
        &[&member],
        &layout,
        json!({ "name": "fedavg" }),
    )
    .await;
    let base = app.global(&owner, group, &layout).await;

    let many: BTreeMap<String, f64> = (0..200_000).map(|i| (format!("m{i}"), 0.5)).collect();
    let r = app
        .upload(
            &member,
            group,
            1,
            update(&layout, group, 1, base.clone(), 5, many),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    let msg = message(&r);
    assert!(msg.contains("200000") && msg.contains("64"), "{msg}");

    let long = BTreeMap::from([("x".repeat(1000), 0.5)]);
    let r = app
        .upload(
            &member,
            group,
            1,
            update(&layout, group, 1, base.clone(), 5, long),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert!(message(&r).contains("100"), "{}", r.json);

    // Nothing was recorded; a modest update still goes through.
    let ok = BTreeMap::from([("accuracy".to_string(), 0.5), ("loss".to_string(), 1.0)]);
    let r = app
        .upload(&member, group, 1, update(&layout, group, 1, base, 5, ok))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
}

/// Regression (issue #19, 6b): the evaluation report's limit was a hard-coded 64, not the
/// server's `--max-metrics-per-update`.
#[tokio::test(flavor = "multi_thread")]
async fn evaluation_reports_follow_the_metrics_limit() {
    let app = App::new(Limits {
        max_metrics_per_update: 3,
        ..Limits::default()
    })
    .await;
    let (_, owner) = app.account("owner").await;
    let (_, member) = app.account("member").await;
    let layout = layout(8);
    let group = started_group(
        &app,
        &owner,
        &[&member],
        &layout,
        json!({ "name": "fedavg" }),
    )
    .await;
    let base = app.global(&owner, group, &layout).await;
    for token in [&owner, &member] {
        let body = update(&layout, group, 1, base.clone(), 5, BTreeMap::new());
        assert_eq!(
            app.upload(token, group, 1, body).await.status,
            StatusCode::OK
        );
    }
    app.finished_round(&owner, group, 1).await;
    let path = format!("/api/groups/{group}/rounds/1/evaluation");
    let four: BTreeMap<String, f64> = (0..4).map(|i| (format!("m{i}"), 0.5)).collect();
    let r = app
        .call(
            &member,
            Method::POST,
            &path,
            Some(json!({ "num_samples": 5, "metrics": four })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert!(message(&r).contains('3'), "{}", r.json);
    let three: BTreeMap<String, f64> = (0..3).map(|i| (format!("m{i}"), 0.5)).collect();
    let r = app
        .call(
            &member,
            Method::POST,
            &path,
            Some(json!({ "num_samples": 5, "metrics": three })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
}

// --- 5: quotas on groups ------------------------------------------------------------------

/// Regression (issue #19, 5): any account could create a 100M-parameter group (+1.15 GB at
/// its start). A model over `--max-model-parameters` is refused at creation, counted from
/// the template before anything is allocated, whatever the kind of model.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_whose_model_exceeds_the_parameter_limit_is_refused_naming_the_limit() {
    let app = App::new(Limits::default()).await;
    let (_, owner) = app.account("owner").await;
    let limit = Limits::default().max_model_parameters;

    let mut too_big = vec![
        // A custom layout one parameter over.
        group_body(&layout(limit + 1), 1, json!({ "name": "fedavg" })),
        // Custom layouts whose products overflow must not wrap around.
        group_body(
            &WeightLayout(vec![TensorSpec::new("w", vec![1 << 32, 1 << 32, 1 << 32])]),
            1,
            json!({ "name": "fedavg" }),
        ),
    ];
    // The image CNN over 65,536 labels: 400 x 65,536 weights in its last layer.
    let mut image = group_body(&layout(8), 1, json!({ "name": "fedavg" }));
    let labels: Vec<String> = (0..65_536).map(|i| format!("l{i}")).collect();
    image["model"] = json!({ "kind": "image_cnn", "labels": labels });
    too_big.push(image);
    // A tabular MLP of 16 hidden layers of 4,096 units: 250M parameters at least.
    let mut tabular = group_body(&layout(8), 1, json!({ "name": "fedavg" }));
    tabular["model"] = json!({
        "kind": "tabular",
        "schema": {
            "features": [{ "name": "age", "kind": "numeric" }],
            "target": { "name": "churn", "task": "binary_classification" },
            "excluded": [],
        },
        "hidden": vec![4096; 16],
    });
    too_big.push(tabular);

    for body in too_big {
        let r = app
            .call(&owner, Method::POST, "/api/groups", Some(body.clone()))
            .await;
        assert_eq!(
            r.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{}: {}",
            body["model"]["kind"],
            r.json
        );
        assert!(message(&r).contains(&limit.to_string()), "{}", r.json);
    }
    let r = app.call(&owner, Method::GET, "/api/groups", None).await;
    assert_eq!(r.json["groups"].as_array().unwrap().len(), 0, "{}", r.json);
    // At the limit is fine.
    let r = app
        .call(
            &owner,
            Method::POST,
            "/api/groups",
            Some(group_body(&layout(limit), 1, json!({ "name": "fedavg" }))),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
}

/// Regression (issue #19, 5): the limit is checked again when training starts, against the
/// model as built, before any weights are initialised: a tabular model's input width is
/// only known from its members' column statistics (one input per category).
#[tokio::test(flavor = "multi_thread")]
async fn starting_a_group_whose_built_model_exceeds_the_parameter_limit_is_refused() {
    let app = App::new(Limits {
        max_model_parameters: 300,
        ..Limits::default()
    })
    .await;
    let (_, owner) = app.account("owner").await;
    // Fixed models are refused at creation: the image CNN has 2,050 parameters.
    let mut image = group_body(&layout(8), 1, json!({ "name": "fedavg" }));
    image["model"] = json!({ "kind": "image_cnn", "labels": ["a", "b"] });
    let r = app
        .call(&owner, Method::POST, "/api/groups", Some(image))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    assert!(message(&r).contains("300"), "{}", r.json);

    // One categorical column, 16 hidden units: at least 1 x 16 + 16 + 16 + 1 = 49 at
    // creation, but 40 categories (and an "other" input) make it 41 x 16 + 33 = 689 once built.
    let mut tabular = group_body(&layout(8), 1, json!({ "name": "fedavg" }));
    tabular["model"] = json!({
        "kind": "tabular",
        "schema": {
            "features": [{ "name": "city", "kind": "categorical" }],
            "target": { "name": "churn", "task": "binary_classification" },
            "excluded": [],
        },
        "hidden": [16],
    });
    let r = app
        .call(&owner, Method::POST, "/api/groups", Some(tabular))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let group = r.json["group_id"].as_i64().unwrap();
    let cities: BTreeMap<String, u64> = (0..40).map(|i| (format!("city{i}"), 10)).collect();
    let summary = json!({
        "n_rows": 400,
        "columns": {
            "city": { "kind": "categorical", "missing": 0, "counts": cities },
            "churn": { "kind": "categorical", "missing": 0, "counts": { "0": 200, "1": 200 } },
        },
    });
    let r = app
        .call(
            &owner,
            Method::POST,
            &format!("/api/groups/{group}/statistics"),
            Some(summary),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let r = app
        .call(
            &owner,
            Method::POST,
            &format!("/api/groups/{group}/ready"),
            Some(json!({ "num_samples": 400 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = app
        .call(
            &owner,
            Method::POST,
            &format!("/api/groups/{group}/start"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    let msg = message(&r);
    assert!(msg.contains("300") && msg.contains("689"), "{msg}");
    // Nothing was built: no version, the group still waits.
    let r = app
        .call(&owner, Method::GET, &format!("/api/groups/{group}"), None)
        .await;
    assert_eq!(r.json["phase"], "statistics", "{}", r.json);
    assert_eq!(temp_files(app.dir.path()), vec![]);
    assert!(!app.dir.path().join(format!("groups/{group}")).exists());
}

/// Regression (issue #19, 5): group creation had no quota per account. At
/// `--max-groups-per-account` owned groups the next is refused (403 naming the limit);
/// administrators are exempt.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_may_own_at_most_the_group_quota_and_admins_are_exempt() {
    let app = App::new(Limits {
        max_groups_per_account: 3,
        ..Limits::default()
    })
    .await;
    let (_, owner) = app.account("owner").await;
    let body = group_body(&layout(8), 1, json!({ "name": "fedavg" }));
    for i in 0..3 {
        let r = app
            .call(&owner, Method::POST, "/api/groups", Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "group {i}: {}", r.json);
    }
    let r = app
        .call(&owner, Method::POST, "/api/groups", Some(body.clone()))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    assert!(message(&r).contains('3'), "{}", r.json);

    let (admin_browser, admin) = app.account("admin").await;
    sqlx::query("UPDATE users SET role = 'admin' WHERE email LIKE 'admin-%'")
        .execute(&app.db)
        .await
        .unwrap();
    let _ = admin_browser;
    for i in 0..4 {
        let r = app
            .call(&admin, Method::POST, "/api/groups", Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "admin group {i}: {}", r.json);
    }
}

// --- 5: update bodies ---------------------------------------------------------------------

/// A request body that records whether it was ever polled, then never yields.
fn untouched_body(polled: Arc<AtomicBool>) -> Body {
    let stream = futures_util::stream::poll_fn(move |_| {
        polled.store(true, Ordering::SeqCst);
        std::task::Poll::<Option<Result<Bytes, std::io::Error>>>::Pending
    });
    Body::from_stream(stream)
}

/// Regression (issue #19, 5): a replay of an accepted update was read to its end (up to
/// `--max-update-bytes`, in memory) before being compared. A replay that cannot be the same
/// bytes (another declared length) is now refused without polling its body at all, and one
/// of unknown length is refused as soon as it outgrows the accepted update.
#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_update_is_refused_without_reading_its_body() {
    let app = App::new(Limits::default()).await;
    let (_, owner) = app.account("owner").await;
    let (_, member) = app.account("member").await;
    let (_, outsider) = app.account("outsider").await;
    let layout = layout(8);
    let group = started_group(
        &app,
        &owner,
        &[&member],
        &layout,
        json!({ "name": "fedavg" }),
    )
    .await;
    let base = app.global(&owner, group, &layout).await;
    let accepted = update(&layout, group, 1, base.clone(), 5, BTreeMap::new());
    let r = app.upload(&member, group, 1, accepted.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let first = r.json.clone();

    let path = format!("/api/groups/{group}/rounds/1/update");
    let huge = |token: &str, polled: &Arc<AtomicBool>| {
        Request::post(&path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_LENGTH, 200 << 20)
            .body(untouched_body(polled.clone()))
            .unwrap()
    };
    let polled = Arc::new(AtomicBool::new(false));
    let reply = tokio::time::timeout(Duration::from_secs(30), app.send(huge(&member, &polled)))
        .await
        .expect("the replay's body was awaited");
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.json);
    assert!(
        message(&reply).contains("already accepted"),
        "{}",
        reply.json
    );
    assert!(!polled.load(Ordering::SeqCst), "the body was read");

    // Nor is anyone else's body read: outsiders and the round's state come first.
    let polled = Arc::new(AtomicBool::new(false));
    let reply = tokio::time::timeout(Duration::from_secs(30), app.send(huge(&outsider, &polled)))
        .await
        .expect("the outsider's body was awaited");
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.json);
    assert!(!polled.load(Ordering::SeqCst), "the body was read");

    // Unknown length (chunked): read no further than the accepted update's size.
    let mut chunk = accepted.clone();
    chunk.push(0);
    let rest =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(chunk)) })
            .chain(futures_util::stream::pending());
    let request = Request::post(&path)
        .header(header::AUTHORIZATION, format!("Bearer {member}"))
        .body(Body::from_stream(rest))
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(30), app.send(request))
        .await
        .expect("the replay was read past the accepted update's size");
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.json);

    // The same bytes still get the same answer (a client's retry after a lost answer).
    let r = app.upload(&member, group, 1, accepted).await;
    assert_eq!((r.status, &r.json), (StatusCode::OK, &first));
}

/// Regression (issue #19, 5): update bodies were buffered whole in memory while they
/// arrived. They now stream to a temporary file beside their final place (the byte limit
/// enforced as they stream), which is renamed into place once checked, or removed.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_body_streams_to_a_temporary_file_as_it_arrives() {
    let app = App::build(Limits::default(), Settings::default(), 8 << 20).await;
    let (_, owner) = app.account("owner").await;
    let (_, member) = app.account("member").await;
    // 1M parameters: 4 MB on the wire.
    let layout = layout(1 << 20);
    let group = started_group(
        &app,
        &owner,
        &[&member],
        &layout,
        json!({ "name": "fedavg" }),
    )
    .await;
    let base = app.global(&owner, group, &layout).await;
    let body = update(&layout, group, 1, base, 5, BTreeMap::new());
    let total = body.len();

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let request = Request::post(format!("/api/groups/{group}/rounds/1/update"))
        .header(header::AUTHORIZATION, format!("Bearer {member}"))
        .header(header::CONTENT_LENGTH, total)
        .body(Body::from_stream(stream))
        .unwrap();
    let router = app.router.clone();
    let answer = tokio::spawn(async move { send_to(&router, request).await });
    let half = total / 2;
    tx.send(Ok(Bytes::copy_from_slice(&body[..half])))
        .await
        .unwrap();
    // The first half reaches the disk while the second is still to come.
    let mut seen = 0;
    for _ in 0..400 {
        seen = temp_files(app.dir.path())
            .iter()
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        if seen >= half as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen >= half as u64,
        "no temporary file of the body's first half ({seen} bytes)"
    );
    tx.send(Ok(Bytes::copy_from_slice(&body[half..])))
        .await
        .unwrap();
    drop(tx);
    let reply = answer.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(
        temp_files(app.dir.path()),
        vec![],
        "the temporary file was renamed"
    );
    let sha = reply.json["sha256"].as_str().unwrap();
    let dir = app
        .dir
        .path()
        .join(format!("groups/{group}/rounds/1/updates"));
    let stored: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(std::fs::read(stored[0].path()).unwrap(), body);
    assert!(stored[0].file_name().to_string_lossy().contains(&sha[..16]));

    // Over the limit while streaming: 413 without waiting for the end, nothing left behind.
    let big = futures_util::stream::iter(
        (0..9).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 1 << 20]))),
    )
    .chain(futures_util::stream::pending());
    let request = Request::post(format!("/api/groups/{group}/rounds/1/update"))
        .header(header::AUTHORIZATION, format!("Bearer {owner}"))
        .body(Body::from_stream(big))
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(30), app.send(request))
        .await
        .expect("an oversized body was awaited to its end");
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.json
    );
    assert!(
        message(&reply).contains(&(8 << 20).to_string()),
        "{}",
        reply.json
    );
    assert_eq!(temp_files(app.dir.path()), vec![]);
}

// --- 5: join codes ------------------------------------------------------------------------

/// Regression (issue #19, 5): join-code guesses were unlimited. After
/// `--max-join-failures` wrong codes in 15 minutes an account gets 429 with `Retry-After`,
/// even for a right code (so guessing cannot tell), and a success does not reset its count.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_join_codes_are_limited_per_account_with_retry_after() {
    let app = App::new(Limits {
        max_join_failures: 5,
        ..Limits::default()
    })
    .await;
    let (_, owner) = app.account("owner").await;
    let (_, guesser) = app.account("guesser").await;
    let r = app
        .call(
            &owner,
            Method::POST,
            "/api/groups",
            Some(group_body(&layout(8), 1, json!({ "name": "fedavg" }))),
        )
        .await;
    let code = r.json["join_code"].as_str().unwrap().to_string();
    for i in 0..5 {
        let r = app
            .call(
                &guesser,
                Method::POST,
                "/api/groups/join",
                Some(json!({ "join_code": format!("WRONG{i}") })),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "guess {i}: {}", r.json);
    }
    for join_code in ["WRONG9".to_string(), code.clone()] {
        let r = app
            .call(
                &guesser,
                Method::POST,
                "/api/groups/join",
                Some(json!({ "join_code": join_code })),
            )
            .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.json);
        let wait: u64 = r.headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&wait), "{wait}");
        assert!(message(&r).contains('5'), "{}", r.json);
    }
    // Another account is not affected, and joins with the right code.
    let (_, other) = app.account("other").await;
    let r = app
        .call(
            &other,
            Method::POST,
            "/api/groups/join",
            Some(json!({ "join_code": code })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
}

/// Regression (issue #19, 5): spreading guesses over many accounts from one address is
/// limited per client address too.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_join_codes_are_limited_per_client_address() {
    let settings = Settings {
        trust_proxy: true,
        ..Settings::default()
    };
    let limits = Limits {
        max_join_failures: 4,
        ..Limits::default()
    };
    let app = App::build(limits, settings, 1 << 20).await;
    let guess = |token: String, ip: &'static str, i: usize| {
        let auth = format!("Bearer {token}");
        request(
            Method::POST,
            "/api/groups/join",
            Some(json!({ "join_code": format!("WRONG{i}") })),
            &[("authorization", &auth), ("x-forwarded-for", ip)],
        )
    };
    for i in 0..4 {
        let (_, token) = app.account(&format!("sprayer{i}")).await;
        let r = app.send(guess(token, "203.0.113.7", i)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.json);
    }
    let (_, fresh) = app.account("fresh").await;
    let r = app.send(guess(fresh.clone(), "203.0.113.7", 9)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.json);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    let r = app.send(guess(fresh, "203.0.113.8", 9)).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "another address: {}",
        r.json
    );
}

// --- 8: event streams ---------------------------------------------------------------------

/// Reads `events` until the stream ends; panics if it is still open after 30 s.
async fn until_the_stream_ends(events: &mut reqwest::Response) -> String {
    let mut seen = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = events.chunk().await.transpose() {
            match chunk {
                Ok(bytes) => seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => break,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the event stream still delivers: {seen}");
    seen
}

async fn open_events(
    http: &reqwest::Client,
    base: &str,
    group: i64,
    auth: (&str, &str),
) -> reqwest::Response {
    let mut events = http
        .get(format!("{base}/api/groups/{group}/events"))
        .header(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), reqwest::StatusCode::OK);
    let first = tokio::time::timeout(Duration::from_secs(10), events.chunk())
        .await
        .expect("no snapshot")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("snapshot"));
    events
}

async fn created_group(app: &App, owner: &str) -> (i64, String) {
    let r = app
        .call(
            owner,
            Method::POST,
            "/api/groups",
            Some(group_body(&layout(8), 1, json!({ "name": "fedavg" }))),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    (
        r.json["group_id"].as_i64().unwrap(),
        r.json["join_code"].as_str().unwrap().to_string(),
    )
}

/// Regression (issue #19, 8): a member's open event stream kept delivering after it left
/// the group. It now ends at once, and a member who left cannot open a new one.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_stream_ends_when_its_member_leaves() {
    let app = App::new(Limits::default()).await;
    let base = app.serve().await;
    let http = reqwest::Client::new();
    let (_, owner) = app.account("owner").await;
    let (_, member) = app.account("member").await;
    let (group, code) = created_group(&app, &owner).await;
    let r = app
        .call(
            &member,
            Method::POST,
            "/api/groups/join",
            Some(json!({ "join_code": code })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let bearer = format!("Bearer {member}");
    let mut events = open_events(&http, &base, group, ("authorization", &bearer)).await;
    let mut owners = open_events(
        &http,
        &base,
        group,
        ("authorization", &format!("Bearer {owner}")),
    )
    .await;
    let r = app
        .call(
            &member,
            Method::POST,
            &format!("/api/groups/{group}/leave"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    until_the_stream_ends(&mut events).await;
    let again = http
        .get(format!("{base}/api/groups/{group}/events"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), reqwest::StatusCode::FORBIDDEN);
    // The owner's stream goes on.
    let (_, joiner) = app.account("joiner").await;
    let r = app
        .call(
            &joiner,
            Method::POST,
            "/api/groups/join",
            Some(json!({ "join_code": code })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let mut seen = String::new();
    let joined = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(chunk)) = owners.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("member_joined") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(joined, Ok(true), "the owner's stream stopped: {seen}");
}

/// Regression (issue #19, 8): a browser's event stream kept delivering after its session
/// signed out. It now ends within a few seconds.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_stream_ends_when_its_session_signs_out() {
    let app = App::new(Limits::default()).await;
    let base = app.serve().await;
    let http = reqwest::Client::new();
    let (browser, owner) = app.account("owner").await;
    let (group, _) = created_group(&app, &owner).await;
    let mut events = open_events(&http, &base, group, ("cookie", &browser.cookie)).await;
    let r = app
        .send(request(
            Method::POST,
            "/api/auth/logout",
            None,
            &[("cookie", &browser.cookie), ("x-csrf-token", &browser.csrf)],
        ))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    until_the_stream_ends(&mut events).await;
}

/// Regression (issue #19, 8): a program's event stream kept delivering after its API token
/// was revoked. It now ends within a few seconds.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_stream_ends_when_its_api_token_is_revoked() {
    let app = App::new(Limits::default()).await;
    let base = app.serve().await;
    let http = reqwest::Client::new();
    let (browser, owner) = app.account("owner").await;
    let (group, _) = created_group(&app, &owner).await;
    let mut events = open_events(
        &http,
        &base,
        group,
        ("authorization", &format!("Bearer {owner}")),
    )
    .await;
    let tokens = app
        .send(request(
            Method::GET,
            "/api/auth/tokens",
            None,
            &[("cookie", &browser.cookie)],
        ))
        .await;
    let id = tokens.json[0]["id"]
        .as_i64()
        .or_else(|| tokens.json["tokens"][0]["id"].as_i64())
        .unwrap_or_else(|| panic!("{}", tokens.json));
    let r = app
        .send(request(
            Method::DELETE,
            &format!("/api/auth/tokens/{id}"),
            None,
            &[("cookie", &browser.cookie), ("x-csrf-token", &browser.csrf)],
        ))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    until_the_stream_ends(&mut events).await;
}
