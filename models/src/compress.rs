//! Compressed updates: what a group chooses as its [`UpdateEncoding`], how a client encodes its
//! trained weights in it ([`encode_update`], with [`ErrorFeedback`]) and how the server decodes
//! any of them back into full weights ([`decode_update`]).
//!
//! `f32` is today's format ([`crate::weights`], `b3o-update/1`: the full weights). Every other
//! encoding carries the **delta** from the round's base model, in a safetensors file whose
//! `format` is [`DELTA_FORMAT`] and whose `encoding` metadata names the encoding
//! (`f16`, `int8`, `int8-tensor`, `topk:0.01`). Per tensor `name` of the layout:
//!
//! | encoding | tensors | bytes per parameter |
//! |---|---|---|
//! | `f16` | `name` F16, the tensor's shape | 2 |
//! | `int8` | `name.q` I8 (shape), `name.scale` F32 `[shape[0]]` for tensors of rank >= 2, else `[1]` | ~1 |
//! | `int8-tensor` | `name.q` I8 (shape), `name.scale` F32 `[1]` | ~1 |
//! | `topk:f` | `name.idx` U32 `[k]` (strictly increasing), `name.val` F16 `[k]`, `k = ceil(f * n)` (at least 1) | 6 f |
//!
//! int8 is symmetric: `scale = max|delta| / 127` per tensor or per output channel (first axis),
//! `q = round(delta / scale)` (nearest or stochastic), so each value is off by at most
//! `scale / 2` (nearest). Top-k keeps the `k` entries of largest `|delta|` of each tensor.
//!
//! [`decode_update`] is the gate for untrusted bytes like [`crate::weights::decode_with`]: the
//! encoding must be the expected one ([`FormatError::EncodingMismatch`] names both), names and
//! counts are checked against the layout before anything is allocated from them, every index is
//! bounds-checked and strictly increasing (no duplicates), scales are finite and not negative,
//! and the rebuilt weights must be finite.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use half::f16;
use safetensors::{Dtype as StDtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::weights::{
    self, DecodeLimits, Dtype, FORMAT_VERSION, FormatError, UpdateMeta, WeightLayout, WeightSet,
    check_finite, info_map, parse_meta_as,
};

/// `format` of an update that carries a compressed delta from the round's base model.
pub const DELTA_FORMAT: &str = "b3o-delta/1";

/// Smallest top-k fraction a group may choose.
pub const MIN_TOPK_FRACTION: f64 = 0.001;

/// How a group's members send their updates. On the wire and in JSON a string: `f32`
/// (default), `f16`, `int8` (per-channel scale), `int8-tensor` (per-tensor scale),
/// `topk:FRACTION` (e.g. `topk:0.01`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum UpdateEncoding {
    /// Full weights in f32 (`b3o-update/1`): 4 bytes per parameter.
    #[default]
    F32,
    /// The delta in half precision: 2 bytes per parameter.
    F16,
    /// The delta quantised to 8 bits with a symmetric scale per output channel (first axis;
    /// tensors of rank < 2 get one scale) or per tensor.
    Int8 { per_channel: bool },
    /// The `fraction` largest entries of the delta of each tensor (indices + f16 values).
    TopK { fraction: f64 },
}

impl UpdateEncoding {
    /// Every kind, for forms and help (top-k with its usual fraction).
    pub const EXAMPLES: [UpdateEncoding; 6] = [
        UpdateEncoding::F32,
        UpdateEncoding::F16,
        UpdateEncoding::Int8 { per_channel: true },
        UpdateEncoding::Int8 { per_channel: false },
        UpdateEncoding::TopK { fraction: 0.1 },
        UpdateEncoding::TopK { fraction: 0.01 },
    ];

    /// True for the encodings that carry a delta (all but `f32`).
    pub fn is_delta(&self) -> bool {
        !matches!(self, UpdateEncoding::F32)
    }

