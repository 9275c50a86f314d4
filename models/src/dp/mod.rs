//! Differential privacy for federated rounds: user-level DP (DP-FedAvg, McMahan et al. 2018),
//! where the unit protected is one partner's whole contribution to a round.
//!
//! - [`mechanism`]: clipping an update to an L2 bound and Gaussian noise.
//! - [`adaptive`]: adaptive clipping (Andrew et al. 2021): the clipping norm follows a target
//!   quantile of the update norms, learned from privately counted "was not clipped" bits.
//! - [`accountant`]: the RDP accountant of the sampled Gaussian mechanism (Mironov 2017;
//!   Mironov, Talwar and Zhang 2019), its conversion to (epsilon, delta), and the calibration
//!   of a noise multiplier for a target.
//! - [`ledger`]: a partner's own record of what it spent in each group, with which it refuses
//!   a round that would take it past the budget it accepted.
//!
//! Settings use Flower's names (`noise_multiplier`, `clipping_norm`, `target_clipped_quantile`,
//! `clip_norm_lr`, `clipped_count_stddev`). Two placements:
//! - **central** (Flower's "central DP with client-side clipping"): members clip their update;
//!   the server adds `N(0, (z·C/n)^2)` to the mean of the `n` updates, or, in a secure group,
//!   each member adds its share `N(0, (z·C)^2/t)` before masking (`t`: the least number of
//!   survivors a secure round can close with), so that the server never sees a noiseless sum;
//! - **local**: each member adds `N(0, (2·z·C)^2)` to its clipped update before it leaves. The
//!   server sees that member's message itself, so the neighbouring datasets are two datasets of
//!   the same member (replace one, not add or remove one): the message moves by up to `2·C`,
//!   and the noise is scaled to that. Sampling gives no amplification against the server (it
//!   sees who sent), so a local group is accounted at sampling rate 1.
//!
//! In a DP group every member's update counts the same (the mean is not weighted by sample
//! counts: a weight would change the sensitivity the noise is calibrated to).

pub mod accountant;
pub mod adaptive;
pub mod ledger;
pub mod mechanism;

use serde::{Deserialize, Serialize};

/// What goes wrong with privacy settings or budgets.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DpError {
    #[error("invalid differential privacy setting `{param}`: {reason}")]
    InvalidConfig { param: &'static str, reason: String },
    #[error(
        "no noise multiplier up to {max} reaches epsilon {epsilon} at delta {delta} in {rounds} round(s)"
    )]
    Unreachable {
        epsilon: f64,
        delta: f64,
        rounds: u32,
        max: f64,
    },
}

fn invalid(param: &'static str, reason: impl Into<String>) -> DpError {
    DpError::InvalidConfig {
        param,
        reason: reason.into(),
    }
}

/// Where the noise is added.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpPlacement {
    /// Members clip; the aggregate gets the noise (the server's, or the members' shares of it
    /// in a secure group).
    #[default]
    Central,
    /// Every member adds its full noise before its update leaves.
    Local,
}

impl std::str::FromStr for DpPlacement {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "central" => Ok(DpPlacement::Central),
            "local" => Ok(DpPlacement::Local),
            other => Err(format!("unknown placement `{other}`: central or local")),
        }
    }
}

impl DpPlacement {
    pub fn as_str(self) -> &'static str {
        match self {
            DpPlacement::Central => "central",
            DpPlacement::Local => "local",
        }
    }
}

/// Adaptive clipping's settings (Andrew et al. 2021, Flower's names and defaults).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveClipping {
    /// The share of updates the clipping norm should leave unclipped (the quantile of update
    /// norms it tracks). Default 0.5, the median.
    #[serde(default = "default_quantile")]
    pub target_clipped_quantile: f64,
    /// Step of the geometric update of the norm. Default 0.2.
    #[serde(default = "default_clip_lr")]
    pub clip_norm_lr: f64,
    /// Standard deviation of the noise on the count of unclipped updates; default the number
    /// of clients per round / 20 (Andrew et al.'s recommendation).
    #[serde(default)]
    pub clipped_count_stddev: Option<f64>,
}

