//! Asynchronous buffered rounds (FedBuff, Nguyen et al. 2022; issue #17).
//!
//! An asynchronous group keeps the round machinery of [`super::rounds`]: each round is one
//! *buffer* whose base model is the newest version, every ready member is selected, and the
//! round publishes a version once `async.buffer_size` updates are in (or at its deadline with
//! at least one; [`close_due`]). What differs is who may upload where: a member uploads to the
//! round it started training in, and when versions were published meanwhile the update is
//! folded into the *live* round's buffer instead, as long as it is at most
//! `async.max_staleness` versions behind ([`admit_stale`]; 409 beyond).
//!
//! A stale update was trained from an older model, so it is moved onto the buffer's base
//! before it is averaged: `base_now + (update - base_then)` ([`rebase`]), the FedBuff step on
//! the update's change; and it weighs `num_samples * (1 + staleness)^-exponent`. The server
//! optimisers (FedAvgM, FedAdam, ...) then take the buffer's mean as they take a round's.
//! Memory stays one running mean per group (plus the two base models an upload is checked
//! against); the rows (`updates.trained_from`, `updates.staleness`) say how every stored
//! update is read again after a restart.

use b3o_models::protocol::AsyncConfig;

use super::model::{MemberStatus, RoundState};
use crate::db::{Conn, Db};
use crate::error::ApiError;

/// The group's asynchronous settings (`groups.async_json`), `None` for a synchronous group.
pub(crate) async fn load(db: &Db, group_id: i64) -> Result<Option<AsyncConfig>, ApiError> {
    let raw: Option<Option<String>> =
        sqlx::query_scalar("SELECT async_json FROM groups WHERE id = $1")
            .bind(group_id)
            .fetch_optional(db)
            .await?;
    raw.flatten()
        .map(|raw| {
            serde_json::from_str(&raw).map_err(|e| {
                ApiError::Internal(format!(
                    "group {group_id}: stored async settings unreadable: {e}"
                ))
            })
        })
        .transpose()
}

/// Stores a new group's asynchronous settings (in its creating transaction).
pub(crate) async fn store(
    conn: &mut Conn,
    group_id: i64,
    config: &AsyncConfig,
) -> Result<(), ApiError> {
    let json =
        serde_json::to_string(config).map_err(|e| ApiError::Internal(format!("async: {e}")))?;
    sqlx::query("UPDATE groups SET async_json = $1 WHERE id = $2")
        .bind(json)
        .bind(group_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Versions published from round `from` (included) up to round `to` (excluded): how far the
/// model of round `to` is ahead of the model round `from` trained from. Failed rounds publish
/// nothing and do not count.
pub(crate) async fn staleness(
    conn: &mut Conn,
    group_id: i64,
    from: i64,
    to: i64,
) -> Result<i64, ApiError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM rounds
         WHERE group_id = $1 AND number >= $2 AND number < $3 AND state = 'closed'",
    )
    .bind(group_id)
    .bind(from)
    .bind(to)
    .fetch_one(&mut *conn)
    .await?)
}

/// Where an update trained in a round that takes no more updates goes instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Restaged {
    /// The live round whose buffer takes it.
    pub round_id: i64,
    pub number: i64,
    /// That round's base model.
    pub base_version_id: i64,
    /// Versions published since the update's base model.
    pub staleness: i64,
}