    /// Checks the top-k fraction.
    pub fn validate(&self) -> Result<(), String> {
        if let UpdateEncoding::TopK { fraction } = self
            && !(fraction.is_finite() && (MIN_TOPK_FRACTION..=1.0).contains(fraction))
        {
            return Err(format!(
                "the top-k fraction must be in {MIN_TOPK_FRACTION}..=1, got {fraction}"
            ));
        }
        Ok(())
    }

    /// One line in plain words, for the create-group form and the group page.
    pub fn explanation(&self) -> String {
        match self {
            UpdateEncoding::F32 => {
                "Full precision: exact, 4 bytes per parameter (the default).".into()
            }
            UpdateEncoding::F16 => {
                "Half precision: the change to the model in 2 bytes per parameter, almost exact."
                    .into()
            }
            UpdateEncoding::Int8 { per_channel: true } => {
                "8-bit: the change in about 1 byte per parameter, one scale per neuron.".into()
            }
            UpdateEncoding::Int8 { per_channel: false } => {
                "8-bit, one scale per tensor: about 1 byte per parameter, a little coarser.".into()
            }
            UpdateEncoding::TopK { fraction } => format!(
                "Sparse: only the largest {}% of the changes ({:.2} bytes per parameter); \
                 the rest is carried over to later rounds.",
                fraction * 100.0,
                6.0 * fraction
            ),
        }
    }

    /// Entries a top-k update keeps of a tensor of `n`.
    pub fn topk_count(fraction: f64, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let k = (fraction * n as f64).ceil();
        if k.is_finite() && k >= 1.0 {
            (k as usize).min(n)
        } else {
            1
        }
    }
}

impl fmt::Display for UpdateEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateEncoding::F32 => f.write_str("f32"),
            UpdateEncoding::F16 => f.write_str("f16"),
            UpdateEncoding::Int8 { per_channel: true } => f.write_str("int8"),
            UpdateEncoding::Int8 { per_channel: false } => f.write_str("int8-tensor"),
            UpdateEncoding::TopK { fraction } => write!(f, "topk:{fraction}"),
        }
    }
}

impl FromStr for UpdateEncoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let encoding = match s {
            "f32" => UpdateEncoding::F32,
            "f16" => UpdateEncoding::F16,
            "int8" | "int8-channel" => UpdateEncoding::Int8 { per_channel: true },
            "int8-tensor" => UpdateEncoding::Int8 { per_channel: false },
            other => match other.strip_prefix("topk:") {
                Some(f) => UpdateEncoding::TopK {
                    fraction: f
                        .parse()
                        .map_err(|_| format!("`{f}` is not a top-k fraction (e.g. topk:0.01)"))?,
                },
                None => {
                    return Err(format!(
                        "unknown update encoding `{}`: use f32, f16, int8, int8-tensor or \
                         topk:FRACTION",
                        other.chars().take(40).collect::<String>()
                    ));
                }
            },
        };
        encoding.validate()?;
        Ok(encoding)
    }
}

impl Serialize for UpdateEncoding {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UpdateEncoding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for UpdateEncoding {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let object = utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^(f32|f16|int8|int8-tensor|topk:[0-9.eE+-]+)$"))
            .default(Some(serde_json::json!("f32")))
            .examples([serde_json::json!("int8"), serde_json::json!("topk:0.01")])
            .description(Some(
                "How members send their updates: `f32` (full weights, the default), or the \
                 change from the round's base model as `f16`, `int8` (8-bit, a scale per \
                 output channel), `int8-tensor` (8-bit, a scale per tensor) or \
                 `topk:FRACTION` (the largest FRACTION of each tensor's entries, \
                 0.001..=1; clients keep the rest for later rounds).",
            ))
            .build();
        utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(object))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for UpdateEncoding {}

/// How int8 rounds a scaled value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rounding {
    /// To the nearest level: off by at most `scale / 2`.
    #[default]
    Nearest,
    /// Up or down with the probability that makes it unbiased (off by less than `scale`).
    Stochastic { seed: u64 },
}

