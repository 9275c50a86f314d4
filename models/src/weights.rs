//! The weight/update wire format: every model's parameters as named, shaped `f32` tensors, and
//! the bytes that travel between clients and the server.
//!
//! On the wire an update is a [safetensors](https://huggingface.co/docs/safetensors) file: one
//! tensor per [`TensorSpec`] of the model's [`WeightLayout`], little-endian `F32` or `F16`, and the
//! [`UpdateMeta`] in the safetensors `__metadata__` string map (`format`, `model_id`, `round`,
//! `num_samples`, and `metrics` as a JSON object of numbers).
//!
//! [`decode`] is the gate for untrusted bytes: it checks size, structure, names, shapes, dtypes and
//! finiteness against the layout the server expects, and its [`FormatError`] messages are written
//! to be shown to the uploader (413 for [`FormatError::TooLarge`], 400 for the rest).
//! [`decode_with`] also bounds the metadata's metrics ([`DecodeLimits`]), counting them while
//! they are parsed so that a header of 200,000 metrics is refused without building the map.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use half::f16;
use safetensors::{Dtype as StDtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

/// Value of the `format` metadata key; bumped on incompatible changes.
pub const FORMAT_VERSION: &str = "b3o-update/1";

/// The name and shape of one parameter tensor.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, shape: Vec<usize>) -> Self {
        Self {
            name: name.into(),
            shape,
        }
    }

    /// Number of scalars in the tensor (1 for a scalar with shape `[]`).
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The ordered list of parameter tensors of a model: what an update must contain, and the order
/// of [`WeightSet::flatten`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WeightLayout(pub Vec<TensorSpec>);

impl WeightLayout {
    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.0.iter().map(TensorSpec::num_elements).sum()
    }

    /// [`WeightLayout::num_params`] with checked arithmetic: `None` when a shape's product or
    /// the total overflows `usize`. For layouts that arrive from outside, before anything is
    /// allocated from them.
    pub fn checked_num_params(&self) -> Option<usize> {
        self.0.iter().try_fold(0usize, |total, spec| {
            let n = spec
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
            total.checked_add(n)
        })
    }
}

/// One named parameter tensor, row-major (C order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// All parameters of a model, in layout order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WeightSet {
    pub tensors: Vec<NamedTensor>,
}

impl WeightSet {
    /// The layout (names and shapes) of these weights.
    pub fn layout(&self) -> WeightLayout {
        WeightLayout(
            self.tensors
                .iter()
                .map(|t| TensorSpec::new(t.name.clone(), t.shape.clone()))
                .collect(),
        )
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.tensors.iter().map(|t| t.data.len()).sum()
    }

    /// All parameters concatenated in tensor order: the vector aggregation strategies work on.
    pub fn flatten(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.num_params());
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
        }
        out
    }

    /// The inverse of [`WeightSet::flatten`] for a given layout.
    pub fn from_flat(layout: &WeightLayout, flat: Vec<f32>) -> Result<Self, FormatError> {
        let expected = layout.num_params();
        if flat.len() != expected {
            return Err(FormatError::LengthMismatch {
                expected,
                found: flat.len(),
            });
        }
        let mut tensors = Vec::with_capacity(layout.0.len());
        let mut offset = 0;
        for spec in &layout.0 {
            let n = spec.num_elements();
            tensors.push(NamedTensor {
                name: spec.name.clone(),
                shape: spec.shape.clone(),
                data: flat[offset..offset + n].to_vec(),
            });
            offset += n;
        }
        Ok(Self { tensors })
    }

    /// The tensor with this name, if any.
    pub fn get(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// What a client says about an update besides its weights.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UpdateMeta {
    pub model_id: String,
    pub round: u64,
    pub num_samples: u64,
    /// Local metrics such as `loss`, `accuracy`, `roc_auc`; finite numbers only.
    pub metrics: BTreeMap<String, f64>,
}

