//! The whole protocol in memory: clients, server routing, dropouts, the unmasked mean.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::keys::Context;
use super::shamir::{self, PRIME, Share};
use super::wire::{self, MaskedMeta};
use super::*;

const CTX: Context = Context {
    group_id: 77,
    round: 5,
};

/// Member ids in ring order, deliberately not sorted (signs follow ids, shares ring order).
const IDS: [i64; 10] = [17, 3, 42, 8, 99, 1, 56, 23, 71, 30];

struct Scenario {
    config: SecAggConfig,
    params: usize,
    /// Ring positions that share keys and then send no masked vector.
    dropped: Vec<usize>,
    /// Ring positions that send a masked vector but do not answer the unmask stage.
    silent: Vec<usize>,
    seed: u64,
}

struct Round {
    cfg: EffectiveConfig,
    records: Vec<ClientRecord>,
    shares: Vec<(i64, UnmaskShare)>,
    sum: Vec<u64>,
    /// The exact weighted mean of the survivors' updates, and the survivors' count.
    expected: Vec<f64>,
    survivors: usize,
    clients: Vec<ClientRound>,
    masked: BTreeMap<i64, Vec<u64>>,
    quantized: BTreeMap<i64, Vec<u64>>,
}

fn scenario(config: SecAggConfig) -> Scenario {
    Scenario {
        config,
        params: 1000,
        dropped: vec![],
        silent: vec![],
        seed: 1,
    }
}

fn sparse() -> SecAggConfig {
    SecAggConfig {
        num_shares: ShareCount::Count(5),
        ..SecAggConfig::default()
    }
}

/// Runs the stages up to (and including) the unmask answers.
fn play(s: &Scenario) -> Round {
    let mut rng = ChaCha20Rng::seed_from_u64(s.seed);
    let ring = IDS.to_vec();
    let cfg = s.config.for_round(ring.len()).unwrap();
    // Stage 1.
    let mut clients: Vec<ClientRound> = ring
        .iter()
        .map(|&id| ClientRound::new(CTX, id, cfg.clone(), &mut rng))
        .collect();
    let advertised: Vec<NeighbourKeys> = clients
        .iter()
        .map(|c| NeighbourKeys {
            member_id: c.member_id(),
            keys: c.public_keys(),
        })
        .collect();
    // Stage 2: every client shares; the server routes each share to its recipient.
    let mut mailbox: BTreeMap<i64, Vec<EncryptedShare>> = BTreeMap::new();
    for c in clients.iter_mut() {
        let out = c.share_keys(&ring, &advertised, &mut rng).unwrap();
        let expected = graph::neighbours(&ring, c.member_id(), cfg.num_shares).len();
        assert_eq!(out.len(), expected);
        for share in out {
            assert_eq!(share.from, c.member_id());
            // Through JSON, as on the wire.
            let json = serde_json::to_string(&share).unwrap();
            let share: EncryptedShare = serde_json::from_str(&json).unwrap();
            mailbox.entry(share.to).or_default().push(share);
        }
    }
    // Stage 3.
    let mut masked = BTreeMap::new();
    let mut quantized = BTreeMap::new();
    let mut agg = Aggregator::new(s.params + 1, cfg.modulus_range);
    let mut weighted = vec![0f64; s.params];
    let mut total_factor = 0f64;
    for (pos, c) in clients.iter_mut().enumerate() {
        c.receive_shares(mailbox.get(&c.member_id()).map_or(&[][..], |v| v))
            .unwrap();
        let delta: Vec<f32> = (0..s.params)
            .map(|_| rng.random_range(-1.0f32..=1.0))
            .collect();
        let samples = rng.random_range(20u64..=1000);
        if s.dropped.contains(&pos) {
            continue;
        }
        let vector = c.mask(&delta, samples, &mut rng).unwrap();
        assert_eq!(vector.len(), s.params + 1);
        // The upload, encoded and decoded as the server would.
        let meta = MaskedMeta {
            model_id: "m".into(),
            round: 5,
            metrics: BTreeMap::from([("loss".into(), 0.5)]),
        };
        let bytes = wire::encode_masked(&vector, cfg.modulus_range, &meta);
        let (decoded, _) =
            wire::decode_masked(&bytes, s.params + 1, cfg.modulus_range, 1 << 24, 8).unwrap();
        assert_eq!(decoded, vector);
        agg.add(&decoded).unwrap();
        masked.insert(c.member_id(), vector);
        let factor = quantize::weight_factor(samples, cfg.max_weight);
        quantized.insert(
            c.member_id(),
            quantize::quantize_weighted(&delta, factor, &cfg, &mut ChaCha20Rng::seed_from_u64(0)),
        );
        total_factor += factor;
        for (w, &d) in weighted.iter_mut().zip(&delta) {
            *w += factor * f64::from(d);
        }
    }
    let records: Vec<ClientRecord> = clients
        .iter()
        .enumerate()
        .map(|(pos, c)| ClientRecord {
            member_id: c.member_id(),
            keys: Some(c.public_keys()),
            shared: true,
            survived: !s.dropped.contains(&pos),
        })
        .collect();
    // Stage 4: each answering survivor is asked about its neighbours and itself.
    let mut shares = Vec::new();
    for (pos, c) in clients.iter().enumerate() {
        if s.dropped.contains(&pos) || s.silent.contains(&pos) {
            continue;
        }
        let me = c.member_id();
        let mut request = UnmaskRequest::default();
        for id in graph::neighbours(&ring, me, cfg.num_shares)
            .into_iter()
            .chain([me])
        {
            let pos = ring.iter().position(|&r| r == id).unwrap();
            if s.dropped.contains(&pos) {
                request.dropped.push(id);
            } else {
                request.survivors.push(id);
            }
        }
        for share in c.unmask_shares(&request).unwrap() {
            shares.push((me, share));
        }
    }
    Round {
        cfg,
        records,
        shares,
        sum: agg.into_sum(),
        expected: weighted.iter().map(|w| w / total_factor).collect(),
        survivors: IDS.len() - s.dropped.len(),
        clients,
        masked,
        quantized,
    }
}

