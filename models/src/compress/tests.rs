use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::weights::{NamedTensor, TensorSpec};

const LIMITS: DecodeLimits = DecodeLimits {
    max_bytes: 1 << 24,
    max_metrics: 16,
};

fn layout() -> WeightLayout {
    WeightLayout(vec![
        TensorSpec::new("layers.0.weight", vec![4, 8]),
        TensorSpec::new("layers.0.bias", vec![8]),
    ])
}

/// Deterministic pseudo-random values in about [-scale, scale].
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = SplitMix(seed);
    (0..n).map(|_| (rng.unit() * 2.0 - 1.0) * scale).collect()
}

fn meta() -> UpdateMeta {
    UpdateMeta {
        model_id: "group-1".into(),
        round: 2,
        num_samples: 100,
        metrics: BTreeMap::from([("loss".into(), 0.5)]),
    }
}

fn set(flat: Vec<f32>) -> WeightSet {
    WeightSet::from_flat(&layout(), flat).unwrap()
}

fn decode(bytes: &[u8], base: &[f32], e: UpdateEncoding) -> Result<WeightSet, FormatError> {
    decode_update(bytes, &layout(), Some(base), Some(e), LIMITS).map(|(w, _, _)| w)
}

#[test]
fn encodings_parse_and_print() {
    for e in UpdateEncoding::EXAMPLES {
        assert_eq!(e.to_string().parse::<UpdateEncoding>().unwrap(), e);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<UpdateEncoding>(&json).unwrap(), e);
        assert!(!e.explanation().is_empty());
    }
    assert_eq!(
        "topk:0.010".parse::<UpdateEncoding>().unwrap().to_string(),
        "topk:0.01"
    );
    for bad in [
        "f64", "topk", "topk:0", "topk:1.5", "topk:NaN", "topk:x", "INT8",
    ] {
        assert!(bad.parse::<UpdateEncoding>().is_err(), "{bad}");
    }
    assert_eq!(UpdateEncoding::default(), UpdateEncoding::F32);
    assert!(serde_json::from_str::<UpdateEncoding>("\"topk:2\"").is_err());
}

#[test]
fn int8_round_trip_is_within_half_a_step() {
    let base = values(40, 1, 1.0);
    let trained: Vec<f32> = base
        .iter()
        .zip(values(40, 2, 0.05))
        .map(|(b, d)| b + d)
        .collect();
    for per_channel in [true, false] {
        let e = UpdateEncoding::Int8 { per_channel };
        let mut fb = ErrorFeedback::default();
        let bytes = encode_update(
            e,
            &set(base.clone()),
            &set(trained.clone()),
            &meta(),
            &mut fb,
            Rounding::Nearest,
        )
        .unwrap();
        let (w, m, found) = decode_update(&bytes, &layout(), Some(&base), Some(e), LIMITS).unwrap();
        assert_eq!(found, e);
        assert_eq!(m, meta());
        let got = w.flatten();
        // The bound: each tensor's (or channel's) max |delta| / 127 / 2.
        let mut offset = 0;
        for spec in &layout().0 {
            let n = spec.num_elements();
            let channels = if per_channel && spec.shape.len() >= 2 {
                spec.shape[0]
            } else {
                1
            };
            let inner = n / channels;
            for c in 0..channels {
                let range = offset + c * inner..offset + (c + 1) * inner;
                let max = range
                    .clone()
                    .map(|i| (trained[i] - base[i]).abs())
                    .fold(0f32, f32::max);
                let bound = max / 127.0 / 2.0 * 1.0001 + 1e-7;
                for i in range {
                    let err = (got[i] - trained[i]).abs();
                    assert!(err <= bound, "{e} entry {i}: error {err} > {bound}");
                }
            }
            offset += n;
        }
        // About one byte per parameter, plus the header.
        assert!(bytes.len() < 40 + 600, "{} bytes", bytes.len());
        // What was not sent stays in the feedback.
        for (i, r) in fb.residual().iter().enumerate() {
            let sent = got[i] - base[i];
            assert!((trained[i] - base[i] - sent - r).abs() < 1e-6);
        }
    }
}

