//! A group member's state machine, the same in the browser, in `b3o client` and in
//! `b3o simulate`:
//!
//! 1. **join** by code (idempotent: joining again returns the same membership), or **attach**
//!    to a group already joined (a page reload);
//! 2. **prepare**: read the group, check the local data against its model, send the column
//!    summaries (tabular groups, before training starts), mark ready with the number of
//!    training rows;
//! 3. **rounds**: read the current round; when selected, download the round's base model,
//!    train locally, upload the update (the same bytes on every retry, so a lost answer costs
//!    nothing); evaluate the previous round's model on the held-out rows and report it; then
//!    wait for the group's events (or poll) and read the round again. The server's state is
//!    the truth: after a lost connection or a restart the client reads the current round and
//!    carries on from there.
//! 4. **finish** when the group's last round is over, with the final model's metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use b3o_models::Dataset;
use b3o_models::compress::{self, ErrorFeedback, Rounding};
use b3o_models::dp::ledger::{GroupLedger, Refusal};
use b3o_models::dp::{DpParams, RoundDp, UNCLIPPED_METRIC};
use b3o_models::metrics::Metrics;
use b3o_models::model::ModelSpec;
use b3o_models::protocol::secagg::{SecAggStage, ShareUpload, UnmaskUpload};
use b3o_models::protocol::{
    Evaluation, GroupView, Joined, Optimizer, Phase, RoundState, RoundView,
};
use b3o_models::secagg::keys::Context;
use b3o_models::secagg::wire::{MaskedMeta, encode_masked};
use b3o_models::secagg::{ClientRound, EffectiveConfig};
use b3o_models::train::{Optimizer as LocalOptimizer, TrainConfig, TrainError};
use b3o_models::weights::{self, UpdateMeta, WeightSet};
use futures_util::FutureExt;
use futures_util::future::{Either, select};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use super::api::{Api, FlError, RetryNotice};
use super::data::LocalData;
use super::kept::{KeptOutcome, KeptStore, MemoryKept, kept_key, upload_kept};
use super::privacy::{LedgerStore, MemoryLedger, ledger_key, privatize};
use super::trainer::{EpochFn, ProgressFn, TrainJob, Trainer};
use super::transport::{EventStream, Transport};
use super::{MaybeSend, MaybeSync};

/// Settings of a participant.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantOptions {
    /// How the other members see this one; the server defaults it from the account.
    pub name: Option<String>,
    /// Share of the local rows held out to evaluate each round's model (0 disables
    /// evaluation reports).
    pub test_fraction: f64,
    /// Seeds the held-out split and local training.
    pub seed: u64,
    /// Read the round again at least this often, events or not.
    pub poll_interval: Duration,
    /// Evaluate the global models on the held-out rows and report the metrics.
    pub evaluate: bool,
    /// A privacy budget of this member's own, stricter than the groups' targets: in a group
    /// with differential privacy it stops before spending more epsilon than this. Given, it
    /// replaces the limit its ledger kept from an earlier session; never above the target the
    /// member accepted.
    pub max_epsilon: Option<f64>,
}

impl Default for ParticipantOptions {
    fn default() -> Self {
        ParticipantOptions {
            name: None,
            test_fraction: 0.2,
            seed: 0,
            poll_interval: Duration::from_secs(10),
            evaluate: true,
            max_epsilon: None,
        }
    }
}

/// Stops a participant: between requests, and between training batches.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a participant is doing, for progress displays (the browser worker posts these as
/// JSON messages).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    Joined {
        group_id: i64,
        member_id: i64,
    },
    /// The column summaries were accepted (tabular groups).
    StatisticsSent {
        group_id: i64,
    },
    Ready {
        group_id: i64,
        train_samples: u64,
        test_samples: u64,
    },
    /// Waiting for a round to open (`round`: the newest one, if any).
    Waiting {
        round: Option<i64>,
    },
    RoundStarted {
        round: i64,
        epochs: u32,
        samples: u64,
    },
    /// After every training batch.
    Training {
        round: i64,
        epoch: usize,
        epochs: usize,
        batch: usize,
        batches_per_epoch: usize,
        loss: f64,
    },
    Uploaded {
        round: i64,
        update_id: i64,
        num_samples: i64,
        metrics: BTreeMap<String, f64>,
        /// Size of the update on the wire, in the group's encoding.
        bytes: u64,
    },
    /// The round moved on before the update arrived.
    Skipped {
        round: i64,
        reason: String,
    },
    /// The finished update is kept (`kept`) until the server answers for it: a closed tab
    /// sends it at the next visit.
    Kept {
        round: i64,
    },
    /// An update kept from an earlier session was sent (`buffered_in`: the asynchronous
    /// buffer that took it).
    KeptUploaded {
        round: i64,
        update_id: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        buffered_in: Option<i64>,
    },
    /// An update kept from an earlier session was refused for good and dropped.
    KeptDiscarded {
        round: i64,
        reason: String,
    },
    /// Training picks up where an earlier session of this round stopped (a reload).
    Resumed {
        round: i64,
        epochs_done: usize,
    },
    /// Local training failed; the server was told.
    Failed {
        round: i64,
        reason: String,
    },
    /// A global model's metrics on the held-out rows.
    Evaluated {
        round: i64,
        version_id: i64,
        metrics: BTreeMap<String, f64>,
    },
    Retrying {
        what: String,
        attempt: u32,
        delay_ms: u64,
        error: String,
    },
    Finished {
        rounds_trained: usize,
        version_id: Option<i64>,
    },
    /// This member's privacy ledger in a DP group: when it is opened (`round` none) and after
    /// each round it counts. `epsilon` is what it spent, at `delta`, of `budget`.
    Privacy {
        round: Option<i64>,
        epsilon: f64,
        budget: f64,
        delta: f64,
        /// The rounds counted so far, with the epsilon after each.
        history: Vec<(i64, f64)>,
    },
    /// The ledger refused a round: this member stops training in the group. For lack of
    /// budget, the numbers: epsilon spent, what the round would bring it to, and the budget.
    PrivacyRefused {
        round: i64,
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        spent: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        budget: Option<f64>,
    },
}

