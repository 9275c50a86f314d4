//! The round state machine: start of training, round opening with client selection, the close
//! condition, aggregation with the group's strategy, deadlines and crash recovery.
//!
//! Aggregation is three steps: [`load_inputs`] reads the round's updates and base model (from
//! the database and the spool), [`run_strategy`] is the group's strategy over them (pure, on the
//! blocking pool), and [`commit`] stores the new version through the registry
//! ([`registry::insert_version`]) with the round's close.

use crate::db::{Conn, Flag};
use b3o_models::compress::{self, UpdateEncoding};
use b3o_models::stats::Summary;
use b3o_models::weights::{self, Dtype, UpdateMeta, WeightLayout, WeightSet};
use futures_util::StreamExt;
use rand::seq::SliceRandom;
use serde_json::{Map, Value, json};
use sqlx::{Any, Transaction};

use super::events::GroupEvent;
use super::model::{
    Hyperparameters, MemberStatus, ModelTemplate, Phase, RoundState, image_spec, initial_weights,
    tabular_spec,
};
use super::{RoundAccumulator, aggregation_lease, now, quotas};
use crate::db::Db;
use crate::error::ApiError;
use crate::registry::{self, NewVersion};
use crate::state::AppState;
use crate::strategy::{
    self, Accumulation, EvalRes, FitFailure, FitRes, Fits, ServerOptState, StrategyConfig,
    WeightedMean,
};

/// Everything about a group the round logic needs.
#[derive(Debug, Clone)]
pub(crate) struct GroupSettings {
    pub id: i64,
    pub template: ModelTemplate,
    pub hyper: Hyperparameters,
    pub strategy: StrategyConfig,
    pub layout: Option<WeightLayout>,
    pub total_rounds: i64,
    pub min_clients: i64,
    pub fraction_fit: f64,
    pub round_deadline_secs: i64,
    pub max_update_norm: Option<f64>,
    pub phase: Phase,
    /// Secure aggregation's settings, for a secure group.
    pub secagg: Option<b3o_models::secagg::SecAggConfig>,
    /// What members upload (`super::encoding`).
    pub update_encoding: UpdateEncoding,
    /// Differential privacy's parameters, for a DP group (`super::privacy`).
    pub dp: Option<b3o_models::dp::DpParams>,
    /// Asynchronous buffered rounds' settings, for an asynchronous group (`super::buffered`).
    pub asynchronous: Option<b3o_models::protocol::AsyncConfig>,
}

impl GroupSettings {
    /// How much an update weighs in the round's mean: its sample count, or 1 in a DP group
    /// (every member counts the same; a weight would change the sensitivity).
    pub fn mean_weight(&self, num_samples: u64) -> u64 {
        if self.dp.is_some() { 1 } else { num_samples }
    }

    /// What an update `staleness` versions behind counts for, relative to a fresh one: the
    /// asynchronous group's discount, 1 in a synchronous group.
    pub fn staleness_weight(&self, staleness: i64) -> f64 {
        self.asynchronous
            .as_ref()
            .map_or(1.0, |a| a.staleness_weight(staleness.max(0) as u64))
    }
}

impl GroupSettings {
    pub fn model_id(&self) -> String {
        format!("group-{}", self.id)
    }

    pub fn layout(&self) -> Result<&WeightLayout, ApiError> {
        self.layout
            .as_ref()
            .ok_or_else(|| ApiError::Conflict("this group's model is not built yet".into()))
    }
}

pub(crate) async fn load_group(db: &Db, group_id: i64) -> Result<GroupSettings, ApiError> {
    type Row = (
        String,
        String,
        String,
        Option<String>,
        i64,
        i64,
        f64,
        i64,
        Option<f64>,
        String,
        Option<String>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT template_json, hyper_json, strategy_json, layout_json, total_rounds, min_clients,
            fraction_fit, round_deadline_secs, max_update_norm, phase, secagg_json
         FROM groups WHERE id = $1",
    )
    .bind(group_id)
    .fetch_optional(db)
    .await?;
    let row = row.ok_or_else(|| ApiError::NotFound(format!("group {group_id} does not exist")))?;
    let corrupt = |what: &str, e: serde_json::Error| {
        ApiError::Internal(format!("group {group_id}: stored {what} unreadable: {e}"))
    };
    Ok(GroupSettings {
        id: group_id,
        template: serde_json::from_str(&row.0).map_err(|e| corrupt("template", e))?,
        hyper: serde_json::from_str(&row.1).map_err(|e| corrupt("hyperparameters", e))?,
        strategy: serde_json::from_str(&row.2).map_err(|e| corrupt("strategy", e))?,
        layout: row
            .3
            .map(|l| serde_json::from_str(&l))
            .transpose()
            .map_err(|e| corrupt("layout", e))?,
        total_rounds: row.4,
        min_clients: row.5,
        fraction_fit: row.6,
        round_deadline_secs: row.7,
        max_update_norm: row.8,
        phase: Phase::parse(&row.9),
        secagg: row
            .10
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| corrupt("secure aggregation settings", e))?,
        update_encoding: super::encoding::load(db, group_id).await?,
        dp: super::privacy::load(db, group_id).await?,
        asynchronous: super::buffered::load(db, group_id).await?,
    })
}

/// The group's open or collecting round, if any.
pub(crate) async fn live_round_id(db: &Db, group_id: i64) -> Result<Option<i64>, ApiError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM rounds WHERE group_id = $1 AND state IN ('open', 'collecting')",
    )
    .bind(group_id)
    .fetch_optional(db)
    .await?)
}

