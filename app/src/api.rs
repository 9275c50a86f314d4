//! Every HTTP call the app makes, with typed results and errors in plain words.
//!
//! Reads (`GET`) made for a page are aborted when the page goes away; writes are not (a form
//! that was sent should finish). Cookie-authenticated writes carry the session's CSRF token as
//! `X-CSRF-Token`, which the caller passes in from [`crate::session::Session`].

use b3o_models::protocol::ErrorBody;
use gloo_net::http::{Request, RequestBuilder, Response};
use leptos::prelude::on_cleanup;
use send_wrapper::SendWrapper;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A failed request, phrased for a person by its `Display`.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// No answer at all: offline, server down, or the request was cancelled.
    Unreachable,
    /// The server refused, saying why (`{"error": {"code", "message"}}`).
    Refused {
        status: u16,
        code: String,
        message: String,
        /// Seconds to wait, from `Retry-After` (rate limits).
        retry_after: Option<u64>,
    },
    /// An answer that is not what this app expects (a version mismatch, a proxy's error page).
    Unreadable,
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Developer quoting in a message for people: `` `x` `` -> “x” (server and engine messages
/// quote names with backticks).
pub(crate) fn plain_quotes(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open = false;
    // An odd number of backticks: leave the last one alone rather than open a quote.
    let pairs = message.matches('`').count() / 2 * 2;
    for (seen, part) in message.split('`').enumerate() {
        if seen > 0 {
            if seen <= pairs {
                out.push(if open { '”' } else { '“' });
                open = !open;
            } else {
                out.push('`');
            }
        }
        out.push_str(part);
    }
    out
}

/// `"password: at least 8 characters"` -> `"Password: at least 8 characters."`; backticks
/// become quotation marks ([`plain_quotes`]).
pub(crate) fn sentence(message: &str) -> String {
    let message = plain_quotes(message.trim());
    let message = message.as_str();
    let mut chars = message.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Unreachable => {
                f.write_str("The server could not be reached. Check your connection and try again.")
            }
            ApiError::Unreadable => f.write_str(
                "The server's answer could not be understood. Reload the page and try again.",
            ),
            ApiError::Refused { status, .. } if *status >= 500 => f.write_str(
                "Something went wrong on the server. Try again in a moment; if it keeps \
                 happening, tell your administrator.",
            ),
            ApiError::Refused {
                message,
                retry_after,
                ..
            } => {
                f.write_str(&sentence(message))?;
                if let Some(secs) = retry_after {
                    let minutes = secs.div_ceil(60);
                    if *secs < 120 {
                        write!(f, " You can try again in {secs} seconds.")?;
                    } else {
                        write!(f, " You can try again in {minutes} minutes.")?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ApiError {}

/// Turns a non-2xx answer into [`ApiError::Refused`].
async fn refusal(response: Response) -> ApiError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.trim().parse().ok());
    match response.json::<ErrorBody>().await {
        Ok(body) => ApiError::Refused {
            status,
            code: body.error.code,
            message: body.error.message,
            retry_after,
        },
        // Not our JSON (a proxy, a 502 page): the status is all we know.
        Err(_) => ApiError::Refused {
            status,
            code: String::new(),
            message: format!("the server answered {} {}", status, response.status_text()),
            retry_after,
        },
    }
}

async fn send(request: Result<Request, gloo_net::Error>) -> Result<Response, ApiError> {
    let request = request.map_err(|_| ApiError::Unreachable)?;
    let response = request.send().await.map_err(|_| ApiError::Unreachable)?;
    if response.ok() {
        Ok(response)
    } else {
        Err(refusal(response).await)
    }
}

async fn json<T: DeserializeOwned>(
    request: Result<Request, gloo_net::Error>,
) -> Result<T, ApiError> {
    send(request)
        .await?
        .json::<T>()
        .await
        .map_err(|_| ApiError::Unreadable)
}

/// A `GET` for a page's data, aborted if the page (the reactive owner) is cleaned up first.
async fn get<T: DeserializeOwned>(url: &str) -> Result<T, ApiError> {
    let controller = web_sys::AbortController::new().ok();
    let signal = controller.as_ref().map(|c| c.signal());
    let controller = SendWrapper::new(controller);
    on_cleanup(move || {
        if let Some(controller) = controller.take() {
            controller.abort();
        }
    });
    json(Request::get(url).abort_signal(signal.as_ref()).build()).await
}

fn with_csrf(builder: RequestBuilder, csrf: &str) -> RequestBuilder {
    builder.header("X-CSRF-Token", csrf)
}

// ---------------------------------------------------------------------------------------------
// Wire types: the shared ones of `b3o_models::protocol` (and the model package), re-exported so
// pages name them through this module. Enums the server writes as strings are shown with the
// names below.

use b3o_models::Task;
pub use b3o_models::drift::{DriftReport, DriftSettings, FeatureDrift};
pub use b3o_models::package::ModelPackage;
use b3o_models::preprocess::{FeatureTransform, TargetEncoding};
pub use b3o_models::protocol::accounts::{
    AccountDeleted, ChangePassword, CreateToken, CreatedToken, Login, Me, PasswordChanged,
    PasswordReset, Register, Role, SetDisabled, SetRole, TokenView, UpdateProfile, UserView,
};
pub use b3o_models::protocol::history::{Run, RunList, RunRound};
pub use b3o_models::protocol::inference::{ImagePrediction, Prediction};
pub use b3o_models::protocol::jobs::{Job, JobList, JobStatus};
pub use b3o_models::protocol::monitoring::{
    DriftReference, DriftView, PartnerCheck, PartnerSummary, SetDriftSettings,
};
pub use b3o_models::protocol::operations::{CheckStatus, Health};
pub use b3o_models::protocol::registry::{
    DeploymentAction, DeploymentEvent, DeploymentEvents, DeploymentList, DeploymentView,
    FederatedEvaluation, GateCheck, GateRefusal, Promote, PromotionGate, SetGate, Sharing,
    SharingView, VersionDetail, VersionDetailList, lower_is_better,
};
pub use b3o_models::protocol::{
    CreateGroup, Created, GroupList, GroupMember, GroupRole, GroupSummary, GroupView,
    Hyperparameters, Join, Joined, MemberRole, MemberStatus, ModelKind, ModelTemplate, Optimizer,
    Phase, Presence, RoundList, RoundState, RoundView, TrainingControl, TrainingStarted,
    VersionList, VersionView,
};

/// A metrics map as the API sends it (`{"accuracy": 0.91, "loss": 0.3}`).
pub type Metrics = std::collections::BTreeMap<String, f64>;

/// The wire name of a model kind (`tabular`, `image_cnn`, `custom`).
pub fn model_kind_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Tabular => "tabular",
        ModelKind::ImageCnn => "image_cnn",
        ModelKind::Custom => "custom",
    }
}

/// The wire name of an optimiser (`sgd`, `adam`).
pub fn optimizer_name(optimizer: Optimizer) -> &'static str {
    match optimizer {
        Optimizer::Sgd => "sgd",
        Optimizer::Adam => "adam",
    }
}

