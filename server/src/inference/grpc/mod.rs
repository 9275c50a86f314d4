//! The Open Inference Protocol over gRPC (`b3o serve --grpc-bind ADDR`): KServe's
//! `inference.GRPCInferenceService`, as Triton's clients (`tritonclient.grpc`) call it, on its
//! own port, next to the HTTP routes of [`super::v2`] and with the same rules.
//!
//! RPCs: `ServerLive`, `ServerReady`, `ServerMetadata`, `ModelReady`, `ModelMetadata`,
//! `ModelInfer`, and Triton's `RepositoryIndex` and `ModelStatistics`; every other method
//! answers `UNIMPLEMENTED`. Messages are hand-derived ([`proto`]); the routing is this
//! module's [`InferenceService`] over tonic's codec and HTTP/2 server (no code generation).
//!
//! **Security is the HTTP API's**:
//! - The caller is the account of an `authorization: Bearer b3o_…` metadata entry, read by
//!   `accounts::optional_bearer_user` (the HTTP extractors' reading of API tokens) before the
//!   message is; a bad token is `UNAUTHENTICATED` then. No cookies: programs only.
//! - Each model RPC goes through `gate::authorize` like its HTTP route (public deployments
//!   for anyone, private ones for their group: `UNAUTHENTICATED` anonymous, `NOT_FOUND` for
//!   others, as for a name that is not deployed; an `origin` entry is checked like the header).
//! - Errors are the HTTP answers' messages under the gRPC code of their status
//!   ([`code_for`]); internal errors are logged and answered "internal server error".
//! - The model name is inside the message, so a `ModelInfer` message is read before its
//!   caller can be checked against the model: within the 16 MiB of an HTTP body
//!   ([`MAX_BODY_BYTES`], larger: `RESOURCE_EXHAUSTED`) and the inference body budget, as an
//!   HTTP body is; other RPCs' messages within [`SMALL_MESSAGE`].
//! - An input is checked as over HTTP (`v2::rows_of`: the model's `[batch, ..row]` shape,
//!   exactly as many values, with checked arithmetic, before any data is decoded; at most
//!   `--max-rows-per-request` rows) and runs under the same work slots and batcher; raw
//!   contents must be exactly `batch * row_len * 4` bytes of finite little-endian FP32.
//! - The listener ([`serve`]) caps open connections at `--max-connections` (this port's own
//!   count), pings idle peers every `--header-timeout-secs`, ends a connection after
//!   [`MAX_CONNECTION_AGE`] (clients reconnect at once; a silent one cannot hold a slot for
//!   ever), bounds each call's time, and stops with the HTTP listener.

pub mod proto;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{self, HeaderMap, StatusCode};
use b3o_models::v2::{V2Error, fp32_from_le};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::server::Grpc;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