/// What a client keeps between rounds: the part of its deltas that was not sent yet (top-k's
/// dropped entries, int8's rounding), added to the next round's delta.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorFeedback {
    residual: Vec<f32>,
}

impl ErrorFeedback {
    /// The flat residual (empty before the first compressed round).
    pub fn residual(&self) -> &[f32] {
        &self.residual
    }

    pub fn clear(&mut self) {
        self.residual.clear();
    }
}

/// Encodes trained weights as an update in `encoding` from `base` (the round's base model):
/// `f32` is [`crate::weights::encode`] of the weights; the others encode `trained - base`
/// plus `feedback`'s residual, and leave in `feedback` what was not sent.
pub fn encode_update(
    encoding: UpdateEncoding,
    base: &WeightSet,
    trained: &WeightSet,
    meta: &UpdateMeta,
    feedback: &mut ErrorFeedback,
    rounding: Rounding,
) -> Result<Vec<u8>, FormatError> {
    encoding.validate().map_err(FormatError::Encode)?;
    if !encoding.is_delta() {
        feedback.clear();
        return weights::encode(trained, meta, Dtype::F32);
    }
    let layout = trained.layout();
    if base.layout() != layout {
        return Err(FormatError::Encode(
            "the trained weights and the base model have different layouts".into(),
        ));
    }
    let mut delta: Vec<f32> = trained
        .flatten()
        .iter()
        .zip(base.flatten())
        .map(|(t, b)| t - b)
        .collect();
    if feedback.residual.len() == delta.len() {
        for (d, r) in delta.iter_mut().zip(&feedback.residual) {
            *d += r;
        }
    }
    let (bytes, sent) = encode_delta(encoding, &layout, &delta, meta, rounding)?;
    feedback.residual = delta.iter().zip(&sent).map(|(d, s)| d - s).collect();
    Ok(bytes)
}

