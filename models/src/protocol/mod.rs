//! The federation API's wire types (`/api/groups/...`), shared by the server and every client
//! (the browser engine, `b3o client`, `b3o simulate`): what a group trains, the requests
//! members send and the answers and events they read.
//!
//! Serde only: nothing here touches burn, HTTP or a database. Request types are strict
//! (`deny_unknown_fields`, so a typo is a 400 naming the field); response types are lenient
//! (unknown fields are ignored, optional ones default) so that an older client keeps working
//! against a newer server.
//!
//! Update bodies are not JSON: they are safetensors files in the format of
//! [`crate::weights::encode`]. Column statistics are a [`crate::stats::Summary`].

/// The OpenAPI schema of a string enum with a `#[serde(other)] Unknown` variant: a string
/// with the values of `$ty::KNOWN` (`Unknown` only catches values of a newer server, a server
/// never writes it). `$ty` has `KNOWN` and `as_str`.
macro_rules! known_values_schema {
    ($ty:ident, $description:literal) => {
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let object = utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some($ty::KNOWN.iter().map(|v| v.as_str())))
                    .description(Some($description))
                    .build();
                utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(object))
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $ty {}
    };
}

// One file per API area (the federation's own types stay in this file).
pub mod accounts;
pub mod history;
pub mod inference;
pub mod jobs;
pub mod monitoring;
pub mod operations;
pub mod registry;
pub mod secagg;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::compress::UpdateEncoding;
use crate::tabular::Schema;
use crate::weights::{TensorSpec, WeightLayout};

/// The most parameters a group's model may have (400 MB of f32).
pub const MAX_PARAMS: usize = 100_000_000;
/// The most class labels an image group may have.
pub const MAX_LABELS: usize = 65_536;

/// What a group trains.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelTemplate {
    /// An MLP over a CSV whose schema (feature columns and kinds, target and task) the owner's
    /// client inferred from its file. Needs a statistics phase (column summaries from every
    /// ready member) before round 1. `hidden` defaults to B3O's churn network, 128-64-32.
    Tabular {
        schema: Schema,
        #[serde(default)]
        hidden: Option<Vec<usize>>,
    },
    /// The image CNN (28x28 greyscale inputs) over the given class labels.
    ImageCnn { labels: Vec<String> },
    /// An explicit list of tensors; initial weights are small seeded random values.
    Custom { layout: WeightLayout },
}

impl ModelTemplate {
    /// Checks the template, naming the first problem.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            ModelTemplate::Tabular { schema, hidden } => {
                if schema.features.is_empty() {
                    return Err("a tabular model needs at least one feature column".into());
                }
                let names: Vec<String> = schema.features.iter().map(|f| f.name.clone()).collect();
                unique_nonempty("column", &names)?;
                if names.contains(&schema.target.name) {
                    return Err(format!(
                        "target `{}` is also a feature column",
                        schema.target.name
                    ));
                }
                if let Some(hidden) = hidden
                    && (hidden.len() > 16 || hidden.iter().any(|&h| h == 0 || h > 4096))
                {
                    return Err("hidden: at most 16 layers of 1 to 4096 units".into());
                }
                Ok(())
            }
            ModelTemplate::ImageCnn { labels } => {
                if labels.len() < 2 || labels.len() > MAX_LABELS {
                    return Err(format!(
                        "an image model needs 2 to {MAX_LABELS} labels, got {}",
                        labels.len()
                    ));
                }
                unique_nonempty("label", labels)
            }
            ModelTemplate::Custom { layout } => validate_layout(layout),
        }
    }

    /// Tabular groups collect column summaries from their members before round 1.
    pub fn needs_statistics(&self) -> bool {
        matches!(self, ModelTemplate::Tabular { .. })
    }

    /// The layout, when it is known without the models crate's model spec.
    pub fn layout(&self) -> Option<WeightLayout> {
        match self {
            ModelTemplate::Custom { layout } => Some(layout.clone()),
            _ => None,
        }
    }
}

fn unique_nonempty(what: &str, names: &[String]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for n in names {
        if n.trim().is_empty() {
            return Err(format!("a {what} name is empty"));
        }
        if !seen.insert(n) {
            return Err(format!("{what} `{n}` appears twice"));
        }
    }
    Ok(())
}

/// Checks a custom layout: at least one tensor, unique names, at most 8 non-zero dimensions
/// each, at most [`MAX_PARAMS`] parameters in all.
pub fn validate_layout(layout: &WeightLayout) -> Result<(), String> {
    if layout.0.is_empty() {
        return Err("the layout has no tensors".into());
    }
    let names: Vec<String> = layout.0.iter().map(|t| t.name.clone()).collect();
    unique_nonempty("tensor", &names)?;
    let mut total: usize = 0;
    for TensorSpec { name, shape } in &layout.0 {
        if shape.len() > 8 || shape.contains(&0) {
            return Err(format!(
                "tensor `{name}` has shape {shape:?}: at most 8 dimensions, none zero"
            ));
        }
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= MAX_PARAMS);
        total = n
            .and_then(|n| total.checked_add(n))
            .filter(|&t| t <= MAX_PARAMS)
            .ok_or_else(|| format!("the model has more than {MAX_PARAMS} parameters"))?;
    }
    Ok(())
}

/// Optimiser of the clients' local steps.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// Plain SGD (no momentum).
    Sgd,
    Adam,
}

/// Local training settings, sent to clients with every round's config.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hyperparameters {
    pub rounds: u32,
    #[serde(default = "one")]
    pub local_epochs: u32,
    #[serde(default = "batch")]
    pub batch_size: u32,
    #[serde(default = "adam")]
    pub optimizer: Optimizer,
    #[serde(default = "lr")]
    pub lr: f64,
}