fn unmask_round(r: &Round) -> Result<Vec<u64>, SecAggError> {
    unmask(
        r.sum.clone(),
        &UnmaskInputs {
            ctx: CTX,
            cfg: &r.cfg,
            ring: &IDS,
            clients: &r.records,
            shares: &r.shares,
        },
    )
}

/// The unmasked mean matches the exact weighted mean entry by entry, within the bound.
fn check_mean(r: &Round, unmasked: &[u64]) {
    let mean = dequantize_mean(unmasked, &r.cfg, r.survivors).unwrap();
    assert_eq!(mean.clients, r.survivors);
    assert_eq!(mean.values.len(), r.expected.len());
    let bound = error_bound(&r.cfg, r.survivors, mean.weight);
    assert!(bound > 0.0 && bound < 1e-3, "bound {bound}");
    let mut worst = 0f64;
    for (k, (&got, &want)) in mean.values.iter().zip(&r.expected).enumerate() {
        let err = (f64::from(got) - want).abs();
        worst = worst.max(err);
        assert!(
            err <= bound + 1e-6 * want.abs(),
            "entry {k}: got {got}, want {want}, bound {bound}"
        );
    }
    // The bound is not vacuous: the errors are of its order, not far below 1e-3.
    assert!(worst > 0.0 && worst < bound + 1e-6);
}

#[test]
fn complete_graph_no_dropouts() {
    let r = play(&scenario(SecAggConfig::default()));
    assert_eq!((r.cfg.num_shares, r.cfg.reconstruction_threshold), (10, 6));
    // Masked vectors are not the quantized ones.
    for (id, m) in &r.masked {
        assert_ne!(m, &r.quantized[id]);
    }
    let unmasked = unmask_round(&r).unwrap();
    check_mean(&r, &unmasked);
}

#[test]
fn sparse_graph_no_dropouts() {
    let r = play(&scenario(sparse()));
    assert_eq!((r.cfg.num_shares, r.cfg.reconstruction_threshold), (5, 3));
    let unmasked = unmask_round(&r).unwrap();
    check_mean(&r, &unmasked);
}

#[test]
fn complete_graph_with_dropouts_and_a_silent_survivor() {
    let mut s = scenario(SecAggConfig::default());
    s.dropped = vec![1, 4, 8];
    s.silent = vec![6];
    s.seed = 2;
    let r = play(&s);
    let unmasked = unmask_round(&r).unwrap();
    check_mean(&r, &unmasked);
}

#[test]
fn sparse_graph_with_dropouts() {
    // With 5 shares and a threshold of 3, 3 dropped and 1 silent leave every secret 3
    // answering holders only for some placements (e.g. this first one).
    for (dropped, silent) in [
        (vec![0, 2, 5], vec![7]),
        (vec![0, 3, 6], vec![]),
        (vec![0, 5], vec![2]),
    ] {
        let mut s = scenario(sparse());
        s.dropped = dropped;
        s.silent = silent;
        s.seed = 3;
        let r = play(&s);
        let unmasked = unmask_round(&r).unwrap();
        check_mean(&r, &unmasked);
    }
}

