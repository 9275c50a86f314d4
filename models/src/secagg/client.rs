//! A client's side of one secure round: its secrets, the shares it holds for its neighbours,
//! and the messages of each stage.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::keys::{self, Context, PublicKeys, SecretKeys};
use super::masking::{self, Sign};
use super::shamir::{self, SHARE_BYTES, Share};
use super::wire::share_aad;
use super::{
    EffectiveConfig, EncryptedShare, SecAggError, ShareKind, UnmaskRequest, UnmaskShare, graph,
    quantize,
};

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
        let (secrets, public) = keys::generate(rng);
        ClientRound {
            ctx,
            me,
            cfg,
            secrets,
            public,
            neighbours: BTreeMap::new(),
            seed: None,
            own: None,
            held: BTreeMap::new(),
        }
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
        if self.seed.is_some() {
            return Err(self.out_of_order("the share stage ran already"));
        }
        let Some(my_pos) = ring.iter().position(|&id| id == self.me) else {
            return Err(SecAggError::Malformed {
                what: "ring",
                reason: format!("client {} is not on it", self.me),
            });
        };
        let graph = graph::neighbours(ring, self.me, self.cfg.num_shares);
        let cipher_secret = Zeroizing::new(self.secrets.cipher.to_bytes());
        let mut neighbours = BTreeMap::new();
        for entry in advertised {
            if !graph.contains(&entry.member_id) {
                continue;
            }
            if let Some(previous) = neighbours.insert(entry.member_id, entry.keys)
                && previous != entry.keys
            {
                return Err(SecAggError::Malformed {
                    what: "advertised keys",
                    reason: format!("client {} is listed twice", entry.member_id),
                });
            }
            // Both keys must give a real agreement (not a low-order point).
            for key in [&entry.keys.cipher, &entry.keys.mask] {
                if keys::agree(&cipher_secret, key).is_none() {
                    return Err(SecAggError::Malformed {
                        what: "advertised keys",
                        reason: format!("a key of client {} is a low-order point", entry.member_id),
                    });
                }
            }
        }
        let threshold = self.cfg.reconstruction_threshold as usize;
        let holders_count = neighbours.len() + 1;
        if holders_count < threshold {
            return Err(SecAggError::NotEnoughShares {
                client: self.me,
                kind: ShareKind::MaskKey,
                got: holders_count,
                threshold,
            });
        }
        // Holders in ring order; share points 1, 2, ... by that order.
        let position = |id: i64| ring.iter().position(|&r| r == id).unwrap_or(my_pos);
        let mut holders: Vec<i64> = neighbours.keys().copied().chain([self.me]).collect();
        holders.sort_by_key(|&id| position(id));
        let xs: Vec<u32> = (1..=holders.len())
            .map(|x| u32::try_from(x).unwrap_or(u32::MAX))
            .collect();

        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let mut key = self.secrets.mask.to_bytes();
        let seed_shares = shamir::split(&seed, threshold, &xs, rng);
        let key_shares = shamir::split(&key, threshold, &xs, rng);
        key.zeroize();
        let (seed_shares, key_shares) = (seed_shares?, key_shares?);

        let mut out = Vec::with_capacity(holders.len() - 1);
        let mut own = None;
        for ((&holder, seed_share), key_share) in holders.iter().zip(seed_shares).zip(key_shares) {
            if holder == self.me {
                own = Some((seed_share, key_share));
                continue;
            }
            let their = &neighbours[&holder];
            let mut plain = Vec::with_capacity(2 * SHARE_BYTES);
            plain.extend_from_slice(&seed_share.to_bytes());
            plain.extend_from_slice(&key_share.to_bytes());
            let mut k = keys::share_key(&cipher_secret, &their.cipher, self.ctx, self.me, holder)?;
            let ciphertext = keys::seal(&k, &plain, &share_aad(self.ctx, self.me, holder), rng);
            k.zeroize();
            plain.zeroize();
            out.push(EncryptedShare {
                from: self.me,
                to: holder,
                ciphertext,
            });
        }
        self.neighbours = neighbours;
        self.seed = Some(seed);
        self.own = own;
        seed.zeroize();
        Ok(out)
    }

    /// Stage 3, first half: decrypts the shares addressed to this client. Refuses a share not
    /// addressed to it, from a non-neighbour, twice from one sender, or that does not decrypt.
    /// The senders are the neighbours this client masks with.
    pub fn receive_shares(&mut self, incoming: &[EncryptedShare]) -> Result<(), SecAggError> {
        if self.seed.is_none() {
            return Err(self.out_of_order("shares arrived before this client shared its own"));
        }
        let cipher_secret = Zeroizing::new(self.secrets.cipher.to_bytes());
        let mut fresh = BTreeMap::new();
        for share in incoming {
            if share.to != self.me {
                return Err(SecAggError::Malformed {
                    what: "share",
                    reason: format!(
                        "the share from client {} is addressed to client {}, not {}",
                        share.from, share.to, self.me
                    ),
                });
            }
            let Some(their) = self.neighbours.get(&share.from) else {
                return Err(SecAggError::NotNeighbour {
                    client: share.from,
                    of: self.me,
                });
            };
            if self.held.contains_key(&share.from) || fresh.contains_key(&share.from) {
                return Err(SecAggError::Malformed {
                    what: "share",
                    reason: format!("client {} sent two shares", share.from),
                });
            }
            let mut k =
                keys::share_key(&cipher_secret, &their.cipher, self.ctx, share.from, self.me)?;
            let opened = keys::open(
                &k,
                &share.ciphertext,
                &share_aad(self.ctx, share.from, self.me),
                share.from,
            );
            k.zeroize();
            let mut plain = opened?;
            let parsed = if plain.len() == 2 * SHARE_BYTES {
                Share::from_bytes(&plain[..SHARE_BYTES])
                    .and_then(|seed| Ok((seed, Share::from_bytes(&plain[SHARE_BYTES..])?)))
            } else {
                Err(SecAggError::Malformed {
                    what: "share",
                    reason: format!(
                        "{} bytes of plain text, expected {}",
                        plain.len(),
                        2 * SHARE_BYTES
                    ),
                })
            };
            plain.zeroize();
            let (seed, key) = parsed?;
            fresh.insert(
                share.from,
                Received {
                    from: share.from,
                    seed,
                    key,
                },
            );
        }
        self.held.extend(fresh);
        Ok(())
    }

    /// Stage 3: the masked vector (`delta.len() + 1` entries below `modulus_range`) of the
    /// update `delta` (the change from the round's base model) weighted by `num_samples`.
    pub fn mask<R: rand::CryptoRng + ?Sized>(
        &self,
        delta: &[f32],
        num_samples: u64,
        rng: &mut R,
    ) -> Result<Vec<u64>, SecAggError> {
        let Some(seed) = &self.seed else {
            return Err(self.out_of_order("masking before the share stage"));
        };
        let modulus = self.cfg.modulus_range;
        let factor = quantize::weight_factor(num_samples, self.cfg.max_weight);
        let mut vector = quantize::quantize_weighted(delta, factor, &self.cfg, rng);
        masking::apply(&mut vector, seed, modulus, Sign::Plus);
        let secret = Zeroizing::new(self.secrets.mask.to_bytes());
        for &j in self.held.keys() {
            let their = &self.neighbours[&j];
            let mut pair = keys::mask_seed(&secret, &their.mask, self.ctx, self.me, j)?;
            let sign = if self.me < j { Sign::Plus } else { Sign::Minus };
            masking::apply(&mut vector, &pair, modulus, sign);
            pair.zeroize();
        }
        Ok(vector)
    }

    /// Stage 4: this client's shares of the survivors' seeds and the dropped clients' mask keys.
    /// Refuses a request naming one client in both lists, fewer survivors than the threshold,
    /// naming itself as dropped, or naming a client it holds no share of.
    pub fn unmask_shares(&self, request: &UnmaskRequest) -> Result<Vec<UnmaskShare>, SecAggError> {
        let survivors: BTreeSet<i64> = request.survivors.iter().copied().collect();
        let dropped: BTreeSet<i64> = request.dropped.iter().copied().collect();
        if let Some(&both) = survivors.intersection(&dropped).next() {
            return Err(SecAggError::BothLists(both));
        }
        if dropped.contains(&self.me) {
            return Err(SecAggError::Malformed {
                what: "unmask request",
                reason: format!("it names client {} itself as dropped", self.me),
            });
        }
        let threshold = self.cfg.reconstruction_threshold as usize;
        if survivors.len() < threshold {
            return Err(SecAggError::TooFewSurvivors {
                got: survivors.len(),
                threshold,
            });
        }
        let not_held = |client: i64| SecAggError::NotNeighbour {
            client,
            of: self.me,
        };
        let mut out = Vec::with_capacity(survivors.len() + dropped.len());
        for &s in &survivors {
            let share = if s == self.me {
                &self.own.as_ref().ok_or_else(|| not_held(s))?.0
            } else {
                &self.held.get(&s).ok_or_else(|| not_held(s))?.seed
            };
            out.push(UnmaskShare {
                of: s,
                kind: ShareKind::SelfMaskSeed,
                share: share.to_bytes().to_vec(),
            });
        }
        for &d in &dropped {
            let held = self.held.get(&d).ok_or_else(|| not_held(d))?;
            out.push(UnmaskShare {
                of: d,
                kind: ShareKind::MaskKey,
                share: held.key.to_bytes().to_vec(),
            });
        }
        Ok(out)
    }

    /// A stage called before the one it follows, or twice.
    fn out_of_order(&self, reason: &str) -> SecAggError {
        SecAggError::Malformed {
            what: "round state",
            reason: format!("client {}: {reason}", self.me),
        }
    }
}
