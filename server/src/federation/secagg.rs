//! Secure aggregation's stages on the server (SecAgg+, issue #13; the protocol's maths is
//! [`b3o_models::secagg`]).
//!
//! A secure round stays `collecting` while it moves through its stages (`secagg_rounds.stage`):
//! `advertise` (selected members' public keys) -> `share` (each member's encrypted shares for
//! its neighbours) -> `masked` (training and the masked vectors, through the ordinary update
//! route) -> `unmask` (survivors hand back shares) -> `done`, when the round aggregates:
//! [`unmasked_mean`] sums the masked vectors, removes the masks and dequantizes the weighted
//! mean, which the group's mean-type strategy takes like a plain round's running mean.
//!
//! Each stage ends when every member still expected has acted (members whose training client
//! went away are not waited for), or at its deadline (`secagg.stage_deadline_secs`; the masked
//! stage has the group's `round_deadline_secs`). Members that did not act are marked failed;
//! when fewer than `max(min_clients, reconstruction_threshold)` remain, the round fails with
//! the reason and the next one opens.
//!
//! Durability: every message is committed before its 2xx, in a transaction that checks the
//! stage, and every stage change is one conditional update in a write transaction, so messages
//! and transitions are serialised. After `kill -9` the driver resumes each live round from its
//! stored stage; aggregation is recomputed from the stored vectors and shares, so a restart
//! can fail a round but never produce a wrong sum.
//!
//! What the server stores and sees: public keys, ciphertexts it cannot open (the shares are
//! encrypted for their recipients), masked vectors (uniform modulo the modulus), and the
//! unmask shares (of survivors' self-mask seeds and dropped members' mask keys only: a client
//! refuses to reveal both for one member).

use std::collections::{BTreeMap, BTreeSet};

use crate::db::Conn;
use axum::Json;
use axum::extract::State;
use b3o_models::protocol::secagg::{
    SecAggAccepted, SecAggRoundSummary, SecAggStage, SecAggView, ShareUpload, UnmaskUpload,
};
use b3o_models::secagg::keys::Context;
use b3o_models::secagg::{
    self as sa, ClientRecord, EffectiveConfig, EncryptedShare, NeighbourKeys, PublicKeys,
    SecAggConfig, ShareKind, UnmaskInputs, UnmaskRequest, UnmaskShare, graph, shamir,
};
use rand::seq::SliceRandom;

use super::events::GroupEvent;
use super::model::{ErrorBody, MemberStatus, RoundState};
use super::{now, rounds};
use crate::accounts::CurrentUser;
use crate::accounts::extract::{ApiJson, ApiPath};
use crate::error::ApiError;
use crate::membership::{self, Member};
use crate::state::AppState;
use crate::strategy::MeanResult;

/// Bytes of one encrypted share message: nonce, the two shares, the tag.
const CIPHERTEXT_BYTES: usize = 12 + 2 * shamir::SHARE_BYTES + 16;

/// A secure round's stored state.
#[derive(Debug, Clone)]
pub(crate) struct SecureRound {
    pub round_id: i64,
    pub group_id: i64,
    pub number: i64,
    pub round_state: RoundState,
    pub stage: SecAggStage,
    pub stage_deadline: i64,
    pub config: EffectiveConfig,
    pub ring: Vec<i64>,
    pub failure: Option<String>,
    pub unmasked: Option<bool>,
}

impl SecureRound {
    fn ctx(&self) -> Context {
        Context {
            group_id: self.group_id,
            round: self.number,
        }
    }
}

