//! Typed calls of the federation API over a [`Transport`], with retries.
//!
//! A request that gets no answer, or a temporary refusal (HTTP 429, 502, 503, 504; a 500 at
//! most three times), is sent again after a [`Backoff`] delay. Every call here is safe to
//! repeat: reads, `join` (answers with the existing membership), `ready` and `statistics`
//! (replace the earlier report), update uploads (the same bytes get the same answer) and
//! evaluations (replace). Other refusals become [`FlError::Api`] with the server's message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use b3o_models::protocol::accounts::{CreateToken, CreatedToken, Login, Me};
use b3o_models::protocol::secagg::{SecAggAccepted, SecAggView, ShareUpload, UnmaskUpload};
use b3o_models::protocol::{
    Accepted, CreateGroup, Created, ErrorBody, Evaluation, EvaluationAccepted, Failure,
    FailureReported, GroupView, Join, Joined, MemberReady, Progress, ProgressAccepted, Ready,
    RoundList, RoundView, StatisticsAccepted, TrainingStarted, VersionList, VersionView,
};
use b3o_models::secagg::PublicKeys;
use b3o_models::stats::Summary;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::data::DataError;
use super::retry::Backoff;
use super::transport::{Method, Request, Response, Transport, TransportError};

/// How the client proves who it is.
#[derive(Clone, Default, PartialEq)]
pub enum Auth {
    #[default]
    None,
    /// An API token (`b3o_...`): programs.
    Bearer(String),
    /// A signed-in browser session: the browser attaches the cookie itself (`cookie: None`);
    /// a native program that logged in passes it. State-changing requests carry the CSRF token.
    Session {
        cookie: Option<String>,
        csrf_token: String,
    },
}

