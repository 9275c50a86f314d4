//! Compressed updates end to end against the real binary: a group chooses int8 or top-k, the
//! round's config and the group view say so, members upload deltas in that encoding, the
//! server aggregates the decoded weights (the sample-weighted mean of what was sent), and an
//! upload in another encoding is a 400 naming both. The norm bound still applies.

use std::collections::BTreeMap;

use b3o_models::compress::{self, ErrorFeedback, Rounding, UpdateEncoding};
use b3o_models::weights::{self, DecodeLimits, Dtype, UpdateMeta, WeightSet};
use reqwest::StatusCode;
use serde_json::Value;

use crate::federation::{
    Group, Server, error_message, global, group_body, layout, round, setup, start, upload,
    wait_round,
};

fn meta(g: &Group, samples: u64) -> UpdateMeta {
    UpdateMeta {
        model_id: format!("group-{}", g.id),
        round: 1,
        num_samples: samples,
        metrics: BTreeMap::from([("accuracy".to_string(), 0.5)]),
    }
}

/// Trained weights: the base moved by a different amount per entry (so that top-k and the
/// per-channel scales have something to choose).
fn trained(base: &[f32], seed: f32) -> Vec<f32> {
    base.iter()
        .enumerate()
        .map(|(i, b)| b + seed * ((i as f32 * 0.7 + seed).sin() * 0.05))
        .collect()
}

fn encoded(
    g: &Group,
    e: UpdateEncoding,
    base: &[f32],
    params: &[f32],
    samples: u64,
) -> (Vec<u8>, Vec<f32>) {
    let set = |v: &[f32]| WeightSet::from_flat(&layout(), v.to_vec()).unwrap();
    let bytes = compress::encode_update(
        e,
        &set(base),
        &set(params),
        &meta(g, samples),
        &mut ErrorFeedback::default(),
        Rounding::Nearest,
    )
    .unwrap();
    let limits = DecodeLimits {
        max_bytes: usize::MAX,
        max_metrics: usize::MAX,
    };
    let (decoded, _, _) =
        compress::decode_update(&bytes, &layout(), Some(base), Some(e), limits).unwrap();
    (bytes, decoded.flatten())
}

async fn group_view(s: &Server, http: &reqwest::Client, g: &Group) -> Value {
    let r = http
        .get(s.url(&format!("/api/groups/{}", g.id)))
        .bearer_auth(&g.owner)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// One round of a group in `encoding`: the other encodings are refused, then two members'
/// updates in the group's encoding are aggregated as the weighted mean of their decoded
/// weights.
async fn a_round_in(encoding: &str, wrong: UpdateEncoding, norm_bound: Option<f64>) {
    let e: UpdateEncoding = encoding.parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let http = reqwest::Client::new();
    let mut body = group_body(2, 1, 60);
    body["update_encoding"] = encoding.into();
    if let Some(bound) = norm_bound {
        body["max_update_norm"] = bound.into();
    }
    let g = setup(&s, &http, body, &[10, 30]).await;
    assert_eq!(group_view(&s, &http, &g).await["update_encoding"], encoding);
    start(&s, &http, &g).await;
    let r1 = round(&s, &http, &g, 1).await;
    assert_eq!(r1["config"]["update_encoding"], encoding, "{r1}");
    let base = global(&s, &http, &g, &g.members[0].1).await;

    // Full f32 weights, and another compressed encoding: 400 naming both.
    let plain = weights::encode(
        &WeightSet::from_flat(&layout(), trained(&base, 1.0)).unwrap(),
        &meta(&g, 10),
        Dtype::F32,
    )
    .unwrap();
    let (status, err) = upload(&s, &http, &g, 0, 1, plain).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(
        error_message(&err),
        format!("update is encoded as f32, but this group takes {encoding} updates")
    );
    let (other, _) = encoded(&g, wrong, &base, &trained(&base, 1.0), 10);
    let (status, err) = upload(&s, &http, &g, 0, 1, other).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let message = error_message(&err);
    assert!(
        message.contains(&wrong.to_string()) && message.contains(encoding),
        "{message}"
    );

    if let Some(bound) = norm_bound {
        // A delta beyond the group's norm bound is refused in this encoding too.
        let far: Vec<f32> = base.iter().map(|b| b + 10.0 * bound as f32).collect();
        let (bytes, _) = encoded(&g, e, &base, &far, 10);
        let (status, err) = upload(&s, &http, &g, 0, 1, bytes).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert!(error_message(&err).contains("L2 norm"), "{err}");
    }

    // The members' updates in the group's encoding.
    let (bytes0, sent0) = encoded(&g, e, &base, &trained(&base, 1.0), 10);
    let (bytes1, sent1) = encoded(&g, e, &base, &trained(&base, -2.0), 30);
    assert!(bytes0.len() < 4 * base.len() + 400, "{}", bytes0.len());
    let (status, body) = upload(&s, &http, &g, 0, 1, bytes0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = upload(&s, &http, &g, 1, 1, bytes1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_round(&s, &http, &g, 1, "closed").await;

    let after = global(&s, &http, &g, &g.members[0].1).await;
    let exact: Vec<f32> = trained(&base, 1.0)
        .iter()
        .zip(trained(&base, -2.0))
        .map(|(a, b)| (10.0 * a + 30.0 * b) / 40.0)
        .collect();
    let mut differs = false;
    for i in 0..base.len() {
        let want = (10.0 * sent0[i] + 30.0 * sent1[i]) / 40.0;
        assert!(
            (after[i] - want).abs() < 1e-5,
            "{encoding} entry {i}: aggregate {} vs decoded mean {want}",
            after[i]
        );
        differs |= (want - exact[i]).abs() > 1e-4;
    }
    // What was sent is not the exact weights: the server used the decoded ones.
    assert!(differs, "{encoding}: the compression changed nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_int8_group_aggregates_the_decoded_updates_and_refuses_other_encodings() {
    a_round_in(
        "int8",
        UpdateEncoding::Int8 { per_channel: false },
        Some(5.0),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topk_group_aggregates_the_decoded_updates_and_refuses_other_encodings() {
    a_round_in("topk:0.25", UpdateEncoding::TopK { fraction: 0.5 }, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_update_encoding_is_refused_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let http = reqwest::Client::new();
    let owner = crate::federation::account(&s, &http, "owner").await;
    for bad in ["zip", "topk:0", "topk:2"] {
        let mut body = group_body(2, 1, 60);
        body["update_encoding"] = bad.into();
        let r = http
            .post(s.url("/api/groups"))
            .bearer_auth(&owner.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let text = r.text().await.unwrap();
        assert!(text.contains("update_encoding"), "{bad}: {text}");
    }
}