#[test]
fn too_few_answers_name_the_client() {
    let mut s = scenario(SecAggConfig::default());
    s.params = 20;
    s.silent = vec![0, 1, 2, 3, 4];
    let r = play(&s);
    match unmask_round(&r) {
        Err(SecAggError::NotEnoughShares {
            client,
            kind: ShareKind::SelfMaskSeed,
            got: 5,
            threshold: 6,
        }) => assert!(IDS.contains(&client)),
        other => panic!("expected NotEnoughShares, got {other:?}"),
    }
    // A dropped client's key with too few answers.
    let mut s = scenario(sparse());
    s.params = 20;
    s.dropped = vec![0];
    s.silent = vec![8, 9];
    let r = play(&s);
    assert!(matches!(
        unmask_round(&r),
        Err(SecAggError::NotEnoughShares { .. })
    ));
}

fn corrupt(share: &mut UnmaskShare) {
    let mut parsed = Share::from_bytes(&share.share).unwrap();
    parsed.ys[0] = (parsed.ys[0] + 1) % PRIME;
    share.share = parsed.to_bytes().to_vec();
}

#[test]
fn a_bad_key_share_is_caught() {
    // 7 answers for a threshold of 6: one bad share is left out, the result is right.
    let mut s = scenario(SecAggConfig::default());
    s.params = 200;
    s.dropped = vec![0, 1, 2];
    let mut r = play(&s);
    let victim = IDS[1];
    let first = r
        .shares
        .iter_mut()
        .find(|(_, sh)| sh.of == victim && sh.kind == ShareKind::MaskKey)
        .unwrap();
    corrupt(&mut first.1);
    let unmasked = unmask_round(&r).unwrap();
    check_mean(&r, &unmasked);

    // Exactly the threshold of answers, one of them bad: refused, never a wrong sum.
    s.silent = vec![3];
    let mut r = play(&s);
    let first = r
        .shares
        .iter_mut()
        .find(|(_, sh)| sh.of == victim && sh.kind == ShareKind::MaskKey)
        .unwrap();
    corrupt(&mut first.1);
    assert_eq!(
        unmask_round(&r),
        Err(SecAggError::Inconsistent {
            client: victim,
            kind: ShareKind::MaskKey
        })
    );
}

#[test]
fn duplicate_foreign_and_unparsable_shares_are_ignored() {
    let mut s = scenario(sparse());
    s.params = 50;
    s.dropped = vec![0];
    let mut r = play(&s);
    let good = unmask_round(&r).unwrap();
    // A second, altered answer from the same holder is ignored (the first counts).
    let (holder, share) = r.shares[0].clone();
    let mut bad = share.clone();
    corrupt(&mut bad);
    r.shares.push((holder, bad));
    // A non-neighbour's share is ignored, even a correct-looking one.
    let outsider = IDS
        .iter()
        .copied()
        .find(|&id| {
            id != share.of && !graph::neighbours(&IDS, share.of, r.cfg.num_shares).contains(&id)
        })
        .unwrap();
    let mut foreign = share.clone();
    corrupt(&mut foreign);
    r.shares.insert(0, (outsider, foreign));
    // An unparsable share is ignored (5 holders answered for IDS[5]'s seed, 3 are needed).
    let garbled = r
        .shares
        .iter_mut()
        .find(|(h, sh)| *h != IDS[5] && sh.of == IDS[5] && sh.kind == ShareKind::SelfMaskSeed)
        .unwrap();
    garbled.1.share = vec![1, 2, 3];
    assert_eq!(unmask_round(&r).unwrap(), good);
}

