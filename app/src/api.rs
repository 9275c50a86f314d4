//! Every HTTP call the app makes, with typed results and errors in plain words.
//!
//! Reads (`GET`) made for a page are aborted when the page goes away; writes are not (a form
//! that was sent should finish). Cookie-authenticated writes carry the session's CSRF token as
//! `X-CSRF-Token`, which the caller passes in from [`crate::session::Session`].

use gloo_net::http::{Request, RequestBuilder, Response};
use leptos::prelude::on_cleanup;
use send_wrapper::SendWrapper;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// `"password: at least 8 characters"` -> `"Password: at least 8 characters."`
pub(crate) fn sentence(message: &str) -> String {
    let message = message.trim();
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

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

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
// Health

#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}

pub async fn health() -> Result<Health, ApiError> {
    get("/healthz").await
}

// ---------------------------------------------------------------------------------------------
// Accounts

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub organisation: String,
    pub role: String,
    #[serde(default)]
    pub must_change_password: bool,
    pub created_at: String,
}

/// The signed-in account and the CSRF token of its session.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Me {
    pub user: User,
    /// Absent only for API-token callers, which this app never is.
    #[serde(default)]
    pub csrf_token: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Register {
    pub email: String,
    pub display_name: String,
    pub organisation: String,
    pub password: String,
}

pub async fn register(body: &Register) -> Result<Me, ApiError> {
    json(Request::post("/api/auth/register").json(body)).await
}

pub async fn login(email: &str, password: &str) -> Result<Me, ApiError> {
    let body = serde_json::json!({ "email": email, "password": password });
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
) -> Result<User, ApiError> {
    let body = serde_json::json!({ "display_name": display_name, "organisation": organisation });
    json(with_csrf(Request::patch("/api/me"), csrf).json(&body)).await
}

#[derive(Debug, Clone, Deserialize)]
pub struct PasswordChanged {
    pub revoked_sessions: u64,
}

pub async fn change_password(
    csrf: &str,
    current_password: &str,
    new_password: &str,
) -> Result<PasswordChanged, ApiError> {
    let body = serde_json::json!({
        "current_password": current_password,
        "new_password": new_password,
    });
    json(with_csrf(Request::post("/api/auth/password"), csrf).json(&body)).await
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    /// The first characters, e.g. `b3o_1a2b3c4d`.
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub view: ApiToken,
    /// The whole token: this answer is the only time it is shown.
    pub token: String,
}

pub async fn tokens() -> Result<Vec<ApiToken>, ApiError> {
    get("/api/auth/tokens").await
}

pub async fn create_token(
    csrf: &str,
    name: &str,
    expires_in_days: Option<u32>,
) -> Result<CreatedToken, ApiError> {
    let body = serde_json::json!({ "name": name, "expires_in_days": expires_in_days });
    json(with_csrf(Request::post("/api/auth/tokens"), csrf).json(&body)).await
}

