//! A group's differential privacy (`b3o_models::dp`, migration 0007): its parameters, each
//! round's clipping and noise, the central noise the server adds, adaptive clipping, and the
//! accountant that stops training before a round would pass the group's target.
//!
//! - **Creation** stores the request and its resolution for the planned rounds at
//!   `fraction_fit` ([`store`]); **start** resolves it again for the members actually ready
//!   ([`at_start`]): when `min_clients` forces a higher sampling rate, the calibrated noise
//!   grows with it.
//! - **Opening** a round ([`open`]) writes its `dp_rounds` row (this round's clipping norm, noise
//!   multipliers and sampling rate: members selected over members ready, never below the
//!   planned one) and the `dp` section of its config, which members check against their own
//!   ledgers.
//! - **Before** opening the next round, [`budget_left`] composes the closed rounds with the
//!   next one; past the target, the group finishes with the reason.
//! - **Aggregation** ([`finish_round`]): the mean of a central, non-secure group gets
//!   `N(0, (z·C/n)^2)` per value (secure groups' members added their shares; local ones their
//!   full noise), adaptive clipping moves the norm from the noisy count of unclipped updates,
//!   and the round's epsilon is stored with its close.

use b3o_models::dp::accountant::Accountant;
use b3o_models::dp::{self, DpConfig, DpParams, DpPlacement, RoundDp, UNCLIPPED_METRIC, mechanism};
use b3o_models::protocol::{GroupPrivacy, RoundPrivacy};
use sqlx::SqliteConnection;

use super::rounds::GroupSettings;
use crate::db::Db;
use crate::error::ApiError;
use crate::strategy::MeanResult;

fn bad_settings(e: dp::DpError) -> ApiError {
    ApiError::BadRequest(format!("dp: {e}"))
}

/// Resolves a request off the async threads: calibrating the noise multiplier evaluates the
/// accountant many times (milliseconds, up to about a second for targets no noise can meet).
async fn resolve(
    config: &DpConfig,
    rounds: u32,
    sampling_rate: f64,
    clients_per_round: f64,
) -> Result<Result<DpParams, dp::DpError>, ApiError> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || config.resolve(rounds, sampling_rate, clients_per_round))
        .await
        .map_err(|e| ApiError::Internal(format!("privacy calibration task: {e}")))
}

fn corrupt(group_id: i64, e: serde_json::Error) -> ApiError {
    ApiError::Internal(format!(
        "group {group_id}: stored privacy settings unreadable: {e}"
    ))
}

