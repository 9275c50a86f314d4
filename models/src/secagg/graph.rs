//! The SecAgg+ communication graph: clients on a ring, each the neighbour of the
//! `(num_shares - 1) / 2` clients on either side (a Harary graph, as Flower builds it); with
//! `num_shares >= selected` every client is every other's neighbour.

use std::collections::BTreeSet;

/// The neighbours of `me` among `ring` (the round's clients in ring order, as the server
/// published them), `me` excluded, in ring order: all others when `num_shares >= ring.len()`,
/// else the `(num_shares - 1) / 2` on each side ([`super::SecAggConfig::for_round`] makes
/// `num_shares` odd in that case). Empty when `me` is not on the ring. Symmetric: `j` is a
/// neighbour of `i` exactly when `i` is one of `j`'s.
pub fn neighbours(ring: &[i64], me: i64, num_shares: u32) -> Vec<i64> {
    let n = ring.len();
    let Some(pos) = ring.iter().position(|&id| id == me) else {
        return Vec::new();
    };
    let indices: BTreeSet<usize> = if num_shares as usize >= n {
        (0..n).collect()
    } else {
        let k = (num_shares.saturating_sub(1) / 2) as usize;
        (1..=k.min(n))
            .flat_map(|d| [(pos + d) % n, (pos + n - d % n) % n])
            .collect()
    };
    let mut seen = BTreeSet::new();
    indices
        .into_iter()
        .map(|i| ring[i])
        .filter(|&id| id != me && seen.insert(id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn symmetric_with_the_expected_degree(n in 2usize..60, half in 1u32..10, offset in -1000i64..1000) {
            let num_shares = 2 * half + 1;
            // Ids not in ring order, to catch a sort by id.
            let ring: Vec<i64> = (0..n as i64).map(|i| offset + (i * 37) % 101 * 3 + i * 1000).collect();
            for &me in &ring {
                let mine = neighbours(&ring, me, num_shares);
                let expected = if num_shares as usize >= n { n - 1 } else { 2 * half as usize };
                prop_assert_eq!(mine.len(), expected.min(n - 1));
                prop_assert!(!mine.contains(&me));
                for &j in &mine {
                    prop_assert!(neighbours(&ring, j, num_shares).contains(&me));
                }
                // In ring order.
                let positions: Vec<usize> = mine.iter().map(|j| ring.iter().position(|r| r == j).unwrap()).collect();
                prop_assert!(positions.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }

    #[test]
    fn ring_neighbours_and_complete_graph() {
        let ring = [10, 20, 30, 40, 50, 60, 70];
        assert_eq!(neighbours(&ring, 10, 5), vec![20, 30, 60, 70]);
        assert_eq!(neighbours(&ring, 40, 3), vec![30, 50]);
        assert_eq!(neighbours(&ring, 40, 7), vec![10, 20, 30, 50, 60, 70]);
        assert_eq!(neighbours(&ring, 40, 255), vec![10, 20, 30, 50, 60, 70]);
        assert!(neighbours(&ring, 99, 3).is_empty());
        assert_eq!(neighbours(&[1, 2], 1, 3), vec![2]);
    }
}