/// Creates version 0 from the template and opens round 1.
pub(crate) async fn start_training(state: &AppState, group_id: i64) -> Result<i64, ApiError> {
    let group = load_group(&state.db, group_id).await?;
    if !matches!(group.phase, Phase::Enrolling | Phase::Statistics) {
        return Err(ApiError::Conflict(format!(
            "training has already started (the group is {})",
            group.phase.as_str()
        )));
    }
    let ready: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM members
         WHERE group_id = $1 AND ready_at IS NOT NULL AND left_at IS NULL",
    )
    .bind(group_id)
    .fetch_one(&state.db)
    .await?;
    if ready < group.min_clients {
        return Err(ApiError::Conflict(format!(
            "{ready} member(s) are ready; this group needs at least {} to start",
            group.min_clients
        )));
    }
    let (spec, layout, flat, reference) = build_model(state, &group).await?;
    let meta = UpdateMeta {
        model_id: group.model_id(),
        round: 0,
        num_samples: 0,
        metrics: Default::default(),
    };
    let onnx = write_onnx(state, group_id, 0, &spec.to_string(), &layout, &flat).await;
    let bytes = encode_weights(&layout, flat, &meta)?;
    let weights = registry::versions::write_weights(&state.blobs, group_id, 0, bytes).await?;

    let mut tx = crate::db::begin_write(&state.db).await?;
    let moved = sqlx::query(
        "UPDATE groups SET phase = 'training' WHERE id = $1 AND phase IN ('enrolling', 'statistics')",
    )
    .bind(group_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 0 {
        return Err(ApiError::Conflict("training has already started".into()));
    }
    let version = NewVersion {
        group_id,
        round: 0,
        parent_id: None,
        weights,
        num_params: layout.num_params() as i64,
        spec_json: spec.to_string(),
        metrics_json: "{}".into(),
        contributors_json: "[]".into(),
        optimizer_state_path: None,
        onnx_path: onnx,
        reference_json: reference,
    };
    let version_id = registry::insert_version(&mut tx, &version).await?;
    sqlx::query("UPDATE groups SET layout_json = $1, preprocessing_json = $2 WHERE id = $3")
        .bind(serde_json::to_string(&layout).unwrap_or_default())
        .bind(spec.get("preprocessing").map(Value::to_string))
        .bind(group_id)
        .execute(&mut *tx)
        .await?;
    let mut group = group;
    group.layout = Some(layout);
    group.dp = super::privacy::at_start(&mut tx, &group, ready).await?;
    if let Some(reason) = super::privacy::budget_left(&mut tx, &group).await? {
        return Err(ApiError::Conflict(format!(
            "differential privacy: not even one round fits the group's budget ({reason})"
        )));
    }
    let opened = open_round(state, &mut tx, &group, 1, version_id).await?;
    tx.commit().await?;
    let events = &state.federation.events;
    events.publish(
        group_id,
        GroupEvent::PhaseChanged {
            phase: Phase::Training,
        },
    );
    events.publish(group_id, opened);
    Ok(1)
}

/// The model to train: its spec as stored with every version (`b3o_models::ModelSpec` JSON for
/// tabular and image groups; the layout for custom ones), its layout and initial weights. Its
/// size is checked against `--max-model-parameters` before the weights are initialised: a
/// tabular model's width is only known now, and the limit may have changed since creation.
async fn build_model(
    state: &AppState,
    group: &GroupSettings,
) -> Result<(Value, WeightLayout, Vec<f32>, Option<String>), ApiError> {
    let seed = group.id as u64;
    let (spec, reference) =
        match &group.template {
            ModelTemplate::Custom { layout } => {
                quotas::check_model_size(quotas::exact(layout), &state.limits)?;
                let spec = json!({ "model_id": group.model_id(), "layout": layout });
                return Ok((spec, layout.clone(), initial_weights(layout, seed), None));
            }
            ModelTemplate::ImageCnn { labels } => {
                (image_spec(labels), image_reference(state, group.id).await?)
            }
            ModelTemplate::Tabular { schema, hidden } => {
                let rows: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT m.name, s.summary_json FROM members m
                 LEFT JOIN column_summaries s ON s.member_id = m.id AND s.group_id = m.group_id
                 WHERE m.group_id = $1 AND m.ready_at IS NOT NULL AND m.left_at IS NULL",
                )
                .bind(group.id)
                .fetch_all(&state.db)
                .await?;
                let missing: Vec<&str> = rows
                    .iter()
                    .filter(|(_, s)| s.is_none())
                    .map(|(n, _)| n.as_str())
                    .collect();
                if !missing.is_empty() {
                    return Err(ApiError::Conflict(format!(
                        "waiting for column statistics from: {}",
                        missing.join(", ")
                    )));
                }
                let mut summaries = Vec::with_capacity(rows.len());
                for (name, s) in rows {
                    let s = s.unwrap_or_default();
                    summaries.push(serde_json::from_str(&s).map_err(|e| {
                        ApiError::Internal(format!("stored summary of {name}: {e}"))
                    })?);
                }
                let (spec, merged) = tabular_spec(schema, hidden.as_deref(), &summaries)
                    .map_err(ApiError::Conflict)?;
                (spec, serde_json::to_string(&merged).ok())
            }
        };
    let layout = spec.layout();
    quotas::check_model_size(quotas::exact(&layout), &state.limits)?;
    let flat = spec.init_weights(seed).flatten();
    let value =
        serde_json::to_value(&spec).map_err(|e| ApiError::Internal(format!("spec: {e}")))?;
    Ok((value, layout, flat, reference))
}

/// An image group's drift reference: the merged statistics its ready members sent (none sent:
/// no reference). They are optional, so a member without them does not hold the start.
async fn image_reference(state: &AppState, group_id: i64) -> Result<Option<String>, ApiError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, s.summary_json FROM members m
         JOIN column_summaries s ON s.member_id = m.id AND s.group_id = m.group_id
         WHERE m.group_id = $1 AND m.ready_at IS NOT NULL AND m.left_at IS NULL
         ORDER BY m.id",
    )
    .bind(group_id)
    .fetch_all(&state.db)
    .await?;
    let mut merged: Option<Summary> = None;
    for (name, json) in rows {
        let summary: Summary = serde_json::from_str(&json)
            .map_err(|e| ApiError::Internal(format!("stored summary of {name}: {e}")))?;
        match &mut merged {
            None => merged = Some(summary),
            Some(m) => m
                .merge(&summary)
                .map_err(|e| ApiError::Conflict(format!("statistics of {name}: {e}")))?,
        }
    }
    Ok(merged.and_then(|m| serde_json::to_string(&m).ok()))
}

/// Writes the ONNX export of a version whose spec is a `b3o_models::ModelSpec` (tabular and
/// image groups; custom layouts have none) and returns its path. An export failure is logged
/// and leaves the version without ONNX rather than failing the round.
async fn write_onnx(
    state: &AppState,
    group_id: i64,
    round: i64,
    spec_json: &str,
    layout: &WeightLayout,
    flat: &[f32],
) -> Option<String> {
    let spec: b3o_models::ModelSpec = serde_json::from_str(spec_json).ok()?;
    let exported = WeightSet::from_flat(layout, flat.to_vec())
        .map_err(|e| e.to_string())
        .and_then(|w| b3o_models::onnx::export_onnx(&spec, &w).map_err(|e| e.to_string()));
    let bytes = match exported {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(group_id, round, error = %e, "ONNX export failed");
            return None;
        }
    };
    match registry::versions::write_onnx(&state.blobs, group_id, round, bytes).await {
        Ok(rel) => Some(rel),
        Err(e) => {
            tracing::error!(group_id, round, error = %e, "writing the ONNX export failed");
            None
        }
    }
}