/// Encodes a flat delta (layout order) in a delta `encoding`; returns the file and the delta
/// as the receiver will decode it.
pub fn encode_delta(
    encoding: UpdateEncoding,
    layout: &WeightLayout,
    delta: &[f32],
    meta: &UpdateMeta,
    rounding: Rounding,
) -> Result<(Vec<u8>, Vec<f32>), FormatError> {
    encoding.validate().map_err(FormatError::Encode)?;
    if !encoding.is_delta() {
        return Err(FormatError::Encode(
            "f32 updates carry weights, not a delta".into(),
        ));
    }
    if delta.len() != layout.num_params() {
        return Err(FormatError::LengthMismatch {
            expected: layout.num_params(),
            found: delta.len(),
        });
    }
    let mut rng = match rounding {
        Rounding::Stochastic { seed } => Some(SplitMix(seed)),
        Rounding::Nearest => None,
    };
    let mut sent = vec![0f32; delta.len()];
    // (name, dtype, shape, bytes)
    let mut buffers: Vec<(String, StDtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut offset = 0;
    for spec in &layout.0 {
        let n = spec.num_elements();
        let d = &delta[offset..offset + n];
        let out = &mut sent[offset..offset + n];
        offset += n;
        check_finite(&spec.name, d.iter().copied())?;
        match encoding {
            UpdateEncoding::F32 => unreachable!("checked above"),
            UpdateEncoding::F16 => {
                let halves: Vec<f16> = d.iter().map(|&v| f16::from_f32(v)).collect();
                check_finite(&spec.name, halves.iter().map(|h| h.to_f32()))?;
                for (o, h) in out.iter_mut().zip(&halves) {
                    *o = h.to_f32();
                }
                let bytes = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
                buffers.push((spec.name.clone(), StDtype::F16, spec.shape.clone(), bytes));
            }
            UpdateEncoding::Int8 { per_channel } => {
                let channels = int8_channels(per_channel, &spec.shape, n);
                let inner = n.checked_div(channels).unwrap_or(0);
                let mut q = Vec::with_capacity(n);
                let mut scales = Vec::with_capacity(channels);
                for c in 0..channels {
                    let row = &d[c * inner..(c + 1) * inner];
                    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let scale = max / 127.0;
                    scales.push(scale);
                    for (i, &v) in row.iter().enumerate() {
                        let level = if scale > 0.0 {
                            let x = v / scale;
                            let r = match rng.as_mut() {
                                None => x.round(),
                                Some(rng) => (x + rng.unit()).floor(),
                            };
                            r.clamp(-127.0, 127.0)
                        } else {
                            0.0
                        };
                        q.push(level as i8);
                        out[c * inner + i] = level * scale;
                    }
                }
                buffers.push((
                    format!("{}.q", spec.name),
                    StDtype::I8,
                    spec.shape.clone(),
                    q.iter().map(|v| *v as u8).collect(),
                ));
                buffers.push((
                    format!("{}.scale", spec.name),
                    StDtype::F32,
                    vec![channels],
                    scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
                ));
            }
            UpdateEncoding::TopK { fraction } => {
                let k = UpdateEncoding::topk_count(fraction, n);
                let mut order: Vec<u32> = (0..n as u32).collect();
                let by_size = |a: &u32, b: &u32| {
                    d[*b as usize]
                        .abs()
                        .total_cmp(&d[*a as usize].abs())
                        .then(a.cmp(b))
                };
                if k < n && k > 0 {
                    order.select_nth_unstable_by(k - 1, by_size);
                }
                let mut idx: Vec<u32> = order.into_iter().take(k).collect();
                idx.sort_unstable();
                let vals: Vec<f16> = idx.iter().map(|&i| f16::from_f32(d[i as usize])).collect();
                check_finite(&spec.name, vals.iter().map(|h| h.to_f32()))?;
                for (&i, v) in idx.iter().zip(&vals) {
                    out[i as usize] = v.to_f32();
                }
                buffers.push((
                    format!("{}.idx", spec.name),
                    StDtype::U32,
                    vec![k],
                    idx.iter().flat_map(|i| i.to_le_bytes()).collect(),
                ));
                buffers.push((
                    format!("{}.val", spec.name),
                    StDtype::F16,
                    vec![k],
                    vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ));
            }
        }
    }
    let mut views = Vec::with_capacity(buffers.len());
    for (name, dtype, shape, bytes) in &buffers {
        let view = TensorView::new(*dtype, shape.clone(), bytes)
            .map_err(|e| FormatError::Encode(format!("tensor `{name}`: {e}")))?;
        views.push((name.as_str(), view));
    }
    let mut info = info_map(meta, DELTA_FORMAT)?;
    info.insert("encoding".into(), encoding.to_string());
    let bytes = safetensors::serialize(views, Some(info))
        .map_err(|e| FormatError::Encode(e.to_string()))?;
    Ok((bytes, sent))
}

/// Scales an int8 tensor of this shape has.
fn int8_channels(per_channel: bool, shape: &[usize], n: usize) -> usize {
    if n == 0 {
        0
    } else if per_channel && shape.len() >= 2 {
        shape[0]
    } else {
        1
    }
}

/// The encoding an update says it is in (from its metadata), without decoding it.
pub fn update_encoding(bytes: &[u8]) -> Result<UpdateEncoding, FormatError> {
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| FormatError::Malformed(e.to_string()))?;
    encoding_of(header.metadata().as_ref())
}

fn encoding_of(map: Option<&HashMap<String, String>>) -> Result<UpdateEncoding, FormatError> {
    let map = map.ok_or_else(|| FormatError::BadMetadata("no `__metadata__` section".into()))?;
    match map.get("format").map(String::as_str) {
        Some(FORMAT_VERSION) => Ok(UpdateEncoding::F32),
        Some(DELTA_FORMAT) => {
            let raw = map
                .get("encoding")
                .ok_or_else(|| FormatError::BadMetadata("missing key `encoding`".into()))?;
            let encoding: UpdateEncoding = raw
                .parse()
                .map_err(|e| FormatError::BadMetadata(format!("`encoding`: {e}")))?;
            if !encoding.is_delta() {
                return Err(FormatError::BadMetadata(
                    "`encoding` f32 is not a delta encoding".into(),
                ));
            }
            Ok(encoding)
        }
        Some(other) => Err(FormatError::BadMetadata(format!(
            "format `{}` is not supported (expected `{FORMAT_VERSION}` or `{DELTA_FORMAT}`)",
            other.chars().take(40).collect::<String>()
        ))),
        None => Err(FormatError::BadMetadata("missing key `format`".into())),
    }
}

