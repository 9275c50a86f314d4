//! The Open Inference Protocol over gRPC (`b3o_server::inference::grpc`), served on a real
//! TCP port over the state of an in-process app (`inference::Server`), and called with tonic's
//! client codec over hyper's HTTP/2 client: the same numbers as the HTTP JSON route, the same
//! authorisation (public models for anyone, private ones for their group's API tokens), clear
//! `INVALID_ARGUMENT`s for hostile inputs with the server still serving, and the statistics
//! extension counting HTTP, gRPC and codeless calls alike.

use std::time::Duration;

use axum::http::uri::PathAndQuery;
use axum::http::{Method, StatusCode};
use b3o_models::tabular::read_csv;
use b3o_server::inference::grpc::proto::{
    InferInputTensor, InferTensorContents, ModelInferRequest, ModelInferResponse,
    ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse,
    ModelStatisticsRequest, ModelStatisticsResponse, RepositoryIndexRequest,
    RepositoryIndexResponse, ServerLiveRequest, ServerLiveResponse, ServerMetadataRequest,
    ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use b3o_server::inference::grpc::{self, GrpcLimits};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tonic::{Code, Status};

use crate::inference::{Deployed, Server, assert_close, churn, churn_csv};

type Channel = Client<HttpConnector, tonic::body::Body>;

/// A gRPC client of a server's `inference.GRPCInferenceService`.
struct GrpcClient {
    grpc: tonic::client::Grpc<Channel>,
}

/// Serves gRPC over `server`'s state on a free port until the test ends; a client of it.
async fn start(server: &Server) -> GrpcClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = GrpcLimits::new(&Default::default(), Duration::from_secs(1));
    tokio::spawn(grpc::serve(
        listener,
        server.state.clone(),
        limits,
        std::future::pending(),
    ));
    client(&addr.to_string())
}

/// A client of the gRPC service at `addr` (`host:port`).
fn client(addr: &str) -> GrpcClient {
    let channel: Channel = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let origin = format!("http://{addr}").parse().unwrap();
    GrpcClient {
        grpc: tonic::client::Grpc::with_origin(channel, origin),
    }
}

impl GrpcClient {
    /// Calls `method` with `message`, as the holder of `token` if any.
    async fn call<M, R>(
        &mut self,
        method: &str,
        message: M,
        token: Option<&str>,
    ) -> Result<R, Status>
    where
        M: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let mut request = tonic::Request::new(message);
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        let path = PathAndQuery::try_from(format!("/{}/{method}", grpc::SERVICE)).unwrap();
        let codec = tonic_prost::ProstCodec::<M, R>::default();
        self.grpc
            .unary(request, path, codec)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn infer(
        &mut self,
        request: ModelInferRequest,
        token: Option<&str>,
    ) -> Result<ModelInferResponse, Status> {
        self.call("ModelInfer", request, token).await
    }
}

