//! Secure aggregation's untrusted inputs on arbitrary bytes; the first byte picks the decoder
//! (`% 8`), the rest is its input:
//!
//! 0. `secagg::wire::decode_masked`, a masked-vector upload, for four (length, modulus) pairs
//!    (moduli 2^8, 2^16, 2^32, 2^62): an accepted vector has the expected length, every entry
//!    below the modulus, at most `max_metrics` finite metrics, and survives an `encode_masked`
//!    round trip (entries, model id and round exactly; metric values to 2 ulp, as they go
//!    through JSON text).
//! 1. `secagg::shamir::Share::from_bytes`: an accepted share has `x > 0`, values in the field,
//!    and `to_bytes` gives the input back.
//! 2. The JSON bodies the server parses (`ShareUpload`, `UnmaskUpload`, `PublicKeys`,
//!    `SecAggConfig`): a parsed value re-serialises and parses to an equal one (floats to
//!    2 ulp); `SecAggConfig::validate`, `max_clients` and `for_round` never panic, and an
//!    accepted round's shares and threshold obey `2 <= t <= shares <= selected`, `2t > shares`.
//!
//! The next three run against a fixed four-client round (`b3o_fuzz_support::secagg_round`,
//! threshold 3, the last client dropped after sharing); the second byte picks a client.
//!
//! 3. `ClientRound::receive_shares` of JSON `[EncryptedShare]` by a client that shared but
//!    received nothing yet; 4. the same with one share from the raw bytes (third byte: the
//!    sender), as its ciphertext. An accepted batch holds only shares addressed to the client,
//!    from distinct neighbours. The client is rebuilt after each accepted non-empty batch (a
//!    refused one changes nothing), so every input meets the same state.
//! 5. `ClientRound::unmask_shares` of a JSON `UnmaskRequest` by a client that received its
//!    shares: an answer has one share per named client (survivors' seeds, dropped clients'
//!    keys), each parsing as a `Share`.
//! 6. `secagg::unmask` of the round's sum with JSON `[[holder, UnmaskShare]]` answers and the
//!    round's records (the second byte's bits flip `survived` and `shared` per client): the
//!    result has the sum's length and entries below the modulus.
//!
//! 7. `compress::decode_update` against a two-tensor layout and base, expecting each
//!    `UpdateEncoding` and none: accepted weights have the layout's shapes, finite values and
//!    the expected encoding.
//!
//! Errors are `SecAggError` / `FormatError` values by type; the checks are that nothing panics
//! and the properties above.
#![no_main]

use std::sync::{LazyLock, Mutex};

use b3o_fuzz_support::{
    SECAGG_CTX, SECAGG_RING, SecAggRound, secagg_round, secagg_shared_client, tiny_layout,
};
use b3o_models::compress::{UpdateEncoding, decode_update};
use b3o_models::protocol::secagg::{ShareUpload, UnmaskUpload};
use b3o_models::secagg::shamir::{PRIME, Share};
use b3o_models::secagg::wire::{decode_masked, encode_masked};
use b3o_models::secagg::{
    ClientRound, EncryptedShare, PublicKeys, SecAggConfig, ShareCount, ShareKind, UnmaskInputs,
    UnmaskRequest, UnmaskShare, unmask,
};
use b3o_models::weights::{DecodeLimits, WeightLayout};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Above every input (`-max_len`); the server passes its own limit.
const MAX_BYTES: usize = 1 << 20;
const MAX_METRICS: usize = 8;

/// (expected length, modulus) of the masked vectors tried.
const MASKED: [(usize, u64); 4] = [(1, 1 << 8), (5, 1 << 16), (9, 1 << 32), (33, 1 << 62)];

/// Selected-client counts `for_round` is tried with.
const SELECTED: [usize; 7] = [0, 1, 2, 4, 7, 1000, usize::MAX];

static ROUND: LazyLock<SecAggRound> = LazyLock::new(secagg_round);

/// Per ring position, a client that shared its keys and received nothing yet.
static FRESH: LazyLock<Mutex<Vec<ClientRound>>> = LazyLock::new(|| {
    Mutex::new(
        (0..SECAGG_RING.len())
            .map(|i| secagg_shared_client(i, &ROUND.advertised).0)
            .collect(),
    )
});