/// Stores a new group's DP request and its resolution at `fraction_fit` (in its creating
/// transaction); a request that cannot be met is a 400 naming why.
pub(crate) async fn store(
    conn: &mut SqliteConnection,
    group_id: i64,
    config: &DpConfig,
    rounds: u32,
    fraction_fit: f64,
    min_clients: u32,
) -> Result<(), ApiError> {
    let params = resolve(config, rounds, fraction_fit, f64::from(min_clients.max(2)))
        .await?
        .map_err(bad_settings)?;
    sqlx::query("UPDATE groups SET dp_config_json = $1, dp_json = $2 WHERE id = $3")
        .bind(super::groups::to_json(config))
        .bind(super::groups::to_json(&params))
        .bind(group_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The parameters a DP group runs with; `None` for other groups.
pub(crate) async fn load(db: &Db, group_id: i64) -> Result<Option<DpParams>, ApiError> {
    let json: Option<Option<String>> =
        sqlx::query_scalar("SELECT dp_json FROM groups WHERE id = $1")
            .bind(group_id)
            .fetch_optional(db)
            .await?;
    json.flatten()
        .map(|j| serde_json::from_str(&j).map_err(|e| corrupt(group_id, e)))
        .transpose()
}

/// The sampling rate of a round selecting from `ready` members: the planned one, or more when
/// `min_clients` (or rounding up) selects more (as `rounds::select_members` does).
pub(crate) fn sampling_rate(planned: f64, min_clients: i64, ready: i64) -> f64 {
    if ready <= 0 {
        return 1.0;
    }
    let wanted = ((planned * ready as f64).ceil() as i64)
        .max(min_clients)
        .min(ready);
    (wanted as f64 / ready as f64).clamp(planned.min(1.0), 1.0)
}

/// At the start of training, with `ready` members: resolves the group's request again for the
/// sampling rate and clients per round it will really have, stores and returns it. A request
/// that cannot be met now (adaptive clipping's count noise too small) is a 409.
pub(crate) async fn at_start(
    conn: &mut SqliteConnection,
    group: &GroupSettings,
    ready: i64,
) -> Result<Option<DpParams>, ApiError> {
    let json: Option<String> = sqlx::query_scalar("SELECT dp_config_json FROM groups WHERE id = $1")
        .bind(group.id)
        .fetch_one(&mut *conn)
        .await?;
    let Some(json) = json else {
        return Ok(None);
    };
    let config: DpConfig = serde_json::from_str(&json).map_err(|e| corrupt(group.id, e))?;
    let q = sampling_rate(group.fraction_fit, group.min_clients, ready);
    let rounds = u32::try_from(group.total_rounds).unwrap_or(u32::MAX);
    let params = resolve(&config, rounds, q, (q * ready as f64).max(1.0))
        .await?
        .map_err(|e| {
            ApiError::Conflict(format!("differential privacy with {ready} members: {e}"))
        })?;
    sqlx::query("UPDATE groups SET dp_json = $1 WHERE id = $2")
        .bind(super::groups::to_json(&params))
        .bind(group.id)
        .execute(&mut *conn)
        .await?;
    Ok(Some(params))
}

/// The accountant over a group's closed rounds, and how many. Rounds with the same sampling
/// rate and noise compose in one step (the accountant's cost does not grow with their number).
async fn closed_rounds(
    conn: &mut SqliteConnection,
    group_id: i64,
) -> Result<(Accountant, i64), ApiError> {
    let rows: Vec<(f64, f64, i64)> = sqlx::query_as(
        "SELECT d.sampling_rate, d.noise_multiplier, COUNT(*) FROM dp_rounds d
         JOIN rounds r ON r.id = d.round_id WHERE r.group_id = $1 AND r.state = 'closed'
         GROUP BY d.sampling_rate, d.noise_multiplier",
    )
    .bind(group_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut acc = Accountant::new();
    let mut counted = 0;
    for (q, z, n) in &rows {
        acc.compose(*q, *z, u32::try_from(*n).unwrap_or(u32::MAX));
        counted += n;
    }
    Ok((acc, counted))
}

async fn ready_members(conn: &mut SqliteConnection, group_id: i64) -> Result<i64, ApiError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM members WHERE group_id = $1 AND ready_at IS NOT NULL AND left_at IS NULL",
    )
    .bind(group_id)
    .fetch_one(&mut *conn)
    .await?)
}

/// Whether another round fits the group's budget: `Ok(None)` when it does (or the group has
/// no DP), `Ok(Some(reason))` when it would pass the target (the reason is stored with the
/// group for its view).
pub(crate) async fn budget_left(
    conn: &mut SqliteConnection,
    group: &GroupSettings,
) -> Result<Option<String>, ApiError> {
    let Some(params) = &group.dp else {
        return Ok(None);
    };
    let (mut acc, counted) = closed_rounds(conn, group.id).await?;
    let spent = acc.epsilon(params.delta);
    let ready = ready_members(conn, group.id).await?;
    let q = sampling_rate(params.sampling_rate, group.min_clients, ready);
    acc.compose(q, params.noise_multiplier, 1);
    let next = acc.epsilon(params.delta);
    if next <= params.epsilon * (1.0 + 1e-9) {
        return Ok(None);
    }
    let reason = format!(
        "privacy budget reached: after {counted} round(s) epsilon is {spent:.3}; another round \
         would bring it to {next:.3}, past the group's target of {} (delta {:e})",
        params.epsilon, params.delta
    );
    sqlx::query("UPDATE groups SET dp_exhausted = $1 WHERE id = $2")
        .bind(&reason)
        .bind(group.id)
        .execute(&mut *conn)
        .await?;
    Ok(Some(reason))
}

