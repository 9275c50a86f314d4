//! The work drift monitoring adds to one inference request (issue #18), in process: building
//! the request's summary (a churn row's raw JSON cells, or its preprocessed V2 tensor mapped
//! back, and the answer) and merging it into the deployment's open window
//! (`monitoring::Monitor::record`, under its lock), against a window already holding 5,000
//! rows like the demo's. One thread; p50 and p99 over many calls. BENCHMARKS.md relates it to
//! the server's CPU per request under HTTP load. Run with:
//!
//! ```sh
//! cargo bench -p b3o-server --bench drift
//! ```

use std::hint::black_box;
use std::time::Duration;

mod support;

use support::{Calls, latencies, pct};

use b3o_models::monitor;
use b3o_models::stats::Summary;
use b3o_models::tabular::read_csv;
use b3o_server::demo::churn_data::churn_csv;
use b3o_server::monitoring::{Monitor, Settings};

/// The calls of each measurement: a few microseconds each.
const CALLS: Calls = Calls {
    warmup: 200,
    min: 1000,
    max: 200_000,
};

fn main() {
    let publish = b3o_server::demo::churn().expect("the churn demo");
    let spec = publish.spec;
    let prep = spec.preprocessing.clone().expect("tabular");
    let table = read_csv(churn_csv(99, 1000).as_bytes()).unwrap();
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = (0..table.n_rows)
        .map(|r| {
            table
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.values[r].clone().into()))
                .collect()
        })
        .collect();
    let (inputs, n) = prep.transform(&table).unwrap();
    let width = inputs.len() / n;
    let monitor = Monitor::new(Settings {
        window_rows: u64::MAX,
        ..Settings::default()
    });
    // A window already holding traffic, as under load.
    for (i, row) in rows.iter().cycle().take(5000).enumerate() {
        let mut w = Summary::default();
        monitor::observe_json_row(&mut w, &prep, row);
        monitor::observe_outputs(&mut w, &spec, &[(i % 10) as f32 / 10.0], 1);
        monitor.record("churn", 1, 1, &w);
    }
    println!("| request | step | p50 µs | p99 µs | calls |");
    println!("| --- | --- | ---: | ---: | ---: |");
    let report = |request: &str, step: &str, lat: Vec<f64>| {
        println!(
            "| {request} | {step} | {:.2} | {:.2} | {} |",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.len()
        );
    };
    let budget = Duration::from_secs(2);
    let mut i = 0usize;
    report(
        "codeless row",
        "summary + record",
        latencies(
            || {
                let row = &rows[i % rows.len()];
                i += 1;
                let mut w = Summary::default();
                monitor::observe_json_row(&mut w, &prep, row);
                monitor::observe_outputs(&mut w, &spec, &[0.3], 1);
                monitor.record("churn", 1, 1, black_box(&w));
            },
            budget,
            &CALLS,
        ),
    );
    report(
        "V2 row",
        "summary + record",
        latencies(
            || {
                let k = i % n;
                i += 1;
                let mut w = Summary::default();
                monitor::observe_inputs(&mut w, &prep, &inputs[k * width..(k + 1) * width], 1);
                monitor::observe_outputs(&mut w, &spec, &[0.3], 1);
                monitor.record("churn", 1, 1, black_box(&w));
            },
            budget,
            &CALLS,
        ),
    );
    report(
        "codeless row",
        "summary only",
        latencies(
            || {
                let row = &rows[i % rows.len()];
                i += 1;
                let mut w = Summary::default();
                monitor::observe_json_row(&mut w, &prep, row);
                monitor::observe_outputs(&mut w, &spec, &[0.3], 1);
                black_box(w);
            },
            budget,
            &CALLS,
        ),
    );
}
