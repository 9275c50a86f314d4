//! Drift monitoring (issue #18): a deployment fed rows drawn like its training data flags
//! nothing; fed a shifted numeric column and a new category it flags exactly those two, in
//! the API, the deployment's view, the metrics and the history. No row is kept.

use axum::http::{Method, StatusCode};
use b3o_models::ModelSpec;
use b3o_models::preprocess::{PreprocessOptions, PreprocessSpec};
use b3o_models::protocol::ModelTemplate;
use b3o_models::stats::Summary;
use b3o_models::tabular::{InferOptions, infer_schema, read_csv};
use b3o_server::demo;
use b3o_server::demo::churn_data::{TRAINING_SEED, churn_csv};
use b3o_server::registry::sharing::Sharing;
use serde_json::{Value, json};

use crate::inference::{Server, User, publish_request};
use crate::support::shifted_ages_and_countries;

/// The demo churn data: `rows` customers drawn with `seed`.
fn customers(seed: u64, rows: usize) -> String {
    churn_csv(seed, rows)
}

async fn deploy(window_rows: u64) -> (Server, User) {
    let server = Server::with_runtime(b3o_server::state::RuntimeSettings {
        monitoring: b3o_server::monitoring::Settings {
            window_rows,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let owner = server.register("owner@example.org").await;
    let table = read_csv(customers(TRAINING_SEED, 2000).as_bytes()).unwrap();
    let options = InferOptions {
        target: Some("Exited".into()),
        ..Default::default()
    };
    let schema = infer_schema(&table, &options).unwrap();
    let summary = Summary::from_table(&table, &schema).unwrap();
    let prep = PreprocessSpec::build(&schema, &summary, &PreprocessOptions::default()).unwrap();
    let spec = ModelSpec::churn_b3o(prep);
    let mut p = publish_request(
        "churn",
        Some(owner.id),
        ModelTemplate::Tabular {
            schema,
            hidden: None,
        },
        spec.clone(),
        spec.init_weights(3),
        Sharing {
            public: true,
            allowed_origins: vec![],
            embed_anywhere: false,
        },
    );
    p.reference = Some(summary);
    demo::publish(&server.state, p).await.unwrap();
    (server, owner)
}

async fn predict_csv(server: &Server, owner: &User, csv: String) {
    let r = server
        .as_user(
            owner,
            Method::POST,
            "/api/predict/churn/csv",
            "text/csv",
            csv.into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

async fn drift(server: &Server, owner: &User) -> Value {
    let r = server
        .as_user(
            owner,
            Method::GET,
            "/api/deployments/churn/drift",
            "",
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

/// The feature `name` of a drift report.
fn feature<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no feature `{name}` in {report}"))
}

/// The features a drift report compared, in its order.
fn names(report: &Value) -> Vec<&str> {
    report["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect()
}

fn drifted(report: &Value) -> Vec<String> {
    let mut out: Vec<String> = report["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["drifted"] == true)
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shifted_column_and_a_new_category_are_flagged_and_nothing_else() {
    let (server, owner) = deploy(600).await;

    // Rows drawn like the training data (another seed): no drift.
    predict_csv(&server, &owner, customers(99, 600)).await;
    let view = drift(&server, &owner).await;
    assert_eq!(view["has_reference"], true, "{view}");
    let current = &view["current"];
    assert_eq!(current["rows"], 600, "{current}");
    assert_eq!(current["enough_rows"], true);
    assert_eq!(drifted(current), Vec::<String>::new(), "{current:#}");
    assert_eq!(current["drifting"], false);
    // Every feature the model reads was compared; identifiers were not.
    let names = names(current);
    assert!(
        names.contains(&"Age") && names.contains(&"Geography"),
        "{names:?}"
    );
    assert!(!names.contains(&"CustomerId") && !names.contains(&"Surname"));
    // Predictions: the predicted labels against the training labels, and how sure.
    let predictions = &view["predictions"];
    assert_eq!(
        predictions["drift"]["name"], "(prediction)",
        "{predictions}"
    );
    let confidence: f64 = predictions["confidence"]["current"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((confidence - 1.0).abs() < 1e-9, "{predictions}");
    let listed = server
        .as_user(&owner, Method::GET, "/api/deployments/churn", "", vec![])
        .await
        .json();
    assert_eq!(listed["drifting"], false, "{listed}");

    // The same customers older by 25 years, a third of them from a new country: the 600
    // rows of the first window closed it, so these fill the next one.
    predict_csv(
        &server,
        &owner,
        shifted_ages_and_countries(&customers(100, 600)),
    )
    .await;
    let view = drift(&server, &owner).await;
    let current = &view["current"];
    assert_eq!(current["rows"], 600, "{current}");
    assert_eq!(drifted(current), ["Age", "Geography"], "{current:#}");
    let geo = feature(current, "Geography");
    assert_eq!(geo["unseen"][0]["value"], "Atlantis", "{geo}");
    assert_eq!(geo["unseen"][0]["count"], 200);
    let age = feature(current, "Age");
    assert!(age["psi"].as_f64().unwrap() > 0.2, "{age}");
    assert_eq!(
        age["histogram"]["labels"].as_array().unwrap().len(),
        age["histogram"]["current"].as_array().unwrap().len()
    );
    // 2 of the 10 features: under the default 50 % share the data set is not drifting...
    assert_eq!(current["drifting"], false);
    // ... and at a 20 % share (the owner's threshold) it is, in the catalogue too.
    let r = server
        .json_as(
            &owner,
            Method::PUT,
            "/api/deployments/churn/drift/settings",
            json!({"settings": {"drift_share": 0.2}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let view = drift(&server, &owner).await;
    assert_eq!(view["current"]["drifting"], true, "{}", view["current"]);
    let listed = server
        .anon(Method::GET, "/api/deployments/churn", "", vec![])
        .await
        .json();
    assert_eq!(listed["drifting"], true, "{listed}");

    // The history: the shifted window (open) first, then the closed one that was fine.
    let history = view["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["drifted"], json!(["Geography", "Age"]));
    assert_eq!(history[1]["drifted"], json!([]));
    assert!(history[0]["closed_at"].is_null() && history[1]["closed_at"].is_string());

    // Prometheus: the public deployment by name, its worst features' PSI.
    let metrics = server
        .anon(Method::GET, "/metrics", "", vec![])
        .await
        .text();
    let line = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(line("b3o_drift_drifting{deployment=\"churn\"}"), 1.0);
    assert!((line("b3o_drift_share{deployment=\"churn\"}") - 0.2).abs() < 1e-9);
    assert!(line("b3o_drift_feature_psi{deployment=\"churn\",feature=\"Age\"}") > 0.2);

    // What is stored: counts and sketches; no customer's surname or id anywhere.
    let stored: Vec<String> = sqlx::query_scalar("SELECT summary_json FROM drift_windows")
        .fetch_all(&server.state.db)
        .await
        .unwrap();
    let sample = customers(99, 3);
    let surname = sample.lines().nth(1).unwrap().split(',').nth(2).unwrap();
    assert!(
        stored
            .iter()
            .all(|s| !s.contains(surname) && !s.contains("Surname"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_v2_tensors_and_partners_checks_reach_the_view_and_outsiders_do_not() {
    let (server, owner) = deploy(10_000).await;
    let csv = customers(7, 60);
    let table = read_csv(csv.as_bytes()).unwrap();
    // JSON rows of raw values.
    let rows: Vec<Value> = (0..40)
        .map(|r| {
            let mut row = serde_json::Map::new();
            for c in &table.columns {
                if !["Exited", "RowNumber", "CustomerId", "Surname"].contains(&c.name.as_str()) {
                    row.insert(c.name.clone(), c.values[r].clone().into());
                }
            }
            Value::Object(row)
        })
        .collect();
    let r = server
        .json_as(
            &owner,
            Method::POST,
            "/api/predict/churn/rows",
            json!({ "rows": rows }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // V2 tensors: preprocessed rows, mapped back to raw units for the window.
    let package = server
        .as_user(
            &owner,
            Method::GET,
            "/api/deployments/churn/package",
            "",
            vec![],
        )
        .await
        .json();
    let spec: ModelSpec = serde_json::from_value(package["spec"].clone()).unwrap();
    let (inputs, n) = spec
        .preprocessing
        .as_ref()
        .unwrap()
        .transform(&b3o_models::tabular::read_csv(customers(8, 20).as_bytes()).unwrap())
        .unwrap();
    let r = server
        .json_as(
            &owner,
            Method::POST,
            "/v2/models/churn/infer",
            json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [n, inputs.len() / n], "data": inputs}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let view = drift(&server, &owner).await;
    assert_eq!(view["current"]["rows"], 60, "{}", view["current"]);
    let age = feature(&view["current"], "Age").clone();
    assert_eq!(age["current_rows"], 60, "{age}");

    // A member's own check: only its summary is sent; it is listed with its name.
    let reference = server
        .as_user(
            &owner,
            Method::GET,
            "/api/deployments/churn/drift/reference",
            "",
            vec![],
        )
        .await;
    assert_eq!(reference.status, StatusCode::OK, "{}", reference.text());
    let reference = reference.json();
    let version_id = reference["version_id"].as_i64().unwrap();
    let mine = read_csv(shifted_ages_and_countries(&customers(5, 300)).as_bytes()).unwrap();
    let schema = infer_schema(
        &mine,
        &InferOptions {
            target: Some("Exited".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let summary = Summary::from_table(&mine, &schema).unwrap();
    let r = server
        .json_as(
            &owner,
            Method::POST,
            "/api/deployments/churn/drift/partner",
            json!({"version_id": version_id, "summary": summary}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        r.json()["drifted"],
        json!(["Geography", "Age"]),
        "{}",
        r.text()
    );
    let view = drift(&server, &owner).await;
    assert_eq!(view["partners"][0]["member"], r.json()["member"]);
    assert_eq!(view["partners"].as_array().unwrap().len(), 1);
    // A stale version: 409 naming the one served.
    let r = server
        .json_as(
            &owner,
            Method::POST,
            "/api/deployments/churn/drift/partner",
            json!({"version_id": version_id + 100, "summary": summary}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert!(r.error().contains(&format!("version {version_id}")));

    // Outsiders see nothing, even of a public model: the reference describes the members'
    // data.
    let outsider = server.register("outsider@example.org").await;
    for path in [
        "/api/deployments/churn/drift",
        "/api/deployments/churn/drift/reference",
    ] {
        let r = server
            .as_user(&outsider, Method::GET, path, "", vec![])
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text());
        let r = server.anon(Method::GET, path, "", vec![]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.text());
    }
    // Bad thresholds: 400 naming the field.
    let r = server
        .json_as(
            &owner,
            Method::PUT,
            "/api/deployments/churn/drift/settings",
            json!({"settings": {"p_value": 3}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("p_value"), "{}", r.text());
}

/// An image model's inputs are summarised by per-image statistics against the training
/// images' (the digits demo's shipped reference): uniform noise is far brighter than digits.
#[tokio::test(flavor = "multi_thread")]
async fn noise_sent_to_the_digits_model_drifts_in_brightness() {
    let server = Server::new().await;
    let owner = server.register("owner@example.org").await;
    let mut p = demo::digits().unwrap();
    p.owner_user_id = Some(owner.id);
    p.sharing.public = false;
    demo::publish(&server.state, p).await.unwrap();
    let n = 40usize;
    let pixels: Vec<f32> = (0..n * 784)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let r = server
        .json_as(
            &owner,
            Method::POST,
            "/v2/models/digits/infer",
            json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [n, 1, 28, 28], "data": pixels}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = server
        .as_user(
            &owner,
            Method::GET,
            "/api/deployments/digits/drift",
            "",
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let view = r.json();
    let current = &view["current"];
    assert_eq!(current["rows"], 40, "{view}");
    let names = names(current);
    assert_eq!(names, ["mean_intensity", "border_share"]);
    assert!(
        drifted(current).contains(&"mean_intensity".to_string()),
        "{current:#}"
    );
    // Predictions against the training labels (ten digits).
    assert_eq!(
        view["predictions"]["drift"]["histogram"]["labels"]
            .as_array()
            .unwrap()
            .len(),
        10,
        "{}",
        view["predictions"]
    );
}

/// Windows closed by rows under heavy traffic do not grow the database without bound: the
/// newest 200 are kept (what a view reads).
#[tokio::test(flavor = "multi_thread")]
async fn closed_windows_are_pruned_to_the_newest_200() {
    let (server, owner) = deploy(2).await;
    let csv = customers(11, 2);
    for _ in 0..230 {
        predict_csv(&server, &owner, csv.clone()).await;
    }
    let view = drift(&server, &owner).await;
    assert_eq!(
        view["history"].as_array().unwrap().len(),
        48,
        "the view lists 48"
    );
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drift_windows")
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    assert_eq!(stored, 200);
}

/// A batch job's rows count in the deployment's window like the codeless routes' (here the
/// shifted customers, flagged as such).
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_jobs_rows_count_in_the_window() {
    let (server, owner) = deploy(10_000).await;
    let csv = shifted_ages_and_countries(&customers(21, 900));
    let boundary = "drift-job-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nchurn\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.csv\"\r\n\
             Content-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(csv.as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = server
        .as_user(
            &owner,
            Method::POST,
            "/api/jobs",
            &format!("multipart/form-data; boundary={boundary}"),
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    for _ in 0..600 {
        let j = server
            .as_user(&owner, Method::GET, &format!("/api/jobs/{id}"), "", vec![])
            .await
            .json();
        if j["status"] == "succeeded" {
            break;
        }
        assert_ne!(j["status"], "failed", "{j}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let view = drift(&server, &owner).await;
    assert_eq!(view["current"]["rows"], 900, "{}", view["current"]);
    assert_eq!(drifted(&view["current"]), ["Age", "Geography"]);
}