/// The wire name of a task (`binary_classification`, ...).
pub fn task_name(task: Task) -> &'static str {
    match task {
        Task::BinaryClassification => "binary_classification",
        Task::MulticlassClassification => "multiclass_classification",
        Task::Regression => "regression",
    }
}

/// The task named `name` (its wire name).
pub fn task_named(name: &str) -> Option<Task> {
    [
        Task::BinaryClassification,
        Task::MulticlassClassification,
        Task::Regression,
    ]
    .into_iter()
    .find(|t| task_name(*t) == name)
}

/// The optimiser named `name` (its wire name).
pub fn optimizer_named(name: &str) -> Option<Optimizer> {
    [Optimizer::Sgd, Optimizer::Adam]
        .into_iter()
        .find(|o| optimizer_name(*o) == name)
}

/// The wire name of a passed health check (`ok`).
pub fn check_name(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Ok => "ok",
    }
}

/// The account role named `name` (`admin`, `member`).
pub fn role_named(name: &str) -> Option<Role> {
    [Role::Admin, Role::Member]
        .into_iter()
        .find(|r| r.as_str() == name)
}

// ---------------------------------------------------------------------------------------------
// Health

pub async fn health() -> Result<Health, ApiError> {
    get("/healthz").await
}

// ---------------------------------------------------------------------------------------------
// Accounts

pub async fn register(body: &Register) -> Result<Me, ApiError> {
    json(Request::post("/api/auth/register").json(body)).await
}