#[test]
fn stochastic_rounding_stays_within_one_step_and_is_unbiased_on_average() {
    let layout = WeightLayout(vec![TensorSpec::new("x", vec![1000])]);
    let mut delta = vec![0.3f32; 1000];
    delta[0] = 1.27; // scale 0.01: 0.3 is 30 steps exactly; make it fractional.
    for d in delta.iter_mut().skip(1) {
        *d = 0.3033;
    }
    let (_, sent) = encode_delta(
        UpdateEncoding::Int8 { per_channel: false },
        &layout,
        &delta,
        &meta(),
        Rounding::Stochastic { seed: 7 },
    )
    .unwrap();
    let scale = 1.27 / 127.0;
    for (d, s) in delta.iter().zip(&sent) {
        assert!((d - s).abs() <= scale * 1.0001, "{d} vs {s}");
    }
    let mean: f32 = sent[1..].iter().sum::<f32>() / 999.0;
    assert!((mean - 0.3033).abs() < 0.001, "mean {mean}");
}

#[test]
fn topk_keeps_exactly_the_k_largest() {
    let base = vec![0.0; 40];
    let delta = values(40, 3, 1.0);
    let e = UpdateEncoding::TopK { fraction: 0.25 };
    let (bytes, sent) = encode_delta(e, &layout(), &delta, &meta(), Rounding::Nearest).unwrap();
    let got = decode(&bytes, &base, e).unwrap().flatten();
    for (a, b) in got.iter().zip(&sent) {
        assert_eq!(a, b);
    }
    let mut offset = 0;
    for spec in &layout().0 {
        let n = spec.num_elements();
        let k = (n as f64 * 0.25).ceil() as usize;
        let d = &delta[offset..offset + n];
        let g = &got[offset..offset + n];
        let mut sorted: Vec<f32> = d.iter().map(|v| v.abs()).collect();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let threshold = sorted[k - 1];
        let kept: Vec<usize> = (0..n).filter(|&i| g[i] != 0.0).collect();
        assert_eq!(kept.len(), k, "{}", spec.name);
        for i in 0..n {
            if d[i].abs() >= threshold {
                assert!((g[i] - d[i]).abs() <= d[i].abs() * 1e-3, "{i}");
            } else {
                assert_eq!(g[i], 0.0, "{i}");
            }
        }
        offset += n;
    }
    // 32 and 8 entries of 4 + 2 bytes, plus the header.
    assert!(bytes.len() < (8 + 2) * 6 + 700, "{}", bytes.len());
}

#[test]
fn f16_delta_round_trips_closely_and_f32_is_the_plain_format() {
    let base = values(40, 4, 1.0);
    let trained: Vec<f32> = base.iter().map(|b| b + 0.01).collect();
    let mut fb = ErrorFeedback::default();
    let bytes = encode_update(
        UpdateEncoding::F16,
        &set(base.clone()),
        &set(trained.clone()),
        &meta(),
        &mut fb,
        Rounding::Nearest,
    )
    .unwrap();
    let got = decode(&bytes, &base, UpdateEncoding::F16)
        .unwrap()
        .flatten();
    for (g, t) in got.iter().zip(&trained) {
        assert!((g - t).abs() < 1e-5, "{g} vs {t}");
    }
    let plain = encode_update(
        UpdateEncoding::F32,
        &set(base.clone()),
        &set(trained.clone()),
        &meta(),
        &mut fb,
        Rounding::Nearest,
    )
    .unwrap();
    assert_eq!(
        weights::decode(&plain, &layout(), usize::MAX).unwrap().0,
        set(trained.clone())
    );
    // No base needed for f32.
    let (w, _, found) = decode_update(&plain, &layout(), None, None, LIMITS).unwrap();
    assert_eq!((w, found), (set(trained), UpdateEncoding::F32));
}

