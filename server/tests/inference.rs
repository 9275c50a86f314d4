//! Inference over HTTP (`b3o_server::app` with `oneshot`) against deployed models: a tabular
//! churn MLP and the digit CNN, each trained by nobody (version 0, the group's initial
//! weights), promoted through the registry's own API. Every prediction must equal the models
//! crate's burn forward pass within 1e-4, and every bad input must be a clear 4xx JSON error.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use b3o_models::Device;
use b3o_models::model::{ModelSpec, predict};
use b3o_models::stats::Summary;
use b3o_models::tabular::{InferOptions, infer_schema, read_csv};
use b3o_models::weights::{self, WeightSet};

use crate::accounts::{Browser, TestApp};

const TOL: f32 = 1e-4;

/// Churn-like rows with an identifier, a categorical and a missing value spelled `NA`.
fn churn_csv(rows: std::ops::Range<usize>) -> String {
    let mut csv = String::from("customer_id,age,country,balance,exited\n");
    for i in rows {
        let country = ["FR", "DE", "ES"][i % 3];
        let balance = if i % 17 == 5 {
            "NA".to_string()
        } else {
            format!("{}.5", i * 37 % 1000)
        };
        csv.push_str(&format!(
            "C{:05},{},{country},{balance},{}\n",
            1000 + i,
            20 + i % 50,
            i % 2
        ));
    }
    csv
}

struct Deployed {
    app: TestApp,
    user: Browser,
    owner: String,
    version_id: i64,
    spec: ModelSpec,
    weights: WeightSet,
}