/// The clipping norm of the group's next round: the initial one, or the latest closed round's
/// adaptive update.
async fn current_clipping_norm(
    conn: &mut SqliteConnection,
    group_id: i64,
    params: &DpParams,
) -> Result<f64, ApiError> {
    let latest: Option<f64> = sqlx::query_scalar(
        "SELECT d.next_clipping_norm FROM dp_rounds d JOIN rounds r ON r.id = d.round_id
         WHERE r.group_id = $1 AND d.next_clipping_norm IS NOT NULL
         ORDER BY r.number DESC LIMIT 1",
    )
    .bind(group_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(latest
        .filter(|c| c.is_finite() && *c > 0.0)
        .unwrap_or(params.clipping_norm))
}

/// Writes a new round's privacy (`selected` of `ready` members) and returns the `dp` section of
/// its config; `None` for a group without DP.
pub(crate) async fn open(
    conn: &mut SqliteConnection,
    group: &GroupSettings,
    round_id: i64,
    selected: usize,
    ready: usize,
) -> Result<Option<RoundDp>, ApiError> {
    let Some(params) = &group.dp else {
        return Ok(None);
    };
    let realized = if ready == 0 {
        1.0
    } else {
        selected as f64 / ready as f64
    };
    let sampling_rate = realized.max(params.sampling_rate).min(1.0);
    let clipping_norm = current_clipping_norm(conn, group.id, params).await?;
    let round = RoundDp {
        placement: params.placement,
        clipping_norm,
        noise_multiplier: params.noise_multiplier,
        update_noise_multiplier: params.update_noise_multiplier,
        sampling_rate,
        epsilon: params.epsilon,
        delta: params.delta,
        adaptive: params.adaptive.is_some(),
    };
    sqlx::query(
        "INSERT INTO dp_rounds (round_id, clipping_norm, noise_multiplier, update_noise_multiplier,
            sampling_rate) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(round_id)
    .bind(round.clipping_norm)
    .bind(round.noise_multiplier)
    .bind(round.update_noise_multiplier)
    .bind(round.sampling_rate)
    .execute(&mut *conn)
    .await?;
    Ok(Some(round))
}

/// A round's privacy as it opened; `None` outside DP groups.
pub(crate) async fn round_dp(
    conn: &mut SqliteConnection,
    params: Option<&DpParams>,
    round_id: i64,
) -> Result<Option<RoundDp>, ApiError> {
    let Some(params) = params else {
        return Ok(None);
    };
    let row: Option<(f64, f64, f64, f64)> = sqlx::query_as(
        "SELECT clipping_norm, noise_multiplier, update_noise_multiplier, sampling_rate
         FROM dp_rounds WHERE round_id = $1",
    )
    .bind(round_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(c, z, zu, q)| RoundDp {
        placement: params.placement,
        clipping_norm: c,
        noise_multiplier: z,
        update_noise_multiplier: zu,
        sampling_rate: q,
        epsilon: params.epsilon,
        delta: params.delta,
        adaptive: params.adaptive.is_some(),
    }))
}

/// The L2 bound the server checks a plain update against (`update - base`): the round's
/// clipping norm with central noise. Local noise makes the norm meaningless, and secure groups'
/// updates are hidden.
pub(crate) fn upload_bound(round: &RoundDp) -> Option<f64> {
    (round.placement == DpPlacement::Central).then_some(round.clipping_norm * (1.0 + 1e-4) + 1e-6)
}

/// Checks the "was not clipped" bit an adaptive round's update must carry.
pub(crate) fn check_bit(
    round: &RoundDp,
    metrics: &std::collections::BTreeMap<String, f64>,
) -> Result<(), ApiError> {
    if !round.adaptive {
        return Ok(());
    }
    match metrics.get(UNCLIPPED_METRIC) {
        Some(b) if *b == 0.0 || *b == 1.0 => Ok(()),
        Some(b) => Err(ApiError::BadRequest(format!(
            "metric `{UNCLIPPED_METRIC}` must be 0 or 1 (whether the update was within the \
             round's clipping norm), got {b}"
        ))),
        None => Err(ApiError::BadRequest(format!(
            "this group clips adaptively: every update carries the metric `{UNCLIPPED_METRIC}` \
             (1 when its norm was within the round's clipping norm, else 0)"
        ))),
    }
}

/// Removes the privacy bookkeeping metrics from what the strategy averages and the views show.
pub(crate) fn strip_metrics(metrics: &mut std::collections::BTreeMap<String, f64>) {
    metrics.remove(UNCLIPPED_METRIC);
}