fn default_quantile() -> f64 {
    0.5
}
fn default_clip_lr() -> f64 {
    0.2
}

impl Default for AdaptiveClipping {
    fn default() -> Self {
        AdaptiveClipping {
            target_clipped_quantile: default_quantile(),
            clip_norm_lr: default_clip_lr(),
            clipped_count_stddev: None,
        }
    }
}

/// A group's differential privacy, as its creator asks for it (`dp` of `POST /api/groups`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpConfig {
    /// The privacy budget: no model version may cost any member more than this epsilon...
    pub epsilon: f64,
    /// ...at this delta (default 1e-5).
    #[serde(default = "default_delta")]
    pub delta: f64,
    #[serde(default)]
    pub placement: DpPlacement,
    /// The L2 bound of each update (`update - global model`); the initial bound with adaptive
    /// clipping. Default 1.0 (0.1 with adaptive clipping, as Andrew et al. recommend).
    #[serde(default)]
    pub clipping_norm: Option<f64>,
    /// Noise standard deviation over the clipping norm. When omitted, the smallest that keeps
    /// the group's planned rounds within the budget.
    #[serde(default)]
    pub noise_multiplier: Option<f64>,
    /// Adaptive clipping (central placement only); absent for a fixed clipping norm.
    #[serde(default)]
    pub adaptive: Option<AdaptiveClipping>,
}

fn default_delta() -> f64 {
    1e-5
}

/// Largest noise multiplier calibration tries.
pub const MAX_NOISE_MULTIPLIER: f64 = 1e3;

impl DpConfig {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), DpError> {
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(invalid(
                "epsilon",
                format!("must be a number > 0, got {}", self.epsilon),
            ));
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(invalid(
                "delta",
                format!("must be in (0, 1), got {}", self.delta),
            ));
        }
        if let Some(c) = self.clipping_norm
            && !(c.is_finite() && c > 0.0)
        {
            return Err(invalid(
                "clipping_norm",
                format!("must be a number > 0, got {c}"),
            ));
        }
        if let Some(z) = self.noise_multiplier
            && !(z.is_finite() && z > 0.0 && z <= MAX_NOISE_MULTIPLIER)
        {
            return Err(invalid(
                "noise_multiplier",
                format!("must be in (0, {MAX_NOISE_MULTIPLIER}], got {z}"),
            ));
        }
        if let Some(a) = &self.adaptive {
            if self.placement == DpPlacement::Local {
                return Err(invalid(
                    "adaptive",
                    "adaptive clipping needs the central placement (with local noise the \
                     server could not count clipped updates privately); give a clipping_norm",
                ));
            }
            if !(0.0..=1.0).contains(&a.target_clipped_quantile) {
                return Err(invalid(
                    "adaptive.target_clipped_quantile",
                    format!("must be in [0, 1], got {}", a.target_clipped_quantile),
                ));
            }
            if !(a.clip_norm_lr.is_finite() && a.clip_norm_lr > 0.0 && a.clip_norm_lr <= 10.0) {
                return Err(invalid(
                    "adaptive.clip_norm_lr",
                    format!("must be in (0, 10], got {}", a.clip_norm_lr),
                ));
            }
            if let Some(s) = a.clipped_count_stddev
                && !(s.is_finite() && s > 0.0)
            {
                return Err(invalid(
                    "adaptive.clipped_count_stddev",
                    format!("must be a number > 0, got {s}"),
                ));
            }
        }
        Ok(())
    }

    /// The parameters a group runs with: `rounds` planned rounds, each sampling members with
    /// probability `sampling_rate`, about `clients_per_round` of them. Calibrates the noise
    /// multiplier when none is given, and derives adaptive clipping's noise split.
    pub fn resolve(
        &self,
        rounds: u32,
        sampling_rate: f64,
        clients_per_round: f64,
    ) -> Result<DpParams, DpError> {
        self.validate()?;
        if !(sampling_rate > 0.0 && sampling_rate <= 1.0) {
            return Err(invalid(
                "sampling_rate",
                format!("must be in (0, 1], got {sampling_rate}"),
            ));
        }
        // Local noise protects a member from the server too, which sees who sent an update:
        // sampling amplifies nothing against it, so every round counts in full.
        let sampling_rate = match self.placement {
            DpPlacement::Local => 1.0,
            DpPlacement::Central => sampling_rate,
        };
        let rounds = rounds.max(1);
        let noise_multiplier = match self.noise_multiplier {
            Some(z) => z,
            None => accountant::calibrate_noise(self.epsilon, self.delta, sampling_rate, rounds)?,
        };
        let (adaptive, update_noise_multiplier) = match &self.adaptive {
            Some(a) => {
                let stddev = a
                    .clipped_count_stddev
                    .unwrap_or(clients_per_round.max(1.0) / 20.0);
                let z_update = adaptive::update_noise_multiplier(noise_multiplier, stddev)?;
                (
                    Some(AdaptiveParams {
                        target_clipped_quantile: a.target_clipped_quantile,
                        clip_norm_lr: a.clip_norm_lr,
                        clipped_count_stddev: stddev,
                    }),
                    z_update,
                )
            }
            None => (None, noise_multiplier),
        };
        let clipping_norm =
            self.clipping_norm
                .unwrap_or(if self.adaptive.is_some() { 0.1 } else { 1.0 });
        Ok(DpParams {
            epsilon: self.epsilon,
            delta: self.delta,
            placement: self.placement,
            noise_multiplier,
            update_noise_multiplier,
            sampling_rate,
            clipping_norm,
            adaptive,
            planned_rounds: rounds,
        })
    }
}