/// Receives [`ClientEvent`]s.
pub trait Observer: MaybeSend + MaybeSync + 'static {
    fn event(&self, event: &ClientEvent);
}

impl<F: Fn(&ClientEvent) + MaybeSend + MaybeSync + 'static> Observer for F {
    fn event(&self, event: &ClientEvent) {
        self(event)
    }
}

impl<O: Observer + ?Sized> Observer for Arc<O> {
    fn event(&self, event: &ClientEvent) {
        (**self).event(event)
    }
}

/// How a participant's work ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub group_id: i64,
    pub member_id: Option<i64>,
    /// Rounds whose update the server accepted from this member.
    pub rounds_trained: Vec<i64>,
    /// The group's last round.
    pub last_round: i64,
    /// The final global model.
    pub version_id: Option<i64>,
    /// The final model on the held-out rows (on the training rows when none are held out).
    pub metrics: Option<Metrics>,
    /// `"test"` or `"train"`: which rows [`Report::metrics`] are from.
    pub metrics_on: Option<String>,
}

/// A group member: local data, a trainer and a connection to the server.
pub struct Participant<T: Transport, R, O> {
    api: Api<T>,
    trainer: R,
    observer: Arc<O>,
    data: LocalData,
    options: ParticipantOptions,
    cancel: CancelToken,
    group_id: Option<i64>,
    member_id: Option<i64>,
    group: Option<GroupView>,
    spec: Option<Arc<ModelSpec>>,
    split: Option<(Arc<Dataset>, Arc<Dataset>)>,
    weights: Option<(i64, WeightSet)>,
    trained: BTreeSet<i64>,
    evaluated: BTreeSet<i64>,
    events: Option<T::Events>,
    /// What compressed updates have not sent yet (error feedback), added to the next delta.
    feedback: ErrorFeedback,
    /// Where this member keeps its privacy ledgers.
    ledger_store: Arc<dyn LedgerStore>,
    /// The ledger of this group (a DP group), with its key.
    ledger: Option<(String, GroupLedger)>,
    /// Where this member keeps a finished update until the server has it.
    kept: Arc<dyn KeptStore>,
}

impl<T: Transport, R: Trainer, O: Observer> Participant<T, R, O> {
    /// `observer` gets every [`ClientEvent`] (a closure `|event: &ClientEvent| ...` will do).
    pub fn new(
        mut api: Api<T>,
        trainer: R,
        observer: O,
        data: LocalData,
        options: ParticipantOptions,
    ) -> Self {
        let observer = Arc::new(observer);
        let forward = observer.clone();
        api = api.on_retry(Arc::new(move |n: &RetryNotice| {
            forward.event(&ClientEvent::Retrying {
                what: n.what.clone(),
                attempt: n.attempt,
                delay_ms: n.delay.as_millis() as u64,
                error: n.error.clone(),
            })
        }));
        Participant {
            api,
            trainer,
            observer,
            data,
            options,
            cancel: CancelToken::default(),
            group_id: None,
            member_id: None,
            group: None,
            spec: None,
            split: None,
            weights: None,
            trained: BTreeSet::new(),
            evaluated: BTreeSet::new(),
            events: None,
            feedback: ErrorFeedback::default(),
            ledger_store: Arc::new(MemoryLedger::default()),
            ledger: None,
            kept: Arc::new(MemoryKept::default()),
        }
    }

    /// Keeps finished updates in `store` until the server has them (by default in memory).
    pub fn with_kept(mut self, store: Arc<dyn KeptStore>) -> Self {
        self.kept = store;
        self
    }

    /// Keeps the privacy ledgers in `store` (by default in memory, for this process only).
    pub fn with_ledger(mut self, store: Arc<dyn LedgerStore>) -> Self {
        self.ledger_store = store;
        self
    }

    /// Stops [`Participant::run`] from another task (or the browser's cancel message).
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    pub fn api(&self) -> &Api<T> {
        &self.api
    }

    pub fn group_id(&self) -> Option<i64> {
        self.group_id
    }

    /// Joins the group with `code`; joining a group this account is already in resumes it.
    pub async fn join(&mut self, code: &str) -> Result<Joined, FlError> {
        let joined = self.api.join(code, self.options.name.as_deref()).await?;
        self.group_id = Some(joined.group_id);
        self.member_id = Some(joined.member_id);
        self.observer.event(&ClientEvent::Joined {
            group_id: joined.group_id,
            member_id: joined.member_id,
        });
        Ok(joined)
    }

    /// Works in a group this account already belongs to (after a page reload).
    pub fn attach(&mut self, group_id: i64) {
        self.group_id = Some(group_id);
    }