use self::proto::{
    InferOutputTensor, InferTensorContents, ModelIndex, ModelInferRequest, ModelInferResponse,
    ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse,
    ModelStatisticsRequest, ModelStatisticsResponse, RepositoryIndexRequest,
    RepositoryIndexResponse, ServerLiveRequest, ServerLiveResponse, ServerMetadataRequest,
    ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use super::gate::{self, Call, Target};
use super::{MAX_BODY_BYTES, RunInfo, Shared, Ticket, v2};
use crate::accounts::{CurrentUser, optional_bearer_user};
use crate::error::ApiError;
use crate::limits::Limits;
use crate::state::AppState;

/// The service's full name: the package and service of both `.proto` files.
pub const SERVICE: &str = "inference.GRPCInferenceService";

/// Largest message of the RPCs other than `ModelInfer` (names and versions).
pub const SMALL_MESSAGE: usize = 64 << 10;

/// A gRPC message's frame header: compressed flag and length.
const FRAME_HEADER: usize = 5;

/// Longest life of a connection: then the server sends GOAWAY (calls in progress finish within
/// the call timeout) and the client opens a new one.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// Most calls in progress on one connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Largest metadata (headers) of a call.
const MAX_HEADER_LIST: u32 = 16 << 10;

/// Pause after an accept error other than a failed handshake (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

type HttpResponse = http::Response<tonic::body::Body>;

/// The gRPC code for an HTTP error status: 400 and 413 (too many rows) `INVALID_ARGUMENT`,
/// 401 `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`, 404 `NOT_FOUND`, 409
/// `FAILED_PRECONDITION`, 429 `RESOURCE_EXHAUSTED`, 501 `UNIMPLEMENTED`, 503 `UNAVAILABLE`,
/// anything else `INTERNAL`.
pub fn code_for(status: StatusCode) -> Code {
    match status.as_u16() {
        400 | 413 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::FailedPrecondition,
        429 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        503 => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// An error as a gRPC status: [`code_for`] its HTTP status, with the HTTP answer's message;
/// 429 and 503 carry their `Retry-After` as `grpc-retry-pushback-ms`.
pub fn status_of(e: &ApiError) -> Status {
    let mut status = Status::new(code_for(e.status()), e.public_message());
    if let Some(secs) = e.retry_after_secs()
        && let Ok(value) = secs.saturating_mul(1000).to_string().parse()
    {
        status
            .metadata_mut()
            .insert("grpc-retry-pushback-ms", value);
    }
    status
}

/// `inference.GRPCInferenceService` over one server's state: a tower service of HTTP/2
/// requests, routed by method name.
#[derive(Clone)]
pub struct InferenceService {
    state: AppState,
}

impl InferenceService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for InferenceService {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move { Ok(route(state, request).await) })
    }
}

/// Calls the RPC the request's path names.
async fn route(state: AppState, request: http::Request<tonic::body::Body>) -> HttpResponse {
    let path = request.uri().path().to_owned();
    let method = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(SERVICE))
        .and_then(|p| p.strip_prefix('/'));
    let (parts, body) = request.into_parts();
    let request = http::Request::from_parts(parts, axum::body::Body::new(body));
    match method {
        Some("ServerLive") => {
            unary(request, SMALL_MESSAGE, |_: ServerLiveRequest| async {
                Ok(ServerLiveResponse { live: true })
            })
            .await
        }
        Some("ServerReady") => {
            unary(request, SMALL_MESSAGE, |_: ServerReadyRequest| async move {
                Ok(ServerReadyResponse {
                    ready: server_ready(&state).await,
                })
            })
            .await
        }
        Some("ServerMetadata") => {
            unary(request, SMALL_MESSAGE, |_: ServerMetadataRequest| async {
                Ok(ServerMetadataResponse::from(v2::metadata_of_server()))
            })
            .await
        }
        Some("RepositoryIndex") => {
            let call = Call::start("grpc_repository");
            with_caller(state, request, SMALL_MESSAGE, call, repository_index).await
        }
        Some("ModelReady") => {
            let call = Call::start("grpc_ready");
            with_caller(state, request, SMALL_MESSAGE, call, model_ready).await
        }
        Some("ModelMetadata") => {
            let call = Call::start("grpc_metadata");
            with_caller(state, request, SMALL_MESSAGE, call, model_metadata).await
        }
        Some("ModelInfer") => {
            let call = Call::inference("grpc_infer");
            with_caller(state, request, MAX_BODY_BYTES, call, model_infer).await
        }
        Some("ModelStatistics") => {
            let call = Call::start("grpc_stats");
            with_caller(state, request, SMALL_MESSAGE, call, model_statistics).await
        }
        _ => Status::unimplemented(format!(
            "B3O Edge does not implement `{}`",
            gate::shown(&path)
        ))
        .into_http(),
    }
}

/// Ready as `/v2/health/ready`: the replica takes new work and the database answers.
async fn server_ready(state: &AppState) -> bool {
    state.lifecycle.phase().is_ready() && sqlx::query("SELECT 1").execute(&state.db).await.is_ok()
}

