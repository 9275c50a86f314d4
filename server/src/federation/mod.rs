//! Federated groups and rounds over HTTP (`/api/groups...`): creating, listing and joining
//! groups (accounts: the creator owns the group and is its first member, see [`auth`]), the
//! statistics phase of tabular groups, the round state machine
//! (`open -> collecting -> aggregating -> closed | failed`), update uploads, the SSE event
//! stream, and the background task that enforces round deadlines and finishes aggregations
//! interrupted by a crash; and the caller's history of runs (`/api/history/runs`).
//!
//! Durability: an update's blob is written and fsynced before its row commits, and the answer
//! is sent after the commit, so an acknowledged update survives `kill -9`. A round's new global
//! model, the version row and the round's closing commit in one transaction, so a crash during
//! aggregation re-runs it at the next start without duplicating the version.
//!
//! Resources (issue #19, limits in [`crate::limits::Limits`]): model sizes, owned groups and
//! wrong join codes are bounded in [`quotas`]; update bodies stream to disk ([`spool`]) only
//! after the caller and the round are checked; update and evaluation metrics are bounded.

mod aggregation_lease;
mod buffered;
mod control;
mod encoding;
mod event_stream;
pub mod events;
mod groups;
mod history;
pub mod model;
pub mod presence;
mod privacy;
pub mod quotas;
mod rounds;
mod secagg;
mod spool;

mod updates;
mod views;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

use crate::limits::Limits;
use crate::state::AppState;
use crate::strategy::WeightedMean;

pub use events::{EventHub, GroupEvent};

/// In-memory federation state; everything here can be rebuilt from the database and blobs.
pub struct Runtime {
    pub events: EventHub,
    /// Which members' training clients are connected (issue #21).
    pub presence: presence::PresenceMap,
    pub max_update_bytes: usize,
    groups: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<GroupRuntime>>>>,
    /// Built at the first join from `--max-join-failures` (the limits live in `AppState`).
    join_limiter: OnceLock<quotas::JoinLimiter>,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new(crate::limits::DEFAULT_MAX_UPDATE_BYTES)
    }
}

impl Runtime {
    pub fn new(max_update_bytes: usize) -> Self {
        Runtime {
            events: EventHub::default(),
            presence: presence::PresenceMap::default(),
            max_update_bytes,
            groups: Mutex::default(),
            join_limiter: OnceLock::new(),
        }
    }

    /// The wrong-join-code limiter, with `limits.max_join_failures` (fixed for the process).
    fn join_limiter(&self, limits: &Limits) -> &quotas::JoinLimiter {
        self.join_limiter
            .get_or_init(|| quotas::JoinLimiter::new(limits.max_join_failures))
    }

    /// The lock serialising a group's update commits with its round transitions.
    fn group(&self, group_id: i64) -> Arc<tokio::sync::Mutex<GroupRuntime>> {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.entry(group_id).or_default().clone()
    }
}

/// The running weighted sum of a round's updates (mean-type strategies). It is a cache: after
/// a restart it starts empty and the round's close adds the missing updates from their blobs.
#[derive(Default)]
struct GroupRuntime {
    accumulator: Option<RoundAccumulator>,
}

struct RoundAccumulator {
    round_id: i64,
    mean: WeightedMean,
    included: BTreeSet<i64>,
}

