//! Federated evaluation of versions: what the members of a version's group measured of it on
//! their own held-out rows (only the metrics left them), per member and weighted by rows.
//!
//! The reports are the federation's `evaluations` rows, one per member and round, read here
//! through `rounds.result_version_id` (a version made by round *n* is evaluated as round *n*'s
//! model). Members report them after each round (`POST /api/groups/{id}/rounds/{n}/evaluation`,
//! `crate::federation::updates`) or for any version later, by its id
//! ([`report_version_evaluation`], `b3o client --evaluate-version`), which writes the same row.
//! A version that no round produced (version 0, published models) has no such row.
//!
//! Reading costs one query per page: [`of_group`] reads every version of a group at once (the
//! version list), [`of_version`] one version (its view and the promotion gate).

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::State;
use b3o_models::protocol::registry::{FederatedEvaluation, MemberEvaluation};
use b3o_models::protocol::{ErrorBody, Evaluation, EvaluationAccepted};

use crate::accounts::CurrentUser;
use crate::accounts::extract::{ApiJson, ApiPath};
use crate::db::Conn;
use crate::error::ApiError;
use crate::state::AppState;

/// A report: version, member id, member name, rows, metrics (JSON object).
type ReportRow = (i64, i64, String, i64, String);

const REPORTS: &str = "SELECT r.result_version_id, e.member_id, m.name, e.num_samples,
        e.metrics_json
    FROM evaluations e
    JOIN rounds r ON r.id = e.round_id
    JOIN members m ON m.id = e.member_id";

fn member(row: ReportRow) -> (i64, MemberEvaluation) {
    let (version_id, member_id, name, num_samples, metrics) = row;
    let metrics = super::parse_metrics(&metrics).unwrap_or_default();
    (
        version_id,
        MemberEvaluation {
            member_id,
            name,
            num_samples,
            metrics,
        },
    )
}

/// The federated evaluation of version `version_id` of group `group_id`.
pub(super) async fn of_version(
    conn: &mut Conn,
    group_id: i64,
    version_id: i64,
) -> Result<FederatedEvaluation, ApiError> {
    let rows: Vec<ReportRow> = sqlx::query_as(&format!(
        "{REPORTS} WHERE r.group_id = $1 AND r.result_version_id = $2 ORDER BY e.member_id"
    ))
    .bind(group_id)
    .bind(version_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(FederatedEvaluation::from_members(
        rows.into_iter().map(|r| member(r).1).collect(),
    ))
}

/// The federated evaluation of every evaluated version of group `group_id`, by version id,
/// in one query.
pub(super) async fn of_group(
    conn: &mut Conn,
    group_id: i64,
) -> Result<HashMap<i64, FederatedEvaluation>, ApiError> {
    let rows: Vec<ReportRow> = sqlx::query_as(&format!(
        "{REPORTS} WHERE r.group_id = $1 AND r.result_version_id IS NOT NULL
         ORDER BY r.result_version_id, e.member_id"
    ))
    .bind(group_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_version: BTreeMap<i64, Vec<MemberEvaluation>> = BTreeMap::new();
    for row in rows {
        let (version, m) = member(row);
        by_version.entry(version).or_default().push(m);
    }
    Ok(by_version
        .into_iter()
        .map(|(v, members)| (v, FederatedEvaluation::from_members(members)))
        .collect())
}

/// The checks of an evaluation report, as `crate::federation::updates` makes them for the
/// round route (the same limits, the same words).
fn check(state: &AppState, req: &Evaluation) -> Result<(), ApiError> {
    req.check(
        state.limits.max_metrics_per_update,
        "--max-metrics-per-update",
    )
    .map_err(ApiError::BadRequest)
}

/// A member's metrics of a version on its own held-out rows (only the metrics leave it), for
/// any version its group made in a round; recorded as that round's evaluation, replacing an
/// earlier report of the member's.
#[utoipa::path(
    post,
    operation_id = "report_version_evaluation",
    path = "/api/versions/{id}/evaluation",
    tag = "registry",
    params(("id" = i64, Path, description = "Version id")),
    request_body(content = Evaluation, content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded as the evaluation of the round that made the version (replacing an earlier report)", body = EvaluationAccepted),
        (status = 400, description = "Malformed body, `num_samples` out of 1..2^40, too many metrics, a metric name of 0 or too many characters or a value that is not finite, or the id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an active member of the version's group, or a missing X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such version, or the caller may not see its group", body = ErrorBody),
        (status = 409, description = "The version was not made by a federated round (version 0, a published model): there is no round to record it for", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub(super) async fn report_version_evaluation(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath(version_id): ApiPath<i64>,
    ApiJson(req): ApiJson<Evaluation>,
) -> Result<Json<EvaluationAccepted>, ApiError> {
    let (v, access) = super::visible_version(&state.db, &user, version_id).await?;
    let member = access.require_member()?;
    check(&state, &req)?;
    let round: Option<(i64, i64)> = sqlx::query_as(
        "SELECT id, number FROM rounds WHERE group_id = $1 AND result_version_id = $2",
    )
    .bind(v.1)
    .bind(version_id)
    .fetch_optional(&state.db)
    .await?;
    let Some((round_id, number)) = round else {
        return Err(ApiError::Conflict(format!(
            "model version {version_id} was not produced by a federated round (round {} of its \
             group: initial or published weights), so there is no round to record an \
             evaluation for",
            v.2
        )));
    };
    let metrics = serde_json::to_string(&req.metrics)
        .map_err(|e| ApiError::Internal(format!("metrics: {e}")))?;
    sqlx::query(
        "INSERT INTO evaluations (round_id, member_id, num_samples, metrics_json, received_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (round_id, member_id) DO UPDATE SET num_samples = excluded.num_samples,
             metrics_json = excluded.metrics_json,
             received_at = excluded.received_at",
    )
    .bind(round_id)
    .bind(member.id)
    .bind(req.num_samples as i64)
    .bind(metrics)
    .bind(crate::db::now_text())
    .execute(&state.db)
    .await?;
    Ok(Json(EvaluationAccepted {
        round: number,
        member_id: member.id,
        accepted: true,
    }))
}
