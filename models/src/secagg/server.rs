//! The server's side: summing masked vectors, removing the masks with the shares survivors
//! return, and turning the sum into the weighted mean.

use std::collections::{BTreeMap, BTreeSet};

use zeroize::Zeroize;

use super::keys::{self, Context, PublicKeys};
use super::masking::{self, Sign};
use super::shamir::{self, Share};
use super::{EffectiveConfig, SecAggError, ShareKind, UnmaskShare, graph};

/// The running sum of masked vectors modulo the modulus; O(model size) memory.
pub struct Aggregator {
    modulus: u64,
    sum: Vec<u64>,
    count: usize,
}

impl Aggregator {
    pub fn new(len: usize, modulus: u64) -> Aggregator {
        Aggregator {
            modulus,
            sum: vec![0; len],
            count: 0,
        }
    }

    /// Adds one masked vector; checks its length and that every entry is below the modulus.
    pub fn add(&mut self, masked: &[u64]) -> Result<(), SecAggError> {
        if masked.len() != self.sum.len() {
            return Err(SecAggError::Length {
                expected: self.sum.len(),
                got: masked.len(),
            });
        }
        if let Some((index, &value)) = masked.iter().enumerate().find(|(_, v)| **v >= self.modulus)
        {
            return Err(SecAggError::OutOfRange {
                index,
                value,
                modulus: self.modulus,
            });
        }
        masking::add_into(&mut self.sum, masked, self.modulus);
        self.count += 1;
        Ok(())
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn into_sum(self) -> Vec<u64> {
        self.sum
    }
}

/// What the server knows of one selected client at the unmask stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub member_id: i64,
    /// Advertised in stage 1; `None` if it never did.
    pub keys: Option<PublicKeys>,
    /// Completed stage 2 (its encrypted shares were accepted).
    pub shared: bool,
    /// Its masked vector is in the sum.
    pub survived: bool,
}

/// Everything [`unmask`] needs.
pub struct UnmaskInputs<'a> {
    pub ctx: Context,
    pub cfg: &'a EffectiveConfig,
    /// The round's clients in ring order.
    pub ring: &'a [i64],
    pub clients: &'a [ClientRecord],
    /// `(holder, share)`: what each survivor answered in stage 4.
    pub shares: &'a [(i64, UnmaskShare)],
}

/// The sum without masks: rebuilds each survivor's seed `b` and subtracts `PRG(b)`; rebuilds
/// each dropped-after-sharing client's mask key `s`, checks it against its advertised public
/// key, and removes the pairwise masks its surviving neighbours (those that completed stage 2)
/// added for it. Shares from a holder that is not a neighbour of the client, or that
/// do not parse, are ignored; `NotEnoughShares` when fewer than the threshold remain for a
/// secret, `Inconsistent` when a rebuilt key does not match.
pub fn unmask(sum: Vec<u64>, inputs: &UnmaskInputs<'_>) -> Result<Vec<u64>, SecAggError> {
    let cfg = inputs.cfg;
    let modulus = cfg.modulus_range;
    let threshold = cfg.reconstruction_threshold as usize;
    let mut sum = sum;
    let records: BTreeMap<i64, &ClientRecord> =
        inputs.clients.iter().map(|c| (c.member_id, c)).collect();
    let neighbours_of = |client: i64| graph::neighbours(inputs.ring, client, cfg.num_shares);

    // The usable shares of each (client, kind): from the client itself or one of its
    // neighbours, the first answer of each holder, parsable, one per point x.
    let mut answered: BTreeSet<(i64, i64, ShareKind)> = BTreeSet::new();
    let mut usable: BTreeMap<(i64, ShareKind), Vec<Share>> = BTreeMap::new();
    let mut holders_of: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (holder, share) in inputs.shares {
        if !answered.insert((*holder, share.of, share.kind)) {
            continue;
        }
        let holders = holders_of
            .entry(share.of)
            .or_insert_with(|| neighbours_of(share.of));
        if *holder != share.of && !holders.contains(holder) {
            continue;
        }
        let Ok(parsed) = Share::from_bytes(&share.share) else {
            continue;
        };
        let list = usable.entry((share.of, share.kind)).or_default();
        if list.iter().all(|s| s.x != parsed.x) {
            list.push(parsed);
        }
    }
    let rebuild = |client: i64, kind: ShareKind| -> Result<Vec<Share>, SecAggError> {
        let shares = usable.get(&(client, kind)).cloned().unwrap_or_default();
        if shares.len() < threshold || threshold == 0 {
            return Err(SecAggError::NotEnoughShares {
                client,
                kind,
                got: shares.len(),
                threshold,
            });
        }
        Ok(shares)
    };

    // Survivors: remove the self mask.
    for record in inputs.clients.iter().filter(|c| c.survived) {
        let kind = ShareKind::SelfMaskSeed;
        let shares = rebuild(record.member_id, kind)?;
        let mut seed =
            shamir::combine(&shares, threshold).map_err(|_| SecAggError::Inconsistent {
                client: record.member_id,
                kind,
            })?;
        masking::apply(&mut sum, &seed, modulus, Sign::Minus);
        seed.zeroize();
    }

    // Dropped after sharing: remove the pairwise masks their surviving neighbours added.
    for record in inputs.clients.iter().filter(|c| c.shared && !c.survived) {
        let d = record.member_id;
        let kind = ShareKind::MaskKey;
        let inconsistent = SecAggError::Inconsistent { client: d, kind };
        let advertised = record.keys.ok_or_else(|| inconsistent.clone())?;
        let shares = rebuild(d, kind)?;
        let mut secret = rebuild_key(&shares, threshold, &advertised.mask)
            .ok_or_else(|| inconsistent.clone())?;
        for j in neighbours_of(d) {
            let Some(neighbour) = records.get(&j) else {
                continue;
            };
            if !(neighbour.survived && neighbour.shared) {
                continue;
            }
            let Some(their) = neighbour.keys else {
                continue;
            };
            let mut seed = keys::mask_seed(&secret, &their.mask, inputs.ctx, d, j)?;
            // j added +PRG if j < d, -PRG otherwise: undo it.
            let undo = if j < d { Sign::Minus } else { Sign::Plus };
            masking::apply(&mut sum, &seed, modulus, undo);
            seed.zeroize();
        }
        secret.zeroize();
    }
    Ok(sum)
}