pub async fn revoke_token(csrf: &str, id: i64) -> Result<(), ApiError> {
    let url = format!("/api/auth/tokens/{id}");
    send(with_csrf(Request::delete(&url), csrf).build()).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Registry

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Deployment {
    pub name: String,
    pub version_id: i64,
    pub group_id: i64,
    pub round: i64,
    /// Whatever the round's evaluation reported, e.g. `{"accuracy": 0.91, "loss": 0.3}`.
    #[serde(default)]
    pub metrics: Value,
    pub updated_at: String,
    /// Version ids this name pointed at before, newest first.
    #[serde(default)]
    pub history: Vec<i64>,
}

#[derive(Deserialize)]
struct Deployments {
    deployments: Vec<Deployment>,
}

pub async fn deployments() -> Result<Vec<Deployment>, ApiError> {
    get::<Deployments>("/api/deployments")
        .await
        .map(|d| d.deployments)
}

/// `GET /api/deployments/{name}`.
pub async fn deployment(name: &str) -> Result<Deployment, ApiError> {
    get(&format!("/api/deployments/{}", encode(name))).await
}

/// What a client needs to run a deployed model (`b3o_models::package::ModelPackage`); only the
/// parts this app reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelPackage {
    pub name: String,
    pub version: i64,
    pub spec: PackageSpec,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PackageSpec {
    #[serde(default)]
    pub preprocessing: Option<Value>,
    #[serde(default)]
    pub task: String,
    #[serde(default)]
    pub labels: Vec<String>,
}

impl ModelPackage {
    /// The input columns in order, and which of them hold numbers (tabular models).
    pub fn columns(&self) -> (Vec<String>, Vec<String>) {
        let features = self
            .spec
            .preprocessing
            .as_ref()
            .and_then(|p| p["features"].as_array().cloned())
            .unwrap_or_default();
        let column = |f: &Value| f["column"].as_str().map(str::to_string);
        let all = features.iter().filter_map(column).collect();
        let numeric = features
            .iter()
            .filter(|f| f["kind"] == "standardize")
            .filter_map(column)
            .collect();
        (all, numeric)
    }

    /// The column the model predicts (tabular models).
    pub fn target(&self) -> Option<String> {
        self.spec.preprocessing.as_ref()?["target"]["column"]
            .as_str()
            .map(str::to_string)
    }
}

/// `GET /api/deployments/{name}/package`.
pub async fn package(name: &str) -> Result<ModelPackage, ApiError> {
    get(&format!("/api/deployments/{}/package", encode(name))).await
}

/// Who may use a deployed model without being a member of its group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sharing {
    #[serde(default)]
    pub public: bool,
    /// Origins of partner sites whose pages may run the model (the embed widget).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

pub async fn sharing(name: &str) -> Result<Sharing, ApiError> {
    get(&format!("/api/deployments/{}/sharing", encode(name))).await
}

pub async fn set_sharing(csrf: &str, name: &str, sharing: &Sharing) -> Result<Sharing, ApiError> {
    let url = format!("/api/deployments/{}/sharing", encode(name));
    json(with_csrf(Request::put(&url), csrf).json(sharing)).await
}

/// Points deployment `name` at `version_id` (the group's owner).
pub async fn promote(csrf: &str, name: &str, version_id: i64) -> Result<Deployment, ApiError> {
    let url = format!("/api/deployments/{}", encode(name));
    let body = serde_json::json!({ "version_id": version_id });
    json(with_csrf(Request::put(&url), csrf).json(&body)).await
}

pub async fn rollback(csrf: &str, name: &str) -> Result<Deployment, ApiError> {
    let url = format!("/api/deployments/{}/rollback", encode(name));
    json(with_csrf(Request::post(&url), csrf).build()).await
}

/// A model version of a group (`GET /api/groups/{id}/versions`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Version {
    pub id: i64,
    pub group_id: i64,
    pub round: i64,
    #[serde(default)]
    pub parent_id: Option<i64>,
    #[serde(default)]
    pub num_params: i64,
    #[serde(default)]
    pub size_bytes: i64,
    #[serde(default)]
    pub metrics: Value,
    #[serde(default)]
    pub has_onnx: bool,
    #[serde(default)]
    pub created_at: String,
}

#[derive(Deserialize)]
struct Versions {
    versions: Vec<Version>,
}