/// Preprocessed inputs of churn rows (the model's FP32 input), their count and row length.
fn churn_inputs(d: &Deployed, rows: std::ops::Range<usize>) -> (Vec<f32>, usize, usize) {
    let prep = d.spec.preprocessing.clone().unwrap();
    let (inputs, n) = prep
        .transform(&read_csv(churn_csv(rows).as_bytes()).unwrap())
        .unwrap();
    (inputs, n, prep.input_dim())
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A request for `churn` with one input `input` of `shape`.
fn request(shape: Vec<i64>, data: Data) -> ModelInferRequest {
    let mut input = InferInputTensor {
        name: "input".into(),
        datatype: "FP32".into(),
        shape,
        ..Default::default()
    };
    let mut raw_input_contents = Vec::new();
    match data {
        Data::Raw(bytes) => raw_input_contents.push(bytes),
        Data::Contents(values) => {
            input.contents = Some(InferTensorContents {
                fp32_contents: values,
                ..Default::default()
            });
        }
    }
    ModelInferRequest {
        model_name: "churn".into(),
        id: "grpc-1".into(),
        inputs: vec![input],
        raw_input_contents,
        ..Default::default()
    }
}

enum Data {
    Raw(Vec<u8>),
    Contents(Vec<f32>),
}

fn dims(n: usize, dim: usize) -> Vec<i64> {
    vec![n as i64, dim as i64]
}

/// The HTTP JSON V2 route's outputs for `inputs`, anonymously.
async fn http_outputs(d: &Deployed, inputs: &[f32], n: usize, dim: usize) -> Vec<f32> {
    let body = json!({ "inputs": [{ "name": "input", "shape": [n, dim], "datatype": "FP32",
        "data": inputs }] });
    let r = d
        .server
        .anon(
            Method::POST,
            "/v2/models/churn/infer",
            "application/json",
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

async fn public_churn() -> Deployed {
    let d = churn().await;
    d.share(true, &[]).await;
    d
}

#[tokio::test]
async fn grpc_infer_raw_and_typed_gives_the_http_routes_numbers() {
    let d = public_churn().await;
    let mut c = start(&d.server).await;
    let (inputs, n, dim) = churn_inputs(&d, 400..407);
    let want = http_outputs(&d, &inputs, n, dim).await;
    assert_close(&want, &d.burn(&inputs, n));

    // Raw in (tritonclient's default), raw out.
    for batch in [1, n] {
        let values = &inputs[..batch * dim];
        let r = c
            .infer(request(dims(batch, dim), Data::Raw(le_bytes(values))), None)
            .await
            .unwrap();
        assert_eq!(r.model_name, "churn");
        assert_eq!(r.model_version, d.version_id.to_string());
        assert_eq!(r.id, "grpc-1");
        assert_eq!(r.outputs.len(), 1);
        assert_eq!(r.outputs[0].name, "output");
        assert_eq!(r.outputs[0].datatype, "FP32");
        let width = want.len() / n;
        assert_eq!(r.outputs[0].shape, dims(batch, width));
        assert!(r.outputs[0].contents.is_none());
        assert_eq!(r.raw_output_contents.len(), 1);
        assert_close(&from_le(&r.raw_output_contents[0]), &want[..batch * width]);
    }

    // Typed contents in, typed contents out.
    let r = c
        .infer(request(dims(n, dim), Data::Contents(inputs.clone())), None)
        .await
        .unwrap();
    assert!(r.raw_output_contents.is_empty());
    let got = r.outputs[0].contents.clone().unwrap().fp32_contents;
    assert_close(&got, &want);

    // A pinned version, as /v2/models/{name}/versions/{v}.
    let mut pinned = request(dims(n, dim), Data::Raw(le_bytes(&inputs)));
    pinned.model_version = d.version_id.to_string();
    let r = c.infer(pinned, None).await.unwrap();
    assert_close(&from_le(&r.raw_output_contents[0]), &want);
    let mut unknown = request(dims(n, dim), Data::Raw(le_bytes(&inputs)));
    unknown.model_version = "999999".into();
    let e = c.infer(unknown, None).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("no version `999999`"), "{e:?}");

    // Health, metadata, readiness and the repository index.
    let live: ServerLiveResponse = c
        .call("ServerLive", ServerLiveRequest {}, None)
        .await
        .unwrap();
    assert!(live.live);
    let ready: ServerReadyResponse = c
        .call("ServerReady", ServerReadyRequest {}, None)
        .await
        .unwrap();
    assert!(ready.ready);
    let meta: ServerMetadataResponse = c
        .call("ServerMetadata", ServerMetadataRequest {}, None)
        .await
        .unwrap();
    let http_meta = d.server.anon(Method::GET, "/v2", "", vec![]).await.json();
    assert_eq!(meta.name, "b3o-edge");
    assert_eq!(json!(meta.extensions), http_meta["extensions"]);
    assert!(meta.extensions.contains(&"statistics".to_string()));
    let model: ModelMetadataResponse = c
        .call(
            "ModelMetadata",
            ModelMetadataRequest {
                name: "churn".into(),
                version: String::new(),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(model.versions, [d.version_id.to_string()]);
    assert_eq!(model.inputs[0].name, "input");
    assert_eq!(model.inputs[0].shape, [-1, dim as i64]);
    assert_eq!(model.outputs[0].shape[0], -1);
    let ready: ModelReadyResponse = c
        .call(
            "ModelReady",
            ModelReadyRequest {
                name: "churn".into(),
                version: String::new(),
            },
            None,
        )
        .await
        .unwrap();
    assert!(ready.ready);
    let index: RepositoryIndexResponse = c
        .call("RepositoryIndex", RepositoryIndexRequest::default(), None)
        .await
        .unwrap();
    let names: Vec<(&str, &str, &str)> = index
        .models
        .iter()
        .map(|m| (m.name.as_str(), m.version.as_str(), m.state.as_str()))
        .collect();
    let version = d.version_id.to_string();
    assert_eq!(names, [("churn", version.as_str(), "READY")]);

    // Methods of the service that B3O Edge does not serve, and other services.
    for method in ["ModelStreamInfer", "ModelConfig", "RepositoryModelLoad"] {
        let e = c
            .call::<_, ServerLiveResponse>(method, ServerLiveRequest {}, None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unimplemented, "{method}: {e:?}");
    }
}

#[tokio::test]
async fn private_models_need_a_member_token_over_grpc_too() {
    let d = churn().await;
    let mut c = start(&d.server).await;
    let (inputs, n, dim) = churn_inputs(&d, 10..13);
    let call = || request(dims(n, dim), Data::Raw(le_bytes(&inputs)));

    // Anonymous: as for a name that is not deployed, 401's code and message.
    let e = c.infer(call(), None).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let http = d
        .server
        .anon(Method::GET, "/v2/models/churn", "", vec![])
        .await;
    assert_eq!(http.status, StatusCode::UNAUTHORIZED);
    assert_eq!(e.message(), http.error());
    let mut nowhere = call();
    nowhere.model_name = "nowhere".into();
    let e2 = c.infer(nowhere, None).await.unwrap_err();
    assert_eq!(e2.code(), Code::Unauthenticated);
    // A bad token: refused before the message is looked at.
    let e = c.infer(call(), Some("b3o_not-a-token")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("API token"), "{e:?}");
    // Someone outside the group: not found, like a name that is not deployed.
    let stranger = d.server.register("grpc-stranger@example.org").await;
    let e = c.infer(call(), Some(&stranger.token)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("`churn`"), "{e:?}");
    let e = c
        .call::<_, ModelMetadataResponse>(
            "ModelMetadata",
            ModelMetadataRequest {
                name: "churn".into(),
                version: String::new(),
            },
            Some(&stranger.token),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let index: RepositoryIndexResponse = c
        .call(
            "RepositoryIndex",
            RepositoryIndexRequest::default(),
            Some(&stranger.token),
        )
        .await
        .unwrap();
    assert!(index.models.is_empty());

    // A member of the group (its owner) with an API token: served, the numbers of burn.
    let r = c.infer(call(), Some(&d.owner.token)).await.unwrap();
    assert_close(&from_le(&r.raw_output_contents[0]), &d.burn(&inputs, n));
    let index: RepositoryIndexResponse = c
        .call(
            "RepositoryIndex",
            RepositoryIndexRequest::default(),
            Some(&d.owner.token),
        )
        .await
        .unwrap();
    assert_eq!(index.models.len(), 1);
    assert_eq!(index.models[0].name, "churn");
}

#[tokio::test]
async fn hostile_grpc_inputs_are_invalid_arguments_and_the_server_keeps_serving() {
    let d = public_churn().await;
    let mut c = start(&d.server).await;
    let (inputs, n, dim) = churn_inputs(&d, 20..24);
    let row = le_bytes(&inputs[..dim]);
    let max_rows = d.server.state.inference.max_rows;

    let mut two_inputs = request(dims(1, dim), Data::Raw(row.clone()));
    two_inputs.inputs.push(two_inputs.inputs[0].clone());
    two_inputs.raw_input_contents.push(row.clone());
    let mut renamed = request(dims(1, dim), Data::Raw(row.clone()));
    renamed.inputs[0].name = "features".into();
    let mut int64 = request(dims(1, dim), Data::Raw(row.clone()));
    int64.inputs[0].datatype = "INT64".into();
    let mut both = request(dims(1, dim), Data::Raw(row.clone()));
    both.inputs[0].contents = Some(InferTensorContents {
        fp32_contents: inputs[..dim].to_vec(),
        ..Default::default()
    });
    let mut nan = inputs[..dim].to_vec();
    nan[0] = f32::NAN;
    let mut typed_wrong = request(dims(1, dim), Data::Contents(vec![]));
    typed_wrong.inputs[0].contents = Some(InferTensorContents {
        int64_contents: vec![1; dim],
        ..Default::default()
    });
    let short = format!("needs {} values, data has {dim}", 2 * dim);
    let too_many = format!("at most {max_rows} rows");
    let cases: Vec<(&str, ModelInferRequest, &str)> = vec![
        (
            "a shape whose product overflows",
            request(vec![i64::MAX, dim as i64], Data::Raw(row.clone())),
            "too large",
        ),
        (
            "a shape that is not the model's",
            request(vec![1, 1 << 40, 1 << 40], Data::Raw(row.clone())),
            "does not match",
        ),
        (
            "a negative batch",
            request(vec![-1, dim as i64], Data::Raw(row.clone())),
            "does not match",
        ),
        (
            "raw bytes for one row, a shape of two",
            request(dims(2, dim), Data::Raw(row.clone())),
            &short,
        ),
        (
            "raw bytes that are not whole FP32 values",
            request(dims(1, dim), Data::Raw(row[..row.len() - 1].to_vec())),
            "not a whole number of FP32",
        ),
        (
            "fewer typed values than the shape",
            request(dims(n, dim), Data::Contents(inputs[..dim].to_vec())),
            "data has",
        ),
        (
            "more rows than --max-rows-per-request",
            request(
                dims(max_rows + 1, dim),
                Data::Raw(vec![0; (max_rows + 1) * dim * 4]),
            ),
            &too_many,
        ),
        (
            "both raw and typed contents",
            both,
            "both `contents` and `raw_input_contents`",
        ),
        ("an unknown input name", renamed, "unknown input `features`"),
        ("two inputs", two_inputs, "exactly one input"),
        ("another datatype", int64, "FP32"),
        (
            "a value that is not finite",
            request(dims(1, dim), Data::Raw(le_bytes(&nan))),
            "not a finite FP32",
        ),
        (
            "data in the wrong typed field",
            typed_wrong,
            "fp32_contents",
        ),
    ];
    for (what, req, says) in cases {
        let e = c.infer(req, None).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert!(e.message().contains(says), "{what}: {e:?}");
    }

    // A message over the HTTP body limit (16 MiB): refused whole.
    let huge = request(dims(1, dim), Data::Raw(vec![0; 17 << 20]));
    let e = c.infer(huge, None).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("larger than"), "{e:?}");
    // Not a protobuf message at all.
    let e = c
        .call::<_, ModelInferResponse>("ModelInfer", Garbage::default(), None)
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Ok);

    // Still serving, with the right numbers.
    let r = c
        .infer(request(dims(n, dim), Data::Raw(le_bytes(&inputs))), None)
        .await
        .unwrap();
    assert_close(&from_le(&r.raw_output_contents[0]), &d.burn(&inputs, n));
    let stats = http_stats(&d, "/v2/models/churn/stats").await;
    assert_eq!(
        stats["model_stats"][0]["inference_stats"]["success"]["count"],
        1
    );
    // The refusals that reached the model are its failures; the ones tonic refused before
    // decoding (the 17 MiB message, the garbage) are not.
    assert_eq!(
        stats["model_stats"][0]["inference_stats"]["fail"]["count"],
        13
    );
}

/// Bytes that are not a `ModelInferRequest`: field 5 (`inputs`) as a varint.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbage {
    #[prost(uint64, tag = "5")]
    inputs: u64,
}

async fn http_stats(d: &Deployed, path: &str) -> Value {
    let r = d.server.anon(Method::GET, path, "", vec![]).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
    r.json()
}

#[tokio::test]
async fn statistics_count_http_grpc_and_codeless_calls() {
    let d = public_churn().await;
    let mut c = start(&d.server).await;
    let (inputs, n, dim) = churn_inputs(&d, 50..53);
    assert_eq!(n, 3);
    let stats_request = || ModelStatisticsRequest {
        name: "churn".into(),
        version: String::new(),
    };

    // Never called: one entry, the version served, all zeros.
    let before = http_stats(&d, "/v2/models/churn/stats").await;
    assert_eq!(before["model_stats"].as_array().unwrap().len(), 1);
    assert_eq!(before["model_stats"][0]["name"], "churn");
    assert_eq!(
        before["model_stats"][0]["version"],
        d.version_id.to_string()
    );
    assert_eq!(before["model_stats"][0]["inference_count"], 0);
    assert_eq!(before["model_stats"][0]["last_inference"], 0);

    // HTTP V2 (3 rows), gRPC (1 row, through the batcher), codeless rows (2 rows), and one
    // gRPC call that fails on its input.
    http_outputs(&d, &inputs, n, dim).await;
    c.infer(
        request(dims(1, dim), Data::Raw(le_bytes(&inputs[..dim]))),
        None,
    )
    .await
    .unwrap();
    let rows = json!({ "rows": [
        { "age": 30, "country": "FR", "balance": 10.5 },
        { "age": 40, "country": "DE", "balance": null },
    ] });
    let r = d
        .server
        .anon(
            Method::POST,
            "/api/predict/churn/rows",
            "application/json",
            rows.to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let e = c
        .infer(
            request(dims(2, dim), Data::Raw(le_bytes(&inputs[..dim]))),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let after = http_stats(&d, "/v2/models/churn/stats").await;
    let m = &after["model_stats"][0];
    assert_eq!(m["inference_count"], 6, "{after}");
    assert_eq!(m["execution_count"], 3, "{after}");
    assert!(m["last_inference"].as_u64().unwrap() > 0);
    let s = &m["inference_stats"];
    assert_eq!(s["success"]["count"], 3, "{after}");
    assert!(s["success"]["ns"].as_u64().unwrap() > 0);
    assert_eq!(s["fail"]["count"], 1, "{after}");
    assert_eq!(s["queue"]["count"], 3);
    assert_eq!(s["compute_infer"]["count"], 3);
    assert!(s["compute_infer"]["ns"].as_u64().unwrap() > 0);
    for unmeasured in ["compute_input", "compute_output"] {
        assert_eq!(s[unmeasured]["ns"], 0);
    }
    assert_eq!(m["batch_stats"], json!([]));

    // gRPC's ModelStatistics: the same numbers (read after the HTTP ones: nothing ran since).
    let g: ModelStatisticsResponse = c
        .call("ModelStatistics", stats_request(), None)
        .await
        .unwrap();
    assert_eq!(g.model_stats.len(), 1);
    let gm = &g.model_stats[0];
    assert_eq!(gm.name, "churn");
    assert_eq!(gm.inference_count, 6);
    assert_eq!(gm.execution_count, 3);
    assert_eq!(gm.last_inference, m["last_inference"].as_u64().unwrap());
    let gs = gm.inference_stats.clone().unwrap();
    assert_eq!(gs.success.unwrap().count, 3);
    assert_eq!(gs.success.unwrap().ns, s["success"]["ns"].as_u64().unwrap());
    assert_eq!(gs.fail.unwrap().count, 1);
    // Every model the caller may see, without a name; a pinned version.
    let all: ModelStatisticsResponse = c
        .call("ModelStatistics", ModelStatisticsRequest::default(), None)
        .await
        .unwrap();
    assert_eq!(all, g);
    let pinned: ModelStatisticsResponse = c
        .call(
            "ModelStatistics",
            ModelStatisticsRequest {
                name: "churn".into(),
                version: d.version_id.to_string(),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(pinned, g);
    let e = c
        .call::<_, ModelStatisticsResponse>(
            "ModelStatistics",
            ModelStatisticsRequest {
                name: "nowhere".into(),
                version: String::new(),
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

/// `b3o serve --grpc-bind`: on SIGTERM the gRPC port says it is not ready while the drain
/// lasts (and still answers), then stops with the HTTP listener, and the process exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn the_grpc_port_drains_and_stops_with_the_http_listener() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", crate::support::free_port());
    let mut server = crate::federation::Server::start(
        dir.path(),
        &[
            "--grpc-bind",
            &addr,
            "--shutdown-drain-secs",
            "2",
            "--shutdown-grace-secs",
            "5",
        ],
    );
    let mut c = client(&addr);
    let ready = |r: Result<ServerReadyResponse, Status>| r.unwrap().ready;
    assert!(ready(
        c.call("ServerReady", ServerReadyRequest {}, None).await
    ));

    server.sigterm();
    let patience = Duration::from_secs(60);
    let started = std::time::Instant::now();
    while ready(c.call("ServerReady", ServerReadyRequest {}, None).await) {
        assert!(started.elapsed() < patience, "still ready after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let live: ServerLiveResponse = c
        .call("ServerLive", ServerLiveRequest {}, None)
        .await
        .unwrap();
    assert!(live.live, "the drain still serves");

    let exit = loop {
        if let Some(exit) = server.exit_status() {
            break exit;
        }
        assert!(started.elapsed() < patience, "b3o serve did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit}");
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "the gRPC port still accepts connections"
    );
}
