//! Which replica aggregates a round (issue #15). The replica that moves a round to
//! `aggregating` ([`super::rounds::begin_aggregation`]) holds it for [`LEASE`], renewed while
//! it aggregates ([`holding`]); when a replica dies mid-aggregation, another claims the round
//! once the lease ran out ([`claim`], from [`super::rounds::resume_stale`]) and aggregates it
//! from the store. Only one commit closes a round (its closing transaction re-checks the
//! state), so a replica that lost its lease wastes work but writes nothing that counts.

use std::future::Future;
use std::time::Duration;

use super::now;
use crate::cluster::replica_tag;
use crate::error::ApiError;
use crate::state::AppState;

/// How long a claim on an aggregation lasts without renewal; renewed every third of it.
pub const LEASE: Duration = Duration::from_secs(15);

/// When a claim made or renewed now ends (Unix seconds).
pub(super) fn lease_end() -> i64 {
    now() + LEASE.as_secs() as i64
}

/// Aggregating rounds this replica may take: the lease ran out, or there is none (rows from
/// before leases, a transition made by hand), or every one with `$1` (start-up on SQLite,
/// one process per database). Binds `$1` (take over) and `$2` (now).
pub(super) const CLAIMABLE: &str = "state = 'aggregating' AND ($1 OR aggregation_lease_until IS NULL OR aggregation_lease_until < $2)";

/// Claims aggregating round `round_id` for this replica; false if another holds it (or it is
/// not aggregating any more).
pub(super) async fn claim(
    state: &AppState,
    round_id: i64,
    take_over: bool,
) -> Result<bool, ApiError> {
    let claimed = sqlx::query(&format!(
        "UPDATE rounds SET aggregated_by = $3, aggregation_lease_until = $4
         WHERE id = $5 AND {CLAIMABLE}"
    ))
    .bind(take_over)
    .bind(now())
    .bind(replica_tag())
    .bind(lease_end())
    .bind(round_id)
    .execute(&state.db)
    .await?
    .rows_affected();
    Ok(claimed == 1)
}

/// Runs `work` (the aggregation of `round_id`, which this replica claimed) while renewing
/// the claim.
pub(super) async fn holding<T>(
    state: &AppState,
    round_id: i64,
    work: impl Future<Output = T>,
) -> T {
    let renewal = tokio::spawn(renew(state.clone(), round_id));
    let out = work.await;
    renewal.abort();
    out
}

async fn renew(state: AppState, round_id: i64) {
    loop {
        tokio::time::sleep(LEASE / 3).await;
        let renewed = sqlx::query(
            "UPDATE rounds SET aggregation_lease_until = $1
             WHERE id = $2 AND aggregated_by = $3 AND state = 'aggregating'",
        )
        .bind(lease_end())
        .bind(round_id)
        .bind(replica_tag())
        .execute(&state.db)
        .await;
        match renewed {
            // Closed, failed, or taken over: nothing more to renew.
            Ok(r) if r.rows_affected() == 0 => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(round_id, error = %e, "renewing an aggregation's lease failed")
            }
        }
    }
}

/// Whether this replica still holds the aggregation of `round_id` (a failed aggregation
/// fails the round only then: another replica may be finishing it).
pub(super) async fn still_held(state: &AppState, round_id: i64) -> Result<bool, ApiError> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM rounds WHERE id = $1 AND state = 'aggregating' AND aggregated_by = $2",
    )
    .bind(round_id)
    .bind(replica_tag())
    .fetch_optional(&state.db)
    .await?;
    Ok(held.is_some())
}
