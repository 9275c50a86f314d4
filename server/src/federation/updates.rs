//! `POST /api/groups/{id}/rounds/{n}/update`: a member's trained weights for round `n`.
//!
//! Order of checks, all but the last two before a byte of the body is read: the caller's
//! account and active membership; a replay of an already accepted update (the same answer for
//! the same bytes, whatever the round's state now: a declared length other than the accepted
//! update's is a 409 at once, and an undeclared one is read no further than that size, hashed
//! as it streams); the round (exists, still collecting, member selected); the declared size
//! (413). Then the body streams to a temporary file beside its final place ([`super::spool`]),
//! the byte limit enforced as it arrives (413); then the content is read back and checked
//! against the group's encoding and layout (names, shapes, dtype, indices, scales, finite
//! values; a compressed delta is added to the round's base model), its metadata (model,
//! round, samples, at most `--max-metrics-per-update` metrics with short names) and the
//! optional norm bound (400). Then the file is fsynced and renamed into place, the row
//! committed, the update folded into the round's running mean, and only then is the answer
//! sent.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::RoundAccumulator;
// The wire types are shared with the clients (`b3o_models::protocol`).
use super::model::{
    Accepted, ErrorBody, Evaluation, EvaluationAccepted, Failure, FailureReported, MemberStatus,
    RoundState,
};
use super::rounds::{self, GroupSettings};
use super::{buffered, spool};
use crate::accounts::CurrentUser;
use crate::accounts::extract::{ApiJson, ApiPath};
use crate::error::ApiError;
use crate::membership::{self, Member};
use crate::state::AppState;
use crate::strategy::{self, Accumulation, WeightedMean};
use b3o_models::weights::{DecodeLimits, FormatError, WeightLayout};

struct RoundRow {
    id: i64,
    state: RoundState,
    base_version_id: i64,
}

async fn find_round(
    state: &AppState,
    group_id: i64,
    number: i64,
) -> Result<Option<RoundRow>, ApiError> {
    let row: Option<(i64, String, i64)> = sqlx::query_as(
        "SELECT id, state, base_version_id FROM rounds WHERE group_id = $1 AND number = $2",
    )
    .bind(group_id)
    .bind(number)
    .fetch_optional(&state.db)
    .await?;
    Ok(row.map(|(id, state, base_version_id)| RoundRow {
        id,
        state: RoundState::parse(&state),
        base_version_id,
    }))
}

/// The update a member trained in round `number` and that was accepted (into that round, or
/// in an asynchronous group into a later round's buffer), and its size in bytes.
async fn existing(
    state: &AppState,
    group_id: i64,
    number: i64,
    member_id: i64,
) -> Result<Option<(Accepted, u64)>, ApiError> {
    type Row = (i64, i64, String, i64, Option<i64>, i64, i64);
    let row: Option<Row> = sqlx::query_as(
        "SELECT u.id, u.num_samples, u.sha256, u.size_bytes, u.trained_from, u.staleness, r.number
         FROM updates u JOIN rounds r ON r.id = u.round_id
         WHERE r.group_id = $1 AND u.member_id = $2
           AND (u.trained_from = $3 OR (u.trained_from IS NULL AND r.number = $4))",
    )
    .bind(group_id)
    .bind(member_id)
    .bind(number)
    .bind(number)
    .fetch_optional(&state.db)
    .await?;
    Ok(row.map(
        |(update_id, num_samples, sha256, size, trained_from, staleness, into)| {
            let stale = trained_from.is_some();
            let accepted = Accepted {
                update_id,
                round: number,
                num_samples,
                sha256,
                buffered_in: stale.then_some(into),
                staleness: stale.then_some(staleness),
            };
            (accepted, u64::try_from(size).unwrap_or(0))
        },
    ))
}

/// 409 for a second, different update from the same member.
fn different_content(number: i64) -> ApiError {
    ApiError::Conflict(format!(
        "an update for round {number} was already accepted from you with different content"
    ))
}

/// 409 for a round that no longer (or not yet) takes updates, naming the current round.
async fn not_collecting(
    state: &AppState,
    group_id: i64,
    number: i64,
    round_state: &str,
) -> ApiError {
    let current: Option<i64> =
        sqlx::query_scalar("SELECT MAX(number) FROM rounds WHERE group_id = $1")
            .bind(group_id)
            .fetch_one(&state.db)
            .await
            .unwrap_or(None);
    let current = current.map_or("none".to_string(), |c| c.to_string());
    ApiError::Conflict(format!(
        "round {number} is {round_state} and takes no more updates (the current round is {current})"
    ))
}

