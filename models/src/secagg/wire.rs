//! What travels: share messages and unmask answers (JSON, binary as base64), and the masked
//! vector itself (a safetensors file with one unsigned tensor, the narrowest width the modulus
//! allows).

use std::collections::BTreeMap;

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
    todo!()
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
    todo!()
}

/// A safetensors file: one tensor `masked` of shape `[len]`, dtype `U8`/`U16`/`U32`/`U64` by
/// [`entry_bytes`], metadata `format` = [`MASKED_FORMAT`], `model_id`, `round`, `metrics` (JSON).
pub fn encode_masked(values: &[u64], modulus: u64, meta: &MaskedMeta) -> Vec<u8> {
    todo!()
}

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
    todo!()
}

/// serde for `[u8; 32]` as base64.
pub mod b64_32 {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        todo!()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        todo!()
    }
}

/// serde for `Vec<u8>` as base64 (at most 64 KiB decoded).
pub mod b64_vec {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        todo!()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        todo!()
    }
}