pub(crate) fn encode_weights(
    layout: &WeightLayout,
    flat: Vec<f32>,
    meta: &UpdateMeta,
) -> Result<Vec<u8>, ApiError> {
    let set = WeightSet::from_flat(layout, flat)
        .map_err(|e| ApiError::Internal(format!("building weights: {e}")))?;
    weights::encode(&set, meta, Dtype::F32)
        .map_err(|e| ApiError::Internal(format!("encoding weights: {e}")))
}

/// Inserts round `number` with its config and selected members; returns the event to publish
/// once the transaction commits.
async fn open_round(
    state: &AppState,
    tx: &mut Transaction<'_, Any>,
    group: &GroupSettings,
    number: i64,
    base_version_id: i64,
) -> Result<GroupEvent, ApiError> {
    let mut config = Map::new();
    config.insert("round".into(), number.into());
    config.insert("model_id".into(), group.model_id().into());
    config.insert("base_version_id".into(), base_version_id.into());
    config.insert("local_epochs".into(), group.hyper.local_epochs.into());
    config.insert("batch_size".into(), group.hyper.batch_size.into());
    config.insert("optimizer".into(), json!(group.hyper.optimizer));
    config.insert("lr".into(), group.hyper.lr.into());
    config.insert("strategy".into(), json!(group.strategy));
    config.insert("update_encoding".into(), json!(group.update_encoding));
    if let Some(a) = &group.asynchronous {
        config.insert("async".into(), json!(a));
    }
    let strategy = strategy::build(&group.strategy);
    config.extend(strategy.configure_fit(number as u32));

    let opened_at = now();
    // A secure round's stages add up to its last possible moment.
    let deadline_at = opened_at
        + group.round_deadline_secs
        + group
            .secagg
            .as_ref()
            .map_or(0, |c| 3 * i64::from(c.stage_deadline_secs));
    let round_id: i64 = sqlx::query_scalar(
        "INSERT INTO rounds (group_id, number, base_version_id, config_json, opened_at, deadline_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(group.id)
    .bind(number)
    .bind(base_version_id)
    .bind(Value::Object(config.clone()).to_string())
    .bind(opened_at)
    .bind(deadline_at)
    .fetch_one(&mut **tx)
    .await?;
    let (selected, ready) = select_members(state, tx, group, round_id).await?;
    if let Some(dp) = super::privacy::open(tx, group, round_id, selected, ready).await? {
        config.insert("dp".into(), json!(dp));
        sqlx::query("UPDATE rounds SET config_json = $1 WHERE id = $2")
            .bind(Value::Object(config).to_string())
            .bind(round_id)
            .execute(&mut **tx)
            .await?;
    }
    if let Some(cfg) = &group.secagg {
        super::secagg::open(tx, cfg, round_id).await?;
    }
    metrics::counter!("b3o_federation_rounds_opened_total").increment(1);
    Ok(GroupEvent::RoundOpened {
        round: number,
        deadline_at: crate::accounts::rfc3339(deadline_at),
    })
}

/// Samples `max(ceil(fraction_fit * n), min_clients)` of the `n` ready members that are not
/// gone (`presence`: their training client went away); gone ones only fill up to
/// `min_clients` when too few others are there (they may come back). Returns how many it
/// selected, of how many ready.
async fn select_members(
    state: &AppState,
    conn: &mut Conn,
    group: &GroupSettings,
    round_id: i64,
) -> Result<(usize, usize), ApiError> {
    let ready: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM members WHERE group_id = $1 AND ready_at IS NOT NULL AND left_at IS NULL",
    )
    .bind(group.id)
    .fetch_all(&mut *conn)
    .await?;
    let ready_count = ready.len();
    // An asynchronous round is a buffer every ready member may add to, whenever it can.
    if group.asynchronous.is_some() {
        for member_id in &ready {
            sqlx::query("INSERT INTO round_members (round_id, member_id) VALUES ($1, $2)")
                .bind(round_id)
                .bind(member_id)
                .execute(&mut *conn)
                .await?;
        }
        return Ok((ready_count, ready_count));
    }
    let presence = &state.federation.presence;
    let (mut gone, mut here): (Vec<i64>, Vec<i64>) =
        ready.into_iter().partition(|id| presence.is_gone(*id));
    let n = here.len();
    // A secure round sums at most as many vectors as its modulus holds.
    let most = group
        .secagg
        .as_ref()
        .map_or(usize::MAX, |c| c.max_clients());
    let wanted = ((group.fraction_fit * n as f64).ceil() as usize)
        .max(group.min_clients as usize)
        .min(n)
        .min(most);
    here.shuffle(&mut rand::rng());
    here.truncate(wanted);
    if here.len() < group.min_clients as usize {
        gone.shuffle(&mut rand::rng());
        let missing = group.min_clients as usize - here.len();
        here.extend(gone.into_iter().take(missing));
    }
    for member_id in &here {
        sqlx::query("INSERT INTO round_members (round_id, member_id) VALUES ($1, $2)")
            .bind(round_id)
            .bind(member_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok((here.len(), ready_count))
}

/// Closes the round when it can: at least `min_clients` updates and nobody selected still
/// pending (members whose client is gone do not count: see [`super::presence`]), or the
/// deadline passed. Fails it when too few updates can still arrive. While only gone members
/// could still bring the quorum, it waits for them (or the deadline, or the owner).
pub(crate) async fn check_round(state: &AppState, round_id: i64) -> Result<(), ApiError> {
    if super::secagg::load_for(state, round_id).await?.is_some() {
        return super::secagg::check(state, round_id).await;
    }
    let row: Option<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT r.group_id, r.state, r.deadline_at, g.min_clients
         FROM rounds r JOIN groups g ON g.id = r.group_id WHERE r.id = $1",
    )
    .bind(round_id)
    .fetch_optional(&state.db)
    .await?;
    let Some((group_id, round_state, deadline_at, min_clients)) = row else {
        return Ok(());
    };
    if !RoundState::parse(&round_state).is_live() {
        return Ok(());
    }
    let selected: Vec<(i64, String, Flag)> = sqlx::query_as(
        "SELECT rm.member_id, rm.status, m.left_at IS NULL
         FROM round_members rm JOIN members m ON m.id = rm.member_id WHERE rm.round_id = $1",
    )
    .bind(round_id)
    .fetch_all(&state.db)
    .await?;
    let reported = selected.iter().filter(|m| m.1 == "reported").count() as i64;
    let presence = &state.federation.presence;
    let (gone, pending): (Vec<i64>, Vec<i64>) = selected
        .iter()
        .filter(|m| m.1 == "selected" && m.2.0)
        .map(|m| m.0)
        .partition(|id| presence.is_gone(*id));
    let expired = now() >= deadline_at;
    if let Some(config) = super::buffered::load(&state.db, group_id).await? {
        // A buffer: members that went away may still come back, and stale updates of
        // earlier rounds' trainers arrive here too.
        let pending = pending.len() + gone.len();
        if super::buffered::close_due(&config, reported, pending, expired) {
            return begin_aggregation(state, group_id, round_id).await;
        }
        if expired {
            let reason = "deadline passed with no update in the buffer".to_string();
            return fail_round(state, group_id, round_id, &reason).await;
        }
        return Ok(());
    }
    if !(expired || pending.is_empty()) {
        return Ok(());
    }
    if reported >= min_clients {
        // Gone members' places are settled now: a late update of theirs is refused.
        mark_failed(
            state,
            round_id,
            &gone,
            "its training client went away before sending an update",
        )
        .await?;
        begin_aggregation(state, group_id, round_id).await
    } else if !expired && !gone.is_empty() {
        // Only members that went away could still bring the quorum: wait for them to come
        // back, the deadline, or the owner.
        Ok(())
    } else {
        let reason = if expired {
            format!("deadline passed with {reported} of the {min_clients} required updates")
        } else {
            format!("only {reported} update(s) can arrive, {min_clients} are required")
        };
        fail_round(state, group_id, round_id, &reason).await
    }
}

/// Marks `members` of a round, still expected, as failed with `reason`.
async fn mark_failed(
    state: &AppState,
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
        .execute(&state.db)
        .await?;
    }
    Ok(())
}