static LAYOUT: LazyLock<WeightLayout> = LazyLock::new(tiny_layout);
static BASE: LazyLock<Vec<f32>> = LazyLock::new(|| {
    (0..LAYOUT.num_params())
        .map(|i| i as f32 * 0.5 - 1.0)
        .collect()
});

/// Equal, or a float re-parsed from its own JSON text (serde_json's default parser may be off
/// by an ulp).
fn close(a: f64, b: f64) -> bool {
    a == b || (a.signum() == b.signum() && a.to_bits().abs_diff(b.to_bits()) <= 2)
}

fn masked(body: &[u8]) {
    for (len, modulus) in MASKED {
        let Ok((values, meta)) = decode_masked(body, len, modulus, MAX_BYTES, MAX_METRICS) else {
            continue;
        };
        assert_eq!(values.len(), len);
        assert!(values.iter().all(|&v| v < modulus));
        assert!(meta.metrics.len() <= MAX_METRICS);
        assert!(meta.metrics.values().all(|v| v.is_finite()));
        let again = encode_masked(&values, modulus, &meta);
        let (values2, meta2) = decode_masked(&again, len, modulus, usize::MAX, MAX_METRICS)
            .expect("a re-encoded masked vector decodes");
        assert_eq!(values, values2);
        assert_eq!((&meta.model_id, meta.round), (&meta2.model_id, meta2.round));
        assert!(meta.metrics.keys().eq(meta2.metrics.keys()));
        for (a, b) in meta.metrics.values().zip(meta2.metrics.values()) {
            assert!(close(*a, *b), "metric {a} came back as {b}");
        }
    }
}

fn share_bytes(body: &[u8]) {
    let Ok(share) = Share::from_bytes(body) else {
        return;
    };
    assert!(share.x > 0 && share.ys.iter().all(|&y| y < PRIME));
    assert_eq!(&share.to_bytes()[..], body);
}

/// Parses `body` as `T`; if it parses, its JSON parses back to a value `same` as it.
fn reparse<T: Serialize + DeserializeOwned>(
    body: &[u8],
    same: impl Fn(&T, &T) -> bool,
) -> Option<T> {
    let value: T = serde_json::from_slice(body).ok()?;
    let text = serde_json::to_vec(&value).expect("a parsed message serialises");
    let again: T = serde_json::from_slice(&text).expect("a re-serialised message parses");
    assert!(
        same(&value, &again),
        "changed through JSON: {}",
        String::from_utf8_lossy(&text)
    );
    Some(value)
}

fn same_count(a: &ShareCount, b: &ShareCount) -> bool {
    match (a, b) {
        (ShareCount::Count(a), ShareCount::Count(b)) => a == b,
        (ShareCount::Proportion(a), ShareCount::Proportion(b)) => close(*a, *b),
        _ => false,
    }
}

fn same_config(a: &SecAggConfig, b: &SecAggConfig) -> bool {
    same_count(&a.num_shares, &b.num_shares)
        && same_count(&a.reconstruction_threshold, &b.reconstruction_threshold)
        && close(a.clipping_range, b.clipping_range)
        && a.quantization_range == b.quantization_range
        && a.modulus_range == b.modulus_range
        && close(a.max_weight, b.max_weight)
        && a.stage_deadline_secs == b.stage_deadline_secs
}

fn json_bodies(body: &[u8]) {
    reparse::<ShareUpload>(body, PartialEq::eq);
    reparse::<UnmaskUpload>(body, PartialEq::eq);
    reparse::<PublicKeys>(body, PartialEq::eq);
    let Some(config) = reparse::<SecAggConfig>(body, same_config) else {
        return;
    };
    let valid = config.validate().is_ok();
    let _ = config.max_clients();
    for selected in SELECTED {
        let Ok(round) = config.for_round(selected) else {
            continue;
        };
        assert!(valid, "for_round accepted an invalid config");
        let (n, t) = (round.num_shares, round.reconstruction_threshold);
        assert!(2 <= t && t <= n && n <= round.selected && 2 * t > n);
        assert_eq!(round.selected as usize, selected);
        assert_eq!(round.modulus_range, config.modulus_range);
    }
}

