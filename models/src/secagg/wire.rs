//! What travels: share messages and unmask answers (JSON, binary as base64), and the masked
//! vector itself (a safetensors file with one unsigned tensor, the narrowest width the modulus
//! allows).

use std::collections::{BTreeMap, HashMap};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use super::SecAggError;

/// Value of the masked vector's `format` metadata key.
pub const MASKED_FORMAT: &str = "b3o-secagg/1";

/// One client's shares for one neighbour, encrypted for it ([`super::keys::seal`]); the plain
/// text is the self-mask seed share then the mask key share ([`super::shamir::Share::to_bytes`]
/// each); the associated data is [`share_aad`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptedShare {
    pub from: i64,
    pub to: i64,
    #[serde(with = "b64_vec")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub ciphertext: Vec<u8>,
}

/// The associated data of a share ciphertext: group, round, sender, recipient (little-endian
/// i64 each).
pub fn share_aad(ctx: super::keys::Context, from: i64, to: i64) -> Vec<u8> {
    [ctx.group_id, ctx.round, from, to]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// Which secret a share belongs to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareKind {
    /// The self-mask seed `b` of a client whose masked vector arrived.
    SelfMaskSeed,
    /// The pairwise-mask secret key `s` of a client that dropped after sharing.
    MaskKey,
}

impl std::fmt::Display for ShareKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShareKind::SelfMaskSeed => "self-mask seed",
            ShareKind::MaskKey => "mask key",
        })
    }
}

/// What the server asks a survivor for in the unmask stage: among the client's neighbours
/// (and itself), who survived and who dropped after sharing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UnmaskRequest {
    pub survivors: Vec<i64>,
    pub dropped: Vec<i64>,
}

/// One share a survivor hands back: of `of`'s secret `kind`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnmaskShare {
    pub of: i64,
    pub kind: ShareKind,
    #[serde(with = "b64_vec")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub share: Vec<u8>,
}

/// The metadata of a masked vector (no sample count: the weight is inside the vector).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MaskedMeta {
    pub model_id: String,
    pub round: u64,
    /// Local training metrics, finite numbers only.
    pub metrics: BTreeMap<String, f64>,
}

/// Bytes per entry on the wire for `modulus` (a power of two): 1, 2, 4 or 8.
pub fn entry_bytes(modulus: u64) -> usize {
    // Entries are below the modulus: 2^8 still fits a byte.
    match modulus {
        0..=0x100 => 1,
        0x101..=0x1_0000 => 2,
        0x1_0001..=0x1_0000_0000 => 4,
        _ => 8,
    }
}

fn dtype_of(modulus: u64) -> Dtype {
    match entry_bytes(modulus) {
        1 => Dtype::U8,
        2 => Dtype::U16,
        4 => Dtype::U32,
        _ => Dtype::U64,
    }
}

/// A safetensors file: one tensor `masked` of shape `[len]`, dtype `U8`/`U16`/`U32`/`U64` by
/// [`entry_bytes`], metadata `format` = [`MASKED_FORMAT`], `model_id`, `round`, `metrics` (JSON).
///
/// Entries are written in the width `modulus` asks for (the caller's entries are below it, as
/// [`super::ClientRound::mask`] makes them); a non-finite metric is left out (the decoder
/// would refuse the file).
pub fn encode_masked(values: &[u64], modulus: u64, meta: &MaskedMeta) -> Vec<u8> {
    let width = entry_bytes(modulus);
    let mut data = Vec::with_capacity(values.len().saturating_mul(width));
    for &v in values {
        data.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    let view = TensorView::new(dtype_of(modulus), vec![values.len()], &data)
        .expect("the data is exactly `len` entries of the dtype's width");
    let metrics: BTreeMap<&String, f64> = meta
        .metrics
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k, *v))
        .collect();
    let metrics = serde_json::to_string(&metrics).expect("a map of strings to finite numbers");
    let info = HashMap::from([
        ("format".to_string(), MASKED_FORMAT.to_string()),
        ("model_id".to_string(), meta.model_id.clone()),
        ("round".to_string(), meta.round.to_string()),
        ("metrics".to_string(), metrics),
    ]);
    safetensors::serialize([(TENSOR, view)], Some(info))
        .expect("one well-formed tensor always serialises")
}

/// The name of the one tensor of a masked vector.
const TENSOR: &str = "masked";

