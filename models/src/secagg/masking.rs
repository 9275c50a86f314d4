//! Masks: ChaCha20 keystreams (rand_chacha's `ChaCha20Rng` seeded with 32 bytes; its output is
//! the same on every platform) reduced modulo the power-of-two `modulus_range`, and arithmetic
//! modulo it.

/// Whether a mask is added or subtracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    Plus,
    Minus,
}

/// Adds (or subtracts) `PRG(seed)` to `vector`, entry by entry modulo `modulus` (a power of
/// two): entry `k` of the mask is the `k`-th `next_u64()` of `ChaCha20Rng::from_seed(seed)`
/// masked to `modulus - 1`.
pub fn apply(vector: &mut [u64], seed: &[u8; 32], modulus: u64, sign: Sign) {
    todo!()
}

/// `sum[k] = (sum[k] + add[k]) mod modulus`.
pub fn add_into(sum: &mut [u64], add: &[u64], modulus: u64) {
    todo!()
}