/// Client `index` receives `incoming`; a client that accepted it is replaced by a fresh one.
fn receive(index: usize, incoming: &[EncryptedShare]) {
    let mut fresh = FRESH.lock().unwrap_or_else(|e| e.into_inner());
    let client = &mut fresh[index];
    if client.receive_shares(incoming).is_err() || incoming.is_empty() {
        return;
    }
    let me = client.member_id();
    let mut senders: Vec<i64> = incoming.iter().map(|s| s.from).collect();
    senders.sort_unstable();
    senders.dedup();
    assert_eq!(senders.len(), incoming.len(), "one share per sender");
    assert!(
        incoming
            .iter()
            .all(|s| s.to == me && s.from != me && SECAGG_RING.contains(&s.from))
    );
    fresh[index] = secagg_shared_client(index, &ROUND.advertised).0;
}

fn unmask_request(index: usize, body: &[u8]) {
    let Ok(request) = serde_json::from_slice::<UnmaskRequest>(body) else {
        return;
    };
    let Ok(answer) = ROUND.clients[index].unmask_shares(&request) else {
        return;
    };
    let mut survivors = request.survivors.clone();
    survivors.sort_unstable();
    survivors.dedup();
    let mut dropped = request.dropped.clone();
    dropped.sort_unstable();
    dropped.dedup();
    assert_eq!(answer.len(), survivors.len() + dropped.len());
    for share in &answer {
        let list = match share.kind {
            ShareKind::SelfMaskSeed => &survivors,
            ShareKind::MaskKey => &dropped,
        };
        assert!(list.contains(&share.of));
        Share::from_bytes(&share.share).expect("a client hands back a valid share");
    }
}

fn server_unmask(flags: u8, body: &[u8]) {
    let Ok(shares) = serde_json::from_slice::<Vec<(i64, UnmaskShare)>>(body) else {
        return;
    };
    let round = &*ROUND;
    let mut records = round.records.clone();
    for (i, r) in records.iter_mut().enumerate() {
        r.survived ^= flags & (1 << i) != 0;
        r.shared ^= flags & (0x10 << i) != 0;
    }
    let inputs = UnmaskInputs {
        ctx: SECAGG_CTX,
        cfg: &round.cfg,
        ring: &SECAGG_RING,
        clients: &records,
        shares: &shares,
    };
    if let Ok(sum) = unmask(round.sum.clone(), &inputs) {
        assert_eq!(sum.len(), round.sum.len());
        assert!(sum.iter().all(|&v| v < round.cfg.modulus_range));
    }
}

fn update(body: &[u8]) {
    let limits = DecodeLimits {
        max_bytes: MAX_BYTES,
        max_metrics: MAX_METRICS,
    };
    let expected = UpdateEncoding::EXAMPLES.map(Some);
    for encoding in expected.into_iter().chain([None]) {
        let Ok((set, meta, found)) = decode_update(body, &LAYOUT, Some(&BASE), encoding, limits)
        else {
            continue;
        };
        assert_eq!(set.layout(), *LAYOUT, "accepted weights have the layout");
        for t in &set.tensors {
            assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
            assert!(t.data.iter().all(|v| v.is_finite()));
        }
        assert!(meta.metrics.values().all(|v| v.is_finite()));
        assert!(encoding.is_none_or(|e| e == found));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let clients = SECAGG_RING.len();
    let (param, rest) = body.split_first().map_or((0, body), |(&p, r)| (p, r));
    let index = usize::from(param) % clients;
    match selector % 8 {
        0 => masked(body),
        1 => share_bytes(body),
        2 => json_bodies(body),
        3 => {
            if let Ok(incoming) = serde_json::from_slice::<Vec<EncryptedShare>>(rest) {
                receive(index, &incoming);
            }
        }
        4 => {
            let Some((&from, ciphertext)) = rest.split_first() else {
                return;
            };
            let share = EncryptedShare {
                from: SECAGG_RING[usize::from(from) % clients],
                to: SECAGG_RING[index],
                ciphertext: ciphertext.to_vec(),
            };
            receive(index, &[share]);
        }
        5 => unmask_request(index, rest),
        6 => server_unmask(param, rest),
        _ => update(body),
    }
});
