//! Promotion gated on federated evaluation (issue #17): members' evaluations of versions
//! (after each round, or later by version id), shown per member and weighted by rows; a
//! deployment's promotion gate refusing a version worse than the deployed one by more than its
//! margin, with the numbers; the owner's explicit override, recorded with who and why.
//!
//! A small custom-layout group trains real rounds in process (two members: the owner and
//! Mia), so every version is made by a round; the members then report evaluations chosen by
//! each test.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use b3o_models::weights::{self, Dtype, TensorSpec, UpdateMeta, WeightLayout, WeightSet};
use serde_json::{Value, json};

use crate::support::{Browser, Reply, TestApp, unique_email};

struct Fed {
    app: TestApp,
    owner: Browser,
    owner_token: String,
    member_token: String,
    outsider_token: String,
    group: i64,
    /// Version ids by round (0 first).
    versions: Vec<i64>,
}

fn layout() -> WeightLayout {
    WeightLayout(vec![TensorSpec::new("w", vec![2])])
}

impl Fed {
    /// A group of the owner and a member that trained `rounds` rounds.
    async fn new(rounds: u32) -> Fed {
        let app = TestApp::new().await;
        let owner = app
            .register_named(&unique_email("owner"), "Olga", "Owner Bank")
            .await;
        let owner_token = app.api_token(&owner).await;
        let member = app
            .register_named(&unique_email("member"), "Mia", "Member Bank")
            .await;
        let member_token = app.api_token(&member).await;
        let outsider = app
            .register_named(&unique_email("outsider"), "Otto", "Elsewhere")
            .await;
        let outsider_token = app.api_token(&outsider).await;
        let created = app
            .as_program(
                &owner_token,
                Method::POST,
                "/api/groups",
                Some(json!({
                    "name": "gated",
                    "model": { "kind": "custom", "layout": layout() },
                    "hyperparameters": { "rounds": rounds, "local_epochs": 1 },
                    "min_clients": 2,
                    "fraction_fit": 1.0,
                    "round_deadline_secs": 600,
                })),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
        let group = created.json["group_id"].as_i64().unwrap();
        let code = created.json["join_code"].as_str().unwrap().to_string();
        let joined = app
            .as_program(
                &member_token,
                Method::POST,
                "/api/groups/join",
                Some(json!({ "join_code": code, "name": "Mia's bank" })),
            )
            .await;
        assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.json);
        for token in [&owner_token, &member_token] {
            let r = app
                .as_program(
                    token,
                    Method::POST,
                    &format!("/api/groups/{group}/ready"),
                    Some(json!({ "num_samples": 10 })),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        }
        let r = app
            .as_program(
                &owner_token,
                Method::POST,
                &format!("/api/groups/{group}/start"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let mut fed = Fed {
            app,
            owner,
            owner_token,
            member_token,
            outsider_token,
            group,
            versions: Vec::new(),
        };
        for round in 1..=i64::from(rounds) {
            for token in [fed.owner_token.clone(), fed.member_token.clone()] {
                fed.upload(&token, round).await;
            }
            fed.wait_closed(round).await;
        }
        let list = fed
            .get(&fed.owner_token, &format!("/api/groups/{group}/versions"))
            .await;
        fed.versions = list.json["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_i64().unwrap())
            .collect();
        assert_eq!(fed.versions.len(), rounds as usize + 1, "{}", list.json);
        fed
    }

    async fn upload(&self, token: &str, round: i64) {
        let set = WeightSet::from_flat(&layout(), vec![round as f32, 1.0]).unwrap();
        let meta = UpdateMeta {
            model_id: format!("group-{}", self.group),
            round: round as u64,
            num_samples: 10,
            metrics: [("accuracy".to_string(), 0.5)].into(),
        };
        let body = weights::encode(&set, &meta, Dtype::F32).unwrap();
        let request = Request::post(format!("/api/groups/{}/rounds/{round}/update", self.group))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap();
        let r = self.app.send(request).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }

    async fn wait_closed(&self, round: i64) {
        for _ in 0..600 {
            let r = self
                .get(
                    &self.owner_token,
                    &format!("/api/groups/{}/rounds/{round}", self.group),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json);
            match r.json["state"].as_str() {
                Some("closed") => return,
                Some("failed") => panic!("round {round} failed: {}", r.json),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        panic!("round {round} did not close");
    }

    async fn get(&self, token: &str, path: &str) -> Reply {
        self.app.as_program(token, Method::GET, path, None).await
    }

    /// The owner's and the member's evaluations of round `round`'s model: (rows, metrics).
    async fn evaluate(&self, round: i64, owner: (u64, Value), member: (u64, Value)) {
        for (token, (n, metrics)) in [(&self.owner_token, owner), (&self.member_token, member)] {
            let r = self
                .app
                .as_program(
                    token,
                    Method::POST,
                    &format!("/api/groups/{}/rounds/{round}/evaluation", self.group),
                    Some(json!({ "num_samples": n, "metrics": metrics })),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        }
    }

    /// The owner (from the browser) points `name` at `version`.
    async fn promote(&self, name: &str, body: Value) -> Reply {
        self.app
            .as_browser(
                &self.owner,
                Method::PUT,
                &format!("/api/deployments/{name}"),
                Some(body),
                true,
            )
            .await
    }

    async fn set_gate(&self, token: &str, name: &str, body: Value) -> Reply {
        self.app
            .as_program(
                token,
                Method::PUT,
                &format!("/api/deployments/{name}/gate"),
                Some(body),
            )
            .await
    }

    /// The deployment's audit trail as its group's member reads it, newest first.
    async fn events(&self, name: &str) -> Vec<Value> {
        let r = self
            .get(
                &self.member_token,
                &format!("/api/deployments/{name}/events"),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        r.json["events"].as_array().unwrap().clone()
    }

    async fn deployment(&self, name: &str) -> Value {
        let r = self
            .get(&self.owner_token, &format!("/api/deployments/{name}"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        r.json
    }
}

fn close(got: &Value, want: f64) -> bool {
    got.as_f64().is_some_and(|g| (g - want).abs() < 1e-9)
}

/// The gate refuses a version whose members' accuracy is 0.1 below the deployed one's (margin
/// 0.02) with the numbers; the owner's override deploys it and the history says who, with
/// the numbers and the reason; a rollback (never gated) keeps the override in the history.
#[tokio::test(flavor = "multi_thread")]
async fn a_worse_version_is_refused_with_the_numbers_and_an_override_is_logged() {
    let f = Fed::new(2).await;
    let (v1, v2) = (f.versions[1], f.versions[2]);
    // Version 1: (10 * 0.8 + 30 * 0.9) / 40 = 0.875; version 2: (10 * 0.7 + 30 * 0.8) / 40.
    f.evaluate(
        1,
        (10, json!({ "accuracy": 0.8 })),
        (30, json!({ "accuracy": 0.9 })),
    )
    .await;
    f.evaluate(
        2,
        (10, json!({ "accuracy": 0.7 })),
        (30, json!({ "accuracy": 0.8 })),
    )
    .await;
    let r = f.promote("gated", json!({ "version_id": v1 })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let r = f
        .set_gate(
            &f.owner_token,
            "gated",
            json!({ "gate": { "metric": "accuracy", "max_drop": 0.02 } }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json["gate"],
        json!({ "metric": "accuracy", "max_drop": 0.02 })
    );
    let events = f.events("gated").await;
    assert_eq!(events[0]["action"], "gate");
    assert_eq!(events[0]["by"], "Olga");

    let refused = f.promote("gated", json!({ "version_id": v2 })).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.json);
    let error = &refused.json["error"];
    assert_eq!(error["code"], "promotion_gate_failed");
    let gate = &error["gate"];
    assert_eq!(gate["metric"], "accuracy");
    assert_eq!(gate["lower_is_better"], false);
    assert!(close(&gate["candidate"], 0.775), "{gate}");
    assert!(close(&gate["deployed"], 0.875), "{gate}");
    assert!(close(&gate["max_drop"], 0.02), "{gate}");
    assert!(close(&gate["drop"], 0.1), "{gate}");
    assert_eq!(gate["candidate_members"], 2);
    assert_eq!(gate["deployed_members"], 2);
    assert_eq!(
        (
            gate["candidate_version_id"].as_i64(),
            gate["deployed_version_id"].as_i64()
        ),
        (Some(v2), Some(v1))
    );
    let message = error["message"].as_str().unwrap();
    for number in ["0.775", "0.875", "0.02", "worse by 0.1"] {
        assert!(message.contains(number), "{number}: {message}");
    }
    assert_eq!(f.deployment("gated").await["version_id"], v1);

    let long = f
        .promote(
            "gated",
            json!({ "version_id": v2, "override_gate": true, "reason": "x".repeat(501) }),
        )
        .await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST, "{}", long.json);
    assert!(
        long.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reason")
    );

    let overridden = f
        .promote(
            "gated",
            json!({ "version_id": v2, "override_gate": true, "reason": "the new data is harder" }),
        )
        .await;
    assert_eq!(overridden.status, StatusCode::OK, "{}", overridden.json);
    assert_eq!(overridden.json["version_id"], v2);
    assert_eq!(overridden.json["history"], json!([v2, v1]));
    let events = f.events("gated").await;
    let event = &events[0];
    assert_eq!(event["action"], "override");
    assert_eq!(event["version_id"], v2);
    assert_eq!(event["by"], "Olga");
    let note = event["note"].as_str().unwrap();
    assert!(
        note.contains("0.775") && note.contains("0.875") && note.contains("0.02"),
        "{note}"
    );
    assert!(note.ends_with("Reason: the new data is harder"), "{note}");

    // Rolling back is not gated, and leaves the override in the history.
    let back = f
        .app
        .as_program(
            &f.owner_token,
            Method::POST,
            "/api/deployments/gated/rollback",
            None,
        )
        .await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.json);
    assert_eq!(back.json["version_id"], v1);
    assert_eq!(back.json["history"], json!([v1]));
    let events = f.events("gated").await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["rollback", "override", "gate", "promote"]);
    assert!(events[1]["note"].as_str().unwrap().contains("Reason"));
    // The audit trail is the group's: an outsider gets the 404 of a name not deployed.
    let outsider = f
        .get(&f.outsider_token, "/api/deployments/gated/events")
        .await;
    let missing = f
        .get(&f.outsider_token, "/api/deployments/no-such-model/events")
        .await;
    assert_eq!(outsider.status, StatusCode::NOT_FOUND, "{}", outsider.json);
    assert_eq!(outsider.json, missing.json);
}

/// A version within the margin is promoted, the history noting the numbers; the versions
/// show their members' evaluation per member and weighted by rows, beside the trainers' own.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_within_the_margin_is_promoted_and_versions_show_their_evaluation() {
    let f = Fed::new(2).await;
    let (v0, v1, v2) = (f.versions[0], f.versions[1], f.versions[2]);
    f.evaluate(
        1,
        (10, json!({ "accuracy": 0.8 })),
        (30, json!({ "accuracy": 0.9 })),
    )
    .await;
    // (10 * 0.79 + 30 * 0.88) / 40 = 0.8575: 0.0175 below 0.875.
    f.evaluate(
        2,
        (10, json!({ "accuracy": 0.79, "loss": 0.4 })),
        (30, json!({ "accuracy": 0.88 })),
    )
    .await;
    assert_eq!(
        f.promote("m", json!({ "version_id": v1 })).await.status,
        StatusCode::CREATED
    );
    let r = f
        .set_gate(
            &f.owner_token,
            "m",
            json!({ "gate": { "metric": "accuracy", "max_drop": 0.02 } }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = f.promote("m", json!({ "version_id": v2 })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["version_id"], v2);
    let events = f.events("m").await;
    let event = &events[0];
    assert_eq!(event["action"], "promote");
    let note = event["note"].as_str().unwrap();
    assert!(note.contains("passed") && note.contains("0.8575"), "{note}");

    let v = f.get(&f.member_token, &format!("/api/versions/{v2}")).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.json);
    let fed = &v.json["federated"];
    assert_eq!(fed["num_members"], 2);
    assert_eq!(fed["num_samples"], 40);
    assert!(close(&fed["weighted"]["accuracy"], 0.8575), "{fed}");
    // Only one member reported a loss: its own value, not diluted by the other's rows.
    assert!(close(&fed["weighted"]["loss"], 0.4), "{fed}");
    let members = fed["members"].as_array().unwrap();
    let names: Vec<&str> = members
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Mia's bank"), "{names:?}");
    assert_eq!(members[1]["num_samples"], 30);
    // The trainers' own metrics stay where they were.
    assert!(close(&v.json["metrics"]["accuracy"], 0.5), "{}", v.json);

    let list = f
        .get(&f.owner_token, &format!("/api/groups/{}/versions", f.group))
        .await;
    let versions = list.json["versions"].as_array().unwrap();
    assert_eq!(versions[0]["id"], v0);
    assert_eq!(versions[0]["federated"]["num_members"], 0);
    assert!(close(
        &versions[1]["federated"]["weighted"]["accuracy"],
        0.875
    ));
    assert_eq!(versions[2]["federated"], v.json["federated"]);
}

/// For a loss, lower is better: a version whose loss grew by more than the margin is refused,
/// one whose loss grew less is promoted.
#[tokio::test(flavor = "multi_thread")]
async fn a_loss_gate_refuses_a_loss_that_grew_beyond_the_margin() {
    let f = Fed::new(3).await;
    let (v1, v2, v3) = (f.versions[1], f.versions[2], f.versions[3]);
    f.evaluate(
        1,
        (10, json!({ "loss": 0.5 })),
        (10, json!({ "loss": 0.5 })),
    )
    .await;
    f.evaluate(
        2,
        (10, json!({ "loss": 0.65 })),
        (10, json!({ "loss": 0.65 })),
    )
    .await;
    f.evaluate(
        3,
        (10, json!({ "loss": 0.55 })),
        (10, json!({ "loss": 0.55 })),
    )
    .await;
    assert_eq!(
        f.promote("l", json!({ "version_id": v1 })).await.status,
        StatusCode::CREATED
    );
    let r = f
        .set_gate(
            &f.owner_token,
            "l",
            json!({ "gate": { "metric": "loss", "max_drop": 0.1 } }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let refused = f.promote("l", json!({ "version_id": v2 })).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.json);
    let gate = &refused.json["error"]["gate"];
    assert_eq!(gate["lower_is_better"], true);
    assert!(close(&gate["drop"], 0.15), "{gate}");
    assert!(
        refused.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lower is better"),
        "{}",
        refused.json
    );
    let passed = f.promote("l", json!({ "version_id": v3 })).await;
    assert_eq!(passed.status, StatusCode::OK, "{}", passed.json);
    assert_eq!(passed.json["version_id"], v3);
}

/// A version no member evaluated is refused (nothing shows it is not worse); when the
/// deployed version has no evaluation, an evaluated one passes, the history saying there was
/// nothing to compare. The evaluation here comes through the version route.
#[tokio::test(flavor = "multi_thread")]
async fn an_unevaluated_candidate_is_refused_and_an_unevaluated_deployed_version_lets_it_pass() {
    let f = Fed::new(2).await;
    let (v1, v2) = (f.versions[1], f.versions[2]);
    assert_eq!(
        f.promote("u", json!({ "version_id": v1 })).await.status,
        StatusCode::CREATED
    );
    let r = f
        .set_gate(
            &f.owner_token,
            "u",
            json!({ "gate": { "metric": "accuracy", "max_drop": 0 } }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let refused = f.promote("u", json!({ "version_id": v2 })).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.json);
    let gate = &refused.json["error"]["gate"];
    assert_eq!(gate["candidate"], Value::Null);
    assert_eq!(gate["candidate_members"], 0);
    assert!(
        refused.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no member has evaluated"),
        "{}",
        refused.json
    );
    let r = f
        .app
        .as_program(
            &f.member_token,
            Method::POST,
            &format!("/api/versions/{v2}/evaluation"),
            Some(json!({ "num_samples": 12, "metrics": { "accuracy": 0.6 } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let passed = f.promote("u", json!({ "version_id": v2 })).await;
    assert_eq!(passed.status, StatusCode::OK, "{}", passed.json);
    let events = f.events("u").await;
    let note = events[0]["note"].as_str().unwrap();
    assert!(note.contains("nothing to compare"), "{note}");
}

/// Only the deployment's owner sets its gate (a member 403, an outsider 404 like a name that
/// is not deployed, nobody 401); malformed gates are 400s naming the problem; `null` removes it.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_owner_sets_a_gate_and_bad_gates_are_refused() {
    let f = Fed::new(1).await;
    assert_eq!(
        f.promote("g", json!({ "version_id": f.versions[1] }))
            .await
            .status,
        StatusCode::CREATED
    );
    let good = json!({ "gate": { "metric": "accuracy", "max_drop": 0.02 } });
    let member = f.set_gate(&f.member_token, "g", good.clone()).await;
    assert_eq!(member.status, StatusCode::FORBIDDEN, "{}", member.json);
    let outsider = f.set_gate(&f.outsider_token, "g", good.clone()).await;
    assert_eq!(outsider.status, StatusCode::NOT_FOUND, "{}", outsider.json);
    let missing = f
        .set_gate(&f.outsider_token, "no-such-model", good.clone())
        .await;
    assert_eq!(outsider.json, missing.json);
    let anonymous = f
        .app
        .call(
            Method::PUT,
            "/api/deployments/g/gate",
            Some(good.clone()),
            &[],
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.deployment("g").await["gate"], Value::Null);

    for (body, names) in [
        (json!({}), "gate"),
        (
            json!({ "gate": { "metric": "", "max_drop": 0.1 } }),
            "metric",
        ),
        (
            json!({ "gate": { "metric": "m".repeat(65), "max_drop": 0.1 } }),
            "metric",
        ),
        (
            json!({ "gate": { "metric": "accuracy", "max_drop": -0.5 } }),
            "max_drop",
        ),
        (json!({ "gate": { "metric": "accuracy" } }), "max_drop"),
        (
            json!({ "gate": { "metric": "accuracy", "max_drop": "a lot" } }),
            "max_drop",
        ),
        (
            json!({ "gate": { "metric": "accuracy", "max_drop": 0.1, "min": 1 } }),
            "min",
        ),
    ] {
        let r = f.set_gate(&f.owner_token, "g", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.json);
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{body}: {message}");
    }
    let set = f.set_gate(&f.owner_token, "g", good).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.json);
    let cleared = f
        .set_gate(&f.owner_token, "g", json!({ "gate": null }))
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.json);
    assert_eq!(cleared.json["gate"], Value::Null);
    let events = f.events("g").await;
    assert_eq!(events[0]["action"], "gate");
    assert!(events[0]["note"].as_str().unwrap().contains("removed"));
}

/// A member evaluates a version by its id (recorded for the round that made it, a resend
/// replacing the first); an outsider gets the 404 of a missing version; version 0, made by
/// no round, is a 409; a bad report a 400.
#[tokio::test(flavor = "multi_thread")]
async fn members_evaluate_a_version_by_its_id() {
    let f = Fed::new(1).await;
    let (v0, v1) = (f.versions[0], f.versions[1]);
    let post = |token: &str, version: i64, body: Value| {
        let (token, path) = (
            token.to_string(),
            format!("/api/versions/{version}/evaluation"),
        );
        let app = &f.app;
        async move {
            app.as_program(&token, Method::POST, &path, Some(body))
                .await
        }
    };
    let report = json!({ "num_samples": 8, "metrics": { "accuracy": 0.7 } });
    let r = post(&f.member_token, v1, report.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["round"], 1);
    assert_eq!(r.json["accepted"], true);
    let r = post(
        &f.member_token,
        v1,
        json!({ "num_samples": 9, "metrics": { "accuracy": 0.75 } }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let v = f.get(&f.owner_token, &format!("/api/versions/{v1}")).await;
    let members = v.json["federated"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{}", v.json);
    assert_eq!(members[0]["num_samples"], 9);
    assert!(close(&members[0]["metrics"]["accuracy"], 0.75));
    // The same row as the round's own evaluation route reads.
    let round = f
        .get(&f.owner_token, &format!("/api/groups/{}/rounds/1", f.group))
        .await;
    assert!(
        close(&round.json["evaluation"]["aggregate"]["accuracy"], 0.75),
        "{}",
        round.json
    );

    let outsider = post(&f.outsider_token, v1, report.clone()).await;
    assert_eq!(outsider.status, StatusCode::NOT_FOUND, "{}", outsider.json);
    let missing = post(&f.outsider_token, 999_999, report.clone()).await;
    assert_eq!(outsider.json, missing.json);
    let initial = post(&f.member_token, v0, report.clone()).await;
    assert_eq!(initial.status, StatusCode::CONFLICT, "{}", initial.json);
    assert!(
        initial.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not produced by a federated round"),
        "{}",
        initial.json
    );
    for body in [
        json!({ "num_samples": 0, "metrics": { "accuracy": 0.7 } }),
        json!({ "num_samples": 3, "metrics": { "": 0.7 } }),
        json!({ "num_samples": 3, "metrics": { "accuracy": "high" } }),
    ] {
        let r = post(&f.member_token, v1, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.json);
    }
}
