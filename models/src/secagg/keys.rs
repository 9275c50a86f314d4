//! Key agreement and share encryption: X25519 (x25519-dalek) key pairs, HKDF-SHA256 to derive
//! symmetric keys bound to the round and the pair of clients, ChaCha20-Poly1305 (RFC 8439) for
//! the shares, with a random 96-bit nonce and the ids as associated data.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroize;

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
    let mut draw = || {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        let secret = StaticSecret::from(bytes);
        bytes.zeroize();
        secret
    };
    let cipher = draw();
    let mask = draw();
    let public = PublicKeys {
        cipher: PublicKey::from(&cipher).to_bytes(),
        mask: PublicKey::from(&mask).to_bytes(),
    };
    (SecretKeys { cipher, mask }, public)
}

/// The public key of an X25519 secret given as bytes.
pub fn public_of(secret: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

/// X25519(secret, their_public); `None` for an all-zero result (a low-order public key, which
/// would make the "shared" secret known to anyone).
pub(crate) fn agree(secret: &[u8; 32], their_public: &[u8; 32]) -> Option<[u8; 32]> {
    let shared = StaticSecret::from(*secret).diffie_hellman(&PublicKey::from(*their_public));
    shared.was_contributory().then(|| shared.to_bytes())
}

/// HKDF-SHA256 (RFC 5869), extract then expand into `out` (at most 255 * 32 bytes).
pub(crate) fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, out)
        .expect("callers ask for at most 64 bytes, far below HKDF-SHA256's 8160");
}

/// The HKDF salt of a round: a label, the group and the round.
fn salt(ctx: Context) -> [u8; 28] {
    let mut out = [0u8; 28];
    out[..12].copy_from_slice(b"b3o-secagg/1");
    out[12..20].copy_from_slice(&ctx.group_id.to_le_bytes());
    out[20..28].copy_from_slice(&ctx.round.to_le_bytes());
    out
}

/// A 32-byte key for `purpose` between `a` and `b` (in that order).
fn derive(
    secret: &[u8; 32],
    their_public: &[u8; 32],
    ctx: Context,
    purpose: &[u8],
    a: i64,
    b: i64,
) -> Result<[u8; 32], SecAggError> {
    let mut shared = agree(secret, their_public).ok_or_else(|| SecAggError::Malformed {
        what: "public key",
        reason: "it is a low-order point (the key agreement gives zero)".into(),
    })?;
    let mut info = Vec::with_capacity(purpose.len() + 16);
    info.extend_from_slice(purpose);
    info.extend_from_slice(&a.to_le_bytes());
    info.extend_from_slice(&b.to_le_bytes());
    let mut out = [0u8; 32];
    hkdf_sha256(&salt(ctx), &shared, &info, &mut out);
    shared.zeroize();
    Ok(out)
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
    derive(
        secret,
        their_public,
        ctx,
        b"pairwise mask seed",
        a.min(b),
        a.max(b),
    )
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
    derive(
        secret,
        their_public,
        ctx,
        b"share encryption key",
        sender,
        recipient,
    )
}

/// `nonce (12) || ChaCha20-Poly1305(key, nonce, plaintext, aad)`.
pub fn seal<R: rand::CryptoRng + ?Sized>(
    key: &[u8; 32],
    plaintext: &[u8],
    aad: &[u8],
    rng: &mut R,
) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_BYTES];
    rng.fill_bytes(&mut nonce);
    let sealed = ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("ChaCha20-Poly1305 encrypts any plaintext below 256 GiB");
    let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Bytes of the random nonce in front of a ciphertext.
const NONCE_BYTES: usize = 12;
/// Bytes of the Poly1305 tag at its end.
const TAG_BYTES: usize = 16;