/// The secure state of round `round_id`; `None` for a plain round.
pub(crate) async fn load(conn: &mut Conn, round_id: i64) -> Result<Option<SecureRound>, ApiError> {
    type Row = (
        String,
        i64,
        String,
        String,
        Option<String>,
        Option<crate::db::Flag>,
        i64,
        i64,
        String,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT s.stage, s.stage_deadline, s.config_json, s.ring_json, s.failure, s.unmasked,
                r.group_id, r.number, r.state
         FROM secagg_rounds s JOIN rounds r ON r.id = s.round_id WHERE s.round_id = $1",
    )
    .bind(round_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let corrupt = |what: &str, e: serde_json::Error| {
        ApiError::Internal(format!("round {round_id}: {what}: {e}"))
    };
    let round_state = RoundState::parse(&row.8);
    // A round that ended outside its stages (cancelled, failed by the owner) reads as such.
    let stage = match (SecAggStage::parse(&row.0), round_state) {
        (SecAggStage::Done, _) => SecAggStage::Done,
        (_, RoundState::Failed) => SecAggStage::Failed,
        (_, RoundState::Closed) => SecAggStage::Done,
        (stage, _) => stage,
    };
    Ok(Some(SecureRound {
        round_id,
        stage,
        stage_deadline: row.1,
        config: serde_json::from_str(&row.2).map_err(|e| corrupt("secagg config", e))?,
        ring: serde_json::from_str(&row.3).map_err(|e| corrupt("ring", e))?,
        failure: row.4,
        unmasked: row.5.map(bool::from),
        group_id: row.6,
        number: row.7,
        round_state,
    }))
}

async fn load_db(state: &AppState, round_id: i64) -> Result<Option<SecureRound>, ApiError> {
    let mut conn = state.db.acquire().await?;
    load(&mut conn, round_id).await
}

/// At a secure round's opening, in its transaction: places the selected members on a ring in
/// random order, resolves the settings for their number and publishes them in the round's
/// config (`secagg`). A selection the settings cannot serve (fewer than 2) is stored as a
/// failed stage; the driver fails the round with the reason.
pub(crate) async fn open(
    conn: &mut Conn,
    cfg: &SecAggConfig,
    round_id: i64,
) -> Result<(), ApiError> {
    let mut ring: Vec<i64> =
        sqlx::query_scalar("SELECT member_id FROM round_members WHERE round_id = $1")
            .bind(round_id)
            .fetch_all(&mut *conn)
            .await?;
    ring.shuffle(&mut rand::rng());
    let (config, stage, failure) = match cfg.for_round(ring.len()) {
        Ok(config) => (config, SecAggStage::Advertise, None),
        Err(e) => (
            EffectiveConfig {
                selected: ring.len() as u32,
                num_shares: ring.len() as u32,
                reconstruction_threshold: 2,
                clipping_range: cfg.clipping_range,
                quantization_range: cfg.quantization_range,
                modulus_range: cfg.modulus_range,
                max_weight: cfg.max_weight,
            },
            SecAggStage::Failed,
            Some(format!("secure aggregation cannot run this round: {e}")),
        ),
    };
    let config_json = serde_json::to_string(&config)
        .map_err(|e| ApiError::Internal(format!("secagg config: {e}")))?;
    sqlx::query(
        "INSERT INTO secagg_rounds (round_id, stage, stage_deadline, config_json, ring_json, failure)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(round_id)
    .bind(stage.as_str())
    .bind(now() + i64::from(cfg.stage_deadline_secs))
    .bind(&config_json)
    .bind(serde_json::to_string(&ring).unwrap_or_else(|_| "[]".into()))
    .bind(failure)
    .execute(&mut *conn)
    .await?;
    // The round's published config gains the effective settings (in Rust: the same JSON on
    // every SQL dialect).
    let round_config: String = sqlx::query_scalar("SELECT config_json FROM rounds WHERE id = $1")
        .bind(round_id)
        .fetch_one(&mut *conn)
        .await?;
    let mut round_config: serde_json::Value = serde_json::from_str(&round_config)
        .map_err(|e| ApiError::Internal(format!("round {round_id} config: {e}")))?;
    let effective = serde_json::to_value(&config)
        .map_err(|e| ApiError::Internal(format!("secagg config: {e}")))?;
    match round_config.as_object_mut() {
        Some(fields) => fields.insert("secagg".into(), effective),
        None => {
            return Err(ApiError::Internal(format!(
                "round {round_id} config is not a JSON object"
            )));
        }
    };
    sqlx::query("UPDATE rounds SET config_json = $1 WHERE id = $2")
        .bind(round_config.to_string())
        .bind(round_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The group's stored settings, for a secure group.
async fn group_config(
    conn: &mut Conn,
    group_id: i64,
) -> Result<(SecAggConfig, i64, i64), ApiError> {
    let (json, min_clients, round_deadline): (Option<String>, i64, i64) = sqlx::query_as(
        "SELECT secagg_json, min_clients, round_deadline_secs FROM groups WHERE id = $1",
    )
    .bind(group_id)
    .fetch_one(&mut *conn)
    .await?;
    let cfg = json
        .map(|j| serde_json::from_str(&j))
        .transpose()
        .map_err(|e| ApiError::Internal(format!("group {group_id}: secagg settings: {e}")))?
        .unwrap_or_default();
    Ok((cfg, min_clients, round_deadline))
}

/// One selected member as a stage sees it.
struct Seat {
    member_id: i64,
    status: MemberStatus,
    active: bool,
}

async fn seats(conn: &mut Conn, round_id: i64) -> Result<Vec<Seat>, ApiError> {
    let rows: Vec<(i64, String, crate::db::Flag)> = sqlx::query_as(
        "SELECT rm.member_id, rm.status, m.left_at IS NULL
         FROM round_members rm JOIN members m ON m.id = rm.member_id WHERE rm.round_id = $1",
    )
    .bind(round_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(member_id, status, active)| Seat {
            member_id,
            status: MemberStatus::parse(&status),
            active: active.0,
        })
        .collect())
}

async fn ids(conn: &mut Conn, sql: &'static str, round_id: i64) -> Result<BTreeSet<i64>, ApiError> {
    let v: Vec<i64> = sqlx::query_scalar(sql)
        .bind(round_id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(v.into_iter().collect())
}

const ADVERTISED: &str = "SELECT member_id FROM secagg_keys WHERE round_id = $1";
const SHARED: &str = "SELECT DISTINCT from_member FROM secagg_shares WHERE round_id = $1";
const ANSWERED: &str = "SELECT member_id FROM secagg_unmask WHERE round_id = $1";
const SURVIVED: &str = "SELECT member_id FROM updates WHERE round_id = $1";

/// What a stage check decided.
enum Decision {
    Wait,
    Advance(SecAggStage, i64),
    Fail(String),
    Aggregate,
}

/// A stage check's verdict, with the members to mark failed (and why) when it is applied.
struct Plan {
    round: SecureRound,
    decision: Decision,
    late: Vec<i64>,
    late_reason: &'static str,
}

/// Moves a secure round on when its stage is complete or past its deadline: see the module
/// docs. Called after every message, by the deadline driver, and at start. Reads first, and
/// takes the write lock only to apply a change (deciding again under it).
pub(crate) async fn check(state: &AppState, round_id: i64) -> Result<(), ApiError> {
    {
        let mut conn = state.db.acquire().await?;
        match decide(&mut conn, state, round_id).await? {
            Some(plan) if !matches!(plan.decision, Decision::Wait) => {}
            _ => return Ok(()),
        }
    }
    let mut tx = crate::db::begin_write(&state.db).await?;
    let Some(plan) = decide(&mut tx, state, round_id).await? else {
        return Ok(());
    };
    let Plan {
        round,
        decision,
        late,
        late_reason,
    } = plan;
    if !matches!(decision, Decision::Wait) {
        mark_failed(&mut tx, round_id, &late, late_reason).await?;
    }
    match decision {
        Decision::Wait => Ok(()),
        Decision::Advance(stage, deadline) => {
            set_stage(&mut tx, round_id, round.stage, stage, deadline).await?;
            tx.commit().await?;
            state.federation.events.publish(
                round.group_id,
                GroupEvent::SecaggStage {
                    round: round.number,
                    stage,
                },
            );
            Ok(())
        }
        Decision::Fail(reason) => {
            sqlx::query(
                "UPDATE secagg_rounds SET stage = 'failed', failure = $1 WHERE round_id = $2",
            )
            .bind(&reason)
            .bind(round_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            rounds::fail_round(state, round.group_id, round_id, &reason).await
        }
        Decision::Aggregate => {
            set_stage(&mut tx, round_id, round.stage, SecAggStage::Done, now()).await?;
            tx.commit().await?;
            if round.stage != SecAggStage::Done {
                state.federation.events.publish(
                    round.group_id,
                    GroupEvent::SecaggStage {
                        round: round.number,
                        stage: SecAggStage::Done,
                    },
                );
            }
            rounds::begin_aggregation(state, round.group_id, round_id).await
        }
    }
}

/// What the round's stage calls for now; `None` for a plain or finished round.
async fn decide(
    conn: &mut Conn,
    state: &AppState,
    round_id: i64,
) -> Result<Option<Plan>, ApiError> {
    let Some(round) = load(conn, round_id).await? else {
        return Ok(None);
    };
    if !round.round_state.is_live() {
        return Ok(None);
    }
    let (cfg, min_clients, round_deadline) = group_config(conn, round.group_id).await?;
    let need = (min_clients.max(0) as usize).max(round.config.reconstruction_threshold as usize);
    let seats = seats(conn, round_id).await?;
    let presence = &state.federation.presence;
    let expired = now() >= round.stage_deadline;
    // Members still expected to act in this stage.
    let selected: Vec<&Seat> = seats
        .iter()
        .filter(|s| s.status == MemberStatus::Selected)
        .collect();
    let stage_secs = i64::from(cfg.stage_deadline_secs);
    let mut late = Vec::new();
    let mut late_reason = "";
    let decision = match round.stage {
        SecAggStage::Failed => Decision::Fail(
            round
                .failure
                .clone()
                .unwrap_or_else(|| "secure aggregation failed".into()),
        ),
        SecAggStage::Done => Decision::Aggregate,
        SecAggStage::Unknown => Decision::Wait,
        SecAggStage::Advertise | SecAggStage::Share => {
            let (done, what, next, next_deadline) = if round.stage == SecAggStage::Advertise {
                (
                    ids(conn, ADVERTISED, round_id).await?,
                    "advertised keys",
                    SecAggStage::Share,
                    now() + stage_secs,
                )
            } else {
                (
                    ids(conn, SHARED, round_id).await?,
                    "sent their key shares",
                    SecAggStage::Masked,
                    now() + round_deadline,
                )
            };
            let waiting = selected.iter().any(|s| {
                s.active && !done.contains(&s.member_id) && !presence.is_gone(s.member_id)
            });
            if waiting && !expired {
                Decision::Wait
            } else {
                late = selected
                    .iter()
                    .filter(|s| !done.contains(&s.member_id))
                    .map(|s| s.member_id)
                    .collect();
                late_reason = if round.stage == SecAggStage::Advertise {
                    "it had not advertised keys when the secure round's key stage ended"
                } else {
                    "it had not sent its key shares when the secure round's share stage ended"
                };
                let ok = selected
                    .iter()
                    .filter(|s| s.active && done.contains(&s.member_id))
                    .count();
                if ok < need {
                    Decision::Fail(format!(
                        "only {ok} of the {} selected members {what}; secure aggregation needs {need}",
                        seats.len()
                    ))
                } else {
                    Decision::Advance(next, next_deadline)
                }
            }
        }
        SecAggStage::Masked => {
            let survived = seats
                .iter()
                .filter(|s| s.status == MemberStatus::Reported)
                .count();
            let waiting = selected
                .iter()
                .any(|s| s.active && !presence.is_gone(s.member_id));
            if waiting && !expired {
                Decision::Wait
            } else {
                late = selected.iter().map(|s| s.member_id).collect();
                late_reason = "no masked update before the secure round's training stage ended";
                if survived < need {
                    Decision::Fail(format!(
                        "only {survived} masked update(s) arrived; unmasking needs {need}"
                    ))
                } else {
                    Decision::Advance(SecAggStage::Unmask, now() + stage_secs)
                }
            }
        }
        SecAggStage::Unmask => {
            let answered = ids(conn, ANSWERED, round_id).await?;
            let waiting = seats.iter().any(|s| {
                s.status == MemberStatus::Reported
                    && s.active
                    && !answered.contains(&s.member_id)
                    && !presence.is_gone(s.member_id)
            });
            if waiting && !expired {
                Decision::Wait
            } else {
                Decision::Aggregate
            }
        }
    };
    Ok(Some(Plan {
        round,
        decision,
        late,
        late_reason,
    }))
}

async fn set_stage(
    conn: &mut Conn,
    round_id: i64,
    from: SecAggStage,
    to: SecAggStage,
    deadline: i64,
) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE secagg_rounds SET stage = $1, stage_deadline = $2 WHERE round_id = $3 AND stage = $4",
    )
    .bind(to.as_str())
    .bind(deadline)
    .bind(round_id)
    .bind(from.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn mark_failed(
    conn: &mut Conn,
    round_id: i64,
    members: &[i64],
    reason: &str,
) -> Result<(), ApiError> {
    for member_id in members {
        sqlx::query(
            "UPDATE round_members SET status = 'failed', failure = $1
             WHERE round_id = $2 AND member_id = $3 AND status = 'selected'",
        )
        .bind(reason)
        .bind(round_id)
        .bind(member_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The live secure rounds, for the driver (their stages end on presence as well as deadlines).
pub(crate) async fn live_rounds(state: &AppState) -> Result<Vec<i64>, ApiError> {
    Ok(sqlx::query_scalar(
        "SELECT s.round_id FROM secagg_rounds s JOIN rounds r ON r.id = s.round_id
         WHERE r.state IN ('open', 'collecting')",
    )
    .fetch_all(&state.db)
    .await?)
}

/// The round `number` of a group for a member acting in it: the secure round and the
/// member's place. 404 for a plain round, 409 when the member was not selected.
async fn member_round(
    state: &AppState,
    user: &CurrentUser,
    group_id: i64,
    number: i64,
) -> Result<(Member, SecureRound, MemberStatus), ApiError> {
    let access = membership::group_access(&state.db, user, group_id).await?;
    let member = access.require_member()?.clone();
    let round_id: Option<i64> =
        sqlx::query_scalar("SELECT id FROM rounds WHERE group_id = $1 AND number = $2")
            .bind(group_id)
            .bind(number)
            .fetch_optional(&state.db)
            .await?;
    let not_secure =
        || ApiError::NotFound(format!("group {group_id} has no secure round {number}"));
    let round_id = round_id.ok_or_else(not_secure)?;
    let round = load_db(state, round_id).await?.ok_or_else(not_secure)?;
    let status: Option<String> = sqlx::query_scalar(
        "SELECT status FROM round_members WHERE round_id = $1 AND member_id = $2",
    )
    .bind(round_id)
    .bind(member.id)
    .fetch_optional(&state.db)
    .await?;
    let status = status.as_deref().map(MemberStatus::parse).ok_or_else(|| {
        ApiError::Conflict(format!(
            "you were not selected for round {number}; wait for the next round"
        ))
    })?;
    Ok((member, round, status))
}

/// The unmask request of `member`: among itself and its neighbours, the survivors and those
/// that shared but sent no masked vector.
fn unmask_request(
    round: &SecureRound,
    member: i64,
    shared: &BTreeSet<i64>,
    survived: &BTreeSet<i64>,
) -> UnmaskRequest {
    let mut near = graph::neighbours(&round.ring, member, round.config.num_shares);
    near.push(member);
    near.sort_unstable();
    UnmaskRequest {
        survivors: near
            .iter()
            .copied()
            .filter(|m| shared.contains(m) && survived.contains(m))
            .collect(),
        dropped: near
            .iter()
            .copied()
            .filter(|m| *m != member && shared.contains(m) && !survived.contains(m))
            .collect(),
    }
}

async fn neighbour_keys(
    state: &AppState,
    round: &SecureRound,
    member: i64,
) -> Result<Vec<NeighbourKeys>, ApiError> {
    let near: BTreeSet<i64> = graph::neighbours(&round.ring, member, round.config.num_shares)
        .into_iter()
        .collect();
    let mut conn = state.db.acquire().await?;
    Ok(stored_keys(&mut conn, round.round_id)
        .await?
        .into_iter()
        .filter(|(m, _)| near.contains(m))
        .map(|(member_id, keys)| NeighbourKeys { member_id, keys })
        .collect())
}

/// The public keys members advertised in a round, by member.
async fn stored_keys(
    conn: &mut Conn,
    round_id: i64,
) -> Result<BTreeMap<i64, PublicKeys>, ApiError> {
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT member_id, cipher_key, mask_key FROM secagg_keys WHERE round_id = $1",
    )
    .bind(round_id)
    .fetch_all(&mut *conn)
    .await?;
    // Stored by `keys` from 32-byte arrays: a row of another size is corrupt and skipped.
    Ok(rows
        .into_iter()
        .filter_map(|(member_id, cipher, mask)| {
            Some((
                member_id,
                PublicKeys {
                    cipher: cipher.try_into().ok()?,
                    mask: mask.try_into().ok()?,
                },
            ))
        })
        .collect())
}

/// A selected member's view of a secure round: the stage, the graph, and what it needs to act
/// in this stage.
#[utoipa::path(
    get,
    path = "/api/groups/{id}/rounds/{number}/secagg",
    operation_id = "secagg_view",
    tag = "rounds",
    params(
        ("id" = i64, Path, description = "The group"),
        ("number" = i64, Path, description = "The secure round"),
    ),
    responses(
        (status = 200, description = "The stage and what the caller needs for it", body = SecAggView),
        (status = 400, description = "The id or number is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an active member", body = ErrorBody),
        (status = 404, description = "No such group or secure round, or the caller may not see the group", body = ErrorBody),
        (status = 409, description = "The caller was not selected for the round", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn view(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath((group_id, number)): ApiPath<(i64, i64)>,
) -> Result<Json<SecAggView>, ApiError> {
    let (member, round, status) = member_round(&state, &user, group_id, number).await?;
    let order = round.stage.order();
    let keys = if order >= SecAggStage::Share.order() && round.stage != SecAggStage::Failed {
        neighbour_keys(&state, &round, member.id).await?
    } else {
        Vec::new()
    };
    let shares = if (SecAggStage::Masked.order()..SecAggStage::Failed.order()).contains(&order) {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT from_member, ciphertext FROM secagg_shares
             WHERE round_id = $1 AND to_member = $2 ORDER BY from_member",
        )
        .bind(round.round_id)
        .bind(member.id)
        .fetch_all(&state.db)
        .await?;
        rows.into_iter()
            .map(|(from, ciphertext)| EncryptedShare {
                from,
                to: member.id,
                ciphertext,
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut db = state.db.acquire().await?;
    let unmask = if round.stage == SecAggStage::Unmask && status == MemberStatus::Reported {
        let shared = ids(&mut db, SHARED, round.round_id).await?;
        let survived = ids(&mut db, SURVIVED, round.round_id).await?;
        Some(unmask_request(&round, member.id, &shared, &survived))
    } else {
        None
    };
    let expected = match round.stage {
        SecAggStage::Advertise => {
            status == MemberStatus::Selected
                && !ids(&mut db, ADVERTISED, round.round_id)
                    .await?
                    .contains(&member.id)
        }
        SecAggStage::Share => {
            status == MemberStatus::Selected
                && !ids(&mut db, SHARED, round.round_id)
                    .await?
                    .contains(&member.id)
        }
        SecAggStage::Masked => status == MemberStatus::Selected,
        SecAggStage::Unmask => {
            unmask.is_some()
                && !ids(&mut db, ANSWERED, round.round_id)
                    .await?
                    .contains(&member.id)
        }
        _ => false,
    };
    Ok(Json(SecAggView {
        round: number,
        stage: round.stage,
        stage_deadline_at: crate::accounts::rfc3339(round.stage_deadline),
        config: round.config.clone(),
        ring: round.ring.clone(),
        keys,
        shares,
        unmask,
        expected,
    }))
}

/// 409 unless the round is live in `stage` and the member is still selected (or, for the
/// unmask stage, reported).
fn require_stage(
    round: &SecureRound,
    stage: SecAggStage,
    status: MemberStatus,
) -> Result<(), ApiError> {
    if !round.round_state.is_live() || round.stage != stage {
        return Err(ApiError::Conflict(format!(
            "round {} is in its {} stage, not {}",
            round.number,
            if round.round_state.is_live() {
                round.stage.as_str()
            } else {
                round.round_state.as_str()
            },
            stage.as_str()
        )));
    }
    let wanted = if stage == SecAggStage::Unmask {
        MemberStatus::Reported
    } else {
        MemberStatus::Selected
    };
    if status != wanted {
        return Err(ApiError::Conflict(format!(
            "your participation in round {} is {}",
            round.number,
            status.as_str()
        )));
    }
    Ok(())
}

/// In a message's write transaction: 409 unless the round is still in `stage`.
async fn still_in(
    conn: &mut Conn,
    round: &SecureRound,
    stage: SecAggStage,
) -> Result<(), ApiError> {
    let current: Option<String> = sqlx::query_scalar(
        "SELECT s.stage FROM secagg_rounds s JOIN rounds r ON r.id = s.round_id
         WHERE s.round_id = $1 AND r.state IN ('open', 'collecting')",
    )
    .bind(round.round_id)
    .fetch_optional(&mut *conn)
    .await?;
    if current.as_deref() == Some(stage.as_str()) {
        Ok(())
    } else {
        Err(ApiError::Conflict(format!(
            "round {}'s {} stage has ended",
            round.number,
            stage.as_str()
        )))
    }
}

/// The answer to an accepted message (or a retry of it), after checking whether the stage is
/// complete now.
async fn accepted(
    state: &AppState,
    round: &SecureRound,
    stage: SecAggStage,
) -> Json<SecAggAccepted> {
    if let Err(e) = check(state, round.round_id).await {
        tracing::error!(round_id = round.round_id, error = %e, "checking the secure round");
    }
    Json(SecAggAccepted {
        round: round.number,
        stage,
    })
}

fn different(round: &SecureRound, stage: SecAggStage) -> ApiError {
    ApiError::Conflict(format!(
        "a different {} message of yours was accepted already in round {}",
        stage.as_str(),
        round.number
    ))
}

/// Stage 1: a selected member's two public keys.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/rounds/{number}/secagg/keys",
    operation_id = "secagg_keys",
    tag = "rounds",
    params(
        ("id" = i64, Path, description = "The group"),
        ("number" = i64, Path, description = "The secure round"),
    ),
    request_body = PublicKeys,
    responses(
        (status = 200, description = "Stored (a retry of the same keys gets the same answer)", body = SecAggAccepted),
        (status = 400, description = "Malformed keys", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an active member, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group or secure round, or the caller may not see the group", body = ErrorBody),
        (status = 409, description = "The stage has ended, the caller was not selected, or other keys were accepted already", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn keys(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath((group_id, number)): ApiPath<(i64, i64)>,
    ApiJson(req): ApiJson<PublicKeys>,
) -> Result<Json<SecAggAccepted>, ApiError> {
    let (member, round, status) = member_round(&state, &user, group_id, number).await?;
    let stage = SecAggStage::Advertise;
    if req.cipher == [0; 32] || req.mask == [0; 32] || req.cipher == req.mask {
        return Err(ApiError::BadRequest(
            "cipher and mask must be two different X25519 public keys".into(),
        ));
    }
    let mut tx = crate::db::begin_write(&state.db).await?;
    let earlier: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT cipher_key, mask_key FROM secagg_keys WHERE round_id = $1 AND member_id = $2",
    )
    .bind(round.round_id)
    .bind(member.id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((c, m)) = earlier {
        drop(tx);
        return if c == req.cipher && m == req.mask {
            Ok(accepted(&state, &round, stage).await)
        } else {
            Err(different(&round, stage))
        };
    }
    require_stage(&round, stage, status)?;
    still_in(&mut tx, &round, stage).await?;
    sqlx::query(
        "INSERT INTO secagg_keys (round_id, member_id, cipher_key, mask_key) VALUES ($1, $2, $3, $4)",
    )
    .bind(round.round_id)
    .bind(member.id)
    .bind(&req.cipher[..])
    .bind(&req.mask[..])
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(accepted(&state, &round, stage).await)
}

/// Stage 2: a member's encrypted shares, one for each neighbour that advertised keys.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/rounds/{number}/secagg/shares",
    operation_id = "secagg_shares",
    tag = "rounds",
    params(
        ("id" = i64, Path, description = "The group"),
        ("number" = i64, Path, description = "The secure round"),
    ),
    request_body = ShareUpload,
    responses(
        (status = 200, description = "Stored (a retry of the same shares gets the same answer)", body = SecAggAccepted),
        (status = 400, description = "Not exactly one share of the right size for each neighbour that advertised keys, or a share not from the caller", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an active member, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group or secure round, or the caller may not see the group", body = ErrorBody),
        (status = 409, description = "The stage has ended, the caller is not expected, or other shares were accepted already", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn shares(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath((group_id, number)): ApiPath<(i64, i64)>,
    ApiJson(req): ApiJson<ShareUpload>,
) -> Result<Json<SecAggAccepted>, ApiError> {
    let (member, round, status) = member_round(&state, &user, group_id, number).await?;
    let stage = SecAggStage::Share;
    let mut tx = crate::db::begin_write(&state.db).await?;
    let earlier: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT to_member, ciphertext FROM secagg_shares WHERE round_id = $1 AND from_member = $2",
    )
    .bind(round.round_id)
    .bind(member.id)
    .fetch_all(&mut *tx)
    .await?;
    if !earlier.is_empty() {
        drop(tx);
        let earlier: BTreeMap<i64, Vec<u8>> = earlier.into_iter().collect();
        let same = earlier.len() == req.shares.len()
            && req
                .shares
                .iter()
                .all(|s| earlier.get(&s.to) == Some(&s.ciphertext));
        return if same {
            Ok(accepted(&state, &round, stage).await)
        } else {
            Err(different(&round, stage))
        };
    }
    require_stage(&round, stage, status)?;
    still_in(&mut tx, &round, stage).await?;
    let advertised = ids(&mut tx, ADVERTISED, round.round_id).await?;
    let expected: BTreeSet<i64> =
        graph::neighbours(&round.ring, member.id, round.config.num_shares)
            .into_iter()
            .filter(|m| advertised.contains(m))
            .collect();
    let mut seen = BTreeSet::new();
    for share in &req.shares {
        if share.from != member.id {
            return Err(ApiError::BadRequest(format!(
                "a share says it is from member {}, you are member {}",
                share.from, member.id
            )));
        }
        if !expected.contains(&share.to) {
            return Err(ApiError::BadRequest(format!(
                "member {} is not one of your neighbours with keys in round {number}",
                share.to
            )));
        }
        if !seen.insert(share.to) {
            return Err(ApiError::BadRequest(format!(
                "two shares for member {}",
                share.to
            )));
        }
        if share.ciphertext.len() != CIPHERTEXT_BYTES {
            return Err(ApiError::BadRequest(format!(
                "the share for member {} has {} bytes, a share has {CIPHERTEXT_BYTES}",
                share.to,
                share.ciphertext.len()
            )));
        }
    }
    if seen != expected {
        let missing: Vec<String> = expected.difference(&seen).map(|m| m.to_string()).collect();
        return Err(ApiError::BadRequest(format!(
            "missing shares for member(s) {}",
            missing.join(", ")
        )));
    }
    for share in &req.shares {
        sqlx::query(
            "INSERT INTO secagg_shares (round_id, from_member, to_member, ciphertext)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(round.round_id)
        .bind(member.id)
        .bind(share.to)
        .bind(&share.ciphertext)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(accepted(&state, &round, stage).await)
}

/// Stage 4: a survivor's shares of its neighbours' self-mask seeds (survivors) and mask keys
/// (dropped), exactly as its unmask request lists them.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/rounds/{number}/secagg/unmask",
    operation_id = "secagg_unmask",
    tag = "rounds",
    params(
        ("id" = i64, Path, description = "The group"),
        ("number" = i64, Path, description = "The secure round"),
    ),
    request_body = UnmaskUpload,
    responses(
        (status = 200, description = "Stored (a retry of the same shares gets the same answer)", body = SecAggAccepted),
        (status = 400, description = "Not exactly the shares the caller's unmask request lists, or a malformed share", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an active member, or a missing or wrong CSRF token", body = ErrorBody),
        (status = 404, description = "No such group or secure round, or the caller may not see the group", body = ErrorBody),
        (status = 409, description = "The stage has ended, the caller's masked vector did not arrive, or other shares were accepted already", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = [])),
)]
pub async fn unmask(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiPath((group_id, number)): ApiPath<(i64, i64)>,
    ApiJson(req): ApiJson<UnmaskUpload>,
) -> Result<Json<SecAggAccepted>, ApiError> {
    let (member, round, status) = member_round(&state, &user, group_id, number).await?;
    let stage = SecAggStage::Unmask;
    let body = serde_json::to_string(&req)
        .map_err(|e| ApiError::Internal(format!("unmask shares: {e}")))?;
    let mut tx = crate::db::begin_write(&state.db).await?;
    let earlier: Option<String> = sqlx::query_scalar(
        "SELECT shares_json FROM secagg_unmask WHERE round_id = $1 AND member_id = $2",
    )
    .bind(round.round_id)
    .bind(member.id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(earlier) = earlier {
        drop(tx);
        return if earlier == body {
            Ok(accepted(&state, &round, stage).await)
        } else {
            Err(different(&round, stage))
        };
    }
    require_stage(&round, stage, status)?;
    still_in(&mut tx, &round, stage).await?;
    let shared = ids(&mut tx, SHARED, round.round_id).await?;
    let survived = ids(&mut tx, SURVIVED, round.round_id).await?;
    let request = unmask_request(&round, member.id, &shared, &survived);
    let mut wanted: BTreeSet<(i64, ShareKind)> = request
        .survivors
        .iter()
        .map(|m| (*m, ShareKind::SelfMaskSeed))
        .chain(request.dropped.iter().map(|m| (*m, ShareKind::MaskKey)))
        .collect();
    for share in &req.shares {
        if !wanted.remove(&(share.of, share.kind)) {
            return Err(ApiError::BadRequest(format!(
                "your unmask request does not ask for member {}'s {} (or it came twice)",
                share.of, share.kind
            )));
        }
        shamir::Share::from_bytes(&share.share).map_err(|e| {
            ApiError::BadRequest(format!(
                "the share of member {}'s {}: {e}",
                share.of, share.kind
            ))
        })?;
    }
    if let Some((of, kind)) = wanted.first() {
        return Err(ApiError::BadRequest(format!(
            "missing the share of member {of}'s {kind} ({} missing in all)",
            wanted.len()
        )));
    }
    sqlx::query("INSERT INTO secagg_unmask (round_id, member_id, shares_json) VALUES ($1, $2, $3)")
        .bind(round.round_id)
        .bind(member.id)
        .bind(&body)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(accepted(&state, &round, stage).await)
}

/// For the update route: 409 unless the secure round takes masked vectors now.
pub(crate) fn check_upload(round: &SecureRound) -> Result<(), ApiError> {
    if round.stage != SecAggStage::Masked {
        return Err(ApiError::Conflict(format!(
            "round {} takes masked updates in its masked stage; it is in its {} stage",
            round.number,
            round.stage.as_str()
        )));
    }
    Ok(())
}

pub(crate) async fn load_for(
    state: &AppState,
    round_id: i64,
) -> Result<Option<SecureRound>, ApiError> {
    load_db(state, round_id).await
}

/// Aggregation of a secure round: the sum of the stored masked vectors, unmasked with the
/// stored shares, as the weighted mean of the parameters (`base` plus the mean change).
/// Records whether unmasking succeeded; its failure is the round's failure reason.
pub(crate) async fn unmasked_mean(
    state: &AppState,
    round_id: i64,
    base: &[f32],
) -> Result<Option<MeanResult>, ApiError> {
    let round = load_db(state, round_id)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("round {round_id} is not secure")))?;
    let modulus = round.config.modulus_range;
    let len = base.len() + 1;
    let vectors: Vec<(i64, String)> =
        sqlx::query_as("SELECT member_id, blob_path FROM updates WHERE round_id = $1 ORDER BY id")
            .bind(round_id)
            .fetch_all(&state.db)
            .await?;
    if vectors.is_empty() {
        return Ok(None);
    }
    let mut sum = sa::Aggregator::new(len, modulus);
    for (member_id, path) in &vectors {
        let bytes = state.blobs.get(path).await?;
        let (masked, _) = sa::wire::decode_masked(&bytes, len, modulus, usize::MAX, usize::MAX)
            .map_err(|e| ApiError::Internal(format!("stored masked vector of {member_id}: {e}")))?;
        sum.add(&masked)
            .map_err(|e| ApiError::Internal(format!("masked vector of {member_id}: {e}")))?;
    }
    let survived: BTreeSet<i64> = vectors.iter().map(|(m, _)| *m).collect();
    let mut db = state.db.acquire().await?;
    let shared = ids(&mut db, SHARED, round_id).await?;
    let keys = stored_keys(&mut db, round_id).await?;
    let clients: Vec<ClientRecord> = round
        .ring
        .iter()
        .map(|m| ClientRecord {
            member_id: *m,
            keys: keys.get(m).copied(),
            shared: shared.contains(m),
            survived: survived.contains(m),
        })
        .collect();
    let answers: Vec<(i64, String)> =
        sqlx::query_as("SELECT member_id, shares_json FROM secagg_unmask WHERE round_id = $1")
            .bind(round_id)
            .fetch_all(&mut *db)
            .await?;
    drop(db);
    let mut shares: Vec<(i64, UnmaskShare)> = Vec::new();
    for (holder, json) in answers {
        let upload: UnmaskUpload = serde_json::from_str(&json)
            .map_err(|e| ApiError::Internal(format!("stored unmask shares of {holder}: {e}")))?;
        shares.extend(upload.shares.into_iter().map(|s| (holder, s)));
    }
    let ctx = round.ctx();
    let config = round.config.clone();
    let count = vectors.len();
    let base = base.to_vec();
    let result = tokio::task::spawn_blocking(move || {
        let inputs = UnmaskInputs {
            ctx,
            cfg: &config,
            ring: &round.ring,
            clients: &clients,
            shares: &shares,
        };
        let unmasked = sa::unmask(sum.into_sum(), &inputs)?;
        let mean = sa::dequantize_mean(&unmasked, &config, count)?;
        let params: Vec<f32> = base.iter().zip(&mean.values).map(|(b, d)| b + d).collect();
        Ok::<_, sa::SecAggError>(MeanResult {
            params,
            total_samples: (mean.weight * config.max_weight).round().max(1.0) as u64,
            count,
        })
    })
    .await
    .map_err(|e| ApiError::Internal(format!("unmasking task: {e}")))?;
    let ok = result.is_ok();
    sqlx::query("UPDATE secagg_rounds SET unmasked = $1 WHERE round_id = $2")
        .bind(i64::from(ok))
        .bind(round_id)
        .execute(&state.db)
        .await?;
    result
        .map(Some)
        .map_err(|e| ApiError::Conflict(format!("unmasking the secure sum failed: {e}")))
}

/// A secure round as [`super::model::RoundView`] shows it.
pub(crate) async fn summary(
    conn: &mut Conn,
    round_id: i64,
) -> Result<Option<SecAggRoundSummary>, ApiError> {
    let Some(round) = load(conn, round_id).await? else {
        return Ok(None);
    };
    let advertised = ids(conn, ADVERTISED, round_id).await?;
    let shared = ids(conn, SHARED, round_id).await?;
    let survived = ids(conn, SURVIVED, round_id).await?;
    let answered = ids(conn, ANSWERED, round_id).await?;
    let past_masked = round.stage.order() > SecAggStage::Masked.order() || round.unmasked.is_some();
    Ok(Some(SecAggRoundSummary {
        stage: Some(round.stage),
        stage_deadline_at: crate::accounts::rfc3339(round.stage_deadline),
        num_shares: round.config.num_shares,
        reconstruction_threshold: round.config.reconstruction_threshold,
        advertised: advertised.len() as u32,
        shared: shared.len() as u32,
        survived: survived.len() as u32,
        answered: answered.len() as u32,
        dropped: if past_masked {
            shared.difference(&survived).copied().collect()
        } else {
            Vec::new()
        },
        unmasked: round.unmasked,
    }))
}

/// The owner closes a secure round's training stage now (`rounds/current/close`).
pub(crate) async fn end_stage_now(state: &AppState, round_id: i64) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE secagg_rounds SET stage_deadline = $1 WHERE round_id = $2 AND stage = 'masked'",
    )
    .bind(now())
    .bind(round_id)
    .execute(&state.db)
    .await?;
    check(state, round_id).await
}