impl std::fmt::Debug for Auth {
    // Secrets stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(..)"),
            Auth::Session { .. } => f.write_str("Session(..)"),
        }
    }
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlError {
    /// The server refused: status, its error code and message.
    #[error("{message} (HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer after retrying for as long as the backoff allows.
    #[error("{what}: gave up after {attempts} attempts: {last}")]
    GaveUp {
        what: String,
        attempts: u32,
        last: TransportError,
    },
    #[error("unexpected answer to {what}: {detail}")]
    Decode { what: String, detail: String },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("local training failed: {0}")]
    Train(#[from] b3o_models::train::TrainError),
    #[error("weights: {0}")]
    Weights(#[from] b3o_models::weights::FormatError),
    #[error("secure aggregation: {0}")]
    SecAgg(#[from] b3o_models::secagg::SecAggError),
    #[error("{0}")]
    Protocol(String),
    /// This member's own privacy ledger refuses the round (its budget is spent, or the group's
    /// privacy settings changed); the member stops training in the group.
    #[error("differential privacy: {0}")]
    Privacy(String),
    #[error("stopped")]
    Cancelled,
}

impl FlError {
    /// The HTTP status of a server refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            FlError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A retry about to happen, for progress displays.
#[derive(Debug, Clone)]
pub struct RetryNotice {
    pub what: String,
    pub attempt: u32,
    pub delay: Duration,
    pub error: String,
}

/// Called before every retry.
#[cfg(not(target_arch = "wasm32"))]
pub type RetryHook = Arc<dyn Fn(&RetryNotice) + Send + Sync>;
/// Called before every retry.
#[cfg(target_arch = "wasm32")]
pub type RetryHook = Arc<dyn Fn(&RetryNotice)>;

/// The federation API of one server, as one caller.
pub struct Api<T> {
    transport: T,
    auth: Auth,
    backoff: Backoff,
    on_retry: Option<RetryHook>,
    seed: u64,
    calls: AtomicU64,
}

/// The session of a native login: the cookie to send back and the CSRF token.
#[derive(Clone)]
pub struct LoginSession {
    pub cookie: String,
    pub csrf_token: String,
}

impl<T: Transport> Api<T> {
    pub fn new(transport: T, auth: Auth) -> Self {
        // Spread the retry jitter of clients with different credentials.
        let seed = match &auth {
            Auth::Bearer(t) => fnv(t.as_bytes()),
            Auth::Session { csrf_token, .. } => fnv(csrf_token.as_bytes()),
            Auth::None => 0,
        };
        Api {
            transport,
            auth,
            backoff: Backoff::default(),
            on_retry: None,
            seed,
            calls: AtomicU64::new(0),
        }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn on_retry(mut self, hook: RetryHook) -> Self {
        self.on_retry = Some(hook);
        self
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    fn authorise(&self, mut request: Request) -> Request {
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(token) => {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            Auth::Session { cookie, csrf_token } => {
                if let Some(cookie) = cookie {
                    request = request.header("cookie", cookie.clone());
                }
                if request.method != Method::Get {
                    request = request.header("x-csrf-token", csrf_token.clone());
                }
            }
        }
        request
    }

    /// Sends `request` until it gets a final answer; 2xx is `Ok`, anything else [`FlError::Api`].
    pub async fn call(&self, what: &str, request: Request) -> Result<Response, FlError> {
        let request = self.authorise(request);
        let seed = self.seed.wrapping_add(
            self.calls
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(7919),
        );
        let mut attempt = 0u32;
        let mut waited = Duration::ZERO;
        let mut internal_errors = 0;
        loop {
            attempt += 1;
            let error = match self.transport.send(request.clone()).await {
                Ok(r) if r.is_success() => return Ok(r),
                Ok(r) if r.status == 500 && internal_errors < 3 => {
                    internal_errors += 1;
                    TransportError::Other(api_error(&r).to_string())
                }
                Ok(r) if matches!(r.status, 429 | 502 | 503 | 504) => {
                    TransportError::Other(api_error(&r).to_string())
                }
                Ok(r) => return Err(api_error(&r)),
                Err(e) => e,
            };
            let delay = self.backoff.delay(attempt, seed);
            if !self.backoff.allows(waited + delay) {
                return Err(FlError::GaveUp {
                    what: what.to_string(),
                    attempts: attempt,
                    last: error,
                });
            }
            if let Some(hook) = &self.on_retry {
                hook(&RetryNotice {
                    what: what.to_string(),
                    attempt,
                    delay,
                    error: error.to_string(),
                });
            }
            self.transport.sleep(delay).await;
            waited += delay;
        }
    }

    async fn json<R: DeserializeOwned>(&self, what: &str, request: Request) -> Result<R, FlError> {
        let response = self.call(what, request).await?;
        decode(what, &response.body)
    }

    async fn post_json<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        what: &str,
        path: String,
        body: &B,
    ) -> Result<R, FlError> {
        let body = serde_json::to_vec(body).map_err(|e| FlError::Decode {
            what: what.into(),
            detail: e.to_string(),
        })?;
        self.json(what, Request::post(path, "application/json", body))
            .await
    }

    /// `POST /api/auth/login` with an email and password: the session to create an API token.
    pub async fn login(&self, email: &str, password: &str) -> Result<LoginSession, FlError> {
        let body = Login {
            email: email.to_string(),
            password: password.to_string(),
        };
        let body = serde_json::to_vec(&body).map_err(|e| FlError::Decode {
            what: "signing in".into(),
            detail: e.to_string(),
        })?;
        let response = self
            .call(
                "signing in",
                Request::post("/api/auth/login", "application/json", body),
            )
            .await?;
        let cookie = response
            .headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .filter_map(|(_, v)| v.split(';').next())
            .find(|c| c.contains("b3o_session="))
            .map(str::to_string)
            .ok_or_else(|| FlError::Protocol("signing in: the server set no session".into()))?;
        let me: Me = decode("signing in", &response.body)?;
        let csrf_token = me
            .csrf_token
            .ok_or_else(|| FlError::Protocol("signing in: no CSRF token in the answer".into()))?;
        Ok(LoginSession { cookie, csrf_token })
    }

    /// `POST /api/auth/tokens` (needs a session): a new API token named `name`.
    pub async fn create_token(
        &self,
        name: &str,
        expires_in_days: Option<u32>,
    ) -> Result<String, FlError> {
        let body = CreateToken {
            name: name.to_string(),
            expires_in_days,
        };
        let created: CreatedToken = self
            .post_json("creating an API token", "/api/auth/tokens".into(), &body)
            .await?;
        Ok(created.token)
    }

    /// `POST /api/groups`.
    pub async fn create_group<S: Serialize>(
        &self,
        request: &CreateGroup<S>,
    ) -> Result<Created, FlError> {
        self.post_json("creating the group", "/api/groups".into(), request)
            .await
    }

    /// `POST /api/groups/{id}/start` (owner).
    pub async fn start(&self, group_id: i64) -> Result<TrainingStarted, FlError> {
        self.post_json(
            "starting training",
            format!("/api/groups/{group_id}/start"),
            &serde_json::json!({}),
        )
        .await
    }

    /// `POST /api/groups/join`: idempotent, a member joining again gets its membership back.
    pub async fn join(&self, join_code: &str, name: Option<&str>) -> Result<Joined, FlError> {
        let body = Join {
            join_code: join_code.trim().to_string(),
            name: name.map(str::to_string),
        };
        self.post_json("joining the group", "/api/groups/join".into(), &body)
            .await
    }

    pub async fn group(&self, group_id: i64) -> Result<GroupView, FlError> {
        self.json(
            "reading the group",
            Request::get(format!("/api/groups/{group_id}")),
        )
        .await
    }

    /// `POST /api/groups/{id}/statistics`: this member's column summaries (never rows).
    pub async fn statistics(&self, group_id: i64, summary: &Summary) -> Result<(), FlError> {
        let _: StatisticsAccepted = self
            .post_json(
                "sending column statistics",
                format!("/api/groups/{group_id}/statistics"),
                summary,
            )
            .await?;
        Ok(())
    }

    pub async fn ready(&self, group_id: i64, num_samples: u64) -> Result<(), FlError> {
        let _: MemberReady = self
            .post_json(
                "marking ready",
                format!("/api/groups/{group_id}/ready"),
                &Ready { num_samples },
            )
            .await?;
        Ok(())
    }

    /// The newest round with this member's place in it; `None` before training starts.
    /// Brief: without the other members' per-client metrics, so that polling stays cheap for
    /// the server however many members a group has.
    pub async fn current_round(&self, group_id: i64) -> Result<Option<RoundView>, FlError> {
        match self
            .json(
                "reading the current round",
                Request::get(format!("/api/groups/{group_id}/rounds/current?brief=true")),
            )
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err(FlError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn round(&self, group_id: i64, number: i64) -> Result<RoundView, FlError> {
        self.json(
            "reading a round",
            Request::get(format!("/api/groups/{group_id}/rounds/{number}")),
        )
        .await
    }

    /// Every round of the group, oldest first.
    pub async fn rounds(&self, group_id: i64) -> Result<RoundList, FlError> {
        self.json(
            "reading the rounds",
            Request::get(format!("/api/groups/{group_id}/rounds")),
        )
        .await
    }

    /// Every model version of the group (one per closed round, and the initial one).
    pub async fn versions(&self, group_id: i64) -> Result<VersionList, FlError> {
        self.json(
            "reading the model versions",
            Request::get(format!("/api/groups/{group_id}/versions")),
        )
        .await
    }

    pub async fn version(&self, version_id: i64) -> Result<VersionView, FlError> {
        self.json(
            "reading a model version",
            Request::get(format!("/api/versions/{version_id}")),
        )
        .await
    }

    /// A version's weights (safetensors bytes).
    pub async fn version_weights(&self, version_id: i64) -> Result<Vec<u8>, FlError> {
        Ok(self
            .call(
                "downloading the global model",
                Request::get(format!("/api/versions/{version_id}/weights")),
            )
            .await?
            .body)
    }

    /// Uploads an update (safetensors). Repeating the same bytes gets the same answer.
    pub async fn upload_update(
        &self,
        group_id: i64,
        round: i64,
        update: Vec<u8>,
    ) -> Result<Accepted, FlError> {
        self.json(
            "uploading the update",
            Request::post(
                format!("/api/groups/{group_id}/rounds/{round}/update"),
                "application/octet-stream",
                update,
            ),
        )
        .await
    }

    /// Tells the server this member cannot deliver `round`, so the round stops waiting.
    pub async fn report_failure(
        &self,
        group_id: i64,
        round: i64,
        reason: &str,
    ) -> Result<(), FlError> {
        let _: FailureReported = self
            .post_json(
                "reporting a failure",
                format!("/api/groups/{group_id}/rounds/{round}/failure"),
                &Failure {
                    reason: reason.chars().take(1000).collect(),
                },
            )
            .await?;
        Ok(())
    }

    /// A heartbeat while training `round`: `fraction` (0 to 1) of the local work is done. The
    /// owner sees it; it keeps this member counted as connected.
    pub async fn report_progress(
        &self,
        group_id: i64,
        round: i64,
        fraction: f64,
    ) -> Result<(), FlError> {
        let _: ProgressAccepted = self
            .post_json(
                "reporting progress",
                format!("/api/groups/{group_id}/rounds/{round}/progress"),
                &Progress {
                    fraction: fraction.clamp(0.0, 1.0),
                },
            )
            .await?;
        Ok(())
    }

    /// A secure round's stage as the calling member needs it (SecAgg+).
    pub async fn secagg_view(&self, group_id: i64, round: i64) -> Result<SecAggView, FlError> {
        self.json(
            "reading the secure round",
            Request::get(format!("/api/groups/{group_id}/rounds/{round}/secagg")),
        )
        .await
    }

    /// Stage 1 of a secure round: this member's public keys.
    pub async fn secagg_keys(
        &self,
        group_id: i64,
        round: i64,
        keys: &PublicKeys,
    ) -> Result<SecAggAccepted, FlError> {
        self.post_json(
            "advertising keys",
            format!("/api/groups/{group_id}/rounds/{round}/secagg/keys"),
            keys,
        )
        .await
    }

    /// Stage 2: the encrypted shares for this member's neighbours.
    pub async fn secagg_shares(
        &self,
        group_id: i64,
        round: i64,
        shares: &ShareUpload,
    ) -> Result<SecAggAccepted, FlError> {
        self.post_json(
            "sending key shares",
            format!("/api/groups/{group_id}/rounds/{round}/secagg/shares"),
            shares,
        )
        .await
    }

    /// Stage 4: the shares that remove the survivors' and the dropped members' masks.
    pub async fn secagg_unmask(
        &self,
        group_id: i64,
        round: i64,
        shares: &UnmaskUpload,
    ) -> Result<SecAggAccepted, FlError> {
        self.post_json(
            "sending unmask shares",
            format!("/api/groups/{group_id}/rounds/{round}/secagg/unmask"),
            shares,
        )
        .await
    }

    /// This member's metrics of `round`'s resulting model on its held-out rows.
    pub async fn report_evaluation(
        &self,
        group_id: i64,
        round: i64,
        evaluation: &Evaluation,
    ) -> Result<(), FlError> {
        let _: EvaluationAccepted = self
            .post_json(
                "reporting an evaluation",
                format!("/api/groups/{group_id}/rounds/{round}/evaluation"),
                evaluation,
            )
            .await?;
        Ok(())
    }

    /// This member's metrics of version `version_id` on its held-out rows, for any version a
    /// round of its group made (`b3o client --evaluate-version`); replaces an earlier report.
    pub async fn report_version_evaluation(
        &self,
        version_id: i64,
        evaluation: &Evaluation,
    ) -> Result<EvaluationAccepted, FlError> {
        self.post_json(
            "reporting a version's evaluation",
            format!("/api/versions/{version_id}/evaluation"),
            evaluation,
        )
        .await
    }

    /// What a member's own drift check of deployment `name` compares with (its served
    /// version's training summary and thresholds).
    pub async fn drift_reference(
        &self,
        name: &str,
    ) -> Result<b3o_models::protocol::monitoring::DriftReference, FlError> {
        self.json(
            "reading the deployment's drift reference",
            Request::get(format!(
                "/api/deployments/{}/drift/reference",
                path_segment(name)
            )),
        )
        .await
    }

    /// Shares a member's summary of its own data with deployment `name`'s drift view.
    pub async fn share_drift(
        &self,
        name: &str,
        body: &b3o_models::protocol::monitoring::PartnerSummary,
    ) -> Result<b3o_models::protocol::monitoring::PartnerCheck, FlError> {
        self.post_json(
            "sharing a drift summary",
            format!("/api/deployments/{}/drift/partner", path_segment(name)),
            body,
        )
        .await
    }

    /// Opens the group's event stream (no retries: the caller polls meanwhile).
    pub async fn events(&self, group_id: i64) -> Result<T::Events, TransportError> {
        let request = self.authorise(
            // As a trainer: while the stream is open the server counts this member as
            // connected, and stops waiting for it when the stream ends for good.
            Request::get(format!("/api/groups/{group_id}/events?trainer=true"))
                .header("accept", "text/event-stream"),
        );
        self.transport.events(request).await
    }
}

fn decode<R: DeserializeOwned>(what: &str, body: &[u8]) -> Result<R, FlError> {
    serde_json::from_slice(body).map_err(|e| FlError::Decode {
        what: what.to_string(),
        detail: e.to_string(),
    })
}

/// The server's error body, or the status alone when the body is not one.
fn api_error(response: &Response) -> FlError {
    match serde_json::from_slice::<ErrorBody>(&response.body) {
        Ok(b) => FlError::Api {
            status: response.status,
            code: b.error.code,
            message: b.error.message,
        },
        Err(_) => FlError::Api {
            status: response.status,
            code: String::new(),
            message: format!(
                "HTTP {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body[..response.body.len().min(200)])
            ),
        },
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `name` as one URL path segment (deployment names are letters, digits, `-`, `_`, `.`; anything
/// else is percent-encoded).
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use futures_util::FutureExt;

    use super::*;
    use crate::fl::transport::{EventStream, SseEvent};

    /// Answers from a script; records what it was sent; sleeps take no time.
    #[derive(Default)]
    struct Script {
        replies: Mutex<VecDeque<Result<Response, TransportError>>>,
        sent: Mutex<Vec<Request>>,
    }

    struct NoEvents;

    impl EventStream for NoEvents {
        async fn next(&mut self) -> Result<Option<SseEvent>, TransportError> {
            Ok(None)
        }
    }

    impl Transport for Script {
        type Events = NoEvents;

        async fn send(&self, request: Request) -> Result<Response, TransportError> {
            self.sent.lock().unwrap().push(request);
            self.replies
                .lock()
                .unwrap()
                .pop_front()
                .expect("the script ran out")
        }

        async fn events(&self, _: Request) -> Result<NoEvents, TransportError> {
            Ok(NoEvents)
        }

        async fn sleep(&self, _: Duration) {}
    }

    fn reply(status: u16, body: &str) -> Result<Response, TransportError> {
        Ok(Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        })
    }

    fn api(replies: Vec<Result<Response, TransportError>>, auth: Auth) -> Api<Script> {
        let script = Script::default();
        *script.replies.lock().unwrap() = replies.into();
        Api::new(script, auth)
    }

    #[test]
    fn lost_answers_and_temporary_refusals_are_retried_with_the_same_request() {
        let a = api(
            vec![
                Err(TransportError::Connect("refused".into())),
                reply(503, "{}"),
                reply(200, r#"{"group_id": 3, "member_id": 9}"#),
            ],
            Auth::Bearer("b3o_x".into()),
        );
        let retries = Arc::new(AtomicU64::new(0));
        let counter = retries.clone();
        let a = a.on_retry(Arc::new(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        let joined = a.join("abc", None).now_or_never().unwrap().unwrap();
        assert_eq!((joined.group_id, joined.member_id), (3, 9));
        assert_eq!(retries.load(Ordering::Relaxed), 2);
        let sent = a.transport().sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 3);
        assert!(
            sent.iter().all(|r| *r == sent[0]),
            "retries resend the same bytes"
        );
        assert!(
            sent[0]
                .headers
                .contains(&("authorization".into(), "Bearer b3o_x".into()))
        );
    }

    #[test]
    fn refusals_are_not_retried_and_carry_the_servers_message() {
        let a = api(
            vec![reply(
                409,
                r#"{"error": {"code": "conflict", "message": "round 2 is closed"}}"#,
            )],
            Auth::None,
        );
        let err = a.upload_update(1, 2, vec![1, 2, 3]).now_or_never().unwrap();
        match err {
            Err(FlError::Api {
                status, message, ..
            }) => assert_eq!((status, message.as_str()), (409, "round 2 is closed")),
            other => panic!("{other:?}"),
        }
        assert_eq!(a.transport().sent.lock().unwrap().len(), 1);
    }

    #[test]
    fn gives_up_after_the_backoff_budget() {
        let replies = (0..100)
            .map(|_| Err(TransportError::Timeout))
            .collect::<Vec<_>>();
        let a = api(replies, Auth::None).with_backoff(Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
            jitter: 0.0,
            give_up_after: Some(Duration::from_secs(10)),
        });
        let err = a.group(1).now_or_never().unwrap().unwrap_err();
        // Waits of 1 + 2 + 4 s fit in 10 s; the next 4 s would not.
        assert!(matches!(err, FlError::GaveUp { attempts: 4, .. }), "{err}");
    }

    #[test]
    fn a_session_sends_its_cookie_and_the_csrf_token_on_changes_only() {
        let a = api(
            vec![
                reply(200, r#"{"member_id": 2, "ready": true, "num_samples": 10}"#),
                reply(200, ""),
            ],
            Auth::Session {
                cookie: Some("b3o_session=s".into()),
                csrf_token: "t".into(),
            },
        );
        a.ready(1, 10).now_or_never().unwrap().unwrap();
        let _ = a.version_weights(4).now_or_never().unwrap().unwrap();
        let sent = a.transport().sent.lock().unwrap().clone();
        let has = |r: &Request, n: &str| r.headers.iter().any(|(k, _)| k == n);
        assert!(has(&sent[0], "cookie") && has(&sent[0], "x-csrf-token"));
        assert!(has(&sent[1], "cookie") && !has(&sent[1], "x-csrf-token"));
        assert_eq!(sent[0].body, br#"{"num_samples":10}"#);
    }
}
