//! Timing shared by the benches (each bench includes it with `mod support;`).

use std::time::{Duration, Instant};

/// How many calls a measurement makes: `warmup` unmeasured, then at least `min`, and more
/// while within the time budget, up to `max`.
pub struct Calls {
    pub warmup: usize,
    pub min: usize,
    pub max: usize,
}

/// Latencies of `f` in microseconds, sorted, over ~`budget` after a warm-up.
pub fn latencies(mut f: impl FnMut(), budget: Duration, calls: &Calls) -> Vec<f64> {
    for _ in 0..calls.warmup {
        f();
    }
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < calls.min || (start.elapsed() < budget && out.len() < calls.max) {
        let t = Instant::now();
        f();
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out.sort_by(f64::total_cmp);
    out
}

/// The `p` quantile of `sorted` latencies.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