async fn selection_status(
    state: &AppState,
    round_id: i64,
    member_id: i64,
) -> Result<Option<MemberStatus>, ApiError> {
    let status: Option<String> = sqlx::query_scalar(
        "SELECT status FROM round_members WHERE round_id = $1 AND member_id = $2",
    )
    .bind(round_id)
    .bind(member_id)
    .fetch_optional(&state.db)
    .await?;
    Ok(status.as_deref().map(MemberStatus::parse))
}

/// What [`admit`] found: the round the update was trained in, for a replay the earlier answer
/// and its size, and in an asynchronous group whose round `n` is over the buffer that takes
/// the update instead.
struct Admitted {
    round: RoundRow,
    earlier: Option<(Accepted, u64)>,
    restaged: Option<buffered::Restaged>,
}

/// Checks everything that does not need the body.
async fn admit(
    state: &AppState,
    group_id: i64,
    number: i64,
    member: &Member,
) -> Result<Admitted, ApiError> {
    let round = find_round(state, group_id, number).await?;
    let Some(round) = round else {
        let current: Option<i64> =
            sqlx::query_scalar("SELECT MAX(number) FROM rounds WHERE group_id = $1")
                .bind(group_id)
                .fetch_one(&state.db)
                .await?;
        return Err(match current {
            Some(c) if number > c => ApiError::Conflict(format!(
                "round {number} has not started (the current round is {c})"
            )),
            Some(_) | None if number >= 1 => ApiError::Conflict(format!(
                "round {number} has not started: training has not begun"
            )),
            _ => ApiError::NotFound(format!("group {group_id} has no round {number}")),
        });
    };
    if let Some(earlier) = existing(state, group_id, number, member.id).await? {
        return Ok(Admitted {
            round,
            earlier: Some(earlier),
            restaged: None,
        });
    }
    if !round.state.is_live() {
        if let Some(config) = buffered::load(&state.db, group_id).await? {
            let restaged =
                buffered::admit_stale(&state.db, &config, group_id, number, round.state, member.id)
                    .await?;
            return Ok(Admitted {
                round,
                earlier: None,
                restaged: Some(restaged),
            });
        }
        return Err(not_collecting(state, group_id, number, round.state.as_str()).await);
    }
    match selection_status(state, round.id, member.id).await? {
        Some(MemberStatus::Selected) => {}
        None => {
            return Err(ApiError::Conflict(format!(
                "you were not selected for round {number}; wait for the next round"
            )));
        }
        Some(other) => {
            return Err(ApiError::Conflict(format!(
                "your participation in round {number} is already {}",
                other.as_str()
            )));
        }
    }
    Ok(Admitted {
        round,
        earlier: None,
        restaged: None,
    })
}

/// The body's declared length, if any.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// A replay's answer: the earlier one for the same bytes, else 409. A body that cannot be
/// the same (another declared length) is not read at all, and one of unknown length no
/// further than the accepted update's size.
async fn replay(
    headers: &HeaderMap,
    body: Body,
    number: i64,
    earlier: Accepted,
    size: u64,
) -> Result<Accepted, ApiError> {
    if declared_length(headers).is_some_and(|len| len != size) {
        return Err(different_content(number));
    }
    if spool::same_content(body, size, &earlier.sha256).await? {
        Ok(earlier)
    } else {
        Err(different_content(number))
    }
}

