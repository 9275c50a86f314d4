//! A member's own record of the privacy it spent in each group, kept on its machine (IndexedDB
//! in the browser, a JSON file for `b3o client`), so that the budget holds without trusting the
//! server's accounting:
//!
//! - when the member joins, it records what it accepted ([`Accepted`]): the group's target
//!   (epsilon, delta), the placement and the sampling rate, and optionally a stricter epsilon
//!   of its user;
//! - before each round it takes part in, it recomputes the epsilon it would have spent after
//!   that round from the round's published parameters ([`RoundDp`]) and refuses the round when
//!   that passes its budget ([`GroupLedger::check`]); the group cannot raise the budget, and a
//!   round published with less noise or a higher sampling rate simply costs more of it;
//! - a round is recorded before its update leaves ([`GroupLedger::record`]): an upload whose
//!   answer is lost still counts.
//!
//! How rounds count: with a sampling rate of 1 (every member every round, the usual cross-silo
//! case) only the rounds the member took part in cost anything, each a Gaussian mechanism. With
//! a sampling rate `q < 1` the analysis relies on the server selecting members at random: every
//! round from the member's first to its latest costs one step of the sampled Gaussian mechanism
//! at the accepted `q` (the rounds it took part in at their published rate, which is never
//! below it).

use serde::{Deserialize, Serialize};

use super::accountant::Accountant;
use super::{DpParams, DpPlacement, RoundDp};

/// What a member accepted when it joined a DP group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    pub epsilon: f64,
    pub delta: f64,
    pub placement: DpPlacement,
    pub noise_multiplier: f64,
    pub sampling_rate: f64,
}

/// A round the member took part in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpentRound {
    pub round: i64,
    pub noise_multiplier: f64,
    pub sampling_rate: f64,
    /// Epsilon spent once this round was counted (at the accepted delta).
    pub epsilon: f64,
}

/// One member's ledger in one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupLedger {
    pub accepted: Accepted,
    /// A stricter budget the member's user set (never a larger one).
    #[serde(default)]
    pub user_epsilon: Option<f64>,
    /// The rounds it took part in, in order.
    #[serde(default)]
    pub rounds: Vec<SpentRound>,
}

/// Why a member refuses a round.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the privacy budget is spent: this round would bring epsilon from {spent:.3} to \
         {next:.3}, past the budget of {budget:.3} (delta {delta:e}) this member accepted"
    )]
    Spent {
        spent: f64,
        next: f64,
        budget: f64,
        delta: f64,
    },
    #[error("the group's privacy settings changed since this member joined: {0}")]
    Changed(String),
}

impl GroupLedger {
    /// The ledger of a member joining a group that runs with `params`; `user_epsilon` is a
    /// stricter budget of its own (ignored when it is not stricter).
    pub fn accept(params: &DpParams, user_epsilon: Option<f64>) -> Self {
        let mut ledger = GroupLedger {
            accepted: Accepted {
                epsilon: params.epsilon,
                delta: params.delta,
                placement: params.placement,
                noise_multiplier: params.noise_multiplier,
                sampling_rate: params.sampling_rate,
            },
            user_epsilon: None,
            rounds: Vec::new(),
        };
        ledger.set_user_epsilon(user_epsilon);
        ledger
    }

    /// Sets the user's own budget; only a stricter one than the accepted target counts.
    pub fn set_user_epsilon(&mut self, user_epsilon: Option<f64>) {
        self.user_epsilon =
            user_epsilon.filter(|e| e.is_finite() && *e >= 0.0 && *e < self.accepted.epsilon);
    }

    /// The budget: the accepted target, or the user's stricter one.
    pub fn budget(&self) -> f64 {
        self.user_epsilon
            .map_or(self.accepted.epsilon, |u| u.min(self.accepted.epsilon))
    }

    /// Epsilon (at the accepted delta) spent by the recorded rounds.
    pub fn spent(&self) -> f64 {
        self.epsilon_with(None)
    }