fn one() -> u32 {
    1
}
fn batch() -> u32 {
    32
}
fn adam() -> Optimizer {
    Optimizer::Adam
}
fn lr() -> f64 {
    1e-3
}

impl Hyperparameters {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.rounds) {
            return Err(format!("rounds must be 1..=10000, got {}", self.rounds));
        }
        if !(1..=1000).contains(&self.local_epochs) {
            return Err(format!(
                "local_epochs must be 1..=1000, got {}",
                self.local_epochs
            ));
        }
        if !(1..=65_536).contains(&self.batch_size) {
            return Err(format!(
                "batch_size must be 1..=65536, got {}",
                self.batch_size
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 10.0) {
            return Err(format!("lr must be in (0, 10], got {}", self.lr));
        }
        Ok(())
    }
}

/// A strategy configuration that can check itself: implemented by the server's
/// `StrategyConfig`; clients that only forward JSON use [`serde_json::Value`] (checked by the
/// server).
pub trait ValidateStrategy {
    fn validate_strategy(&self) -> Result<(), String>;
}

impl ValidateStrategy for Value {
    fn validate_strategy(&self) -> Result<(), String> {
        match self {
            Value::Object(m) if m.get("name").is_some_and(Value::is_string) => Ok(()),
            _ => Err("a strategy is an object like {\"name\": \"fedavg\"}".into()),
        }
    }
}

/// `POST /api/groups`. `S` is the strategy configuration: the server's typed `StrategyConfig`,
/// or JSON (`{"name": "fedadam", "eta": 0.1}`) in clients.
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(
        bound = "",
        description = "`POST /api/groups`: what the group trains, how, and with how many members."
    )
)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(
        deserialize = "S: Deserialize<'de> + Default",
        serialize = "S: Serialize"
    )
)]
pub struct CreateGroup<S = Value> {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub model: ModelTemplate,
    pub hyperparameters: Hyperparameters,
    /// The aggregation strategy and its settings, e.g. `{"name": "fedadam", "eta": 0.1}`;
    /// FedAvg when omitted.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub strategy: S,
    #[serde(default = "min_clients")]
    pub min_clients: u32,
    #[serde(default = "fraction")]
    pub fraction_fit: f64,
    #[serde(default = "deadline")]
    pub round_deadline_secs: u32,
    /// Optional bound on the L2 norm of `update - global model`.
    #[serde(default)]
    pub max_update_norm: Option<f64>,
    /// Secure aggregation (SecAgg+): the server learns only the sum of each round's updates.
    /// Absent for a plain group; `{}` for Flower's defaults.
    #[serde(default)]
    pub secagg: Option<crate::secagg::SecAggConfig>,
    /// How members send their updates (`f32`, `f16`, `int8`, `int8-tensor`,
    /// `topk:FRACTION`); `f32` when omitted.
    #[serde(default)]
    pub update_encoding: UpdateEncoding,
    /// Differential privacy (user-level): a target (epsilon, delta) and how members clip and
    /// noise their updates. Absent for a group without it.
    #[serde(default)]
    pub dp: Option<crate::dp::DpConfig>,
    /// Asynchronous buffered aggregation (FedBuff): a new version every `buffer_size`
    /// updates, whatever version each was trained from. Absent for synchronous rounds.
    #[serde(default, rename = "async", skip_serializing_if = "Option::is_none")]
    pub asynchronous: Option<AsyncConfig>,
}

/// Asynchronous buffered aggregation (FedBuff, Nguyen et al. 2022). Members train whenever
/// they are ready, from the newest version, and upload to the round they started from; the
/// server folds each update into the live round's buffer, weighted by its sample count times
/// `(1 + staleness)^-staleness_exponent` (staleness: versions published since the update's
/// base model), and publishes a version once `buffer_size` updates are in. An update more
/// than `max_staleness` versions behind is refused (409). `rounds` counts versions.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncConfig {
    /// K: updates per version, 1 to 10000.
    pub buffer_size: u32,
    /// Versions an update may be behind the buffer's base model, 0 to 1000 (default 10).
    #[serde(default = "max_staleness")]
    pub max_staleness: u32,
    /// The staleness discount's exponent, 0 to 10 (default 0.5: FedBuff's
    /// `1 / sqrt(1 + staleness)`; 0: no discount).
    #[serde(default = "staleness_exponent")]
    pub staleness_exponent: f64,
}

fn max_staleness() -> u32 {
    10
}
fn staleness_exponent() -> f64 {
    0.5
}

impl AsyncConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.buffer_size) {
            return Err(format!(
                "buffer_size must be 1..=10000, got {}",
                self.buffer_size
            ));
        }
        if self.max_staleness > 1000 {
            return Err(format!(
                "max_staleness must be 0..=1000, got {}",
                self.max_staleness
            ));
        }
        if !(self.staleness_exponent.is_finite() && (0.0..=10.0).contains(&self.staleness_exponent))
        {
            return Err(format!(
                "staleness_exponent must be a number in [0, 10], got {}",
                self.staleness_exponent
            ));
        }
        Ok(())
    }

    /// How much an update `staleness` versions behind weighs relative to a fresh one.
    pub fn staleness_weight(&self, staleness: u64) -> f64 {
        (1.0 + staleness as f64).powf(-self.staleness_exponent)
    }
}

fn min_clients() -> u32 {
    2
}
fn fraction() -> f64 {
    1.0
}
fn deadline() -> u32 {
    600
}