/// One unary RPC: decodes its message (at most `max` bytes), runs `handler`, encodes the
/// answer or the status.
async fn unary<M, R, F, Fut>(
    request: http::Request<axum::body::Body>,
    max: usize,
    handler: F,
) -> HttpResponse
where
    M: prost::Message + Default + Send + 'static,
    R: prost::Message + Send + 'static,
    F: FnOnce(M) -> Fut,
    Fut: Future<Output = Result<R, Status>> + Send + 'static,
{
    let mut grpc = Grpc::new(ProstCodec::<R, M>::default()).max_decoding_message_size(max);
    grpc.unary(Handler(Some(handler)), request).await
}

/// A handler as the tower service tonic calls once per unary request.
struct Handler<F>(Option<F>);

impl<M, R, F, Fut> tower::Service<tonic::Request<M>> for Handler<F>
where
    F: FnOnce(M) -> Fut,
    Fut: Future<Output = Result<R, Status>> + Send + 'static,
{
    type Response = tonic::Response<R>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<R>, Status>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<M>) -> Self::Future {
        match self.0.take() {
            Some(handler) => {
                let answer = handler(request.into_inner());
                Box::pin(async move { answer.await.map(tonic::Response::new) })
            }
            None => Box::pin(async { Err(Status::internal("a unary call was made twice")) }),
        }
    }
}

/// What a model RPC's handler works with.
struct Caller {
    state: AppState,
    shared: Arc<Shared>,
    /// Resolved from the call's metadata before its message was read.
    user: Option<CurrentUser>,
    /// The call's metadata as HTTP headers (`gate::authorize` reads `origin`).
    headers: HeaderMap,
    /// The message's share of the body budget, and a work slot once taken.
    ticket: Ticket,
    call: Call,
}

impl Caller {
    /// Whether the caller may use deployment `name` at `version` (empty: the version it serves
    /// now), by the HTTP routes' rules.
    async fn target(&self, name: &str, version: &str) -> Result<Target, ApiError> {
        let version = (!version.is_empty()).then_some(version);
        gate::authorize(
            &self.state,
            &self.shared,
            self.user.as_ref(),
            &self.headers,
            name,
            version,
        )
        .await
    }
}

/// A call refused before it reached a model.
fn refused<R>(call: Call, e: ApiError) -> Result<R, Status> {
    call.refused(e.status());
    Err(status_of(&e))
}

/// The answer of a call that reached `target`, counted (`gate::Call::done`).
fn answered<R>(
    call: Call,
    shared: &Shared,
    target: &Target,
    result: Result<(R, Option<RunInfo>), ApiError>,
) -> Result<R, Status> {
    match result {
        Ok((answer, run)) => {
            call.done(shared, target, StatusCode::OK, run.as_ref());
            Ok(answer)
        }
        Err(e) => {
            call.done(shared, target, e.status(), None);
            Err(status_of(&e))
        }
    }
}

/// A model RPC: the caller from the metadata first (a bad token is refused before the message
/// is read), then the message within `max` bytes and the body budget, then `handler`.
async fn with_caller<M, R, F, Fut>(
    state: AppState,
    request: http::Request<axum::body::Body>,
    max: usize,
    call: Call,
    handler: F,
) -> HttpResponse
where
    M: prost::Message + Default + Send + 'static,
    R: prost::Message + Send + 'static,
    F: FnOnce(Caller, M) -> Fut,
    Fut: Future<Output = Result<R, Status>> + Send + 'static,
{
    let user = match optional_bearer_user(&state.db, request.headers()).await {
        Ok(user) => user,
        Err(e) => return status_of(&e).into_http(),
    };
    let shared = state.inference.clone();
    let mut ticket = Ticket::default();
    let (parts, body) = request.into_parts();
    let bytes = match shared
        .admission
        .read_body(body, None, max + FRAME_HEADER, &mut ticket)
        .await
    {
        Ok(bytes) => bytes,
        Err(ApiError::PayloadTooLarge(_)) => {
            return Status::resource_exhausted(format!(
                "the request message is larger than {max} bytes; send larger inputs as a batch job (POST /api/jobs)"
            ))
            .into_http();
        }
        Err(e) => return status_of(&e).into_http(),
    };
    let headers = parts.headers.clone();
    let request = http::Request::from_parts(parts, axum::body::Body::from(bytes));
    let caller = Caller {
        state,
        shared,
        user,
        headers,
        ticket,
        call,
    };
    unary(request, max, move |message| handler(caller, message)).await
}