/// The owner closes the live round now: at least `min_clients` updates must have arrived;
/// members still expected are marked failed (their late updates are refused) and the round
/// aggregates what it has.
pub(crate) async fn close_now(state: &AppState, group_id: i64) -> Result<i64, ApiError> {
    let round_id = live_round_id(&state.db, group_id)
        .await?
        .ok_or_else(|| ApiError::Conflict("no round is taking updates now".into()))?;
    let (number, reported, min_clients): (i64, i64, i64) = sqlx::query_as(
        "SELECT r.number,
                (SELECT COUNT(*) FROM round_members WHERE round_id = r.id AND status = 'reported'),
                g.min_clients
         FROM rounds r JOIN groups g ON g.id = r.group_id WHERE r.id = $1",
    )
    .bind(round_id)
    .fetch_one(&state.db)
    .await?;
    if reported < min_clients {
        return Err(ApiError::Conflict(format!(
            "round {number} has {reported} of the {min_clients} updates it needs; it can close once \
             {min_clients} have arrived, or you can cancel training"
        )));
    }
    if let Some(secure) = super::secagg::load_for(state, round_id).await? {
        // A secure round cannot skip its key stages: closing ends its training stage now,
        // and the survivors still unmask.
        super::secagg::check_upload(&secure)?;
        super::secagg::end_stage_now(state, round_id).await?;
        return Ok(number);
    }
    let waiting: Vec<i64> = sqlx::query_scalar(
        "SELECT member_id FROM round_members WHERE round_id = $1 AND status = 'selected'",
    )
    .bind(round_id)
    .fetch_all(&state.db)
    .await?;
    mark_failed(
        state,
        round_id,
        &waiting,
        "the owner closed the round before its update arrived",
    )
    .await?;
    begin_aggregation(state, group_id, round_id).await?;
    Ok(number)
}

/// The owner cancels training: the live round fails, no round follows, the group is
/// finished. A round already aggregating still stores its version.
pub(crate) async fn cancel(state: &AppState, group_id: i64, by: &str) -> Result<(), ApiError> {
    let moved = sqlx::query(
        "UPDATE groups SET cancelled_at = $1, paused_at = NULL
         WHERE id = $2 AND phase = 'training' AND cancelled_at IS NULL",
    )
    .bind(now())
    .bind(group_id)
    .execute(&state.db)
    .await?
    .rows_affected();
    if moved == 0 {
        let phase: String = sqlx::query_scalar("SELECT phase FROM groups WHERE id = $1")
            .bind(group_id)
            .fetch_one(&state.db)
            .await?;
        return Err(ApiError::Conflict(match Phase::parse(&phase) {
            Phase::Finished => "training is already over".to_string(),
            _ => "training has not started; members can leave the group instead".to_string(),
        }));
    }
    if let Some(round_id) = live_round_id(&state.db, group_id).await? {
        return fail_round(
            state,
            group_id,
            round_id,
            &format!("training was cancelled by {by}"),
        )
        .await;
    }
    let aggregating: Option<i64> =
        sqlx::query_scalar("SELECT id FROM rounds WHERE group_id = $1 AND state = 'aggregating'")
            .bind(group_id)
            .fetch_optional(&state.db)
            .await?;
    if aggregating.is_none() {
        // Paused between rounds: nothing runs, the group is over now.
        sqlx::query("UPDATE groups SET phase = 'finished' WHERE id = $1")
            .bind(group_id)
            .execute(&state.db)
            .await?;
        publish_next(state, group_id, Next::Finished);
    }
    Ok(())
}

