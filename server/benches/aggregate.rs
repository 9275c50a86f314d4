//! Aggregation throughput: K updates of P `f32` parameters folded into a running weighted sum
//! (the mean-type strategies' hot path), next to a memcpy of the same bytes in the same run.
//! Figures are GB/s of updates read. Run with:
//!
//! ```sh
//! cargo bench -p b3o-server --bench aggregate
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use b3o_server::strategy::math::{WeightedMean, median};

fn updates(k: usize, p: usize) -> Vec<Vec<f32>> {
    (0..k)
        .map(|c| {
            (0..p)
                .map(|i| ((i * 31 + c * 17) % 1000) as f32 * 1e-3)
                .collect()
        })
        .collect()
}

/// Best of several repetitions (each at least ~0.3 s) of `f`, in seconds.
fn best_time(mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    let start = Instant::now();
    let mut reps = 0;
    while reps < 3 || (start.elapsed() < Duration::from_secs(2) && reps < 20) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        reps += 1;
    }
    best
}

/// Peak resident memory of this process (`VmHWM`), in MB; Linux only.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// FedAvg's memory bound, measured before anything else is allocated: 1,000 updates of 1M
/// parameters arrive one at a time (as uploads do) into one reused buffer and are folded into the
/// running mean, so the peak stays near two models' size whatever the number of clients.
fn fedavg_peak_memory() {
    let (k, p) = (1000, 1_000_000);
    let before = peak_rss_mb();
    let mut incoming = vec![0.0f32; p];
    let mut acc = WeightedMean::new(p);
    let start = Instant::now();
    for c in 0..k {
        for (i, x) in incoming.iter_mut().enumerate() {
            *x = ((i * 31 + c * 17) % 1000) as f32 * 1e-3;
        }
        acc.add(black_box(&incoming), 10 + c as u64).unwrap();
    }
    black_box(acc.finish());
    let model_mb = (p * 4) as f64 / 1e6 * 1.048_576f64.recip();
    if let (Some(before), Some(after)) = (before, peak_rss_mb()) {
        println!(
            "FedAvg of {k} updates x {p} params ({:.1} GB streamed in {:.1} s): peak RSS {after:.0} MB \
             (process before: {before:.0} MB; one model = {model_mb:.1} MiB)\n",
            (k * p * 4) as f64 / 1e9,
            start.elapsed().as_secs_f64()
        );
    }
}

fn main() {
    fedavg_peak_memory();
    println!("| K updates | P params | data read | memcpy GB/s | running mean GB/s | ratio |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (k, p) in [(10, 1_000_000), (100, 1_000_000), (1000, 100_000)] {
        let ups = updates(k, p);
        let bytes = (k * p * 4) as f64;
        let mut dst = vec![0.0f32; p];
        let t_copy = best_time(|| {
            for u in &ups {
                dst.copy_from_slice(black_box(u));
                black_box(&mut dst);
            }
        });
        let t_mean = best_time(|| {
            let mut acc = WeightedMean::new(p);
            for (c, u) in ups.iter().enumerate() {
                acc.add(black_box(u), 10 + c as u64).unwrap();
            }
            black_box(acc.finish());
        });
        println!(
            "| {k} | {p} | {:.0} MB | {:.1} | {:.1} | {:.2} |",
            bytes / 1e6,
            bytes / t_copy / 1e9,
            bytes / t_mean / 1e9,
            t_copy / t_mean
        );
    }
    // The robust strategies need every update at once; median is the cheapest of them.
    let (k, p) = (10, 1_000_000);
    let ups = updates(k, p);
    let views: Vec<&[f32]> = ups.iter().map(|u| u.as_slice()).collect();
    let t = best_time(|| {
        black_box(median(black_box(&views)).unwrap());
    });
    println!(
        "\ncoordinate-wise median, K={k}, P={p}: {:.2} GB/s",
        (k * p * 4) as f64 / t / 1e9
    );
}