struct Raw {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Deployed {
    async fn raw(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> Raw {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("cookie", &self.user.cookie)
            .header("x-csrf-token", &self.user.csrf)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        let response = self.app.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap()
            .to_vec();
        Raw {
            status,
            content_type,
            body,
        }
    }

    async fn get(&self, path: &str) -> Raw {
        self.raw(Method::GET, path, "application/json", Vec::new())
            .await
    }

    async fn post_json(&self, path: &str, body: Value) -> Raw {
        self.raw(
            Method::POST,
            path,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    /// burn's prediction for model inputs.
    fn burn(&self, inputs: &[f32], n: usize) -> Vec<f32> {
        predict(&self.spec, &self.weights, inputs, n, &Device::flex())
            .unwrap()
            .values
    }

    async fn promote(&self, name: &str, version_id: i64) {
        let reply = self
            .app
            .as_program(
                &self.owner,
                Method::PUT,
                &format!("/api/deployments/{name}"),
                Some(json!({ "version_id": version_id })),
            )
            .await;
        assert!(reply.status.is_success(), "{}", reply.json);
    }
}

/// Creates a group with `model`, lets one member join (sending its column summary for tabular
/// models), starts training, which stores version 0, and deploys that version as `name`.
async fn deploy(model: Value, name: &str, statistics_csv: Option<&str>) -> Deployed {
    let app = TestApp::new().await;
    let user = app.register("analyst@example.org").await;
    let body = json!({
        "name": name,
        "description": "inference test",
        "model": model,
        "hyperparameters": { "rounds": 1, "local_epochs": 1, "lr": 0.01 },
        "strategy": { "name": "fedavg" },
        "min_clients": 1,
        "fraction_fit": 1.0,
        "round_deadline_secs": 60,
    });
    let created = app.call(Method::POST, "/api/groups", Some(body), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let group = created.json["group_id"].as_i64().unwrap();
    let owner = created.json["owner_token"].as_str().unwrap().to_string();
    let code = created.json["join_code"].as_str().unwrap();
    let joined = app
        .call(
            Method::POST,
            "/api/groups/join",
            Some(json!({ "join_code": code, "name": "org" })),
            &[],
        )
        .await;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.json);
    let member = joined.json["member_token"].as_str().unwrap().to_string();
    let ready = app
        .as_program(
            &member,
            Method::POST,
            &format!("/api/groups/{group}/ready"),
            Some(json!({ "num_samples": 100 })),
        )
        .await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.json);
    if let Some(csv) = statistics_csv {
        let schema = serde_json::from_value(model_schema(&app, group, &owner).await).unwrap();
        let summary = Summary::from_table(&read_csv(csv.as_bytes()).unwrap(), &schema).unwrap();
        let r = app
            .as_program(
                &member,
                Method::POST,
                &format!("/api/groups/{group}/statistics"),
                Some(serde_json::to_value(&summary).unwrap()),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    }
    let started = app
        .as_program(
            &owner,
            Method::POST,
            &format!("/api/groups/{group}/start"),
            None,
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.json);
    let versions = app
        .as_program(
            &owner,
            Method::GET,
            &format!("/api/groups/{group}/versions"),
            None,
        )
        .await;
    let version = &versions.json["versions"][0];
    let version_id = version["id"].as_i64().unwrap();
    let spec: ModelSpec = serde_json::from_value(version["spec"].clone()).unwrap();
    let request = Request::builder()
        .uri(format!("/api/versions/{version_id}/weights"))
        .header("authorization", format!("Bearer {owner}"))
        .body(Body::empty())
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    let (weights, _) = weights::decode(&bytes, &spec.layout(), usize::MAX).unwrap();
    let d = Deployed {
        app,
        user,
        owner,
        version_id,
        spec,
        weights,
    };
    d.promote(name, version_id).await;
    d
}

/// The tabular schema the group was created with, as the owner sees it.
async fn model_schema(app: &TestApp, group: i64, owner: &str) -> Value {
    let g = app
        .as_program(owner, Method::GET, &format!("/api/groups/{group}"), None)
        .await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.json);
    g.json["model"]["schema"].clone()
}

async fn churn() -> Deployed {
    let csv = churn_csv(0..100);
    let options = InferOptions {
        target: Some("exited".into()),
        ..Default::default()
    };
    let schema = infer_schema(&read_csv(csv.as_bytes()).unwrap(), &options).unwrap();
    deploy(
        json!({ "kind": "tabular", "schema": schema, "hidden": [16, 8] }),
        "churn",
        Some(&csv),
    )
    .await
}

async fn digits() -> Deployed {
    let labels: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    deploy(
        json!({ "kind": "image_cnn", "labels": labels }),
        "digits",
        None,
    )
    .await
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= TOL, "worst difference {worst}");
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn error_message(r: &Raw) -> String {
    let j = r.json();
    assert!(r.status.is_client_error(), "{} {}", r.status, r.text());
    assert!(
        j["error"]["code"].is_string(),
        "not a JSON error: {}",
        r.text()
    );
    j["error"]["message"].as_str().unwrap().to_string()
}

fn png(img: image::GrayImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[tokio::test]
async fn health_and_server_metadata_are_public() {
    let app = TestApp::new().await;
    for path in ["/v2/health/live", "/v2/health/ready", "/v2"] {
        let r = app.call(Method::GET, path, None, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.json);
    }
    let r = app.call(Method::GET, "/v2", None, &[]).await;
    assert_eq!(r.json["name"], "b3o-edge");
    let r = app.call(Method::GET, "/v2/models/churn", None, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn csv_predictions_append_columns_and_match_burn() {
    let d = churn().await;
    let csv = churn_csv(200..240);
    let r = d
        .raw(
            Method::POST,
            "/api/predict/churn/csv",
            "text/csv",
            csv.clone().into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.content_type.starts_with("text/csv"), "{}", r.content_type);
    let out = r.text();
    let (sent, got): (Vec<&str>, Vec<&str>) = (csv.lines().collect(), out.lines().collect());
    assert_eq!(got.len(), sent.len());
    assert_eq!(
        got[0],
        format!("{},prediction_label,prediction_probability", sent[0])
    );
    // Identifiers, the target and `NA` spellings pass through untouched.
    for (g, s) in got.iter().zip(&sent).skip(1) {
        assert!(g.starts_with(&format!("{s},")), "{g} vs {s}");
    }

    let prep = d.spec.preprocessing.clone().unwrap();
    let (inputs, n) = prep.transform(&read_csv(csv.as_bytes()).unwrap()).unwrap();
    let positive = d.burn(&inputs, n);
    for (line, p) in got.iter().skip(1).zip(&positive) {
        let fields: Vec<&str> = line.split(',').collect();
        let (label, prob) = (
            fields[fields.len() - 2],
            fields[fields.len() - 1].parse::<f32>().unwrap(),
        );
        let (want_label, want_prob) = if *p >= 0.5 {
            (&d.spec.labels[1], *p)
        } else {
            (&d.spec.labels[0], 1.0 - p)
        };
        assert_eq!(label, want_label);
        assert!((prob - want_prob).abs() <= TOL, "{prob} vs {want_prob}");
    }
}

#[tokio::test]
async fn rows_and_v2_match_burn_and_versions_follow_promote_and_rollback() {
    let d = churn().await;
    let csv = churn_csv(300..310);
    let table = read_csv(csv.as_bytes()).unwrap();
    let prep = d.spec.preprocessing.clone().unwrap();
    let (inputs, n) = prep.transform(&table).unwrap();
    let want = d.burn(&inputs, n);

    // JSON rows of raw values, with `null` for a missing one.
    let rows: Vec<Value> = (0..n)
        .map(|i| {
            let cell = |c: &str| {
                table.column(c).unwrap().values[i]
                    .clone()
                    .map(Value::from)
                    .unwrap_or(Value::Null)
            };
            json!({ "age": cell("age"), "country": cell("country"), "balance": cell("balance") })
        })
        .collect();
    let r = d
        .post_json("/api/predict/churn/rows", json!({ "rows": rows }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let preds = r.json()["predictions"].as_array().unwrap().clone();
    let positive: Vec<f32> = preds
        .iter()
        .map(|p| p["probabilities"][&d.spec.labels[1]].as_f64().unwrap() as f32)
        .collect();
    assert_close(&positive, &want);
    assert_eq!(r.json()["model_version"], d.version_id.to_string());

    // KServe V2 on preprocessed inputs.
    let infer = |batch: usize| json!({ "id": "req-1", "inputs": [{ "name": "input", "shape": [batch, prep.input_dim()], "datatype": "FP32", "data": inputs[..batch * prep.input_dim()] }] });
    let r = d.post_json("/v2/models/churn/infer", infer(n)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(
        (j["model_name"].as_str(), j["id"].as_str()),
        (Some("churn"), Some("req-1"))
    );
    assert_eq!(j["outputs"][0]["shape"], json!([n, 1]));
    assert_close(&floats(&j["outputs"][0]["data"]), &want);

    let meta = d.get("/v2/models/churn").await.json();
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, prep.input_dim()]));
    assert_eq!(d.get("/v2/models/churn/ready").await.json()["ready"], true);

    // A second version of the same group (the registry has no way to make one without a
    // round, so it is inserted here with the same weights), promoted then rolled back.
    let v2: i64 = sqlx::query_scalar(
        "INSERT INTO model_versions (group_id, round, parent_id, weights_path, weights_sha256, size_bytes,
             num_params, spec_json)
         SELECT group_id, 1, id, weights_path, weights_sha256, size_bytes, num_params, spec_json
         FROM model_versions WHERE id = ? RETURNING id",
    )
    .bind(d.version_id)
    .fetch_one(&d.app.db)
    .await
    .unwrap();
    d.promote("churn", v2).await;
    let r = d.post_json("/v2/models/churn/infer", infer(1)).await;
    assert_eq!(r.json()["model_version"], v2.to_string());
    let old = d
        .post_json(
            &format!("/v2/models/churn/versions/{}/infer", d.version_id),
            infer(2),
        )
        .await;
    assert_eq!(old.status, StatusCode::OK, "{}", old.text());
    assert_eq!(old.json()["model_version"], d.version_id.to_string());
    assert_close(&floats(&old.json()["outputs"][0]["data"]), &want[..2]);
    let back = d
        .app
        .as_program(
            &d.owner,
            Method::POST,
            "/api/deployments/churn/rollback",
            None,
        )
        .await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.json);
    let r = d.post_json("/v2/models/churn/infer", infer(1)).await;
    assert_eq!(r.json()["model_version"], d.version_id.to_string());
    assert_eq!(
        d.get(&format!("/v2/models/churn/versions/{v2}"))
            .await
            .json()["versions"],
        json!([v2.to_string()])
    );
}

#[tokio::test]
async fn bad_tabular_inputs_get_clear_4xx() {
    let d = churn().await;
    let post_csv = |csv: &'static str| {
        d.raw(
            Method::POST,
            "/api/predict/churn/csv",
            "text/csv",
            csv.as_bytes().to_vec(),
        )
    };

    let m = error_message(&post_csv("customer_id,age,exited\nC1,30,1\n").await);
    assert!(m.contains("`country`") && m.contains("`balance`"), "{m}");
    let m = error_message(&post_csv("age,country,balance\n30,FR,10\nold,DE,20\n").await);
    assert!(
        m.contains("row 2") && m.contains("`age`") && m.contains("old"),
        "{m}"
    );
    error_message(&post_csv("").await);
    error_message(&post_csv("age,country,balance\n").await);

    let rows = |row: Value| {
        d.post_json(
            "/api/predict/churn/rows",
            json!({ "rows": [{ "age": 30, "country": "FR", "balance": 1 }, row] }),
        )
    };
    let m = error_message(&rows(json!({ "age": 30, "country": "FR" })).await);
    assert!(m.contains("row 2") && m.contains("`balance`"), "{m}");
    let m =
        error_message(&rows(json!({ "age": 30, "country": "FR", "balance": 1, "agee": 3 })).await);
    assert!(m.contains("row 2") && m.contains("`agee`"), "{m}");
    let m = error_message(&rows(json!({ "age": "x", "country": "FR", "balance": 1 })).await);
    assert!(m.contains("row 2") && m.contains("`age`"), "{m}");
    error_message(
        &d.post_json("/api/predict/churn/rows", json!({ "rows": [] }))
            .await,
    );
    error_message(
        &d.raw(
            Method::POST,
            "/api/predict/churn/rows",
            "application/json",
            b"{not json".to_vec(),
        )
        .await,
    );

    let v2 = |input: Value| d.post_json("/v2/models/churn/infer", json!({ "inputs": [input] }));
    let dim = d.spec.input_dim();
    let m = error_message(&v2(json!({ "name": "input", "shape": [1, dim + 1], "datatype": "FP32", "data": vec![0.0; dim + 1] })).await);
    assert!(m.contains("shape"), "{m}");
    let m = error_message(&v2(json!({ "name": "input", "shape": [2, dim], "datatype": "FP32", "data": vec![0.0; dim] })).await);
    assert!(m.contains("needs"), "{m}");
    let m = error_message(&v2(json!({ "name": "input", "shape": [1, dim], "datatype": "INT64", "data": vec![0; dim] })).await);
    assert!(m.contains("FP32"), "{m}");
    let m = error_message(
        &v2(json!({ "name": "x", "shape": [1, dim], "datatype": "FP32", "data": vec![0.0; dim] }))
            .await,
    );
    assert!(m.contains("`x`"), "{m}");
    let m = error_message(&v2(json!({ "name": "input", "shape": [1, dim], "datatype": "FP32", "data": vec!["a"; dim] })).await);
    assert!(m.contains("numbers"), "{m}");

    let r = d
        .post_json("/v2/models/nope/infer", json!({ "inputs": [] }))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = d.get("/v2/models/churn/versions/999").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = d.get("/v2/models/churn/versions/abc").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let m = error_message(
        &d.raw(
            Method::POST,
            "/api/predict/churn/image",
            "image/png",
            png(image::GrayImage::new(28, 28)),
        )
        .await,
    );
    assert!(m.contains("/api/predict/churn/csv"), "{m}");

    let huge = vec![b'1'; b3o_server::inference::MAX_BODY_BYTES + 1];
    let r = d
        .raw(Method::POST, "/api/predict/churn/csv", "text/csv", huge)
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn digit_images_match_burn_and_bad_images_get_4xx() {
    let d = digits().await;
    // A light vertical stroke on black, 56x56: a "1" of sorts.
    let img = image::GrayImage::from_fn(56, 56, |x, y| {
        image::Luma([if (26..30).contains(&x) && (8..48).contains(&y) {
            255
        } else {
            0
        }])
    });
    let bytes = png(img);
    let r = d
        .raw(
            Method::POST,
            "/api/predict/digits/image",
            "image/png",
            bytes.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    let pixels = b3o_models::image::decode_image(&bytes).unwrap();
    let want = d.burn(&pixels, 1);
    let got: Vec<f32> = d
        .spec
        .labels
        .iter()
        .map(|l| j["probabilities"][l].as_f64().unwrap() as f32)
        .collect();
    assert_close(&got, &want);
    let best = want
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    assert_eq!(j["label"], d.spec.labels[best]);

    // V2 with the image shape, two rows.
    let mut two = pixels.clone();
    two.extend(pixels.iter().map(|p| 1.0 - p));
    let r = d
        .post_json("/v2/models/digits/infer", json!({ "inputs": [{ "name": "input", "shape": [2, 1, 28, 28], "datatype": "FP32", "data": two }] }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["outputs"][0]["shape"], json!([2, 10]));
    assert_close(&floats(&r.json()["outputs"][0]["data"]), &d.burn(&two, 2));

    let post = |bytes: Vec<u8>| {
        d.raw(
            Method::POST,
            "/api/predict/digits/image",
            "image/png",
            bytes,
        )
    };
    let m = error_message(&post(b"GIF89a not supported".to_vec()).await);
    assert!(m.contains("PNG or JPEG"), "{m}");
    let m = error_message(&post(png(image::GrayImage::new(2, 2))).await);
    assert!(m.contains("2x2"), "{m}");
    let mut truncated = bytes.clone();
    truncated.truncate(40);
    error_message(&post(truncated).await);
    let m = error_message(
        &d.raw(
            Method::POST,
            "/api/predict/digits/csv",
            "text/csv",
            b"a\n1\n".to_vec(),
        )
        .await,
    );
    assert!(m.contains("/api/predict/digits/image"), "{m}");
}

#[tokio::test]
async fn metrics_count_runs_in_prometheus_format() {
    let d = digits().await;
    let pixels = vec![0.5f32; 784];
    let r = d
        .post_json("/v2/models/digits/infer", json!({ "inputs": [{ "name": "input", "shape": [1, 784], "datatype": "FP32", "data": pixels }] }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = d.app.call(Method::GET, "/metrics", None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let request = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let response = d.app.router.clone().oneshot(request).await.unwrap();
    let text = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&text);
    let version = d.version_id.to_string();
    assert!(
        text.contains(&format!(
            "b3o_inference_rows_total{{version=\"{version}\"}}"
        )),
        "{text}"
    );
    assert!(text.contains("b3o_inference_run_seconds_bucket"), "{text}");
}