/// The mask key behind `shares` that matches `public`: the first `threshold` shares, or, when
/// they do not match and there are more, each set that leaves one of them out (so one bad
/// share among `threshold + 1` does not stop the round). `None` when nothing matches.
fn rebuild_key(shares: &[Share], threshold: usize, public: &[u8; 32]) -> Option<[u8; 32]> {
    let matches = |candidate: &[Share]| {
        shamir::combine(candidate, threshold)
            .ok()
            .filter(|s| keys::public_of(s) == *public)
    };
    if let Some(secret) = matches(shares) {
        return Some(secret);
    }
    if shares.len() <= threshold {
        return None;
    }
    // Leave out each of the first threshold + 1 shares in turn.
    let window = &shares[..threshold + 1];
    (0..window.len()).find_map(|skip| {
        let candidate: Vec<Share> = window
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, s)| s.clone())
            .collect();
        matches(&candidate)
    })
}

/// The weighted mean of the updates from an unmasked sum of `clients` vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanDelta {
    /// The weighted mean change, one value per parameter.
    pub values: Vec<f32>,
    /// The sum of the clients' weight factors, as the last entry gives it.
    pub weight: f64,
    pub clients: usize,
}

/// Dequantizes: `mean_k = 2c * sum_k / sum_last - c`. `ZeroWeight` when the last entry is 0.
pub fn dequantize_mean(
    unmasked: &[u64],
    cfg: &EffectiveConfig,
    clients: usize,
) -> Result<MeanDelta, SecAggError> {
    let Some((&last, entries)) = unmasked.split_last() else {
        return Err(SecAggError::Length {
            expected: 1,
            got: 0,
        });
    };
    if last == 0 {
        return Err(SecAggError::ZeroWeight);
    }
    let c = cfg.clipping_range;
    let last_f = last as f64;
    let values = entries
        .iter()
        .map(|&s| (2.0 * c * (s as f64) / last_f - c) as f32)
        .collect();
    Ok(MeanDelta {
        values,
        weight: last_f / cfg.quantization_range as f64,
        clients,
    })
}