impl<S: ValidateStrategy> CreateGroup<S> {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err("name must be 1 to 200 characters".into());
        }
        if self.description.len() > 10_000 {
            return Err("description must be at most 10000 characters".into());
        }
        self.model.validate().map_err(|e| format!("model: {e}"))?;
        self.hyperparameters
            .validate()
            .map_err(|e| format!("hyperparameters: {e}"))?;
        self.strategy
            .validate_strategy()
            .map_err(|e| format!("strategy: {e}"))?;
        if !(1..=10_000).contains(&self.min_clients) {
            return Err(format!(
                "min_clients must be 1..=10000, got {}",
                self.min_clients
            ));
        }
        if !(self.fraction_fit > 0.0 && self.fraction_fit <= 1.0) {
            return Err(format!(
                "fraction_fit must be in (0, 1], got {}",
                self.fraction_fit
            ));
        }
        if !(1..=7 * 24 * 3600).contains(&self.round_deadline_secs) {
            return Err("round_deadline_secs must be 1 second to 7 days".into());
        }
        if let Some(n) = self.max_update_norm
            && !(n.is_finite() && n > 0.0)
        {
            return Err(format!("max_update_norm must be a number > 0, got {n}"));
        }
        if let Some(secagg) = &self.secagg {
            secagg.validate().map_err(|e| format!("secagg: {e}"))?;
            if self.min_clients < 2 {
                return Err(
                    "min_clients must be at least 2 with secure aggregation (the sum of one \
                     update is that update)"
                        .into(),
                );
            }
            if self.max_update_norm.is_some() {
                return Err(
                    "max_update_norm cannot be checked with secure aggregation (the server never \
                     sees an update); secagg.clipping_range bounds every value instead"
                        .into(),
                );
            }
            if self.update_encoding != UpdateEncoding::F32 {
                return Err(format!(
                    "update_encoding {} cannot be used with secure aggregation: secure rounds \
                     send their own integer encoding (the narrowest width secagg.modulus_range \
                     allows); leave update_encoding f32",
                    self.update_encoding
                ));
            }
            let most = secagg.max_clients();
            if self.min_clients as usize > most {
                return Err(format!(
                    "min_clients {} exceeds the {most} clients secagg.modulus_range / \
                     quantization_range can sum",
                    self.min_clients
                ));
            }
        }
        self.update_encoding
            .validate()
            .map_err(|e| format!("update_encoding: {e}"))?;
        if let Some(dp) = &self.dp {
            dp.validate().map_err(|e| format!("dp: {e}"))?;
            if self.max_update_norm.is_some() {
                return Err(
                    "max_update_norm cannot be combined with differential privacy: \
                     dp.clipping_norm bounds every update"
                        .into(),
                );
            }
            if self.update_encoding != UpdateEncoding::F32 {
                return Err(format!(
                    "update_encoding {} cannot be combined with differential privacy (a \
                     compressed update's norm is not the clipped one); leave update_encoding f32",
                    self.update_encoding
                ));
            }
            if self.secagg.is_some() && dp.adaptive.is_some() {
                return Err(
                    "dp.adaptive cannot be combined with secure aggregation: the server would \
                     see each member's clipped bit; give a fixed dp.clipping_norm"
                        .into(),
                );
            }
            if self.hyperparameters.rounds == 0 {
                return Err(
                    "dp: a group with differential privacy plans at least one round".into(),
                );
            }
        }
        if let Some(a) = &self.asynchronous {
            a.validate().map_err(|e| format!("async: {e}"))?;
            if self.secagg.is_some() {
                return Err(
                    "async cannot be combined with secure aggregation: its masks cancel only \
                     in one round's sum of the same members"
                        .into(),
                );
            }
            if self.dp.is_some() {
                return Err(
                    "async cannot be combined with differential privacy: the accountant counts \
                     synchronous rounds of sampled members"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

/// `201` answer to `POST /api/groups`: the creator is the owner and the first member.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
    pub group_id: i64,
    /// Others join with it (`POST /api/groups/join`).
    pub join_code: String,
    /// The creator's own membership.
    pub member_id: i64,
}

/// `POST /api/groups/join`: the signed-in caller becomes a member (`201`), or gets its
/// membership back (`200`) when it already is one, so a client that restarts joins again.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    #[serde(alias = "code")]
    pub join_code: String,
    /// How the other members see this one (e.g. the organisation); the server defaults it
    /// from the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The answer to a join.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Joined {
    pub group_id: i64,
    pub member_id: i64,
    #[serde(default)]
    pub name: String,
}

/// `POST /api/groups/{id}/ready`: the member has loaded its data and can train.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ready {
    pub num_samples: u64,
}

/// Where a group stands: `enrolling -> [statistics ->] training -> finished`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Members join and get ready.
    Enrolling,
    /// Tabular groups: members' column summaries arrive.
    Statistics,
    Training,
    Finished,
    /// A phase this client does not know.
    #[serde(other)]
    Unknown,
}

impl Phase {
    /// Every phase a server writes (not [`Phase::Unknown`]).
    pub const KNOWN: [Phase; 4] = [
        Phase::Enrolling,
        Phase::Statistics,
        Phase::Training,
        Phase::Finished,
    ];

    /// The wire (and database) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Enrolling => "enrolling",
            Phase::Statistics => "statistics",
            Phase::Training => "training",
            Phase::Finished => "finished",
            Phase::Unknown => "unknown",
        }
    }

    /// From its name; [`Phase::Unknown`] for any other.
    pub fn parse(name: &str) -> Phase {
        Phase::KNOWN
            .into_iter()
            .find(|p| p.as_str() == name)
            .unwrap_or(Phase::Unknown)
    }
}

known_values_schema!(
    Phase,
    "Where a group stands: enrolling -> [statistics ->] training -> finished."
);

/// How the caller relates to a group it may see, strongest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRole {
    /// Created the group (and is a member of it unless it left).
    Owner,
    /// An active member.
    Member,
    /// An administrator with no active membership: may see and manage, not train.
    Admin,
    /// Was a member and left: may still read the group's rounds and models.
    Left,
}

