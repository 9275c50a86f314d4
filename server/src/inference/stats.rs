//! Per-model inference statistics (Triton's statistics extension): for each deployment name
//! and version, the rows and model executions of successful requests, when the last one ended,
//! and the count and total time of successful and failed requests, of waiting for a batch and
//! of running the model. Served at `GET /v2/models/{name}[/versions/{v}]/stats` and by the gRPC
//! `ModelStatistics`, from the same numbers.
//!
//! Every inference request of a deployment counts, whatever the route: KServe V2 over HTTP
//! (JSON or binary) and gRPC, and the codeless CSV, rows and image routes; batch jobs do not
//! (they have their own status and `/metrics`). A request counts once it reached the model
//! (the caller allowed and the model loaded): a refused caller or an unknown name is not a
//! model's failure.
//!
//! **In memory, per replica**: nothing is written to the database. Behind a load balancer each
//! replica answers with its own share, and a restart starts from zero (Triton's are per
//! process too). The keys are names and versions that were served, so the map grows only with
//! deployments actually called.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use b3o_models::v2::{InferStatistics, ModelStatistics, StatisticDuration};

/// What the model did for one request: rows, executions of the model, time waiting for a
/// batch to start and time running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunInfo {
    pub rows: u64,
    /// Model executions this request is counted for: a batch of single rows from several
    /// requests counts for the request that opened it only, so that executions add up.
    pub executions: u64,
    pub queue: Duration,
    pub compute: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
struct Total {
    count: u64,
    ns: u64,
}

impl Total {
    fn add(&mut self, d: Duration) {
        self.count = self.count.saturating_add(1);
        self.ns = self
            .ns
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    fn wire(self) -> StatisticDuration {
        StatisticDuration {
            count: self.count,
            ns: self.ns,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    last_inference_ms: u64,
    inference_count: u64,
    execution_count: u64,
    success: Total,
    fail: Total,
    queue: Total,
    compute_infer: Total,
}

/// The statistics of one replica (`Shared::stats`).
#[derive(Debug, Default)]
pub struct Statistics {
    /// Deployment name -> version id -> counts.
    models: Mutex<HashMap<String, HashMap<i64, Counts>>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Statistics {
    /// One inference request of deployment `name` at `version_id` that reached the model and
    /// took `elapsed`: succeeded with `run`, or failed (`None`).
    pub fn record(&self, name: &str, version_id: i64, elapsed: Duration, run: Option<&RunInfo>) {
        let now = now_ms();
        let mut models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        let versions = match models.get_mut(name) {
            Some(v) => v,
            None => models.entry(name.to_string()).or_default(),
        };
        let c = versions.entry(version_id).or_default();
        c.last_inference_ms = now;
        match run {
            Some(run) => {
                c.success.add(elapsed);
                c.inference_count = c.inference_count.saturating_add(run.rows);
                c.execution_count = c.execution_count.saturating_add(run.executions);
                c.queue.add(run.queue);
                c.compute_infer.add(run.compute);
            }
            None => c.fail.add(elapsed),
        }
    }

    /// The statistics of `name` at `version_id` (zeros when it was never called here).
    pub fn get(&self, name: &str, version_id: i64) -> ModelStatistics {
        let models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        let c = models
            .get(name)
            .and_then(|v| v.get(&version_id))
            .copied()
            .unwrap_or_default();
        let zero = StatisticDuration::default;
        ModelStatistics {
            name: name.to_string(),
            version: version_id.to_string(),
            last_inference: c.last_inference_ms,
            inference_count: c.inference_count,
            execution_count: c.execution_count,
            inference_stats: InferStatistics {
                success: c.success.wire(),
                fail: c.fail.wire(),
                queue: c.queue.wire(),
                compute_input: zero(),
                compute_infer: c.compute_infer.wire(),
                compute_output: zero(),
            },
            batch_stats: Vec::new(),
        }
    }

    /// The statistics of deployment `name` for a caller that did not pin a version: the
    /// version it serves now, and each version of `served` (those anyone allowed may pin)
    /// called here, in ascending order.
    pub fn deployment(&self, name: &str, current: i64, served: &[i64]) -> Vec<ModelStatistics> {
        let mut versions: Vec<i64> = {
            let models = self.models.lock().unwrap_or_else(|e| e.into_inner());
            models.get(name).map_or_else(Vec::new, |v| {
                v.keys().copied().filter(|id| served.contains(id)).collect()
            })
        };
        if !versions.contains(&current) {
            versions.push(current);
        }
        versions.sort_unstable();
        versions.into_iter().map(|v| self.get(name, v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successes_and_failures_add_up_per_name_and_version() {
        let s = Statistics::default();
        let run = RunInfo {
            rows: 3,
            executions: 1,
            queue: Duration::from_nanos(10),
            compute: Duration::from_nanos(100),
        };
        s.record("churn", 7, Duration::from_nanos(500), Some(&run));
        s.record("churn", 7, Duration::from_nanos(200), Some(&run));
        s.record("churn", 7, Duration::from_nanos(50), None);
        s.record("churn", 8, Duration::from_nanos(1), Some(&run));
        let st = s.get("churn", 7);
        assert_eq!((st.inference_count, st.execution_count), (6, 2));
        assert_eq!(st.inference_stats.success.count, 2);
        assert_eq!(st.inference_stats.success.ns, 700);
        assert_eq!(st.inference_stats.fail.count, 1);
        assert_eq!(st.inference_stats.queue.ns, 20);
        assert_eq!(st.inference_stats.compute_infer.ns, 200);
        assert!(st.last_inference > 0);
        // A version never called: zeros; versions outside `served` are not listed unpinned.
        assert_eq!(s.get("churn", 9).inference_count, 0);
        let listed: Vec<String> = s
            .deployment("churn", 9, &[7, 9])
            .into_iter()
            .map(|m| m.version)
            .collect();
        assert_eq!(listed, ["7", "9"]);
        assert!(s.deployment("digits", 1, &[1])[0].inference_count == 0);
    }
}