/// What aggregation made of a DP round, stored with its close.
#[derive(Debug, Clone)]
pub(crate) struct Closed {
    pub unclipped_fraction: Option<f64>,
    pub next_clipping_norm: Option<f64>,
}

/// The DP half of aggregating a round: central noise on the mean of a non-secure central group,
/// and adaptive clipping's noisy count. `bits` are the updates' "was not clipped" metrics.
pub(crate) fn finish_round(
    params: &DpParams,
    round: &RoundDp,
    mean: Option<&mut MeanResult>,
    secure: bool,
    bits: &[f64],
) -> Closed {
    let mut rng = rand::rng();
    if let Some(mean) = mean
        && round.placement == DpPlacement::Central
        && !secure
        && mean.count > 0
    {
        let std = round.update_noise_multiplier * round.clipping_norm / mean.count as f64;
        mechanism::add_gaussian(&mut mean.params, std, &mut rng);
    }
    let (unclipped_fraction, next_clipping_norm) = match &params.adaptive {
        Some(a) if !bits.is_empty() => {
            let noisy = bits.iter().sum::<f64>()
                + a.clipped_count_stddev * mechanism::standard_normal(&mut rng);
            let next = dp::adaptive::next_clipping_norm(
                round.clipping_norm,
                noisy,
                bits.len(),
                a.target_clipped_quantile,
                a.clip_norm_lr,
            );
            (Some(noisy / bits.len() as f64), Some(next))
        }
        _ => (None, None),
    };
    Closed {
        unclipped_fraction,
        next_clipping_norm,
    }
}

/// Stores a closing round's epsilon (the closed rounds and this one) and adaptive clipping's
/// outcome, in the closing transaction.
pub(crate) async fn close(
    conn: &mut SqliteConnection,
    group: &GroupSettings,
    round_id: i64,
    closed: &Closed,
) -> Result<(), ApiError> {
    let Some(params) = &group.dp else {
        return Ok(());
    };
    let (mut acc, _) = closed_rounds(conn, group.id).await?;
    let this: Option<(f64, f64)> =
        sqlx::query_as("SELECT sampling_rate, noise_multiplier FROM dp_rounds WHERE round_id = $1")
            .bind(round_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((q, z)) = this else {
        return Ok(());
    };
    acc.compose(q, z, 1);
    sqlx::query(
        "UPDATE dp_rounds SET epsilon = $1, unclipped_fraction = $2, next_clipping_norm = $3
         WHERE round_id = $4",
    )
    .bind(acc.epsilon(params.delta))
    .bind(closed.unclipped_fraction)
    .bind(closed.next_clipping_norm)
    .bind(round_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A DP group's privacy for its view.
pub(crate) async fn group_view(db: &Db, group_id: i64) -> Result<Option<GroupPrivacy>, ApiError> {
    let Some(params) = load(db, group_id).await? else {
        return Ok(None);
    };
    let mut conn = db.acquire().await?;
    let (acc, counted) = closed_rounds(&mut conn, group_id).await?;
    let clipping_norm = current_clipping_norm(&mut conn, group_id, &params).await?;
    let budget_exhausted: Option<String> =
        sqlx::query_scalar("SELECT dp_exhausted FROM groups WHERE id = $1")
            .bind(group_id)
            .fetch_one(&mut *conn)
            .await?;
    Ok(Some(GroupPrivacy {
        spent_epsilon: acc.epsilon(params.delta),
        rounds_counted: counted,
        clipping_norm,
        budget_exhausted,
        params,
    }))
}

/// A round's privacy for its view.
pub(crate) async fn round_view(
    conn: &mut SqliteConnection,
    round_id: i64,
    delta: f64,
) -> Result<Option<RoundPrivacy>, ApiError> {
    type Row = (f64, f64, f64, Option<f64>, Option<f64>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT clipping_norm, noise_multiplier, sampling_rate, epsilon, unclipped_fraction
         FROM dp_rounds WHERE round_id = $1",
    )
    .bind(round_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(
        |(clipping_norm, noise_multiplier, sampling_rate, epsilon, unclipped_fraction)| {
            RoundPrivacy {
                clipping_norm,
                noise_multiplier,
                sampling_rate,
                delta,
                epsilon,
                unclipped_fraction,
            }
        },
    ))
}