/// The owner pauses (`true`) or resumes training. Pausing lets the live round finish and
/// opens no new one; resuming opens the next round if none is live.
pub(crate) async fn set_paused(
    state: &AppState,
    group_id: i64,
    paused: bool,
) -> Result<(), ApiError> {
    let group = load_group(&state.db, group_id).await?;
    if group.phase != Phase::Training {
        return Err(ApiError::Conflict(match group.phase {
            Phase::Finished => "training is over".to_string(),
            _ => "training has not started yet".to_string(),
        }));
    }
    let mut tx = crate::db::begin_write(&state.db).await?;
    let (Flag(was_paused), Flag(cancelled)): (Flag, Flag) = sqlx::query_as(
        "SELECT paused_at IS NOT NULL, cancelled_at IS NOT NULL FROM groups WHERE id = $1",
    )
    .bind(group_id)
    .fetch_one(&mut *tx)
    .await?;
    if cancelled {
        return Err(ApiError::Conflict("training was cancelled".into()));
    }
    if was_paused == paused {
        return Ok(());
    }
    sqlx::query("UPDATE groups SET paused_at = $1 WHERE id = $2")
        .bind(paused.then(now))
        .bind(group_id)
        .execute(&mut *tx)
        .await?;
    let mut opened = None;
    if !paused {
        // Paused between rounds: the next round opens from the newest model.
        let last: Option<(i64, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT number, state, base_version_id, result_version_id FROM rounds
             WHERE group_id = $1 ORDER BY number DESC LIMIT 1",
        )
        .bind(group_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((number, round_state, base, result)) = last {
            let round_state = RoundState::parse(&round_state);
            if matches!(round_state, RoundState::Closed | RoundState::Failed) {
                opened =
                    Some(advance(state, &mut tx, &group, number, result.unwrap_or(base)).await?);
            }
        }
    }
    tx.commit().await?;
    state
        .federation
        .events
        .publish(group_id, GroupEvent::Paused { paused });
    if let Some(next) = opened {
        publish_next(state, group_id, next);
    }
    Ok(())
}

/// `open|collecting -> aggregating`, under the group lock and in a write transaction (the
/// database's writer lock, which every update's commit takes too: on Postgres, replicas
/// receiving updates for this round), so that no update commits after the transition
/// without being seen; then aggregates in the background.
pub(super) async fn begin_aggregation(
    state: &AppState,
    group_id: i64,
    round_id: i64,
) -> Result<(), ApiError> {
    let lock = state.federation.group(group_id);
    let accumulator = {
        let mut rt = lock.lock().await;
        let mut tx = crate::db::begin_write(&state.db).await?;
        let moved = sqlx::query(
            "UPDATE rounds SET state = 'aggregating', aggregated_by = $1,
                 aggregation_lease_until = $2
             WHERE id = $3 AND state IN ('open', 'collecting')",
        )
        .bind(crate::cluster::replica_tag())
        .bind(aggregation_lease::lease_end())
        .bind(round_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if moved == 0 {
            return Ok(());
        }
        rt.accumulator.take().filter(|a| a.round_id == round_id)
    };
    spawn_aggregation(state, group_id, round_id, accumulator, None);
    Ok(())
}

/// Aggregates round `round_id` (claimed by this replica) in the background, renewing the
/// claim; on failure, fails the round with `failure` (or the error's own message) unless
/// another replica took it over meanwhile.
fn spawn_aggregation(
    state: &AppState,
    group_id: i64,
    round_id: i64,
    accumulator: Option<RoundAccumulator>,
    failure: Option<&'static str>,
) {
    let state = state.clone();
    tokio::spawn(async move {
        let result =
            aggregation_lease::holding(&state, round_id, aggregate(&state, round_id, accumulator))
                .await;
        let Err(e) = result else { return };
        tracing::error!(round_id, error = %e, "aggregation failed");
        let reason = match (&e, failure) {
            (_, Some(failure)) => failure.to_string(),
            (ApiError::Internal(_) | ApiError::Database(_), None) => "internal error".to_string(),
            (other, None) => other.to_string(),
        };
        match aggregation_lease::still_held(&state, round_id).await {
            Ok(true) => {
                if let Err(e) = fail_round(&state, group_id, round_id, &reason).await {
                    tracing::error!(round_id, error = %e, "marking the round failed");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::error!(round_id, error = %e, "marking the round failed"),
        }
    });
}

/// Marks a live or aggregating round failed and moves on to the next round (from the same
/// model) or finishes the group.
pub(super) async fn fail_round(
    state: &AppState,
    group_id: i64,
    round_id: i64,
    reason: &str,
) -> Result<(), ApiError> {
    let group = load_group(&state.db, group_id).await?;
    let mut tx = crate::db::begin_write(&state.db).await?;
    let row: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE rounds SET state = 'failed', failure = $1, closed_at = $2
         WHERE id = $3 AND state IN ('open', 'collecting', 'aggregating')
         RETURNING number, base_version_id",
    )
    .bind(reason)
    .bind(now())
    .bind(round_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((number, base_version_id)) = row else {
        return Ok(());
    };
    sqlx::query("UPDATE round_members SET status = 'failed', failure = $1 WHERE round_id = $2 AND status = 'selected'")
        .bind("round failed")
        .bind(round_id)
        .execute(&mut *tx)
        .await?;
    let next = advance(state, &mut tx, &group, number, base_version_id).await?;
    tx.commit().await?;
    // Drop the failed round's running sum, if it still holds one.
    {
        let lock = state.federation.group(group_id);
        let mut rt = lock.lock().await;
        if rt
            .accumulator
            .as_ref()
            .is_some_and(|a| a.round_id == round_id)
        {
            rt.accumulator = None;
        }
    }
    let events = &state.federation.events;
    events.publish(
        group_id,
        GroupEvent::RoundFailed {
            round: number,
            reason: reason.to_string(),
        },
    );
    publish_next(state, group_id, next);
    metrics::counter!("b3o_federation_rounds_failed_total").increment(1);
    tracing::warn!(group_id, round = number, reason, "round failed");
    Ok(())
}

/// What follows a round.
enum Next {
    /// The next round opened (the event to publish once the transaction commits).
    Opened(GroupEvent),
    /// The group is finished: its last round, or training was cancelled.
    Finished,
    /// The owner paused training: nothing opens until it resumes.
    Paused,
}

/// After round `number`: opens the next round from `version_id`, or finishes the group
/// (its last round, or cancelled), or nothing while it is paused.
async fn advance(
    state: &AppState,
    tx: &mut Transaction<'_, Any>,
    group: &GroupSettings,
    number: i64,
    version_id: i64,
) -> Result<Next, ApiError> {
    let (Flag(paused), Flag(cancelled)): (Flag, Flag) = sqlx::query_as(
        "SELECT paused_at IS NOT NULL, cancelled_at IS NOT NULL FROM groups WHERE id = $1",
    )
    .bind(group.id)
    .fetch_one(&mut **tx)
    .await?;
    let exhausted = if number < group.total_rounds && !cancelled {
        super::privacy::budget_left(tx, group).await?
    } else {
        None
    };
    if let Some(reason) = &exhausted {
        tracing::info!(
            group_id = group.id,
            reason,
            "training stops at the privacy budget"
        );
    }
    if number < group.total_rounds && !cancelled && exhausted.is_none() {
        if paused {
            return Ok(Next::Paused);
        }
        Ok(Next::Opened(
            open_round(state, tx, group, number + 1, version_id).await?,
        ))
    } else {
        sqlx::query("UPDATE groups SET phase = 'finished' WHERE id = $1")
            .bind(group.id)
            .execute(&mut **tx)
            .await?;
        Ok(Next::Finished)
    }
}

fn publish_next(state: &AppState, group_id: i64, next: Next) {
    let event = match next {
        Next::Opened(event) => event,
        Next::Finished => GroupEvent::PhaseChanged {
            phase: Phase::Finished,
        },
        Next::Paused => return,
    };
    state.federation.events.publish(group_id, event);
}

struct StoredUpdate {
    id: i64,
    member_id: i64,
    num_samples: i64,
    metrics: std::collections::BTreeMap<String, f64>,
    blob_path: String,
    /// An asynchronous group's stale update: the base version of the round it trained in.
    trained_from_version: Option<i64>,
    /// Versions published since its base model (0 but for stale updates).
    staleness: i64,
}

/// The fits of a round in the form its strategy wants.
enum LoadedFits {
    /// The running mean (`None` when no update carried a sample).
    Mean(Option<strategy::math::MeanResult>),
    /// Every update's parameters.
    All(Vec<FitRes>),
}

/// Everything aggregating a round reads.
struct Inputs {
    base: Base,
    updates: Vec<StoredUpdate>,
    failures: Vec<FitFailure>,
    /// The base model's parameters.
    current: Vec<f32>,
    /// The server optimiser's state after the base version, if it has one.
    opt_state: Option<ServerOptState>,
    fits: LoadedFits,
    /// A DP round's settings and its updates' "was not clipped" bits.
    dp: Option<(b3o_models::dp::RoundDp, Vec<f64>)>,
}

/// The round and what it started from.
struct Base {
    group: GroupSettings,
    number: i64,
    base_version_id: i64,
    layout: WeightLayout,
    /// The base version's spec, stored again with the new version.
    spec: String,
}

/// What the strategy made of a round.
struct Outcome {
    params: Vec<f32>,
    metrics: std::collections::BTreeMap<String, f64>,
    opt_state: Option<ServerOptState>,
}

/// Runs the group's strategy over the round's updates and commits the new version together
/// with the round's close (and the next round's opening).
async fn aggregate(
    state: &AppState,
    round_id: i64,
    accumulator: Option<RoundAccumulator>,
) -> Result<(), ApiError> {
    let Inputs {
        base,
        updates,
        failures,
        current,
        opt_state,
        mut fits,
        dp,
    } = load_inputs(state, round_id, accumulator).await?;
    // Differential privacy: central noise on the mean, adaptive clipping's noisy count.
    let closed = match (&base.group.dp, &dp) {
        (Some(params), Some((round, bits))) => {
            let mean = match &mut fits {
                LoadedFits::Mean(Some(m)) => Some(m),
                _ => None,
            };
            let secure = base.group.secagg.is_some();
            Some(super::privacy::finish_round(
                params, round, mean, secure, bits,
            ))
        }
        _ => None,
    };
    let evals: Vec<EvalRes> = updates
        .iter()
        .map(|u| EvalRes {
            // Secure updates carry no sample count: their metrics weigh the same.
            num_samples: (u.num_samples as u64).max(1),
            metrics: u.metrics.clone(),
        })
        .collect();
    let (config, number) = (base.group.strategy.clone(), base.number);
    // The maths may take seconds for robust strategies: off the async threads.
    let outcome = tokio::task::spawn_blocking(move || {
        run_strategy(&config, number, current, opt_state, fits, &evals, &failures)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("aggregation task: {e}")))??;
    commit(state, round_id, &base, &updates, outcome, closed).await
}

/// Reads a round's inputs: its group and base version, the updates (from the spool) and the
/// members that sent none, in the form the group's strategy wants.
/// Memory the stored updates being read at once while a round is aggregated may hold (each
/// read holds one decoded model). An object store answers each read in milliseconds, so one
/// after the other, the 2/3 of a 1,000-update round that another replica received took
/// seconds: small models are read up to [`MAX_READS_IN_FLIGHT`] at a time, a 10M-parameter
/// one (40 MB) one at a time.
const READ_BUDGET_BYTES: usize = 64 * 1024 * 1024;
const MAX_READS_IN_FLIGHT: usize = 64;

/// How many updates of `params` parameters are read at once (see [`READ_BUDGET_BYTES`]).
fn reads_in_flight(params: usize) -> usize {
    (READ_BUDGET_BYTES / params.saturating_mul(4).max(1)).clamp(1, MAX_READS_IN_FLIGHT)
}

/// Reads the parameters of `updates` with `read`, a few at a time ([`reads_in_flight`] for a
/// model of `params` parameters), yielding them in the order given. (The reads are made a list
/// first: a lazy iterator of borrowing closures is not `Send` enough for the spawned
/// aggregation.)
fn read_in_order<'a, R, F>(
    updates: impl Iterator<Item = &'a StoredUpdate>,
    read: &R,
    params: usize,
) -> impl futures_util::Stream<Item = (&'a StoredUpdate, Result<Vec<f32>, ApiError>)> + 'a
where
    R: Fn(&'a StoredUpdate) -> F,
    F: std::future::Future<Output = Result<Vec<f32>, ApiError>> + 'a,
{
    let reads: Vec<_> = updates
        .map(|u| {
            let read = read(u);
            async move { (u, read.await) }
        })
        .collect();
    futures_util::stream::iter(reads).buffered(reads_in_flight(params))
}

async fn load_inputs(
    state: &AppState,
    round_id: i64,
    accumulator: Option<RoundAccumulator>,
) -> Result<Inputs, ApiError> {
    let (group_id, number, base_version_id): (i64, i64, i64) =
        sqlx::query_as("SELECT group_id, number, base_version_id FROM rounds WHERE id = $1")
            .bind(round_id)
            .fetch_one(&state.db)
            .await?;
    let group = load_group(&state.db, group_id).await?;
    let layout = group.layout()?.clone();
    let (base_path, state_path, spec): (String, Option<String>, String) = sqlx::query_as(
        "SELECT weights_path, optimizer_state_path, spec_json FROM model_versions WHERE id = $1",
    )
    .bind(base_version_id)
    .fetch_one(&state.db)
    .await?;
    type UpdateRow = (i64, i64, i64, String, String, Option<i64>, i64);
    let rows: Vec<UpdateRow> = sqlx::query_as(
        "SELECT u.id, u.member_id, u.num_samples, u.metrics_json, u.blob_path,
            (SELECT t.base_version_id FROM rounds t
             WHERE t.group_id = $1 AND t.number = u.trained_from),
            u.staleness
         FROM updates u WHERE u.round_id = $2 ORDER BY u.id",
    )
    .bind(group_id)
    .bind(round_id)
    .fetch_all(&state.db)
    .await?;
    let mut updates: Vec<StoredUpdate> = rows
        .into_iter()
        .map(
            |(id, member_id, num_samples, metrics, blob_path, from, staleness)| StoredUpdate {
                id,
                member_id,
                num_samples,
                metrics: serde_json::from_str(&metrics).unwrap_or_default(),
                blob_path,
                trained_from_version: from.filter(|v| *v != base_version_id),
                staleness,
            },
        )
        .collect();
    // A DP round's "was not clipped" bits, kept out of the averaged metrics.
    let dp = match &group.dp {
        Some(params) => {
            let mut conn = state.db.acquire().await?;
            super::privacy::round_dp(&mut conn, Some(params), round_id)
                .await?
                .map(|round| {
                    let bits = updates
                        .iter()
                        .filter_map(|u| u.metrics.get(b3o_models::dp::UNCLIPPED_METRIC).copied())
                        .collect();
                    for u in &mut updates {
                        super::privacy::strip_metrics(&mut u.metrics);
                    }
                    (round, bits)
                })
        }
        None => None,
    };
    let failures: Vec<FitFailure> = sqlx::query_as::<_, (i64, Option<String>, String)>(
        "SELECT member_id, failure, status FROM round_members
         WHERE round_id = $1 AND status != 'reported'",
    )
    .bind(round_id)
    .fetch_all(&state.db)
    .await?
    .into_iter()
    .map(|(member_id, failure, status)| FitFailure {
        member_id,
        reason: failure.unwrap_or_else(|| match MemberStatus::parse(&status) {
            MemberStatus::Selected => "no update before the deadline".into(),
            MemberStatus::Dropped => "left the group".into(),
            _ => status,
        }),
    })
    .collect();

    let current = super::updates::version_params(state, &layout, &base_path).await?;
    let opt_state = match state_path {
        Some(path) => {
            let bytes = state.blobs.get(&path).await?;
            Some(
                ServerOptState::from_bytes(&bytes)
                    .map_err(|e| ApiError::Internal(format!("{path}: {e}")))?,
            )
        }
        None => None,
    };

    // Gather the fits in the form the strategy wants.
    let fits = match strategy::build(&group.strategy).accumulation() {
        // A secure round's sum, unmasked: the weighted mean without any single update.
        Accumulation::RunningMean if group.secagg.is_some() => {
            LoadedFits::Mean(super::secagg::unmasked_mean(state, round_id, &current).await?)
        }
        Accumulation::RunningMean => {
            let mut acc = accumulator.unwrap_or_else(|| RoundAccumulator {
                round_id,
                mean: WeightedMean::new(current.len()),
                included: Default::default(),
            });
            // The updates this replica did not fold as they arrived (all of them after a
            // restart; the other replicas' share behind a load balancer), folded in id order.
            let missing: Vec<&StoredUpdate> = updates
                .iter()
                .filter(|u| !acc.included.contains(&u.id))
                .collect();
            read_stale_by_base(
                state,
                &layout,
                &current,
                missing.into_iter(),
                |u, params| {
                    acc.mean
                        .add_scaled(
                            &params,
                            group.mean_weight(u.num_samples as u64),
                            group.staleness_weight(u.staleness),
                        )
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                    acc.included.insert(u.id);
                    Ok(())
                },
            )
            .await?;
            LoadedFits::Mean(acc.mean.finish())
        }
        Accumulation::AllUpdates => {
            let mut all = Vec::with_capacity(updates.len());
            read_stale_by_base(state, &layout, &current, updates.iter(), |u, params| {
                all.push(FitRes {
                    num_samples: u.num_samples as u64,
                    params,
                });
                Ok(())
            })
            .await?;
            LoadedFits::All(all)
        }
    };
    Ok(Inputs {
        base: Base {
            group,
            number,
            base_version_id,
            layout,
            spec,
        },
        updates,
        failures,
        current,
        opt_state,
        fits,
        dp,
    })
}

/// Reads the parameters of stored `updates` into `each`, in id order among those trained from
/// the same model: first those of the round's base (`current`), then an asynchronous round's
/// stale ones base by base, each older model read once and only it held beside `current`, the
/// update moved onto `current` (`buffered::rebase`). Updates in a compressed encoding carry a
/// delta from the model they trained from.
async fn read_stale_by_base<'a>(
    state: &AppState,
    layout: &WeightLayout,
    current: &'a [f32],
    updates: impl Iterator<Item = &'a StoredUpdate>,
    mut each: impl FnMut(&'a StoredUpdate, Vec<f32>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut by_base: std::collections::BTreeMap<Option<i64>, Vec<&'a StoredUpdate>> =
        Default::default();
    for u in updates {
        by_base.entry(u.trained_from_version).or_default().push(u);
    }
    for (from_version, group) in by_base {
        let from = match from_version {
            Some(version_id) => Some(std::sync::Arc::new(
                super::updates::base_params(state, layout, version_id).await?,
            )),
            None => None,
        };
        let read = |u: &'a StoredUpdate| {
            let store = state.blobs.clone();
            let layout = layout.clone();
            let from = from.clone();
            let path = u.blob_path.clone();
            async move {
                let bytes = store.get(&path).await?;
                let limits = weights::DecodeLimits {
                    max_bytes: usize::MAX,
                    max_metrics: usize::MAX,
                };
                let base = from.as_deref().map_or(current, Vec::as_slice);
                let (set, _, _) =
                    compress::decode_update(&bytes, &layout, Some(base), None, limits)
                        .map_err(|e| ApiError::Internal(format!("stored update {path}: {e}")))?;
                let mut params = set.flatten();
                if let Some(from) = &from {
                    super::buffered::rebase(&mut params, from, current);
                }
                Ok::<_, ApiError>(params)
            }
        };
        let mut reads = read_in_order(group.into_iter(), &read, current.len());
        while let Some((u, params)) = reads.next().await {
            each(u, params?)?;
        }
    }
    Ok(())
}

/// The group's strategy over a round's loaded inputs: the new parameters (the base ones when
/// the strategy keeps the current model), the round's metrics and the optimiser's new state.
/// A model that is not finite is refused (the round fails with the reason).
fn run_strategy(
    config: &StrategyConfig,
    number: i64,
    current: Vec<f32>,
    opt_state: Option<ServerOptState>,
    fits: LoadedFits,
    evals: &[EvalRes],
    failures: &[FitFailure],
) -> Result<Outcome, ApiError> {
    let mut strat = strategy::build(config);
    if let Some(st) = opt_state {
        strat
            .load_state(st)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    let metrics = strat.aggregate_evaluate(evals);
    let all;
    let fits = match fits {
        LoadedFits::Mean(Some(m)) => Fits::Mean(m),
        LoadedFits::Mean(None) => Fits::All(&[]),
        LoadedFits::All(updates) => {
            all = updates;
            Fits::All(&all)
        }
    };
    let new_params = strat
        .aggregate_fit(number as u32, &current, fits, failures)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // `None` keeps the current model: the version repeats the base weights.
    let params = new_params.unwrap_or(current);
    // Never store a model no client can use; the round fails with the reason instead.
    strategy::math::check_finite(&params).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(Outcome {
        params,
        metrics,
        opt_state: strat.state(),
    })
}

/// Writes the new version's files, then inserts it through the registry with the round's close
/// and the next round's opening (or the group's end), if the round is still aggregating.
async fn commit(
    state: &AppState,
    round_id: i64,
    base: &Base,
    updates: &[StoredUpdate],
    outcome: Outcome,
    closed: Option<super::privacy::Closed>,
) -> Result<(), ApiError> {
    let Base {
        group,
        number,
        base_version_id,
        layout,
        spec,
    } = base;
    let (group_id, number) = (group.id, *number);
    let Outcome {
        params,
        metrics,
        opt_state,
    } = outcome;
    let total_samples: i64 = updates.iter().map(|u| u.num_samples).sum();
    let meta = UpdateMeta {
        model_id: group.model_id(),
        round: number as u64,
        num_samples: total_samples as u64,
        metrics: metrics.clone(),
    };
    let onnx = write_onnx(state, group_id, number, spec, layout, &params).await;
    let bytes = encode_weights(layout, params, &meta)?;
    let weights = registry::versions::write_weights(&state.blobs, group_id, number, bytes).await?;
    let optimizer_state_path = match opt_state {
        Some(st) => Some(
            registry::versions::write_optimizer_state(
                &state.blobs,
                group_id,
                number,
                st.to_bytes(),
            )
            .await?,
        ),
        None => None,
    };
    let contributors: Vec<Value> = updates
        .iter()
        .map(|u| match u.staleness {
            0 => json!({ "member_id": u.member_id, "num_samples": u.num_samples }),
            s => json!({ "member_id": u.member_id, "num_samples": u.num_samples, "staleness": s }),
        })
        .collect();
    let metrics_json = serde_json::to_string(&metrics).unwrap_or_else(|_| "{}".into());

    let mut tx = crate::db::begin_write(&state.db).await?;
    let still_aggregating: Option<i64> =
        sqlx::query_scalar("SELECT id FROM rounds WHERE id = $1 AND state = 'aggregating'")
            .bind(round_id)
            .fetch_optional(&mut *tx)
            .await?;
    if still_aggregating.is_none() {
        return Ok(());
    }
    let version = NewVersion {
        group_id,
        round: number,
        parent_id: Some(*base_version_id),
        weights,
        num_params: layout.num_params() as i64,
        spec_json: spec.clone(),
        metrics_json: metrics_json.clone(),
        contributors_json: Value::Array(contributors).to_string(),
        optimizer_state_path,
        onnx_path: onnx,
        reference_json: None,
    };
    let version_id = registry::insert_version(&mut tx, &version).await?;
    if let Some(closed) = &closed {
        super::privacy::close(&mut tx, group, round_id, closed).await?;
    }
    sqlx::query(
        "UPDATE rounds SET state = 'closed', result_version_id = $1, closed_at = $2, metrics_json = $3
         WHERE id = $4",
    )
    .bind(version_id)
    .bind(now())
    .bind(&metrics_json)
    .bind(round_id)
    .execute(&mut *tx)
    .await?;
    let next = advance(state, &mut tx, group, number, version_id).await?;
    tx.commit().await?;
    metrics::counter!("b3o_federation_rounds_closed_total").increment(1);
    state.federation.events.publish(
        group_id,
        GroupEvent::RoundClosed {
            round: number,
            version_id,
        },
    );
    publish_next(state, group_id, next);
    tracing::info!(
        group_id,
        round = number,
        version_id,
        updates = updates.len(),
        "round closed"
    );
    Ok(())
}

/// At start: re-runs aggregations a crash interrupted (on SQLite, every one; on Postgres,
/// those whose replica's lease ran out: the others are still running elsewhere).
pub(crate) async fn recover(state: &AppState) -> Result<(), ApiError> {
    let take_over = crate::db::dialect(&state.db) == crate::db::Dialect::Sqlite;
    resume_stale(state, take_over).await?;
    // Rounds whose quorum was reached just before a crash.
    let live: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM rounds WHERE state IN ('open', 'collecting')")
            .fetch_all(&state.db)
            .await?;
    for round_id in live {
        check_round(state, round_id).await?;
    }
    Ok(())
}

/// Claims and aggregates, in the background, the rounds left `aggregating` by a replica that
/// stopped (lease run out; every one with `take_over`).
pub(crate) async fn resume_stale(state: &AppState, take_over: bool) -> Result<(), ApiError> {
    let stuck: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT id, group_id FROM rounds WHERE {}",
        aggregation_lease::CLAIMABLE
    ))
    .bind(take_over)
    .bind(now())
    .fetch_all(&state.db)
    .await?;
    for (round_id, group_id) in stuck {
        if !aggregation_lease::claim(state, round_id, take_over).await? {
            continue;
        }
        tracing::info!(round_id, "resuming an interrupted aggregation");
        spawn_aggregation(
            state,
            group_id,
            round_id,
            None,
            Some("aggregation failed after a restart"),
        );
    }
    Ok(())
}

pub(crate) async fn check_deadlines(state: &AppState) -> Result<(), ApiError> {
    let mut due: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM rounds WHERE state IN ('open', 'collecting') AND deadline_at <= $1",
    )
    .bind(now())
    .fetch_all(&state.db)
    .await?;
    // Secure rounds' stages end on their own deadlines and when members go away.
    due.extend(super::secagg::live_rounds(state).await?);
    due.sort_unstable();
    due.dedup();
    for round_id in due {
        check_round(state, round_id).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_read_a_few_at_a_time_within_the_memory_budget() {
        assert_eq!(reads_in_flight(15), MAX_READS_IN_FLIGHT);
        assert_eq!(reads_in_flight(1_000_000), 16);
        assert_eq!(reads_in_flight(10_000_000), 1);
        assert_eq!(reads_in_flight(0), MAX_READS_IN_FLIGHT);
    }
}
