//! The SecAgg+ communication graph: clients on a ring, each the neighbour of the
//! `(num_shares - 1) / 2` clients on either side (a Harary graph, as Flower builds it); with
//! `num_shares >= selected` every client is every other's neighbour.

/// The neighbours of `me` among `ring` (the round's clients in ring order, as the server
/// published them), `me` excluded, in ring order: all others when `num_shares >= ring.len()`,
/// else the `(num_shares - 1) / 2` on each side ([`super::SecAggConfig::for_round`] makes
/// `num_shares` odd in that case). Empty when `me` is not on the ring. Symmetric: `j` is a
/// neighbour of `i` exactly when `i` is one of `j`'s.
pub fn neighbours(ring: &[i64], me: i64, num_shares: u32) -> Vec<i64> {
    todo!()
}