/// Decodes an update in any encoding into full weights, refusing one that is not in
/// `expected` (`None`: whatever it says, for the receiver's own stored files). `base` is the
/// round's base model, flat in layout order: deltas are added to it (needed for every
/// encoding but `f32`). Returns the weights, the metadata and the update's encoding.
pub fn decode_update(
    bytes: &[u8],
    layout: &WeightLayout,
    base: Option<&[f32]>,
    expected: Option<UpdateEncoding>,
    limits: DecodeLimits,
) -> Result<(WeightSet, UpdateMeta, UpdateEncoding), FormatError> {
    if bytes.len() > limits.max_bytes {
        return Err(FormatError::TooLarge {
            size: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| FormatError::Malformed(e.to_string()))?;
    let found = encoding_of(header.metadata().as_ref())?;
    if let Some(expected) = expected
        && found != expected
    {
        return Err(FormatError::EncodingMismatch {
            found: found.to_string(),
            expected: expected.to_string(),
        });
    }
    if !found.is_delta() {
        let (set, meta) = weights::decode_with(bytes, layout, limits)?;
        return Ok((set, meta, found));
    }
    let meta = parse_meta_as(header.metadata().as_ref(), limits.max_metrics, DELTA_FORMAT)?;
    let base = base.ok_or_else(|| {
        FormatError::BadMetadata(format!(
            "a {found} update carries a delta, and the base model is not known"
        ))
    })?;
    let total = layout.checked_num_params().ok_or_else(|| {
        FormatError::Malformed("the model's layout has too many parameters".into())
    })?;
    if base.len() != total {
        return Err(FormatError::LengthMismatch {
            expected: total,
            found: base.len(),
        });
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| FormatError::Malformed(e.to_string()))?;

    // Names: exactly those of the layout in this encoding.
    let suffixes: &[&str] = match found {
        UpdateEncoding::F32 | UpdateEncoding::F16 => &[""],
        UpdateEncoding::Int8 { .. } => &[".q", ".scale"],
        UpdateEncoding::TopK { .. } => &[".idx", ".val"],
    };
    let expected_names: BTreeSet<String> = layout
        .0
        .iter()
        .flat_map(|s| suffixes.iter().map(move |x| format!("{}{x}", s.name)))
        .collect();
    let mut present: Vec<&str> = st.names();
    present.sort_unstable();
    for name in &present {
        if !expected_names.contains(*name) {
            return Err(FormatError::UnexpectedTensor {
                name: name.to_string(),
            });
        }
    }
    let view = |name: String| {
        st.tensor(&name)
            .map_err(|_| FormatError::MissingTensor { name })
    };
    let bad = |name: &str, problem: String| FormatError::BadEncoding {
        name: name.to_string(),
        problem,
    };
    let want = |name: &str, v: &TensorView<'_>, dtype: StDtype, shape: &[usize]| {
        if v.dtype() != dtype {
            return Err(bad(
                name,
                format!("has dtype {:?}, expected {dtype:?}", v.dtype()),
            ));
        }
        if v.shape() != shape {
            return Err(FormatError::ShapeMismatch {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: v.shape().to_vec(),
            });
        }
        Ok(())
    };

    let mut full = base.to_vec();
    let mut offset = 0;
    for spec in &layout.0 {
        let n = spec.num_elements();
        let out = &mut full[offset..offset + n];
        offset += n;
        match found {
            UpdateEncoding::F32 => unreachable!("full weights are decoded above"),
            UpdateEncoding::F16 => {
                let v = view(spec.name.clone())?;
                want(&spec.name, &v, StDtype::F16, &spec.shape)?;
                for (o, c) in out.iter_mut().zip(v.data().chunks_exact(2)) {
                    *o += f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            UpdateEncoding::Int8 { per_channel } => {
                let qname = format!("{}.q", spec.name);
                let sname = format!("{}.scale", spec.name);
                let q = view(qname.clone())?;
                want(&qname, &q, StDtype::I8, &spec.shape)?;
                let channels = int8_channels(per_channel, &spec.shape, n);
                let s = view(sname.clone())?;
                want(&sname, &s, StDtype::F32, &[channels])?;
                let inner = n.checked_div(channels).unwrap_or(0);
                for (c, sc) in s.data().chunks_exact(4).enumerate() {
                    let scale = f32::from_le_bytes([sc[0], sc[1], sc[2], sc[3]]);
                    if !(scale.is_finite() && scale >= 0.0) {
                        return Err(bad(
                            &sname,
                            format!("scale {c} is {scale}; scales are finite and not negative"),
                        ));
                    }
                    let levels = &q.data()[c * inner..(c + 1) * inner];
                    for (o, &l) in out[c * inner..(c + 1) * inner].iter_mut().zip(levels) {
                        *o += f32::from(l as i8) * scale;
                    }
                }
            }
            UpdateEncoding::TopK { fraction } => {
                let k = UpdateEncoding::topk_count(fraction, n);
                let iname = format!("{}.idx", spec.name);
                let vname = format!("{}.val", spec.name);
                let idx = view(iname.clone())?;
                let val = view(vname.clone())?;
                for (name, v) in [(&iname, &idx), (&vname, &val)] {
                    if let [count] = v.shape()
                        && *count != k
                    {
                        return Err(bad(
                            name,
                            if *count > n {
                                format!(
                                    "carries {count} entries but the tensor has only {n} \
                                     (expected {k} for {found})"
                                )
                            } else {
                                format!("carries {count} entries, expected {k} for {found}")
                            },
                        ));
                    }
                }
                want(&iname, &idx, StDtype::U32, &[k])?;
                want(&vname, &val, StDtype::F16, &[k])?;
                let mut previous: Option<u32> = None;
                for (i, (ic, vc)) in idx
                    .data()
                    .chunks_exact(4)
                    .zip(val.data().chunks_exact(2))
                    .enumerate()
                {
                    let index = u32::from_le_bytes([ic[0], ic[1], ic[2], ic[3]]);
                    if index as usize >= n {
                        return Err(bad(
                            &iname,
                            format!(
                                "entry {i} is index {index}, out of range (the tensor has {n} entries)"
                            ),
                        ));
                    }
                    match previous {
                        Some(p) if p == index => {
                            return Err(bad(&iname, format!("index {index} appears twice")));
                        }
                        Some(p) if p > index => {
                            return Err(bad(
                                &iname,
                                format!(
                                    "indices must be increasing: {index} (entry {i}) comes after {p}"
                                ),
                            ));
                        }
                        _ => {}
                    }
                    previous = Some(index);
                    let value = f16::from_le_bytes([vc[0], vc[1]]).to_f32();
                    if !value.is_finite() {
                        return Err(FormatError::NonFinite {
                            name: vname.clone(),
                            index: i,
                            value,
                        });
                    }
                    out[index as usize] += value;
                }
            }
        }
        check_finite(&spec.name, out.iter().copied())?;
    }
    let set = WeightSet::from_flat(layout, full)?;
    Ok((set, meta, found))
}

/// The delta of an update against `base` as a [`WeightSet`] would need it: for tests and
/// reports.
pub fn delta(weights: &WeightSet, base: &[f32]) -> Vec<f32> {
    weights
        .flatten()
        .iter()
        .zip(base)
        .map(|(w, b)| w - b)
        .collect()
}

/// A tiny deterministic generator for stochastic rounding (no dependency, same on wasm).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests;
