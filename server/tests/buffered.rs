//! Asynchronous buffered rounds (FedBuff, issue #17) over real HTTP against the real binary:
//! a version every K updates, stale updates moved onto the buffer's model and discounted,
//! refused beyond the maximum staleness, counted once across a `kill -9`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::federation::{
    Server, error_message, global, group_body, round, setup, shifted, start, update, upload,
    versions, wait_round,
};

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((f64::from(*g) - w).abs() < 1e-5, "{what}[{i}]: {g} vs {w}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buffer_publishes_every_k_updates_and_folds_stale_ones_with_their_discount() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let s = Server::start(dir.path(), &[]);
    let mut body = group_body(1, 4, 600);
    body["async"] = json!({ "buffer_size": 2, "max_staleness": 1 });
    // A, B, C and D, with 10, 20, 30 and 5 rows.
    let g = setup(&s, &http, body, &[10, 20, 30, 5]).await;
    let r = http
        .get(s.url(&format!("/api/groups/{}", g.id)))
        .bearer_auth(&g.owner)
        .send()
        .await
        .unwrap();
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["async"]["buffer_size"], 2);
    assert_eq!(view["async"]["staleness_exponent"], 0.5);
    start(&s, &http, &g).await;
    let x0 = global(&s, &http, &g, &g.owner).await;
    let r1 = round(&s, &http, &g, 1).await;
    assert_eq!(
        r1["selected"], 4,
        "every ready member may add to a buffer: {r1}"
    );

    // A and B fill round 1's buffer: version 1 is their sample-weighted mean.
    let (st, _) = upload(
        &s,
        &http,
        &g,
        0,
        1,
        update(&g, 1, shifted(&x0, 1.0), 10, 0.5),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let r1 = round(&s, &http, &g, 1).await;
    assert_eq!(r1["state"], "collecting", "one update of two: {r1}");
    assert_eq!(r1["buffer"], json!({ "size": 2, "filled": 1, "stale": 0 }));
    let (st, _) = upload(
        &s,
        &http,
        &g,
        1,
        1,
        update(&g, 1, shifted(&x0, 2.0), 20, 0.5),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    wait_round(&s, &http, &g, 1, "closed").await;
    let x1: Vec<f64> = x0
        .iter()
        .map(|x| f64::from(*x) + (10.0 * 1.0 + 20.0 * 2.0) / 30.0)
        .collect();
    let got1 = global(&s, &http, &g, &g.owner).await;
    assert_close(&got1, &x1, "version 1");

    // C trained from round 1's model and finishes late: its update goes into round 2's
    // buffer, one version stale.
    let late = update(&g, 1, shifted(&x0, 3.0), 30, 0.5);
    let (st, accepted) = upload(&s, &http, &g, 2, 1, late.clone()).await;
    assert_eq!(st, StatusCode::OK, "{accepted}");
    assert_eq!(accepted["round"], 1);
    assert_eq!(accepted["buffered_in"], 2);
    assert_eq!(accepted["staleness"], 1);
    // A retry gets the same answer, and counts once.
    let (st, again) = upload(&s, &http, &g, 2, 1, late).await;
    assert_eq!((st, &again), (StatusCode::OK, &accepted));
    // C's place in this buffer is taken: a second update waits for the next version.
    let (st, body) = upload(&s, &http, &g, 2, 2, update(&g, 2, got1.clone(), 30, 0.5)).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    let r2 = round(&s, &http, &g, 2).await;
    assert_eq!(r2["buffer"], json!({ "size": 2, "filled": 1, "stale": 1 }));
    assert_eq!(r2["client_metrics"][0]["staleness"], 1, "{r2}");

    // The acknowledged stale update survives a kill -9 and is read back onto the new base.
    s.kill9();
    let s = Server::start(dir.path(), &[]);
    let (st, _) = upload(
        &s,
        &http,
        &g,
        0,
        2,
        update(&g, 2, shifted(&got1, 0.5), 10, 0.5),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let r2 = wait_round(&s, &http, &g, 2, "closed").await;
    assert_eq!(r2["reported"], 2);
    // FedBuff: C's change (+3 from version 0) lands on version 1 and weighs 30 / sqrt(2).
    let w = 30.0 / 2f64.sqrt();
    let x2: Vec<f64> = got1
        .iter()
        .map(|x| f64::from(*x) + (10.0 * 0.5 + w * 3.0) / (10.0 + w))
        .collect();
    let got2 = global(&s, &http, &g, &g.owner).await;
    assert_close(&got2, &x2, "version 2");
    let v2 = versions(&s, &http, &g).await;
    let v2 = v2.iter().find(|v| v["round"] == 2).unwrap();
    assert_eq!(v2["contributors"].as_array().unwrap().len(), 2, "{v2}");

    // D trained from round 1's model, now two versions behind: refused, naming the limit.
    let (st, body) = upload(
        &s,
        &http,
        &g,
        3,
        1,
        update(&g, 1, shifted(&x0, 9.0), 5, 0.5),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    let msg = error_message(&body);
    assert!(
        msg.contains("2 versions behind") && msg.contains("max_staleness"),
        "{msg}"
    );
    // From round 2's model it is one behind: taken.
    let (st, accepted) = upload(
        &s,
        &http,
        &g,
        3,
        2,
        update(&g, 2, shifted(&got1, 1.0), 5, 0.5),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{accepted}");
    assert_eq!(
        (
            accepted["buffered_in"].as_i64(),
            accepted["staleness"].as_i64()
        ),
        (Some(3), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn asynchronous_groups_refuse_what_they_cannot_combine_with() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let s = Server::start(dir.path(), &[]);
    let owner = crate::federation::account(&s, &http, "owner").await;
    let cases = [
        (
            json!({ "name": "krum" }),
            json!({ "buffer_size": 2 }),
            "mean-type",
        ),
        (
            json!({ "name": "fedavg" }),
            json!({ "buffer_size": 0 }),
            "buffer_size",
        ),
        (
            json!({ "name": "fedavg" }),
            json!({ "buffer_size": 2, "staleness_exponent": -1 }),
            "staleness_exponent",
        ),
        (
            json!({ "name": "fedavg" }),
            json!({ "buffer_size": 2, "size": 3 }),
            "size",
        ),
    ];
    for (strategy, config, wanted) in cases {
        let mut body = group_body(2, 3, 600);
        body["strategy"] = strategy;
        body["async"] = config.clone();
        let r = http
            .post(s.url("/api/groups"))
            .bearer_auth(&owner.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{config}");
        let body: Value = r.json().await.unwrap();
        assert!(error_message(&body).contains(wanted), "{config}: {body}");
    }
    let mut body = group_body(2, 3, 600);
    body["async"] = json!({ "buffer_size": 2 });
    body["secagg"] = json!({});
    let r = http
        .post(s.url("/api/groups"))
        .bearer_auth(&owner.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(
        error_message(&body).contains("secure aggregation"),
        "{body}"
    );
}

/// A tab closed after training but before its upload: the update kept in the member's store
/// is sent at the next visit and the round counts it; one whose round moved on is dropped
/// with the server's reason, and a lost connection keeps it for later.
#[tokio::test(flavor = "multi_thread")]
async fn a_kept_update_is_sent_at_the_next_visit_or_dropped_with_the_reason() {
    use b3o_wasm_client::fl::kept::{KeptOutcome, KeptStore, MemoryKept, kept_key, upload_kept};
    use b3o_wasm_client::fl::native::HttpTransport;
    use b3o_wasm_client::fl::{Api, Auth, Backoff};

    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let s = Server::start(dir.path(), &[]);
    let g = setup(&s, &http, group_body(2, 2, 600), &[10, 20, 30]).await;
    start(&s, &http, &g).await;
    let x0 = global(&s, &http, &g, &g.owner).await;
    let api = |i: usize, base: &str| {
        Api::new(
            HttpTransport::new(base).unwrap(),
            Auth::Bearer(g.members[i].1.clone()),
        )
        .with_backoff(Backoff {
            initial: std::time::Duration::from_millis(50),
            give_up_after: Some(std::time::Duration::from_millis(200)),
            ..Backoff::default()
        })
    };
    let store = MemoryKept::default();
    let key = kept_key(g.id, g.members[0].0);
    assert_eq!(
        upload_kept(&api(0, &s.base), &store, g.id, g.members[0].0)
            .await
            .unwrap(),
        KeptOutcome::Nothing
    );

    // Member 0 trained round 1 and kept its update; the server is unreachable meanwhile.
    let bytes = update(&g, 1, shifted(&x0, 1.0), 10, 0.5);
    store.save(&key, 1, &bytes).await.unwrap();
    let nowhere = format!("http://127.0.0.1:{}", crate::support::free_port());
    assert!(
        upload_kept(&api(0, &nowhere), &store, g.id, g.members[0].0)
            .await
            .is_err()
    );
    assert!(
        store.load(&key).await.unwrap().is_some(),
        "kept after a failed send"
    );

    // The next visit sends it: round 1 counts it.
    let outcome = upload_kept(&api(0, &s.base), &store, g.id, g.members[0].0)
        .await
        .unwrap();
    assert!(
        matches!(outcome, KeptOutcome::Uploaded { round: 1, .. }),
        "{outcome:?}"
    );
    assert!(
        store.load(&key).await.unwrap().is_none(),
        "forgotten once sent"
    );
    assert_eq!(round(&s, &http, &g, 1).await["reported"], 1);

    // Member 1 reports and the owner closes round 1 without member 2. A replay of member 0's
    // kept bytes gets the same answer; the update member 2 kept for round 1 is dropped with
    // the server's reason.
    let (st, _) = upload(
        &s,
        &http,
        &g,
        1,
        1,
        update(&g, 1, shifted(&x0, 2.0), 20, 0.5),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let r = http
        .post(s.url(&format!("/api/groups/{}/rounds/current/close", g.id)))
        .bearer_auth(&g.owner)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    wait_round(&s, &http, &g, 1, "closed").await;
    store.save(&key, 1, &bytes).await.unwrap();
    let again = upload_kept(&api(0, &s.base), &store, g.id, g.members[0].0)
        .await
        .unwrap();
    assert_eq!(again, outcome);
    let key1 = kept_key(g.id, g.members[2].0);
    store
        .save(&key1, 1, &update(&g, 1, shifted(&x0, 3.0), 30, 0.5))
        .await
        .unwrap();
    match upload_kept(&api(2, &s.base), &store, g.id, g.members[2].0)
        .await
        .unwrap()
    {
        KeptOutcome::Discarded { round: 1, reason } => {
            assert!(reason.contains("round 1"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(store.load(&key1).await.unwrap().is_none());
}
