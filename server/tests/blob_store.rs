//! Blobs in a real S3-compatible service: `s3s-fs` (crates.io), started here on a free port
//! with a temporary root. `scripts/test.sh` installs it and sets `B3O_S3S_FS` to its path;
//! without it these tests fail, saying how to get it. No S3 call is mocked.
//!
//! - The store itself: put / get / head / list / delete round trips, a multipart upload of a
//!   file larger than a part, a local copy, errors for missing blobs and an unreachable store.
//! - End to end through the HTTP API with `--blob-store s3://...` (credentials from the AWS
//!   environment variables): a federated round whose versions and updates land in the bucket
//!   and not in the data directory; the demo model's ONNX read from the bucket to predict; a
//!   batch job whose input and result are blobs; then the orphan collector on that server's
//!   database deleting an old unreferenced blob and keeping the referenced ones and a young
//!   orphan.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use b3o_server::blobs::{BlobError, BlobLocation, BlobStore, ORPHAN_GRACE, collect_orphans};
use futures_util::TryStreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::federation::{Server, group_body, setup, start, upload, wait_round};
use crate::support::{free_port, wait_listening};

pub(crate) const ACCESS_KEY: &str = "b3o-test-access";
pub(crate) const SECRET_KEY: &str = "b3o-test-secret-0123456789";
const BUCKET: &str = "b3o-blobs";

/// An `s3s-fs` process serving a temporary root; killed on drop.
pub(crate) struct S3 {
    child: Child,
    endpoint: String,
    root: tempfile::TempDir,
}

impl S3 {
    /// Starts `s3s-fs` (`$B3O_S3S_FS`) on a free port and creates the bucket.
    pub(crate) fn start() -> S3 {
        let bin = std::env::var_os("B3O_S3S_FS").unwrap_or_else(|| {
            panic!(
                "B3O_S3S_FS is not set: these tests need a real S3-compatible server. Run \
                 scripts/test.sh (it installs s3s-fs and sets it), or `cargo install s3s-fs \
                 --version 0.14.1 --features binary --locked --root ~/.cache/b3o/tools` and \
                 `export B3O_S3S_FS=~/.cache/b3o/tools/bin/s3s-fs`"
            )
        });
        let root = tempfile::tempdir().unwrap();
        // CreateBucket in s3s-fs makes this folder; made here directly.
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = free_port();
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", PathBuf::from(&bin).display()));
        let s3 = S3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
        };
        wait_listening(port, "s3s-fs");
        s3
    }

    /// `--blob-store` for this server, credentials left to the environment.
    pub(crate) fn url(&self) -> String {
        format!("s3://{BUCKET}?endpoint={}&region=us-east-1", self.endpoint)
    }

    /// A store client with the credentials in its URL (tests cannot set environment
    /// variables safely).
    fn store(&self, data_dir: &Path) -> BlobStore {
        let url = format!(
            "{}&access_key_id={ACCESS_KEY}&secret_access_key={SECRET_KEY}",
            self.url()
        );
        let location: BlobLocation = url.parse().unwrap();
        BlobStore::open(data_dir, Some(&location)).unwrap()
    }

    /// The file s3s-fs keeps for `key`.
    fn file(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn keys(store: &BlobStore, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(prefix)
        .map_ok(|b| b.key)
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_s3_store_round_trips_blobs_and_files() {
    let s3 = S3::start();
    let data = tempfile::tempdir().unwrap();
    let store = s3.store(data.path());
    store.check().await.unwrap();

    // A put is visible as soon as it returns, in the service's own files.
    store
        .put("groups/1/versions/round-0.safetensors", b"weights".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store
            .get("groups/1/versions/round-0.safetensors")
            .await
            .unwrap(),
        b"weights"
    );
    assert_eq!(
        std::fs::read(s3.file("groups/1/versions/round-0.safetensors")).unwrap(),
        b"weights"
    );
    let head = store
        .head("groups/1/versions/round-0.safetensors")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.size, 7);
    assert!(store.head("groups/1/none").await.unwrap().is_none());
    // Replaced in place.
    store
        .put(
            "groups/1/versions/round-0.safetensors",
            b"weights 2".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .get("groups/1/versions/round-0.safetensors")
            .await
            .unwrap(),
        b"weights 2"
    );

    // A file over one part (8 MiB) goes up as a multipart upload, streamed from disk.
    let big: Vec<u8> = (0..9 * (1 << 20) + 123).map(|i| (i % 251) as u8).collect();
    let (scratch, mut file) = store.scratch().await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut file, &big)
        .await
        .unwrap();
    drop(file);
    let scratch_path = scratch.path().to_path_buf();
    store
        .put_file("jobs/user-1/big.csv", scratch)
        .await
        .unwrap();
    assert!(!scratch_path.exists(), "the scratch file stayed behind");
    assert!(store.get("jobs/user-1/big.csv").await.unwrap() == big);
    let streamed: Vec<u8> = store
        .get_stream("jobs/user-1/big.csv")
        .await
        .unwrap()
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .unwrap();
    assert!(streamed == big);
    let copy = store.local_copy("jobs/user-1/big.csv").await.unwrap();
    assert!(copy.path().starts_with(data.path().join("tmp")));
    assert!(std::fs::read(copy.path()).unwrap() == big);
    let copy_path = copy.path().to_path_buf();
    drop(copy);
    assert!(!copy_path.exists(), "the local copy stayed behind");

    assert_eq!(
        keys(&store, "groups").await,
        ["groups/1/versions/round-0.safetensors"]
    );
    assert_eq!(keys(&store, "jobs/user-1").await, ["jobs/user-1/big.csv"]);
    assert_eq!(store.list_folders("groups").await.unwrap(), ["groups/1"]);

    store.delete("jobs/user-1/big.csv").await.unwrap();
    store.delete("jobs/user-1/big.csv").await.unwrap();
    assert!(matches!(
        store.get("jobs/user-1/big.csv").await,
        Err(BlobError::NotFound { .. })
    ));
    assert!(keys(&store, "jobs").await.is_empty());
    // Nothing of ours in the data directory but the empty scratch folder.
    assert!(
        files_under(data.path()).is_empty(),
        "{:?}",
        files_under(data.path())
    );

    // A store that does not answer: unreachable, in seconds, naming no secret.
    let port = free_port();
    let dead: BlobLocation = format!(
        "s3://{BUCKET}?endpoint=http://127.0.0.1:{port}&region=us-east-1\
         &access_key_id={ACCESS_KEY}&secret_access_key={SECRET_KEY}"
    )
    .parse()
    .unwrap();
    let dead = BlobStore::open(data.path(), Some(&dead)).unwrap();
    let started = Instant::now();
    let err = dead.get("groups/1/x").await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(SECRET_KEY), "{shown}");
    assert!(dead.check().await.unwrap_err().is_unreachable());

    // Wrong credentials: refused (not unreachable), and the secret is not repeated.
    let wrong: BlobLocation = format!(
        "{}&access_key_id={ACCESS_KEY}&secret_access_key=wrong-secret-key",
        s3.url()
    )
    .parse()
    .unwrap();
    let wrong = BlobStore::open(data.path(), Some(&wrong)).unwrap();
    let err = wrong.check().await.unwrap_err();
    assert!(!err.is_unreachable(), "{err}");
    assert!(!err.to_string().contains("wrong-secret-key"), "{err}");
}