impl GroupRole {
    /// From the raw facts; `membership` is whether the caller's newest membership is active
    /// (`None`: it never was a member). `None` when the caller may not see the group.
    pub fn of(is_owner: bool, membership: Option<bool>, is_admin: bool) -> Option<GroupRole> {
        if is_owner {
            Some(GroupRole::Owner)
        } else if membership == Some(true) {
            Some(GroupRole::Member)
        } else if is_admin {
            Some(GroupRole::Admin)
        } else if membership == Some(false) {
            Some(GroupRole::Left)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupRole::Owner => "owner",
            GroupRole::Member => "member",
            GroupRole::Admin => "admin",
            GroupRole::Left => "left",
        }
    }
}

/// A membership's role in its group's member list.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// The membership of the group's creator.
    Owner,
    Member,
}

/// Where a selected member stands in a round: `selected -> reported | failed | dropped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Selected and training: an update is expected.
    Selected,
    /// Its update was accepted.
    Reported,
    /// It reported that it cannot deliver, or the round failed first.
    Failed,
    /// It left the group during the round.
    Dropped,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

impl MemberStatus {
    /// Every status a server writes (not [`MemberStatus::Unknown`]).
    pub const KNOWN: [MemberStatus; 4] = [
        MemberStatus::Selected,
        MemberStatus::Reported,
        MemberStatus::Failed,
        MemberStatus::Dropped,
    ];

    /// The wire (and database) name.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Selected => "selected",
            MemberStatus::Reported => "reported",
            MemberStatus::Failed => "failed",
            MemberStatus::Dropped => "dropped",
            MemberStatus::Unknown => "unknown",
        }
    }

    /// From its name; [`MemberStatus::Unknown`] for any other.
    pub fn parse(name: &str) -> MemberStatus {
        MemberStatus::KNOWN
            .into_iter()
            .find(|s| s.as_str() == name)
            .unwrap_or(MemberStatus::Unknown)
    }
}

known_values_schema!(
    MemberStatus,
    "Where a selected member stands in a round: selected -> reported | failed | dropped."
);

/// The kind of a group's model: the `kind` of its [`ModelTemplate`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Tabular,
    ImageCnn,
    Custom,
}

impl ModelTemplate {
    pub fn kind(&self) -> ModelKind {
        match self {
            ModelTemplate::Tabular { .. } => ModelKind::Tabular,
            ModelTemplate::ImageCnn { .. } => ModelKind::ImageCnn,
            ModelTemplate::Custom { .. } => ModelKind::Custom,
        }
    }
}

/// One group of `GET /api/groups`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `None` when the stored template cannot be read.
    #[serde(default)]
    pub model_kind: Option<ModelKind>,
    pub phase: Phase,
    /// Rounds to train.
    #[serde(default)]
    pub rounds: i64,
    /// The newest round, once training started.
    #[serde(default)]
    pub current_round: Option<i64>,
    #[serde(default)]
    pub current_round_state: Option<RoundState>,
    /// Active memberships.
    #[serde(default)]
    pub members: i64,
    /// The caller's role.
    pub role: GroupRole,
    /// The caller's active membership.
    #[serde(default)]
    pub member_id: Option<i64>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
}

/// `GET /api/groups`: the groups the caller owns or joined (administrators: every group),
/// newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupList {
    pub groups: Vec<GroupSummary>,
}

/// `GET /api/groups/{id}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupView {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub model: ModelTemplate,
    pub hyperparameters: Hyperparameters,
    /// The strategy configuration, e.g. `{"name": "fedavg"}`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub strategy: Value,
    pub phase: Phase,
    /// Rounds to train.
    #[serde(default)]
    pub rounds: i64,
    #[serde(default)]
    pub min_clients: i64,
    #[serde(default = "fraction")]
    pub fraction_fit: f64,
    #[serde(default = "deadline_i64")]
    pub round_deadline_secs: i64,
    #[serde(default)]
    pub max_update_norm: Option<f64>,
    /// How members send their updates (`f32` from servers that do not say).
    #[serde(default)]
    pub update_encoding: UpdateEncoding,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// Active memberships.
    #[serde(default)]
    pub members: i64,
    /// Active memberships that are ready to train.
    #[serde(default)]
    pub ready_members: i64,
    #[serde(default)]
    pub current_round: Option<i64>,
    #[serde(default)]
    pub current_round_state: Option<RoundState>,
    /// Shown to those who manage the group only.
    #[serde(default)]
    pub join_code: Option<String>,
    /// The caller's role; `None` from servers that do not say.
    #[serde(default)]
    pub role: Option<GroupRole>,
    /// The caller's active membership.
    #[serde(default)]
    pub member_id: Option<i64>,
    /// Every membership with where it stands (`members` stays the count of active ones).
    /// Empty from servers that do not list members.
    #[serde(default)]
    pub member_list: Vec<GroupMember>,
    /// When the current round stops waiting for updates (RFC 3339), while it is live.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub current_round_deadline_at: Option<String>,
    /// Its owner paused training: the live round finishes, no new one opens until it resumes.
    #[serde(default)]
    pub paused: bool,
    /// Its owner (or an administrator) cancelled training: the phase is `finished` early.
    #[serde(default)]
    pub cancelled: bool,
    /// Secure aggregation's settings; absent for a plain group.
    #[serde(default)]
    pub secagg: Option<crate::secagg::SecAggConfig>,
    /// Differential privacy: the parameters members accept, and what the group spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<GroupPrivacy>,
    /// Asynchronous buffered aggregation's settings; absent for synchronous rounds.
    #[serde(default, rename = "async", skip_serializing_if = "Option::is_none")]
    pub asynchronous: Option<AsyncConfig>,
}

