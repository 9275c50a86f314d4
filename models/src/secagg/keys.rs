//! Key agreement and share encryption: X25519 (x25519-dalek) key pairs, HKDF-SHA256 to derive
//! symmetric keys bound to the round and the pair of clients, ChaCha20-Poly1305 (RFC 8439) for
//! the shares, with a random 96-bit nonce and the ids as associated data.

use serde::{Deserialize, Serialize};

use super::SecAggError;

/// What binds keys and ciphertexts to one round of one group (HKDF salt, AEAD data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub group_id: i64,
    pub round: i64,
}

/// A client's two public keys, base64 (standard alphabet, padded) in JSON.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeys {
    /// X25519 public key for share encryption.
    #[serde(with = "super::wire::b64_32")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub cipher: [u8; 32],
    /// X25519 public key for pairwise mask agreement.
    #[serde(with = "super::wire::b64_32")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub mask: [u8; 32],
}

/// A client's two X25519 secret keys for one round; zeroed on drop.
pub struct SecretKeys {
    pub(crate) cipher: x25519_dalek::StaticSecret,
    pub(crate) mask: x25519_dalek::StaticSecret,
}

/// Two fresh key pairs from `rng` (32 random bytes each, clamped by X25519).
pub fn generate<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> (SecretKeys, PublicKeys) {
    todo!()
}

/// The public key of an X25519 secret given as bytes.
pub fn public_of(secret: &[u8; 32]) -> [u8; 32] {
    todo!()
}

/// The pairwise mask seed of clients `a` and `b`: HKDF-SHA256 over X25519(secret, public), salt
/// from `ctx`, info naming the purpose and `min(a, b)`, `max(a, b)`; both sides (and the server
/// with a reconstructed secret) get the same 32 bytes. Errors on an all-zero shared secret
/// (a low-order public key).
pub fn mask_seed(
    secret: &[u8; 32],
    their_public: &[u8; 32],
    ctx: Context,
    a: i64,
    b: i64,
) -> Result<[u8; 32], SecAggError> {
    todo!()
}

/// The key `sender` encrypts its shares for `recipient` with (and `recipient` decrypts with):
/// HKDF-SHA256 over X25519 of their cipher keys, info naming the purpose, sender and
/// recipient, so the two directions use different keys.
pub fn share_key(
    secret: &[u8; 32],
    their_public: &[u8; 32],
    ctx: Context,
    sender: i64,
    recipient: i64,
) -> Result<[u8; 32], SecAggError> {
    todo!()
}

/// `nonce (12) || ChaCha20-Poly1305(key, nonce, plaintext, aad)`.
pub fn seal<R: rand::CryptoRng + ?Sized>(
    key: &[u8; 32],
    plaintext: &[u8],
    aad: &[u8],
    rng: &mut R,
) -> Vec<u8> {
    todo!()
}

/// The plaintext of [`seal`]'s output; `Decrypt { from }` when it does not authenticate.
pub fn open(key: &[u8; 32], sealed: &[u8], aad: &[u8], from: i64) -> Result<Vec<u8>, SecAggError> {
    todo!()
}
