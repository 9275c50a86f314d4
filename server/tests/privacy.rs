//! Differential privacy (issue #14) against a real `b3o serve`: the mean of a central DP group
//! is unweighted and gets the server's noise of the right size; updates past the clipping norm
//! are refused; the accountant's epsilon is published per round and per version and training
//! stops at the target; adaptive clipping moves the norm from the members' bits and never
//! shows them; and the settings the analysis cannot cover are refused.

use std::collections::BTreeMap;

use b3o_models::dp::DpParams;
use b3o_models::dp::accountant::Accountant;
use b3o_models::weights::{self, Dtype, TensorSpec, UpdateMeta, WeightLayout, WeightSet};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::federation::{Group, Server, error_message, round, setup, start, versions, wait_round};

/// 2,080 parameters: enough values to measure the noise's spread.
fn layout() -> WeightLayout {
    WeightLayout(vec![
        TensorSpec::new("dense.weight", vec![64, 32]),
        TensorSpec::new("dense.bias", vec![32]),
    ])
}

fn dp_body(rounds: u32, dp: Value) -> Value {
    json!({
        "name": "private",
        "model": { "kind": "custom", "layout": layout() },
        "hyperparameters": { "rounds": rounds, "local_epochs": 1, "lr": 0.01 },
        "strategy": { "name": "fedavg" },
        "min_clients": 2,
        "round_deadline_secs": 600,
        "dp": dp,
    })
}