/// The entries and metadata of an upload: refuses more than `max_bytes`, other formats,
/// another dtype than `modulus` asks for, a length other than `expected_len`, an entry not
/// below `modulus`, more than `max_metrics` metrics or a non-finite one.
pub fn decode_masked(
    bytes: &[u8],
    expected_len: usize,
    modulus: u64,
    max_bytes: usize,
    max_metrics: usize,
) -> Result<(Vec<u64>, MaskedMeta), SecAggError> {
    let bad = |reason: String| SecAggError::Malformed {
        what: "masked vector",
        reason,
    };
    if bytes.len() > max_bytes {
        return Err(bad(format!(
            "{} bytes, more than the {max_bytes} accepted",
            bytes.len()
        )));
    }
    if !modulus.is_power_of_two() || modulus < 2 {
        return Err(SecAggError::InvalidConfig {
            param: "modulus_range",
            reason: format!("{modulus} is not a power of two above 1"),
        });
    }
    // Parsing borrows the data; the header it allocates is bounded by `max_bytes`.
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let meta = parse_meta(header.metadata().as_ref(), max_metrics).map_err(bad)?;
    let names = st.names();
    if names.len() != 1 || names[0] != TENSOR {
        return Err(bad(format!(
            "it must hold exactly one tensor `{TENSOR}`, it holds {} ({})",
            names.len(),
            names
                .iter()
                .take(5)
                .map(|n| format!("`{}`", n.chars().take(40).collect::<String>()))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let view = st
        .tensor(TENSOR)
        .map_err(|e| bad(format!("tensor `{TENSOR}`: {e}")))?;
    let want = dtype_of(modulus);
    if view.dtype() != want {
        return Err(bad(format!(
            "tensor `{TENSOR}` is {:?}; modulus {modulus} needs {want:?}",
            view.dtype()
        )));
    }
    let got = match view.shape() {
        [len] => *len,
        other => {
            return Err(bad(format!(
                "tensor `{TENSOR}` has shape {other:?}; expected [{expected_len}]"
            )));
        }
    };
    if got != expected_len {
        return Err(SecAggError::Length {
            expected: expected_len,
            got,
        });
    }
    let width = entry_bytes(modulus);
    let data = view.data();
    // safetensors checked that the data matches shape and dtype; check again before trusting
    // `expected_len` for an allocation.
    if data.len() != expected_len.saturating_mul(width) {
        return Err(bad(format!(
            "tensor `{TENSOR}` has {} bytes of data for {expected_len} entries of {width} bytes",
            data.len()
        )));
    }
    let mut values = Vec::with_capacity(expected_len);
    for (index, chunk) in data.chunks_exact(width).enumerate() {
        let mut word = [0u8; 8];
        word[..width].copy_from_slice(chunk);
        let value = u64::from_le_bytes(word);
        if value >= modulus {
            return Err(SecAggError::OutOfRange {
                index,
                value,
                modulus,
            });
        }
        values.push(value);
    }
    Ok((values, meta))
}

fn parse_meta(
    map: Option<&HashMap<String, String>>,
    max_metrics: usize,
) -> Result<MaskedMeta, String> {
    let map = map.ok_or("no `__metadata__` section")?;
    let get = |key: &str| {
        map.get(key)
            .ok_or_else(|| format!("metadata key `{key}` is missing"))
    };
    let format = get("format")?;
    if format != MASKED_FORMAT {
        return Err(format!(
            "format `{}` is not supported (expected `{MASKED_FORMAT}`)",
            format.chars().take(40).collect::<String>()
        ));
    }
    let round_raw = get("round")?;
    let round = round_raw.parse().map_err(|_| {
        format!(
            "`round` is not a whole number: `{}`",
            round_raw.chars().take(40).collect::<String>()
        )
    })?;
    let metrics =
        crate::weights::parse_metrics(get("metrics")?, max_metrics).map_err(|e| e.to_string())?;
    Ok(MaskedMeta {
        model_id: get("model_id")?.clone(),
        round,
        metrics,
    })
}

/// serde for `[u8; 32]` as base64.
pub mod b64_32 {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        super::b64_vec::serialize(bytes, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let bytes = super::b64_decode(d, 32)?;
        bytes.try_into().map_err(|v: Vec<u8>| {
            serde::de::Error::custom(format!("{} bytes of base64, expected 32", v.len()))
        })
    }
}

/// serde for `Vec<u8>` as base64 (at most 64 KiB decoded).
pub mod b64_vec {
    use serde::{Deserializer, Serializer};

    use base64::Engine as _;

    /// Largest decoded value.
    pub const MAX_BYTES: usize = 64 * 1024;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        super::b64_decode(d, MAX_BYTES)
    }
}

/// Base64 (standard, padded) of at most `max` bytes; the length is checked on the text, before
/// decoding allocates.
fn b64_decode<'de, D: serde::Deserializer<'de>>(d: D, max: usize) -> Result<Vec<u8>, D::Error> {
    use base64::Engine as _;
    use serde::de::Error as _;
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    let max_chars = max.div_ceil(3).saturating_mul(4);
    if text.len() > max_chars {
        return Err(D::Error::custom(format!(
            "{} characters of base64; at most {max} bytes ({max_chars} characters) are accepted",
            text.len()
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| D::Error::custom(format!("not base64 (standard, padded): {e}")))?;
    if bytes.len() > max {
        return Err(D::Error::custom(format!(
            "{} bytes; at most {max} are accepted",
            bytes.len()
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> MaskedMeta {
        MaskedMeta {
            model_id: "churn".into(),
            round: 12,
            metrics: BTreeMap::from([("loss".into(), 0.25), ("accuracy".into(), 0.875)]),
        }
    }

    const MAX: usize = 1 << 20;

    fn malformed(r: Result<(Vec<u64>, MaskedMeta), SecAggError>) -> String {
        match r {
            Err(SecAggError::Malformed {
                what: "masked vector",
                reason,
            }) => reason,
            other => panic!("expected Malformed masked vector, got {other:?}"),
        }
    }

    /// A safetensors file with `data` as tensor `name` and the given metadata.
    fn raw(
        name: &str,
        dtype: Dtype,
        shape: Vec<usize>,
        data: &[u8],
        meta: &[(&str, &str)],
    ) -> Vec<u8> {
        let view = TensorView::new(dtype, shape, data).unwrap();
        let info = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        safetensors::serialize([(name, view)], Some(info)).unwrap()
    }

    fn good_meta() -> Vec<(&'static str, &'static str)> {
        vec![
            ("format", MASKED_FORMAT),
            ("model_id", "m"),
            ("round", "3"),
            ("metrics", "{\"loss\": 1.5}"),
        ]
    }

    #[test]
    fn roundtrip_every_width() {
        for (bits, width, dtype) in [
            (8, 1, Dtype::U8),
            (16, 2, Dtype::U16),
            (32, 4, Dtype::U32),
            (62, 8, Dtype::U64),
        ] {
            let modulus = 1u64 << bits;
            assert_eq!(entry_bytes(modulus), width);
            let values: Vec<u64> = (0..257u64)
                .map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15) & (modulus - 1))
                .chain([0, modulus - 1])
                .collect();
            let bytes = encode_masked(&values, modulus, &meta());
            let st = SafeTensors::deserialize(&bytes).unwrap();
            assert_eq!(st.tensor("masked").unwrap().dtype(), dtype);
            assert_eq!(
                st.tensor("masked").unwrap().data().len(),
                values.len() * width
            );
            let (back, m) = decode_masked(&bytes, values.len(), modulus, MAX, 10).unwrap();
            assert_eq!(back, values);
            assert_eq!(m, meta());
        }
        assert_eq!(entry_bytes(1 << 9), 2);
        assert_eq!(entry_bytes((1 << 16) + 1), 4);
        assert_eq!(entry_bytes(1 << 33), 8);
    }

    #[test]
    fn refusals() {
        let modulus = 1u64 << 16;
        let values = vec![1u64, 2, 3, modulus - 1];
        let bytes = encode_masked(&values, modulus, &meta());
        // Too large.
        let reason = malformed(decode_masked(&bytes, 4, modulus, bytes.len() - 1, 10));
        assert!(reason.contains("more than"), "{reason}");
        // Wrong length.
        assert_eq!(
            decode_masked(&bytes, 5, modulus, MAX, 10),
            Err(SecAggError::Length {
                expected: 5,
                got: 4
            })
        );
        // Wrong dtype: the modulus asks for 32-bit entries.
        let reason = malformed(decode_masked(&bytes, 4, 1 << 32, MAX, 10));
        assert!(reason.contains("U32"), "{reason}");
        // An entry not below the modulus (same width: 2^12 still travels as U16).
        assert_eq!(
            decode_masked(&bytes, 4, 1 << 12, MAX, 10).unwrap_err(),
            SecAggError::OutOfRange {
                index: 3,
                value: modulus - 1,
                modulus: 1 << 12
            }
        );
        // Too many metrics.
        let reason = malformed(decode_masked(&bytes, 4, modulus, MAX, 1));
        assert!(reason.contains("metrics"), "{reason}");
        // Not safetensors.
        malformed(decode_masked(b"not a file", 4, modulus, MAX, 10));
        malformed(decode_masked(
            &bytes[..bytes.len() - 1],
            4,
            modulus,
            MAX,
            10,
        ));

        let data: Vec<u8> = [1u16, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
        let ok = raw("masked", Dtype::U16, vec![2], &data, &good_meta());
        assert_eq!(
            decode_masked(&ok, 2, modulus, MAX, 10).unwrap().0,
            vec![1, 2]
        );
        // Bad format.
        let mut m = good_meta();
        m[0].1 = "b3o-secagg/0";
        let reason = malformed(decode_masked(
            &raw("masked", Dtype::U16, vec![2], &data, &m),
            2,
            modulus,
            MAX,
            10,
        ));
        assert!(reason.contains("format"), "{reason}");
        // Missing key.
        let m: Vec<_> = good_meta()
            .into_iter()
            .filter(|(k, _)| *k != "round")
            .collect();
        let reason = malformed(decode_masked(
            &raw("masked", Dtype::U16, vec![2], &data, &m),
            2,
            modulus,
            MAX,
            10,
        ));
        assert!(reason.contains("round"), "{reason}");
        // Non-finite metric (JSON has no infinity; 1e999 overflows).
        let mut m = good_meta();
        m[3].1 = "{\"loss\": 1e999}";
        let reason = malformed(decode_masked(
            &raw("masked", Dtype::U16, vec![2], &data, &m),
            2,
            modulus,
            MAX,
            10,
        ));
        assert!(reason.contains("metrics"), "{reason}");
        let mut m = good_meta();
        m[3].1 = "{\"loss\": \"high\"}";
        malformed(decode_masked(
            &raw("masked", Dtype::U16, vec![2], &data, &m),
            2,
            modulus,
            MAX,
            10,
        ));
        // Other tensor name, other shape, other dtype of the same width.
        malformed(decode_masked(
            &raw("other", Dtype::U16, vec![2], &data, &good_meta()),
            2,
            modulus,
            MAX,
            10,
        ));
        malformed(decode_masked(
            &raw("masked", Dtype::U16, vec![1, 2], &data, &good_meta()),
            2,
            modulus,
            MAX,
            10,
        ));
        malformed(decode_masked(
            &raw("masked", Dtype::I16, vec![2], &data, &good_meta()),
            2,
            modulus,
            MAX,
            10,
        ));
        // Non-finite metrics are left out by the encoder.
        let mut m = meta();
        m.metrics.insert("nan".into(), f64::NAN);
        let (_, back) =
            decode_masked(&encode_masked(&values, modulus, &m), 4, modulus, MAX, 10).unwrap();
        assert_eq!(back, meta());
    }

    #[test]
    fn json_messages() {
        let share = EncryptedShare {
            from: 1,
            to: 2,
            ciphertext: vec![0, 1, 2, 250],
        };
        let json = serde_json::to_string(&share).unwrap();
        assert_eq!(json, r#"{"from":1,"to":2,"ciphertext":"AAEC+g=="}"#);
        assert_eq!(
            serde_json::from_str::<EncryptedShare>(&json).unwrap(),
            share
        );
        assert!(
            serde_json::from_str::<EncryptedShare>(r#"{"from":1,"to":2,"ciphertext":"AAEC+g"}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<EncryptedShare>(r#"{"from":1,"to":2,"ciphertext":"!!!!"}"#)
                .is_err()
        );
        let big = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            vec![0u8; 64 * 1024 + 1],
        );
        let json = format!(r#"{{"from":1,"to":2,"ciphertext":"{big}"}}"#);
        assert!(serde_json::from_str::<EncryptedShare>(&json).is_err());
        let max = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            vec![0u8; 64 * 1024],
        );
        let json = format!(r#"{{"from":1,"to":2,"ciphertext":"{max}"}}"#);
        assert_eq!(
            serde_json::from_str::<EncryptedShare>(&json)
                .unwrap()
                .ciphertext
                .len(),
            64 * 1024
        );

        let keys = crate::secagg::PublicKeys {
            cipher: [1; 32],
            mask: [2; 32],
        };
        let json = serde_json::to_string(&keys).unwrap();
        assert_eq!(
            serde_json::from_str::<crate::secagg::PublicKeys>(&json).unwrap(),
            keys
        );
        let short = json.replace(
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ==",
        );
        assert_ne!(short, json);
        assert!(serde_json::from_str::<crate::secagg::PublicKeys>(&short).is_err());

        let ans = UnmaskShare {
            of: 5,
            kind: ShareKind::MaskKey,
            share: vec![9],
        };
        let json = serde_json::to_string(&ans).unwrap();
        assert_eq!(json, r#"{"of":5,"kind":"mask_key","share":"CQ=="}"#);
        assert_eq!(
            share_aad(
                crate::secagg::keys::Context {
                    group_id: 1,
                    round: 2
                },
                3,
                -1
            ),
            [1i64, 2, 3, -1]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
        );
    }
}