/// The OpenAPI description of the routes of [`router`] (merged into `/api/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        groups::list,
        groups::create,
        groups::join,
        groups::get_group,
        groups::ready,
        groups::leave,
        groups::post_statistics,
        groups::start,
        control::pause,
        control::resume,
        control::cancel,
        control::close_round,
        control::remove_member,
        control::progress,
        event_stream::events,
        views::global_weights,
        views::list,
        views::current,
        views::get_round,
        updates::upload,
        secagg::view,
        secagg::keys,
        secagg::shares,
        secagg::unmask,
        updates::report_failure,
        updates::report_evaluation,
        history::runs,
    ),
    components(schemas(
        model::ErrorBody,
        model::ErrorDetail,
        model::CreateGroup,
        model::ModelTemplate,
        model::Hyperparameters,
        model::Optimizer,
        model::Created,
        model::Join,
        model::Joined,
        model::Ready,
        model::MemberReady,
        model::MemberLeft,
        model::StatisticsAccepted,
        model::TrainingStarted,
        model::Phase,
        model::RoundState,
        model::GroupRole,
        model::MemberRole,
        model::MemberStatus,
        model::ModelKind,
        model::GroupSummary,
        model::GroupList,
        model::GroupView,
        model::GroupMember,
        model::Presence,
        model::Progress,
        model::ProgressAccepted,
        model::TrainingControl,
        model::RoundConfig,
        model::RoundYou,
        model::ClientMetrics,
        model::RoundEvaluation,
        model::RoundView,
        model::RoundList,
        model::Accepted,
        model::Failure,
        model::FailureReported,
        model::Evaluation,
        model::EvaluationAccepted,
        model::GroupEvent,
        b3o_models::protocol::secagg::SecAggStage,
        b3o_models::protocol::secagg::SecAggView,
        b3o_models::protocol::secagg::ShareUpload,
        b3o_models::protocol::secagg::UnmaskUpload,
        b3o_models::protocol::secagg::SecAggAccepted,
        b3o_models::protocol::secagg::SecAggRoundSummary,
        b3o_models::secagg::SecAggConfig,
        b3o_models::secagg::ShareCount,
        b3o_models::secagg::EffectiveConfig,
        b3o_models::secagg::PublicKeys,
        b3o_models::secagg::NeighbourKeys,
        b3o_models::secagg::EncryptedShare,
        b3o_models::secagg::UnmaskRequest,
        b3o_models::secagg::UnmaskShare,
        b3o_models::secagg::ShareKind,
        b3o_models::dp::DpConfig,
        b3o_models::dp::DpPlacement,
        b3o_models::dp::AdaptiveClipping,
        b3o_models::dp::DpParams,
        b3o_models::dp::AdaptiveParams,
        b3o_models::dp::RoundDp,
        b3o_models::protocol::GroupPrivacy,
        b3o_models::protocol::RoundPrivacy,
        b3o_models::protocol::AsyncConfig,
        b3o_models::protocol::RoundBuffer,
        b3o_models::protocol::VersionPrivacy,
        b3o_models::stats::Summary,
        b3o_models::stats::ColumnSummary,
        b3o_models::stats::NumericSummary,
        b3o_models::stats::CategoricalSummary,
        b3o_models::tabular::Schema,
        b3o_models::tabular::FeatureColumn,
        b3o_models::tabular::TargetColumn,
        b3o_models::tabular::Excluded,
        b3o_models::tabular::ExcludeReason,
        b3o_models::tabular::ColumnKind,
        b3o_models::task::Task,
        b3o_models::weights::WeightLayout,
        b3o_models::weights::TensorSpec,
        b3o_models::protocol::history::RunList,
        b3o_models::protocol::history::Run,
        b3o_models::protocol::history::RunRound,
        b3o_models::protocol::history::RunVersion,
        b3o_models::protocol::history::Downloads,
    )),
    tags(
        (name = "groups", description = "Federated groups: create, join, get ready, column statistics, start, live events"),
        (name = "rounds", description = "Training rounds: the global model, rounds, update uploads, failures and evaluations"),
        (name = "history", description = "The caller's federated runs"),
    ),
)]
pub struct FederationApi;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/groups", get(groups::list).post(groups::create))
        .route("/api/groups/join", post(groups::join))
        .route("/api/groups/{id}", get(groups::get_group))
        .route("/api/groups/{id}/ready", post(groups::ready))
        .route("/api/groups/{id}/leave", post(groups::leave))
        .route("/api/groups/{id}/statistics", post(groups::post_statistics))
        .route("/api/groups/{id}/start", post(groups::start))
        .route("/api/groups/{id}/pause", post(control::pause))
        .route("/api/groups/{id}/resume", post(control::resume))
        .route("/api/groups/{id}/cancel", post(control::cancel))
        .route(
            "/api/groups/{id}/rounds/current/close",
            post(control::close_round),
        )
        .route(
            "/api/groups/{id}/members/{member_id}/remove",
            post(control::remove_member),
        )
        .route(
            "/api/groups/{id}/rounds/{number}/progress",
            post(control::progress),
        )
        .route("/api/groups/{id}/events", get(event_stream::events))
        .route("/api/groups/{id}/weights", get(views::global_weights))
        .route("/api/groups/{id}/rounds", get(views::list))
        .route("/api/groups/{id}/rounds/current", get(views::current))
        .route("/api/groups/{id}/rounds/{number}", get(views::get_round))
        .route(
            "/api/groups/{id}/rounds/{number}/update",
            post(updates::upload),
        )
        .route("/api/groups/{id}/rounds/{number}/secagg", get(secagg::view))
        .route(
            "/api/groups/{id}/rounds/{number}/secagg/keys",
            post(secagg::keys),
        )
        .route(
            "/api/groups/{id}/rounds/{number}/secagg/shares",
            post(secagg::shares),
        )
        .route(
            "/api/groups/{id}/rounds/{number}/secagg/unmask",
            post(secagg::unmask),
        )
        .route(
            "/api/groups/{id}/rounds/{number}/failure",
            post(updates::report_failure),
        )
        .route(
            "/api/groups/{id}/rounds/{number}/evaluation",
            post(updates::report_evaluation),
        )
        .route("/api/history/runs", get(history::runs))
}

/// Finishes aggregations a crash interrupted, then checks round deadlines twice a second (and
/// for aggregations a dead replica left, every 5 s) for as long as the server runs.
pub fn spawn_driver(state: AppState) {
    tokio::spawn(async move {
        if let Err(e) = rounds::recover(&state).await {
            tracing::error!(error = %e, "recovering interrupted rounds failed");
        }
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 1u64.. {
            tick.tick().await;
            if let Err(e) = rounds::check_deadlines(&state).await {
                tracing::error!(error = %e, "checking round deadlines failed");
            }
            // Every 5 s: aggregations another replica left when it died.
            if n % 10 == 0
                && let Err(e) = rounds::resume_stale(&state, false).await
            {
                tracing::error!(error = %e, "resuming stale aggregations failed");
            }
        }
    });
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
