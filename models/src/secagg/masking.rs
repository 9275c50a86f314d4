//! Masks: ChaCha20 keystreams (rand_chacha's `ChaCha20Rng` seeded with 32 bytes; its output is
//! the same on every platform) reduced modulo the power-of-two `modulus_range`, and arithmetic
//! modulo it.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

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
    let bits = modulus.wrapping_sub(1);
    let mut prg = ChaCha20Rng::from_seed(*seed);
    for v in vector.iter_mut() {
        let m = prg.next_u64() & bits;
        *v = match sign {
            Sign::Plus => v.wrapping_add(m),
            Sign::Minus => v.wrapping_sub(m),
        } & bits;
    }
}

/// `sum[k] = (sum[k] + add[k]) mod modulus`.
pub fn add_into(sum: &mut [u64], add: &[u64], modulus: u64) {
    let bits = modulus.wrapping_sub(1);
    for (s, a) in sum.iter_mut().zip(add) {
        *s = s.wrapping_add(*a) & bits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_then_minus_is_identity_and_the_mask_is_the_keystream() {
        let seed = [42u8; 32];
        let modulus = 1u64 << 20;
        let original: Vec<u64> = (0..100).map(|k| (k * 7919) % modulus).collect();
        let mut v = original.clone();
        apply(&mut v, &seed, modulus, Sign::Plus);
        assert_ne!(v, original);
        assert!(v.iter().all(|&x| x < modulus));
        let mut prg = ChaCha20Rng::from_seed(seed);
        for (k, (&masked, &plain)) in v.iter().zip(&original).enumerate() {
            let m = prg.next_u64() & (modulus - 1);
            assert_eq!(masked, (plain + m) % modulus, "entry {k}");
        }
        apply(&mut v, &seed, modulus, Sign::Minus);
        assert_eq!(v, original);
        // Masks of the whole u64 range (2^62 here) wrap correctly too.
        let big = 1u64 << 62;
        let mut w = vec![big - 1, 0, 1];
        apply(&mut w, &seed, big, Sign::Minus);
        apply(&mut w, &seed, big, Sign::Plus);
        assert_eq!(w, vec![big - 1, 0, 1]);
    }

    #[test]
    fn add_into_wraps() {
        let mut sum = vec![250, 3, 255];
        add_into(&mut sum, &[10, 4, 1], 256);
        assert_eq!(sum, vec![4, 7, 0]);
    }
}
