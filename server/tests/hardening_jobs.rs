//! Hardening (issue #19): see SECURITY.md.
//!
//! Batch jobs, the registry, deployments, sharing and metrics under hostile or careless
//! callers: job uploads are authorised (and counted against the account's quotas) before a
//! byte of the file is read; form fields are bounded and never echoed unbounded; per-account
//! job quotas answer 429 and 413 naming the limit; `/metrics` never names a private
//! deployment; promoting onto a name the caller cannot see does not confirm it exists;
//! deployment names follow one rule; an origin matches only with its scheme.
//!
//! Each test builds its own app ([`App`]) so that it can set the limits and the TLS flag it
//! needs; models are put into the registry with `b3o_server::demo::publish`, as the demo does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::oneshot;
use tower::ServiceExt;

use b3o_server::accounts::{Accounts, Settings};
use b3o_server::demo::{self, Published};
use b3o_server::limits::Limits;
use b3o_server::registry::sharing::Sharing;
use b3o_server::state::AppState;

use crate::inference::{Raw, User, churn_csv, churn_model, publish_request};

const PASSWORD: &str = "correct horse battery";
const BOUNDARY: &str = "b3o-hardening-boundary-41c9";
const MULTIPART: &str = "multipart/form-data; boundary=b3o-hardening-boundary-41c9";

/// The app over a fresh database with chosen limits and TLS setting.
struct App {
    router: Router,
    state: AppState,
    _dir: tempfile::TempDir,
}

impl App {
    async fn new(limits: Limits, behind_tls: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::test_db::database_url(dir.path());
        let db = b3o_server::db::connect(&url).await.unwrap();
        let settings = Settings {
            behind_tls,
            ..Settings::default()
        };
        let state = AppState::new(
            db,
            std::sync::Arc::new(b3o_server::blobs::BlobStore::local(dir.path()).unwrap()),
            Arc::new(Accounts::new(settings)),
            Default::default(),
            Arc::new(limits),
        );
        let router = b3o_server::app(state.clone(), dir.path());
        App {
            router,
            state,
            _dir: dir,
        }
    }

    async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Body) -> Raw {
        let mut request = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap()
            .to_vec();
        Raw {
            status,
            headers,
            body,
        }
    }

    /// As `user` (API token), with `content_type`.
    async fn as_user(
        &self,
        user: &User,
        method: Method,
        path: &str,
        content_type: &str,
        body: Body,
    ) -> Raw {
        let auth = format!("Bearer {}", user.token);
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", content_type),
        ];
        self.send(method, path, &headers, body).await
    }

    async fn json_as(
        &self,
        user: &User,
        method: Method,
        path: &str,
        body: serde_json::Value,
    ) -> Raw {
        self.as_user(
            user,
            method,
            path,
            "application/json",
            Body::from(body.to_string()),
        )
        .await
    }

    async fn register(&self, email: &str) -> User {
        let r = self
            .send(
                Method::POST,
                "/api/auth/register",
                &[("content-type", "application/json")],
                Body::from(
                    json!({
                        "email": email,
                        "display_name": "Ada",
                        "organisation": "Analytical Engines Ltd",
                        "password": PASSWORD,
                    })
                    .to_string(),
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let cookie = r
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let csrf = r.json()["csrf_token"].as_str().unwrap().to_string();
        let id = r.json()["user"]["id"].as_i64().unwrap();
        let t = self
            .send(
                Method::POST,
                "/api/auth/tokens",
                &[
                    ("content-type", "application/json"),
                    ("cookie", &cookie),
                    ("x-csrf-token", &csrf),
                ],
                Body::from(json!({ "name": "tests" }).to_string()),
            )
            .await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.text());
        User {
            id,
            token: t.json()["token"].as_str().unwrap().to_string(),
        }
    }

    /// Deploys the churn model as `name`, in a new group owned by `owner`.
    async fn publish(&self, name: &str, owner: &User, public: bool, origins: &[&str]) -> Published {
        let (template, spec) = churn_model();
        let weights = spec.init_weights(11);
        let sharing = Sharing {
            public,
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            embed_anywhere: false,
        };
        let p = publish_request(name, Some(owner.id), template, spec, weights, sharing);
        demo::publish(&self.state, p).await.unwrap()
    }

    /// The files stored for `user`'s jobs.
    fn job_files(&self, user: &User) -> Vec<String> {
        let dir = self.state.data_dir.join(format!("jobs/user-{}", user.id));
        match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// A job row for `user`, straight into the database (no runner picks it up).
    async fn insert_job(&self, user: &User, version_id: i64, status: &str, bytes: (i64, i64)) {
        sqlx::query(
            "INSERT INTO jobs (user_id, deployment, version_id, status, input_name, input_path,
                 input_bytes, result_bytes, created_at)
             VALUES ($1, 'churn', $2, $3, 'x.csv', 'jobs/none.csv', $4, $5, 0)",
        )
        .bind(user.id)
        .bind(version_id)
        .bind(status)
        .bind(bytes.0)
        .bind(bytes.1)
        .execute(&self.state.db)
        .await
        .unwrap();
    }
}

