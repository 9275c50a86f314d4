//! The cache of loaded models: registry versions turned into runnable networks, kept by
//! least-recent use under a memory cap.
//!
//! Entries are keyed by version id, not by deployment name: a version never changes, so a
//! promote or a rollback only changes which version a name resolves to (per request, in
//! [`super::resolve`]), and nothing here needs invalidating. A request holds its model through
//! an `Arc`, so evicting an entry or moving a deployment never drops a model in use.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use b3o_models::model::ModelSpec;
use b3o_wasm_client::inference::OnnxPredictor;
use tokio::sync::OnceCell;

use super::batcher::{BatchConfig, Batcher, Runner};
use super::telemetry;
use crate::error::ApiError;

/// Default memory cap: the churn MLP is ~50 KB of ONNX, the digit CNN ~20 KB, so this holds
/// thousands of them; a version's footprint is estimated by its ONNX size.
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

/// A registry version ready to serve.
#[derive(Debug)]
pub struct ServedModel {
    pub version_id: i64,
    pub spec: ModelSpec,
    /// Runs batches on the right plan and thread.
    pub runner: Arc<Runner>,
    /// The ONNX file: what browsers download to run the model themselves.
    pub onnx: Bytes,
    /// Lower-case hex SHA-256 of [`ServedModel::onnx`] (package checksum and ETag).
    pub onnx_sha256: String,
    /// Estimated memory footprint (the ONNX file's size).
    pub bytes: usize,
    batch: BatchConfig,
    /// Single-row requests go through this queue; started on first use (it needs a runtime).
    batcher: OnceLock<Batcher>,
}

impl ServedModel {
    pub fn new(
        version_id: i64,
        spec: ModelSpec,
        runner: Runner,
        onnx: Bytes,
        batch: BatchConfig,
    ) -> Self {
        let runner = Arc::new(runner);
        Self {
            version_id,
            spec,
            runner,
            onnx_sha256: crate::blobs::sha256_hex(&onnx),
            bytes: onnx.len(),
            onnx,
            batch,
            batcher: OnceLock::new(),
        }
    }

    /// The model's network (any number of rows).
    pub fn predictor(&self) -> &OnnxPredictor {
        self.runner.predictor()
    }

    /// The model's batching queue, started on the current runtime on first use.
    pub fn batcher(&self) -> &Batcher {
        self.batcher
            .get_or_init(|| Batcher::spawn(self.runner.clone(), self.batch))
    }
}

type Slot = Arc<OnceCell<Arc<ServedModel>>>;

struct Entry {
    slot: Slot,
    last_used: u64,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<i64, Entry>,
    tick: u64,
}

/// Loaded models by version id, least-recently-used first out once `max_bytes` is exceeded.
pub struct ModelCache {
    lru: Mutex<Lru>,
    max_bytes: usize,
}

impl Default for ModelCache {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

impl ModelCache {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            lru: Mutex::new(Lru::default()),
            max_bytes,
        }
    }

    /// The model of `version_id`, loading it with `load` on a miss. Concurrent requests for the
    /// same version share one load; a failed load is not cached.
    pub async fn get_or_load<F, Fut>(
        &self,
        version_id: i64,
        load: F,
    ) -> Result<Arc<ServedModel>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ServedModel, ApiError>>,
    {
        let slot = {
            let mut lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
            lru.tick += 1;
            let tick = lru.tick;
            let entry = lru.entries.entry(version_id).or_insert_with(|| Entry {
                slot: Slot::default(),
                last_used: tick,
            });
            entry.last_used = tick;
            entry.slot.clone()
        };
        let fresh = !slot.initialized();
        let model = slot
            .get_or_try_init(|| async { load().await.map(Arc::new) })
            .await?
            .clone();
        if fresh {
            self.evict(version_id);
            telemetry::set_models_loaded(self.loaded().len());
        }
        Ok(model)
    }

    /// Drops least-recently-used loaded models until the cap holds, never `keep`.
    fn evict(&self, keep: i64) {
        let mut lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let used: usize = lru
                .entries
                .values()
                .filter_map(|e| e.slot.get())
                .map(|m| m.bytes)
                .sum();
            if used <= self.max_bytes {
                return;
            }
            let victim = lru
                .entries
                .iter()
                .filter(|(id, e)| **id != keep && e.slot.initialized())
                .min_by_key(|(_, e)| e.last_used)
                .map(|(id, _)| *id);
            match victim {
                Some(id) => {
                    lru.entries.remove(&id);
                    telemetry::record_eviction();
                    tracing::debug!(version_id = id, "evicted a model from the inference cache");
                }
                None => return,
            }
        }
    }

    /// Version ids currently loaded (for tests and metrics).
    pub fn loaded(&self) -> Vec<i64> {
        let lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<i64> = lru
            .entries
            .iter()
            .filter(|(_, e)| e.slot.initialized())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use b3o_models::onnx::export_onnx;

    use super::*;

    fn model(version_id: i64) -> ServedModel {
        let spec = ModelSpec::mnist_cnn();
        let onnx = export_onnx(&spec, &spec.init_weights(version_id as u64)).unwrap();
        ServedModel::new(
            version_id,
            spec,
            Runner::new(OnnxPredictor::load_b3o(&onnx).unwrap().0),
            onnx.into(),
            BatchConfig::default(),
        )
    }

    #[tokio::test]
    async fn evicts_the_least_recently_used_and_keeps_models_in_use_alive() {
        let one = model(1).bytes;
        let cache = ModelCache::new(2 * one + one / 2);
        let held = cache
            .get_or_load(1, || async { Ok(model(1)) })
            .await
            .unwrap();
        cache
            .get_or_load(2, || async { Ok(model(2)) })
            .await
            .unwrap();
        // 1 is used again, so 2 is the least recent when 3 arrives.
        cache
            .get_or_load(1, || async { panic!("1 is cached") })
            .await
            .unwrap();
        cache
            .get_or_load(3, || async { Ok(model(3)) })
            .await
            .unwrap();
        assert_eq!(cache.loaded(), vec![1, 3]);
        cache
            .get_or_load(4, || async { Ok(model(4)) })
            .await
            .unwrap();
        assert_eq!(cache.loaded(), vec![3, 4]);
        // A request still holding version 1 keeps running it after its eviction.
        assert_eq!(held.predictor().predict(&[0.5; 784], 1).unwrap().len(), 10);
    }

    #[tokio::test]
    async fn failed_loads_are_not_cached() {
        let cache = ModelCache::default();
        let err = cache
            .get_or_load(9, || async { Err(ApiError::NotFound("gone".into())) })
            .await;
        assert!(err.is_err());
        assert!(cache.loaded().is_empty());
        cache
            .get_or_load(9, || async { Ok(model(9)) })
            .await
            .unwrap();
        assert_eq!(cache.loaded(), vec![9]);
    }
}