async fn repository_index(
    c: Caller,
    _: RepositoryIndexRequest,
) -> Result<RepositoryIndexResponse, Status> {
    let models = v2::repository(&c.state, c.user.as_ref())
        .await
        .map_err(|e| status_of(&e))?;
    Ok(RepositoryIndexResponse {
        models: models.into_iter().map(ModelIndex::from).collect(),
    })
}

async fn model_ready(c: Caller, req: ModelReadyRequest) -> Result<ModelReadyResponse, Status> {
    let target = match c.target(&req.name, &req.version).await {
        Ok(t) => t,
        Err(e) => return refused(c.call, e),
    };
    // Loads the model, as the HTTP route does: a probe warms it.
    let result = super::model(&c.state, &c.shared, target.version_id)
        .await
        .map(|_| (ModelReadyResponse { ready: true }, None));
    answered(c.call, &c.shared, &target, result)
}

async fn model_metadata(
    c: Caller,
    req: ModelMetadataRequest,
) -> Result<ModelMetadataResponse, Status> {
    let target = match c.target(&req.name, &req.version).await {
        Ok(t) => t,
        Err(e) => return refused(c.call, e),
    };
    let result = super::model(&c.state, &c.shared, target.version_id)
        .await
        .map(|m| (v2::metadata(&req.name, &m).into(), None));
    answered(c.call, &c.shared, &target, result)
}

async fn model_statistics(
    c: Caller,
    req: ModelStatisticsRequest,
) -> Result<ModelStatisticsResponse, Status> {
    if req.name.is_empty() {
        if !req.version.is_empty() {
            return Err(Status::invalid_argument(
                "a version needs a model name: ModelStatistics with neither lists every model",
            ));
        }
        // Every model the caller may call, as the repository index lists them.
        let models = v2::repository(&c.state, c.user.as_ref())
            .await
            .map_err(|e| status_of(&e))?;
        let mut model_stats = Vec::new();
        for model in models {
            if let Ok(target) = c.target(&model.name, "").await {
                let stats = v2::statistics(&c.shared, &target, false);
                model_stats.extend(stats.model_stats.into_iter().map(Into::into));
            }
        }
        return Ok(ModelStatisticsResponse { model_stats });
    }
    let target = match c.target(&req.name, &req.version).await {
        Ok(t) => t,
        Err(e) => return refused(c.call, e),
    };
    let stats = v2::statistics(&c.shared, &target, !req.version.is_empty());
    let answer = ModelStatisticsResponse {
        model_stats: stats.model_stats.into_iter().map(Into::into).collect(),
    };
    answered(c.call, &c.shared, &target, Ok((answer, None)))
}

async fn model_infer(mut c: Caller, req: ModelInferRequest) -> Result<ModelInferResponse, Status> {
    let target = match c.target(&req.model_name, &req.model_version).await {
        Ok(t) => t,
        Err(e) => return refused(c.call, e),
    };
    let result = infer(&c.state, &c.shared, &target, req, &mut c.ticket)
        .await
        .map(|(answer, run)| (answer, Some(run)));
    answered(c.call, &c.shared, &target, result)
}

fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

