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
        let mut out = [0u8; SHARE_BYTES];
        out[..4].copy_from_slice(&self.x.to_le_bytes());
        for (k, y) in self.ys.iter().enumerate() {
            out[4 + 8 * k..12 + 8 * k].copy_from_slice(&y.to_le_bytes());
        }
        out
    }

    /// Refuses a wrong length, `x = 0` and y values outside the field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Share, SecAggError> {
        let bytes: &[u8; SHARE_BYTES] = bytes
            .try_into()
            .map_err(|_| malformed(format!("{} bytes, a share has {SHARE_BYTES}", bytes.len())))?;
        let x = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if x == 0 {
            return Err(malformed("its point x is 0".into()));
        }
        let mut ys = [0u64; CHUNKS];
        for (k, y) in ys.iter_mut().enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[4 + 8 * k..12 + 8 * k]);
            *y = u64::from_le_bytes(word);
            if *y >= PRIME {
                return Err(malformed(format!("value {k} is outside the field")));
            }
        }
        Ok(Share { x, ys })
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
    if threshold == 0 || threshold > xs.len() {
        return Err(malformed(format!(
            "threshold {threshold} for {} shares (it must be 1 to the number of shares)",
            xs.len()
        )));
    }
    check_points(xs.iter().copied())?;
    let chunks = chunks_of(secret);
    // coeffs[c][0] is chunk c, the others uniform in the field.
    let mut coeffs = vec![[0u64; CHUNKS]; threshold];
    coeffs[0] = chunks;
    for row in coeffs.iter_mut().skip(1) {
        for c in row.iter_mut() {
            *c = random_element(rng);
        }
    }
    let shares = xs
        .iter()
        .map(|&x| {
            let mut ys = [0u64; CHUNKS];
            for (c, y) in ys.iter_mut().enumerate() {
                // Horner, highest degree first.
                let mut acc = 0u64;
                for row in coeffs.iter().rev() {
                    acc = add(mul(acc, u64::from(x)), row[c]);
                }
                *y = acc;
            }
            Share { x, ys }
        })
        .collect();
    // The random coefficients say as much as the secret: wipe them.
    for row in coeffs.iter_mut() {
        *row = [0; CHUNKS];
    }
    Ok(shares)
}

/// The secret from `shares` (Lagrange interpolation at 0 over the first `threshold` of them).
/// Errors with fewer than `threshold` shares, repeated x, or a chunk that decodes outside
/// 7 bytes (shares of different secrets).
pub fn combine(shares: &[Share], threshold: usize) -> Result<[u8; 32], SecAggError> {
    if threshold == 0 {
        return Err(malformed("threshold 0".into()));
    }
    if shares.len() < threshold {
        return Err(malformed(format!(
            "{} shares, {threshold} needed",
            shares.len()
        )));
    }
    let used = &shares[..threshold];
    check_points(used.iter().map(|s| s.x))?;
    // Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i).
    let mut chunks = [0u64; CHUNKS];
    for (i, si) in used.iter().enumerate() {
        let xi = u64::from(si.x);
        let mut num = 1u64;
        let mut den = 1u64;
        for (j, sj) in used.iter().enumerate() {
            if i != j {
                let xj = u64::from(sj.x);
                num = mul(num, xj);
                den = mul(den, sub(xj, xi));
            }
        }
        let li = mul(num, inverse(den));
        for (c, chunk) in chunks.iter_mut().enumerate() {
            *chunk = add(*chunk, mul(li, si.ys[c] % PRIME));
        }
    }
    secret_of(&chunks)
}

/// What every refusal of this module says.
fn malformed(reason: String) -> SecAggError {
    SecAggError::Malformed {
        what: "secret share",
        reason,
    }
}

/// Points must be nonzero (0 is where the secret sits) and distinct.
fn check_points(xs: impl Iterator<Item = u32>) -> Result<(), SecAggError> {
    let mut seen = std::collections::BTreeSet::new();
    for x in xs {
        if x == 0 {
            return Err(malformed("point x = 0 (points start at 1)".into()));
        }
        if !seen.insert(x) {
            return Err(malformed(format!("point x = {x} appears twice")));
        }
    }
    Ok(())
}

/// Bytes per chunk: 7, so that every chunk is below the prime.
const CHUNK_BYTES: usize = 7;

fn chunks_of(secret: &[u8; 32]) -> [u64; CHUNKS] {
    let mut out = [0u64; CHUNKS];
    for (c, chunk) in secret.chunks(CHUNK_BYTES).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        out[c] = u64::from_le_bytes(word);
    }
    out
}

/// The inverse of [`chunks_of`]: refuses a chunk of more than 7 bytes, or padding that is not
/// zero (shares of different secrets, or altered ones, interpolate to such values).
fn secret_of(chunks: &[u64; CHUNKS]) -> Result<[u8; 32], SecAggError> {
    let mut out = [0u8; 32];
    for (c, &chunk) in chunks.iter().enumerate() {
        let start = c * CHUNK_BYTES;
        let len = CHUNK_BYTES.min(32 - start);
        if chunk >> (8 * len) != 0 {
            return Err(malformed(
                "the shares do not interpolate to a secret (shares of different secrets, or altered)"
                    .into(),
            ));
        }
        out[start..start + len].copy_from_slice(&chunk.to_le_bytes()[..len]);
    }
    Ok(out)
}

/// A uniform element of the field: 61 random bits, redrawn in the one case (all ones, the
/// prime itself) outside it.
fn random_element<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> u64 {
    loop {
        let v = rng.next_u64() & PRIME;
        if v < PRIME {
            return v;
        }
    }
}