/// A DP group's privacy: its parameters and the budget spent by its released versions.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupPrivacy {
    pub params: crate::dp::DpParams,
    /// Epsilon (at `params.delta`) of the latest released version: every closed round counts.
    #[serde(default)]
    pub spent_epsilon: f64,
    /// Closed rounds the accountant counted.
    #[serde(default)]
    pub rounds_counted: i64,
    /// The clipping norm of the next round (adaptive clipping moves it).
    #[serde(default)]
    pub clipping_norm: f64,
    /// Why training stopped before its planned rounds, when the budget ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_exhausted: Option<String>,
}

/// One round's privacy, in its view: what members clipped to, the noise, and (once closed) the
/// epsilon spent with its version.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundPrivacy {
    pub clipping_norm: f64,
    pub noise_multiplier: f64,
    pub sampling_rate: f64,
    pub delta: f64,
    /// Epsilon spent after this round; absent until it closes (a failed round releases
    /// nothing and spends nothing).
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// Adaptive clipping: the noisy share of unclipped updates (never the exact count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unclipped_fraction: Option<f64>,
}

/// The (epsilon, delta) a version of a DP group cost its members.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VersionPrivacy {
    pub epsilon: f64,
    pub delta: f64,
}

fn deadline_i64() -> i64 {
    deadline().into()
}

/// One membership of a group as those who may see the group see it: no email, no data size.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMember {
    pub member_id: i64,
    /// The name given when joining.
    pub name: String,
    pub role: MemberRole,
    /// Picked its data and is ready to train.
    #[serde(default)]
    pub ready: bool,
    /// Left the group.
    #[serde(default)]
    pub left: bool,
    /// In the group's current (latest) round; `None` when not selected or before round 1.
    #[serde(default)]
    pub round_status: Option<MemberStatus>,
    /// Whether its client is connected to this server now; `None` from servers that do not say.
    #[serde(default)]
    pub presence: Option<Presence>,
    /// How far its local training of the current round is, 0 to 1, while it trains (from
    /// its heartbeats).
    #[serde(default)]
    pub progress: Option<f64>,
}

/// Whether a member's client is connected, as the server sees it: an open event stream, or
/// a heartbeat within the last half minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Connected now.
    Connected,
    /// Was connected and went away (its tab closed, its program stopped): not selected
    /// again until it returns, and rounds stop waiting for it.
    Gone,
    /// Not connected since this server started (a client that polls, or has not come yet).
    Unseen,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

impl Presence {
    /// Every value a server writes (not [`Presence::Unknown`]).
    pub const KNOWN: [Presence; 3] = [Presence::Connected, Presence::Gone, Presence::Unseen];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Connected => "connected",
            Presence::Gone => "gone",
            Presence::Unseen => "unseen",
            Presence::Unknown => "unknown",
        }
    }
}

known_values_schema!(
    Presence,
    "Whether a member's client is connected: connected, gone (was connected and went away), unseen (not since the server started)."
);

/// `POST /api/groups/{id}/rounds/{n}/progress`: a training member's heartbeat.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// How much of the round's local training is done, 0 to 1.
    pub fraction: f64,
}

/// The answer to a heartbeat.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressAccepted {
    pub round: i64,
    pub member_id: i64,
    pub fraction: f64,
}

/// The answer to the owner's controls (pause, resume, cancel, close the round, remove a
/// member): where training stands afterwards.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingControl {
    pub group_id: i64,
    pub phase: Phase,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub cancelled: bool,
    #[serde(default)]
    pub current_round: Option<i64>,
    #[serde(default)]
    pub current_round_state: Option<RoundState>,
}

/// `200` answer to `POST /api/groups/{id}/ready`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberReady {
    pub member_id: i64,
    /// Always `true`.
    pub ready: bool,
    pub num_samples: u64,
}

/// `200` answer to `POST /api/groups/{id}/leave`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberLeft {
    pub member_id: i64,
    /// Always `true`.
    pub left: bool,
}

/// `202` answer to `POST /api/groups/{id}/statistics`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatisticsAccepted {
    pub member_id: i64,
    /// Always `true`.
    pub accepted: bool,
}

/// `200` answer to `POST /api/groups/{id}/start`: round 1 is open.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingStarted {
    pub group_id: i64,
    /// `training`.
    pub phase: Phase,
    /// The round that opened (1).
    pub round: i64,
}

/// A round's state: `open -> collecting -> aggregating -> closed | failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundState {
    Open,
    Collecting,
    Aggregating,
    Closed,
    Failed,
    #[serde(other)]
    Unknown,
}

impl RoundState {
    /// Every state a server writes (not [`RoundState::Unknown`]).
    pub const KNOWN: [RoundState; 5] = [
        RoundState::Open,
        RoundState::Collecting,
        RoundState::Aggregating,
        RoundState::Closed,
        RoundState::Failed,
    ];

    /// Still taking updates.
    pub fn is_live(self) -> bool {
        matches!(self, RoundState::Open | RoundState::Collecting)
    }

    /// The wire (and database) name.
    pub fn as_str(self) -> &'static str {
        match self {
            RoundState::Open => "open",
            RoundState::Collecting => "collecting",
            RoundState::Aggregating => "aggregating",
            RoundState::Closed => "closed",
            RoundState::Failed => "failed",
            RoundState::Unknown => "unknown",
        }
    }

    /// From its name; [`RoundState::Unknown`] for any other.
    pub fn parse(name: &str) -> RoundState {
        RoundState::KNOWN
            .into_iter()
            .find(|s| s.as_str() == name)
            .unwrap_or(RoundState::Unknown)
    }
}

known_values_schema!(
    RoundState,
    "A round's state: open -> collecting -> aggregating -> closed | failed."
);

