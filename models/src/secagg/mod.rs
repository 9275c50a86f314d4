//! Secure aggregation, SecAgg+ (Bell et al. 2020, as Flower implements it; Bonawitz et al. 2017
//! is the complete-graph case): the server learns the sum of a round's quantized, weighted
//! updates and never one client's.
//!
//! This module is the protocol's pure core, shared by the browser's training worker, `b3o
//! client`, `b3o simulate` and the server: no I/O, no clock, randomness from the caller's
//! CSPRNG (the browser's `crypto.getRandomValues` on wasm32 through getrandom, the OS
//! elsewhere). The server's routes and round stages live in `server::federation::secagg`.
//!
//! Stages of one round, for the selected clients `1..n` placed on a ring ([`graph`]):
//! 1. **advertise keys** ([`ClientRound::new`]): each client makes two X25519 key pairs, one to
//!    encrypt shares (`c`), one to agree mask seeds (`s`), and publishes both public keys.
//! 2. **share keys** ([`ClientRound::share_keys`]): with its neighbours' public keys, a client
//!    draws its self-mask seed `b`, Shamir-splits `b` and its secret `s` key into
//!    `num_shares` shares ([`shamir`], threshold `reconstruction_threshold`), keeps one pair for
//!    itself and sends each neighbour its pair encrypted with ChaCha20-Poly1305 under a key
//!    derived (HKDF-SHA256) from the `c` agreement, bound to group, round, sender and
//!    recipient ([`keys`]).
//! 3. **collect masked vectors** ([`ClientRound::receive_shares`], [`ClientRound::mask`]): the
//!    client decrypts the shares it received (the neighbours that completed stage 2 are the
//!    ones it masks with), quantizes its update ([`quantize`]), scales it by its weight factor,
//!    and adds the self mask `PRG(b)` and, for each such neighbour `j`, `+PRG(s_ij)` if its id is
//!    lower, `-PRG(s_ij)` otherwise, all modulo `modulus_range` ([`masking`]).
//! 4. **unmask** ([`ClientRound::unmask_shares`]): the server names, among each client's
//!    neighbours, the survivors (masked vector received) and the dropped; the client returns its
//!    shares of survivors' `b` and of dropped clients' `s`, and refuses a request that names a
//!    client in both lists or too few survivors.
//!
//! The server sums the masked vectors ([`Aggregator`]), reconstructs what it may
//! ([`unmask`]), and turns the sum into the weighted mean of the updates ([`dequantize_mean`]).

pub mod config;
pub mod graph;
pub mod keys;
pub mod masking;
pub mod quantize;
pub mod shamir;
pub mod wire;

mod client;
mod server;

pub use client::{ClientRound, NeighbourKeys, Received};
pub use config::{EffectiveConfig, SecAggConfig, ShareCount};
pub use keys::PublicKeys;
pub use server::{
    Aggregator, ClientRecord, MeanDelta, UnmaskInputs, dequantize_mean, error_bound, unmask,
};
pub use wire::{EncryptedShare, ShareKind, UnmaskRequest, UnmaskShare};

/// What goes wrong in the protocol. Messages name the client and the problem; the server shows
/// them as 400s (bad messages) or as a round's failure reason (not enough shares).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SecAggError {
    #[error("invalid secure aggregation setting `{param}`: {reason}")]
    InvalidConfig { param: &'static str, reason: String },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("the share from client {from} does not decrypt: wrong key, or it was altered")]
    Decrypt { from: i64 },
    #[error("client {client} is not a neighbour of client {of}")]
    NotNeighbour { client: i64, of: i64 },
    #[error("the unmask request names client {0} both as survivor and as dropped")]
    BothLists(i64),
    #[error("the unmask request names {got} survivors, fewer than the threshold {threshold}")]
    TooFewSurvivors { got: usize, threshold: usize },
    #[error(
        "cannot reconstruct the {kind} of client {client}: {got} shares of the {threshold} needed"
    )]
    NotEnoughShares {
        client: i64,
        kind: ShareKind,
        got: usize,
        threshold: usize,
    },
    #[error("the shares of client {client}'s {kind} do not agree with its public key")]
    Inconsistent { client: i64, kind: ShareKind },
    #[error("vector has {got} entries, expected {expected}")]
    Length { expected: usize, got: usize },
    #[error("entry {index} is {value}, outside the modulus {modulus}")]
    OutOfRange {
        index: usize,
        value: u64,
        modulus: u64,
    },
    #[error("{0} clients cannot be summed without overflow under this modulus")]
    Capacity(usize),
    #[error("the unmasked weights sum to zero: no client's update counted")]
    ZeroWeight,
}

#[cfg(test)]
mod tests;
