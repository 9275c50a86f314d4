//! A client's side of one secure round: its secrets, the shares it holds for its neighbours,
//! and the messages of each stage.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::keys::{Context, PublicKeys, SecretKeys};
use super::shamir::Share;
use super::{EffectiveConfig, EncryptedShare, SecAggError, UnmaskRequest, UnmaskShare};

/// A client's advertised keys, as the server lists them in the share stage.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourKeys {
    pub member_id: i64,
    pub keys: PublicKeys,
}

/// A share a client decrypted: from whom, and its two halves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub from: i64,
    pub seed: Share,
    pub key: Share,
}

/// One client's state for one round. Lives in memory only: a client that loses it (a closed
/// tab) is a dropout, which the protocol recovers from.
pub struct ClientRound {
    ctx: Context,
    me: i64,
    cfg: EffectiveConfig,
    secrets: SecretKeys,
    public: PublicKeys,
    /// Neighbours that advertised keys, by member id (filled by `share_keys`).
    neighbours: BTreeMap<i64, PublicKeys>,
    /// The self-mask seed `b` (drawn by `share_keys`).
    seed: Option<[u8; 32]>,
    /// This client's own shares of its `b` and `s` (it holds one of each).
    own: Option<(Share, Share)>,
    /// Shares received from neighbours that completed the share stage (`receive_shares`).
    held: BTreeMap<i64, Received>,
}

impl ClientRound {
    /// Stage 1: fresh key pairs for round `ctx` as member `me`.
    pub fn new<R: rand::CryptoRng + ?Sized>(
        ctx: Context,
        me: i64,
        cfg: EffectiveConfig,
        rng: &mut R,
    ) -> ClientRound {
        todo!()
    }

    pub fn public_keys(&self) -> PublicKeys {
        self.public
    }

    pub fn member_id(&self) -> i64 {
        self.me
    }

    /// Stage 2: with the round's ring and the keys the server lists, draws `b`, splits `b` and
    /// `s`, and returns one encrypted share per neighbour (per [`super::graph::neighbours`])
    /// that advertised keys. Errors when this client is not on the ring, when fewer than
    /// `reconstruction_threshold - 1` neighbours advertised (its secrets could not be rebuilt),
    /// or when a listed key is invalid.
    pub fn share_keys<R: rand::CryptoRng + ?Sized>(
        &mut self,
        ring: &[i64],
        advertised: &[NeighbourKeys],
        rng: &mut R,
    ) -> Result<Vec<EncryptedShare>, SecAggError> {
        todo!()
    }

    /// Stage 3, first half: decrypts the shares addressed to this client. Refuses a share not
    /// addressed to it, from a non-neighbour, twice from one sender, or that does not decrypt.
    /// The senders are the neighbours this client masks with.
    pub fn receive_shares(&mut self, incoming: &[EncryptedShare]) -> Result<(), SecAggError> {
        todo!()
    }

    /// Stage 3: the masked vector (`delta.len() + 1` entries below `modulus_range`) of the
    /// update `delta` (the change from the round's base model) weighted by `num_samples`.
    pub fn mask<R: rand::CryptoRng + ?Sized>(
        &self,
        delta: &[f32],
        num_samples: u64,
        rng: &mut R,
    ) -> Result<Vec<u64>, SecAggError> {
        todo!()
    }

    /// Stage 4: this client's shares of the survivors' seeds and the dropped clients' mask keys.
    /// Refuses a request naming one client in both lists, fewer survivors than the threshold,
    /// naming itself as dropped, or naming a client it holds no share of.
    pub fn unmask_shares(&self, request: &UnmaskRequest) -> Result<Vec<UnmaskShare>, SecAggError> {
        todo!()
    }
}