    /// Epsilon of the recorded rounds plus `extra`, per the module's counting rules.
    fn epsilon_with(&self, extra: Option<(i64, &RoundDp)>) -> f64 {
        let mut rounds: Vec<(i64, f64, f64)> = self
            .rounds
            .iter()
            .map(|r| (r.round, r.sampling_rate, r.noise_multiplier))
            .collect();
        if let Some((round, dp)) = extra {
            rounds.push((round, dp.sampling_rate, dp.noise_multiplier));
        }
        rounds.sort_by_key(|r| r.0);
        rounds.dedup_by_key(|r| r.0);
        // Rounds with the same rate and noise compose in one step: the accountant's cost (each
        // step at a rate below 1 is series at every order) does not grow with their number.
        let mut steps: Vec<(f64, f64, u32)> = Vec::new();
        for &(_, q, z) in &rounds {
            match steps
                .iter_mut()
                .find(|s| s.0.to_bits() == q.to_bits() && s.1.to_bits() == z.to_bits())
            {
                Some(s) => s.2 = s.2.saturating_add(1),
                None => steps.push((q, z, 1)),
            }
        }
        let mut acc = Accountant::new();
        for (q, z, n) in steps {
            acc.compose(q, z, n);
        }
        let a = &self.accepted;
        if a.sampling_rate < 1.0
            && let (Some(first), Some(last)) = (rounds.first(), rounds.last())
        {
            let span = (last.0 - first.0 + 1).max(0) as u64;
            let gaps = span.saturating_sub(rounds.len() as u64);
            acc.compose(
                a.sampling_rate,
                a.noise_multiplier,
                u32::try_from(gaps).unwrap_or(u32::MAX),
            );
        }
        acc.epsilon(a.delta)
    }

    /// Whether the member may take part in `round`, published with `dp`: the epsilon it would
    /// have spent after it, or why not.
    pub fn check(&self, round: i64, dp: &RoundDp) -> Result<f64, Refusal> {
        let a = &self.accepted;
        if a.placement == DpPlacement::Local && dp.placement != DpPlacement::Local {
            return Err(Refusal::Changed(format!(
                "this member accepted local noise (added on its own machine), and the round asks \
                 for {} noise",
                dp.placement.as_str()
            )));
        }
        if !(dp.noise_multiplier.is_finite() && dp.noise_multiplier > 0.0) {
            return Err(Refusal::Changed(format!(
                "the round's noise multiplier is {}",
                dp.noise_multiplier
            )));
        }
        if !(dp.sampling_rate > 0.0 && dp.sampling_rate <= 1.0) {
            return Err(Refusal::Changed(format!(
                "the round's sampling rate is {}",
                dp.sampling_rate
            )));
        }
        if !(dp.clipping_norm.is_finite() && dp.clipping_norm > 0.0) {
            return Err(Refusal::Changed(format!(
                "the round's clipping norm is {}",
                dp.clipping_norm
            )));
        }
        if self.rounds.iter().any(|r| r.round == round) {
            // Already counted (a retry after a lost answer): costs nothing more.
            return Ok(self.spent());
        }
        let spent = self.spent();
        let next = self.epsilon_with(Some((round, dp)));
        let budget = self.budget();
        if next > budget * (1.0 + 1e-9) {
            return Err(Refusal::Spent {
                spent,
                next,
                budget,
                delta: a.delta,
            });
        }
        Ok(next)
    }