#[test]
fn clients_refuse_bad_unmask_requests() {
    let mut s = scenario(SecAggConfig::default());
    s.params = 10;
    let r = play(&s);
    let c = &r.clients[0];
    let me = c.member_id();
    let others: Vec<i64> = IDS.iter().copied().filter(|&i| i != me).collect();
    let request = |survivors: Vec<i64>, dropped: Vec<i64>| UnmaskRequest { survivors, dropped };
    assert_eq!(
        c.unmask_shares(&request(others.clone(), vec![others[0]])),
        Err(SecAggError::BothLists(others[0]))
    );
    assert!(matches!(
        c.unmask_shares(&request(others.clone(), vec![me])),
        Err(SecAggError::Malformed { .. })
    ));
    assert_eq!(
        c.unmask_shares(&request(others[..5].to_vec(), others[5..].to_vec())),
        Err(SecAggError::TooFewSurvivors {
            got: 5,
            threshold: 6
        })
    );
    // Repeating a survivor does not make up the count.
    let mut padded = others[..5].to_vec();
    padded.push(others[0]);
    assert!(matches!(
        c.unmask_shares(&request(padded, vec![])),
        Err(SecAggError::TooFewSurvivors { got: 5, .. })
    ));
    let mut with_stranger = others.clone();
    with_stranger.push(1234);
    assert_eq!(
        c.unmask_shares(&request(with_stranger, vec![])),
        Err(SecAggError::NotNeighbour {
            client: 1234,
            of: me
        })
    );
    // A good request: seed shares of the survivors (itself included), key shares of the dropped.
    let mut all = IDS.to_vec();
    all.retain(|&i| i != others[8]);
    let answer = c.unmask_shares(&request(all, vec![others[8]])).unwrap();
    assert_eq!(answer.len(), 10);
    assert!(
        answer
            .iter()
            .any(|a| a.of == me && a.kind == ShareKind::SelfMaskSeed)
    );
    assert_eq!(
        answer
            .iter()
            .filter(|a| a.kind == ShareKind::MaskKey)
            .map(|a| a.of)
            .collect::<Vec<_>>(),
        vec![others[8]]
    );
    // In the sparse graph, a non-neighbour is refused.
    let mut s = scenario(sparse());
    s.params = 10;
    let r = play(&s);
    let c = &r.clients[0];
    let far = IDS[5];
    let mut ask: Vec<i64> = graph::neighbours(&IDS, IDS[0], 5);
    ask.push(IDS[0]);
    assert!(c.unmask_shares(&request(ask.clone(), vec![])).is_ok());
    ask.push(far);
    assert_eq!(
        c.unmask_shares(&request(ask, vec![])),
        Err(SecAggError::NotNeighbour {
            client: far,
            of: IDS[0]
        })
    );
}

#[test]
fn shares_are_checked_on_arrival() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let cfg = SecAggConfig::default().for_round(3).unwrap();
    let ring = [5i64, 6, 7];
    let mut clients: Vec<ClientRound> = ring
        .iter()
        .map(|&id| ClientRound::new(CTX, id, cfg.clone(), &mut rng))
        .collect();
    let advertised: Vec<NeighbourKeys> = clients
        .iter()
        .map(|c| NeighbourKeys {
            member_id: c.member_id(),
            keys: c.public_keys(),
        })
        .collect();
    let mut all = Vec::new();
    for c in clients.iter_mut() {
        all.extend(c.share_keys(&ring, &advertised, &mut rng).unwrap());
    }
    // A second share stage is refused.
    assert!(clients[0].share_keys(&ring, &advertised, &mut rng).is_err());
    let for_5: Vec<EncryptedShare> = all.iter().filter(|s| s.to == 5).cloned().collect();
    assert_eq!(for_5.len(), 2);
    let c = &mut clients[0];
    // Tampered ciphertext.
    let mut tampered = for_5[0].clone();
    let last = tampered.ciphertext.len() - 1;
    tampered.ciphertext[last] ^= 0x40;
    assert_eq!(
        c.receive_shares(&[tampered]),
        Err(SecAggError::Decrypt {
            from: for_5[0].from
        })
    );
    // A share claiming another sender does not decrypt (keys and AAD bind the sender).
    let mut relabelled = for_5[0].clone();
    relabelled.from = for_5[1].from;
    assert_eq!(
        c.receive_shares(&[relabelled]),
        Err(SecAggError::Decrypt {
            from: for_5[1].from
        })
    );
    // Not addressed to it.
    let other: EncryptedShare = all.iter().find(|s| s.to == 6).unwrap().clone();
    assert!(matches!(
        c.receive_shares(&[other]),
        Err(SecAggError::Malformed { .. })
    ));
    // From a stranger.
    let mut stranger = for_5[0].clone();
    stranger.from = 99;
    assert_eq!(
        c.receive_shares(&[stranger]),
        Err(SecAggError::NotNeighbour { client: 99, of: 5 })
    );
    // Twice from one sender.
    assert!(matches!(
        c.receive_shares(&[for_5[0].clone(), for_5[0].clone()]),
        Err(SecAggError::Malformed { .. })
    ));
    // Refusals left nothing behind: the good shares are still accepted, once.
    c.receive_shares(&for_5).unwrap();
    assert!(c.receive_shares(&for_5[..1]).is_err());
}