/// Element type of the tensors on the wire. Weights are always `f32` in memory; `F16` halves
/// upload size at the cost of precision (values beyond ±65504 become infinite and are rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Dtype {
    #[default]
    F32,
    F16,
}

/// Why an update could not be encoded or was rejected. Messages are meant for the uploader.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("update is {size} bytes, more than the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("update is not a valid safetensors file: {0}")]
    Malformed(String),
    #[error("tensor `{name}` is missing from the update")]
    MissingTensor { name: String },
    #[error("tensor `{name}` is not part of this model")]
    UnexpectedTensor { name: String },
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}` has dtype {dtype}; only F32 and F16 are accepted")]
    UnsupportedDtype { name: String, dtype: String },
    #[error("tensor `{name}` has a non-finite value ({value}) at index {index}")]
    NonFinite {
        name: String,
        index: usize,
        value: f32,
    },
    #[error("update metadata: {0}")]
    BadMetadata(String),
    #[error("update metadata carries {count} metrics; at most {max} are accepted")]
    TooManyMetrics { count: usize, max: usize },
    #[error(
        "update metadata: metric `{shown}` has a name of {chars} characters; names have 1 to {max}"
    )]
    MetricName {
        /// The name's first characters.
        shown: String,
        chars: usize,
        max: usize,
    },
    #[error("expected {expected} parameters, got {found}")]
    LengthMismatch { expected: usize, found: usize },
    #[error("cannot encode update: {0}")]
    Encode(String),
    /// The update's encoding is not the one the receiver takes (`crate::compress`).
    #[error("update is encoded as {found}, but this group takes {expected} updates")]
    EncodingMismatch { found: String, expected: String },
    /// A compressed tensor that does not decode (`crate::compress`): bad index, count, scale.
    #[error("tensor `{name}`: {problem}")]
    BadEncoding { name: String, problem: String },
}

impl FormatError {
    /// True when the error is about size (HTTP 413) rather than content (HTTP 400).
    pub fn is_too_large(&self) -> bool {
        matches!(self, FormatError::TooLarge { .. })
    }
}

/// Serialises weights and metadata as a safetensors file.
///
/// Fails if a tensor's data does not match its shape, if names repeat, or if a weight or metric is
/// not finite (in `F16`, also if it overflows the half-precision range).
pub fn encode(
    weights: &WeightSet,
    meta: &UpdateMeta,
    dtype: Dtype,
) -> Result<Vec<u8>, FormatError> {
    let mut seen = BTreeSet::new();
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(weights.tensors.len());
    for t in &weights.tensors {
        if !seen.insert(t.name.as_str()) {
            return Err(FormatError::Encode(format!(
                "tensor `{}` appears twice",
                t.name
            )));
        }
        let n: usize = t.shape.iter().product();
        if n != t.data.len() {
            return Err(FormatError::Encode(format!(
                "tensor `{}` has {} values but shape {:?} needs {n}",
                t.name,
                t.data.len(),
                t.shape
            )));
        }
        let bytes = match dtype {
            Dtype::F32 => {
                check_finite(&t.name, t.data.iter().copied())?;
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect()
            }
            Dtype::F16 => {
                let halves: Vec<f16> = t.data.iter().map(|&v| f16::from_f32(v)).collect();
                check_finite(&t.name, halves.iter().map(|h| h.to_f32()))?;
                halves.iter().flat_map(|v| v.to_le_bytes()).collect()
            }
        };
        buffers.push((t.name.clone(), t.shape.clone(), bytes));
    }
    let st_dtype = match dtype {
        Dtype::F32 => StDtype::F32,
        Dtype::F16 => StDtype::F16,
    };
    let mut views = Vec::with_capacity(buffers.len());
    for (name, shape, bytes) in &buffers {
        let view = TensorView::new(st_dtype, shape.clone(), bytes)
            .map_err(|e| FormatError::Encode(format!("tensor `{name}`: {e}")))?;
        views.push((name.as_str(), view));
    }
    let info = info_map(meta, FORMAT_VERSION)?;
    safetensors::serialize(views, Some(info)).map_err(|e| FormatError::Encode(e.to_string()))
}

/// The `__metadata__` map of an update in `format` (metrics checked finite).
pub(crate) fn info_map(
    meta: &UpdateMeta,
    format: &str,
) -> Result<HashMap<String, String>, FormatError> {
    for (k, v) in &meta.metrics {
        if !v.is_finite() {
            return Err(FormatError::Encode(format!(
                "metric `{k}` is not finite ({v})"
            )));
        }
    }
    let metrics =
        serde_json::to_string(&meta.metrics).map_err(|e| FormatError::Encode(e.to_string()))?;
    Ok(HashMap::from([
        ("format".to_string(), format.to_string()),
        ("model_id".to_string(), meta.model_id.clone()),
        ("round".to_string(), meta.round.to_string()),
        ("num_samples".to_string(), meta.num_samples.to_string()),
        ("metrics".to_string(), metrics),
    ]))
}

pub(crate) fn check_finite(
    name: &str,
    values: impl Iterator<Item = f32>,
) -> Result<(), FormatError> {
    for (index, value) in values.enumerate() {
        if !value.is_finite() {
            return Err(FormatError::NonFinite {
                name: name.to_string(),
                index,
                value,
            });
        }
    }
    Ok(())
}

/// The longest metric name accepted, in characters (updates and evaluation reports).
pub const MAX_METRIC_NAME_CHARS: usize = 100;

/// What [`decode_with`] accepts besides the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest update, in bytes (413 beyond).
    pub max_bytes: usize,
    /// Most metrics in the metadata; their names have 1 to [`MAX_METRIC_NAME_CHARS`]
    /// characters.
    pub max_metrics: usize,
}

/// Parses and validates an update against the layout the receiver expects.
///
/// Rejects, in this order: more than `max_bytes`, bytes that are not a safetensors file, bad or
/// missing metadata, tensors that are missing, unexpected, of the wrong shape or dtype, and
/// non-finite values. The returned weights follow `expected`'s order. Metrics are not bounded
/// (the server's own files aggregate many members' names): untrusted uploads go through
/// [`decode_with`].
pub fn decode(
    bytes: &[u8],
    expected: &WeightLayout,
    max_bytes: usize,
) -> Result<(WeightSet, UpdateMeta), FormatError> {
    decode_with(
        bytes,
        expected,
        DecodeLimits {
            max_bytes,
            max_metrics: usize::MAX,
        },
    )
}

/// [`decode`] with bounds on the metadata's metrics too: more than `limits.max_metrics` of
/// them, or a name that is empty or longer than [`MAX_METRIC_NAME_CHARS`], is refused while
/// they are parsed (memory stays bounded by the limit, whatever the header holds).
pub fn decode_with(
    bytes: &[u8],
    expected: &WeightLayout,
    limits: DecodeLimits,
) -> Result<(WeightSet, UpdateMeta), FormatError> {
    if bytes.len() > limits.max_bytes {
        return Err(FormatError::TooLarge {
            size: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| FormatError::Malformed(e.to_string()))?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| FormatError::Malformed(e.to_string()))?;
    let meta = parse_meta(header.metadata().as_ref(), limits.max_metrics)?;

    let expected_names: BTreeSet<&str> = expected.0.iter().map(|s| s.name.as_str()).collect();
    let mut present: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    present.sort();
    for name in &present {
        if !expected_names.contains(name.as_str()) {
            return Err(FormatError::UnexpectedTensor { name: name.clone() });
        }
    }
    let mut tensors = Vec::with_capacity(expected.0.len());
    for spec in &expected.0 {
        let view = st
            .tensor(&spec.name)
            .map_err(|_| FormatError::MissingTensor {
                name: spec.name.clone(),
            })?;
        if view.shape() != spec.shape.as_slice() {
            return Err(FormatError::ShapeMismatch {
                name: spec.name.clone(),
                expected: spec.shape.clone(),
                found: view.shape().to_vec(),
            });
        }
        let data: Vec<f32> = match view.dtype() {
            StDtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            StDtype::F16 => view
                .data()
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(FormatError::UnsupportedDtype {
                    name: spec.name.clone(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        check_finite(&spec.name, data.iter().copied())?;
        tensors.push(NamedTensor {
            name: spec.name.clone(),
            shape: spec.shape.clone(),
            data,
        });
    }
    Ok((WeightSet { tensors }, meta))
}

fn parse_meta(
    map: Option<&HashMap<String, String>>,
    max_metrics: usize,
) -> Result<UpdateMeta, FormatError> {
    parse_meta_as(map, max_metrics, FORMAT_VERSION)
}

/// [`parse_meta`] for an update whose `format` must be `expected_format`.
pub(crate) fn parse_meta_as(
    map: Option<&HashMap<String, String>>,
    max_metrics: usize,
    expected_format: &str,
) -> Result<UpdateMeta, FormatError> {
    let map = map.ok_or_else(|| FormatError::BadMetadata("no `__metadata__` section".into()))?;
    let get = |key: &str| {
        map.get(key)
            .ok_or_else(|| FormatError::BadMetadata(format!("missing key `{key}`")))
    };
    let format = get("format")?;
    if format != expected_format {
        return Err(FormatError::BadMetadata(format!(
            "format `{format}` is not supported (expected `{expected_format}`)"
        )));
    }
    let number = |key: &str| -> Result<u64, FormatError> {
        let raw = get(key)?;
        raw.parse().map_err(|_| {
            FormatError::BadMetadata(format!("`{key}` is not a whole number: `{raw}`"))
        })
    };
    let metrics = parse_metrics(get("metrics")?, max_metrics)?;
    Ok(UpdateMeta {
        model_id: get("model_id")?.clone(),
        round: number("round")?,
        num_samples: number("num_samples")?,
        metrics,
    })
}

/// The `metrics` metadata value: a JSON object of at most `max` finite numbers whose names have
/// 1 to [`MAX_METRIC_NAME_CHARS`] characters, counted while it is parsed (a header of 200,000
/// metrics is refused without building the map). Shared by every update format's metadata.
pub(crate) fn parse_metrics(raw: &str, max: usize) -> Result<BTreeMap<String, f64>, FormatError> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(raw);
    let metrics = BoundedMetrics { max }
        .deserialize(&mut de)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| {
            FormatError::BadMetadata(format!("`metrics` is not a JSON object of numbers: {e}"))
        })??;
    if let Some((k, v)) = metrics.iter().find(|(_, v)| !v.is_finite()) {
        return Err(FormatError::BadMetadata(format!(
            "metric `{k}` is not finite ({v})"
        )));
    }
    Ok(metrics)
}

/// Parses the `metrics` object, counting entries as they come: past `max`, or at a bad name,
/// the rest is skipped without being stored and the outcome is the error (the inner
/// `Result`; the outer one is JSON syntax).
struct BoundedMetrics {
    max: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for BoundedMetrics {
    type Value = Result<BTreeMap<String, f64>, FormatError>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for BoundedMetrics {
    type Value = Result<BTreeMap<String, f64>, FormatError>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object of numbers")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::IgnoredAny;
        let mut out = BTreeMap::new();
        let mut problem = None;
        let mut count = 0usize;
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            count = count.saturating_add(1);
            if problem.is_some() || count > self.max {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value: f64 = map.next_value()?;
            let chars = name.chars().count();
            if chars == 0 || chars > MAX_METRIC_NAME_CHARS {
                problem = Some(FormatError::MetricName {
                    shown: name.chars().take(20).collect(),
                    chars,
                    max: MAX_METRIC_NAME_CHARS,
                });
                continue;
            }
            out.insert(name.into_owned(), value);
        }
        Ok(match problem {
            Some(p) => Err(p),
            None if count > self.max => Err(FormatError::TooManyMetrics {
                count,
                max: self.max,
            }),
            None => Ok(out),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (WeightSet, UpdateMeta) {
        let weights = WeightSet {
            tensors: vec![
                NamedTensor {
                    name: "layers.0.weight".into(),
                    shape: vec![3, 2],
                    data: vec![0.5, -1.25, 2.0, 3.5, -0.125, 7.0],
                },
                NamedTensor {
                    name: "layers.0.bias".into(),
                    shape: vec![2],
                    data: vec![0.25, -0.75],
                },
            ],
        };
        let meta = UpdateMeta {
            model_id: "churn".into(),
            round: 3,
            num_samples: 800,
            metrics: BTreeMap::from([("loss".into(), 0.42), ("accuracy".into(), 0.86)]),
        };
        (weights, meta)
    }

    const MAX: usize = 1 << 20;

    /// Encodes arbitrary tensors with a valid metadata block, bypassing `encode`'s checks.
    fn raw(
        tensors: Vec<(&str, StDtype, Vec<usize>, Vec<u8>)>,
        info: HashMap<String, String>,
    ) -> Vec<u8> {
        let views: Vec<_> = tensors
            .iter()
            .map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, Some(info)).unwrap()
    }

    fn good_info() -> HashMap<String, String> {
        HashMap::from([
            ("format".into(), FORMAT_VERSION.into()),
            ("model_id".into(), "m".into()),
            ("round".into(), "1".into()),
            ("num_samples".into(), "10".into()),
            ("metrics".into(), "{}".into()),
        ])
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn round_trip_f32_is_exact() {
        let (w, m) = sample();
        let bytes = encode(&w, &m, Dtype::F32).unwrap();
        let (w2, m2) = decode(&bytes, &w.layout(), MAX).unwrap();
        assert_eq!(w, w2);
        assert_eq!(m, m2);
    }

    #[test]
    fn round_trip_f16_is_close_and_smaller() {
        let (w, m) = sample();
        let b32 = encode(&w, &m, Dtype::F32).unwrap();
        let b16 = encode(&w, &m, Dtype::F16).unwrap();
        assert!(b16.len() < b32.len());
        let (w2, m2) = decode(&b16, &w.layout(), MAX).unwrap();
        assert_eq!(m, m2);
        for (a, b) in w.flatten().iter().zip(w2.flatten()) {
            assert!((a - b).abs() <= a.abs() * 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn flatten_and_from_flat_are_inverse() {
        let (w, _) = sample();
        assert_eq!(w.num_params(), 8);
        assert_eq!(w.layout().num_params(), 8);
        let back = WeightSet::from_flat(&w.layout(), w.flatten()).unwrap();
        assert_eq!(back, w);
        assert!(matches!(
            WeightSet::from_flat(&w.layout(), vec![0.0; 7]),
            Err(FormatError::LengthMismatch {
                expected: 8,
                found: 7
            })
        ));
    }

    #[test]
    fn rejects_oversized() {
        let (w, m) = sample();
        let bytes = encode(&w, &m, Dtype::F32).unwrap();
        let err = decode(&bytes, &w.layout(), bytes.len() - 1).unwrap_err();
        assert!(err.is_too_large(), "{err}");
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        let (w, m) = sample();
        let bytes = encode(&w, &m, Dtype::F32).unwrap();
        for cut in [0, 4, 8, 20, bytes.len() - 1] {
            let err = decode(&bytes[..cut], &w.layout(), MAX).unwrap_err();
            assert!(matches!(err, FormatError::Malformed(_)), "cut {cut}: {err}");
        }
        let err = decode(b"hello, this is not an update at all", &w.layout(), MAX).unwrap_err();
        assert!(matches!(err, FormatError::Malformed(_)), "{err}");
        // A header length that points far beyond the buffer must not allocate or panic.
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(matches!(
            decode(&huge, &w.layout(), MAX),
            Err(FormatError::Malformed(_))
        ));
    }

    #[test]
    fn rejects_missing_extra_and_misnamed_tensors() {
        let (w, m) = sample();
        let layout = w.layout();
        let mut missing = w.clone();
        missing.tensors.pop();
        let err = decode(&encode(&missing, &m, Dtype::F32).unwrap(), &layout, MAX).unwrap_err();
        assert_eq!(
            err,
            FormatError::MissingTensor {
                name: "layers.0.bias".into()
            }
        );

        let mut extra = w.clone();
        extra.tensors.push(NamedTensor {
            name: "evil".into(),
            shape: vec![1],
            data: vec![1.0],
        });
        let err = decode(&encode(&extra, &m, Dtype::F32).unwrap(), &layout, MAX).unwrap_err();
        assert_eq!(
            err,
            FormatError::UnexpectedTensor {
                name: "evil".into()
            }
        );

        let mut renamed = w.clone();
        renamed.tensors[1].name = "layers.0.b".into();
        let err = decode(&encode(&renamed, &m, Dtype::F32).unwrap(), &layout, MAX).unwrap_err();
        assert_eq!(
            err,
            FormatError::UnexpectedTensor {
                name: "layers.0.b".into()
            }
        );
    }

    #[test]
    fn rejects_wrong_shape() {
        let (w, m) = sample();
        let mut bad = w.clone();
        bad.tensors[0].shape = vec![2, 3];
        let err = decode(&encode(&bad, &m, Dtype::F32).unwrap(), &w.layout(), MAX).unwrap_err();
        assert!(
            matches!(&err, FormatError::ShapeMismatch { name, found, .. } if name == "layers.0.weight" && found == &vec![2, 3]),
            "{err}"
        );
    }

    #[test]
    fn rejects_unsupported_dtype() {
        let layout = WeightLayout(vec![TensorSpec::new("x", vec![2])]);
        let bytes = raw(
            vec![("x", StDtype::F64, vec![2], vec![0u8; 16])],
            good_info(),
        );
        let err = decode(&bytes, &layout, MAX).unwrap_err();
        assert_eq!(
            err,
            FormatError::UnsupportedDtype {
                name: "x".into(),
                dtype: "F64".into()
            }
        );
    }

    #[test]
    fn rejects_non_finite_naming_tensor_and_index() {
        let layout = WeightLayout(vec![TensorSpec::new("x", vec![3])]);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let bytes = raw(
                vec![("x", StDtype::F32, vec![3], f32_bytes(&[1.0, 2.0, bad]))],
                good_info(),
            );
            let err = decode(&bytes, &layout, MAX).unwrap_err();
            assert!(
                matches!(&err, FormatError::NonFinite { name, index: 2, .. } if name == "x"),
                "{err}"
            );
        }
        // encode refuses too, and so does an f16 overflow.
        let w = WeightSet {
            tensors: vec![NamedTensor {
                name: "x".into(),
                shape: vec![1],
                data: vec![1e6],
            }],
        };
        assert!(encode(&w, &UpdateMeta::default(), Dtype::F32).is_ok());
        assert!(matches!(
            encode(&w, &UpdateMeta::default(), Dtype::F16),
            Err(FormatError::NonFinite { index: 0, .. })
        ));
    }

    #[test]
    fn rejects_bad_metadata() {
        let layout = WeightLayout(vec![TensorSpec::new("x", vec![1])]);
        let t = || vec![("x", StDtype::F32, vec![1], f32_bytes(&[1.0]))];
        let cases: Vec<(&str, Option<&str>)> = vec![
            ("format", Some("other/9")),
            ("round", Some("-1")),
            ("num_samples", Some("many")),
            ("metrics", Some("[1,2]")),
            ("metrics", Some("{\"loss\":\"low\"}")),
            ("model_id", None),
            ("round", None),
        ];
        for (key, value) in cases {
            let mut info = good_info();
            match value {
                Some(v) => info.insert(key.into(), v.into()),
                None => info.remove(key),
            };
            let err = decode(&raw(t(), info), &layout, MAX).unwrap_err();
            assert!(
                matches!(err, FormatError::BadMetadata(_)),
                "{key}={value:?}: {err}"
            );
            assert!(
                err.to_string().contains(key)
                    || key == "format" && err.to_string().contains("format")
            );
        }
        // No metadata section at all.
        let views = vec![(
            "x",
            TensorView::new(StDtype::F32, vec![1], &[0u8; 4][..]).unwrap(),
        )];
        let bytes = safetensors::serialize(views, None).unwrap();
        assert!(matches!(
            decode(&bytes, &layout, MAX),
            Err(FormatError::BadMetadata(_))
        ));
    }

    /// Regression (issue #19, 6b): 200,000 metrics were parsed and kept.
    #[test]
    fn metrics_are_bounded_in_number_and_name_length() {
        let layout = WeightLayout(vec![TensorSpec::new("x", vec![1])]);
        let t = || vec![("x", StDtype::F32, vec![1], f32_bytes(&[1.0]))];
        let with = |metrics: String| {
            let mut info = good_info();
            info.insert("metrics".into(), metrics);
            raw(t(), info)
        };
        let limits = DecodeLimits {
            max_bytes: MAX,
            max_metrics: 3,
        };
        let many = (0..1000)
            .map(|i| format!("\"m{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let err = decode_with(&with(format!("{{{many}}}")), &layout, limits).unwrap_err();
        assert_eq!(
            err,
            FormatError::TooManyMetrics {
                count: 1000,
                max: 3
            }
        );
        assert!(err.to_string().contains("at most 3"), "{err}");
        // The plain decoder (for the server's own files) is not bounded.
        assert_eq!(
            decode(&with(format!("{{{many}}}")), &layout, MAX)
                .unwrap()
                .1
                .metrics
                .len(),
            1000
        );
        let long = format!("{{\"{}\":1}}", "é".repeat(101));
        let err = decode_with(&with(long), &layout, limits).unwrap_err();
        assert!(
            matches!(
                err,
                FormatError::MetricName {
                    chars: 101,
                    max: 100,
                    ..
                }
            ),
            "{err}"
        );
        let err = decode_with(&with("{\"\":1}".into()), &layout, limits).unwrap_err();
        assert!(
            matches!(err, FormatError::MetricName { chars: 0, .. }),
            "{err}"
        );
        // Syntax is still checked after the limit is reached, and exactly the limit is fine.
        assert!(matches!(
            decode_with(
                &with("{\"a\":1,\"b\":2,\"c\":3,\"d\":}".into()),
                &layout,
                limits
            ),
            Err(FormatError::BadMetadata(_))
        ));
        let (_, meta) =
            decode_with(&with("{\"a\":1,\"b\":2,\"c\":3}".into()), &layout, limits).unwrap();
        assert_eq!(meta.metrics.len(), 3);
    }

    #[test]
    fn checked_parameter_counts_do_not_wrap() {
        let ok = WeightLayout(vec![
            TensorSpec::new("a", vec![3, 4]),
            TensorSpec::new("b", vec![]),
        ]);
        assert_eq!(ok.checked_num_params(), Some(13));
        let wraps = WeightLayout(vec![TensorSpec::new("a", vec![1 << 32, 1 << 32, 1 << 32])]);
        assert_eq!(wraps.checked_num_params(), None);
        let sum_wraps = WeightLayout(vec![
            TensorSpec::new("a", vec![usize::MAX]),
            TensorSpec::new("b", vec![1]),
        ]);
        assert_eq!(sum_wraps.checked_num_params(), None);
    }

    #[test]
    fn encode_rejects_inconsistent_weights() {
        let bad = WeightSet {
            tensors: vec![NamedTensor {
                name: "x".into(),
                shape: vec![2],
                data: vec![1.0],
            }],
        };
        assert!(matches!(
            encode(&bad, &UpdateMeta::default(), Dtype::F32),
            Err(FormatError::Encode(_))
        ));
    }
}