    /// Counts `round` (call after [`GroupLedger::check`] allowed it and before the update
    /// leaves). Recording a round twice counts it once.
    pub fn record(&mut self, round: i64, dp: &RoundDp) -> f64 {
        if let Some(r) = self.rounds.iter().find(|r| r.round == round) {
            return r.epsilon;
        }
        let epsilon = self.epsilon_with(Some((round, dp)));
        self.rounds.push(SpentRound {
            round,
            noise_multiplier: dp.noise_multiplier,
            sampling_rate: dp.sampling_rate,
            epsilon,
        });
        self.rounds.sort_by_key(|r| r.round);
        epsilon
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(epsilon: f64, z: f64, q: f64) -> DpParams {
        DpParams {
            epsilon,
            delta: 1e-5,
            placement: DpPlacement::Central,
            noise_multiplier: z,
            update_noise_multiplier: z,
            sampling_rate: q,
            clipping_norm: 1.0,
            adaptive: None,
            planned_rounds: 10,
        }
    }

    fn round(p: &DpParams) -> RoundDp {
        RoundDp {
            placement: p.placement,
            clipping_norm: p.clipping_norm,
            noise_multiplier: p.noise_multiplier,
            update_noise_multiplier: p.update_noise_multiplier,
            sampling_rate: p.sampling_rate,
            epsilon: p.epsilon,
            delta: p.delta,
            adaptive: false,
        }
    }

    /// A calibrated group's member takes part in every planned round and no more.
    #[test]
    fn a_member_spends_the_planned_rounds_and_refuses_the_next() {
        let mut p = params(3.0, 1.0, 1.0);
        p.noise_multiplier = super::super::accountant::calibrate_noise(3.0, 1e-5, 1.0, 10).unwrap();
        let mut ledger = GroupLedger::accept(&p, None);
        let dp = round(&p);
        for r in 1..=10 {
            let next = ledger.check(r, &dp).expect("within the budget");
            assert_eq!(ledger.record(r, &dp), next);
        }
        assert!(
            ledger.spent() <= 3.0 && ledger.spent() > 2.9,
            "{}",
            ledger.spent()
        );
        match ledger.check(11, &dp) {
            Err(Refusal::Spent { budget, next, .. }) => {
                assert_eq!(budget, 3.0);
                assert!(next > 3.0);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A retry of a counted round is free.
        assert!(ledger.check(10, &dp).is_ok());
    }

    #[test]
    fn less_noise_than_accepted_costs_more_and_a_stricter_user_budget_binds() {
        let p = params(8.0, 2.0, 1.0);
        let ledger = GroupLedger::accept(&p, None);
        let fair = ledger.check(1, &round(&p)).unwrap();
        let mut weaker = round(&p);
        weaker.noise_multiplier = 0.5;
        let costly = ledger.check(1, &weaker).unwrap_err();
        assert!(matches!(costly, Refusal::Spent { next, .. } if next > fair));
        // The group cannot raise the budget: a published target of 100 changes nothing.
        let mut raised = round(&p);
        raised.epsilon = 100.0;
        raised.noise_multiplier = 0.5;
        assert!(ledger.check(1, &raised).is_err());

        let strict = GroupLedger::accept(&p, Some(fair / 2.0));
        assert!(matches!(
            strict.check(1, &round(&p)),
            Err(Refusal::Spent { .. })
        ));
        // A "stricter" budget above the target is ignored.
        let loose = GroupLedger::accept(&p, Some(1e9));
        assert_eq!(loose.budget(), 8.0);
    }

    #[test]
    fn local_noise_accepted_is_never_traded_for_central() {
        let mut p = params(8.0, 2.0, 1.0);
        p.placement = DpPlacement::Local;
        let ledger = GroupLedger::accept(&p, None);
        let mut central = round(&p);
        central.placement = DpPlacement::Central;
        assert!(matches!(
            ledger.check(1, &central),
            Err(Refusal::Changed(_))
        ));
        assert!(ledger.check(1, &round(&p)).is_ok());
    }

    /// With sampling, rounds between the first and the latest count too (at the accepted rate);
    /// without it, only the rounds taken part in.
    #[test]
    fn sampled_groups_count_every_round_in_the_span() {
        let full = params(50.0, 1.0, 1.0);
        let mut a = GroupLedger::accept(&full, None);
        a.record(1, &round(&full));
        let one = a.spent();
        a.record(10, &round(&full));
        let mut b = GroupLedger::accept(&full, None);
        b.record(1, &round(&full));
        b.record(2, &round(&full));
        assert!((a.spent() - b.spent()).abs() < 1e-12);
        assert!(a.spent() > one);

        let sampled = params(50.0, 1.0, 0.1);
        let mut s = GroupLedger::accept(&sampled, None);
        s.record(1, &round(&sampled));
        s.record(10, &round(&sampled));
        let mut every = Accountant::new();
        every.compose(0.1, 1.0, 10);
        assert!((s.spent() - every.epsilon(1e-5)).abs() < 1e-9);
    }

    #[test]
    fn nonsense_rounds_are_refused() {
        let p = params(8.0, 2.0, 1.0);
        let ledger = GroupLedger::accept(&p, None);
        for (z, q, c) in [
            (0.0, 1.0, 1.0),
            (f64::NAN, 1.0, 1.0),
            (1.0, 1.5, 1.0),
            (1.0, 1.0, 0.0),
        ] {
            let mut dp = round(&p);
            dp.noise_multiplier = z;
            dp.sampling_rate = q;
            dp.clipping_norm = c;
            assert!(
                matches!(ledger.check(1, &dp), Err(Refusal::Changed(_))),
                "{z} {q} {c}"
            );
        }
    }
}