#[test]
fn a_different_encoding_is_refused_naming_both() {
    let base = vec![0.0; 40];
    let delta = values(40, 5, 1.0);
    let (bytes, _) = encode_delta(
        UpdateEncoding::TopK { fraction: 0.1 },
        &layout(),
        &delta,
        &meta(),
        Rounding::Nearest,
    )
    .unwrap();
    for expected in [
        UpdateEncoding::F32,
        UpdateEncoding::Int8 { per_channel: true },
        UpdateEncoding::TopK { fraction: 0.01 },
    ] {
        let err = decode(&bytes, &base, expected).unwrap_err();
        assert_eq!(
            err,
            FormatError::EncodingMismatch {
                found: "topk:0.1".into(),
                expected: expected.to_string()
            }
        );
        assert!(err.to_string().contains("topk:0.1"), "{err}");
    }
    // An f32 file sent to an int8 group.
    let plain = weights::encode(&set(delta), &meta(), Dtype::F32).unwrap();
    let err = decode(&plain, &base, UpdateEncoding::Int8 { per_channel: false }).unwrap_err();
    assert_eq!(
        err.to_string(),
        "update is encoded as f32, but this group takes int8-tensor updates"
    );
    // A delta needs the base.
    assert!(matches!(
        decode_update(&bytes, &layout(), None, None, LIMITS),
        Err(FormatError::BadMetadata(_))
    ));
}

/// Builds a delta file from raw tensors, bypassing the encoder's checks.
fn raw(encoding: &str, tensors: Vec<(&str, StDtype, Vec<usize>, Vec<u8>)>) -> Vec<u8> {
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let mut info: HashMap<String, String> = info_map(&meta(), DELTA_FORMAT).unwrap();
    info.insert("encoding".into(), encoding.into());
    safetensors::serialize(views, Some(info)).unwrap()
}