/// An update trained in round `from` (of state `from_state`), which no longer takes updates,
/// of a member of an asynchronous group: the live round's buffer if the update is at most
/// `max_staleness` versions behind and the member has not contributed to that buffer yet;
/// otherwise the refusal, in words. A round being aggregated right now answers 503 (its
/// version and the next buffer are a moment away).
pub(crate) async fn admit_stale(
    db: &Db,
    config: &AsyncConfig,
    group_id: i64,
    from: i64,
    from_state: RoundState,
    member_id: i64,
) -> Result<Restaged, ApiError> {
    if from_state == RoundState::Aggregating {
        return Err(publishing(from));
    }
    let live: Option<(i64, i64, String, i64)> = sqlx::query_as(
        "SELECT id, number, state, base_version_id FROM rounds
         WHERE group_id = $1 ORDER BY number DESC LIMIT 1",
    )
    .bind(group_id)
    .fetch_optional(db)
    .await?;
    let Some((round_id, number, state, base_version_id)) = live else {
        return Err(ApiError::Conflict("training has not begun".into()));
    };
    match RoundState::parse(&state) {
        s if s.is_live() => {}
        RoundState::Aggregating => return Err(publishing(number)),
        _ => {
            return Err(ApiError::Conflict(format!(
                "round {from} takes no more updates and no buffer is open (training is over or \
                 paused; the newest round is {number})"
            )));
        }
    }
    let mut conn = db.acquire().await?;
    let staleness = staleness(&mut conn, group_id, from, number).await?;
    if staleness > i64::from(config.max_staleness) {
        return Err(ApiError::Conflict(format!(
            "this update was trained from the model of round {from}, {staleness} versions \
             behind the current one (round {number}); this group takes updates at most \
             {} versions behind (async.max_staleness): train again from the current model",
            config.max_staleness
        )));
    }
    let status: Option<String> = sqlx::query_scalar(
        "SELECT status FROM round_members WHERE round_id = $1 AND member_id = $2",
    )
    .bind(round_id)
    .bind(member_id)
    .fetch_optional(&mut *conn)
    .await?;
    match status.as_deref().map(MemberStatus::parse) {
        Some(MemberStatus::Selected) => Ok(Restaged {
            round_id,
            number,
            base_version_id,
            staleness,
        }),
        None => Err(ApiError::Conflict(format!(
            "round {from} takes no more updates, and you are not a member of round {number}'s \
             buffer (mark yourself ready first)"
        ))),
        Some(other) => Err(ApiError::Conflict(format!(
            "round {from} takes no more updates, and your place in round {number}'s buffer is \
             already {}: wait for the next version",
            other.as_str()
        ))),
    }
}

/// 503: a version is being published; the next buffer opens with it.
fn publishing(number: i64) -> ApiError {
    ApiError::Unavailable {
        message: format!(
            "round {number}'s version is being published; send the update again in a moment"
        ),
        retry_after_secs: 1,
    }
}

/// Moves `params`, trained from `from`, onto `to`: `to + (params - from)`, in place.
pub(crate) fn rebase(params: &mut [f32], from: &[f32], to: &[f32]) {
    for ((p, f), t) in params.iter_mut().zip(from).zip(to) {
        *p = *t + (*p - *f);
    }
}

/// Whether round `reported` updates into its buffer (of `pending` members still training,
/// deadline `expired` or not) should publish now: a full buffer, or at least one update when
/// nobody else can come or the deadline passed.
pub(crate) fn close_due(
    config: &AsyncConfig,
    reported: i64,
    pending: usize,
    expired: bool,
) -> bool {
    reported >= i64::from(config.buffer_size) || (reported >= 1 && (expired || pending == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(k: u32) -> AsyncConfig {
        AsyncConfig {
            buffer_size: k,
            max_staleness: 3,
            staleness_exponent: 0.5,
        }
    }

    #[test]
    fn a_stale_update_keeps_its_change_on_the_new_base() {
        let mut p = vec![1.5, -2.0];
        rebase(&mut p, &[1.0, -1.0], &[10.0, 20.0]);
        assert_eq!(p, vec![10.5, 19.0]);
    }

    #[test]
    fn the_buffer_publishes_when_full_or_when_nothing_more_can_come() {
        let c = config(3);
        assert!(!close_due(&c, 2, 5, false));
        assert!(close_due(&c, 3, 5, false));
        assert!(close_due(&c, 2, 0, false));
        assert!(close_due(&c, 1, 4, true));
        assert!(!close_due(&c, 0, 0, true));
    }

    #[test]
    fn staleness_discounts_as_fedbuff_does() {
        let c = config(3);
        assert_eq!(c.staleness_weight(0), 1.0);
        assert!((c.staleness_weight(3) - 0.5).abs() < 1e-12);
        let flat = AsyncConfig {
            staleness_exponent: 0.0,
            ..c
        };
        assert_eq!(flat.staleness_weight(7), 1.0);
    }
}
