//! Secure aggregation (SecAgg+, issue #13) against a real `b3o serve`: members driven through
//! the protocol's client ([`ClientRound`], as the browser and `b3o client` run it) over HTTP;
//! the aggregate against the exact weighted mean, dropouts after the share stage and during
//! unmasking, a round below the threshold, what the server stores, `kill -9` in every stage,
//! and the refusals.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use b3o_models::protocol::secagg::{SecAggView, ShareUpload, UnmaskUpload};
use b3o_models::secagg::keys::Context;
use b3o_models::secagg::wire::{MaskedMeta, decode_masked, encode_masked};
use b3o_models::secagg::{ClientRound, EffectiveConfig, error_bound, graph, quantize};
use b3o_models::weights::{self, TensorSpec, WeightLayout};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::federation::{Group, Server, error_message, round, setup, start};

/// Ten partners sign up from one address within the hour.
const OPEN: &[&str] = &["--max-registrations-per-hour", "0"];

/// 2,080 parameters: enough entries for the uniformity test.
fn big_layout() -> WeightLayout {
    WeightLayout(vec![
        TensorSpec::new("dense.weight", vec![64, 32]),
        TensorSpec::new("dense.bias", vec![32]),
    ])
}

fn secure_body(min_clients: u32, rounds: u32, deadline: u32, secagg: Value) -> Value {
    json!({
        "name": "secure",
        "model": { "kind": "custom", "layout": big_layout() },
        "hyperparameters": { "rounds": rounds, "local_epochs": 1, "lr": 0.01 },
        "strategy": { "name": "fedavg" },
        "min_clients": min_clients,
        "round_deadline_secs": deadline,
        "secagg": secagg,
    })
}

/// One member's side of a round.
struct Member {
    id: i64,
    token: String,
    samples: u64,
    client: Option<ClientRound>,
    /// The change it trained this round.
    delta: Vec<f32>,
}

fn members(g: &Group, samples: &[u64]) -> Vec<Member> {
    g.members
        .iter()
        .zip(samples)
        .map(|((id, token), samples)| Member {
            id: *id,
            token: token.clone(),
            samples: *samples,
            client: None,
            delta: Vec::new(),
        })
        .collect()
}