/// The start of an answer, for failure messages (some answers under test echo megabytes).
fn short(r: &Raw) -> String {
    r.text().chars().take(300).collect()
}

fn part_head(name: &str, file: Option<&str>) -> String {
    match file {
        Some(f) => format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: text/csv\r\n\r\n"
        ),
        None => format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
    }
}

/// A whole multipart body with `fields` (name, file name, content), in that order.
fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> Body {
    let mut body = Vec::new();
    for (name, file, content) in fields {
        body.extend_from_slice(part_head(name, *file).as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    Body::from(body)
}

/// A body sent as `chunks`, recording how many of them the server pulled.
fn counted_body(chunks: Vec<Vec<u8>>) -> (Body, Arc<AtomicUsize>) {
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let stream = futures_util::stream::iter(chunks).map(move |chunk| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::io::Error>(Bytes::from(chunk))
    });
    (Body::from_stream(stream), pulled)
}

/// A body whose `first` chunk is there at once and whose `rest` comes only when the returned
/// sender fires or is dropped: a server that waits for `rest` before answering never answers.
fn gated_body(first: Vec<u8>, rest: Vec<u8>) -> (Body, oneshot::Sender<()>, Arc<AtomicBool>) {
    let (gate, opened) = oneshot::channel::<()>();
    let delivered = Arc::new(AtomicBool::new(false));
    let flag = delivered.clone();
    let later = futures_util::stream::once(async move {
        let _ = opened.await;
        flag.store(true, Ordering::SeqCst);
        Ok::<_, std::io::Error>(Bytes::from(rest))
    });
    let stream =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(first)) })
            .chain(later);
    (Body::from_stream(stream), gate, delivered)
}

/// Regression (issue #19, item 5): a job upload naming a model the caller may not use was
/// streamed to disk in full before the caller was authorised. Now the model is authorised as
/// soon as it is known (the query, or the form's `model` field, which must come first), and
/// the file is never read: the server answers while the file part has not even arrived.
#[tokio::test]
async fn job_uploads_are_authorised_before_the_file_is_read() {
    let app = App::new(Limits::default(), false).await;
    let owner = app.register("owner@example.org").await;
    let stranger = app.register("stranger@example.org").await;
    app.publish("churn", &owner, false, &[]).await;
    let csv = churn_csv(0..200).into_bytes();

    // Multipart: the `model` part arrives first; the file part is held back. The server must
    // answer without it (a server that waits for it is stopped after a minute and fails).
    let mut head = part_head("model", None).into_bytes();
    head.extend_from_slice(format!("churn\r\n--{BOUNDARY}\r\n").as_bytes());
    let mut file =
        b"Content-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\n".to_vec();
    file.extend_from_slice(&csv);
    file.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let (body, gate, delivered) = gated_body(head, file);
    let call = app.as_user(&stranger, Method::POST, "/api/jobs", MULTIPART, body);
    let r = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the server waited for the file before authorising the caller");
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert!(!delivered.load(Ordering::SeqCst));
    drop(gate);

    // A raw CSV body with ?model=: not a chunk of it is read.
    let (body, pulled) = counted_body(vec![csv.clone(), csv.clone()]);
    let r = app
        .as_user(
            &stranger,
            Method::POST,
            "/api/jobs?model=churn",
            "text/csv",
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        0,
        "the CSV was read before authorisation"
    );
    assert!(
        app.job_files(&stranger).is_empty(),
        "{:?}",
        app.job_files(&stranger)
    );

    // The owner's identical uploads still work (the web app sends `model`, then `file`).
    let body = multipart(&[("model", None, b"churn"), ("file", Some("a.csv"), &csv)]);
    let r = app
        .as_user(&owner, Method::POST, "/api/jobs", MULTIPART, body)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
}

