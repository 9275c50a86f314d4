//! Hardening (issue #19, see SECURITY.md): the malformed-input corpus. Well over 100 distinct
//! bad inputs go to every body-taking route of a real `b3o serve --demo`: federated updates,
//! evaluation and failure reports, statistics, CSV, JSON rows, images, V2 tensors, batch jobs,
//! group creation and joining, deployments and accounts. Each must be answered with a 4xx
//! whose JSON message names the problem (one of the case's words) and does not echo a large
//! input back. Afterwards the server is still up, its peak RSS during the corpus stayed within
//! 300 MB of the idle process, and what was stored before (a group's weights, rounds and
//! versions, the demo models' ONNX, a finished job's result, every blob file) is byte for byte
//! what it was.
//!
//! The corpus is a table of [`Case`]s; one test runs them one after the other and lists every
//! failure at once.

use std::collections::{BTreeMap, HashSet};
use std::io::Cursor;
use std::time::{Duration, Instant};

use b3o_models::tabular::{InferOptions, infer_schema, read_csv};
use b3o_models::weights::{self, Dtype, UpdateMeta, WeightLayout, WeightSet};
use b3o_server::demo::churn_data;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Account, PASSWORD, Spawned, sign_up, unique_email};

/// Peak RSS above the idle process the corpus may cause (the issue's acceptance bound).
const MAX_PEAK_ABOVE_IDLE_KIB: u64 = 300 * 1024;
/// A 4xx answer is a short message, never the input echoed back.
const MAX_ANSWER_BYTES: usize = 4096;
/// The update size limit the server runs with here (`--max-update-bytes`), so an oversized
/// upload stays cheap while a 200,000-metric update still fits under it.
const MAX_UPDATE_BYTES: usize = 8 << 20;
/// `--max-rows-per-request` here: small, so "too many rows" costs little to send.
const MAX_ROWS: usize = 1000;
const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

/// One bad input and what its answer must be.
struct Case {
    /// What is wrong with the input, for the failure list.
    what: String,
    method: Method,
    route: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Accepted statuses (all 4xx).
    want_status: &'static [u16],
    /// The error message must contain one of these (case-insensitive).
    want_words: &'static [&'static str],
}

fn post(what: impl Into<String>, route: impl Into<String>) -> Case {
    request(Method::POST, what, route)
}

fn request(method: Method, what: impl Into<String>, route: impl Into<String>) -> Case {
    Case {
        what: what.into(),
        method,
        route: route.into(),
        headers: Vec::new(),
        body: Vec::new(),
        want_status: &[400],
        want_words: &[],
    }
}

impl Case {
    /// A JSON body (`application/json`), given as text so that invalid JSON can be sent too.
    fn json_text(self, text: impl Into<Vec<u8>>) -> Self {
        self.body_typed("application/json", text)
    }

    fn json(self, value: Value) -> Self {
        self.json_text(value.to_string())
    }

    fn body_typed(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push(("content-type", content_type.to_string()));
        self.body = body.into();
        self
    }

    /// A body without a `Content-Type`.
    fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn bearer(mut self, token: &str) -> Self {
        self.headers
            .push(("authorization", format!("Bearer {token}")));
        self
    }

    /// As a signed-in browser: session cookie and CSRF token.
    fn session(mut self, a: &Account) -> Self {
        self.headers.push(("cookie", a.browser.cookie.clone()));
        self.headers.push(("x-csrf-token", a.browser.csrf.clone()));
        self
    }