/// Runs a `ModelInfer` request on `target`'s model: one FP32 input `input`, its data in
/// `contents.fp32_contents` or as raw bytes; the answer's data the same way.
async fn infer(
    state: &AppState,
    shared: &Shared,
    target: &Target,
    req: ModelInferRequest,
    ticket: &mut Ticket,
) -> Result<(ModelInferResponse, RunInfo), ApiError> {
    let m = super::model(state, shared, target.version_id).await?;
    let ModelInferRequest {
        model_name,
        id,
        inputs,
        mut raw_input_contents,
        ..
    } = req;
    let input = match <[_; 1]>::try_from(inputs) {
        Ok([input]) => input,
        Err(inputs) => {
            return Err(v2::v2_error(V2Error::InputCount {
                expected: "input".into(),
                found: inputs.len(),
            }));
        }
    };
    if input.name != "input" {
        return Err(v2::v2_error(V2Error::InputName {
            expected: "input".into(),
            found: gate::shown(&input.name),
        }));
    }
    if input.datatype != "FP32" {
        return Err(v2::v2_error(V2Error::Datatype(gate::shown(
            &input.datatype,
        ))));
    }
    let raw = !raw_input_contents.is_empty();
    let (data, batch) = if raw {
        if input.contents.is_some() {
            return Err(bad(
                "input `input` has both `contents` and `raw_input_contents`: send its data in one of them".into(),
            ));
        }
        if raw_input_contents.len() != 1 {
            return Err(bad(format!(
                "`raw_input_contents` has {} entries for 1 input",
                raw_input_contents.len()
            )));
        }
        let bytes = raw_input_contents.swap_remove(0);
        let what = "`raw_input_contents` of input `input`";
        if !bytes.len().is_multiple_of(4) {
            return Err(bad(format!(
                "{what} has {} bytes: not a whole number of FP32 values (4 bytes each)",
                bytes.len()
            )));
        }
        // The shape against the byte count before anything is decoded.
        let batch = v2::rows_of(shared, &m, &input.shape, bytes.len() / 4)?;
        let data = fp32_from_le(&bytes, what).map_err(v2::v2_error)?;
        (data, batch)
    } else {
        let contents = input.contents.unwrap_or_default();
        if contents.has_other_than_fp32() {
            return Err(bad(
                "input `input` is FP32: send its data in `contents.fp32_contents` or `raw_input_contents`".into(),
            ));
        }
        let batch = v2::rows_of(shared, &m, &input.shape, contents.fp32_contents.len())?;
        if let Some(i) = contents.fp32_contents.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "`contents.fp32_contents` of input `input`: the value at index {i} is not a finite FP32"
            )));
        }
        (contents.fp32_contents, batch)
    };
    let drift = (
        target.deployment.name.as_str(),
        target.deployment.version_id,
    );
    let (outputs, run) = v2::predict(shared, &m, data, batch, ticket, drift).await?;
    let width = m.predictor().output_width();
    let dim = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let mut output = InferOutputTensor {
        name: "output".into(),
        datatype: "FP32".into(),
        shape: vec![dim(batch), dim(width)],
        ..Default::default()
    };
    // Raw in, raw out (tritonclient reads either); typed contents otherwise.
    let mut raw_output_contents = Vec::new();
    if raw {
        raw_output_contents.push(outputs.iter().flat_map(|v| v.to_le_bytes()).collect());
    } else {
        output.contents = Some(InferTensorContents {
            fp32_contents: outputs,
            ..Default::default()
        });
    }
    let answer = ModelInferResponse {
        model_name,
        model_version: m.version_id.to_string(),
        id,
        outputs: vec![output],
        raw_output_contents,
        ..Default::default()
    };
    Ok((answer, run))
}

/// The gRPC listener's limits, from `b3o serve`'s.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    /// Most connections open at once (`--max-connections`, counted apart from HTTP's).
    pub max_connections: usize,
    /// HTTP/2 pings to a connection quiet for this long; no answer within it closes it.
    pub keepalive: Duration,
    /// Longest call: reading the message, waiting for admission and the model's work.
    pub call_timeout: Duration,
    /// After the stop: the longest wait for calls in progress.
    pub shutdown_grace: Duration,
}