pub(crate) async fn get(
    s: &Server,
    http: &reqwest::Client,
    token: &str,
    path: &str,
) -> (StatusCode, Value) {
    let r = http
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(
    s: &Server,
    http: &reqwest::Client,
    token: &str,
    path: &str,
    body: &impl serde::Serialize,
) -> (StatusCode, Value) {
    let r = http
        .post(s.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn view(s: &Server, http: &reqwest::Client, g: &Group, m: &Member, n: i64) -> SecAggView {
    let (status, body) = get(
        s,
        http,
        &m.token,
        &format!("/api/groups/{}/rounds/{n}/secagg", g.id),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_value(body).unwrap()
}

/// Polls member `m`'s view until the round is in `stage`.
async fn wait_stage(
    s: &Server,
    http: &reqwest::Client,
    g: &Group,
    m: &Member,
    n: i64,
    stage: &str,
) -> SecAggView {
    let start = Instant::now();
    loop {
        let v = view(s, http, g, m, n).await;
        if v.stage.as_str() == stage {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "round {n} stuck in {} waiting for {stage}",
            v.stage.as_str()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_state(
    s: &Server,
    http: &reqwest::Client,
    g: &Group,
    n: i64,
    states: &[&str],
) -> Value {
    let start = Instant::now();
    loop {
        let r = round(s, http, g, n).await;
        if states.iter().any(|st| r["state"] == *st) {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "round {n} stuck: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stage 1 for `who`: fresh keys, advertised.
async fn advertise(
    s: &Server,
    http: &reqwest::Client,
    g: &Group,
    ms: &mut [Member],
    who: &[usize],
    n: i64,
    rng: &mut StdRng,
) -> EffectiveConfig {
    let cfg = view(s, http, g, &ms[who[0]], n).await.config;
    for &i in who {
        let m = &mut ms[i];
        let ctx = Context {
            group_id: g.id,
            round: n,
        };
        let client = ClientRound::new(ctx, m.id, cfg.clone(), rng);
        let (status, body) = post(
            s,
            http,
            &m.token,
            &format!("/api/groups/{}/rounds/{n}/secagg/keys", g.id),
            &client.public_keys(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        m.client = Some(client);
    }
    cfg
}

/// Stage 2 for `who`.
async fn share(
    s: &Server,
    http: &reqwest::Client,
    g: &Group,
    ms: &mut [Member],
    who: &[usize],
    n: i64,
    rng: &mut StdRng,
) {
    for &i in who {
        let v = wait_stage(s, http, g, &ms[i], n, "share").await;
        let m = &mut ms[i];
        let shares = m
            .client
            .as_mut()
            .unwrap()
            .share_keys(&v.ring, &v.keys, rng)
            .unwrap();
        let (status, body) = post(
            s,
            http,
            &m.token,
            &format!("/api/groups/{}/rounds/{n}/secagg/shares", g.id),
            &ShareUpload { shares },
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// Stage 3 for `who`: a random change in [-1, 1], masked and uploaded.
async fn masked(
    s: &Server,
    http: &reqwest::Client,
    g: &Group,
    ms: &mut [Member],
    who: &[usize],
    n: i64,
    rng: &mut StdRng,
) {
    let len = big_layout().num_params();
    for &i in who {
        let v = wait_stage(s, http, g, &ms[i], n, "masked").await;
        let m = &mut ms[i];
        let client = m.client.as_mut().unwrap();
        client.receive_shares(&v.shares).unwrap();
        m.delta = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let vector = client.mask(&m.delta, m.samples, rng).unwrap();
        let meta = MaskedMeta {
            model_id: format!("group-{}", g.id),
            round: n as u64,
            metrics: BTreeMap::from([("accuracy".to_string(), 0.5)]),
        };
        let body = encode_masked(&vector, v.config.modulus_range, &meta);
        let r = http
            .post(s.url(&format!("/api/groups/{}/rounds/{n}/update", g.id)))
            .bearer_auth(&m.token)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status, StatusCode::OK, "{}", r.text().await.unwrap());
    }
}

/// Stage 4 for `who`.
async fn unmask(
    s: &Server,
    http: &reqwest::Client,
    g: &Group,
    ms: &mut [Member],
    who: &[usize],
    n: i64,
) {
    for &i in who {
        let v = wait_stage(s, http, g, &ms[i], n, "unmask").await;
        let m = &ms[i];
        let request = v.unmask.expect("a survivor gets an unmask request");
        let shares = m.client.as_ref().unwrap().unmask_shares(&request).unwrap();
        let (status, body) = post(
            s,
            http,
            &m.token,
            &format!("/api/groups/{}/rounds/{n}/secagg/unmask", g.id),
            &UnmaskUpload { shares },
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

async fn weights_of(s: &Server, http: &reqwest::Client, g: &Group, version: i64) -> Vec<f32> {
    let r = http
        .get(s.url(&format!("/api/versions/{version}/weights")))
        .bearer_auth(&g.owner)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let bytes = r.bytes().await.unwrap();
    weights::decode(&bytes, &big_layout(), usize::MAX)
        .unwrap()
        .0
        .flatten()
}

/// Checks round `n`'s new version against the exact weighted mean of the survivors' changes,
/// within the bound the quantization allows.
async fn assert_weighted_mean(
    s: &Server,
    http: &reqwest::Client,
    g: &Group,
    ms: &[Member],
    survivors: &[usize],
    n: i64,
    cfg: &EffectiveConfig,
) {
    let closed = wait_state(s, http, g, n, &["closed", "failed"]).await;
    assert_eq!(closed["state"], "closed", "{closed}");
    assert_eq!(closed["secagg"]["unmasked"], true, "{closed}");
    let base = weights_of(s, http, g, closed["base_version_id"].as_i64().unwrap()).await;
    let new = weights_of(s, http, g, closed["result_version_id"].as_i64().unwrap()).await;
    let factors: Vec<f64> = survivors
        .iter()
        .map(|&i| quantize::weight_factor(ms[i].samples, cfg.max_weight))
        .collect();
    let total: f64 = factors.iter().sum();
    let t = cfg.quantization_range as f64;
    // The unmasked weight entry is within n of T * total: the bound's weight at its lowest.
    let bound = error_bound(cfg, survivors.len(), total - survivors.len() as f64 / t);
    assert!(bound < 1e-3, "a useful bound: {bound}");
    let mut worst = 0f64;
    for k in 0..base.len() {
        let exact: f64 = survivors
            .iter()
            .zip(&factors)
            .map(|(&i, f)| f * f64::from(ms[i].delta[k]))
            .sum::<f64>()
            / total;
        let got = f64::from(new[k]) - f64::from(base[k]);
        // f32 rounding of the stored weights on top of the quantization.
        let slack = bound + 2.0 * f64::from(f32::EPSILON) * (f64::from(base[k].abs()) + 1.0);
        worst = worst.max((got - exact).abs());
        assert!(
            (got - exact).abs() <= slack,
            "parameter {k}: {got} vs the exact weighted mean {exact} (bound {slack})"
        );
    }
    eprintln!("largest error {worst:e}, bound {bound:e}");
}

/// Chi-square of the top 4 bits of `values` (modulo 2^32) over 16 bins.
fn chi_square_top_bits(values: &[u64]) -> f64 {
    let mut bins = [0f64; 16];
    for v in values {
        bins[((v >> 28) & 15) as usize] += 1.0;
    }
    let expected = values.len() as f64 / 16.0;
    bins.iter().map(|o| (o - expected).powi(2) / expected).sum()
}

fn stored_vectors(data: &Path, g: &Group, n: i64, len: usize) -> Vec<Vec<u64>> {
    let dir = data.join(format!("groups/{}/rounds/{n}/updates", g.id));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            let bytes = std::fs::read(&path).unwrap();
            let (v, _) = decode_masked(&bytes, len, 1 << 32, usize::MAX, 100).unwrap();
            out.push(v);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_members_get_the_weighted_mean_and_the_server_stores_only_uniform_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), OPEN);
    let http = reqwest::Client::new();
    let samples = [40, 1000, 250, 600, 90, 700, 333, 20, 512, 900];
    let g = setup(
        &s,
        &http,
        secure_body(10, 1, 120, json!({ "stage_deadline_secs": 60 })),
        &samples,
    )
    .await;
    start(&s, &http, &g).await;
    let mut ms = members(&g, &samples);
    let mut rng = StdRng::seed_from_u64(7);
    let all: Vec<usize> = (0..10).collect();
    let cfg = advertise(&s, &http, &g, &mut ms, &all, 1, &mut rng).await;
    assert_eq!(cfg.num_shares, 10, "10 members: the complete graph");
    share(&s, &http, &g, &mut ms, &all, 1, &mut rng).await;
    masked(&s, &http, &g, &mut ms, &all, 1, &mut rng).await;
    unmask(&s, &http, &g, &mut ms, &all, 1).await;
    assert_weighted_mean(&s, &http, &g, &ms, &all, 1, &cfg).await;

    // What the server kept of each member is uniform noise: no update is recoverable.
    let len = big_layout().num_params() + 1;
    let vectors = stored_vectors(dir.path(), &g, 1, len);
    assert_eq!(vectors.len(), 10);
    for v in &vectors {
        let chi = chi_square_top_bits(v);
        assert!(
            chi < 37.70,
            "a stored vector is not uniform: chi-square {chi}"
        );
    }
    // The same test tells an unmasked quantized update apart (it can fail).
    let plain = quantize::quantize_weighted(&ms[0].delta, 1.0, &cfg, &mut rng);
    assert!(chi_square_top_bits(&plain) > 37.70);
}

/// Three members to drop after sharing and one survivor to stay silent in the unmask stage
/// such that every secret still has `reconstruction_threshold` answering holders.
fn recoverable(ring: &[i64], cfg: &EffectiveConfig) -> Option<(Vec<i64>, i64)> {
    let t = cfg.reconstruction_threshold as usize;
    let near = |m: i64| graph::neighbours(ring, m, cfg.num_shares);
    let n = ring.len();
    for a in 0..n {
        for b in a + 1..n {
            for c in b + 1..n {
                let dropped = [ring[a], ring[b], ring[c]];
                for &silent in ring.iter().filter(|m| !dropped.contains(m)) {
                    let answers = |m: &i64| !dropped.contains(m) && *m != silent;
                    let seeds_ok = ring.iter().filter(|m| !dropped.contains(m)).all(|&m| {
                        near(m)
                            .iter()
                            .chain([m].iter())
                            .filter(|h| answers(h))
                            .count()
                            >= t
                    });
                    let keys_ok = dropped
                        .iter()
                        .all(|&d| near(d).iter().filter(|h| answers(h)).count() >= t);
                    if seeds_ok && keys_ok {
                        return Some((dropped.to_vec(), silent));
                    }
                }
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn dropouts_after_sharing_and_during_unmasking_are_recovered_on_a_sparse_graph() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), OPEN);
    let http = reqwest::Client::new();
    let samples = [40, 1000, 250, 600, 90, 700, 333, 20, 512, 900];
    // SecAgg+: 5 shares each (4 neighbours), 3 to rebuild a secret.
    let g = setup(
        &s,
        &http,
        secure_body(
            5,
            2,
            6,
            json!({ "num_shares": 5, "reconstruction_threshold": 3, "stage_deadline_secs": 5 }),
        ),
        &samples,
    )
    .await;
    start(&s, &http, &g).await;
    let mut ms = members(&g, &samples);
    let mut rng = StdRng::seed_from_u64(11);
    let all: Vec<usize> = (0..10).collect();
    let cfg = advertise(&s, &http, &g, &mut ms, &all, 1, &mut rng).await;
    assert_eq!((cfg.num_shares, cfg.reconstruction_threshold), (5, 3));
    share(&s, &http, &g, &mut ms, &all, 1, &mut rng).await;
    // On a ring of degree 4 not every placement of 3 dropouts and 1 silent survivor leaves
    // each secret 3 holders: pick one that does, from the ring the server drew.
    let ring = view(&s, &http, &g, &ms[0], 1).await.ring;
    let index = |id: i64| ms.iter().position(|m| m.id == id).unwrap();
    let (dropped, silent) = recoverable(&ring, &cfg).expect("some placement is recoverable");
    let (dropped, silent): (Vec<usize>, usize) =
        (dropped.iter().map(|&id| index(id)).collect(), index(silent));
    // Two dropped members report that they cannot go on; the third just disappears.
    for &i in &dropped[..2] {
        let (status, body) = post(
            &s,
            &http,
            &ms[i].token,
            &format!("/api/groups/{}/rounds/1/failure", g.id),
            &json!({ "reason": "tab closed" }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let survivors: Vec<usize> = (0..10).filter(|i| !dropped.contains(i)).collect();
    masked(&s, &http, &g, &mut ms, &survivors, 1, &mut rng).await;
    // One survivor sent its vector but never answers the unmask stage.
    let answering: Vec<usize> = survivors.iter().copied().filter(|&i| i != silent).collect();
    unmask(&s, &http, &g, &mut ms, &answering, 1).await;
    assert_weighted_mean(&s, &http, &g, &ms, &survivors, 1, &cfg).await;
    let closed = round(&s, &http, &g, 1).await;
    let mut listed: Vec<i64> = closed["secagg"]["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    listed.sort_unstable();
    let mut expected: Vec<i64> = dropped.iter().map(|&i| ms[i].id).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected, "{closed}");
    assert_eq!(closed["secagg"]["answered"], 6, "{closed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn below_the_threshold_the_round_fails_with_the_reason_and_the_next_opens() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), OPEN);
    let http = reqwest::Client::new();
    let samples = [100, 200, 300, 400];
    let g = setup(
        &s,
        &http,
        secure_body(2, 3, 4, json!({ "stage_deadline_secs": 4 })),
        &samples,
    )
    .await;
    start(&s, &http, &g).await;
    let mut ms = members(&g, &samples);
    let mut rng = StdRng::seed_from_u64(3);
    let all: Vec<usize> = (0..4).collect();
    let cfg = advertise(&s, &http, &g, &mut ms, &all, 1, &mut rng).await;
    // 4 shares, a strict majority: 3.
    assert_eq!(cfg.reconstruction_threshold, 3);
    share(&s, &http, &g, &mut ms, &all, 1, &mut rng).await;
    // Two vectors arrive: fewer than the 3 that unmasking needs.
    masked(&s, &http, &g, &mut ms, &[0, 1], 1, &mut rng).await;
    let failed = wait_state(&s, &http, &g, 1, &["failed"]).await;
    let reason = failed["failure"].as_str().unwrap();
    assert!(
        reason.contains("only 2 masked update(s) arrived; unmasking needs 3"),
        "{reason}"
    );
    // The next round opens from the same model.
    let second = wait_state(&s, &http, &g, 2, &["open", "collecting"]).await;
    assert_eq!(second["base_version_id"], failed["base_version_id"]);

    // Round 2: three vectors, but only two answer the unmask stage: a seed cannot be rebuilt.
    advertise(&s, &http, &g, &mut ms, &all, 2, &mut rng).await;
    share(&s, &http, &g, &mut ms, &all, 2, &mut rng).await;
    masked(&s, &http, &g, &mut ms, &[0, 1, 2], 2, &mut rng).await;
    unmask(&s, &http, &g, &mut ms, &[0, 1], 2).await;
    let failed = wait_state(&s, &http, &g, 2, &["failed"]).await;
    let reason = failed["failure"].as_str().unwrap();
    assert!(reason.contains("cannot reconstruct"), "{reason}");
    assert_eq!(failed["secagg"]["unmasked"], false, "{failed}");
    wait_state(&s, &http, &g, 3, &["open", "collecting"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_in_every_stage_and_the_round_still_sums_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), OPEN);
    let http = reqwest::Client::new();
    let samples = [300, 800, 50, 1000];
    let g = setup(
        &s,
        &http,
        secure_body(3, 1, 300, json!({ "stage_deadline_secs": 300 })),
        &samples,
    )
    .await;
    start(&s, &http, &g).await;
    let mut ms = members(&g, &samples);
    let mut rng = StdRng::seed_from_u64(5);
    let all: Vec<usize> = (0..4).collect();
    let restart = |s: Server| {
        s.kill9();
        Server::start(dir.path(), OPEN)
    };
    // Killed after two members advertised: their keys are kept.
    let cfg = advertise(&s, &http, &g, &mut ms, &all[..2], 1, &mut rng).await;
    s = restart(s);
    advertise(&s, &http, &g, &mut ms, &all[2..], 1, &mut rng).await;
    share(&s, &http, &g, &mut ms, &all[..3], 1, &mut rng).await;
    s = restart(s);
    share(&s, &http, &g, &mut ms, &all[3..], 1, &mut rng).await;
    masked(&s, &http, &g, &mut ms, &all[..2], 1, &mut rng).await;
    s = restart(s);
    masked(&s, &http, &g, &mut ms, &all[2..], 1, &mut rng).await;
    unmask(&s, &http, &g, &mut ms, &all[..3], 1).await;
    s = restart(s);
    unmask(&s, &http, &g, &mut ms, &all[3..], 1).await;
    assert_weighted_mean(&s, &http, &g, &ms, &all, 1, &cfg).await;
    // A retry of an acknowledged message gets the same answer after the restart; another
    // message is refused.
    let keys = ms[0].client.as_ref().unwrap().public_keys();
    let path = format!("/api/groups/{}/rounds/1/secagg/keys", g.id);
    let (status, reply) = post(&s, &http, &ms[0].token, &path, &keys).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, _) = post(
        &s,
        &http,
        &ms[0].token,
        &path,
        &ms[1].client.as_ref().unwrap().public_keys(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread")]
async fn secure_groups_refuse_what_would_reveal_an_update_and_bad_messages() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), OPEN);
    let http = reqwest::Client::new();
    let owner = crate::federation::account(&s, &http, "owner").await;
    let create = |body: Value| {
        let http = http.clone();
        let url = s.url("/api/groups");
        let token = owner.token.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    for (strategy, name) in [
        (json!({ "name": "fedmedian" }), "fedmedian"),
        (json!({ "name": "krum", "num_malicious": 1 }), "krum"),
        (
            json!({ "name": "fedtrimmedavg", "beta": 0.2 }),
            "fedtrimmedavg",
        ),
    ] {
        let mut body = secure_body(3, 1, 60, json!({}));
        body["strategy"] = strategy;
        let (status, reply) = create(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        let message = error_message(&reply);
        assert!(
            message.contains(name) && message.contains("mean-type"),
            "{message}"
        );
    }
    let mut body = secure_body(3, 1, 60, json!({}));
    body["max_update_norm"] = json!(1.0);
    let (status, reply) = create(body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&reply).contains("max_update_norm"), "{reply}");
    let (status, reply) = create(secure_body(1, 1, 60, json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&reply).contains("min_clients"), "{reply}");
    for (secagg, field) in [
        (json!({ "modulus_range": 1000 }), "modulus_range"),
        (
            json!({ "quantization_range": 1u64 << 40 }),
            "quantization_range",
        ),
        (json!({ "clipping_range": -1.0 }), "clipping_range"),
        (json!({ "shares": 3 }), "shares"),
    ] {
        let (status, reply) = create(secure_body(3, 1, 60, secagg)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert!(error_message(&reply).contains(field), "{field}: {reply}");
    }

    // A secure group's messages.
    let samples = [100, 200, 300];
    let g = setup(
        &s,
        &http,
        secure_body(3, 1, 60, json!({ "stage_deadline_secs": 60 })),
        &samples,
    )
    .await;
    start(&s, &http, &g).await;
    let mut ms = members(&g, &samples);
    let mut rng = StdRng::seed_from_u64(1);
    let path = |end: &str| format!("/api/groups/{}/rounds/1/{end}", g.id);
    // Shares before their stage: 409 naming the stage.
    let (status, reply) = post(
        &s,
        &http,
        &ms[0].token,
        &path("secagg/shares"),
        &json!({ "shares": [] }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert!(error_message(&reply).contains("advertise"), "{reply}");
    // A plain update in a secure round.
    let (status, reply) = post(&s, &http, &ms[0].token, &path("update"), &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    let all = [0, 1, 2];
    advertise(&s, &http, &g, &mut ms, &all, 1, &mut rng).await;
    // Other keys once some were accepted: 409; the same again: 200.
    let other = ClientRound::new(
        Context {
            group_id: g.id,
            round: 1,
        },
        ms[0].id,
        view(&s, &http, &g, &ms[0], 1).await.config,
        &mut rng,
    );
    let (status, _) = post(
        &s,
        &http,
        &ms[0].token,
        &path("secagg/keys"),
        &other.public_keys(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let v = wait_stage(&s, &http, &g, &ms[0], 1, "share").await;
    let shares = ms[0]
        .client
        .as_mut()
        .unwrap()
        .share_keys(&v.ring, &v.keys, &mut rng)
        .unwrap();
    // A share for oneself, a truncated one, and a missing one: 400 naming the problem.
    let mut bad = shares.clone();
    bad[0].to = ms[0].id;
    let (status, reply) = post(
        &s,
        &http,
        &ms[0].token,
        &path("secagg/shares"),
        &ShareUpload { shares: bad },
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(
        error_message(&reply).contains("not one of your neighbours"),
        "{reply}"
    );
    let mut bad = shares.clone();
    bad[0].ciphertext.truncate(10);
    let (status, reply) = post(
        &s,
        &http,
        &ms[0].token,
        &path("secagg/shares"),
        &ShareUpload { shares: bad },
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(error_message(&reply).contains("bytes"), "{reply}");
    let (status, reply) = post(
        &s,
        &http,
        &ms[0].token,
        &path("secagg/shares"),
        &ShareUpload {
            shares: shares[..1].to_vec(),
        },
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(error_message(&reply).contains("missing shares"), "{reply}");
    let (status, _) = post(
        &s,
        &http,
        &ms[0].token,
        &path("secagg/shares"),
        &ShareUpload {
            shares: shares.clone(),
        },
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    share(&s, &http, &g, &mut ms, &[1, 2], 1, &mut rng).await;
    // Masked vectors of the wrong length or out of range.
    wait_stage(&s, &http, &g, &ms[0], 1, "masked").await;
    let len = big_layout().num_params() + 1;
    let meta = MaskedMeta {
        model_id: format!("group-{}", g.id),
        round: 1,
        metrics: BTreeMap::new(),
    };
    for (vector, modulus, what) in [
        (vec![0u64; len - 1], 1u64 << 32, "entries"),
        (vec![0u64; len], 1u64 << 16, "masked vector"),
    ] {
        let body = encode_masked(&vector, modulus, &meta);
        let r = http
            .post(s.url(&path("update")))
            .bearer_auth(&ms[0].token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let reply: Value = r.json().await.unwrap();
        assert!(error_message(&reply).contains(what), "{what}: {reply}");
    }
}
