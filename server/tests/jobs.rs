//! Batch jobs over HTTP: submission (multipart and raw CSV), progress to completion, a result
//! byte-identical to the codeless CSV endpoint, bad data reported with row and column, isolation
//! between users, deletion, and recovery of jobs a restart interrupted.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::inference::{Deployed, Raw, User, churn, churn_csv};

/// A multipart body with `fields` (name, file name, content).
fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "b3o-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, file, content) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: text/csv\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn submit(d: &Deployed, user: &User, csv: &[u8], file: &str) -> Raw {
    let (content_type, body) = multipart(&[("model", None, b"churn"), ("file", Some(file), csv)]);
    d.server
        .as_user(user, Method::POST, "/api/jobs", &content_type, body)
        .await
}

/// Polls job `id` until it is finished.
async fn wait(d: &Deployed, user: &User, id: i64) -> Value {
    for _ in 0..600 {
        let r = d
            .server
            .as_user(user, Method::GET, &format!("/api/jobs/{id}"), "", vec![])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let j = r.json();
        match j["status"].as_str().unwrap() {
            "succeeded" | "failed" => return j,
            "queued" | "running" => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("status {other}"),
        }
    }
    panic!("job {id} did not finish");
}

#[tokio::test]
async fn a_job_runs_to_a_result_identical_to_the_csv_endpoint_and_only_its_owner_sees_it() {
    let d = churn().await;
    let owner = d.owner.clone();
    // Several chunks' worth of rows.
    let csv = churn_csv(0..9_000);
    let r = submit(&d, &owner, csv.as_bytes(), "customers.csv").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/jobs/{id}").as_str())
    );
    assert_eq!(r.json()["model"], "churn");
    assert_eq!(r.json()["version_id"], d.version_id);
    let job = wait(&d, &owner, id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        (job["rows_done"].as_i64(), job["rows_total"].as_i64()),
        (Some(9000), Some(9000))
    );
    assert_eq!(job["progress"], 1.0);
    assert_eq!(job["result_url"], format!("/api/jobs/{id}/result"));

    let result = d
        .server
        .as_user(
            &owner,
            Method::GET,
            &format!("/api/jobs/{id}/result"),
            "",
            vec![],
        )
        .await;
    assert_eq!(result.status, StatusCode::OK, "{}", result.text());
    assert!(
        result
            .header("content-type")
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(
        result.header("content-disposition"),
        Some("attachment; filename=\"customers-predictions.csv\"")
    );
    let direct = d
        .call(
            Method::POST,
            "/api/predict/churn/csv",
            "text/csv",
            csv.clone().into_bytes(),
        )
        .await;
    assert_eq!(direct.status, StatusCode::OK);
    assert!(
        result.body == direct.body,
        "the job's CSV differs from the endpoint's"
    );
    assert_eq!(job["result_bytes"].as_u64(), Some(result.body.len() as u64));
    // Browsers ask for compression: whatever the encoding, a Content-Length (if any) must be
    // that of the bytes sent, or the download is cut short.
    let auth = format!("Bearer {}", owner.token);
    let compressed = d
        .server
        .send(
            Method::GET,
            &format!("/api/jobs/{id}/result"),
            &[
                ("authorization", auth.as_str()),
                ("accept-encoding", "gzip"),
            ],
            vec![],
        )
        .await;
    assert_eq!(compressed.status, StatusCode::OK);
    assert_eq!(compressed.header("content-encoding"), Some("gzip"));
    assert!(
        compressed
            .header("content-length")
            .is_none_or(|n| n == compressed.body.len().to_string()),
        "Content-Length {:?} for {} bytes sent",
        compressed.header("content-length"),
        compressed.body.len()
    );

    // Another account sees none of it.
    let other = d.server.register("other@example.org").await;
    let list = d
        .server
        .as_user(&other, Method::GET, "/api/jobs", "", vec![])
        .await;
    assert_eq!(list.json()["jobs"], json!([]));
    for (method, path) in [
        (Method::GET, format!("/api/jobs/{id}")),
        (Method::GET, format!("/api/jobs/{id}/result")),
        (Method::DELETE, format!("/api/jobs/{id}")),
    ] {
        let r = d.server.as_user(&other, method, &path, "", vec![]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text());
    }
    let anonymous = d.server.anon(Method::GET, "/api/jobs", "", vec![]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    // The owner lists and deletes it; its files go with it.
    let list = d
        .server
        .as_user(&owner, Method::GET, "/api/jobs", "", vec![])
        .await;
    assert_eq!(list.json()["jobs"][0]["id"], id);
    let paths: (String, String) =
        sqlx::query_as("SELECT input_path, result_path FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&d.server.state.db)
            .await
            .unwrap();
    let r = d
        .server
        .as_user(
            &owner,
            Method::DELETE,
            &format!("/api/jobs/{id}"),
            "",
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = d
        .server
        .as_user(&owner, Method::GET, &format!("/api/jobs/{id}"), "", vec![])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for p in [paths.0, paths.1] {
        assert!(!d.server.state.data_dir.join(p).exists());
    }
}

#[tokio::test]
async fn raw_csv_bodies_and_bad_submissions() {
    let d = churn().await;
    let owner = d.owner.clone();
    let r = d
        .call(
            Method::POST,
            "/api/jobs?model=churn&filename=raw.csv",
            "text/csv",
            churn_csv(0..50).into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json()["input_name"], "raw.csv");
    let job = wait(&d, &owner, r.json()["id"].as_i64().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    // Refused at submission, nothing queued.
    let m = submit(&d, &owner, b"customer_id,age\nC1,3\n", "x.csv")
        .await
        .error();
    assert!(m.contains("`country`") && m.contains("`balance`"), "{m}");
    let m = d
        .call(
            Method::POST,
            "/api/jobs",
            "text/csv",
            b"a,b\n1,2\n".to_vec(),
        )
        .await
        .error();
    assert!(m.contains("model"), "{m}");
    let (ct, body) = multipart(&[("model", None, b"nope"), ("file", Some("a.csv"), b"a\n1\n")]);
    let r = d.call(Method::POST, "/api/jobs", &ct, body).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let (ct, body) = multipart(&[("model", None, b"churn")]);
    assert!(
        d.call(Method::POST, "/api/jobs", &ct, body)
            .await
            .error()
            .contains("`file`")
    );
    let (ct, body) = multipart(&[("file", Some("a.csv"), b"age\n1\n")]);
    assert!(
        d.call(Method::POST, "/api/jobs", &ct, body)
            .await
            .error()
            .contains("`model`")
    );
    let (ct, body) = multipart(&[("model", None, b"churn"), ("file", Some("a.csv"), b"")]);
    assert!(
        d.call(Method::POST, "/api/jobs", &ct, body)
            .await
            .error()
            .contains("empty")
    );
    let listed = d
        .server
        .as_user(&owner, Method::GET, "/api/jobs", "", vec![])
        .await;
    assert_eq!(listed.json()["jobs"].as_array().unwrap().len(), 1);

    // Bad data deep in the file: the job fails, naming the row and the column.
    let mut csv = churn_csv(0..6000);
    csv.push_str("C9,forty,FR,1.5,0\n");
    let r = submit(&d, &owner, csv.as_bytes(), "bad.csv").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    let job = wait(&d, &owner, id).await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("row 6001") && error.contains("`age`") && error.contains("forty"),
        "{error}"
    );
    let r = d
        .server
        .as_user(
            &owner,
            Method::GET,
            &format!("/api/jobs/{id}/result"),
            "",
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().contains("row 6001"));
    // No partial result is left behind.
    let dir = d
        .server
        .state
        .data_dir
        .join(format!("jobs/user-{}", owner.id));
    let partial = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".partial"));
    assert!(!partial);
}

#[tokio::test]
async fn jobs_interrupted_by_a_restart_are_resumed_or_failed_never_left_running() {
    let d = churn().await;
    let state = &d.server.state;
    let csv = churn_csv(0..300);
    let rel = format!("jobs/user-{}/restart.csv", d.owner.id);
    std::fs::create_dir_all(state.data_dir.join(format!("jobs/user-{}", d.owner.id))).unwrap();
    std::fs::write(state.data_dir.join(&rel), &csv).unwrap();
    // Orphan uploads (their request died before the job row was written): the blob store's
    // collector deletes one older than its grace period, not a fresh one (another replica's
    // upload may be about to commit its row).
    let orphan = format!("jobs/user-{}/orphan.csv", d.owner.id);
    std::fs::write(state.data_dir.join(&orphan), &csv).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(state.data_dir.join(&orphan))
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let fresh = format!("jobs/user-{}/fresh.csv", d.owner.id);
    std::fs::write(state.data_dir.join(&fresh), &csv).unwrap();
    let insert = |status: &'static str, attempts: i64| {
        let rel = rel.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO jobs (user_id, deployment, version_id, status, input_name, input_path,
                     input_bytes, rows_done, attempts, created_at)
                 VALUES ($1, 'churn', $2, $3, 'restart.csv', $4, 1, 120, $5, 0) RETURNING id",
            )
            .bind(d.owner.id)
            .bind(d.version_id)
            .bind(status)
            .bind(rel)
            .bind(attempts)
            .fetch_one(&state.db)
            .await
            .unwrap()
        }
    };
    let running = insert("running", 1).await;
    let queued = insert("queued", 0).await;
    let hopeless = insert("running", 3).await;
    // Jobs other replicas claimed (issue #15): one whose replica died (its lease ran out),
    // one still held by a live replica, which a replica on Postgres must leave alone.
    let lease = |id: i64, replica: &'static str, until: i64| {
        sqlx::query("UPDATE jobs SET claimed_by = $1, lease_until = $2 WHERE id = $3")
            .bind(replica)
            .bind(until)
            .bind(id)
            .execute(&state.db)
    };
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expired = insert("running", 1).await;
    lease(expired, "dead-replica", unix_now - 1).await.unwrap();
    let held = insert("running", 1).await;
    lease(held, "live-replica", unix_now + 600).await.unwrap();
    b3o_server::jobs::recover(state).await.unwrap();
    for id in [running, queued, expired] {
        let job = wait(&d, &d.owner, id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["rows_done"], 300);
        assert_eq!(job["attempts"], if id == queued { 1 } else { 2 }, "{job}");
    }
    if crate::test_db::on_postgres() {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let (status, by): (String, String) =
            sqlx::query_as("SELECT status, claimed_by FROM jobs WHERE id = $1")
                .bind(held)
                .fetch_one(&state.db)
                .await
                .unwrap();
        assert_eq!(
            (status.as_str(), by.as_str()),
            ("running", "live-replica"),
            "a job another live replica holds is not run twice"
        );
    } else {
        // One process per SQLite database: whatever ran before this start was interrupted.
        let job = wait(&d, &d.owner, held).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let job = wait(&d, &d.owner, hopeless).await;
    assert_eq!(job["status"], "failed");
    assert!(job["error"].as_str().unwrap().contains("stopped"), "{job}");
    let collected = b3o_server::blobs::collect_orphans(
        &state.blobs,
        &state.db,
        b3o_server::blobs::ORPHAN_GRACE,
    )
    .await
    .unwrap();
    assert_eq!(collected.deleted, 1, "{collected:?}");
    assert!(!state.data_dir.join(&orphan).exists());
    assert!(state.data_dir.join(&fresh).exists());
    assert!(state.data_dir.join(&rel).exists());
}