/// Receives a member's trained weights for round `number`: see the module docs for the order of
/// the checks. A retry of the same bytes gets the same answer.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/rounds/{number}/update",
    operation_id = "upload_update",
    tag = "rounds",
    params(
        ("id" = i64, Path, description = "The group"),
        ("number" = i64, Path, description = "The round the update was trained in"),
    ),
    request_body(
        content = b3o_models::protocol::registry::Binary,
        content_type = "application/octet-stream",
        description = "A safetensors file in the group's `update_encoding`: `f32` is the `b3o-update/1` format (`b3o_models::weights::encode`): every tensor of the group's layout as f32, finite; the others are `b3o-delta/1` (`b3o_models::compress::encode_update`): the change from the round's base model in f16, int8 or top-k, with an `encoding` metadata key naming it; an update in another encoding than the group's is a 400 naming both. Both carry metadata naming the model (`group-{id}`), the round, the number of training samples and the training metrics; at most `--max-update-bytes`"
    ),
    responses(
        (status = 200, description = "Accepted and durable (a retry of the same bytes gets the same answer); the connection is closed after any refusal", body = Accepted),
        (status = 400, description = "Not a valid update for this group and round (encoding, layout, values, indices, scales, metadata, too many metrics, norm bound), or the body broke off", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an active member, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group or round, or the caller may not see the group", body = ErrorBody),
        (status = 409, description = "The round takes no updates (not started, aggregating, closed), the caller was not selected or already reported or failed, or a different update was accepted already", body = ErrorBody),
        (status = 413, description = "More than `--max-update-bytes`", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn upload(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath((group_id, number)): ApiPath<(i64, i64)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match receive(state, group_id, number, user, headers, body).await {
        Ok(accepted) => {
            metrics::counter!("b3o_federation_updates_received_total").increment(1);
            Json(accepted).into_response()
        }
        Err(e) => {
            metrics::counter!("b3o_federation_updates_rejected_total").increment(1);
            // Most refusals leave (part of) the body unread, so the connection cannot carry
            // another request: say so, or a pooling client may reuse it and see a reset.
            let mut response = e.into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

async fn receive(
    state: AppState,
    group_id: i64,
    number: i64,
    user: CurrentUser,
    headers: HeaderMap,
    body: Body,
) -> Result<Accepted, ApiError> {
    let access = membership::group_access(&state.db, &user, group_id).await?;
    let member = access.require_member()?;
    let Admitted {
        round,
        earlier,
        restaged,
    } = admit(&state, group_id, number, member).await?;
    if let Some((earlier, size)) = earlier {
        return replay(&headers, body, number, earlier, size).await;
    }
    let max = state.federation.max_update_bytes;
    if let Some(len) = declared_length(&headers)
        && len > max as u64
    {
        crate::limits::drain_refused(&mut body.into_data_stream()).await;
        return Err(spool::too_large(&len.to_string(), max));
    }
    let group = rounds::load_group(&state.db, group_id).await?;
    let layout = group.layout()?.clone();

    // The round whose buffer takes the update: its own, or a later one's for a stale update.
    let (into_id, into_number, staleness) = restaged.map_or((round.id, number, 0), |r| {
        (r.round_id, r.number, r.staleness)
    });
    let dir = format!("groups/{group_id}/rounds/{into_number}/updates");
    let spooled = spool::receive(&state.blobs, body, max).await?;
    let limits = DecodeLimits {
        max_bytes: max,
        max_metrics: state.limits.max_metrics_per_update,
    };
    let bytes = spooled.read().await?;
    let secure = match &group.secagg {
        Some(_) => {
            let round = super::secagg::load_for(&state, round.id)
                .await?
                .ok_or_else(|| {
                    ApiError::Internal(format!("round {number} lost its secure state"))
                })?;
            super::secagg::check_upload(&round)?;
            Some(round)
        }
        None => None,
    };
    // (flat parameters of a plain update, its metadata).
    let (params, meta) = if let Some(secure) = &secure {
        // A masked vector: only its shape and range can be checked, its values are hidden.
        let len = layout
            .checked_num_params()
            .and_then(|n| n.checked_add(1))
            .ok_or_else(|| ApiError::Internal("layout size overflows".into()))?;
        let modulus = secure.config.modulus_range;
        let max_metrics = state.limits.max_metrics_per_update;
        let (_, masked) = tokio::task::spawn_blocking(move || {
            b3o_models::secagg::wire::decode_masked(&bytes, len, modulus, max, max_metrics)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("decoding a masked update: {e}")))?
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let meta = b3o_models::weights::UpdateMeta {
            model_id: masked.model_id,
            round: masked.round,
            num_samples: 0,
            metrics: masked.metrics,
        };
        // (`decode_masked` bounds the metrics as the update format does.)
        validate_target(&group, number, &meta)?;
        (None, meta)
    } else {
        // The round's base model: compressed encodings carry a delta from it, and the norm bound
        // measures from it.
        let encoding = group.update_encoding;
        // A DP round with central noise: the server holds members to the clipping norm.
        let dp_round = match &group.dp {
            Some(params) => {
                let mut conn = state.db.acquire().await?;
                super::privacy::round_dp(&mut conn, Some(params), round.id).await?
            }
            None => None,
        };
        let dp_bound = dp_round.as_ref().and_then(super::privacy::upload_bound);
        let base = if encoding.is_delta()
            || group.max_update_norm.is_some()
            || dp_bound.is_some()
            || restaged.is_some()
        {
            Some(base_params(&state, group.layout()?, round.base_version_id).await?)
        } else {
            None
        };
        // Decoding and checking every value of a large model is seconds of CPU: off the async
        // threads. Only the flat parameters come back; the raw bytes are dropped there.
        let (params, meta, base) = tokio::task::spawn_blocking(move || {
            b3o_models::compress::decode_update(
                &bytes,
                &layout,
                base.as_deref(),
                Some(encoding),
                limits,
            )
            .map(|(set, meta, _)| (set.flatten(), meta, base))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("decoding an update: {e}")))?
        .map_err(|e| match e {
            FormatError::TooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
            FormatError::TooManyMetrics { .. } => {
                ApiError::BadRequest(format!("{e} (--max-metrics-per-update)"))
            }
            e => ApiError::BadRequest(e.to_string()),
        })?;
        validate_meta(&group, number, &meta)?;
        if let (Some(bound), Some(base)) = (group.max_update_norm, &base) {
            check_norm(base, &params, bound)?;
        }
        if let Some(round_dp) = &dp_round {
            super::privacy::check_bit(round_dp, &meta.metrics)?;
        }
        if let (Some(bound), Some(base)) = (dp_bound, &base) {
            // `base + clipped delta` rounds to f32 on the member's side: allow that much.
            let largest = base.iter().fold(0f32, |m, v| m.max(v.abs()));
            let slack = (base.len() as f64).sqrt() * f64::from(f32::EPSILON) * f64::from(largest);
            check_norm(base, &params, bound + slack).map_err(|_| {
                ApiError::BadRequest(format!(
                    "the update's norm (update - round base model) exceeds this round's \
                     dp.clipping_norm {bound:.6}: members clip their updates before sending them"
                ))
            })?;
        }
        // A stale update, checked against the model it trained from, moves onto the buffer's.
        let params = match (restaged, &base) {
            (Some(r), Some(from)) => {
                let to = base_params(&state, group.layout()?, r.base_version_id).await?;
                let mut params = params;
                buffered::rebase(&mut params, from, &to);
                params
            }
            _ => params,
        };
        (Some(params), meta)
    };
    // Content-addressed name: concurrent different uploads never overwrite each other's blob.
    let sha = spooled.sha256.clone();
    let name = format!("member-{}-{}.safetensors", member.id, &sha[..16]);
    let rel = format!("{dir}/{name}");
    let size = i64::try_from(spooled.size)
        .map_err(|_| ApiError::Internal("update size out of range".into()))?;
    spooled.persist(&state.blobs, &rel).await?;

    let metrics_json = serde_json::to_string(&meta.metrics).unwrap_or_else(|_| "{}".into());
    let num_samples = meta.num_samples as i64;
    let accepted = {
        let lock = state.federation.group(group_id);
        let mut rt = lock.lock().await;
        let mut tx = crate::db::begin_write(&state.db).await?;
        // Commits only while the round still collects and the member is still selected: the
        // aggregation's state change takes the same group lock.
        let inserted: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO updates (round_id, member_id, num_samples, metrics_json, blob_path,
                sha256, size_bytes, trained_from, staleness)
             SELECT $1, $2, $3, $4, $5, $6, $7, $10, $11 WHERE EXISTS (
                SELECT 1 FROM rounds WHERE id = $8 AND state IN ('open', 'collecting'))
             AND NOT EXISTS (
                SELECT 1 FROM secagg_rounds WHERE round_id = $9 AND stage != 'masked')
             RETURNING id",
        )
        .bind(into_id)
        .bind(member.id)
        .bind(num_samples)
        .bind(&metrics_json)
        .bind(&rel)
        .bind(&sha)
        .bind(size)
        .bind(into_id)
        .bind(into_id)
        .bind(restaged.map(|_| number))
        .bind(staleness)
        .fetch_optional(&mut *tx)
        .await;
        let update_id = match inserted {
            Ok(Some(id)) => id,
            Ok(None) => {
                drop(tx);
                let st = find_round(&state, group_id, into_number)
                    .await?
                    .map_or("gone", |r| r.state.as_str());
                return Err(not_collecting(&state, group_id, into_number, st).await);
            }
            // A concurrent retry of the same update won the race (or, in an asynchronous
            // group, another update of this member reached the same buffer first).
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                drop(tx);
                let earlier = existing(&state, group_id, number, member.id).await?;
                return match earlier {
                    Some((earlier, _)) if earlier.sha256 == sha => Ok(earlier),
                    _ => Err(different_content(number)),
                };
            }
            Err(e) => return Err(e.into()),
        };
        sqlx::query(
            "UPDATE round_members SET status = 'reported' WHERE round_id = $1 AND member_id = $2",
        )
        .bind(into_id)
        .bind(member.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE rounds SET state = 'collecting' WHERE id = $1 AND state = 'open'")
            .bind(into_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;

        if let Some(params) = &params
            && strategy::build(&group.strategy).accumulation() == Accumulation::RunningMean
        {
            let acc = match &mut rt.accumulator {
                Some(acc) if acc.round_id == into_id => acc,
                slot => slot.insert(RoundAccumulator {
                    round_id: into_id,
                    mean: WeightedMean::new(params.len()),
                    included: Default::default(),
                }),
            };
            if acc
                .mean
                .add_scaled(
                    params,
                    group.mean_weight(meta.num_samples),
                    group.staleness_weight(staleness),
                )
                .is_ok()
            {
                acc.included.insert(update_id);
            }
        }
        Accepted {
            update_id,
            round: number,
            num_samples,
            sha256: sha,
            buffered_in: restaged.map(|r| r.number),
            staleness: restaged.map(|r| r.staleness),
        }
    };
    if staleness > 0 {
        metrics::counter!("b3o_federation_stale_updates_total").increment(1);
    }
    // The update is durable and acknowledged whatever happens next; a failed check is
    // retried by the deadline driver.
    if let Err(e) = rounds::check_round(&state, into_id).await {
        tracing::error!(round_id = into_id, error = %e, "checking the round after an update");
    }
    Ok(accepted)
}

fn validate_meta(
    group: &GroupSettings,
    number: i64,
    meta: &b3o_models::weights::UpdateMeta,
) -> Result<(), ApiError> {
    validate_target(group, number, meta)?;
    // 2^40 samples: far beyond any real client, and keeps weights exact enough in f32 sums.
    if meta.num_samples == 0 || meta.num_samples > 1 << 40 {
        return Err(ApiError::BadRequest(format!(
            "num_samples must be between 1 and 2^40, got {}",
            meta.num_samples
        )));
    }
    Ok(())
}

/// The update is for this group's model and this round.
fn validate_target(
    group: &GroupSettings,
    number: i64,
    meta: &b3o_models::weights::UpdateMeta,
) -> Result<(), ApiError> {
    if meta.model_id != group.model_id() {
        return Err(ApiError::BadRequest(format!(
            "update is for model `{}`, this group's model is `{}`",
            meta.model_id,
            group.model_id()
        )));
    }
    if meta.round != number as u64 {
        return Err(ApiError::BadRequest(format!(
            "update metadata says round {} but was sent to round {number}",
            meta.round
        )));
    }
    Ok(())
}

/// The flat parameters of version `version_id` (a round's base model).
pub(super) async fn base_params(
    state: &AppState,
    layout: &WeightLayout,
    version_id: i64,
) -> Result<Vec<f32>, ApiError> {
    let path: String = sqlx::query_scalar("SELECT weights_path FROM model_versions WHERE id = $1")
        .bind(version_id)
        .fetch_one(&state.db)
        .await?;
    version_params(state, layout, &path).await
}

/// The flat parameters of the version stored at `path`, decoded off the async threads.
pub(super) async fn version_params(
    state: &AppState,
    layout: &WeightLayout,
    path: &str,
) -> Result<Vec<f32>, ApiError> {
    let bytes = state.blobs.get(path).await?;
    let (layout, path) = (layout.clone(), path.to_string());
    tokio::task::spawn_blocking(move || {
        b3o_models::weights::decode(&bytes, &layout, usize::MAX)
            .map(|(base, _)| base.flatten())
            .map_err(|e| ApiError::Internal(format!("{path}: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("decoding a model version: {e}")))?
}

fn check_norm(base: &[f32], params: &[f32], bound: f64) -> Result<(), ApiError> {
    let norm = base
        .iter()
        .zip(params)
        .map(|(b, p)| {
            let d = (*p - *b) as f64;
            d * d
        })
        .sum::<f64>()
        .sqrt();
    if norm > bound {
        return Err(ApiError::BadRequest(format!(
            "update moves the model by an L2 norm of {norm:.4}, more than this group's bound of {bound}"
        )));
    }
    Ok(())
}

/// A selected member reports that it cannot deliver this round (out of memory, no data...):
/// the round stops waiting for it, and the strategy sees the failure. A repeat is accepted.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/rounds/{number}/failure",
    operation_id = "report_failure",
    tag = "rounds",
    params(
        ("id" = i64, Path, description = "The group"),
        ("number" = i64, Path, description = "The round"),
    ),
    request_body = Failure,
    responses(
        (status = 200, description = "Recorded: the round stops waiting for the caller", body = FailureReported),
        (status = 400, description = "Malformed body, or the id or number is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an active member, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group or round, or the caller may not see the group", body = ErrorBody),
        (status = 409, description = "The round takes no more reports, or the caller is not selected or already reported", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn report_failure(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath((group_id, number)): ApiPath<(i64, i64)>,
    ApiJson(req): ApiJson<Failure>,
) -> Result<Json<FailureReported>, ApiError> {
    let access = membership::group_access(&state.db, &user, group_id).await?;
    let member = access.require_member()?;
    let reason: String = req.reason.chars().take(1000).collect();
    let round = find_round(&state, group_id, number)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("group {group_id} has no round {number}")))?;
    let changed = sqlx::query(
        "UPDATE round_members SET status = 'failed', failure = $1
         WHERE round_id = $2 AND member_id = $3 AND status = 'selected'
           AND EXISTS (SELECT 1 FROM rounds WHERE id = $4 AND state IN ('open', 'collecting'))",
    )
    .bind(&reason)
    .bind(round.id)
    .bind(member.id)
    .bind(round.id)
    .execute(&state.db)
    .await?
    .rows_affected();
    if changed == 0 {
        let status = selection_status(&state, round.id, member.id).await?;
        if status != Some(MemberStatus::Failed) {
            return Err(ApiError::Conflict(format!(
                "round {number} is {} and you are {}",
                round.state.as_str(),
                status.map_or("not selected", MemberStatus::as_str)
            )));
        }
    }
    rounds::check_round(&state, round.id).await?;
    Ok(Json(FailureReported {
        round: number,
        member_id: member.id,
        status: MemberStatus::Failed,
    }))
}

/// Flower's evaluate phase: a member's metrics of round `n`'s resulting global model on its own
/// held-out rows. Accepted once the round closed; a resend replaces the earlier report.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/rounds/{number}/evaluation",
    operation_id = "report_evaluation",
    tag = "rounds",
    params(
        ("id" = i64, Path, description = "The group"),
        ("number" = i64, Path, description = "The round whose resulting model was evaluated"),
    ),
    request_body = Evaluation,
    responses(
        (status = 200, description = "Recorded (replacing an earlier report)", body = EvaluationAccepted),
        (status = 400, description = "Malformed body, `num_samples` out of 1..2^40, too many metrics, a metric name of 0 or too many characters or a value that is not finite, or the id or number is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an active member, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group or round, or the caller may not see the group", body = ErrorBody),
        (status = 409, description = "The round is not closed yet (or failed)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn report_evaluation(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath((group_id, number)): ApiPath<(i64, i64)>,
    ApiJson(req): ApiJson<Evaluation>,
) -> Result<Json<EvaluationAccepted>, ApiError> {
    let access = membership::group_access(&state.db, &user, group_id).await?;
    let member = access.require_member()?;
    req.check(
        state.limits.max_metrics_per_update,
        "--max-metrics-per-update",
    )
    .map_err(ApiError::BadRequest)?;
    let round = find_round(&state, group_id, number)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("group {group_id} has no round {number}")))?;
    if round.state != RoundState::Closed {
        return Err(ApiError::Conflict(format!(
            "round {number} is {}: its model can be evaluated once it is closed",
            round.state.as_str()
        )));
    }
    sqlx::query(
        "INSERT INTO evaluations (round_id, member_id, num_samples, metrics_json)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (round_id, member_id) DO UPDATE SET num_samples = excluded.num_samples,
             metrics_json = excluded.metrics_json,
             received_at = $5",
    )
    .bind(round.id)
    .bind(member.id)
    .bind(req.num_samples as i64)
    .bind(serde_json::to_string(&req.metrics).unwrap_or_else(|_| "{}".into()))
    .bind(crate::db::now_text())
    .execute(&state.db)
    .await?;
    Ok(Json(EvaluationAccepted {
        round: number,
        member_id: member.id,
        accepted: true,
    }))
}