/// The training settings of one round, as the server sends them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundConfig {
    pub round: i64,
    /// Goes into every update's metadata.
    pub model_id: String,
    /// The version the round trains from.
    pub base_version_id: i64,
    pub local_epochs: u32,
    pub batch_size: u32,
    pub optimizer: Optimizer,
    pub lr: f64,
    /// How the update is to be encoded (`f32` from servers that do not say).
    #[serde(default)]
    pub update_encoding: UpdateEncoding,
    /// Everything else, e.g. the strategy and its `proximal_mu`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RoundConfig {
    /// A secure round's resolved SecAgg+ settings (`secagg` in the config).
    pub fn secagg(&self) -> Option<crate::secagg::EffectiveConfig> {
        self.extra
            .get("secagg")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// A DP round's privacy settings (`dp` in the config).
    pub fn dp(&self) -> Option<crate::dp::RoundDp> {
        self.extra
            .get("dp")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// FedProx's proximal weight, 0 for other strategies.
    pub fn proximal_mu(&self) -> f64 {
        self.extra
            .get("proximal_mu")
            .and_then(Value::as_f64)
            .filter(|m| m.is_finite() && *m >= 0.0)
            .unwrap_or(0.0)
    }
}

/// A member's place in a round (`rounds/current` only).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundYou {
    pub member_id: i64,
    pub selected: bool,
    /// `None` when not selected.
    #[serde(default)]
    pub status: Option<MemberStatus>,
}

impl RoundYou {
    /// Selected and not yet reported or failed: an update is expected.
    pub fn must_train(&self) -> bool {
        self.selected && self.status == Some(MemberStatus::Selected)
    }
}

/// One client's numbers in a round.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientMetrics {
    pub member_id: i64,
    pub num_samples: i64,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// An asynchronous group's update: how many versions behind the buffer's base model it
    /// was trained (0: from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staleness: Option<i64>,
}

/// The evaluations members reported for a round's resulting model.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RoundEvaluation {
    #[serde(default)]
    pub clients: Vec<ClientMetrics>,
    /// Sample-weighted mean of every metric.
    #[serde(default)]
    pub aggregate: BTreeMap<String, f64>,
}

/// `GET /api/groups/{id}/rounds/{n}` and `.../rounds/current`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundView {
    pub round: i64,
    pub state: RoundState,
    pub base_version_id: i64,
    #[serde(default)]
    pub result_version_id: Option<i64>,
    pub config: RoundConfig,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub opened_at: String,
    /// When the round stops waiting for updates.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub deadline_at: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub closed_at: Option<String>,
    /// Why the round failed.
    #[serde(default)]
    pub failure: Option<String>,
    /// The strategy's aggregate of the clients' training metrics.
    #[serde(default)]
    pub metrics: Option<BTreeMap<String, f64>>,
    /// Members selected for the round.
    #[serde(default)]
    pub selected: i64,
    /// Selected members whose update was accepted.
    #[serde(default)]
    pub reported: i64,
    /// Each accepted update's numbers; absent from brief answers (`rounds/current?brief=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_metrics: Option<Vec<ClientMetrics>>,
    /// Absent from brief answers (`rounds/current?brief=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<RoundEvaluation>,
    /// The calling member's place (`rounds/current` for an active member only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub you: Option<RoundYou>,
    /// No round follows this one: the group's last, or training was cancelled.
    #[serde(default)]
    pub final_round: bool,
    /// A secure group's round: its stage and who dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secagg: Option<secagg::SecAggRoundSummary>,
    /// A DP group's round: clipping, noise and the epsilon spent once it closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<RoundPrivacy>,
    /// An asynchronous group's round is a buffer: how full it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<RoundBuffer>,
}

/// The buffer of an asynchronous group's round: a version is published when `filled`
/// reaches `size` (or at the deadline with at least one update).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundBuffer {
    /// K, the group's `async.buffer_size`.
    pub size: i64,
    /// Updates folded in so far.
    pub filled: i64,
    /// Of those, updates trained from an older version.
    pub stale: i64,
}

/// `GET /api/groups/{id}/rounds`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundList {
    pub rounds: Vec<RoundView>,
}

/// The answer to an accepted update; a retry of the same bytes gets exactly the same.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    pub update_id: i64,
    pub round: i64,
    pub num_samples: i64,
    pub sha256: String,
    /// An asynchronous group: the round whose buffer took the update (a later one than
    /// `round` when versions were published while the member trained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffered_in: Option<i64>,
    /// An asynchronous group: versions published between the update's base model and the
    /// buffer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staleness: Option<i64>,
}

/// `POST /api/groups/{id}/rounds/{n}/failure`: a selected member cannot deliver this round.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// Kept to its first 1000 characters.
    pub reason: String,
}

/// The answer to a reported failure.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureReported {
    pub round: i64,
    pub member_id: i64,
    /// `failed`.
    pub status: MemberStatus,
}

/// `POST /api/groups/{id}/rounds/{n}/evaluation`: a member's metrics of round `n`'s resulting
/// model on its own held-out rows.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    pub num_samples: u64,
    pub metrics: BTreeMap<String, f64>,
}

impl Evaluation {
    /// Checks a report against the server's bounds: 1 to 2^40 rows, at most `max_metrics`
    /// metrics (`flag`: the setting that says so, named in the message), each with a name of 1
    /// to [`crate::weights::MAX_METRIC_NAME_CHARS`] characters and a finite value.
    pub fn check(&self, max_metrics: usize, flag: &str) -> Result<(), String> {
        use crate::weights::MAX_METRIC_NAME_CHARS;
        if self.num_samples == 0 || self.num_samples > 1 << 40 {
            return Err(format!(
                "num_samples must be between 1 and 2^40, got {}",
                self.num_samples
            ));
        }
        if self.metrics.len() > max_metrics {
            return Err(format!(
                "an evaluation may report at most {max_metrics} metrics ({flag}); this one has {}",
                self.metrics.len()
            ));
        }
        if let Some((name, _)) = self.metrics.iter().find(|(k, v)| {
            let chars = k.chars().count();
            !v.is_finite() || chars == 0 || chars > MAX_METRIC_NAME_CHARS
        }) {
            let shown: String = name.chars().take(20).collect();
            return Err(format!(
                "metric `{shown}` must have a name of 1 to {MAX_METRIC_NAME_CHARS} characters \
                 and a finite value"
            ));
        }
        Ok(())
    }
}