pub async fn versions(group_id: i64) -> Result<Vec<Version>, ApiError> {
    get::<Versions>(&format!("/api/groups/{group_id}/versions"))
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
pub async fn predict_image(csrf: &str, name: &str, bytes: &[u8]) -> Result<Value, ApiError> {
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

/// A group in the caller's list (`GET /api/groups`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GroupSummary {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `tabular`, `image_cnn` or `custom`.
    #[serde(default)]
    pub model_kind: Option<String>,
    pub phase: String,
    pub rounds: i64,
    #[serde(default)]
    pub current_round: Option<i64>,
    #[serde(default)]
    pub current_round_state: Option<String>,
    #[serde(default)]
    pub members: i64,
    /// `owner`, `member`, `admin` or `left`.
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub member_id: Option<i64>,
    #[serde(default)]
    pub created_at: String,
}

#[derive(Deserialize)]
struct GroupList {
    groups: Vec<GroupSummary>,
}

pub async fn groups() -> Result<Vec<GroupSummary>, ApiError> {
    get::<GroupList>("/api/groups").await.map(|g| g.groups)
}

#[derive(Debug, Clone, Deserialize)]
pub struct CreatedGroup {
    pub group_id: i64,
}

/// `body` is the `POST /api/groups` request, built by the groups page.
pub async fn create_group(csrf: &str, body: &Value) -> Result<CreatedGroup, ApiError> {
    json(with_csrf(Request::post("/api/groups"), csrf).json(body)).await
}

#[derive(Debug, Clone, Deserialize)]
pub struct JoinedGroup {
    pub group_id: i64,
}

/// Joins with `join_code`; `name` is how the other members see this one (empty: the
/// account's organisation).
pub async fn join_group(csrf: &str, join_code: &str, name: &str) -> Result<JoinedGroup, ApiError> {
    let name = name.trim();
    let body = if name.is_empty() {
        serde_json::json!({ "join_code": join_code.trim() })
    } else {
        serde_json::json!({ "join_code": join_code.trim(), "name": name })
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

/// One membership of a group (`member_list` of `GET /api/groups/{id}`): no email.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GroupMember {
    #[serde(default)]
    pub member_id: i64,
    #[serde(default)]
    pub name: String,
    /// `owner` or `member`.
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub left: bool,
    /// In the current round: `selected`, `reported`, `failed`, `dropped`; none when not selected.
    #[serde(default)]
    pub round_status: Option<String>,
}

/// `GET /api/groups/{id}`: a group as its owner and members see it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Group {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub model: Value,
    #[serde(default)]
    pub hyperparameters: Value,
    #[serde(default)]
    pub strategy: Value,
    pub rounds: i64,
    #[serde(default)]
    pub min_clients: i64,
    pub phase: String,
    /// How many members are active.
    #[serde(default)]
    pub members: i64,
    #[serde(default)]
    pub ready_members: i64,
    /// Every membership and where it stands (empty from servers that do not list them).
    #[serde(default)]
    pub member_list: Vec<GroupMember>,
    #[serde(default)]
    pub current_round: Option<i64>,
    #[serde(default)]
    pub current_round_state: Option<String>,
    /// Only for those who manage the group.
    #[serde(default)]
    pub join_code: Option<String>,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub member_id: Option<i64>,
}

impl Group {
    /// `"tabular"` or `"image_cnn"` (or `"custom"`).
    pub fn model_kind(&self) -> &str {
        self.model["kind"].as_str().unwrap_or("custom")
    }

    /// The column a tabular group predicts.
    pub fn target(&self) -> Option<String> {
        self.model["schema"]["target"]["name"]
            .as_str()
            .map(str::to_string)
    }

    pub fn can_manage(&self) -> bool {
        matches!(self.role.as_str(), "owner" | "admin")
    }

    pub fn can_train(&self) -> bool {
        self.member_id.is_some() && matches!(self.role.as_str(), "owner" | "member")
    }
}

pub async fn group(group_id: i64) -> Result<Group, ApiError> {
    get(&format!("/api/groups/{group_id}")).await
}

pub async fn start_group(csrf: &str, group_id: i64) -> Result<Value, ApiError> {
    let url = format!("/api/groups/{group_id}/start");
    json(with_csrf(Request::post(&url), csrf).build()).await
}

pub async fn leave_group(csrf: &str, group_id: i64) -> Result<(), ApiError> {
    let url = format!("/api/groups/{group_id}/leave");
    send(with_csrf(Request::post(&url), csrf).build()).await?;
    Ok(())
}

/// A round of a group (`GET /api/groups/{id}/rounds`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Round {
    pub round: i64,
    pub state: String,
    #[serde(default)]
    pub result_version_id: Option<i64>,
    #[serde(default)]
    pub failure: Option<String>,
    /// Aggregated training metrics of the members' updates (e.g. `loss`).
    #[serde(default)]
    pub metrics: Value,
    /// Aggregated evaluation of the new model on the members' held-out rows.
    #[serde(default)]
    pub evaluation: Value,
    #[serde(default)]
    pub selected: i64,
    #[serde(default)]
    pub reported: i64,
}