/// The plaintext of [`seal`]'s output; `Decrypt { from }` when it does not authenticate.
pub fn open(key: &[u8; 32], sealed: &[u8], aad: &[u8], from: i64) -> Result<Vec<u8>, SecAggError> {
    if sealed.len() < NONCE_BYTES + TAG_BYTES {
        return Err(SecAggError::Decrypt { from });
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| SecAggError::Decrypt { from })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn hex32(s: &str) -> [u8; 32] {
        hex(s).try_into().unwrap()
    }

    const CTX: Context = Context {
        group_id: 4,
        round: 9,
    };

    #[test]
    fn rfc7748_x25519() {
        let alice = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let bob = hex32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let alice_pub = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let bob_pub = hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let shared = hex32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(public_of(&alice), alice_pub);
        assert_eq!(public_of(&bob), bob_pub);
        assert_eq!(agree(&alice, &bob_pub), Some(shared));
        assert_eq!(agree(&bob, &alice_pub), Some(shared));
        // A low-order point (here 0) gives no agreement.
        assert_eq!(agree(&alice, &[0u8; 32]), None);
        assert!(mask_seed(&alice, &[0u8; 32], CTX, 1, 2).is_err());
    }

    #[test]
    fn rfc8439_aead() {
        let key = hex32("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
        let nonce = hex("070000004041424344454647");
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let plaintext: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let ciphertext = hex(
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
             3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
             92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
             3ff4def08e4b7a9de576d26586cec64b6116",
        );
        let tag = hex("1ae10b594f09e26a7e902ecbd0600691");
        let sealed: Vec<u8> = [nonce, ciphertext, tag].concat();
        assert_eq!(open(&key, &sealed, &aad, 7).unwrap(), plaintext);
        for bit in [0, 12 * 8 + 3, sealed.len() * 8 - 1] {
            let mut bad = sealed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                open(&key, &bad, &aad, 7),
                Err(SecAggError::Decrypt { from: 7 })
            );
        }
        let mut other_aad = aad.clone();
        other_aad[0] ^= 1;
        assert!(open(&key, &sealed, &other_aad, 7).is_err());
        assert!(open(&key, &sealed[..27], &aad, 7).is_err());
        assert!(open(&key, &[], &aad, 7).is_err());
    }

    #[test]
    fn rfc5869_hkdf_case_1() {
        let ikm = [0x0b; 22];
        let salt = hex("000102030405060708090a0b0c");
        let info = hex("f0f1f2f3f4f5f6f7f8f9");
        let mut okm = [0u8; 42];
        hkdf_sha256(&salt, &ikm, &info, &mut okm);
        assert_eq!(
            okm.to_vec(),
            hex(
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
            )
        );
    }

    #[test]
    fn seal_open_roundtrip_with_random_nonces() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let key = [7u8; 32];
        let a = seal(&key, b"share", b"aad", &mut rng);
        let b = seal(&key, b"share", b"aad", &mut rng);
        assert_ne!(a, b, "nonces repeat");
        assert_eq!(a.len(), 12 + 5 + 16);
        assert_eq!(open(&key, &a, b"aad", 1).unwrap(), b"share");
        assert!(open(&[8u8; 32], &a, b"aad", 1).is_err());
    }

    #[test]
    fn derived_keys_agree_and_are_bound() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (sa, pa) = generate(&mut rng);
        let (sb, pb) = generate(&mut rng);
        assert_ne!(pa.cipher, pa.mask);
        // public_of agrees with the StaticSecret the key pair came from (clamping included).
        assert_eq!(public_of(&sa.mask.to_bytes()), pa.mask);
        assert_eq!(public_of(&sb.cipher.to_bytes()), pb.cipher);
        let (a, b) = (sa.mask.to_bytes(), sb.mask.to_bytes());
        let seed = mask_seed(&a, &pb.mask, CTX, 10, 20).unwrap();
        assert_eq!(seed, mask_seed(&b, &pa.mask, CTX, 20, 10).unwrap());
        let other = Context {
            group_id: 4,
            round: 10,
        };
        assert_ne!(seed, mask_seed(&a, &pb.mask, other, 10, 20).unwrap());
        assert_ne!(seed, mask_seed(&a, &pb.mask, CTX, 10, 21).unwrap());
        let (ca, cb) = (sa.cipher.to_bytes(), sb.cipher.to_bytes());
        let ab = share_key(&ca, &pb.cipher, CTX, 10, 20).unwrap();
        assert_eq!(ab, share_key(&cb, &pa.cipher, CTX, 10, 20).unwrap());
        assert_ne!(ab, share_key(&cb, &pa.cipher, CTX, 20, 10).unwrap());
        assert_ne!(ab, seed);
    }
}