/// The answer to an evaluation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationAccepted {
    pub round: i64,
    pub member_id: i64,
    /// Always `true`.
    pub accepted: bool,
}

/// A model version of the registry (`GET /api/versions/{id}`, `GET /api/groups/{id}/versions`).
/// (Registry's type; its other types are in [`registry`].)
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    pub id: i64,
    pub group_id: i64,
    pub round: i64,
    #[serde(default)]
    pub parent_id: Option<i64>,
    /// A [`crate::ModelSpec`] for tabular and image groups; `{model_id, layout}` for custom ones.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub spec: Value,
    #[serde(default)]
    pub metrics: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    pub weights_sha256: String,
    #[serde(default)]
    pub num_params: i64,
    /// Size of the weights file (safetensors) in bytes.
    #[serde(default)]
    pub size_bytes: i64,
    /// The updates aggregated into this version (none for round 0 and published models).
    #[serde(default)]
    pub contributors: Vec<registry::Contributor>,
    /// `GET /api/versions/{id}/onnx` has its ONNX export (custom layouts have none).
    #[serde(default)]
    pub has_onnx: bool,
    /// What it cost the members of a DP group; absent for other groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<VersionPrivacy>,
    /// When it was stored (RFC 3339).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
}

/// `GET /api/groups/{id}/versions`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionList {
    pub versions: Vec<VersionView>,
}

/// Something clients of a group should react to, from `GET /api/groups/{id}/events`
/// (Server-Sent Events named by [`GroupEvent::kind`], data the JSON of the event). Besides
/// these, a stream may send a `lagged` event (data `{}`) when the client fell behind: it
/// should read the group again.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GroupEvent {
    /// Sent first on every connection: where the group stands now.
    Snapshot {
        phase: Phase,
        current_round: Option<i64>,
        round_state: Option<RoundState>,
    },
    PhaseChanged {
        phase: Phase,
    },
    RoundOpened {
        round: i64,
        /// RFC 3339.
        #[cfg_attr(feature = "openapi", schema(format = DateTime))]
        deadline_at: String,
    },
    RoundClosed {
        round: i64,
        version_id: i64,
    },
    RoundFailed {
        round: i64,
        reason: String,
    },
    MemberJoined {
        member_id: i64,
    },
    /// A member left or its owner removed it.
    MemberLeft {
        member_id: i64,
    },
    /// A member's client connected or went away.
    MemberPresence {
        member_id: i64,
        presence: Presence,
    },
    /// A member's heartbeat while it trains round `round`.
    MemberProgress {
        member_id: i64,
        round: i64,
        fraction: f64,
    },
    /// The owner paused (`true`) or resumed training.
    Paused {
        paused: bool,
    },
    /// A secure round moved to another SecAgg+ stage.
    SecaggStage {
        round: i64,
        stage: secagg::SecAggStage,
    },
}

impl GroupEvent {
    /// The SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            GroupEvent::Snapshot { .. } => "snapshot",
            GroupEvent::PhaseChanged { .. } => "phase_changed",
            GroupEvent::RoundOpened { .. } => "round_opened",
            GroupEvent::RoundClosed { .. } => "round_closed",
            GroupEvent::RoundFailed { .. } => "round_failed",
            GroupEvent::MemberJoined { .. } => "member_joined",
            GroupEvent::MemberLeft { .. } => "member_left",
            GroupEvent::MemberPresence { .. } => "member_presence",
            GroupEvent::MemberProgress { .. } => "member_progress",
            GroupEvent::Paused { .. } => "paused",
            GroupEvent::SecaggStage { .. } => "secagg_stage",
        }
    }
}