#[derive(Deserialize)]
struct Rounds {
    rounds: Vec<Round>,
}

pub async fn rounds(group_id: i64) -> Result<Vec<Round>, ApiError> {
    get::<Rounds>(&format!("/api/groups/{group_id}/rounds"))
        .await
        .map(|r| r.rounds)
}

// ---------------------------------------------------------------------------------------------
// History: federated runs and inference jobs

/// `GET /api/history/runs`: the caller's runs, kept as JSON (the page reads what it shows).
pub async fn history_runs() -> Result<Vec<Value>, ApiError> {
    let v: Value = get("/api/history/runs").await?;
    Ok(list_in(v, "runs"))
}

/// `GET /api/jobs`: the caller's batch inference jobs.
pub async fn jobs() -> Result<Vec<Value>, ApiError> {
    let v: Value = get("/api/jobs").await?;
    Ok(list_in(v, "jobs"))
}

/// `v[key]` when it is an array, or `v` itself when it is one.
fn list_in(v: Value, key: &str) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Object(mut m) => match m.remove(key) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// `POST /api/jobs` (multipart `model` + `file`): a batch prediction on the server.
pub async fn submit_job(csrf: &str, model: &str, file: &web_sys::File) -> Result<Value, ApiError> {
    let form = web_sys::FormData::new().map_err(|_| ApiError::Unreachable)?;
    form.append_with_str("model", model)
        .map_err(|_| ApiError::Unreachable)?;
    form.append_with_blob_and_filename("file", file, &file.name())
        .map_err(|_| ApiError::Unreachable)?;
    json(with_csrf(Request::post("/api/jobs"), csrf).body(form)).await
}

// ---------------------------------------------------------------------------------------------
// Administration

pub async fn admin_users() -> Result<Vec<Value>, ApiError> {
    let v: Value = get("/api/admin/users").await?;
    Ok(list_in(v, "users"))
}

pub async fn set_role(csrf: &str, user_id: i64, role: &str) -> Result<Value, ApiError> {
    let url = format!("/api/admin/users/{user_id}/role");
    let body = serde_json::json!({ "role": role });
    json(with_csrf(Request::put(&url), csrf).json(&body)).await
}

/// The full health answer (`GET /healthz`), as JSON.
pub async fn health_details() -> Result<Value, ApiError> {
    get("/healthz").await
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
    fn groups_read_their_member_list_and_older_answers_without_one() {
        let mut body = serde_json::json!({
            "id": 3, "name": "g", "rounds": 2, "phase": "training", "members": 2,
            "ready_members": 1, "role": "member", "member_id": 8,
        });
        let old: Group = serde_json::from_value(body.clone()).unwrap();
        assert_eq!((old.members, old.member_list.len()), (2, 0));
        body["member_list"] = serde_json::json!([
            { "member_id": 7, "name": "owner", "role": "owner", "ready": false, "left": false,
              "round_status": null },
            { "member_id": 8, "name": "org b", "role": "member", "ready": true, "left": false,
              "round_status": "selected" },
        ]);
        let g: Group = serde_json::from_value(body).unwrap();
        let names: Vec<&str> = g.member_list.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["owner", "org b"]);
        assert!(g.member_list[1].ready);
        assert_eq!(g.member_list[1].round_status.as_deref(), Some("selected"));
    }
}
