//! Two `b3o serve` replicas on one Postgres database and one blob store (issue #15): what a
//! client does on one is seen by clients of the other. Runs in the suite's Postgres pass
//! (`B3O_TEST_POSTGRES`, `scripts/test.sh`); on SQLite, one process per database is the rule
//! and the test says it is skipped.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::federation::{
    Server, global, group_body, group_view, member_entry, setup, shifted, start, trainer_stream,
    update, upload, versions, wait_event, wait_round,
};

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

#[tokio::test(flavor = "multi_thread")]
async fn replicas_on_one_postgres_share_events_presence_rounds_and_deployment_changes() {
    if !crate::test_db::on_postgres() {
        eprintln!("skipped: replicas share a database on Postgres only (B3O_TEST_POSTGRES)");
        return;
    }
    let blobs = tempfile::tempdir().unwrap();
    let store = format!("file://{}", blobs.path().display());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start(dir_a.path(), &["--blob-store", &store]);
    crate::test_db::share_database(dir_a.path(), dir_b.path());
    let b = Server::start(dir_b.path(), &["--blob-store", &store]);
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
    // a private model answers anonymous callers 404; made public, it no longer does.
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
        StatusCode::NOT_FOUND,
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
            anonymous().await != StatusCode::NOT_FOUND
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