/// The body of every 4xx/5xx answer: `{"error": {"code", "message"}}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layouts_are_checked() {
        let ok = WeightLayout(vec![TensorSpec::new("w", vec![2, 3])]);
        assert!(validate_layout(&ok).is_ok());
        let dup = WeightLayout(vec![
            TensorSpec::new("w", vec![2]),
            TensorSpec::new("w", vec![2]),
        ]);
        assert!(validate_layout(&dup).unwrap_err().contains("twice"));
        let huge = WeightLayout(vec![TensorSpec::new("w", vec![usize::MAX, 2])]);
        assert!(validate_layout(&huge).unwrap_err().contains("more than"));
        let zero = WeightLayout(vec![TensorSpec::new("w", vec![0])]);
        assert!(validate_layout(&zero).is_err());
    }

    #[test]
    fn create_group_defaults_and_checks() {
        let req: CreateGroup = serde_json::from_value(json!({
            "name": "g",
            "model": { "kind": "image_cnn", "labels": ["cat", "dog"] },
            "hyperparameters": { "rounds": 3 },
            "strategy": { "name": "fedavg" },
        }))
        .unwrap();
        assert_eq!((req.min_clients, req.hyperparameters.batch_size), (2, 32));
        req.validate().unwrap();
        let mut bad = req.clone();
        bad.strategy = json!("fedavg");
        assert!(bad.validate().unwrap_err().starts_with("strategy"));
        let mut bad = req.clone();
        bad.model = ModelTemplate::ImageCnn {
            labels: vec!["a".into(), "a".into()],
        };
        assert!(bad.validate().unwrap_err().contains("twice"));
        let typo = serde_json::from_value::<CreateGroup>(json!({
            "name": "g", "model": { "kind": "image_cnn", "labels": ["a", "b"] },
            "hyperparameters": { "rounds": 1 }, "min_client": 3,
        }));
        assert!(typo.unwrap_err().to_string().contains("min_client"));
    }

    #[test]
    fn responses_ignore_unknown_fields_and_phases() {
        let r: RoundView = serde_json::from_value(json!({
            "round": 2, "state": "collecting", "base_version_id": 7,
            "config": { "round": 2, "model_id": "group-1", "base_version_id": 7,
                "local_epochs": 5, "batch_size": 32, "optimizer": "adam", "lr": 0.001,
                "strategy": { "name": "fedprox", "proximal_mu": 0.1 }, "proximal_mu": 0.1 },
            "you": { "member_id": 3, "selected": true, "status": "selected" },
            "something_new": true,
        }))
        .unwrap();
        assert!(r.state.is_live() && r.you.unwrap().must_train());
        assert!((r.config.proximal_mu() - 0.1).abs() < 1e-12);
        let p: Phase = serde_json::from_value(json!("paused")).unwrap();
        assert_eq!(p, Phase::Unknown);
    }

    #[test]
    fn group_views_read_with_and_without_a_member_list() {
        let mut body = json!({
            "id": 4, "name": "g", "phase": "training", "members": 2, "ready_members": 1,
            "model": { "kind": "custom", "layout": [{ "name": "w", "shape": [2] }] },
            "hyperparameters": { "rounds": 1 },
        });
        let old: GroupView = serde_json::from_value(body.clone()).unwrap();
        assert_eq!((old.members, old.member_list.len()), (2, 0));
        body["member_list"] = json!([
            { "member_id": 7, "name": "org a", "role": "owner", "ready": true, "left": false,
              "round_status": "reported" },
            { "member_id": 9, "name": "org b", "role": "member" },
        ]);
        let new: GroupView = serde_json::from_value(body).unwrap();
        assert_eq!(new.members, 2);
        let a = &new.member_list[0];
        assert_eq!(
            (a.role, a.ready, a.round_status),
            (MemberRole::Owner, true, Some(MemberStatus::Reported))
        );
        let b = &new.member_list[1];
        assert_eq!((b.ready, b.left, b.round_status), (false, false, None));
    }

    #[test]
    fn events_round_trip_with_their_kind() {
        let e = GroupEvent::RoundOpened {
            round: 3,
            deadline_at: "2026-01-01T00:00:10Z".into(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], e.kind());
        assert_eq!(serde_json::from_value::<GroupEvent>(v).unwrap(), e);
        let snapshot = GroupEvent::Snapshot {
            phase: Phase::Training,
            current_round: Some(2),
            round_state: Some(RoundState::Collecting),
        };
        assert_eq!(
            serde_json::to_value(&snapshot).unwrap(),
            json!({ "type": "snapshot", "phase": "training", "current_round": 2,
                    "round_state": "collecting" })
        );
    }

    #[test]
    fn state_names_are_the_wire_names() {
        for p in Phase::KNOWN {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
            assert_eq!(Phase::parse(p.as_str()), p);
        }
        for s in RoundState::KNOWN {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(RoundState::parse(s.as_str()), s);
        }
        for s in MemberStatus::KNOWN {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(MemberStatus::parse(s.as_str()), s);
        }
        assert_eq!(Phase::parse("paused"), Phase::Unknown);
        assert_eq!(RoundState::parse(""), RoundState::Unknown);
        for r in [
            GroupRole::Owner,
            GroupRole::Member,
            GroupRole::Admin,
            GroupRole::Left,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        let kind = |t: &str| {
            serde_json::to_value(serde_json::from_str::<ModelTemplate>(t).unwrap().kind())
        };
        assert_eq!(
            kind(r#"{"kind": "image_cnn", "labels": ["a", "b"]}"#).unwrap(),
            "image_cnn"
        );
    }

    #[test]
    fn a_written_round_view_has_the_fields_clients_read() {
        let config: RoundConfig = serde_json::from_value(json!({
            "round": 1, "model_id": "group-1", "base_version_id": 7, "local_epochs": 1,
            "batch_size": 32, "optimizer": "sgd", "lr": 0.01,
            "strategy": { "name": "fedavg" },
        }))
        .unwrap();
        let mut view = RoundView {
            round: 1,
            state: RoundState::Open,
            base_version_id: 7,
            result_version_id: None,
            config,
            opened_at: "2026-01-01T00:00:00Z".into(),
            deadline_at: "2026-01-01T00:10:00Z".into(),
            closed_at: None,
            failure: None,
            metrics: None,
            selected: 2,
            reported: 0,
            client_metrics: None,
            evaluation: None,
            you: Some(RoundYou {
                member_id: 3,
                selected: true,
                status: Some(MemberStatus::Selected),
            }),
            final_round: false,
            secagg: None,
            privacy: None,
            buffer: None,
        };
        let brief = serde_json::to_value(&view).unwrap();
        // Brief answers leave the per-client lists out; nulls stay.
        assert!(brief.get("client_metrics").is_none() && brief.get("evaluation").is_none());
        assert_eq!(brief["closed_at"], Value::Null);
        assert_eq!(brief["state"], "open");
        assert_eq!(brief["you"]["status"], "selected");
        assert_eq!(brief["config"]["strategy"]["name"], "fedavg");
        assert_eq!(brief["config"]["optimizer"], "sgd");
        assert_eq!(brief["deadline_at"], "2026-01-01T00:10:00Z");
        view.client_metrics = Some(Vec::new());
        view.evaluation = Some(RoundEvaluation::default());
        view.you = None;
        let full = serde_json::to_value(&view).unwrap();
        assert_eq!(full["client_metrics"], json!([]));
        assert_eq!(
            full["evaluation"],
            json!({ "clients": [], "aggregate": {} })
        );
        assert!(full.get("you").is_none());
        let back: RoundView = serde_json::from_value(full).unwrap();
        assert_eq!(back, view);
    }
}