fn u32s(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f16s(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| f16::from_f32(*x).to_le_bytes())
        .collect()
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn hostile_topk_files_are_refused() {
    let layout = WeightLayout(vec![TensorSpec::new("x", vec![6])]);
    let base = vec![0.0; 6];
    // topk:0.5 of 6 entries: k = 3.
    let e = UpdateEncoding::TopK { fraction: 0.5 };
    let file = |idx: &[u32], vals: &[f32]| {
        raw(
            "topk:0.5",
            vec![
                ("x.idx", StDtype::U32, vec![idx.len()], u32s(idx)),
                ("x.val", StDtype::F16, vec![vals.len()], f16s(vals)),
            ],
        )
    };
    let dec = |bytes: &[u8]| {
        decode_update(bytes, &layout, Some(&base), Some(e), LIMITS).map(|(w, _, _)| w.flatten())
    };
    assert_eq!(
        dec(&file(&[0, 2, 5], &[1.0, 2.0, 3.0])).unwrap(),
        vec![1.0, 0.0, 2.0, 0.0, 0.0, 3.0]
    );
    let message = |bytes: Vec<u8>| dec(&bytes).unwrap_err().to_string();
    let m = message(file(&[0, 2, 6], &[1.0, 2.0, 3.0]));
    assert!(m.contains("index 6, out of range"), "{m}");
    let m = message(file(&[0, u32::MAX, 1], &[1.0, 2.0, 3.0]));
    assert!(m.contains("out of range"), "{m}");
    let m = message(file(&[0, 2, 2], &[1.0, 2.0, 3.0]));
    assert!(m.contains("index 2 appears twice"), "{m}");
    let m = message(file(&[3, 2, 4], &[1.0, 2.0, 3.0]));
    assert!(m.contains("increasing"), "{m}");
    // Wrong counts: fewer, more, more than the tensor has, idx and val disagreeing.
    let m = message(file(&[0, 2], &[1.0, 2.0]));
    assert!(m.contains("carries 2 entries, expected 3"), "{m}");
    let m = message(file(&[0, 1, 2, 3], &[1.0, 2.0, 3.0, 4.0]));
    assert!(m.contains("carries 4 entries, expected 3"), "{m}");
    let m = message(file(&[0, 1, 2, 3, 4, 5, 6], &[1.0; 7]));
    assert!(m.contains("only 6"), "{m}");
    let m = message(file(&[0, 1, 2], &[1.0, 2.0]));
    assert!(m.contains("x.val"), "{m}");
    // Non-finite values, wrong dtypes, missing or extra tensors.
    let m = message(file(&[0, 1, 2], &[1.0, f32::INFINITY, 2.0]));
    assert!(m.contains("non-finite"), "{m}");
    let m = message(raw(
        "topk:0.5",
        vec![
            ("x.idx", StDtype::U32, vec![3], u32s(&[0, 1, 2])),
            ("x.val", StDtype::F32, vec![3], f32s(&[1.0, 2.0, 3.0])),
        ],
    ));
    assert!(m.contains("dtype F32, expected F16"), "{m}");
    let m = message(raw(
        "topk:0.5",
        vec![("x.idx", StDtype::U32, vec![3], u32s(&[0, 1, 2]))],
    ));
    assert!(m.contains("`x.val` is missing"), "{m}");
    let m = message(raw(
        "topk:0.5",
        vec![
            ("x.idx", StDtype::U32, vec![3], u32s(&[0, 1, 2])),
            ("x.val", StDtype::F16, vec![3], f16s(&[1.0, 2.0, 3.0])),
            ("y.idx", StDtype::U32, vec![1], u32s(&[0])),
        ],
    ));
    assert!(m.contains("`y.idx` is not part"), "{m}");
    // An encoding key that does not parse, or that is not a delta.
    for bad in ["topk:7", "zip", "f32"] {
        let m = message(raw(bad, vec![]));
        assert!(m.contains("update metadata"), "{bad}: {m}");
    }
}

#[test]
fn hostile_int8_files_are_refused() {
    let layout = WeightLayout(vec![TensorSpec::new("w", vec![2, 3])]);
    let base = vec![1.0; 6];
    let e = UpdateEncoding::Int8 { per_channel: true };
    let file = |q: &[i8], qshape: Vec<usize>, scales: &[f32]| {
        raw(
            "int8",
            vec![
                (
                    "w.q",
                    StDtype::I8,
                    qshape,
                    q.iter().map(|v| *v as u8).collect(),
                ),
                ("w.scale", StDtype::F32, vec![scales.len()], f32s(scales)),
            ],
        )
    };
    let dec = |bytes: &[u8]| {
        decode_update(bytes, &layout, Some(&base), Some(e), LIMITS).map(|(w, _, _)| w.flatten())
    };
    assert_eq!(
        dec(&file(&[127, 0, -127, 1, 2, 3], vec![2, 3], &[0.5, 0.25])).unwrap(),
        vec![64.5, 1.0, -62.5, 1.25, 1.5, 1.75]
    );
    for bad_scale in [f32::NAN, f32::INFINITY, -1.0] {
        let m = dec(&file(&[0; 6], vec![2, 3], &[0.5, bad_scale]))
            .unwrap_err()
            .to_string();
        assert!(m.contains("scale 1 is"), "{m}");
    }
    // A finite scale that overflows the weights.
    let m = dec(&file(&[127; 6], vec![2, 3], &[f32::MAX, 1.0]))
        .unwrap_err()
        .to_string();
    assert!(m.contains("non-finite"), "{m}");
    // One scale where the group expects one per channel; a wrong shape of levels.
    let m = dec(&file(&[0; 6], vec![2, 3], &[0.5]))
        .unwrap_err()
        .to_string();
    assert!(m.contains("w.scale") && m.contains("[2]"), "{m}");
    let m = dec(&file(&[0; 6], vec![3, 2], &[0.5, 0.5]))
        .unwrap_err()
        .to_string();
    assert!(m.contains("w.q") && m.contains("[2, 3]"), "{m}");
    // The tensor itself instead of its levels.
    let m = dec(&raw(
        "int8",
        vec![("w", StDtype::F32, vec![2, 3], f32s(&[0.0; 6]))],
    ))
    .unwrap_err()
    .to_string();
    assert!(m.contains("`w` is not part"), "{m}");
    // Too large is checked first.
    let bytes = file(&[0; 6], vec![2, 3], &[0.5, 0.5]);
    let small = DecodeLimits {
        max_bytes: 10,
        max_metrics: 16,
    };
    assert!(
        decode_update(&bytes, &layout, Some(&base), Some(e), small)
            .unwrap_err()
            .is_too_large()
    );
}

#[test]
fn error_feedback_makes_the_sent_deltas_add_up_to_the_true_ones() {
    let base = set(vec![0.0; 40]);
    let e = UpdateEncoding::TopK { fraction: 0.1 };
    let rounds = 30;
    let mut with = ErrorFeedback::default();
    let mut true_sum = vec![0f32; 40];
    let mut sent_with = vec![0f32; 40];
    let mut sent_without = vec![0f32; 40];
    for r in 0..rounds {
        // A consistent direction plus noise: what local training tends to produce.
        let delta: Vec<f32> = values(40, 100 + r, 0.01)
            .iter()
            .enumerate()
            .map(|(i, n)| n + 0.001 * (i as f32 % 7.0 - 3.0))
            .collect();
        for (s, d) in true_sum.iter_mut().zip(&delta) {
            *s += d;
        }
        let trained = set(delta.clone());
        let bytes =
            encode_update(e, &base, &trained, &meta(), &mut with, Rounding::Nearest).unwrap();
        let got = decode(&bytes, &[0.0; 40], e).unwrap().flatten();
        for (s, g) in sent_with.iter_mut().zip(&got) {
            *s += g;
        }
        let mut none = ErrorFeedback::default();
        let bytes =
            encode_update(e, &base, &trained, &meta(), &mut none, Rounding::Nearest).unwrap();
        let got = decode(&bytes, &[0.0; 40], e).unwrap().flatten();
        for (s, g) in sent_without.iter_mut().zip(&got) {
            *s += g;
        }
    }
    let dist = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt()
    };
    let err_with = dist(&true_sum, &sent_with);
    let err_without = dist(&true_sum, &sent_without);
    let norm = dist(&true_sum, &[0.0; 40]);
    // With feedback the gap is exactly what is still held back (f16 rounding aside) ...
    let held: f32 = with.residual().iter().map(|r| r * r).sum::<f32>().sqrt();
    assert!((err_with - held).abs() < 1e-3, "{err_with} vs {held}");
    // ... and much smaller than without.
    assert!(
        err_with < 0.5 * err_without,
        "with {err_with}, without {err_without}"
    );
    assert!(err_with < 0.3 * norm, "with {err_with}, norm {norm}");
}

#[test]
fn encode_rejects_mismatched_layouts_and_non_finite_deltas() {
    let base = set(vec![0.0; 40]);
    let mut other = WeightSet {
        tensors: vec![NamedTensor {
            name: "x".into(),
            shape: vec![1],
            data: vec![1.0],
        }],
    };
    let mut fb = ErrorFeedback::default();
    let e = UpdateEncoding::Int8 { per_channel: true };
    assert!(matches!(
        encode_update(e, &base, &other, &meta(), &mut fb, Rounding::Nearest),
        Err(FormatError::Encode(_))
    ));
    other = set(vec![f32::NAN; 40]);
    assert!(matches!(
        encode_update(e, &base, &other, &meta(), &mut fb, Rounding::Nearest),
        Err(FormatError::NonFinite { .. })
    ));
}