/// Regression (issue #19, item 5): a form whose file precedes its `model` field could only be
/// stored before anyone knew which model it was for. It is refused with a 400 that says to
/// send `model` first, and nothing is stored.
#[tokio::test]
async fn a_file_part_before_the_model_field_is_refused_with_a_clear_400() {
    let app = App::new(Limits::default(), false).await;
    let owner = app.register("owner@example.org").await;
    app.publish("churn", &owner, false, &[]).await;
    let csv = churn_csv(0..20).into_bytes();
    let body = multipart(&[("file", Some("a.csv"), &csv), ("model", None, b"churn")]);
    let r = app
        .as_user(&owner, Method::POST, "/api/jobs", MULTIPART, body)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let m = r.error();
    assert!(m.contains("`model`") && m.contains("before"), "{m}");
    assert!(app.job_files(&owner).is_empty());
    // With the model in the query, the order of the form does not matter.
    let body = multipart(&[("file", Some("a.csv"), &csv)]);
    let r = app
        .as_user(
            &owner,
            Method::POST,
            "/api/jobs?model=churn",
            MULTIPART,
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
}

/// Regression (issue #19, item 5): the multipart `model` field was read whole, whatever its
/// size, and echoed in the 404 body. Every non-file field is bounded (400 naming the bound),
/// and names echoed in errors are cut short and escaped.
#[tokio::test]
async fn form_fields_are_bounded_and_never_echoed_unbounded() {
    let app = App::new(Limits::default(), false).await;
    let owner = app.register("owner@example.org").await;
    app.publish("churn", &owner, false, &[]).await;
    let huge = "x".repeat(1 << 20);
    let body = multipart(&[
        ("model", None, huge.as_bytes()),
        ("file", Some("a.csv"), b"a\n1\n"),
    ]);
    let r = app
        .as_user(&owner, Method::POST, "/api/jobs", MULTIPART, body)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", short(&r));
    assert!(r.error().contains("256 bytes"), "{}", short(&r));
    assert!(r.body.len() < 1024, "{} bytes of answer", r.body.len());

    // The same bound for the query's model name.
    let long = "y".repeat(300);
    let r = app
        .as_user(
            &owner,
            Method::POST,
            &format!("/api/jobs?model={long}"),
            "text/csv",
            Body::from("a\n1\n"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", short(&r));
    assert!(!r.text().contains(&long));

    // A name within the bound but unknown: the 404 shows a short, escaped prefix of it.
    let odd = format!("\u{1b}[31m`{}\n{}", "z".repeat(120), "w".repeat(100));
    let body = multipart(&[
        ("model", None, odd.as_bytes()),
        ("file", Some("a.csv"), b"a\n1\n"),
    ]);
    let r = app
        .as_user(&owner, Method::POST, "/api/jobs", MULTIPART, body)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", short(&r));
    let m = r.error();
    assert!(!m.contains(&"z".repeat(120)), "{}", short(&r));
    assert!(
        !m.contains('\u{1b}') && !m.contains('\n'),
        "{:?}",
        short(&r)
    );
    assert!(m.chars().count() < 160, "{}", short(&r));

    // Unknown fields are refused without echoing a long name.
    let field = "f".repeat(2000);
    let body = multipart(&[("model", None, b"churn"), (&field, None, b"1")]);
    let r = app
        .as_user(&owner, Method::POST, "/api/jobs", MULTIPART, body)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", short(&r));
    assert!(!r.text().contains(&field), "{}", short(&r));
    assert!(app.job_files(&owner).is_empty());
}

/// Regression (issue #19, item 5, found while fixing it): the multipart parser buffers a part's
/// headers until their blank line, without bound, and job uploads have no body limit (they
/// stream to disk). What a form carries besides its file is bounded: a part header that never
/// ends is refused with a 400 after about a megabyte, not read to its end.
#[tokio::test]
async fn a_form_part_header_that_never_ends_is_refused_without_buffering_it() {
    let app = App::new(Limits::default(), false).await;
    let owner = app.register("owner@example.org").await;
    app.publish("churn", &owner, false, &[]).await;
    let mut head = part_head("model", None).into_bytes();
    head.extend_from_slice(format!("churn\r\n--{BOUNDARY}\r\nContent-Disposition: ").as_bytes());
    let mut chunks = vec![head];
    // 8 MiB of a header line that never ends, in 64 KiB chunks.
    chunks.extend(std::iter::repeat_n(vec![b'a'; 64 << 10], 128));
    let (body, pulled) = counted_body(chunks);
    let r = app
        .as_user(&owner, Method::POST, "/api/jobs", MULTIPART, body)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", short(&r));
    assert!(r.error().contains("besides its file"), "{}", short(&r));
    let pulled = pulled.load(Ordering::SeqCst);
    assert!(
        pulled <= 24,
        "{pulled} chunks of 64 KiB of a part header were read"
    );
    assert!(app.job_files(&owner).is_empty());
}

/// Regression (issue #19, item 5): any account could queue jobs without limit. Past
/// `max_active_jobs_per_account` queued or running jobs, a submission is a 429 naming the
/// limit, read before the upload; other accounts and administrators are not affected.
#[tokio::test]
async fn an_account_may_have_only_max_active_jobs_per_account_queued_or_running() {
    let limits = Limits {
        max_active_jobs_per_account: 2,
        ..Limits::default()
    };
    let app = App::new(limits, false).await;
    let owner = app.register("owner@example.org").await;
    let published = app.publish("churn", &owner, true, &[]).await;
    let other = app.register("other@example.org").await;
    app.insert_job(&owner, published.version_id, "queued", (10, 0))
        .await;
    app.insert_job(&owner, published.version_id, "running", (10, 0))
        .await;
    app.insert_job(&owner, published.version_id, "succeeded", (10, 10))
        .await;
    let csv = churn_csv(0..20).into_bytes();

    let (body, pulled) = counted_body(vec![csv.clone()]);
    let r = app
        .as_user(
            &owner,
            Method::POST,
            "/api/jobs?model=churn",
            "text/csv",
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let m = r.error();
    assert!(
        m.contains("at most 2") && m.contains("queued or running"),
        "{m}"
    );
    assert_eq!(pulled.load(Ordering::SeqCst), 0, "the upload was read");
    assert!(app.job_files(&owner).is_empty());

    // Someone else's jobs do not count against them.
    let r = app
        .as_user(
            &other,
            Method::POST,
            "/api/jobs?model=churn",
            "text/csv",
            Body::from(csv.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());

    // Administrators are exempt (they run the server; the upload size limit still holds).
    sqlx::query("UPDATE users SET role = 'admin' WHERE id = $1")
        .bind(owner.id)
        .execute(&app.state.db)
        .await
        .unwrap();
    let r = app
        .as_user(
            &owner,
            Method::POST,
            "/api/jobs?model=churn",
            "text/csv",
            Body::from(csv),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
}

/// Regression (issue #19, item 5): job inputs and results could fill the disk. An account's
/// stored inputs and results are capped by `max_job_storage_mb_per_account`: an account
/// already at its cap is refused before the upload is read, and an upload that would pass it
/// is cut off while it streams (not read to the end), both 413 naming the limit.
#[tokio::test]
async fn job_storage_per_account_is_capped_while_the_upload_streams() {
    let limits = Limits {
        max_job_storage_mb_per_account: 1,
        ..Limits::default()
    };
    let app = App::new(limits, false).await;
    let owner = app.register("owner@example.org").await;
    let published = app.publish("churn", &owner, true, &[]).await;

    // 8 MiB of valid CSV in 64 KiB chunks, against a 1 MiB quota.
    let row = b"C01000,40,FR,12.5,0\n";
    let chunk: Vec<u8> = row.iter().copied().cycle().take(row.len() * 3276).collect();
    let mut chunks = vec![b"customer_id,age,country,balance,exited\n".to_vec()];
    chunks.extend(std::iter::repeat_n(chunk, 128));
    let (body, pulled) = counted_body(chunks);
    let r = app
        .as_user(
            &owner,
            Method::POST,
            "/api/jobs?model=churn",
            "text/csv",
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert!(r.error().contains("1 MiB"), "{}", r.error());
    let pulled = pulled.load(Ordering::SeqCst);
    assert!(
        pulled <= 20,
        "{pulled} chunks of 64 KiB read against a 1 MiB quota"
    );
    assert!(
        app.job_files(&owner).is_empty(),
        "{:?}",
        app.job_files(&owner)
    );

    // Stored inputs and results count: at the cap, nothing more is read.
    app.insert_job(
        &owner,
        published.version_id,
        "succeeded",
        (600_000, 500_000),
    )
    .await;
    let (body, pulled) = counted_body(vec![churn_csv(0..5).into_bytes()]);
    let r = app
        .as_user(
            &owner,
            Method::POST,
            "/api/jobs?model=churn",
            "text/csv",
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert!(r.error().contains("1 MiB"), "{}", r.error());
    assert_eq!(pulled.load(Ordering::SeqCst), 0);
}

/// Regression (issue #19, item 8): `/metrics` is public and its labels named every
/// deployment, private ones included. Private deployments are counted under the neutral
/// label `private`; public ones keep their names.
#[tokio::test]
async fn public_metrics_never_name_private_deployments() {
    let app = App::new(Limits::default(), false).await;
    let owner = app.register("owner@example.org").await;
    app.publish("ledger-hidden-7f3a", &owner, false, &[]).await;
    app.publish("ledger-open-7f3a", &owner, true, &[]).await;
    let csv = churn_csv(0..3);
    for name in ["ledger-hidden-7f3a", "ledger-open-7f3a"] {
        let r = app
            .as_user(
                &owner,
                Method::POST,
                &format!("/api/predict/{name}/csv"),
                "text/csv",
                Body::from(csv.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.text());
    }
    let metrics = app.send(Method::GET, "/metrics", &[], Body::empty()).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text();
    assert!(
        text.contains("model=\"ledger-open-7f3a\""),
        "public models are measured by name"
    );
    assert!(
        !text.contains("ledger-hidden-7f3a"),
        "a private deployment's name is in the public metrics"
    );
    assert!(
        text.contains("model=\"private\""),
        "private models are not counted"
    );
}

/// Regression (issue #19, item 8): promoting onto a name held by a group the caller cannot
/// see answered 409 "serves a model of another group", confirming a private deployment. The
/// answer is now the one any unavailable name gets (a reserved name here), and the
/// deployment is untouched.
#[tokio::test]
async fn promoting_onto_a_private_name_does_not_confirm_that_it_exists() {
    let app = App::new(Limits::default(), false).await;
    let alice = app.register("alice@example.org").await;
    let bob = app.register("bob@example.org").await;
    let secret = app.publish("quarterly-secret", &alice, false, &[]).await;
    let mine = app.publish("bob-model", &bob, false, &[]).await;
    let body = json!({ "version_id": mine.version_id });
    let taken = app
        .json_as(
            &bob,
            Method::PUT,
            "/api/deployments/quarterly-secret",
            body.clone(),
        )
        .await;
    let reserved = app
        .json_as(&bob, Method::PUT, "/api/deployments/private", body)
        .await;
    assert_eq!(
        taken.status,
        reserved.status,
        "{} / {}",
        taken.text(),
        reserved.text()
    );
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.text());
    assert_eq!(
        taken.text().replace("quarterly-secret", "{name}"),
        reserved.text().replace("private", "{name}"),
    );
    assert!(!taken.text().contains("group"), "{}", taken.text());
    let d = app
        .json_as(
            &alice,
            Method::GET,
            "/api/deployments/quarterly-secret",
            json!(null),
        )
        .await;
    assert_eq!(d.json()["version_id"], secret.version_id, "{}", d.text());
}

/// Regression (issue #19, item 8): deployment names like `..` were accepted. New names follow
/// one rule (lower case letters, digits, `-`, `_`, `.`, starting with a letter or digit, no
/// `..`, no final `.`, not reserved), refused with a 400 stating it; names already stored keep
/// working.
#[tokio::test]
async fn deployment_names_follow_one_rule_when_created() {
    let app = App::new(Limits::default(), false).await;
    let owner = app.register("owner@example.org").await;
    let legacy = app.publish("Legacy.Model", &owner, false, &[]).await;
    let body = json!({ "version_id": legacy.version_id });
    let long = "a".repeat(101);
    for bad in [
        "..", "%2E%2E", ".hidden", "a..b", "Upper", "-lead", "x%20y", "end.", &long,
    ] {
        let r = app
            .json_as(
                &owner,
                Method::PUT,
                &format!("/api/deployments/{bad}"),
                body.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
        let m = r.error();
        assert!(m.contains("a-z") && m.contains("100"), "{bad}: {m}");
    }
    let legacy_group: i64 = legacy.group_id;
    for good in [
        "churn",
        "digits",
        "churn-model",
        "v1.2_b",
        "7up",
        "cut-at-100-",
    ] {
        let r = app
            .json_as(
                &owner,
                Method::PUT,
                &format!("/api/deployments/{good}"),
                body.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{good}: {}", r.text());
        assert_eq!(r.json()["group_id"], legacy_group);
    }
    // A name stored before the rule still serves, promotes and rolls back.
    let r = app
        .json_as(
            &owner,
            Method::GET,
            "/api/deployments/Legacy.Model",
            json!(null),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = app
        .json_as(&owner, Method::PUT, "/api/deployments/Legacy.Model", body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = app
        .as_user(
            &owner,
            Method::POST,
            "/api/predict/Legacy.Model/csv",
            "text/csv",
            Body::from(churn_csv(0..3)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

/// A public model's rows call from `origin`, to a server reached as `models.example.org`.
async fn call_from(app: &App, name: &str, origin: &str) -> Raw {
    let rows = json!({ "rows": [{ "age": 30, "country": "FR", "balance": 1 }] }).to_string();
    app.send(
        Method::POST,
        &format!("/api/predict/{name}/rows"),
        &[
            ("origin", origin),
            ("host", "models.example.org"),
            ("content-type", "application/json"),
        ],
        Body::from(rows),
    )
    .await
}

/// Issue #19, item 8 ("the origin check ignores the scheme"), for the allow-list of a
/// deployment: `http://partner.example` is another origin than an allow-listed
/// `https://partner.example`, on calls and on preflights.
#[tokio::test]
async fn an_http_origin_does_not_match_an_allow_listed_https_origin() {
    let app = App::new(Limits::default(), false).await;
    let owner = app.register("owner@example.org").await;
    app.publish("partnered", &owner, true, &["https://partner.example"])
        .await;
    let ok = call_from(&app, "partnered", "https://partner.example").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://partner.example")
    );
    for origin in ["http://partner.example", "http://partner.example:443"] {
        let refused = call_from(&app, "partnered", origin).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{origin}: {}",
            refused.text()
        );
        // Readable by the refused page (`*`, never with credentials), so it can say why.
        assert_eq!(refused.header("access-control-allow-origin"), Some("*"));
        let pre = app
            .send(
                Method::OPTIONS,
                "/api/predict/partnered/rows",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                ],
                Body::empty(),
            )
            .await;
        assert_eq!(
            pre.status,
            StatusCode::FORBIDDEN,
            "{origin}: {}",
            pre.text()
        );
        assert_eq!(pre.header("access-control-allow-origin"), None);
    }
}

/// Regression (issue #19, item 8): the same-origin test of model calls compared the host
/// only, so behind TLS a plain-HTTP page on our host (which anyone on the network path can
/// forge) passed as our own. With `--behind-tls` our origin is `https://` + host.
#[tokio::test]
async fn behind_tls_our_host_over_plain_http_is_another_origin() {
    let app = App::new(Limits::default(), true).await;
    let owner = app.register("owner@example.org").await;
    app.publish("tls-model", &owner, true, &[]).await;
    let own = call_from(&app, "tls-model", "https://models.example.org").await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text());
    assert_eq!(own.header("access-control-allow-origin"), None);
    let plain = call_from(&app, "tls-model", "http://models.example.org").await;
    assert_eq!(plain.status, StatusCode::FORBIDDEN, "{}", plain.text());
    let m = plain.error();
    assert!(m.contains("http://models.example.org"), "{m}");
}