/// The largest difference between [`dequantize_mean`]'s values and the exact weighted mean of
/// the clipped updates, for `clients` vectors whose unmasked weight entry is `T * weight`
/// ([`MeanDelta::weight`]): stochastic rounding moves each of the `n` entries summed by less
/// than 1 and each weight entry by less than 1, so the error is below `4 c n / (T * weight)`
/// (derivation in the function's comment), plus the `f32` rounding of the result.
pub fn error_bound(cfg: &EffectiveConfig, clients: usize, weight: f64) -> f64 {
    // Client i with factor f_i sends q_ik = f_i (x_ik + c) T / 2c + d_ik and
    // w_i = f_i T + e_i, with |d_ik|, |e_i| < 1 (stochastic rounding). Summing n clients:
    //   S = A + D,   A = T/2c * sum f_i (x_ik + c),  |D| < n,  0 <= A <= T sum f,
    //   F = T sum f + G,   |G| < n.
    // The exact weighted mean is m = sum f x / sum f = 2c A / (T sum f) - c, the estimate
    // x^ = 2c S / F - c, so
    //   x^ - m = 2c ((A + D) T sum f - A (T sum f + G)) / (F T sum f)
    //          = 2c (D T sum f - A G) / (F T sum f),
    // and with |D T sum f - A G| < n T sum f + T sum f n:  |x^ - m| < 4 c n / F,
    // where F (the unmasked last entry) is T * weight.
    let denominator = cfg.quantization_range as f64 * weight;
    if denominator.is_nan() || denominator <= 0.0 {
        return f64::INFINITY;
    }
    4.0 * cfg.clipping_range * clients as f64 / denominator
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EffectiveConfig {
        crate::secagg::SecAggConfig::default().for_round(4).unwrap()
    }

    #[test]
    fn aggregator_checks_and_wraps() {
        let mut agg = Aggregator::new(3, 256);
        agg.add(&[250, 1, 2]).unwrap();
        agg.add(&[10, 1, 255]).unwrap();
        assert_eq!(
            agg.add(&[1, 2]),
            Err(SecAggError::Length {
                expected: 3,
                got: 2
            })
        );
        assert_eq!(
            agg.add(&[1, 256, 2]),
            Err(SecAggError::OutOfRange {
                index: 1,
                value: 256,
                modulus: 256
            })
        );
        assert_eq!(agg.count(), 2);
        assert_eq!(agg.into_sum(), vec![4, 2, 1]);
    }

    #[test]
    fn dequantize_and_bound() {
        let cfg = cfg();
        let t = cfg.quantization_range;
        // Two clients, factors 1 and 0.5, values 8 (top) and -8 (bottom): mean (8 - 4) / 1.5.
        let sum = [t, t + t / 2];
        let mean = dequantize_mean(&sum, &cfg, 2).unwrap();
        assert_eq!(mean.weight, 1.5);
        assert_eq!(mean.clients, 2);
        assert!((f64::from(mean.values[0]) - 4.0 / 1.5).abs() < 1e-6);
        assert_eq!(
            dequantize_mean(&[5, 0], &cfg, 2),
            Err(SecAggError::ZeroWeight)
        );
        assert!(dequantize_mean(&[], &cfg, 2).is_err());
        let bound = error_bound(&cfg, 2, 1.5);
        assert!((bound - 4.0 * 8.0 * 2.0 / (t as f64 * 1.5)).abs() < 1e-15);
        assert_eq!(error_bound(&cfg, 2, 0.0), f64::INFINITY);
    }

    #[test]
    fn a_survivor_without_shares_cannot_be_unmasked() {
        let cfg = cfg();
        let records = [
            ClientRecord {
                member_id: 1,
                keys: None,
                shared: false,
                survived: true,
            },
            ClientRecord {
                member_id: 2,
                keys: None,
                shared: false,
                survived: false,
            },
        ];
        let inputs = UnmaskInputs {
            ctx: Context {
                group_id: 1,
                round: 1,
            },
            cfg: &cfg,
            ring: &[1, 2, 3, 4],
            clients: &records,
            shares: &[],
        };
        assert_eq!(
            unmask(vec![0; 3], &inputs),
            Err(SecAggError::NotEnoughShares {
                client: 1,
                kind: ShareKind::SelfMaskSeed,
                got: 0,
                threshold: 3
            })
        );
        // A client that never shared and did not survive needs nothing.
        let inputs = UnmaskInputs {
            clients: &records[1..],
            ..inputs
        };
        assert_eq!(unmask(vec![7; 3], &inputs), Ok(vec![7; 3]));
    }
}