/// Sets the modification time of every file s3s-fs keeps in the bucket to two hours ago.
fn age_bucket(s3: &S3) {
    let two_hours_ago = SystemTime::now() - 2 * ORPHAN_GRACE;
    let bucket = s3.root.path().join(BUCKET);
    for rel in files_under(&bucket) {
        std::fs::File::options()
            .write(true)
            .open(bucket.join(rel))
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
}

async fn ok_json(r: reqwest::Response) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_on_s3_keeps_every_blob_in_the_bucket() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let url = s3.url();
    let s = Server::start_with_env(
        dir.path(),
        &["--blob-store", &url, "--demo"],
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
    );
    let http = reqwest::Client::new();

    // A federated round: the initial version, both updates and the new version.
    let g = setup(&s, &http, group_body(2, 2, 60), &[10, 30]).await;
    start(&s, &http, &g).await;
    let base = crate::federation::global(&s, &http, &g, &g.members[0].1).await;
    for (m, (by, samples)) in [(1.0f32, 10u64), (2.0, 30)].into_iter().enumerate() {
        let params: Vec<f32> = base.iter().map(|x| x + by).collect();
        let body = update_bytes(g.id, params, samples);
        let (st, v) = upload(&s, &http, &g, m, 1, body).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    wait_round(&s, &http, &g, 1, "closed").await;
    let model = crate::federation::global(&s, &http, &g, &g.members[0].1).await;
    // (10 * 1 + 30 * 2) / 40 = 1.75 above the base.
    for (m, b) in model.iter().zip(&base) {
        assert!((m - b - 1.75).abs() < 1e-5, "{m} vs {b}");
    }
    let store = s3.store(dir.path());
    let group = format!("groups/{}", g.id);
    let stored = keys(&store, &group).await;
    let version_key = |round: i64| {
        let prefix = format!("{group}/versions/round-{round}-");
        stored
            .iter()
            .find(|k| k.starts_with(&prefix) && k.ends_with(".safetensors"))
            .cloned()
            .unwrap_or_else(|| panic!("no weights of round {round}: {stored:?}"))
    };
    let round1 = version_key(1);
    version_key(0);
    let updates: Vec<_> = stored
        .iter()
        .filter(|k| k.starts_with(&format!("{group}/rounds/1/updates/")))
        .collect();
    assert_eq!(updates.len(), 2, "{stored:?}");
    assert!(s3.file(&round1).exists());
    assert!(
        !dir.path().join("groups").exists(),
        "blobs in the data directory"
    );

    // The demo model's ONNX, read from the bucket, answers predictions.
    assert!(
        keys(&store, "groups")
            .await
            .iter()
            .any(|k| k.ends_with(".onnx")),
        "no ONNX export in the bucket"
    );
    let sample = http
        .get(s.url("/api/demo/churn-sample.csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let few: String = sample.lines().take(6).map(|l| format!("{l}\n")).collect();
    let predicted = http
        .post(s.url("/api/predict/churn/csv"))
        .header("content-type", "text/csv")
        .body(few.clone())
        .send()
        .await
        .unwrap();
    let predicted = ok_json(predicted).await;
    assert!(predicted.to_string().len() > 10, "{predicted}");

    // A batch job: its input and its result are blobs in the bucket.
    let owner = &g.owner;
    let r = http
        .post(s.url("/api/jobs?model=churn&filename=few.csv"))
        .bearer_auth(owner)
        .header("content-type", "text/csv")
        .body(few)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        r.text().await.unwrap()
    );
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_i64().unwrap();
    let started = Instant::now();
    let job = loop {
        let job = ok_json(
            http.get(s.url(&format!("/api/jobs/{id}")))
                .bearer_auth(owner)
                .send()
                .await
                .unwrap(),
        )
        .await;
        if job["status"] == "succeeded" || job["status"] == "failed" {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job["status"], "succeeded", "{job}");
    let result = http
        .get(s.url(&format!("/api/jobs/{id}/result")))
        .bearer_auth(owner)
        .send()
        .await
        .unwrap();
    assert_eq!(result.status(), StatusCode::OK);
    let result = result.text().await.unwrap();
    assert_eq!(result.lines().count(), 6, "{result}");
    let jobs = keys(&store, "jobs").await;
    assert_eq!(jobs.len(), 2, "an input and a result: {jobs:?}");
    assert!(
        jobs.iter()
            .any(|k| k.ends_with(&format!("/{id}-result-1.csv")))
    );
    assert!(
        !dir.path().join("jobs").exists(),
        "job files in the data directory"
    );
    let scratch = files_under(&dir.path().join("tmp"));
    assert!(scratch.is_empty(), "scratch files left: {scratch:?}");
    drop(s);

    // The orphan collector, on that server's database: an old blob no row references goes,
    // the referenced ones (as old) and a young orphan stay.
    let orphan = format!("{group}/rounds/1/updates/member-999-0123456789abcdef.safetensors");
    store
        .put(&orphan, b"never committed".to_vec())
        .await
        .unwrap();
    let job_orphan = "jobs/user-999/0123456789abcdef.csv";
    store.put(job_orphan, b"a,b\n".to_vec()).await.unwrap();
    age_bucket(&s3);
    let young = format!("{group}/versions/round-9.safetensors");
    store
        .put(&young, b"about to commit".to_vec())
        .await
        .unwrap();
    let before = keys(&store, "groups").await;
    let db = crate::test_db::open(dir.path()).await;
    let collected = collect_orphans(&store, &db, ORPHAN_GRACE).await.unwrap();
    assert_eq!(collected.deleted, 2, "{collected:?}");
    let after = keys(&store, "groups").await;
    let expected: Vec<String> = before.into_iter().filter(|k| *k != orphan).collect();
    assert_eq!(after, expected);
    assert!(after.contains(&young));
    assert_eq!(keys(&store, "jobs").await, jobs);
    // A second pass finds nothing more.
    let again = collect_orphans(&store, &db, ORPHAN_GRACE).await.unwrap();
    assert_eq!(again.deleted, 0);
}

/// A member's update of the test layout for round 1 of group `group`.
fn update_bytes(group: i64, params: Vec<f32>, samples: u64) -> Vec<u8> {
    use b3o_models::weights::{self, Dtype, UpdateMeta, WeightSet};
    let set = WeightSet::from_flat(&crate::federation::layout(), params).unwrap();
    let meta = UpdateMeta {
        model_id: format!("group-{group}"),
        round: 1,
        num_samples: samples,
        metrics: Default::default(),
    };
    weights::encode(&set, &meta, Dtype::F32).unwrap()
}