#[test]
fn share_stage_refusals() {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let cfg = SecAggConfig::default().for_round(5).unwrap();
    assert_eq!(cfg.reconstruction_threshold, 3);
    let ring = [1i64, 2, 3, 4, 5];
    let mut clients: Vec<ClientRound> = ring
        .iter()
        .map(|&id| ClientRound::new(CTX, id, cfg.clone(), &mut rng))
        .collect();
    let keys = |ids: &[i64], clients: &[ClientRound]| -> Vec<NeighbourKeys> {
        clients
            .iter()
            .filter(|c| ids.contains(&c.member_id()))
            .map(|c| NeighbourKeys {
                member_id: c.member_id(),
                keys: c.public_keys(),
            })
            .collect()
    };
    // Not on the ring.
    let adv = keys(&ring, &clients);
    assert!(clients[0].share_keys(&[2, 3, 4], &adv, &mut rng).is_err());
    // Only one neighbour advertised: 2 holders, threshold 3.
    let adv = keys(&[1, 2], &clients);
    assert!(matches!(
        clients[0].share_keys(&ring, &adv, &mut rng),
        Err(SecAggError::NotEnoughShares { client: 1, .. })
    ));
    // A low-order key.
    let mut adv = keys(&ring, &clients);
    adv[2].keys.mask = [0; 32];
    assert!(clients[0].share_keys(&ring, &adv, &mut rng).is_err());
    // Two neighbours advertised: exactly enough; shares go to them only.
    let adv = keys(&[1, 3, 5], &clients);
    let out = clients[0].share_keys(&ring, &adv, &mut rng).unwrap();
    assert_eq!(
        out.iter().map(|s| s.to).collect::<BTreeSet<_>>(),
        BTreeSet::from([3, 5])
    );
}

#[test]
fn shares_of_the_round_rebuild_the_secrets() {
    // The key shares the neighbours hold (and the client's own) rebuild the mask key that
    // matches the advertised public key; points are 1..=holders.
    let mut s = scenario(sparse());
    s.params = 5;
    let r = play(&s);
    let victim = IDS[4];
    let request = |c: &ClientRound| UnmaskRequest {
        survivors: graph::neighbours(&IDS, c.member_id(), 5)
            .into_iter()
            .filter(|&i| i != victim)
            .chain([c.member_id()])
            .collect(),
        dropped: vec![victim],
    };
    let mut shares: Vec<Share> = r
        .clients
        .iter()
        .filter(|c| graph::neighbours(&IDS, victim, 5).contains(&c.member_id()))
        .flat_map(|c| c.unmask_shares(&request(c)).unwrap())
        .filter(|a| a.of == victim && a.kind == ShareKind::MaskKey)
        .map(|a| Share::from_bytes(&a.share).unwrap())
        .collect();
    assert_eq!(shares.len(), 4);
    let xs: BTreeSet<u32> = shares.iter().map(|s| s.x).collect();
    assert!(xs.iter().all(|&x| (1..=5).contains(&x)) && xs.len() == 4);
    shares.reverse();
    let secret = shamir::combine(&shares, 3).unwrap();
    assert_eq!(keys::public_of(&secret), r.clients[4].public_keys().mask);
}

/// Pearson's chi-square of the top 4 bits of 32-bit entries against the uniform law.
fn chi_square_top4(values: &[u64]) -> f64 {
    let mut bins = [0f64; 16];
    for &v in values {
        bins[(v >> 28) as usize & 15] += 1.0;
    }
    let expected = values.len() as f64 / 16.0;
    bins.iter()
        .map(|&o| (o - expected).powi(2) / expected)
        .sum()
}

#[test]
fn masked_vectors_look_uniform() {
    let mut s = scenario(sparse());
    s.params = 4000;
    s.seed = 4;
    let r = play(&s);
    assert_eq!(r.cfg.modulus_range, 1 << 32);
    assert_eq!(r.masked.len(), 10);
    for (id, masked) in &r.masked {
        let chi = chi_square_top4(masked);
        assert!(chi < 37.70, "client {id}: chi-square {chi}");
        let plain = chi_square_top4(&r.quantized[id]);
        assert!(
            plain > 37.70,
            "client {id}: the unmasked vector passes ({plain})"
        );
    }
}
