//! Secure aggregation's wire types (`/api/groups/{id}/rounds/{n}/secagg...`): what a selected
//! member reads in each stage and sends, and what everyone who sees the group reads of a
//! secure round. The protocol itself is [`crate::secagg`].

use serde::{Deserialize, Serialize};

use crate::secagg::{EffectiveConfig, EncryptedShare, NeighbourKeys, UnmaskRequest, UnmaskShare};

/// Where a secure round stands (within the round's `collecting` state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecAggStage {
    /// Selected members advertise their public keys.
    Advertise,
    /// Members send each neighbour its encrypted shares.
    Share,
    /// Members train and upload their masked vectors.
    Masked,
    /// Survivors hand back the shares that remove the masks.
    Unmask,
    /// The server has what it needs: aggregation runs, or ran.
    Done,
    /// The round failed in a SecAgg stage.
    Failed,
    /// A stage this client does not know.
    #[serde(other)]
    Unknown,
}

impl SecAggStage {
    /// Every stage a server writes.
    pub const KNOWN: [SecAggStage; 6] = [
        SecAggStage::Advertise,
        SecAggStage::Share,
        SecAggStage::Masked,
        SecAggStage::Unmask,
        SecAggStage::Done,
        SecAggStage::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SecAggStage::Advertise => "advertise",
            SecAggStage::Share => "share",
            SecAggStage::Masked => "masked",
            SecAggStage::Unmask => "unmask",
            SecAggStage::Done => "done",
            SecAggStage::Failed => "failed",
            SecAggStage::Unknown => "unknown",
        }
    }

    pub fn parse(name: &str) -> SecAggStage {
        SecAggStage::KNOWN
            .into_iter()
            .find(|s| s.as_str() == name)
            .unwrap_or(SecAggStage::Unknown)
    }

    /// The stage's place in the protocol (advertise 0 .. done 4; failed and unknown last).
    pub fn order(self) -> u8 {
        match self {
            SecAggStage::Advertise => 0,
            SecAggStage::Share => 1,
            SecAggStage::Masked => 2,
            SecAggStage::Unmask => 3,
            SecAggStage::Done => 4,
            SecAggStage::Failed | SecAggStage::Unknown => 5,
        }
    }
}

known_values_schema!(
    SecAggStage,
    "A secure round's stage: advertise -> share -> masked -> unmask -> done | failed."
);

/// `GET /api/groups/{id}/rounds/{n}/secagg`: what the calling selected member needs now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecAggView {
    pub round: i64,
    pub stage: SecAggStage,
    /// When the current stage stops waiting (RFC 3339).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub stage_deadline_at: String,
    pub config: EffectiveConfig,
    /// The round's selected members in ring order (the communication graph).
    pub ring: Vec<i64>,
    /// From the share stage on: the advertised keys of the caller's neighbours.
    #[serde(default)]
    pub keys: Vec<NeighbourKeys>,
    /// From the masked stage on: the shares addressed to the caller by neighbours that
    /// completed the share stage.
    #[serde(default)]
    pub shares: Vec<EncryptedShare>,
    /// In the unmask stage, for a member whose masked vector arrived: whose shares to return.
    #[serde(default)]
    pub unmask: Option<UnmaskRequest>,
    /// The caller still has to act in this stage.
    #[serde(default)]
    pub expected: bool,
}

/// `POST .../secagg/shares`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareUpload {
    pub shares: Vec<EncryptedShare>,
}

/// `POST .../secagg/unmask`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnmaskUpload {
    pub shares: Vec<UnmaskShare>,
}

/// The answer to an accepted SecAgg message (a retry of the same message gets the same).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecAggAccepted {
    pub round: i64,
    /// The stage the message belonged to.
    pub stage: SecAggStage,
}

/// A secure round as everyone who sees the group sees it (in [`super::RoundView`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SecAggRoundSummary {
    pub stage: Option<SecAggStage>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub stage_deadline_at: String,
    #[serde(default)]
    pub num_shares: u32,
    #[serde(default)]
    pub reconstruction_threshold: u32,
    /// Members that advertised keys, sent shares, sent a masked vector, answered the unmask stage.
    #[serde(default)]
    pub advertised: u32,
    #[serde(default)]
    pub shared: u32,
    #[serde(default)]
    pub survived: u32,
    #[serde(default)]
    pub answered: u32,
    /// Members that sent their shares but no masked vector: their masks were removed with
    /// the others' shares of their key.
    #[serde(default)]
    pub dropped: Vec<i64>,
    /// `true` once the sum was unmasked, `false` when unmasking failed (see the round's
    /// failure), absent before.
    #[serde(default)]
    pub unmasked: Option<bool>,
}