impl GrpcLimits {
    pub fn new(limits: &Limits, shutdown_grace: Duration) -> Self {
        let secs = limits
            .body_timeout_secs
            .saturating_add(limits.inference_timeout_secs)
            .saturating_add(limits.inference_queue_timeout_ms.div_ceil(1000));
        GrpcLimits {
            max_connections: limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
            keepalive: Duration::from_secs(limits.header_timeout_secs.max(1)),
            call_timeout: Duration::from_secs(secs.max(1)),
            shutdown_grace,
        }
    }
}

/// The gRPC listener failed.
#[derive(Debug, thiserror::Error)]
#[error("the gRPC server failed: {0}")]
pub struct GrpcError(#[from] tonic::transport::Error);

/// Serves [`InferenceService`] on `listener` (HTTP/2 only, no TLS: put a TLS proxy in front
/// on untrusted networks) until `shutdown` completes (`b3o serve`: when the HTTP listener
/// stops), then lets calls in progress finish within the grace.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: GrpcLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GrpcError> {
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = stopped_tx.send(());
    };
    let server = tonic::transport::Server::builder()
        .timeout(limits.call_timeout)
        .http2_keepalive_interval(Some(limits.keepalive))
        .http2_keepalive_timeout(Some(limits.keepalive))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .http2_max_header_list_size(Some(MAX_HEADER_LIST))
        .max_connection_age(MAX_CONNECTION_AGE)
        .max_connection_age_grace(limits.call_timeout)
        .serve_with_incoming_shutdown(
            InferenceService::new(state),
            capped(listener, limits.max_connections),
            signal,
        );
    tokio::pin!(server);
    let grace_over = async {
        if stopped_rx.await.is_ok() {
            tokio::time::sleep(limits.shutdown_grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = &mut server => result?,
        () = grace_over => {
            tracing::info!("gRPC calls still in progress after the shutdown grace period; closing them");
        }
    }
    Ok(())
}

/// The accepted connections, at most `max` open at once: while that many are, no more are
/// accepted (clients wait in the listen backlog).
fn capped(
    listener: TcpListener,
    max: usize,
) -> impl futures_util::Stream<Item = io::Result<CappedStream>> {
    let slots = Arc::new(Semaphore::new(max));
    futures_util::stream::unfold((listener, slots), |(listener, slots)| async move {
        // Never closed; nothing to serve without it.
        let slot = slots.clone().acquire_owned().await.ok()?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let capped = CappedStream {
                        stream,
                        _slot: slot,
                    };
                    return Some((Ok(capped), (listener, slots)));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a gRPC connection failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    })
}

/// A connection holding its place under the cap until it closes.
struct CappedStream {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for CappedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_to_grpc_codes_with_the_same_message() {
        let e = ApiError::Unauthorized("sign in".into());
        let s = status_of(&e);
        assert_eq!((s.code(), s.message()), (Code::Unauthenticated, "sign in"));
        assert_eq!(
            status_of(&ApiError::PayloadTooLarge("rows".into())).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            status_of(&ApiError::OriginNotAllowed("o".into())).code(),
            Code::PermissionDenied
        );
        assert_eq!(
            status_of(&ApiError::Conflict("c".into())).code(),
            Code::FailedPrecondition
        );
        let busy = status_of(&ApiError::Unavailable {
            message: "busy".into(),
            retry_after_secs: 2,
        });
        assert_eq!(busy.code(), Code::Unavailable);
        assert_eq!(
            busy.metadata()
                .get("grpc-retry-pushback-ms")
                .and_then(|v| v.to_str().ok()),
            Some("2000")
        );
        // Internal errors keep their details in the log.
        let s = status_of(&ApiError::Internal("secret path".into()));
        assert_eq!(
            (s.code(), s.message()),
            (Code::Internal, "internal server error")
        );
    }
}