    fn want(mut self, status: &'static [u16], words: &'static [&'static str]) -> Self {
        self.want_status = status;
        self.want_words = words;
        self
    }

    /// Everything that makes the input what it is (for the distinctness check).
    fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.method.as_str());
        h.update([0]);
        h.update(&self.route);
        h.update([0]);
        for (k, v) in &self.headers {
            h.update(k);
            h.update([0]);
            h.update(v);
            h.update([0]);
        }
        h.update(&self.body);
        h.finalize().into()
    }

    /// Sends the case; `None` when the answer is what it must be, else why not.
    async fn check(self, http: &reqwest::Client, s: &Spawned) -> Option<String> {
        let label = format!(
            "{} — {} {} ({} bytes)",
            self.what,
            self.method,
            self.route,
            self.body.len()
        );
        let mut req = http.request(self.method.clone(), s.url(&self.route));
        for (k, v) in &self.headers {
            req = req.header(*k, v);
        }
        let answer = match req.body(self.body).send().await {
            Ok(r) => {
                let status = r.status();
                r.bytes().await.map(|b| (status, b))
            }
            Err(e) => Err(e),
        };
        let (status, bytes) = match answer {
            Ok(a) => a,
            Err(e) => {
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    why.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                return Some(format!("{label}: no answer (connection dropped?): {why}"));
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        let shown: String = text.chars().take(300).collect();
        if !self.want_status.contains(&status.as_u16()) || !status.is_client_error() {
            return Some(format!(
                "{label}: got {status}, want {:?}: {shown}",
                self.want_status
            ));
        }
        if bytes.len() > MAX_ANSWER_BYTES {
            return Some(format!(
                "{label}: {status} with a {}-byte answer (the input echoed?): {shown}…",
                bytes.len()
            ));
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let (Some(_code), Some(message)) = (
            body["error"]["code"].as_str(),
            body["error"]["message"].as_str(),
        ) else {
            return Some(format!("{label}: {status} without a JSON error: {shown}"));
        };
        let lower = message.to_lowercase();
        if !self
            .want_words
            .iter()
            .any(|w| lower.contains(&w.to_lowercase()))
        {
            return Some(format!(
                "{label}: {status} `{message}` names none of {:?}",
                self.want_words
            ));
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// What the corpus runs against
// ---------------------------------------------------------------------------------------------

/// The stored data the corpus must not change, and the accounts it calls as.
struct Ctx {
    /// Owns group `g` (two rounds in: round 1 closed, round 2 collecting with the owner's
    /// update in) and group `t` (tabular, enrolling).
    owner: Account,
    /// A member of `g` who reported in round 1 and not yet in round 2; owns the finished job.
    member: Account,
    /// Signed in, in no group.
    outsider: Account,
    g: i64,
    /// The version group `g`'s round 1 wrote.
    g_version: i64,
    t: i64,
    t_code: String,
    /// The demo deployments' version ids and the churn model's input width.
    churn_version: i64,
    digits_version: i64,
    churn_width: usize,
    job: i64,
}

fn layout() -> WeightLayout {
    WeightLayout(vec![
        weights::TensorSpec::new("dense.weight", vec![4, 3]),
        weights::TensorSpec::new("dense.bias", vec![3]),
    ])
}

fn update(g: i64, round: u64, fill: f32, samples: u64) -> Vec<u8> {
    let set = WeightSet::from_flat(&layout(), vec![fill; 15]).unwrap();
    let meta = UpdateMeta {
        model_id: format!("group-{g}"),
        round,
        num_samples: samples,
        metrics: BTreeMap::from([("accuracy".to_string(), 0.5)]),
    };
    weights::encode(&set, &meta, Dtype::F32).unwrap()
}

/// The churn sample the demo serves (header + `rows` rows), as CSV text.
fn churn_csv(rows: usize) -> String {
    churn_data::churn_csv(churn_data::SAMPLE_SEED, rows)
}

/// The churn model's feature columns (the generated file without identifiers and target).
const CHURN_FEATURES: [&str; 10] = [
    "CreditScore",
    "Geography",
    "Gender",
    "Age",
    "Tenure",
    "Balance",
    "NumOfProducts",
    "HasCrCard",
    "IsActiveMember",
    "EstimatedSalary",
];

/// One valid `rows` entry for the churn demo.
pub(crate) fn churn_row() -> Map<String, Value> {
    let csv = churn_csv(1);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let values: Vec<&str> = lines.next().unwrap().split(',').collect();
    header
        .iter()
        .zip(values)
        .filter(|(h, _)| CHURN_FEATURES.contains(h))
        .map(|(h, v)| {
            let value = v.parse::<f64>().map_or_else(|_| json!(v), |n| json!(n));
            (h.to_string(), value)
        })
        .collect()
}

async fn ok_json(r: reqwest::RequestBuilder, want: StatusCode) -> Value {
    let r = r.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, want, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn wait_round_closed(http: &reqwest::Client, s: &Spawned, g: i64, token: &str) {
    let start = Instant::now();
    loop {
        let r = ok_json(
            http.get(s.url(&format!("/api/groups/{g}/rounds/1")))
                .bearer_auth(token),
            StatusCode::OK,
        )
        .await;
        if r["state"] == "closed" {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "round 1: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn setup(http: &reqwest::Client, s: &Spawned) -> Ctx {
    let owner = sign_up(http, &s.base, &unique_email("corpus-owner"), "Owner Ltd").await;
    let member = sign_up(http, &s.base, &unique_email("corpus-member"), "Member Ltd").await;
    let outsider = sign_up(http, &s.base, &unique_email("corpus-outsider"), "Out Ltd").await;

    // Group g: custom layout, two members, round 1 closed, round 2 collecting.
    let created = ok_json(
        http.post(s.url("/api/groups"))
            .bearer_auth(&owner.token)
            .json(&json!({
                "name": "corpus",
                "model": { "kind": "custom", "layout": layout() },
                "hyperparameters": { "rounds": 3, "local_epochs": 1, "lr": 0.01 },
                "strategy": { "name": "fedavg" },
                "min_clients": 2,
                "round_deadline_secs": 3600,
            })),
        StatusCode::CREATED,
    )
    .await;
    let g = created["group_id"].as_i64().unwrap();
    ok_json(
        http.post(s.url("/api/groups/join"))
            .bearer_auth(&member.token)
            .json(&json!({ "join_code": created["join_code"] })),
        StatusCode::CREATED,
    )
    .await;
    for (token, n) in [(&owner.token, 10), (&member.token, 20)] {
        ok_json(
            http.post(s.url(&format!("/api/groups/{g}/ready")))
                .bearer_auth(token)
                .json(&json!({ "num_samples": n })),
            StatusCode::OK,
        )
        .await;
    }
    ok_json(
        http.post(s.url(&format!("/api/groups/{g}/start")))
            .bearer_auth(&owner.token),
        StatusCode::OK,
    )
    .await;
    for (token, fill, n) in [(&owner.token, 0.25, 10), (&member.token, 0.5, 20)] {
        ok_json(
            http.post(s.url(&format!("/api/groups/{g}/rounds/1/update")))
                .bearer_auth(token)
                .body(update(g, 1, fill, n)),
            StatusCode::OK,
        )
        .await;
    }
    wait_round_closed(http, s, g, &owner.token).await;
    ok_json(
        http.post(s.url(&format!("/api/groups/{g}/rounds/2/update")))
            .bearer_auth(&owner.token)
            .body(update(g, 2, 0.75, 10)),
        StatusCode::OK,
    )
    .await;
    ok_json(
        http.post(s.url(&format!("/api/groups/{g}/rounds/1/evaluation")))
            .bearer_auth(&owner.token)
            .json(&json!({ "num_samples": 5, "metrics": { "accuracy": 0.7 } })),
        StatusCode::OK,
    )
    .await;

    let versions = ok_json(
        http.get(s.url(&format!("/api/groups/{g}/versions")))
            .bearer_auth(&owner.token),
        StatusCode::OK,
    )
    .await;
    let g_version = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["round"] == 1)
        .expect("round 1 wrote a version")["id"]
        .as_i64()
        .unwrap();

    // Group t: tabular, enrolling (statistics and ready are still taken).
    let table = read_csv(churn_csv(200).as_bytes()).unwrap();
    let schema = infer_schema(
        &table,
        &InferOptions {
            target: Some("Exited".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let created = ok_json(
        http.post(s.url("/api/groups"))
            .bearer_auth(&owner.token)
            .json(&json!({
                "name": "corpus tabular",
                "model": { "kind": "tabular", "schema": schema, "hidden": [8] },
                "hyperparameters": { "rounds": 1 },
                "strategy": { "name": "fedavg" },
                "min_clients": 1,
            })),
        StatusCode::CREATED,
    )
    .await;
    let t = created["group_id"].as_i64().unwrap();
    let t_code = created["join_code"].as_str().unwrap().to_string();

    // The demo models, warmed up: every codeless route and V2 once.
    let version_of = |m: Value| m["versions"][0].as_str().unwrap().parse::<i64>().unwrap();
    let churn_meta = ok_json(http.get(s.url("/v2/models/churn")), StatusCode::OK).await;
    let digits_meta = ok_json(http.get(s.url("/v2/models/digits")), StatusCode::OK).await;
    let churn_width = churn_meta["inputs"][0]["shape"][1].as_u64().unwrap() as usize;
    ok_json(
        http.post(s.url("/api/predict/churn/rows"))
            .json(&json!({ "rows": [churn_row()] })),
        StatusCode::OK,
    )
    .await;
    let r = http
        .post(s.url("/api/predict/churn/csv"))
        .body(churn_csv(5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    ok_json(
        http.post(s.url("/api/predict/digits/image"))
            .body(png_gray(28, 28)),
        StatusCode::OK,
    )
    .await;
    ok_json(
        http.post(s.url("/v2/models/digits/infer"))
            .json(&v2(json!([1, 1, 28, 28]), json!(vec![0.5; 784]))),
        StatusCode::OK,
    )
    .await;

    // A finished batch job of the member's.
    let job = ok_json(
        http.post(s.url("/api/jobs?model=churn&filename=bank.csv"))
            .bearer_auth(&member.token)
            .body(churn_csv(20)),
        StatusCode::ACCEPTED,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let start = Instant::now();
    loop {
        let j = ok_json(
            http.get(s.url(&format!("/api/jobs/{job}")))
                .bearer_auth(&member.token),
            StatusCode::OK,
        )
        .await;
        if j["state"] == "succeeded" || j["status"] == "succeeded" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "job: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    Ctx {
        owner,
        member,
        outsider,
        g,
        t,
        t_code,
        churn_version: version_of(churn_meta),
        digits_version: version_of(digits_meta),
        churn_width,
        job,
        g_version,
    }
}

/// Everything stored that the corpus must leave alone, by name: API answers as bytes, and
/// every file of the data directory (but the database, whose pages move) by its hash.
async fn stored(http: &reqwest::Client, s: &Spawned, c: &Ctx) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let g = c.g;
    let mut reads: Vec<(String, Option<&str>)> = vec![
        (format!("/api/groups/{g}/weights"), Some(&c.owner.token)),
        (format!("/api/groups/{g}/rounds"), Some(&c.owner.token)),
        (format!("/api/groups/{g}/rounds/1"), Some(&c.owner.token)),
        (format!("/api/groups/{g}/rounds/2"), Some(&c.owner.token)),
        (format!("/api/groups/{g}/versions"), Some(&c.owner.token)),
        (format!("/api/groups/{}", c.t), Some(&c.owner.token)),
        ("/api/groups".into(), Some(&c.owner.token)),
        ("/api/groups".into(), Some(&c.outsider.token)),
        ("/api/jobs".into(), Some(&c.member.token)),
        (format!("/api/jobs/{}/result", c.job), Some(&c.member.token)),
        (
            format!("/api/deployments/churn/versions/{}/onnx", c.churn_version),
            None,
        ),
        (
            format!("/api/deployments/digits/versions/{}/onnx", c.digits_version),
            None,
        ),
        ("/api/deployments".into(), Some(&c.owner.token)),
    ];
    let versions = ok_json(
        http.get(s.url(&format!("/api/groups/{g}/versions")))
            .bearer_auth(&c.owner.token),
        StatusCode::OK,
    )
    .await;
    for v in versions["versions"].as_array().unwrap() {
        reads.push((
            format!("/api/versions/{}/weights", v["id"]),
            Some(&c.owner.token),
        ));
    }
    for (path, token) in reads {
        let mut r = http.get(s.url(&path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let who = if token.is_some() { "" } else { " (anonymous)" };
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        out.insert(
            format!("GET {path}{who} as {}", token.map_or("-", |t| &t[..12])),
            r.bytes().await.unwrap().to_vec(),
        );
    }
    let names: Vec<Value> = ok_json(
        http.get(s.url("/api/auth/tokens"))
            .header("cookie", &c.member.browser.cookie),
        StatusCode::OK,
    )
    .await
    .as_array()
    .map(|a| a.iter().map(|t| t["name"].clone()).collect())
    .unwrap_or_default();
    out.insert(
        "the member's token names".into(),
        json!(names).to_string().into_bytes(),
    );
    let me = ok_json(
        http.get(s.url("/api/me"))
            .header("cookie", &c.member.browser.cookie),
        StatusCode::OK,
    )
    .await;
    out.insert(
        "the member's profile".into(),
        me["user"].to_string().into_bytes(),
    );

    let root = s.data_path();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().display().to_string();
            if rel.contains(".sqlite3") {
                continue;
            }
            let hash = Sha256::digest(std::fs::read(&path).unwrap_or_default());
            out.insert(format!("file {rel}"), hash.to_vec());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

fn v2(shape: Value, data: Value) -> Value {
    json!({ "inputs": [{ "name": "input", "shape": shape, "datatype": "FP32", "data": data }] })
}

/// `depth` nested JSON arrays around `inner`.
fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

/// `depth` nested JSON objects `{"a": …}` around `inner`.
fn nested_objects(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// A PNG whose header declares `width`x`height` (bit depth 8 or 16, colour type 0 grey,
/// 6 RGBA) followed by one IDAT chunk holding an empty zlib stream, and an end: next to no
/// pixel data, but enough for a decoder to get as far as the size check.
fn png_header_only(width: u32, height: u32, depth: u8, colour: u8) -> Vec<u8> {
    let mut out = PNG_SIGNATURE.to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[depth, colour, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

fn encode(image: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A real greyscale PNG.
fn png_gray(width: u32, height: u32) -> Vec<u8> {
    let img = image::GrayImage::from_fn(width, height, |x, y| {
        image::Luma([((x * 7 + y * 3) % 256) as u8])
    });
    encode(
        image::DynamicImage::ImageLuma8(img),
        image::ImageFormat::Png,
    )
}

/// A real 4096x4096 16-bit RGBA PNG: ~128 MiB once decoded, small on the wire.
pub(crate) fn png_bomb() -> Vec<u8> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let side = 4096u32;
    let pixels = vec![0u8; side as usize * side as usize * 8];
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::NoFilter)
        .write_image(&pixels, side, side, image::ExtendedColorType::Rgba16)
        .unwrap();
    out
}

/// A real 16x16 JPEG whose frame header is patched to claim `width`x`height`.
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let img = image::GrayImage::from_fn(16, 16, |x, y| image::Luma([(x * 16 + y) as u8]));
    let mut bytes = encode(
        image::DynamicImage::ImageLuma8(img),
        image::ImageFormat::Jpeg,
    );
    let sof = bytes
        .windows(4)
        .position(|w| w == [0xFF, 0xC0, 0x00, 0x0B])
        .expect("a baseline JPEG has an SOF0 marker");
    // FF C0, length (2), precision (1), height (2), width (2).
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

/// A safetensors file: the 8-byte header length, `header` as JSON, then `data`.
fn safetensors(header: &Value, data: &[u8]) -> Vec<u8> {
    let text = header.to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Update metadata as the safetensors `__metadata__` section (strings only).
fn meta(model_id: &str, round: &str, samples: &str, metrics: &str) -> Value {
    json!({
        "format": weights::FORMAT_VERSION,
        "model_id": model_id,
        "round": round,
        "num_samples": samples,
        "metrics": metrics,
    })
}

/// A well-formed update for round 2 of `g` but with `tensors` (name -> (dtype, shape,
/// offsets)) and `data` as given.
fn update_with(g: i64, tensors: Value, data: &[u8]) -> Vec<u8> {
    update_meta(meta(&format!("group-{g}"), "2", "10", "{}"), tensors, data)
}

fn update_meta(meta: Value, tensors: Value, data: &[u8]) -> Vec<u8> {
    let mut header = tensors;
    header["__metadata__"] = meta;
    safetensors(&header, data)
}

/// The layout's two tensors as F32 at their usual offsets.
fn good_tensors() -> Value {
    json!({
        "dense.weight": { "dtype": "F32", "shape": [4, 3], "data_offsets": [0, 48] },
        "dense.bias": { "dtype": "F32", "shape": [3], "data_offsets": [48, 60] },
    })
}

/// 15 finite f32 values, with `value` at index `at`.
fn f32_data(at: usize, value: f32) -> Vec<u8> {
    (0..15)
        .flat_map(|i| if i == at { value } else { 0.1 }.to_le_bytes())
        .collect()
}

/// `n` metrics as the update metadata's JSON text.
fn metrics_json(n: usize) -> String {
    let m: BTreeMap<String, f64> = (0..n).map(|i| (format!("m{i}"), 0.5)).collect();
    serde_json::to_string(&m).unwrap()
}

fn metrics_map(n: usize) -> Value {
    serde_json::from_str(&metrics_json(n)).unwrap()
}

/// A multipart form field: name, file name, content.
type Field<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// A multipart body with `fields` and its content type.
fn multipart(fields: &[Field]) -> (String, Vec<u8>) {
    let boundary = "b3o-corpus-boundary-51c3";
    let mut body = Vec::new();
    for (name, file, content) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match file {
            Some(f) => format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: text/csv\r\n\r\n"
            ),
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The churn CSV with its header replaced by `header` (rows unchanged).
fn with_header(header: &str, rows: usize) -> String {
    let csv = churn_csv(rows);
    let body = csv.split_once('\n').unwrap().1;
    format!("{header}\n{body}")
}

/// The churn CSV with column `column` of the first data row set to `value`.
fn with_cell(column: &str, value: &str, rows: usize) -> String {
    let csv = churn_csv(rows);
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    let at = lines[0].split(',').position(|h| h == column).unwrap();
    let mut cells: Vec<String> = lines[1].split(',').map(str::to_string).collect();
    cells[at] = value.to_string();
    lines[1] = cells.join(",");
    lines.join("\n") + "\n"
}

/// `n` distinct column names `c0,c1,…`.
fn many_columns(n: usize) -> String {
    (0..n)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The churn row with `key` set to `value` (or removed when `None`).
fn row_with(key: &str, value: Option<Value>) -> Value {
    let mut row = churn_row();
    match value {
        Some(v) => row.insert(key.to_string(), v),
        None => row.remove(key),
    };
    Value::Object(row)
}

/// A group creation body; `edit` changes it.
fn group(edit: impl FnOnce(&mut Value)) -> Value {
    let mut body = json!({
        "name": "bad group",
        "model": { "kind": "custom", "layout": layout() },
        "hyperparameters": { "rounds": 1, "local_epochs": 1, "lr": 0.01 },
        "strategy": { "name": "fedavg" },
        "min_clients": 1,
    });
    edit(&mut body);
    body
}

fn custom_layout(tensors: Value) -> impl FnOnce(&mut Value) {
    move |b| b["model"] = json!({ "kind": "custom", "layout": tensors })
}

// ---------------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------------

fn corpus(c: &Ctx) -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(v2_cases(c));
    cases.extend(rows_cases());
    cases.extend(csv_cases());
    cases.extend(image_cases());
    cases.extend(update_cases(c));
    cases.extend(report_cases(c));
    cases.extend(job_cases(c));
    cases.extend(group_cases(c));
    cases.extend(account_cases(c));
    cases
}

const SHAPE: &[&str] = &["shape"];
const JSON_WORDS: &[&str] = &["json", "expected", "eof"];
/// Deep nesting is refused by a depth bound, or by a type error before any depth.
const NESTING: &[&str] = &["recursion", "nest", "depth", "deep", "invalid type"];
const TOO_LARGE: &[u16] = &[400, 413];

fn v2_cases(c: &Ctx) -> Vec<Case> {
    let digits = "/v2/models/digits/infer";
    let churn = "/v2/models/churn/infer";
    let versioned = format!("/v2/models/digits/versions/{}/infer", c.digits_version);
    let one = json!([0.5]);
    let row = || json!(vec![0.5; 784]);
    let w = c.churn_width;
    // A batch whose product with 784 wraps around 2^64 to exactly 784: (b - 1) * 784 is a
    // multiple of 2^64 when b - 1 = 2^60 (784 = 49 * 2^4).
    let wraps = (1u64 << 60) + 1;
    let wraps_more = (1u64 << 62) + 1;
    let mut sixteen = Vec::with_capacity(16 * MIB + 100);
    sixteen.extend_from_slice(
        br#"{"inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"FP32","data":["#,
    );
    while sixteen.len() < 16 * MIB {
        sixteen.extend_from_slice(b"0.5,");
    }
    sixteen.extend_from_slice(b"0.5]}]}");
    vec![
        post("batch 2^30 with one value", digits)
            .json(v2(json!([1u64 << 30, 1, 28, 28]), one.clone()))
            .want(&[400], &["shape", "values"]),
        post("batch 2^58 with one value", digits)
            .json(v2(json!([1u64 << 58, 1, 28, 28]), one.clone()))
            .want(&[400], &["shape", "values"]),
        post("batch whose product wraps around 2^64 to the data length", digits)
            .json(v2(json!([wraps, 1, 28, 28]), row()))
            .want(&[400], SHAPE),
        post("batch 2^62+1 wrapping to the data length", digits)
            .json(v2(json!([wraps_more, 1, 28, 28]), row()))
            .want(&[400], SHAPE),
        post("row dimension wrapping around 2^64", digits)
            .json(v2(json!([1, wraps, 28, 28]), row()))
            .want(&[400], SHAPE),
        post("batch 2^30 on a model version's route", versioned.clone())
            .json(v2(json!([1u64 << 30, 1, 28, 28]), one.clone()))
            .want(&[400], &["shape", "values"]),
        post("negative batch", digits)
            .json(v2(json!([-1, 1, 28, 28]), row()))
            .want(&[400], SHAPE),
        post("negative inner dimension", digits)
            .json(v2(json!([1, -1, 28, 28]), row()))
            .want(&[400], SHAPE),
        post("shape beyond i64", digits)
            .json_text(format!(
                r#"{{"inputs":[{{"name":"input","shape":[{},1,28,28],"datatype":"FP32","data":[0.5]}}]}}"#,
                "9".repeat(40)
            ))
            .want(&[400], &["shape", "i64", "integer", "range"]),
        post("fractional shape", digits)
            .json(v2(json!([1.5, 1, 28, 28]), row()))
            .want(&[400], &["shape", "integer", "float"]),
        post("shape as a string", digits)
            .json(v2(json!("1,1,28,28"), row()))
            .want(&[400], &["shape", "sequence", "array"]),
        post("shape of 100,000 dimensions", digits)
            .json(v2(json!(vec![1; 100_000]), row()))
            .want(&[400], &["shape", "dimension", "rank"]),
        post("three-dimensional shape", digits)
            .json(v2(json!([1, 28, 28]), row()))
            .want(&[400], SHAPE),
        post("28x27 rows", digits)
            .json(v2(json!([1, 1, 28, 27]), json!(vec![0.5; 756])))
            .want(&[400], SHAPE),
        post("one value short of the shape", digits)
            .json(v2(json!([1, 1, 28, 28]), json!(vec![0.5; 783])))
            .want(&[400], &["data", "values", "shape"]),
        post("one value more than the shape", digits)
            .json(v2(json!([1, 1, 28, 28]), json!(vec![0.5; 785])))
            .want(&[400], &["data", "values", "shape"]),
        post("strings in data", digits)
            .json(v2(json!([1, 1, 28, 28]), json!(vec!["a"; 784])))
            .want(&[400], &["data", "number", "string"]),
        post("booleans in data", digits)
            .json(v2(json!([1, 1, 28, 28]), json!(vec![true; 784])))
            .want(&[400], &["data", "number", "bool"]),
        post("null data", digits)
            .json(v2(json!([1, 1, 28, 28]), Value::Null))
            .want(&[400], &["data", "null", "number"]),
        post("data as an object", digits)
            .json(v2(json!([1, 1, 28, 28]), json!({ "a": 1 })))
            .want(&[400], &["data", "map", "number", "object"]),
        post("a number beyond f64 in data", digits)
            .json_text(r#"{"inputs":[{"name":"input","shape":[1,1],"datatype":"FP32","data":[1e999]}]}"#)
            .want(&[400], &["number", "range", "data"]),
        post("data nested 10,000 deep", digits)
            .json_text(format!(
                r#"{{"inputs":[{{"name":"input","shape":[1,1,28,28],"datatype":"FP32","data":{}}}]}}"#,
                nested(10_000, "0.5")
            ))
            .want(&[400], NESTING),
        post("inputs nested 10,000 deep", digits)
            .json_text(format!(r#"{{"inputs":{}}}"#, nested(10_000, "{}")))
            .want(&[400], NESTING),
        post("no inputs field", digits)
            .json(json!({ "id": "x" }))
            .want(&[400], &["inputs"]),
        post("empty inputs", digits)
            .json(json!({ "inputs": [] }))
            .want(&[400], &["input"]),
        post("input without shape", digits)
            .json(json!({ "inputs": [{ "name": "input", "datatype": "FP32", "data": [0.5] }] }))
            .want(&[400], SHAPE),
        post("input without data", digits)
            .json(json!({ "inputs": [{ "name": "input", "datatype": "FP32", "shape": [1, 784] }] }))
            .want(&[400], &["data"]),
        post("input without datatype", digits)
            .json(json!({ "inputs": [{ "name": "input", "shape": [1, 784], "data": vec![0.5; 784] }] }))
            .want(&[400], &["datatype"]),
        post("datatype INT64", digits)
            .json(json!({ "inputs": [{ "name": "input", "shape": [1, 784], "datatype": "INT64", "data": vec![1; 784] }] }))
            .want(&[400], &["datatype", "FP32"]),
        post("datatype BYTES with strings", digits)
            .json(json!({ "inputs": [{ "name": "input", "shape": [1, 784], "datatype": "BYTES", "data": vec!["x"; 784] }] }))
            .want(&[400], &["datatype", "FP32", "data", "number"]),
        post("datatype of 100 KB", digits)
            .json(json!({ "inputs": [{ "name": "input", "shape": [1, 784], "datatype": "F".repeat(100_000), "data": vec![0.5; 784] }] }))
            .want(&[400], &["datatype", "long", "FP32"]),
        post("two inputs", digits)
            .json(json!({ "inputs": [
                { "name": "input", "shape": [1, 784], "datatype": "FP32", "data": vec![0.5; 784] },
                { "name": "input", "shape": [1, 784], "datatype": "FP32", "data": vec![0.5; 784] },
            ] }))
            .want(&[400], &["input"]),
        post("unknown input name", digits)
            .json(json!({ "inputs": [{ "name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": vec![0.5; 784] }] }))
            .want(&[400], &["input", "pixels"]),
        post("not JSON", digits).json_text("hello").want(&[400], JSON_WORDS),
        post("empty body", digits).json_text("").want(&[400], JSON_WORDS),
        post("top-level array", digits).json_text("[1,2,3]").want(&[400], &["json", "expected", "inputs", "map", "object"]),
        post("trailing garbage after the request", digits)
            .json_text(format!("{} trailing", v2(json!([1, 784]), row())))
            .want(&[400], &["json", "trailing"]),
        post("16 MiB of data for a one-image shape", digits)
            .json_text(sixteen)
            .want(TOO_LARGE, &["shape", "values", "data", "large", "limit"]),
        post("16 MiB of whitespace", digits)
            .json_text(vec![b' '; 16 * MIB])
            .want(TOO_LARGE, &["json", "eof", "large", "limit", "empty"]),
        post("churn: wrong row width", churn)
            .json(v2(json!([1, w + 1]), json!(vec![0.5; w + 1])))
            .want(&[400], SHAPE),
        post("churn: batch 2^58 with one value", churn)
            .json(v2(json!([1u64 << 58, w]), one.clone()))
            .want(&[400], &["shape", "values"]),
        post("churn: image-shaped input", churn)
            .json(v2(json!([1, 1, 28, 28]), row()))
            .want(&[400], SHAPE),
    ]
}

fn rows_cases() -> Vec<Case> {
    let rows = "/api/predict/churn/rows";
    let many_keys: Map<String, Value> = (0..20_000).map(|i| (format!("k{i}"), json!(1))).collect();
    let mut big = Vec::with_capacity(16 * MIB + 1000);
    big.extend_from_slice(b"{\"rows\":[");
    let partial = row_with("Balance", None).to_string();
    while big.len() < 16 * MIB {
        big.extend_from_slice(partial.as_bytes());
        big.push(b',');
    }
    big.extend_from_slice(partial.as_bytes());
    big.extend_from_slice(b"]}");
    vec![
        post("not JSON", rows)
            .json_text("hello")
            .want(&[400], JSON_WORDS),
        post("empty body", rows)
            .json_text("")
            .want(&[400], JSON_WORDS),
        post("no rows field", rows)
            .json(json!({}))
            .want(&[400], &["rows"]),
        post("empty rows", rows)
            .json(json!({ "rows": [] }))
            .want(&[400], &["rows", "empty"]),
        post("rows as an object", rows)
            .json(json!({ "rows": {} }))
            .want(&[400], &["rows", "sequence", "array"]),
        post("rows of numbers", rows)
            .json(json!({ "rows": [1, 2] }))
            .want(&[400], &["row", "map", "object"]),
        post("a top-level array of rows", rows)
            .json(json!([churn_row()]))
            .want(&[400], &["rows", "map", "object"]),
        post("a string for a numeric column", rows)
            .json(json!({ "rows": [row_with("Age", Some(json!("forty")))] }))
            .want(&[400], &["Age"]),
        post("an object for a column", rows)
            .json(json!({ "rows": [row_with("Age", Some(json!({ "years": 40 })))] }))
            .want(&[400], &["Age"]),
        post("an array for a column", rows)
            .json(json!({ "rows": [row_with("Geography", Some(json!(["France"])))] }))
            .want(&[400], &["Geography"]),
        post("an unknown column", rows)
            .json(json!({ "rows": [row_with("Agee", Some(json!(40)))] }))
            .want(&[400], &["Agee"]),
        post("a missing column", rows)
            .json(json!({ "rows": [row_with("Balance", None)] }))
            .want(&[400], &["Balance"]),
        post("20,000 keys in one row", rows)
            .json(json!({ "rows": [many_keys] }))
            .want(&[400], &["column", "key"]),
        post("a key of 1 MB", rows)
            .json(json!({ "rows": [row_with(&"K".repeat(MIB), Some(json!(1)))] }))
            .want(&[400], &["column", "key"]),
        post("rows nested 10,000 deep", rows)
            .json_text(format!(r#"{{"rows":{}}}"#, nested(10_000, "{}")))
            .want(&[400], NESTING),
        post("a value nested 10,000 deep", rows)
            .json_text(format!(
                r#"{{"rows":[{{"Age":{}}}]}}"#,
                nested_objects(10_000, "1")
            ))
            .want(&[400], &["Age", "recursion", "nest", "depth"]),
        post("more rows than the per-request limit", rows)
            .json(json!({ "rows": vec![Value::Object(churn_row()); MAX_ROWS + 1] }))
            .want(TOO_LARGE, &["rows"]),
        post("16 MiB of rows lacking a column", rows)
            .json_text(big)
            .want(TOO_LARGE, &["Balance", "large", "limit"]),
        post("invalid UTF-8 in a string", rows)
            .json_text(b"{\"rows\":[{\"Geography\":\"\xff\xfe\"}]}".to_vec())
            .want(&[400], &["utf", "unicode", "json"]),
        post("null body", rows)
            .json_text("null")
            .want(&[400], &["rows", "null", "map", "object"]),
    ]
}

fn csv_cases() -> Vec<Case> {
    let csv = "/api/predict/churn/csv";
    let header = churn_data::HEADER;
    let bad = |what: &str, body: Vec<u8>, words: &'static [&'static str]| {
        post(what, csv)
            .body_typed("text/csv", body)
            .want(&[400], words)
    };
    // An 8 MiB number in the Age column of the first row.
    let huge_cell = with_cell("Age", &"9".repeat(8 * MIB), 2).into_bytes();
    let mut non_utf8 = with_cell("Geography", "Fr", 3).into_bytes();
    let at = non_utf8.windows(2).position(|w| w == b"Fr").unwrap();
    non_utf8[at..at + 2].copy_from_slice(b"\xff\xfe");
    vec![
        bad("empty CSV", Vec::new(), &["empty", "header"]),
        bad("BOM only", "\u{feff}".into(), &["empty", "header"]),
        bad(
            "blank lines only",
            b"\n\n\n".to_vec(),
            &["empty", "header", "column"],
        ),
        bad(
            "header without rows",
            format!("{header}\n").into_bytes(),
            &["row"],
        ),
        bad(
            "ragged row (a field short)",
            format!("{}\n1,2,3\n", churn_csv(2).trim_end()).into_bytes(),
            &["row", "field"],
        ),
        bad(
            "ragged row (a field more)",
            format!(
                "{}\n{},extra\n",
                header,
                churn_csv(1).lines().nth(1).unwrap()
            )
            .into_bytes(),
            &["row", "field"],
        ),
        bad(
            "duplicate header column",
            with_header(&header.replace("Tenure", "Age"), 3).into_bytes(),
            &["Age", "twice", "duplicate"],
        ),
        bad(
            "20,000 columns",
            format!("{}\n", many_columns(20_000)).into_bytes(),
            &["column"],
        ),
        bad(
            "100,000 columns",
            format!("{}\n", many_columns(100_000)).into_bytes(),
            &["column"],
        ),
        bad(
            "100,000 duplicate columns",
            format!("{}\n", vec!["a"; 100_000].join(",")).into_bytes(),
            &["column", "twice", "duplicate"],
        ),
        bad(
            "missing column",
            with_header(&header.replace(",Balance", ""), 0).into_bytes(),
            &["Balance"],
        ),
        bad("invalid UTF-8 in a cell", non_utf8, &["utf"]),
        bad(
            "UTF-16 text",
            {
                let mut b = vec![0xFF, 0xFE];
                for u in churn_csv(2).encode_utf16() {
                    b.extend_from_slice(&u.to_le_bytes());
                }
                b
            },
            &["utf", "column", "empty", "header"],
        ),
        bad("an 8 MiB number", huge_cell, &["Age", "number"]),
        bad(
            "unterminated quote",
            format!("{}\n619,\"France,Female,42\n", header).into_bytes(),
            &["quote", "row", "field", "column"],
        ),
        bad(
            "a formula in a numeric column",
            with_cell("Age", "=1+1", 3).into_bytes(),
            &["Age"],
        ),
        bad(
            "a HYPERLINK formula in a numeric column",
            with_cell("Balance", "=HYPERLINK(\"http://evil.example\")", 3).into_bytes(),
            &["Balance"],
        ),
        bad(
            "empty header names",
            format!("{}\n{}\n", ",".repeat(13), ",".repeat(13)).into_bytes(),
            &["column", "empty"],
        ),
        bad(
            "NUL bytes",
            vec![0u8; 4096],
            &["column", "utf", "empty", "Balance"],
        ),
        bad("a PNG", png_gray(28, 28), &["utf", "column", "csv"]),
        bad(
            "more rows than the per-request limit",
            churn_csv(MAX_ROWS + 1).into_bytes(),
            &["rows"],
        ),
        post("CSV to the image model", "/api/predict/digits/csv")
            .body_typed("text/csv", churn_csv(3))
            .want(&[400], &["image"]),
    ]
}

fn image_cases() -> Vec<Case> {
    let image = "/api/predict/digits/image";
    let bad = |what: &str, body: Vec<u8>, words: &'static [&'static str]| {
        post(what, image).raw(body).want(TOO_LARGE, words)
    };
    let good = png_gray(28, 28);
    let mut bad_crc = good.clone();
    // The IHDR chunk's CRC sits at bytes 29..33.
    bad_crc[29] ^= 0xFF;
    let mut bad_idat = good.clone();
    let idat = bad_idat.windows(4).position(|w| w == b"IDAT").unwrap();
    for b in &mut bad_idat[idat + 4..idat + 20] {
        *b = 0xAB;
    }
    const IMAGE: &[&str] = &["image", "png", "jpeg"];
    const SIZE: &[&str] = &["pixels", "large", "limit", "size"];
    let jpeg_header_only = vec![
        0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0xFF, 0xDC, 0xFF, 0xDC, 0x03, 0x01, 0x22, 0x00,
        0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xFF, 0xD9,
    ];
    vec![
        bad("not an image", b"hello, world".to_vec(), IMAGE),
        bad("empty body", Vec::new(), IMAGE),
        bad("PNG signature only", PNG_SIGNATURE.to_vec(), IMAGE),
        bad("truncated PNG", good[..good.len() / 2].to_vec(), IMAGE),
        bad("PNG with a bad header CRC", bad_crc, IMAGE),
        bad("PNG with corrupt pixel data", bad_idat, IMAGE),
        bad("1x1 PNG", png_gray(1, 1), SIZE),
        bad(
            "0x0 PNG header",
            png_header_only(0, 0, 8, 0),
            &["image", "pixels", "size"],
        ),
        bad(
            "100000x1 PNG with an empty IDAT",
            png_header_only(100_000, 1, 8, 0),
            SIZE,
        ),
        bad(
            "100000x100000 RGBA16 PNG with an empty IDAT",
            png_header_only(100_000, 100_000, 16, 6),
            SIZE,
        ),
        bad("4096x4096 16-bit RGBA PNG", png_bomb(), SIZE),
        bad(
            "4096x4096 RGBA16 PNG with an empty IDAT",
            png_header_only(4096, 4096, 16, 6),
            SIZE,
        ),
        bad(
            "JPEG header claiming 65500x65500",
            jpeg_header_only,
            &["image", "pixels", "large", "jpeg"],
        ),
        bad(
            "JPEG patched to claim 65000x65000",
            jpeg_claiming(65_000, 65_000),
            SIZE,
        ),
        bad("JPEG patched to claim 8192x8", jpeg_claiming(8192, 8), SIZE),
        bad(
            "GIF",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            IMAGE,
        ),
        bad(
            "WebP header",
            b"RIFF\x24\x00\x00\x00WEBPVP8 ".to_vec(),
            IMAGE,
        ),
        bad(
            "SVG",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec(),
            IMAGE,
        ),
        post("an image to the tabular model", "/api/predict/churn/image")
            .raw(png_gray(28, 28))
            .want(&[400], &["tabular", "csv"]),
        post("rows to the image model", "/api/predict/digits/rows")
            .json(json!({ "rows": [churn_row()] }))
            .want(&[400], &["image"]),
    ]
}

fn update_cases(c: &Ctx) -> Vec<Case> {
    let g = c.g;
    let r2 = format!("/api/groups/{g}/rounds/2/update");
    let m = &c.member.token;
    let up = |what: &str, body: Vec<u8>, words: &'static [&'static str]| {
        post(what, r2.as_str())
            .bearer(m)
            .raw(body)
            .want(&[400], words)
    };
    let ok_data = f32_data(0, 0.1);
    let model = format!("group-{g}");
    let valid = update(g, 2, 0.5, 10);
    const FORMAT: &[&str] = &["safetensors", "header", "update"];
    let mut with_trailer = valid.clone();
    with_trailer.extend_from_slice(&[7u8; 100]);
    let mut huge_header_len = u64::MAX.to_le_bytes().to_vec();
    huge_header_len.extend_from_slice(b"{}");
    let mut large_header_len = 100_000_000u64.to_le_bytes().to_vec();
    large_header_len.extend_from_slice(&[b' '; 100]);
    let f16_inf: Vec<u8> = (0..15u16)
        .flat_map(|i| if i == 3 { 0x7C00u16 } else { 0x2E66 }.to_le_bytes())
        .collect();
    vec![
        up("garbage", b"hello".to_vec(), FORMAT),
        up("empty body", Vec::new(), FORMAT),
        up("7 bytes", vec![1; 7], FORMAT),
        up("header length u64::MAX", huge_header_len, FORMAT),
        up(
            "header length 100 MB over a 108-byte body",
            large_header_len,
            FORMAT,
        ),
        up(
            "header not JSON",
            safetensors_text("{{{{", &ok_data),
            FORMAT,
        ),
        up(
            "header a JSON array",
            safetensors(&json!([1, 2]), &ok_data),
            FORMAT,
        ),
        up(
            "truncated update",
            valid[..valid.len() / 2].to_vec(),
            FORMAT,
        ),
        up("update with trailing bytes", with_trailer, FORMAT),
        up(
            "transposed weight (wrong layout)",
            update_with(
                g,
                json!({
                    "dense.weight": { "dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48] },
                    "dense.bias": { "dtype": "F32", "shape": [3], "data_offsets": [48, 60] },
                }),
                &ok_data,
            ),
            &["dense.weight"],
        ),
        up(
            "missing tensor",
            update_with(
                g,
                json!({
                    "dense.bias": { "dtype": "F32", "shape": [3], "data_offsets": [0, 12] },
                }),
                &ok_data[..12],
            ),
            &["dense.weight"],
        ),
        up(
            "extra tensor",
            update_with(
                g,
                json!({
                    "dense.weight": { "dtype": "F32", "shape": [4, 3], "data_offsets": [0, 48] },
                    "dense.bias": { "dtype": "F32", "shape": [3], "data_offsets": [48, 60] },
                    "evil": { "dtype": "F32", "shape": [1], "data_offsets": [60, 64] },
                }),
                &[&ok_data[..], &[0; 4]].concat(),
            ),
            &["evil"],
        ),
        up(
            "F64 tensors",
            update_with(
                g,
                json!({
                    "dense.weight": { "dtype": "F64", "shape": [4, 3], "data_offsets": [0, 96] },
                    "dense.bias": { "dtype": "F64", "shape": [3], "data_offsets": [96, 120] },
                }),
                &[0u8; 120],
            ),
            &["dtype", "F64"],
        ),
        up(
            "I32 tensors",
            update_with(
                g,
                json!({
                    "dense.weight": { "dtype": "I32", "shape": [4, 3], "data_offsets": [0, 48] },
                    "dense.bias": { "dtype": "I32", "shape": [3], "data_offsets": [48, 60] },
                }),
                &[0u8; 60],
            ),
            &["dtype", "I32"],
        ),
        up(
            "a NaN weight",
            update_with(g, good_tensors(), &f32_data(5, f32::NAN)),
            &["finite", "nan"],
        ),
        up(
            "an infinite weight",
            update_with(g, good_tensors(), &f32_data(2, f32::INFINITY)),
            &["finite", "inf"],
        ),
        up(
            "a -inf bias",
            update_with(g, good_tensors(), &f32_data(13, f32::NEG_INFINITY)),
            &["finite", "inf"],
        ),
        up(
            "an infinite F16 weight",
            update_with(
                g,
                json!({
                    "dense.weight": { "dtype": "F16", "shape": [4, 3], "data_offsets": [0, 24] },
                    "dense.bias": { "dtype": "F16", "shape": [3], "data_offsets": [24, 30] },
                }),
                &f16_inf,
            ),
            &["finite", "inf"],
        ),
        up(
            "offsets beyond the data",
            update_with(
                g,
                json!({
                    "dense.weight": { "dtype": "F32", "shape": [4, 3], "data_offsets": [0, 4800] },
                    "dense.bias": { "dtype": "F32", "shape": [3], "data_offsets": [4800, 4812] },
                }),
                &ok_data,
            ),
            FORMAT,
        ),
        up(
            "reversed offsets",
            update_with(
                g,
                json!({
                    "dense.weight": { "dtype": "F32", "shape": [4, 3], "data_offsets": [48, 0] },
                    "dense.bias": { "dtype": "F32", "shape": [3], "data_offsets": [48, 60] },
                }),
                &ok_data,
            ),
            FORMAT,
        ),
        up(
            "a 2^40 x 2^40 tensor over 48 bytes",
            update_with(
                g,
                json!({
                    "dense.weight": { "dtype": "F32", "shape": [1u64 << 40, 1u64 << 40], "data_offsets": [0, 48] },
                    "dense.bias": { "dtype": "F32", "shape": [3], "data_offsets": [48, 60] },
                }),
                &ok_data,
            ),
            &["safetensors", "shape", "dense.weight"],
        ),
        up(
            "no metadata",
            safetensors(&good_tensors(), &ok_data),
            &["metadata"],
        ),
        up(
            "unknown format version",
            update_meta(
                json!({ "format": "b3o-update/99", "model_id": model, "round": "2", "num_samples": "10", "metrics": "{}" }),
                good_tensors(),
                &ok_data,
            ),
            &["format"],
        ),
        up(
            "fractional round in the metadata",
            update_meta(meta(&model, "2.5", "10", "{}"), good_tensors(), &ok_data),
            &["round"],
        ),
        up(
            "metadata for round 1 uploaded to round 2",
            update_meta(meta(&model, "1", "10", "{}"), good_tensors(), &ok_data),
            &["round"],
        ),
        up(
            "metadata for round 99",
            update_meta(meta(&model, "99", "10", "{}"), good_tensors(), &ok_data),
            &["round"],
        ),
        up(
            "zero samples",
            update_meta(meta(&model, "2", "0", "{}"), good_tensors(), &ok_data),
            &["samples"],
        ),
        up(
            "negative samples",
            update_meta(meta(&model, "2", "-5", "{}"), good_tensors(), &ok_data),
            &["samples"],
        ),
        up(
            "another group's model id",
            update_meta(
                meta("group-999999", "2", "10", "{}"),
                good_tensors(),
                &ok_data,
            ),
            &["model", "group"],
        ),
        up(
            "metrics not JSON",
            update_meta(
                meta(&model, "2", "10", "not json"),
                good_tensors(),
                &ok_data,
            ),
            &["metrics"],
        ),
        up(
            "a metric that is a string",
            update_meta(
                meta(&model, "2", "10", r#"{"loss":"low"}"#),
                good_tensors(),
                &ok_data,
            ),
            &["metric"],
        ),
        up(
            "65 metrics",
            update_meta(
                meta(&model, "2", "10", &metrics_json(65)),
                good_tensors(),
                &ok_data,
            ),
            &["metrics"],
        ),
        up(
            "200,000 metrics",
            update_meta(
                meta(&model, "2", "10", &metrics_json(200_000)),
                good_tensors(),
                &ok_data,
            ),
            &["metrics"],
        ),
        post("larger than --max-update-bytes", r2.as_str())
            .bearer(m)
            .raw(vec![0u8; MAX_UPDATE_BYTES + MIB])
            .want(&[413], &["bytes", "large", "limit"]),
        post(
            "a round that has not started",
            format!("/api/groups/{g}/rounds/3/update"),
        )
        .bearer(m)
        .raw(update(g, 3, 0.5, 10))
        .want(&[409], &["round"]),
        post(
            "a different update for a round already reported in",
            format!("/api/groups/{g}/rounds/1/update"),
        )
        .bearer(m)
        .raw(update(g, 1, 0.9, 20))
        .want(&[409], &["round", "already", "update"]),
        post(
            "the owner's second, different update to round 2",
            r2.as_str(),
        )
        .bearer(&c.owner.token)
        .raw(update(g, 2, 0.9, 10))
        .want(&[409], &["round", "already", "update"]),
        post("round 0", format!("/api/groups/{g}/rounds/0/update"))
            .bearer(m)
            .raw(update(g, 0, 0.5, 10))
            .want(&[400, 404, 409], &["round"]),
        post("round -1", format!("/api/groups/{g}/rounds/-1/update"))
            .bearer(m)
            .raw(valid.clone())
            .want(&[400, 404, 409], &["round"]),
        post("round `abc`", format!("/api/groups/{g}/rounds/abc/update"))
            .bearer(m)
            .raw(valid.clone())
            .want(&[400], &["abc"]),
        post(
            "round beyond i64",
            format!("/api/groups/{g}/rounds/99999999999999999999/update"),
        )
        .bearer(m)
        .raw(valid.clone())
        .want(&[400], &["99999999999999999999", "number", "range"]),
        post(
            "a group that does not exist",
            "/api/groups/999999/rounds/2/update",
        )
        .bearer(m)
        .raw(valid.clone())
        .want(&[404], &["group", "not found"]),
        post("no credentials", r2.as_str())
            .raw(valid.clone())
            .want(&[401], &["sign in", "token", "credential"]),
        post("a bogus API token", r2.as_str())
            .bearer("b3o_0000000000000000000000000000")
            .raw(valid.clone())
            .want(&[401], &["token"]),
        post("an account outside the group", r2.as_str())
            .bearer(&c.outsider.token)
            .raw(valid)
            .want(&[404], &["group", "not found"]),
    ]
}

fn safetensors_text(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Evaluation and failure reports, statistics and readiness.
fn report_cases(c: &Ctx) -> Vec<Case> {
    let g = c.g;
    let eval = format!("/api/groups/{g}/rounds/1/evaluation");
    let failure = format!("/api/groups/{g}/rounds/2/failure");
    let m = &c.member.token;
    let e = |what: &str, body: Value, words: &'static [&'static str]| {
        post(format!("evaluation: {what}"), eval.as_str())
            .bearer(m)
            .json(body)
            .want(&[400], words)
    };
    let f = |what: &str, body: &str, words: &'static [&'static str]| {
        post(format!("failure: {what}"), failure.as_str())
            .bearer(m)
            .json_text(body)
            .want(&[400], words)
    };
    let t = c.t;
    let stats = format!("/api/groups/{t}/statistics");
    let ready = format!("/api/groups/{t}/ready");
    let o = &c.owner.token;
    vec![
        post("evaluation: not JSON", eval.as_str())
            .bearer(m)
            .json_text("{")
            .want(&[400], JSON_WORDS),
        e("no metrics", json!({ "num_samples": 5 }), &["metrics"]),
        e(
            "zero samples",
            json!({ "num_samples": 0, "metrics": {} }),
            &["num_samples"],
        ),
        e(
            "negative samples",
            json!({ "num_samples": -1, "metrics": {} }),
            &["num_samples"],
        ),
        e(
            "2^41 samples",
            json!({ "num_samples": 1u64 << 41, "metrics": {} }),
            &["num_samples"],
        ),
        e(
            "65 metrics",
            json!({ "num_samples": 5, "metrics": metrics_map(65) }),
            &["metrics"],
        ),
        e(
            "200,000 metrics",
            json!({ "num_samples": 5, "metrics": metrics_map(200_000) }),
            &["metrics", "limit"],
        ),
        e(
            "an empty metric name",
            json!({ "num_samples": 5, "metrics": { "": 1.0 } }),
            &["metric"],
        ),
        e(
            "a metric name of 1 KB",
            json!({ "num_samples": 5, "metrics": { "x".repeat(1000): 1.0 } }),
            &["metric"],
        ),
        e(
            "a string metric",
            json!({ "num_samples": 5, "metrics": { "auc": "high" } }),
            &["metrics", "f64", "number"],
        ),
        e(
            "metrics as an array",
            json!({ "num_samples": 5, "metrics": [1, 2] }),
            &["metrics", "map"],
        ),
        e(
            "an unknown field",
            json!({ "num_samples": 5, "metrics": {}, "weights": [] }),
            &["weights", "unknown field"],
        ),
        post("evaluation: a metric beyond f64", eval.as_str())
            .bearer(m)
            .json_text(r#"{"num_samples":5,"metrics":{"auc":1e999}}"#)
            .want(&[400], &["number", "range", "metrics"]),
        post(
            "evaluation: a round that does not exist",
            format!("/api/groups/{g}/rounds/999/evaluation"),
        )
        .bearer(m)
        .json(json!({ "num_samples": 5, "metrics": { "accuracy": 0.5 } }))
        .want(&[404], &["round"]),
        post(
            "evaluation: a round still collecting",
            format!("/api/groups/{g}/rounds/2/evaluation"),
        )
        .bearer(m)
        .json(json!({ "num_samples": 5, "metrics": { "accuracy": 0.5 } }))
        .want(&[409], &["round"]),
        f("not JSON", "reason", JSON_WORDS),
        f("no reason", "{}", &["reason"]),
        f(
            "a numeric reason",
            r#"{"reason":42}"#,
            &["reason", "string"],
        ),
        f(
            "an unknown field",
            r#"{"reason":"oom","round":2}"#,
            &["round", "unknown field"],
        ),
        post(
            "failure: a round that does not exist",
            format!("/api/groups/{g}/rounds/999/failure"),
        )
        .bearer(m)
        .json(json!({ "reason": "out of memory" }))
        .want(&[404], &["round"]),
        post("statistics: rows instead of a summary", stats.as_str())
            .bearer(o)
            .json(json!({ "rows": [[1, 2]] }))
            .want(&[400], &["statistics", "n_rows", "field"]),
        post("statistics: not JSON", stats.as_str())
            .bearer(o)
            .json_text("][")
            .want(&[400], JSON_WORDS),
        post("statistics: negative row count", stats.as_str())
            .bearer(o)
            .json(json!({ "n_rows": -1, "columns": {} }))
            .want(&[400], &["statistics", "n_rows"]),
        post("statistics: nested 10,000 deep", stats.as_str())
            .bearer(o)
            .json_text(nested_objects(10_000, "1"))
            .want(&[400], NESTING),
        post("ready: zero samples", ready.as_str())
            .bearer(o)
            .json(json!({ "num_samples": 0 }))
            .want(&[400], &["num_samples"]),
        post("ready: samples as text", ready.as_str())
            .bearer(o)
            .json(json!({ "num_samples": "ten" }))
            .want(&[400], &["num_samples"]),
        post("ready: an unknown field", ready.as_str())
            .bearer(o)
            .json(json!({ "num_samples": 5, "rows": [] }))
            .want(&[400], &["rows", "unknown field"]),
    ]
}

fn job_cases(c: &Ctx) -> Vec<Case> {
    let m = &c.member.token;
    let csv = churn_csv(5);
    let form =
        |what: &str, fields: &[Field], status: &'static [u16], words: &'static [&'static str]| {
            let (ctype, body) = multipart(fields);
            post(format!("job: {what}"), "/api/jobs")
                .bearer(m)
                .body_typed(&ctype, body)
                .want(status, words)
        };
    let long_model = "m".repeat(MIB);
    let missing_balance = with_header(&churn_data::HEADER.replace(",Balance", ""), 0);
    let duplicate = with_header(&churn_data::HEADER.replace("Tenure", "Age"), 3);
    let wide = format!("{}\n", many_columns(20_000));
    vec![
        form(
            "no model field",
            &[("file", Some("a.csv"), csv.as_bytes())],
            &[400],
            &["model"],
        ),
        form(
            "an unknown model",
            &[
                ("model", None, b"no-such-model"),
                ("file", Some("a.csv"), csv.as_bytes()),
            ],
            &[400, 404],
            &["model", "deployment"],
        ),
        form(
            "a model field of 1 MB",
            &[
                ("model", None, long_model.as_bytes()),
                ("file", Some("a.csv"), csv.as_bytes()),
            ],
            TOO_LARGE,
            &["model"],
        ),
        form(
            "the file before the model",
            &[
                ("file", Some("a.csv"), csv.as_bytes()),
                ("model", None, b"churn"),
            ],
            &[400],
            &["model"],
        ),
        // Regression: the 400 was sent while the rest of the form was still unread, and the
        // client saw the connection reset instead (the case above failed so, twice in a row
        // here, before the fix): a form refused for its shape is read to its end first. This
        // one checks the drain also gets through a large remaining part.
        form(
            "the file before the model, then 4 MiB more",
            &[
                ("file", Some("a.csv"), csv.as_bytes()),
                ("file", Some("b.csv"), &vec![b'1'; 4 << 20]),
                ("model", None, b"churn"),
            ],
            &[400],
            &["model"],
        ),
        form(
            "a PNG instead of a CSV",
            &[
                ("model", None, b"churn"),
                ("file", Some("a.png"), &png_gray(28, 28)),
            ],
            &[400],
            &["utf", "column", "csv", "header"],
        ),
        form(
            "an empty file",
            &[("model", None, b"churn"), ("file", Some("a.csv"), b"")],
            &[400],
            &["empty"],
        ),
        form(
            "the image model",
            &[
                ("model", None, b"digits"),
                ("file", Some("a.csv"), csv.as_bytes()),
            ],
            &[400],
            &["image"],
        ),
        form(
            "an unknown form field",
            &[
                ("model", None, b"churn"),
                ("notes", None, b"hi"),
                ("file", Some("a.csv"), csv.as_bytes()),
            ],
            &[400],
            &["field", "notes"],
        ),
        form(
            "two files",
            &[
                ("model", None, b"churn"),
                ("file", Some("a.csv"), csv.as_bytes()),
                ("file", Some("b.csv"), csv.as_bytes()),
            ],
            &[400],
            &["file"],
        ),
        form(
            "a column missing",
            &[
                ("model", None, b"churn"),
                ("file", Some("a.csv"), missing_balance.as_bytes()),
            ],
            &[400],
            &["Balance"],
        ),
        form(
            "a duplicate column",
            &[
                ("model", None, b"churn"),
                ("file", Some("a.csv"), duplicate.as_bytes()),
            ],
            &[400],
            &["Age", "twice", "duplicate"],
        ),
        form(
            "20,000 columns",
            &[
                ("model", None, b"churn"),
                ("file", Some("a.csv"), wide.as_bytes()),
            ],
            &[400],
            &["column"],
        ),
        form("no fields at all", &[], &[400], &["model", "file"]),
        post("job: multipart without a boundary", "/api/jobs")
            .bearer(m)
            .body_typed("multipart/form-data", csv.clone())
            .want(&[400], &["boundary", "multipart"]),
        post("job: multipart that is not", "/api/jobs")
            .bearer(m)
            .body_typed("multipart/form-data; boundary=xyz", "hello")
            .want(
                &[400],
                &["multipart", "upload", "form", "stream", "field", "boundary"],
            ),
        post("job: a raw CSV without ?model", "/api/jobs")
            .bearer(m)
            .body_typed("text/csv", csv.clone())
            .want(&[400], &["model"]),
        post(
            "job: a raw CSV for an unknown model",
            "/api/jobs?model=nope",
        )
        .bearer(m)
        .body_typed("text/csv", csv.clone())
        .want(&[400, 404], &["model", "deployment"]),
        post(
            "job: an unknown query parameter type",
            "/api/jobs?model=churn&model=digits",
        )
        .bearer(m)
        .body_typed("text/csv", csv.clone())
        .want(&[400], &["model", "duplicate", "query"]),
        post("job: no credentials", "/api/jobs?model=churn")
            .body_typed("text/csv", csv)
            .want(&[401], &["sign in", "token", "credential"]),
    ]
}

fn group_cases(c: &Ctx) -> Vec<Case> {
    let x = &c.outsider.token;
    let g = |what: &str, body: Value, words: &'static [&'static str]| {
        post(format!("group: {what}"), "/api/groups")
            .bearer(x)
            .json(body)
            .want(&[400], words)
    };
    let params = &["parameters", "param"];
    // A model over the parameter quota may be a 400 or a 413 (a quota).
    let big = |what: &str, body: Value, words: &'static [&'static str]| {
        post(format!("group: {what}"), "/api/groups")
            .bearer(x)
            .json(body)
            .want(TOO_LARGE, words)
    };
    let schema = |features: usize| {
        let table = read_csv(churn_csv(50).as_bytes()).unwrap();
        let mut s = serde_json::to_value(
            infer_schema(
                &table,
                &InferOptions {
                    target: Some("Exited".into()),
                    ..Default::default()
                },
            )
            .unwrap(),
        )
        .unwrap();
        if features != usize::MAX {
            let first = s["features"][0].clone();
            s["features"] = Value::Array(
                (0..features)
                    .map(|i| {
                        let mut f = first.clone();
                        f["name"] = json!(format!("f{i}"));
                        f
                    })
                    .collect(),
            );
        }
        s
    };
    let tabular = |schema: Value, hidden: Value| {
        move |b: &mut Value| {
            b["model"] = json!({ "kind": "tabular", "schema": schema, "hidden": hidden })
        }
    };
    let mut no_target = schema(usize::MAX);
    no_target.as_object_mut().unwrap().remove("target");
    let mut target_is_feature = schema(usize::MAX);
    target_is_feature["target"]["name"] = target_is_feature["features"][0]["name"].clone();
    vec![
        big(
            "100M parameters in one tensor",
            group(custom_layout(
                json!([{ "name": "w", "shape": [10_000, 10_000] }]),
            )),
            params,
        ),
        big(
            "16M parameters over 16 tensors",
            group(custom_layout(json!(
                (0..16)
                    .map(|i| json!({ "name": format!("w{i}"), "shape": [1000, 1000] }))
                    .collect::<Vec<_>>()
            ))),
            params,
        ),
        big(
            "a 2^40 x 2^40 tensor",
            group(custom_layout(
                json!([{ "name": "w", "shape": [1u64 << 40, 1u64 << 40] }]),
            )),
            params,
        ),
        big(
            "16 hidden layers of 4096",
            group(tabular(schema(usize::MAX), json!(vec![4096; 16]))),
            &["parameters", "hidden"],
        ),
        big(
            "a hidden layer of 100,000",
            group(tabular(schema(usize::MAX), json!([100_000]))),
            &["hidden", "parameters"],
        ),
        big(
            "20,000 features into 4096 units",
            group(tabular(schema(20_000), json!([4096]))),
            &["parameters", "feature", "column"],
        ),
        g(
            "a zero dimension",
            group(custom_layout(json!([{ "name": "w", "shape": [4, 0] }]))),
            &["shape", "dimension"],
        ),
        g(
            "nine dimensions",
            group(custom_layout(json!([{ "name": "w", "shape": vec![1; 9] }]))),
            &["shape", "dimension"],
        ),
        g(
            "a negative dimension",
            group(custom_layout(json!([{ "name": "w", "shape": [4, -1] }]))),
            &["-1", "invalid"],
        ),
        g("no tensors", group(custom_layout(json!([]))), &["tensor"]),
        g(
            "a tensor twice",
            group(custom_layout(
                json!([{ "name": "w", "shape": [2] }, { "name": "w", "shape": [2] }]),
            )),
            &["twice", "tensor"],
        ),
        g(
            "a tabular schema without target",
            group(tabular(no_target, json!([8]))),
            &["target"],
        ),
        g(
            "a tabular schema without features",
            group(tabular(schema(0), json!([8]))),
            &["feature"],
        ),
        g(
            "the target as a feature",
            group(tabular(target_is_feature, json!([8]))),
            &["target"],
        ),
        g(
            "an unknown strategy",
            group(|b| b["strategy"] = json!({ "name": "fedsgd" })),
            &["strategy", "fedsgd"],
        ),
        g(
            "trimmed mean beta 0.9",
            group(|b| b["strategy"] = json!({ "name": "fedtrimmedavg", "beta": 0.9 })),
            &["beta"],
        ),
        g(
            "a strategy that is a string",
            group(|b| b["strategy"] = json!("fedavg")),
            &["strategy"],
        ),
        g(
            "zero rounds",
            group(|b| b["hyperparameters"]["rounds"] = json!(0)),
            &["rounds"],
        ),
        g(
            "a billion rounds",
            group(|b| b["hyperparameters"]["rounds"] = json!(1_000_000_000)),
            &["rounds"],
        ),
        g(
            "a negative learning rate",
            group(|b| b["hyperparameters"]["lr"] = json!(-1)),
            &["lr"],
        ),
        g(
            "a learning rate as text",
            group(|b| b["hyperparameters"]["lr"] = json!("fast")),
            &["lr", "f64"],
        ),
        g(
            "batch size 0",
            group(|b| b["hyperparameters"]["batch_size"] = json!(0)),
            &["batch_size"],
        ),
        g(
            "zero local epochs",
            group(|b| b["hyperparameters"]["local_epochs"] = json!(0)),
            &["local_epochs"],
        ),
        g(
            "no hyperparameters",
            group(|b| {
                b.as_object_mut().unwrap().remove("hyperparameters");
            }),
            &["hyperparameters"],
        ),
        g(
            "min_clients 0",
            group(|b| b["min_clients"] = json!(0)),
            &["min_clients"],
        ),
        g(
            "fraction_fit 2",
            group(|b| b["fraction_fit"] = json!(2.0)),
            &["fraction_fit"],
        ),
        g(
            "a zero round deadline",
            group(|b| b["round_deadline_secs"] = json!(0)),
            &["round_deadline"],
        ),
        g(
            "a negative norm bound",
            group(|b| b["max_update_norm"] = json!(-1.0)),
            &["max_update_norm"],
        ),
        g(
            "an unknown update encoding",
            group(|b| b["update_encoding"] = json!("zip")),
            &["update_encoding", "unknown update encoding"],
        ),
        g(
            "a top-k fraction above 1",
            group(|b| b["update_encoding"] = json!("topk:7")),
            &["update_encoding", "0.001..=1"],
        ),
        g(
            "an update encoding that is not a string",
            group(|b| b["update_encoding"] = json!({"kind": "int8"})),
            &["update_encoding"],
        ),
        g("an empty name", group(|b| b["name"] = json!("")), &["name"]),
        g(
            "a name of 1 MB",
            group(|b| b["name"] = json!("n".repeat(MIB))),
            &["name"],
        ),
        g(
            "a description of 1 MB",
            group(|b| b["description"] = json!("d".repeat(MIB))),
            &["description"],
        ),
        g(
            "an unknown field",
            group(|b| b["owner_id"] = json!(1)),
            &["owner_id", "unknown field"],
        ),
        g(
            "an image model with one label",
            group(|b| b["model"] = json!({ "kind": "image_cnn", "labels": ["cat"] })),
            &["label"],
        ),
        big(
            "an image model with 100,000 labels",
            group(
                |b| b["model"] = json!({ "kind": "image_cnn", "labels": (0..100_000).map(|i| format!("l{i}")).collect::<Vec<_>>() }),
            ),
            &["label", "parameters"],
        ),
        g(
            "an unknown model kind",
            group(|b| b["model"] = json!({ "kind": "transformer" })),
            &["kind", "variant", "transformer"],
        ),
        post("group: not JSON", "/api/groups")
            .bearer(x)
            .json_text("{\"name\":")
            .want(&[400], JSON_WORDS),
        post("group: strategy nested 10,000 deep", "/api/groups")
            .bearer(x)
            .json_text(format!(
                r#"{{"name":"n","strategy":{}}}"#,
                nested_objects(10_000, "1")
            ))
            .want(&[400], &["recursion", "nest", "depth", "deep", "strategy"]),
        post("group: no Content-Type", "/api/groups")
            .bearer(x)
            .raw(group(|_| {}).to_string())
            .want(&[400, 415], &["content-type"]),
        post("join: a code of 1 MB", "/api/groups/join")
            .bearer(x)
            .json(json!({ "join_code": "C".repeat(MIB) }))
            .want(&[400, 404], &["code"]),
        post("join: no code", "/api/groups/join")
            .bearer(x)
            .json(json!({}))
            .want(&[400], &["join_code", "code"]),
        post("join: a name of 1 MB", "/api/groups/join")
            .bearer(&c.member.token)
            .json(json!({ "join_code": c.t_code, "name": "n".repeat(MIB) }))
            .want(&[400], &["name"]),
        request(
            Method::PUT,
            "deployment: a name with a space",
            "/api/deployments/bad%20name",
        )
        .bearer(&c.owner.token)
        .json(json!({ "version_id": c.g_version }))
        .want(&[400], &["name"]),
        request(
            Method::PUT,
            "deployment: a name of 200 characters",
            format!("/api/deployments/{}", "d".repeat(200)),
        )
        .bearer(&c.owner.token)
        .json(json!({ "version_id": c.g_version }))
        .want(&[400], &["name"]),
        request(
            Method::PUT,
            "deployment: version_id as text",
            "/api/deployments/corpus-model",
        )
        .bearer(&c.owner.token)
        .json(json!({ "version_id": "one" }))
        .want(&[400], &["version_id"]),
        request(
            Method::PUT,
            "deployment: no version_id",
            "/api/deployments/corpus-model",
        )
        .bearer(&c.owner.token)
        .json(json!({}))
        .want(&[400], &["version_id"]),
    ]
}

fn account_cases(c: &Ctx) -> Vec<Case> {
    let reg = |what: &str, body: Value, status: &'static [u16], words: &'static [&'static str]| {
        post(format!("register: {what}"), "/api/auth/register")
            .json(body)
            .want(status, words)
    };
    let person = |edit: &dyn Fn(&mut Value)| {
        let mut b = json!({
            "email": unique_email("corpus-never"),
            "display_name": "Mallory",
            "organisation": "Evil Ltd",
            "password": PASSWORD,
        });
        edit(&mut b);
        b
    };
    let login = |what: &str, body: &str, status: &'static [u16], words: &'static [&'static str]| {
        post(format!("login: {what}"), "/api/auth/login")
            .json_text(body)
            .want(status, words)
    };
    let member = &c.member;
    let change =
        |what: &str, body: Value, status: &'static [u16], words: &'static [&'static str]| {
            post(format!("password change: {what}"), "/api/auth/password")
                .session(member)
                .json(body)
                .want(status, words)
        };
    vec![
        reg(
            "a bad email",
            person(&|b| b["email"] = json!("not-an-email")),
            &[400],
            &["email"],
        ),
        reg(
            "an email of 1 MB",
            person(&|b| b["email"] = json!(format!("{}@example.org", "e".repeat(MIB)))),
            &[400],
            &["email"],
        ),
        reg(
            "an email that is a number",
            person(&|b| b["email"] = json!(42)),
            &[400],
            &["email", "string"],
        ),
        reg(
            "a short password",
            person(&|b| b["password"] = json!("short")),
            &[400],
            &["password"],
        ),
        reg(
            "a password of 1 MB",
            person(&|b| b["password"] = json!("p".repeat(MIB))),
            &[400],
            &["password"],
        ),
        reg(
            "a common password",
            person(&|b| b["password"] = json!("Password")),
            &[400],
            &["password"],
        ),
        reg(
            "a display name of 1 MB",
            person(&|b| b["display_name"] = json!("n".repeat(MIB))),
            &[400],
            &["display_name", "name"],
        ),
        reg(
            "an organisation of 1 MB",
            person(&|b| b["organisation"] = json!("o".repeat(MIB))),
            &[400],
            &["organisation"],
        ),
        reg(
            "no password",
            person(&|b| {
                b.as_object_mut().unwrap().remove("password");
            }),
            &[400],
            &["password"],
        ),
        reg(
            "a role",
            person(&|b| b["role"] = json!("admin")),
            &[400],
            &["role", "unknown field"],
        ),
        reg(
            "an email already taken",
            person(&|b| b["email"] = json!(c.owner.email)),
            &[409],
            &["exists", "email"],
        ),
        post("register: not JSON", "/api/auth/register")
            .json_text("email=a@b.c")
            .want(&[400], JSON_WORDS),
        post("register: nested 10,000 deep", "/api/auth/register")
            .json_text(format!(r#"{{"email":{}}}"#, nested(10_000, "1")))
            .want(&[400], NESTING),
        post("register: form-encoded", "/api/auth/register")
            .body_typed(
                "application/x-www-form-urlencoded",
                "email=a%40b.c&password=x",
            )
            .want(&[400, 415], &["content-type", "json"]),
        login("not JSON", "{\"email\":", &[400], JSON_WORDS),
        login(
            "no password",
            r#"{"email":"a@example.org"}"#,
            &[400],
            &["password"],
        ),
        login(
            "an email that is an array",
            r#"{"email":["a"],"password":"x"}"#,
            &[400],
            &["email", "string"],
        ),
        login(
            "a password of 1 MB",
            &json!({ "email": "nobody@example.org", "password": "p".repeat(MIB) }).to_string(),
            &[400, 401],
            &["password"],
        ),
        change(
            "a short new password",
            json!({ "current_password": PASSWORD, "new_password": "short" }),
            &[400],
            &["password"],
        ),
        change(
            "the email as the new password",
            json!({ "current_password": PASSWORD, "new_password": member.email }),
            &[400],
            &["password"],
        ),
        change(
            "a wrong current password",
            json!({ "current_password": "not my password", "new_password": "another good one 42" }),
            &[403],
            &["password"],
        ),
        change(
            "no new password",
            json!({ "current_password": PASSWORD }),
            &[400],
            &["new_password"],
        ),
        post("password change: not JSON", "/api/auth/password")
            .session(member)
            .json_text("[")
            .want(&[400], JSON_WORDS),
        post("password change: no CSRF token", "/api/auth/password")
            .header_only("cookie", member.browser.cookie.clone())
            .json(json!({ "current_password": PASSWORD, "new_password": "another good one 42" }))
            .want(&[403], &["csrf"]),
        request(Method::PATCH, "profile: a display name of 1 MB", "/api/me")
            .session(member)
            .json(json!({ "display_name": "n".repeat(MIB) }))
            .want(&[400], &["display_name", "name"]),
        request(
            Method::PATCH,
            "profile: an organisation as a number",
            "/api/me",
        )
        .session(member)
        .json(json!({ "organisation": 7 }))
        .want(&[400], &["organisation", "string"]),
        post("token: a name of 1 MB", "/api/auth/tokens")
            .session(member)
            .json(json!({ "name": "t".repeat(MIB) }))
            .want(&[400], &["name"]),
        post("token: not JSON", "/api/auth/tokens")
            .session(member)
            .json_text("token please")
            .want(&[400], JSON_WORDS),
    ]
}

impl Case {
    fn header_only(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

/// Issue #19: at least 100 distinct malformed inputs over every body-taking route, each a
/// clear 4xx; the server stays up, within 300 MB of its idle RSS, and keeps what it stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_input_gets_a_clear_4xx_and_changes_nothing() {
    let started = Instant::now();
    let mut s = Spawned::demo(&[
        "--max-registrations-per-hour",
        "1000",
        "--max-update-bytes",
        &MAX_UPDATE_BYTES.to_string(),
        "--max-rows-per-request",
        &MAX_ROWS.to_string(),
    ]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let ctx = setup(&http, &s).await;
    let cases = corpus(&ctx);

    // Distinct inputs only: no case counted twice.
    let mut seen = HashSet::new();
    for case in &cases {
        assert!(
            seen.insert(case.fingerprint()),
            "duplicate case: {}",
            case.what
        );
    }
    assert!(cases.len() >= 100, "only {} cases", cases.len());

    let before = stored(&http, &s, &ctx).await;
    let idle = s.memory_kib("VmRSS");
    s.reset_peak();
    let corpus_started = Instant::now();
    let count = cases.len();
    let mut failures = Vec::new();
    let mut slowest = Vec::new();
    for case in cases {
        let what = case.what.clone();
        let t = Instant::now();
        if let Some(failure) = case.check(&http, &s).await {
            failures.push(failure);
        }
        slowest.push((t.elapsed(), what));
    }
    let corpus_time = corpus_started.elapsed();
    let peak = s.memory_kib("VmHWM");

    assert!(s.running(), "the server died during the corpus");
    let health = http.get(s.url("/healthz")).send().await;
    assert!(
        health.as_ref().is_ok_and(|r| r.status().is_success()),
        "the server does not answer its health check: {health:?}"
    );
    let after = stored(&http, &s, &ctx).await;
    let changed: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // The member's password is what it was.
    let login = http
        .post(s.url("/api/auth/login"))
        .json(&json!({ "email": ctx.member.email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();

    slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
    eprintln!(
        "malformed corpus: {count} cases in {corpus_time:.1?} (test {:.1?}); RSS idle {} MiB, \
         peak {} MiB (+{} MiB); slowest: {:?}",
        started.elapsed(),
        idle / 1024,
        peak / 1024,
        peak.saturating_sub(idle) / 1024,
        &slowest[..5.min(slowest.len())],
    );
    let mut problems = failures;
    if !changed.is_empty() {
        problems.push(format!("stored data changed: {changed:?}"));
    }
    if login.status() != StatusCode::OK {
        problems.push(format!(
            "the member's password no longer works: {}",
            login.status()
        ));
    }
    if peak.saturating_sub(idle) > MAX_PEAK_ABOVE_IDLE_KIB {
        problems.push(format!(
            "peak RSS {} MiB is more than 300 MiB above the idle {} MiB",
            peak / 1024,
            idle / 1024
        ));
    }
    assert!(
        problems.is_empty(),
        "{} of {count} checks failed:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