async fn get(s: &Server, http: &reqwest::Client, token: &str, path: &str) -> Value {
    let r = http
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

async fn global(s: &Server, http: &reqwest::Client, g: &Group) -> Vec<f32> {
    let r = http
        .get(s.url(&format!("/api/groups/{}/weights", g.id)))
        .bearer_auth(&g.owner)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (set, _) = weights::decode(&r.bytes().await.unwrap(), &layout(), usize::MAX).unwrap();
    set.flatten()
}

fn encode(
    g: &Group,
    round: i64,
    params: Vec<f32>,
    samples: u64,
    metrics: &[(&str, f64)],
) -> Vec<u8> {
    let set = WeightSet::from_flat(&layout(), params).unwrap();
    let meta = UpdateMeta {
        model_id: format!("group-{}", g.id),
        round: round as u64,
        num_samples: samples,
        metrics: metrics
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>(),
    };
    weights::encode(&set, &meta, Dtype::F32).unwrap()
}

async fn upload(
    s: &Server,
    http: &reqwest::Client,
    g: &Group,
    member: usize,
    round: i64,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let r = http
        .post(s.url(&format!("/api/groups/{}/rounds/{round}/update", g.id)))
        .bearer_auth(&g.members[member].1)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn plus(base: &[f32], by: f32) -> Vec<f32> {
    base.iter().map(|x| x + by).collect()
}

fn epsilon_after(q: f64, z: f64, rounds: u32, delta: f64) -> f64 {
    let mut acc = Accountant::new();
    acc.compose(q, z, rounds);
    acc.epsilon(delta)
}

/// Two members with very different sample counts move the model in opposite directions by
/// the same amount: the DP mean is their unweighted mean (0) plus the server's noise, whose
/// spread is `z·C/n`. An update past the clipping norm is a 400. Each closed round publishes
/// the accountant's epsilon, the versions carry it, and training stops when another round
/// would pass the target: after round 2 of the 10 planned.
#[tokio::test(flavor = "multi_thread")]
async fn central_noise_unweighted_mean_accounting_and_the_stop_at_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let http = reqwest::Client::new();
    let (z, c, delta) = (0.05, 1.0, 1e-5);
    let target = epsilon_after(1.0, z, 2, delta) * (1.0 + 1e-6);
    let body = dp_body(
        10,
        json!({ "epsilon": target, "delta": delta, "clipping_norm": c, "noise_multiplier": z }),
    );
    let g = setup(&s, &http, body, &[10, 1000]).await;
    let view = get(&s, &http, &g.owner, &format!("/api/groups/{}", g.id)).await;
    let params: DpParams = serde_json::from_value(view["dp"]["params"].clone()).unwrap();
    assert_eq!((params.noise_multiplier, params.clipping_norm), (z, c));
    assert_eq!(params.sampling_rate, 1.0);
    start(&s, &http, &g).await;

    let n = layout().num_params();
    // Each change has norm 0.9 (within C); A's is +a everywhere, B's -a.
    let a = 0.9 / (n as f32).sqrt();
    let mut expected_eps = Vec::new();
    for number in 1..=2 {
        let base = global(&s, &http, &g).await;
        let r = round(&s, &http, &g, number).await;
        let dp = &r["config"]["dp"];
        assert_eq!(dp["placement"], "central", "{r}");
        assert_eq!(dp["clipping_norm"].as_f64(), Some(c));
        assert_eq!(dp["noise_multiplier"].as_f64(), Some(z));
        if number == 1 {
            // Past the clipping norm: refused, naming the bound.
            let (status, body) = upload(
                &s,
                &http,
                &g,
                0,
                number,
                encode(&g, number, plus(&base, 2.0 * a), 10, &[]),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(error_message(&body).contains("clipping_norm"), "{body}");
        }
        let (sa, ba) = upload(
            &s,
            &http,
            &g,
            0,
            number,
            encode(&g, number, plus(&base, a), 10, &[]),
        )
        .await;
        assert_eq!(sa, StatusCode::OK, "{ba}");
        let (sb, bb) = upload(
            &s,
            &http,
            &g,
            1,
            number,
            encode(&g, number, plus(&base, -a), 1000, &[]),
        )
        .await;
        assert_eq!(sb, StatusCode::OK, "{bb}");
        let closed = wait_round(&s, &http, &g, number, "closed").await;
        let new = global(&s, &http, &g).await;
        let moved: Vec<f64> = new
            .iter()
            .zip(&base)
            .map(|(x, b)| f64::from(x - b))
            .collect();
        let mean = moved.iter().sum::<f64>() / n as f64;
        let sd = (moved.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        let sigma = z * c / 2.0;
        // Unweighted: the mean change is 0 +- sigma/sqrt(n) (5 standard errors allowed); the
        // sample-weighted mean would be -0.98a, about 34 standard errors away.
        assert!(
            mean.abs() < 5.0 * sigma / (n as f64).sqrt(),
            "mean change {mean}"
        );
        // The noise's spread: the sample standard deviation of n normal values has a relative
        // standard error of 1/sqrt(2(n-1)) = 1.6%; 10% is more than 6 of them.
        assert!(
            (sd / sigma - 1.0).abs() < 0.10,
            "spread {sd}, expected {sigma}"
        );
        let eps = epsilon_after(1.0, z, number as u32, delta);
        let published = closed["privacy"]["epsilon"].as_f64().unwrap();
        assert!(
            (published - eps).abs() <= 1e-9 * eps,
            "{published} vs {eps}"
        );
        expected_eps.push(eps);
    }
    // Round 3 would pass the target: the group finished, and says why.
    let view = get(&s, &http, &g.owner, &format!("/api/groups/{}", g.id)).await;
    assert_eq!(view["phase"], "finished", "{view}");
    assert_eq!(view["current_round"], 2);
    let why = view["dp"]["budget_exhausted"].as_str().unwrap_or_default();
    assert!(
        why.contains("privacy budget") && why.contains("2 round"),
        "{why}"
    );
    assert_eq!(view["dp"]["rounds_counted"], 2);
    let spent = view["dp"]["spent_epsilon"].as_f64().unwrap();
    assert!((spent - expected_eps[1]).abs() <= 1e-9 * spent && spent <= target);
    // The registry: version 0 cost nothing, each round's version its epsilon.
    let vs = versions(&s, &http, &g).await;
    let got: Vec<f64> = vs
        .iter()
        .map(|v| v["privacy"]["epsilon"].as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], 0.0);
    for (g, e) in got[1..].iter().zip(&expected_eps) {
        assert!((g - e).abs() <= 1e-9 * e, "{got:?} vs {expected_eps:?}");
    }
    assert!(
        vs.iter()
            .all(|v| v["privacy"]["delta"].as_f64() == Some(delta))
    );
}

/// Adaptive clipping: every update must say whether it was within the norm (0 or 1); the
/// bits never show in the round's metrics (only their noisy share does); and when every
/// update is within the norm, the next round's norm is smaller.
#[tokio::test(flavor = "multi_thread")]
async fn adaptive_clipping_needs_the_bit_hides_it_and_moves_the_norm() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let http = reqwest::Client::new();
    let body = dp_body(
        3,
        json!({
            "epsilon": 1000.0, "noise_multiplier": 0.5, "clipping_norm": 0.1,
            "adaptive": { "clipped_count_stddev": 0.5 },
        }),
    );
    let g = setup(&s, &http, body, &[10, 20]).await;
    start(&s, &http, &g).await;
    let base = global(&s, &http, &g).await;
    let r1 = round(&s, &http, &g, 1).await;
    assert_eq!(r1["config"]["dp"]["adaptive"], true);
    let c1 = r1["config"]["dp"]["clipping_norm"].as_f64().unwrap();
    assert_eq!(c1, 0.1);
    let small = 0.05 / (layout().num_params() as f32).sqrt();
    for (bits, want) in [
        (vec![], "dp_unclipped"),
        (vec![("dp_unclipped", 0.5)], "0 or 1"),
    ] {
        let (status, body) = upload(
            &s,
            &http,
            &g,
            0,
            1,
            encode(&g, 1, plus(&base, small), 10, &bits),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(error_message(&body).contains(want), "{body}");
    }
    for member in 0..2 {
        let update = encode(
            &g,
            1,
            plus(&base, small),
            10,
            &[("dp_unclipped", 1.0), ("accuracy", 0.5)],
        );
        let (status, body) = upload(&s, &http, &g, member, 1, update).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let closed = wait_round(&s, &http, &g, 1, "closed").await;
    let text = closed.to_string();
    assert!(
        !text.contains("dp_unclipped"),
        "a member's bit is visible: {text}"
    );
    assert_eq!(closed["metrics"]["accuracy"].as_f64(), Some(0.5));
    // The noisy share of unclipped updates: 1 plus N(0, 0.5^2)/2.
    let share = closed["privacy"]["unclipped_fraction"].as_f64().unwrap();
    assert!((share - 1.0).abs() < 5.0 * 0.25, "{share}");
    let c2 = round(&s, &http, &g, 2).await["config"]["dp"]["clipping_norm"]
        .as_f64()
        .unwrap();
    let expected = c1 * (-0.2 * (share - 0.5)).exp();
    assert!((c2 - expected).abs() < 1e-12, "{c2} vs {expected}");
    let view = get(&s, &http, &g.owner, &format!("/api/groups/{}", g.id)).await;
    assert_eq!(view["dp"]["clipping_norm"].as_f64(), Some(c2));
}

/// What the privacy analysis cannot cover is refused at creation, naming the setting.
#[tokio::test(flavor = "multi_thread")]
async fn settings_outside_the_analysis_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let http = reqwest::Client::new();
    let owner = crate::federation::account(&s, &http, "owner").await;
    let with = |change: &dyn Fn(&mut Value)| {
        let mut body = dp_body(3, json!({ "epsilon": 8.0 }));
        change(&mut body);
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(&|b| b["dp"]["epsilon"] = json!(0.0)), "epsilon"),
        (with(&|b| b["dp"]["delta"] = json!(1.0)), "delta"),
        (
            with(&|b| b["dp"]["clipping_norm"] = json!(-1.0)),
            "clipping_norm",
        ),
        (
            with(&|b| b["dp"]["noise_multiplier"] = json!(0.0)),
            "noise_multiplier",
        ),
        (
            with(&|b| b["dp"]["placement"] = json!("everywhere")),
            "placement",
        ),
        (
            with(&|b| {
                b["dp"]["placement"] = json!("local");
                b["dp"]["adaptive"] = json!({});
            }),
            "adaptive",
        ),
        (
            with(&|b| {
                b["dp"]["adaptive"] = json!({});
                b["secagg"] = json!({});
            }),
            "adaptive",
        ),
        (
            with(&|b| b["strategy"] = json!({ "name": "fedmedian" })),
            "mean",
        ),
        (
            with(&|b| b["strategy"] = json!({ "name": "krum", "num_malicious": 0 })),
            "mean",
        ),
        (
            with(&|b| b["max_update_norm"] = json!(1.0)),
            "max_update_norm",
        ),
        (
            with(&|b| b["update_encoding"] = json!("int8")),
            "update_encoding",
        ),
        // No noise reaches epsilon 1e-6 in 3 rounds.
        (
            with(&|b| b["dp"]["epsilon"] = json!(1e-9)),
            "noise multiplier",
        ),
        // Adaptive clipping's count noise too small for the noise multiplier.
        (
            with(&|b| {
                b["dp"]["noise_multiplier"] = json!(3.0);
                b["dp"]["adaptive"] = json!({ "clipped_count_stddev": 1.0 });
            }),
            "clipped_count_stddev",
        ),
    ];
    for (body, want) in cases {
        let r = http
            .post(s.url("/api/groups"))
            .bearer_auth(&owner.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let answer: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {status} {answer}"
        );
        assert!(error_message(&answer).contains(want), "{want}: {answer}");
    }
    // A request the analysis covers gets its calibrated noise back.
    let r = http
        .post(s.url("/api/groups"))
        .bearer_auth(&owner.token)
        .json(&dp_body(3, json!({ "epsilon": 8.0 })))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["group_id"]
        .as_i64()
        .unwrap();
    let view = get(&s, &http, &owner.token, &format!("/api/groups/{id}")).await;
    let params: DpParams = serde_json::from_value(view["dp"]["params"].clone()).unwrap();
    let reached = params.epsilon_after(3);
    assert!(reached <= 8.0 && reached > 7.9, "{params:?}: {reached}");
}
