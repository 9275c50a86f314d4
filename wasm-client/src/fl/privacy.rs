//! Where a member keeps its privacy ledger ([`b3o_models::dp::ledger`]) and how a participant
//! applies a DP round to its update.
//!
//! [`LedgerStore`] is the member's own storage: [`MemoryLedger`] (tests, `b3o simulate`), a
//! JSON file for `b3o client` (`native::FileLedger`), IndexedDB in the browser
//! (`browser::IndexedDbLedger`). Entries are keyed by group and membership
//! ([`ledger_key`]); the store is the member's, never the server's.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use b3o_models::dp::ledger::GroupLedger;
use b3o_models::dp::{DpPlacement, RoundDp, mechanism};
use rand::Rng;

use super::{MaybeSend, MaybeSync};

/// A boxed future, `Send` natively.
#[cfg(not(target_arch = "wasm32"))]
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A boxed future, `Send` natively.
#[cfg(target_arch = "wasm32")]
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A member's durable ledger storage.
pub trait LedgerStore: MaybeSend + MaybeSync {
    /// The ledger stored under `key`, if any.
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Result<Option<GroupLedger>, String>>;
    /// Stores `ledger` under `key`, durably before it returns.
    fn save<'a>(
        &'a self,
        key: &'a str,
        ledger: &'a GroupLedger,
    ) -> StoreFuture<'a, Result<(), String>>;
}

/// The key of a member's ledger in one group.
pub fn ledger_key(group_id: i64, member_id: i64) -> String {
    format!("group-{group_id}-member-{member_id}")
}

/// A ledger kept in memory: it lasts as long as the process.
#[derive(Debug, Default)]
pub struct MemoryLedger(Mutex<BTreeMap<String, GroupLedger>>);

impl MemoryLedger {
    pub fn get(&self, key: &str) -> Option<GroupLedger> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }
}

impl LedgerStore for MemoryLedger {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Result<Option<GroupLedger>, String>> {
        let found = self.get(key);
        Box::pin(async move { Ok(found) })
    }

    fn save<'a>(
        &'a self,
        key: &'a str,
        ledger: &'a GroupLedger,
    ) -> StoreFuture<'a, Result<(), String>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), ledger.clone());
        Box::pin(async { Ok(()) })
    }
}

/// What a member did to its update in a DP round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Privatized {
    /// The update's norm before clipping.
    pub norm: f64,
    /// Within the clipping norm (adaptive clipping's bit).
    pub unclipped: bool,
    /// Standard deviation of the noise this member added to each value.
    pub noise_std: f64,
}

/// Clips `delta` (the change from the round's base model) to the round's norm and adds this
/// member's noise: all of it with local placement; with central placement in a secure group,
/// its share `(z·C)^2 / min_survivors` of the variance (the server never sees a noiseless sum);
/// none with central placement otherwise (the server adds it to the mean).
pub fn privatize<R: Rng + ?Sized>(
    delta: &mut [f32],
    round: &RoundDp,
    secure_min_survivors: Option<usize>,
    rng: &mut R,
) -> Privatized {
    let clipped = mechanism::clip(delta, round.clipping_norm);
    let full = round.update_noise_multiplier * round.clipping_norm;
    let noise_std = match (round.placement, secure_min_survivors) {
        (DpPlacement::Local, _) => full,
        (DpPlacement::Central, Some(t)) => full / (t.max(1) as f64).sqrt(),
        (DpPlacement::Central, None) => 0.0,
    };
    mechanism::add_gaussian(delta, noise_std, rng);
    Privatized {
        norm: clipped.norm,
        unclipped: !clipped.clipped,
        noise_std,
    }
}