/// Adaptive clipping's resolved settings.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveParams {
    pub target_clipped_quantile: f64,
    pub clip_norm_lr: f64,
    pub clipped_count_stddev: f64,
}

/// What a DP group runs with: stored with the group, published in its view; every member
/// accepts these when it joins.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpParams {
    /// The target: training stops before any round would pass it.
    pub epsilon: f64,
    pub delta: f64,
    pub placement: DpPlacement,
    /// The noise multiplier the accountant counts (`z`).
    pub noise_multiplier: f64,
    /// The noise multiplier of the update itself: `z` with a fixed clipping norm; with adaptive
    /// clipping, what is left once the count of unclipped updates took its share,
    /// `(z^-2 - (2·clipped_count_stddev)^-2)^-1/2`.
    pub update_noise_multiplier: f64,
    /// The probability that a member takes part in a round, as the accountant counts it.
    pub sampling_rate: f64,
    /// The L2 bound of an update (the initial one with adaptive clipping).
    pub clipping_norm: f64,
    #[serde(default)]
    pub adaptive: Option<AdaptiveParams>,
    /// Rounds the noise multiplier was calibrated for.
    pub planned_rounds: u32,
}

impl DpParams {
    /// (epsilon, delta) after `rounds` rounds at the group's sampling rate.
    pub fn epsilon_after(&self, rounds: u32) -> f64 {
        let mut acc = accountant::Accountant::new();
        acc.compose(self.sampling_rate, self.noise_multiplier, rounds);
        acc.epsilon(self.delta)
    }
}

/// One round's privacy settings, in the round's config (`dp`): what a member clips to and how
/// much noise it adds, and what the round costs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundDp {
    pub placement: DpPlacement,
    /// This round's L2 bound (adaptive clipping moves it between rounds).
    pub clipping_norm: f64,
    /// The accountant's noise multiplier.
    pub noise_multiplier: f64,
    /// The update's noise multiplier (see [`DpParams::update_noise_multiplier`]).
    pub update_noise_multiplier: f64,
    /// This round's sampling rate (members selected / members ready, at least the planned one).
    pub sampling_rate: f64,
    /// The group's target.
    pub epsilon: f64,
    pub delta: f64,
    /// Members report whether their update was clipped (adaptive clipping).
    #[serde(default)]
    pub adaptive: bool,
}

/// Metric name of the "was not clipped" bit a member reports with its update under adaptive
/// clipping (1 or 0). The server removes it from the round's metrics and only ever shows a
/// noisy count.
pub const UNCLIPPED_METRIC: &str = "dp_unclipped";

#[cfg(test)]
mod tests;