pub async fn login(email: &str, password: &str) -> Result<Me, ApiError> {
    let body = Login {
        email: email.to_string(),
        password: password.to_string(),
    };
    match json(Request::post("/api/auth/login").json(&body)).await {
        // The server's wording is lower-case and terse; this is the one people meet most.
        Err(ApiError::Refused {
            status: 401,
            code,
            retry_after,
            ..
        }) => Err(ApiError::Refused {
            status: 401,
            code,
            message: "Wrong email or password. Check both and try again.".into(),
            retry_after,
        }),
        other => other,
    }
}

pub async fn logout(csrf: &str) -> Result<(), ApiError> {
    send(with_csrf(Request::post("/api/auth/logout"), csrf).build()).await?;
    Ok(())
}

/// `Ok(None)` when nobody is signed in.
pub async fn me() -> Result<Option<Me>, ApiError> {
    match json(Request::get("/api/me").build()).await {
        Ok(me) => Ok(Some(me)),
        Err(e) if e.status() == Some(401) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn update_profile(
    csrf: &str,
    display_name: &str,
    organisation: &str,
) -> Result<UserView, ApiError> {
    let body = UpdateProfile {
        display_name: Some(display_name.to_string()),
        organisation: Some(organisation.to_string()),
    };
    json(with_csrf(Request::patch("/api/me"), csrf).json(&body)).await
}

pub async fn change_password(
    csrf: &str,
    current_password: &str,
    new_password: &str,
) -> Result<PasswordChanged, ApiError> {
    let body = ChangePassword {
        current_password: current_password.to_string(),
        new_password: new_password.to_string(),
    };
    json(with_csrf(Request::post("/api/auth/password"), csrf).json(&body)).await
}

pub async fn tokens() -> Result<Vec<TokenView>, ApiError> {
    get("/api/auth/tokens").await
}

pub async fn create_token(
    csrf: &str,
    name: &str,
    expires_in_days: Option<u32>,
) -> Result<CreatedToken, ApiError> {
    let body = CreateToken {
        name: name.to_string(),
        expires_in_days,
    };
    json(with_csrf(Request::post("/api/auth/tokens"), csrf).json(&body)).await
}

pub async fn revoke_token(csrf: &str, id: i64) -> Result<(), ApiError> {
    let url = format!("/api/auth/tokens/{id}");
    send(with_csrf(Request::delete(&url), csrf).build()).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Registry

pub async fn deployments() -> Result<Vec<DeploymentView>, ApiError> {
    get::<DeploymentList>("/api/deployments")
        .await
        .map(|d| d.deployments)
}

/// `GET /api/deployments/{name}`.
pub async fn deployment(name: &str) -> Result<DeploymentView, ApiError> {
    get(&format!("/api/deployments/{}", encode(name))).await
}

/// The input columns of a package's (tabular) model in order, and which of them hold numbers.
pub fn package_columns(package: &ModelPackage) -> (Vec<String>, Vec<String>) {
    let features = package
        .spec
        .preprocessing
        .as_ref()
        .map_or(&[][..], |p| &p.features[..]);
    let all = features.iter().map(|f| f.column().to_string()).collect();
    let numeric = features
        .iter()
        .filter(|f| matches!(f, FeatureTransform::Standardize { .. }))
        .map(|f| f.column().to_string())
        .collect();
    (all, numeric)
}

/// The column a package's (tabular) model predicts.
pub fn package_target(package: &ModelPackage) -> Option<String> {
    let target = &package.spec.preprocessing.as_ref()?.target;
    Some(match target {
        TargetEncoding::Classes { column, .. } | TargetEncoding::Standardize { column, .. } => {
            column.clone()
        }
    })
}

/// `GET /api/deployments/{name}/package`.
pub async fn package(name: &str) -> Result<ModelPackage, ApiError> {
    get(&format!("/api/deployments/{}/package", encode(name))).await
}

pub async fn sharing(name: &str) -> Result<SharingView, ApiError> {
    get(&format!("/api/deployments/{}/sharing", encode(name))).await
}

pub async fn set_sharing(
    csrf: &str,
    name: &str,
    sharing: &Sharing,
) -> Result<SharingView, ApiError> {
    let url = format!("/api/deployments/{}/sharing", encode(name));
    json(with_csrf(Request::put(&url), csrf).json(sharing)).await
}

/// Points deployment `name` at `version_id` (the group's owner). A promotion gate's refusal
/// is an [`ApiError::Refused`] with code `promotion_gate_failed`; [`promote_gated`] also
/// returns its numbers.
pub async fn promote(csrf: &str, name: &str, version_id: i64) -> Result<DeploymentView, ApiError> {
    let body = Promote {
        version_id,
        override_gate: false,
        reason: None,
    };
    promote_gated(csrf, name, &body).await.map_err(|r| r.error)
}

/// A refused promotion: why, and the promotion gate's numbers when the gate refused it.
#[derive(Debug, Clone, PartialEq)]
pub struct PromoteRefusal {
    pub error: ApiError,
    pub gate: Option<GateCheck>,
}

/// `PUT /api/deployments/{name}` with `body` (`override_gate` and a reason promote past the
/// promotion gate).
pub async fn promote_gated(
    csrf: &str,
    name: &str,
    body: &Promote,
) -> Result<DeploymentView, PromoteRefusal> {
    let plain = |error| PromoteRefusal { error, gate: None };
    let url = format!("/api/deployments/{}", encode(name));
    let request = with_csrf(Request::put(&url), csrf)
        .json(body)
        .map_err(|_| plain(ApiError::Unreachable))?;
    let response = request
        .send()
        .await
        .map_err(|_| plain(ApiError::Unreachable))?;
    if response.ok() {
        return response
            .json::<DeploymentView>()
            .await
            .map_err(|_| plain(ApiError::Unreadable));
    }
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    // The gate's refusal is the error body plus `error.gate`; other refusals parse as it too.
    Err(match serde_json::from_str::<GateRefusal>(&text) {
        Ok(body) => PromoteRefusal {
            error: ApiError::Refused {
                status,
                code: body.error.code,
                message: body.error.message,
                retry_after: None,
            },
            gate: body.error.gate,
        },
        Err(_) => plain(ApiError::Refused {
            status,
            code: String::new(),
            message: format!("the server answered {status}"),
            retry_after: None,
        }),
    })
}

/// `GET /api/deployments/{name}/events`: who promoted, overrode the gate, rolled back (the
/// deployment's group only).
pub async fn deployment_events(name: &str) -> Result<Vec<DeploymentEvent>, ApiError> {
    get::<DeploymentEvents>(&format!("/api/deployments/{}/events", encode(name)))
        .await
        .map(|e| e.events)
}

/// `GET /api/deployments/{name}/drift`: the deployment's drift (its group only).
pub async fn drift(name: &str) -> Result<DriftView, ApiError> {
    get(&format!("/api/deployments/{}/drift", encode(name))).await
}

/// `GET /api/deployments/{name}/drift/reference`: what a member's own check compares with.
pub async fn drift_reference(name: &str) -> Result<DriftReference, ApiError> {
    get(&format!(
        "/api/deployments/{}/drift/reference",
        encode(name)
    ))
    .await
}

/// `PUT /api/deployments/{name}/drift/settings` (the group's owner).
pub async fn set_drift_settings(
    csrf: &str,
    name: &str,
    settings: DriftSettings,
) -> Result<DriftSettings, ApiError> {
    let url = format!("/api/deployments/{}/drift/settings", encode(name));
    json(with_csrf(Request::put(&url), csrf).json(&SetDriftSettings { settings })).await
}

/// `POST /api/deployments/{name}/drift/partner`: a member's summary of its own data.
pub async fn contribute_drift(
    csrf: &str,
    name: &str,
    body: &PartnerSummary,
) -> Result<PartnerCheck, ApiError> {
    let url = format!("/api/deployments/{}/drift/partner", encode(name));
    json(with_csrf(Request::post(&url), csrf).json(body)).await
}

/// Sets (`Some`) or removes (`None`) deployment `name`'s promotion gate (the group's owner).
pub async fn set_gate(
    csrf: &str,
    name: &str,
    gate: Option<PromotionGate>,
) -> Result<DeploymentView, ApiError> {
    let url = format!("/api/deployments/{}/gate", encode(name));
    let body = SetGate { gate: Some(gate) };
    json(with_csrf(Request::put(&url), csrf).json(&body)).await
}

/// The model versions of a group with their federated evaluation (`GET
/// /api/groups/{id}/versions`).
pub async fn version_details(group_id: i64) -> Result<Vec<VersionDetail>, ApiError> {
    get::<VersionDetailList>(&format!("/api/groups/{group_id}/versions"))
        .await
        .map(|v| v.versions)
}

pub async fn rollback(csrf: &str, name: &str) -> Result<DeploymentView, ApiError> {
    let url = format!("/api/deployments/{}/rollback", encode(name));
    json(with_csrf(Request::post(&url), csrf).build()).await
}

/// The model versions of a group (`GET /api/groups/{id}/versions`).
pub async fn versions(group_id: i64) -> Result<Vec<VersionView>, ApiError> {
    get::<VersionList>(&format!("/api/groups/{group_id}/versions"))
        .await
        .map(|v| v.versions)
}

// ---------------------------------------------------------------------------------------------
// Codeless prediction on the server (when the browser cannot run the model)

/// `POST /api/predict/{name}/csv`: the CSV back with prediction columns appended.
pub async fn predict_csv(csrf: &str, name: &str, csv: &str) -> Result<String, ApiError> {
    let url = format!("/api/predict/{}/csv", encode(name));
    let request = with_csrf(Request::post(&url), csrf)
        .header("Content-Type", "text/csv; charset=utf-8")
        .body(csv.to_string());
    send(request)
        .await?
        .text()
        .await
        .map_err(|_| ApiError::Unreadable)
}

/// `POST /api/predict/{name}/image`: a PNG or JPEG -> label and probabilities by label.
pub async fn predict_image(
    csrf: &str,
    name: &str,
    bytes: &[u8],
) -> Result<ImagePrediction, ApiError> {
    let url = format!("/api/predict/{}/image", encode(name));
    let body = js_sys::Uint8Array::from(bytes);
    json(
        with_csrf(Request::post(&url), csrf)
            .header("Content-Type", "application/octet-stream")
            .body(body),
    )
    .await
}

/// A path segment, percent-encoded.
pub fn encode(segment: &str) -> String {
    js_sys::encode_uri_component(segment).into()
}

// ---------------------------------------------------------------------------------------------
// Federation: groups belong to accounts; the session cookie is the credential.

pub async fn groups() -> Result<Vec<GroupSummary>, ApiError> {
    get::<GroupList>("/api/groups").await.map(|g| g.groups)
}

/// `POST /api/groups`, with the request built by the groups page.
pub async fn create_group(csrf: &str, body: &CreateGroup) -> Result<Created, ApiError> {
    json(with_csrf(Request::post("/api/groups"), csrf).json(body)).await
}

/// Joins with `join_code`; `name` is how the other members see this one (empty: the
/// account's organisation).
pub async fn join_group(csrf: &str, join_code: &str, name: &str) -> Result<Joined, ApiError> {
    let name = name.trim();
    let body = Join {
        join_code: join_code.trim().to_string(),
        name: (!name.is_empty()).then(|| name.to_string()),
    };
    match json(with_csrf(Request::post("/api/groups/join"), csrf).json(&body)).await {
        Err(ApiError::Refused {
            status: 404,
            code,
            retry_after,
            ..
        }) => Err(ApiError::Refused {
            status: 404,
            code,
            message: "No group has this join code. Check it with the group's owner.".into(),
            retry_after,
        }),
        other => other,
    }
}

/// What the pages ask of a group (`GET /api/groups/{id}`).
pub trait GroupExt {
    /// The column a tabular group predicts.
    fn target(&self) -> Option<String>;
    /// The caller's role as shown (`owner`, `member`, `admin`, `left`; empty if not said).
    fn role_name(&self) -> &'static str;
    fn can_manage(&self) -> bool;
    fn can_train(&self) -> bool;
    /// The strategy's name (`fedavg` when the server did not say).
    fn strategy_name(&self) -> String;
}

/// The name of a strategy configuration: its one field every strategy has.
#[derive(Deserialize)]
struct StrategyName {
    name: String,
}

impl GroupExt for GroupView {
    fn target(&self) -> Option<String> {
        match &self.model {
            ModelTemplate::Tabular { schema, .. } => Some(schema.target.name.clone()),
            _ => None,
        }
    }

    fn role_name(&self) -> &'static str {
        self.role.map_or("", GroupRole::as_str)
    }

    fn can_manage(&self) -> bool {
        matches!(self.role, Some(GroupRole::Owner | GroupRole::Admin))
    }

    fn can_train(&self) -> bool {
        self.member_id.is_some() && matches!(self.role, Some(GroupRole::Owner | GroupRole::Member))
    }

    fn strategy_name(&self) -> String {
        StrategyName::deserialize(&self.strategy).map_or_else(|_| "fedavg".into(), |s| s.name)
    }
}

pub async fn group(group_id: i64) -> Result<GroupView, ApiError> {
    get(&format!("/api/groups/{group_id}")).await
}

pub async fn start_group(csrf: &str, group_id: i64) -> Result<TrainingStarted, ApiError> {
    let url = format!("/api/groups/{group_id}/start");
    json(with_csrf(Request::post(&url), csrf).build()).await
}

/// The owner's controls: `pause`, `resume`, `cancel` (`/api/groups/{id}/{action}`) and
/// `rounds/current/close`.
pub async fn control_group(
    csrf: &str,
    group_id: i64,
    action: &str,
) -> Result<TrainingControl, ApiError> {
    let url = format!("/api/groups/{group_id}/{action}");
    json(with_csrf(Request::post(&url), csrf).build()).await
}

/// The owner removes a member from the group.
pub async fn remove_member(csrf: &str, group_id: i64, member_id: i64) -> Result<(), ApiError> {
    let url = format!("/api/groups/{group_id}/members/{member_id}/remove");
    send(with_csrf(Request::post(&url), csrf).build()).await?;
    Ok(())
}

pub async fn leave_group(csrf: &str, group_id: i64) -> Result<(), ApiError> {
    let url = format!("/api/groups/{group_id}/leave");
    send(with_csrf(Request::post(&url), csrf).build()).await?;
    Ok(())
}

/// The rounds of a group (`GET /api/groups/{id}/rounds`), oldest first.
pub async fn rounds(group_id: i64) -> Result<Vec<RoundView>, ApiError> {
    get::<RoundList>(&format!("/api/groups/{group_id}/rounds"))
        .await
        .map(|r| r.rounds)
}

// ---------------------------------------------------------------------------------------------
// History: federated runs and inference jobs

/// `GET /api/history/runs`: the caller's runs.
pub async fn history_runs() -> Result<Vec<Run>, ApiError> {
    get::<RunList>("/api/history/runs").await.map(|r| r.runs)
}

/// `GET /api/jobs`: the caller's batch inference jobs.
pub async fn jobs() -> Result<Vec<Job>, ApiError> {
    get::<JobList>("/api/jobs").await.map(|j| j.jobs)
}

/// `POST /api/jobs` (multipart `model` + `file`): a batch prediction on the server.
pub async fn submit_job(csrf: &str, model: &str, file: &web_sys::File) -> Result<Job, ApiError> {
    let form = web_sys::FormData::new().map_err(|_| ApiError::Unreachable)?;
    form.append_with_str("model", model)
        .map_err(|_| ApiError::Unreachable)?;
    form.append_with_blob_and_filename("file", file, &file.name())
        .map_err(|_| ApiError::Unreachable)?;
    json(with_csrf(Request::post("/api/jobs"), csrf).body(form)).await
}

// ---------------------------------------------------------------------------------------------
// Administration

pub async fn admin_users() -> Result<Vec<UserView>, ApiError> {
    get("/api/admin/users").await
}

pub async fn set_role(csrf: &str, user_id: i64, role: Role) -> Result<UserView, ApiError> {
    let url = format!("/api/admin/users/{user_id}/role");
    json(with_csrf(Request::put(&url), csrf).json(&SetRole { role })).await
}

/// A new one-time password for the account (shown once); it must choose a new one at its next
/// sign-in.
pub async fn reset_password(csrf: &str, user_id: i64) -> Result<PasswordReset, ApiError> {
    let url = format!("/api/admin/users/{user_id}/password");
    json(with_csrf(Request::post(&url), csrf).build()).await
}

pub async fn set_disabled(csrf: &str, user_id: i64, disabled: bool) -> Result<UserView, ApiError> {
    let url = format!("/api/admin/users/{user_id}/disabled");
    json(with_csrf(Request::put(&url), csrf).json(&SetDisabled { disabled })).await
}

pub async fn delete_user(csrf: &str, user_id: i64) -> Result<AccountDeleted, ApiError> {
    let url = format!("/api/admin/users/{user_id}");
    json(with_csrf(Request::delete(&url), csrf).build()).await
}

/// `GET /metrics` (Prometheus text).
pub async fn metrics_text() -> Result<String, ApiError> {
    send(Request::get("/metrics").build())
        .await?
        .text()
        .await
        .map_err(|_| ApiError::Unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backticks_become_quotation_marks() {
        assert_eq!(
            sentence("unknown column `Agee`; the model's columns are `Age`, `Balance`"),
            "Unknown column “Agee”; the model's columns are “Age”, “Balance”."
        );
        assert_eq!(plain_quotes("a ` b"), "a ` b");
        assert_eq!(
            sentence("this file is not a PNG or JPEG image"),
            "This file is not a PNG or JPEG image."
        );
    }

    #[test]
    fn server_messages_become_sentences() {
        let e = ApiError::Refused {
            status: 400,
            code: "bad_request".into(),
            message: "password: at least 8 characters".into(),
            retry_after: None,
        };
        assert_eq!(e.to_string(), "Password: at least 8 characters.");
        let limited = ApiError::Refused {
            status: 429,
            code: "too_many_requests".into(),
            message: "too many failed sign-in attempts; try again later".into(),
            retry_after: Some(300),
        };
        assert!(limited.to_string().ends_with("try again in 5 minutes."));
        let internal = ApiError::Refused {
            status: 500,
            code: "internal".into(),
            message: "internal server error".into(),
            retry_after: None,
        };
        assert!(internal.to_string().starts_with("Something went wrong"));
    }

    #[test]
    fn groups_say_what_the_caller_may_do_and_their_strategy() {
        let body = serde_json::json!({
            "id": 3, "name": "g", "rounds": 2, "phase": "training", "members": 2,
            "ready_members": 1, "role": "member", "member_id": 8,
            "model": { "kind": "tabular", "schema": {
                "features": [{ "name": "age", "kind": "numeric" }],
                "target": { "name": "exited", "task": "binary_classification" },
                "excluded": [] } },
            "hyperparameters": { "rounds": 2 },
            "strategy": { "name": "fedprox", "proximal_mu": 0.1 },
            "member_list": [
                { "member_id": 7, "name": "owner", "role": "owner", "ready": false,
                  "left": false, "round_status": null },
                { "member_id": 8, "name": "org b", "role": "member", "ready": true,
                  "left": false, "round_status": "selected" },
            ],
        });
        let g: GroupView = serde_json::from_value(body).unwrap();
        assert_eq!(g.target().as_deref(), Some("exited"));
        assert_eq!(model_kind_name(g.model.kind()), "tabular");
        assert_eq!(
            (g.role_name(), g.can_train(), g.can_manage()),
            ("member", true, false)
        );
        assert_eq!(g.strategy_name(), "fedprox");
        assert_eq!(g.member_list[1].round_status, Some(MemberStatus::Selected));
        let mut owner = g.clone();
        owner.role = Some(GroupRole::Admin);
        owner.strategy = serde_json::Value::Null;
        assert!(owner.can_manage());
        assert_eq!(owner.strategy_name(), "fedavg");
    }

    #[test]
    fn packages_name_their_columns_and_target() {
        let package: ModelPackage = serde_json::from_value(serde_json::json!({
            "format": "b3o-model-package/1", "name": "churn", "version": 4,
            "spec": {
                "architecture": { "kind": "mlp", "hidden": [8], "activation": { "kind": "relu" } },
                "preprocessing": {
                    "version": 1,
                    "features": [
                        { "kind": "standardize", "column": "age", "mean": 40.0, "std": 10.0,
                          "impute": 40.0 },
                        { "kind": "one_hot", "column": "city", "vocabulary": ["Paris", "Lyon"],
                          "impute": "Paris" },
                    ],
                    "target": { "kind": "classes", "column": "exited", "labels": ["0", "1"] },
                    "task": "binary_classification",
                },
                "task": "binary_classification", "labels": ["0", "1"], "input_shape": [4],
            },
            "onnx_path": "/x", "onnx_sha256": "00", "onnx_bytes": 1,
        }))
        .unwrap();
        let (all, numeric) = package_columns(&package);
        assert_eq!(
            (all, numeric),
            (vec!["age".into(), "city".into()], vec!["age".into()])
        );
        assert_eq!(package_target(&package).as_deref(), Some("exited"));
        assert_eq!(task_name(package.spec.task), "binary_classification");
    }
}
