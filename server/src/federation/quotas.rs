//! What one account may make the federation hold (issue #19): the size of a group's model
//! (`--max-model-parameters`, counted from the template with checked arithmetic before any
//! weights exist), the groups it owns (`--max-groups-per-account`, administrators exempt), and
//! its wrong join codes (`--max-join-failures` per account and per client address in
//! [`JOIN_WINDOW`], the login limiter's sliding windows).

use std::net::IpAddr;
use std::time::Duration;

use b3o_models::weights::WeightLayout;

use super::model::{ModelTemplate, image_spec};
use crate::accounts::rate_limit::{LimitError, LoginAttempt};
use crate::accounts::{LoginLimiter, LoginLimits};
use crate::error::ApiError;
use crate::limits::Limits;

/// The window of `--max-join-failures`.
pub const JOIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The hidden layers of a tabular template that names none: `ModelSpec::churn_b3o`'s.
const DEFAULT_TABULAR_HIDDEN: [usize; 3] = [128, 64, 32];

/// How many parameters a model has, as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamCount {
    /// Exactly this many.
    Exactly(usize),
    /// At least this many (a tabular model before its input width is known).
    AtLeast(usize),
    /// More than `usize` can count.
    Overflow,
}

/// The parameters of `template`'s model, from its shapes alone (nothing is allocated from
/// them). A tabular model's input width is only known once its members' column statistics
/// are merged (one input per numeric column, one per kept category): until then, one input
/// per feature column and one output give a lower bound.
pub fn template_params(template: &ModelTemplate) -> ParamCount {
    match template {
        ModelTemplate::Custom { layout } => exact(layout),
        ModelTemplate::ImageCnn { labels } => exact(&image_spec(labels).layout()),
        ModelTemplate::Tabular { schema, hidden } => {
            let hidden = hidden.as_deref().unwrap_or(&DEFAULT_TABULAR_HIDDEN);
            let mut dims = Vec::with_capacity(hidden.len() + 2);
            dims.push(schema.features.len());
            dims.extend_from_slice(hidden);
            dims.push(1);
            // Each dense layer: a `w[0] x w[1]` weight and a `w[1]` bias.
            dims.windows(2)
                .try_fold(0usize, |total, w| {
                    w[0].checked_mul(w[1])?
                        .checked_add(w[1])?
                        .checked_add(total)
                })
                .map_or(ParamCount::Overflow, ParamCount::AtLeast)
        }
    }
}

/// The exact count of a built model's layout.
pub fn exact(layout: &WeightLayout) -> ParamCount {
    layout
        .checked_num_params()
        .map_or(ParamCount::Overflow, ParamCount::Exactly)
}

/// 413 naming the limit when `count` is over `--max-model-parameters`.
pub fn check_model_size(count: ParamCount, limits: &Limits) -> Result<(), ApiError> {
    let max = limits.max_model_parameters;
    let has = match count {
        ParamCount::Exactly(n) if n > max => format!("this one has {n}"),
        ParamCount::AtLeast(n) if n > max => format!("this one has at least {n}"),
        ParamCount::Overflow => "this one has more than can be counted".to_string(),
        ParamCount::Exactly(_) | ParamCount::AtLeast(_) => return Ok(()),
    };
    Err(ApiError::PayloadTooLarge(format!(
        "a group's model may have at most {max} parameters (--max-model-parameters); {has}"
    )))
}

/// 403 naming the limit when an account that already owns `owned` groups may not create
/// another (administrators are never refused).
pub fn check_group_quota(owned: i64, is_admin: bool, limits: &Limits) -> Result<(), ApiError> {
    let max = limits.max_groups_per_account;
    if is_admin || usize::try_from(owned).is_ok_and(|n| n < max) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "an account may own at most {max} groups (--max-groups-per-account) and you own \
         {owned}; ask an administrator for more"
    )))
}

/// Wrong join codes per account and per client address.
#[derive(Debug)]
pub struct JoinLimiter {
    limiter: LoginLimiter,
    max: u32,
}

impl JoinLimiter {
    pub fn new(max_failures: u32) -> Self {
        JoinLimiter {
            limiter: LoginLimiter::scoped(
                "join",
                LoginLimits {
                    per_account: max_failures,
                    per_ip: max_failures,
                    window: JOIN_WINDOW,
                },
            ),
            max: max_failures,
        }
    }

    /// Reserves one attempt of account `user_id` from `ip` before the code is looked up
    /// (attempts in flight count, so a burst of parallel guesses cannot overshoot); 429 with
    /// `Retry-After` once `--max-join-failures` wrong codes came from either in the window.
    /// Call [`JoinAttempt::failed`] for a wrong code, [`JoinAttempt::release`] for a right one
    /// (it counts nothing). A right code does not clear the account's failures: otherwise joining a
    /// group of one's own now and then would reset the count.
    pub async fn begin(
        &self,
        db: &crate::db::Db,
        user_id: i64,
        ip: Option<IpAddr>,
    ) -> Result<JoinAttempt, ApiError> {
        match self.limiter.begin(db, &format!("user:{user_id}"), ip).await {
            Ok(attempt) => Ok(JoinAttempt { attempt }),
            Err(LimitError::Db(e)) => Err(e.into()),
            Err(LimitError::Refused(wait)) => {
                let secs = wait.as_secs().max(1);
                Err(ApiError::TooManyRequests {
                    message: format!(
                        "too many wrong join codes: at most {} per {} minutes from one account \
                         or address (--max-join-failures); try again in {secs} s",
                        self.max,
                        JOIN_WINDOW.as_secs() / 60,
                    ),
                    retry_after_secs: secs,
                })
            }
        }
    }
}

/// A join-code lookup in progress (see [`JoinLimiter::begin`]).
#[derive(Debug)]
pub struct JoinAttempt {
    attempt: LoginAttempt,
}

impl JoinAttempt {
    /// The code matched no group: count it.
    pub async fn failed(self) {
        self.attempt.failed().await;
    }

    /// The code matched: count nothing.
    pub async fn release(self) {
        self.attempt.release().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use b3o_models::weights::TensorSpec;

    #[test]
    fn template_counts_are_checked_and_bounded_below_for_tabular_models() {
        let custom = ModelTemplate::Custom {
            layout: WeightLayout(vec![
                TensorSpec::new("w", vec![3, 4]),
                TensorSpec::new("b", vec![4]),
            ]),
        };
        assert_eq!(template_params(&custom), ParamCount::Exactly(16));
        let wraps = ModelTemplate::Custom {
            layout: WeightLayout(vec![TensorSpec::new("w", vec![1 << 32, 1 << 32, 1 << 32])]),
        };
        assert_eq!(template_params(&wraps), ParamCount::Overflow);
        let limits = Limits::default();
        let err = check_model_size(ParamCount::Overflow, &limits).unwrap_err();
        assert!(err.to_string().contains("10000000"), "{err}");
        assert!(check_model_size(ParamCount::Exactly(10_000_000), &limits).is_ok());
        let err = check_model_size(ParamCount::AtLeast(10_000_001), &limits).unwrap_err();
        assert!(err.to_string().contains("at least 10000001"), "{err}");
    }

    #[test]
    fn the_group_quota_exempts_administrators() {
        let limits = Limits {
            max_groups_per_account: 2,
            ..Limits::default()
        };
        assert!(check_group_quota(1, false, &limits).is_ok());
        assert!(check_group_quota(2, false, &limits).is_err());
        assert!(check_group_quota(200, true, &limits).is_ok());
    }
}