    fn check_cancel(&self) -> Result<(), FlError> {
        if self.cancel.is_cancelled() {
            Err(FlError::Cancelled)
        } else {
            Ok(())
        }
    }

    fn gid(&self) -> Result<i64, FlError> {
        self.group_id
            .ok_or_else(|| FlError::Protocol("join a group (or attach to one) first".into()))
    }

    /// Reads the group, checks the data against its model, sends the column summaries
    /// (tabular groups that have not started), marks ready. Safe to repeat.
    pub async fn prepare(&mut self) -> Result<GroupView, FlError> {
        let gid = self.gid()?;
        let group = self.api.group(gid).await?;
        if let Some(m) = group.member_id {
            self.member_id = Some(m);
        }
        self.data.check(&group.model)?;
        if matches!(group.phase, Phase::Enrolling | Phase::Statistics)
            && let Some(summary) = self.data.summary(&group.model)?
        {
            match self.api.statistics(gid, &summary).await {
                Ok(()) => self
                    .observer
                    .event(&ClientEvent::StatisticsSent { group_id: gid }),
                // Training started meanwhile: the preprocessing is fixed without us.
                Err(FlError::Api { status: 409, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let n = self.data.len() as u64;
        let test = held_out(n, self.test_fraction());
        if n == test || n == 0 {
            return Err(FlError::Protocol(
                "no rows left to train on after holding some out".into(),
            ));
        }
        if let Some(dp) = &group.dp {
            let member = self.member_id.ok_or_else(|| {
                FlError::Protocol("this account is not a member of the group".into())
            })?;
            self.open_ledger(gid, member, &dp.params).await?;
        }
        if group.phase != Phase::Finished {
            self.api.ready(gid, n - test).await?;
        }
        self.observer.event(&ClientEvent::Ready {
            group_id: gid,
            train_samples: n - test,
            test_samples: test,
        });
        self.group = Some(group.clone());
        Ok(group)
    }

    fn test_fraction(&self) -> f64 {
        if self.options.evaluate {
            self.options.test_fraction.clamp(0.0, 0.9)
        } else {
            0.0
        }
    }

    /// Takes part in rounds until the group's last one is over.
    pub async fn run(&mut self) -> Result<Report, FlError> {
        if self.group.is_none() {
            self.prepare().await?;
        }
        let gid = self.gid()?;
        self.resume_kept().await?;
        let mut announced_wait = None;
        loop {
            self.check_cancel()?;
            // Subscribe before reading, so that no change falls between the two.
            self.open_events().await;
            let current = self.api.current_round(gid).await?;
            let mut acted = false;
            if let Some(round) = &current {
                if let Some(report) = self.finished(round).await? {
                    return Ok(report);
                }
                acted = self.act(round).await?;
            }
            // Without an event stream, look again right after working; with one, the
            // events say when the round changes (one read per round keeps a thousand
            // simulated clients cheap for the server).
            if acted && self.events.is_none() {
                announced_wait = None;
                continue;
            }
            let newest = current.as_ref().map(|r| r.round);
            if acted || announced_wait != Some(newest) {
                self.observer.event(&ClientEvent::Waiting { round: newest });
                announced_wait = Some(newest);
            }
            self.wait_for_change().await?;
        }
    }

    fn total_rounds(&self) -> i64 {
        self.group
            .as_ref()
            .map_or(i64::MAX, |g| g.hyperparameters.rounds as i64)
    }

    /// The last round is over: evaluate and report the final model.
    async fn finished(&mut self, round: &RoundView) -> Result<Option<Report>, FlError> {
        // The group's last round, or the last one before the owner cancelled training.
        if (round.round < self.total_rounds() && !round.final_round)
            || !matches!(round.state, RoundState::Closed | RoundState::Failed)
        {
            return Ok(None);
        }
        let version_id = round.result_version_id.unwrap_or(round.base_version_id);
        let mut report = Report {
            group_id: self.gid()?,
            member_id: self.member_id,
            rounds_trained: self.trained.iter().copied().collect(),
            last_round: round.round,
            version_id: Some(version_id),
            metrics: None,
            metrics_on: None,
        };
        if self.options.evaluate {
            let closed = (round.state == RoundState::Closed).then_some(round.round);
            let (metrics, on) = self.evaluate_version(version_id, closed, true).await?;
            report.metrics = Some(metrics);
            report.metrics_on = Some(on.into());
        }
        self.observer.event(&ClientEvent::Finished {
            rounds_trained: report.rounds_trained.len(),
            version_id: report.version_id,
        });
        Ok(Some(report))
    }

    /// Trains when selected; evaluates the previous round's model. True when it did work.
    async fn act(&mut self, round: &RoundView) -> Result<bool, FlError> {
        if !round.state.is_live() {
            return Ok(false);
        }
        let mut acted = false;
        if round.you.as_ref().is_some_and(|y| y.must_train())
            && !self.trained.contains(&round.round)
        {
            self.train_round(round).await?;
            acted = true;
        }
        // Round n's base model is round n-1's result.
        let previous = round.round - 1;
        if self.options.evaluate && previous >= 1 && !self.evaluated.contains(&previous) {
            self.evaluate_version(round.base_version_id, Some(previous), false)
                .await?;
            acted = true;
        }
        Ok(acted)
    }

    async fn spec(&mut self, version_id: i64) -> Result<Arc<ModelSpec>, FlError> {
        if let Some(spec) = &self.spec {
            return Ok(spec.clone());
        }
        let version = self.api.version(version_id).await?;
        let spec: ModelSpec = serde_json::from_value(version.spec).map_err(|_| {
            FlError::Protocol(
                "this group trains a custom model, which this client cannot train".into(),
            )
        })?;
        let spec = Arc::new(spec);
        self.spec = Some(spec.clone());
        Ok(spec)
    }

    /// The local rows as model inputs, split into training and held-out rows (once).
    fn split(&mut self, spec: &ModelSpec) -> Result<(Arc<Dataset>, Arc<Dataset>), FlError> {
        if let Some(split) = &self.split {
            return Ok(split.clone());
        }
        let all = self.data.dataset(spec)?;
        let (train, test) = all.split(self.test_fraction(), self.options.seed);
        let split = (Arc::new(train), Arc::new(test));
        self.split = Some(split.clone());
        Ok(split)
    }

    async fn weights(&mut self, version_id: i64, spec: &ModelSpec) -> Result<WeightSet, FlError> {
        if let Some((v, w)) = &self.weights
            && *v == version_id
        {
            return Ok(w.clone());
        }
        let bytes = self.api.version_weights(version_id).await?;
        let (set, _) = weights::decode(&bytes, &spec.layout(), usize::MAX)?;
        self.weights = Some((version_id, set.clone()));
        Ok(set)
    }

    async fn train_round(&mut self, round: &RoundView) -> Result<(), FlError> {
        if let Some(cfg) = round.config.secagg() {
            return self.secure_round(round, cfg).await;
        }
        let gid = self.gid()?;
        let number = round.round;
        let dp = self.privacy_check(round).await?;
        let Some((mut outcome, base)) = self.train_only(round).await? else {
            return Ok(());
        };
        let c = &round.config;
        let mut metrics = outcome.metrics.to_map();
        if let Some(dp) = &dp {
            // Clip (and, with local noise, noise) the change from the base model, count the
            // round in the ledger, and only then let the update leave.
            let mut delta = change(&outcome.weights, &base);
            let done = privatize(&mut delta, dp, None, &mut StdRng::from_os_rng());
            let sum: Vec<f32> = base
                .flatten()
                .iter()
                .zip(&delta)
                .map(|(b, d)| b + d)
                .collect();
            outcome.weights = WeightSet::from_flat(&base.layout(), sum)?;
            if dp.adaptive {
                metrics.insert(UNCLIPPED_METRIC.into(), f64::from(u8::from(done.unclipped)));
            }
            self.privacy_record(gid, number, dp).await?;
        }
        let meta = UpdateMeta {
            model_id: c.model_id.clone(),
            round: number as u64,
            num_samples: outcome.num_samples,
            metrics,
        };
        // In the group's encoding: compressed ones send the change from the base model, and
        // keep what they leave out for the next round (kept only once the server took it).
        let mut feedback = self.feedback.clone();
        let update = compress::encode_update(
            c.update_encoding,
            &base,
            &outcome.weights,
            &meta,
            &mut feedback,
            Rounding::Nearest,
        )?;
        let bytes = update.len() as u64;
        // Kept until the server answers: a closed tab sends it at the next visit. A store
        // that fails (private browsing) only loses that safety net.
        let key = self.member_id.map(|m| kept_key(gid, m));
        if let Some(key) = &key
            && self.kept.save(key, number, &update).await.is_ok()
        {
            self.observer.event(&ClientEvent::Kept { round: number });
        }
        let sent = self.api.upload_update(gid, number, update).await;
        if let Some(key) = &key
            && matches!(&sent, Ok(_) | Err(FlError::Api { .. }))
        {
            let _ = self.kept.remove(key).await;
        }
        match sent {
            Ok(accepted) => {
                self.feedback = feedback;
                self.observer.event(&ClientEvent::Uploaded {
                    round: number,
                    update_id: accepted.update_id,
                    num_samples: accepted.num_samples,
                    metrics: meta.metrics,
                    bytes,
                })
            }
            // The round closed (deadline) or this member was dropped meanwhile.
            Err(FlError::Api {
                status: 409,
                message,
                ..
            }) => self.observer.event(&ClientEvent::Skipped {
                round: number,
                reason: message,
            }),
            Err(e) => return Err(e),
        }
        self.trained.insert(number);
        Ok(())
    }

    /// Sends an update kept from an earlier session (a tab closed before its upload), or
    /// drops it with the server's reason; either way the member does not train that round
    /// again.
    async fn resume_kept(&mut self) -> Result<(), FlError> {
        let (gid, Some(member)) = (self.gid()?, self.member_id) else {
            return Ok(());
        };
        match upload_kept(&self.api, self.kept.as_ref(), gid, member).await? {
            KeptOutcome::Nothing => {}
            KeptOutcome::Uploaded {
                round,
                update_id,
                buffered_in,
            } => {
                self.trained.insert(round);
                self.observer.event(&ClientEvent::KeptUploaded {
                    round,
                    update_id,
                    buffered_in,
                });
            }
            KeptOutcome::Discarded { round, reason } => {
                self.observer
                    .event(&ClientEvent::KeptDiscarded { round, reason });
            }
        }
        Ok(())
    }

    /// A secure round (SecAgg+, [`b3o_models::secagg`]): advertise keys, send each neighbour
    /// its encrypted shares, train and upload the masked update, then hand back the shares that
    /// remove the masks. The secrets live in memory only: a client that loses them (a closed
    /// tab) is a dropout, which the other members' shares recover from.
    async fn secure_round(
        &mut self,
        round: &RoundView,
        cfg: EffectiveConfig,
    ) -> Result<(), FlError> {
        let gid = self.gid()?;
        let number = round.round;
        let me = self
            .member_id
            .or_else(|| round.you.as_ref().map(|y| y.member_id))
            .ok_or_else(|| FlError::Protocol("this member's id is unknown".into()))?;
        let mut rng = StdRng::from_os_rng();
        let ctx = Context {
            group_id: gid,
            round: number,
        };
        let modulus = cfg.modulus_range;
        let dp = self.privacy_check(round).await?;
        // Central noise in a secure group is shared out: each member adds its part of the
        // variance for the least number of members a round can close with.
        let min_survivors = self
            .group
            .as_ref()
            .map_or(0, |g| g.min_clients.max(0) as usize)
            .max(cfg.reconstruction_threshold as usize);
        // In a DP group every member weighs the same (a weight factor of 1).
        let dp_weight = cfg.max_weight.ceil().max(1.0) as u64;
        let mut client = ClientRound::new(ctx, me, cfg, &mut rng);
        let mut sent = SecureStep::Nothing;
        loop {
            self.check_cancel()?;
            let view = match self.api.secagg_view(gid, number).await {
                Ok(view) => view,
                Err(FlError::Api {
                    status: 404 | 409,
                    message,
                    ..
                }) => {
                    self.skipped(number, message);
                    break;
                }
                Err(e) => return Err(e),
            };
            let refused = match (view.stage, sent) {
                (SecAggStage::Advertise, SecureStep::Nothing) => {
                    let keys = client.public_keys();
                    let answer = self.api.secagg_keys(gid, number, &keys).await;
                    sent = SecureStep::Keys;
                    answer.err()
                }
                (SecAggStage::Share, SecureStep::Keys) => {
                    let shares = match client.share_keys(&view.ring, &view.keys, &mut rng) {
                        Ok(shares) => shares,
                        Err(e) => {
                            self.secure_failure(gid, number, &e.to_string()).await?;
                            break;
                        }
                    };
                    let answer = self
                        .api
                        .secagg_shares(gid, number, &ShareUpload { shares })
                        .await;
                    sent = SecureStep::Shares;
                    answer.err()
                }
                (SecAggStage::Masked, SecureStep::Shares) => {
                    if let Err(e) = client.receive_shares(&view.shares) {
                        self.secure_failure(gid, number, &e.to_string()).await?;
                        break;
                    }
                    let Some((outcome, base)) = self.train_only(round).await? else {
                        break;
                    };
                    let mut delta = change(&outcome.weights, &base);
                    let mut weight = outcome.num_samples;
                    if let Some(dp) = &dp {
                        privatize(&mut delta, dp, Some(min_survivors), &mut rng);
                        self.privacy_record(gid, number, dp).await?;
                        weight = dp_weight;
                    }
                    let masked = client.mask(&delta, weight, &mut rng)?;
                    let meta = MaskedMeta {
                        model_id: round.config.model_id.clone(),
                        round: number as u64,
                        metrics: outcome.metrics.to_map(),
                    };
                    let body = encode_masked(&masked, modulus, &meta);
                    let bytes = body.len() as u64;
                    let answer = self.api.upload_update(gid, number, body).await;
                    sent = SecureStep::Masked;
                    match answer {
                        Ok(accepted) => {
                            self.observer.event(&ClientEvent::Uploaded {
                                round: number,
                                update_id: accepted.update_id,
                                num_samples: outcome.num_samples as i64,
                                metrics: meta.metrics,
                                bytes,
                            });
                            None
                        }
                        Err(e) => Some(e),
                    }
                }
                (SecAggStage::Unmask, SecureStep::Masked) => {
                    if let Some(request) = &view.unmask {
                        let shares = client.unmask_shares(request)?;
                        if let Err(e) = self
                            .api
                            .secagg_unmask(gid, number, &UnmaskUpload { shares })
                            .await
                        {
                            Some(e)
                        } else {
                            break;
                        }
                    } else {
                        break;
                    }
                }
                (SecAggStage::Done | SecAggStage::Failed, _) => break,
                (stage, step) if stage.order() > step.next_stage().order() => {
                    self.skipped(
                        number,
                        format!(
                            "the secure round moved to its {} stage before this member took part",
                            stage.as_str()
                        ),
                    );
                    break;
                }
                _ => None,
            };
            match refused {
                None => {}
                // The stage closed meanwhile, or this member's place is settled.
                Some(FlError::Api {
                    status: 409,
                    message,
                    ..
                }) => {
                    self.skipped(number, message);
                    break;
                }
                Some(e) => return Err(e),
            }
            self.wait_for_change().await?;
        }
        self.trained.insert(number);
        Ok(())
    }

    /// Opens this member's ledger of a DP group: the one it keeps from an earlier session, or
    /// a new one accepting the group's parameters now.
    async fn open_ledger(
        &mut self,
        gid: i64,
        member: i64,
        params: &DpParams,
    ) -> Result<(), FlError> {
        let key = ledger_key(gid, member);
        let stored = self
            .ledger_store
            .load(&key)
            .await
            .map_err(|e| FlError::Privacy(format!("cannot read the privacy ledger: {e}")))?;
        // A stored ledger keeps what was accepted then, whatever the group says now.
        let mut ledger = stored.unwrap_or_else(|| GroupLedger::accept(params, None));
        // The user's own limit, when given, replaces an earlier one; it only counts below the
        // accepted target (`set_user_epsilon`), which nothing raises.
        if let Some(limit) = self.options.max_epsilon {
            ledger.set_user_epsilon(Some(limit));
        }
        self.ledger_store
            .save(&key, &ledger)
            .await
            .map_err(|e| FlError::Privacy(format!("cannot save the privacy ledger: {e}")))?;
        self.privacy_event(None, &ledger);
        self.ledger = Some((key, ledger));
        Ok(())
    }

    fn privacy_event(&self, round: Option<i64>, ledger: &GroupLedger) {
        self.observer.event(&ClientEvent::Privacy {
            round,
            epsilon: ledger.spent(),
            budget: ledger.budget(),
            delta: ledger.accepted.delta,
            history: ledger.rounds.iter().map(|r| (r.round, r.epsilon)).collect(),
        });
    }

    /// A DP round's settings once this member's ledger allows the round; `None` outside DP
    /// groups. A refusal is reported to the server (the round need not wait) and to the user,
    /// and ends this member's training in the group.
    async fn privacy_check(&mut self, round: &RoundView) -> Result<Option<RoundDp>, FlError> {
        let Some((_, ledger)) = &self.ledger else {
            return Ok(None);
        };
        let checked = match round.config.dp() {
            Some(dp) => ledger.check(round.round, &dp).map(|_| dp),
            None => Err(Refusal::Changed("the round publishes none".into())),
        };
        match checked {
            Ok(dp) => Ok(Some(dp)),
            Err(refusal) => {
                let reason = refusal.to_string();
                let numbers = match refusal {
                    Refusal::Spent {
                        spent,
                        next,
                        budget,
                        ..
                    } => Some((spent, next, budget)),
                    Refusal::Changed(_) => None,
                };
                let gid = self.gid()?;
                match self.api.report_failure(gid, round.round, &reason).await {
                    Ok(()) | Err(FlError::Api { status: 409, .. }) => {}
                    Err(e) => return Err(e),
                }
                self.observer.event(&ClientEvent::PrivacyRefused {
                    round: round.round,
                    reason: reason.clone(),
                    spent: numbers.map(|n| n.0),
                    next: numbers.map(|n| n.1),
                    budget: numbers.map(|n| n.2),
                });
                Err(FlError::Privacy(reason))
            }
        }
    }

    /// Counts a DP round in the ledger, durably, before its update leaves.
    async fn privacy_record(&mut self, gid: i64, number: i64, dp: &RoundDp) -> Result<(), FlError> {
        let Some((key, ledger)) = &mut self.ledger else {
            return Ok(());
        };
        ledger.record(number, dp);
        let saved = self.ledger_store.save(key, ledger).await;
        let ledger = ledger.clone();
        if let Err(e) = saved {
            let reason = format!("cannot save the privacy ledger: {e}");
            let _ = self.api.report_failure(gid, number, &reason).await;
            return Err(FlError::Privacy(reason));
        }
        self.privacy_event(Some(number), &ledger);
        Ok(())
    }

    fn skipped(&self, round: i64, reason: String) {
        self.observer.event(&ClientEvent::Skipped { round, reason });
    }

    /// This member cannot take part in a secure round: tells the server and the user.
    async fn secure_failure(&mut self, gid: i64, number: i64, reason: &str) -> Result<(), FlError> {
        match self.api.report_failure(gid, number, reason).await {
            Ok(()) | Err(FlError::Api { status: 409, .. }) => {}
            Err(e) => return Err(e),
        }
        self.observer.event(&ClientEvent::Failed {
            round: number,
            reason: reason.to_string(),
        });
        Ok(())
    }

    /// Trains round `round` locally from its base model. `None` when training failed (the
    /// server was told and the round counts as done for this member); also the base weights.
    async fn train_only(
        &mut self,
        round: &RoundView,
    ) -> Result<Option<(b3o_models::train::TrainOutcome, WeightSet)>, FlError> {
        let gid = self.gid()?;
        let spec = self.spec(round.base_version_id).await?;
        let (train, _) = self.split(&spec)?;
        let global = self.weights(round.base_version_id, &spec).await?;
        let base = global.clone();
        let c = &round.config;
        let config = TrainConfig {
            epochs: c.local_epochs as usize,
            batch_size: c.batch_size as usize,
            optimizer: match c.optimizer {
                Optimizer::Sgd => LocalOptimizer::Sgd { momentum: 0.0 },
                Optimizer::Adam => LocalOptimizer::Adam,
            },
            lr: c.lr,
            fedprox_mu: c.proximal_mu(),
            seed: self
                .options
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(round.round as u64),
        };
        self.observer.event(&ClientEvent::RoundStarted {
            round: round.round,
            epochs: c.local_epochs,
            samples: train.n_rows as u64,
        });
        // A synchronous round's progress is kept after every epoch: a reload picks up there.
        let progress_key = (round.buffer.is_none() && round.config.secagg().is_none())
            .then_some(self.member_id)
            .flatten()
            .map(|m| progress_key(gid, m));
        let resume = match &progress_key {
            Some(key) => {
                let kept = self.kept.clone();
                checkpoint(
                    kept.as_ref(),
                    key,
                    round,
                    &spec,
                    train.n_rows,
                    config.epochs,
                )
                .await
            }
            None => None,
        };
        if let Some((_, epochs_done)) = &resume {
            self.observer.event(&ClientEvent::Resumed {
                round: round.round,
                epochs_done: *epochs_done,
            });
        }
        let latest: Arc<std::sync::Mutex<Option<(usize, WeightSet)>>> = Arc::default();
        let on_epoch: Option<EpochFn> = progress_key.as_ref().map(|_| {
            let latest = latest.clone();
            Arc::new(move |done: usize, w: WeightSet| {
                *latest.lock().unwrap_or_else(|e| e.into_inner()) = Some((done, w));
            }) as EpochFn
        });
        let observer = self.observer.clone();
        let cancel = self.cancel.clone();
        let number = round.round;
        // How much is done (f64 bits), for the heartbeats.
        let done = Arc::new(AtomicU64::new(0f64.to_bits()));
        let done_by_batch = done.clone();
        let progress: ProgressFn = Arc::new(move |p| {
            let batches = (p.epochs.max(1) * p.batches_per_epoch.max(1)) as f64;
            let fraction = (p.epoch * p.batches_per_epoch.max(1) + p.batch + 1) as f64 / batches;
            done_by_batch.store(fraction.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
            observer.event(&ClientEvent::Training {
                round: number,
                epoch: p.epoch,
                epochs: p.epochs,
                batch: p.batch,
                batches_per_epoch: p.batches_per_epoch,
                loss: p.loss,
            });
            if cancel.is_cancelled() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        let n_rows = train.n_rows;
        let job = TrainJob {
            spec,
            global,
            data: train,
            config,
            resume,
            on_epoch,
        };
        // Heartbeats while training: the owner sees how far this member is, and the server
        // counts it as connected. Best effort: a lost heartbeat changes nothing.
        let training = self.trainer.train(job, progress);
        let api = &self.api;
        let heartbeats = async {
            loop {
                let fraction = f64::from_bits(done.load(Ordering::Relaxed));
                let _ = api.report_progress(gid, number, fraction).await;
                api.transport().sleep(HEARTBEAT_EVERY).await;
            }
        };
        // Checkpoints are stored as they come (IndexedDB in the browser), off the training.
        let (kept, model_id) = (self.kept.clone(), round.config.model_id.clone());
        let base_version_id = round.base_version_id;
        let saver = async {
            let Some(key) = &progress_key else {
                return std::future::pending().await;
            };
            loop {
                let next = latest.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some((done, w)) = next {
                    let meta = UpdateMeta {
                        model_id: model_id.clone(),
                        round: number as u64,
                        num_samples: n_rows as u64,
                        metrics: BTreeMap::from([
                            (EPOCHS_DONE.to_string(), done as f64),
                            (BASE_VERSION.to_string(), base_version_id as f64),
                        ]),
                    };
                    if let Ok(bytes) = weights::encode(&w, &meta, weights::Dtype::F32) {
                        let _ = kept.save(key, number, &bytes).await;
                    }
                }
                api.transport().sleep(Duration::from_millis(200)).await;
            }
        };
        let background = select(Box::pin(heartbeats), Box::pin(saver));
        let trained = match select(Box::pin(training), background).await {
            Either::Left((trained, _)) => trained,
            Either::Right((never, _)) => never.factor_first().0,
        };
        // Finished, failed or stopped: the progress is of no use any more (a finished update
        // is kept whole until the server has it).
        if let Some(key) = &progress_key {
            let _ = self.kept.remove(key).await;
        }
        let outcome = match trained {
            Ok(outcome) => outcome,
            Err(FlError::Train(TrainError::Cancelled)) | Err(FlError::Cancelled) => {
                // Best effort: the round need not wait for us.
                let _ = self
                    .api
                    .report_failure(gid, number, "stopped by the user")
                    .await;
                return Err(FlError::Cancelled);
            }
            Err(e) => {
                let reason = e.to_string();
                match self.api.report_failure(gid, number, &reason).await {
                    Ok(()) | Err(FlError::Api { status: 409, .. }) => {}
                    Err(report) => return Err(report),
                }
                self.observer.event(&ClientEvent::Failed {
                    round: number,
                    reason,
                });
                self.trained.insert(number);
                // A diverging round is the model's problem, not the client's: carry on.
                return match e {
                    FlError::Train(TrainError::Diverged(_)) => Ok(None),
                    e => Err(e),
                };
            }
        };
        Ok(Some((outcome, base)))
    }

    /// Evaluates a version on the held-out rows (the training rows when `fallback` and none
    /// are held out) and reports it for `round` when given. Returns the metrics and which rows.
    async fn evaluate_version(
        &mut self,
        version_id: i64,
        round: Option<i64>,
        fallback: bool,
    ) -> Result<(Metrics, &'static str), FlError> {
        let gid = self.gid()?;
        let spec = self.spec(version_id).await?;
        let (train, test) = self.split(&spec)?;
        let (rows, on) = if test.n_rows > 0 {
            (test, "test")
        } else if fallback {
            (train, "train")
        } else {
            if let Some(r) = round {
                self.evaluated.insert(r);
            }
            return Ok((Metrics::default(), "none"));
        };
        let weights = self.weights(version_id, &spec).await?;
        let metrics = self.trainer.evaluate(spec, weights, rows.clone()).await?;
        if let Some(r) = round {
            if on == "test" {
                let evaluation = Evaluation {
                    num_samples: rows.n_rows as u64,
                    metrics: metrics.to_map(),
                };
                match self.api.report_evaluation(gid, r, &evaluation).await {
                    // 409: the round failed, there is no model of its own to report on.
                    Ok(()) | Err(FlError::Api { status: 409, .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            self.evaluated.insert(r);
            self.observer.event(&ClientEvent::Evaluated {
                round: r,
                version_id,
                metrics: metrics.to_map(),
            });
        }
        Ok((metrics, on))
    }

    async fn open_events(&mut self) {
        if self.events.is_none()
            && let Ok(gid) = self.gid()
        {
            self.events = self.api.events(gid).await.ok();
        }
    }

    /// Returns when something may have changed: an event about rounds or phases, the event
    /// stream breaking, or the poll interval passing. Checks for cancellation every second.
    async fn wait_for_change(&mut self) -> Result<(), FlError> {
        let slice = Duration::from_secs(1).min(self.options.poll_interval);
        let mut waited = Duration::ZERO;
        loop {
            self.check_cancel()?;
            if waited >= self.options.poll_interval {
                return Ok(());
            }
            let Some(events) = self.events.as_mut() else {
                self.api.transport().sleep(slice).await;
                waited += slice;
                if waited >= self.options.poll_interval {
                    return Ok(());
                }
                continue;
            };
            let next = Box::pin(events.next());
            let timer = Box::pin(self.api.transport().sleep(slice));
            let outcome = match select(next, timer).await {
                Either::Left((event, _)) => Some(event),
                Either::Right(((), _)) => None,
            };
            match outcome {
                Some(Ok(Some(event))) => {
                    if relevant(&event.event) {
                        self.drain_events();
                        return Ok(());
                    }
                }
                Some(Ok(None) | Err(_)) => {
                    // Reopened at the next read of the round.
                    self.events = None;
                    return Ok(());
                }
                None => waited += slice,
            }
        }
    }

    /// Consumes the events already received, so that a burst (a round closing and the next
    /// opening) costs one read of the round.
    fn drain_events(&mut self) {
        if let Some(events) = self.events.as_mut() {
            for _ in 0..256 {
                match events.next().now_or_never() {
                    Some(Ok(Some(_))) => {}
                    Some(Ok(None) | Err(_)) => {
                        self.events = None;
                        return;
                    }
                    None => return,
                }
            }
        }
    }
}

/// What a member sent last in a secure round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecureStep {
    Nothing,
    Keys,
    Shares,
    Masked,
}

impl SecureStep {
    /// The stage in which this member acts next.
    fn next_stage(self) -> SecAggStage {
        match self {
            SecureStep::Nothing => SecAggStage::Advertise,
            SecureStep::Keys => SecAggStage::Share,
            SecureStep::Shares => SecAggStage::Masked,
            SecureStep::Masked => SecAggStage::Unmask,
        }
    }
}

/// The progress kept of round `round` by an earlier session (a reload mid-training): the
/// weights after the epochs it finished, if they are of this round's base model, these
/// training rows and fewer epochs than the round asks for.
async fn checkpoint(
    kept: &dyn KeptStore,
    key: &str,
    round: &RoundView,
    spec: &ModelSpec,
    rows: usize,
    epochs: usize,
) -> Option<(WeightSet, usize)> {
    let (kept_round, bytes) = kept.load(key).await.ok().flatten()?;
    if kept_round != round.round {
        let _ = kept.remove(key).await;
        return None;
    }
    let (set, meta) = weights::decode(&bytes, &spec.layout(), usize::MAX).ok()?;
    let done = meta.metrics.get(EPOCHS_DONE).copied()?;
    let same_base = meta.metrics.get(BASE_VERSION).copied() == Some(round.base_version_id as f64);
    (same_base && meta.num_samples == rows as u64 && done >= 1.0 && (done as usize) < epochs)
        .then_some((set, done as usize))
}

/// The key of a member's kept training progress in one group.
fn progress_key(group_id: i64, member_id: i64) -> String {
    format!("{}-progress", kept_key(group_id, member_id))
}

/// A kept checkpoint's metadata: epochs done, and the base model it trains from.
const EPOCHS_DONE: &str = "epochs_done";
const BASE_VERSION: &str = "base_version_id";

/// How often a training member sends a heartbeat with its progress.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);

/// The change local training made to the round's base model, flat.
fn change(trained: &WeightSet, base: &WeightSet) -> Vec<f32> {
    trained
        .flatten()
        .iter()
        .zip(base.flatten())
        .map(|(new, old)| new - old)
        .collect()
}

/// Events after which the round is worth reading again (not other members' comings and
/// goings or progress).
fn relevant(event: &str) -> bool {
    !matches!(
        event,
        "member_joined" | "member_left" | "member_presence" | "member_progress"
    )
}

/// Held-out rows of `n` for `fraction`, as [`Dataset::split`] counts them.
fn held_out(n: u64, fraction: f64) -> u64 {
    ((n as f64) * fraction.clamp(0.0, 1.0)).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_counts_match_the_dataset_split() {
        for n in [1usize, 5, 9, 10, 11, 1000] {
            let d = Dataset::new(vec![0.0; n], vec![0.0; n], 1).unwrap();
            let (_, test) = d.split(0.2, 1);
            assert_eq!(held_out(n as u64, 0.2), test.n_rows as u64, "{n}");
        }
    }
}
