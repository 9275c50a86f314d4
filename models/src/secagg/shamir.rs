//! Shamir secret sharing of 32-byte secrets over the prime field GF(2^61 - 1).
//!
//! A secret is cut into five 7-byte chunks (the last padded with zeros), each shared with its
//! own random polynomial of degree `threshold - 1`; a share is its x-coordinate (1..) and the
//! five y values. Any `threshold` shares with distinct x give the secret back; fewer reveal
//! nothing about it (each chunk is below the prime, the polynomials' other coefficients are
//! uniform in the field).

use super::SecAggError;

/// The field's modulus, the Mersenne prime 2^61 - 1.
pub const PRIME: u64 = (1 << 61) - 1;
/// Field elements per 32-byte secret.
pub const CHUNKS: usize = 5;
/// Bytes of [`Share::to_bytes`]: x (4, little-endian) then five y values (8 each).
pub const SHARE_BYTES: usize = 4 + 8 * CHUNKS;

/// One share of a 32-byte secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The evaluation point, 1 or more.
    pub x: u32,
    pub ys: [u64; CHUNKS],
}

impl Share {
    pub fn to_bytes(&self) -> [u8; SHARE_BYTES] {
        todo!()
    }

    /// Refuses a wrong length, `x = 0` and y values outside the field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Share, SecAggError> {
        todo!()
    }
}

/// Shares of `secret` at the points `xs` (distinct, nonzero), any `threshold` of which rebuild
/// it. Errors when `threshold` is 0 or exceeds `xs.len()`, or the points are not distinct and
/// nonzero.
pub fn split<R: rand::CryptoRng + ?Sized>(
    secret: &[u8; 32],
    threshold: usize,
    xs: &[u32],
    rng: &mut R,
) -> Result<Vec<Share>, SecAggError> {
    todo!()
}

/// The secret from `shares` (Lagrange interpolation at 0 over the first `threshold` of them).
/// Errors with fewer than `threshold` shares, repeated x, or a chunk that decodes outside
/// 7 bytes (shares of different secrets).
pub fn combine(shares: &[Share], threshold: usize) -> Result<[u8; 32], SecAggError> {
    todo!()
}