fn reduce(v: u128) -> u64 {
    // 2^61 = 1 mod PRIME: fold the high bits onto the low ones twice, then one subtraction.
    let folded = (v & u128::from(PRIME)) + (v >> 61);
    let folded = (folded & u128::from(PRIME)) + (folded >> 61);
    let r = folded as u64;
    if r >= PRIME { r - PRIME } else { r }
}

fn add(a: u64, b: u64) -> u64 {
    reduce(u128::from(a) + u128::from(b))
}

fn sub(a: u64, b: u64) -> u64 {
    // a - b = a + (PRIME - b), both reduced first.
    add(a % PRIME, PRIME - b % PRIME)
}

fn mul(a: u64, b: u64) -> u64 {
    reduce(u128::from(a) * u128::from(b))
}

/// `a^(p-2)` (Fermat); `a` nonzero in the field.
fn inverse(a: u64) -> u64 {
    let mut result = 1u64;
    let mut base = a % PRIME;
    let mut e = PRIME - 2;
    while e > 0 {
        if e & 1 == 1 {
            result = mul(result, base);
        }
        base = mul(base, base);
        e >>= 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    use rand_chacha::ChaCha20Rng;

    fn points(n: usize) -> Vec<u32> {
        (1..=n as u32).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_threshold_shares_rebuild_and_fewer_do_not(
            secret in any::<[u8; 32]>(),
            n in 1usize..=20,
            t_seed in any::<usize>(),
            seed in any::<u64>(),
        ) {
            let t = 1 + t_seed % n;
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let mut shares = split(&secret, t, &points(n), &mut rng).unwrap();
            prop_assert_eq!(shares.len(), n);
            shares.shuffle(&mut rng);
            prop_assert_eq!(combine(&shares[..t], t).unwrap(), secret);
            prop_assert_eq!(combine(&shares, t).unwrap(), secret);
            if t >= 2 {
                // t - 1 shares, treated as a full set: another polynomial, hence (with
                // overwhelming probability) no 7-byte chunks or other bytes.
                let fewer = &shares[..t - 1];
                prop_assert_ne!(combine(fewer, t - 1).ok(), Some(secret));
            }
            for s in &shares {
                prop_assert_eq!(&Share::from_bytes(&s.to_bytes()).unwrap(), s);
            }
        }
    }

    proptest! {
        #[test]
        fn field_operations_match_u128_arithmetic(a in 0..PRIME, b in 0..PRIME) {
            let p = u128::from(PRIME);
            prop_assert_eq!(u128::from(mul(a, b)), u128::from(a) * u128::from(b) % p);
            prop_assert_eq!(u128::from(add(a, b)), (u128::from(a) + u128::from(b)) % p);
            prop_assert_eq!(u128::from(sub(a, b)), (u128::from(a) + p - u128::from(b)) % p);
            if a != 0 {
                prop_assert_eq!(mul(a, inverse(a)), 1);
            }
        }
    }

    #[test]
    fn polynomial_coefficients_are_not_zero() {
        // With t = 2 a share's ys are chunk + a * x: a zero coefficient would leak the secret.
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let secret = [0xab; 32];
        let shares = split(&secret, 2, &[1, 2], &mut rng).unwrap();
        assert_ne!(shares[0].ys, chunks_of(&secret));
    }

    #[test]
    fn from_bytes_refuses_bad_shares() {
        let good = Share {
            x: 3,
            ys: [1, 2, 3, 4, PRIME - 1],
        };
        let bytes = good.to_bytes();
        assert_eq!(Share::from_bytes(&bytes).unwrap(), good);
        assert!(Share::from_bytes(&bytes[..SHARE_BYTES - 1]).is_err());
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(Share::from_bytes(&longer).is_err());
        let mut zero_x = bytes;
        zero_x[..4].copy_from_slice(&0u32.to_le_bytes());
        assert!(Share::from_bytes(&zero_x).is_err());
        let mut big_y = bytes;
        big_y[4 + 8 * 2..12 + 8 * 2].copy_from_slice(&PRIME.to_le_bytes());
        assert!(Share::from_bytes(&big_y).is_err());
    }

    #[test]
    fn split_and_combine_refuse_bad_arguments() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let secret = [5u8; 32];
        assert!(split(&secret, 0, &[1, 2, 3], &mut rng).is_err());
        assert!(split(&secret, 4, &[1, 2, 3], &mut rng).is_err());
        assert!(split(&secret, 2, &[1, 0, 3], &mut rng).is_err());
        assert!(split(&secret, 2, &[1, 2, 2], &mut rng).is_err());
        let shares = split(&secret, 2, &[1, 2, 3], &mut rng).unwrap();
        assert!(combine(&shares[..1], 2).is_err());
        assert!(combine(&shares, 0).is_err());
        let repeated = vec![shares[0].clone(), shares[0].clone()];
        assert!(combine(&repeated, 2).is_err());
        // Shares of two different secrets do not give either back.
        let other = split(&[9u8; 32], 2, &[1, 2, 3], &mut rng).unwrap();
        let mixed = vec![shares[0].clone(), other[1].clone()];
        let rebuilt = combine(&mixed, 2);
        assert!(rebuilt.is_err() || (rebuilt != Ok(secret) && rebuilt != Ok([9u8; 32])));
    }

    #[test]
    fn field_arithmetic() {
        assert_eq!(mul(PRIME - 1, PRIME - 1), 1);
        assert_eq!(add(PRIME - 1, 1), 0);
        assert_eq!(sub(0, 1), PRIME - 1);
        for a in [1u64, 2, 12345, PRIME - 2, 1 << 60] {
            assert_eq!(mul(a, inverse(a)), 1);
        }
    }
}
