//! What a simulation produced: per-round metrics of the federated model next to the
//! centralised baseline, as `metrics.csv`, `metrics.json` and `chart.svg`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use b3o_models::metrics::Metrics;
use b3o_models::task::Task;
use serde::Serialize;

/// One federated round.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundRecord {
    pub round: i64,
    /// From the round opening to its new model being committed (0 for round 0, the initial
    /// model).
    pub seconds: f64,
    /// From the start of training to this round's version (0 for round 0): the wall time at
    /// which its accuracy was reached.
    pub elapsed: f64,
    /// Updates the round aggregated.
    pub updates: i64,
    /// Why the round failed, if it did.
    pub failure: Option<String>,
    /// The global model after the round, on the held-out test rows.
    pub test: Metrics,
    /// Sample-weighted mean of the clients' metrics on their own training rows.
    pub train: BTreeMap<String, f64>,
    /// Differential privacy: the epsilon spent once this round's version was released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
}

/// The centralised baseline after as many epochs as the federation had after `round`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaselineRecord {
    pub round: i64,
    pub epochs: u64,
    pub test: Metrics,
}

/// Everything a simulation measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    pub task: Task,
    pub strategy: serde_json::Value,
    pub partition: String,
    /// Training rows per client.
    pub client_rows: Vec<usize>,
    pub test_rows: usize,
    pub rounds: Vec<RoundRecord>,
    pub baseline: Vec<BaselineRecord>,
    /// Setup: data, partitions, in-process server, accounts, join, statistics, ready.
    pub setup_seconds: f64,
    /// Mean wall time of a round (rounds 1..).
    pub seconds_per_round: f64,
    pub total_seconds: f64,
    /// How the clients sent their updates (`f32`, `int8`, `topk:0.01`...).
    pub update_encoding: String,
    /// Differential privacy: the group's parameters and the epsilon it spent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dp: Option<b3o_models::protocol::GroupPrivacy>,
    /// The model's parameters.
    pub parameters: u64,
    /// Updates accepted, and their bytes on the wire (safetensors files, headers included).
    pub uploads: u64,
    pub upload_bytes: u64,
    /// `upload_bytes / uploads / parameters`: 4 for f32.
    pub bytes_per_parameter: f64,
}

impl SimReport {
    /// The metric the chart and summaries use: accuracy for classification, loss otherwise.
    pub fn headline(&self) -> &'static str {
        if self.task.is_classification() {
            "accuracy"
        } else {
            "loss"
        }
    }

    fn value(&self, m: &Metrics) -> f64 {
        if self.task.is_classification() {
            m.accuracy.unwrap_or(f64::NAN)
        } else {
            m.loss
        }
    }

    /// The last federated round's headline metric on the test rows.
    pub fn federated(&self) -> Option<f64> {
        self.rounds.last().map(|r| self.value(&r.test))
    }

    /// The last baseline step's headline metric on the test rows.
    pub fn centralised(&self) -> Option<f64> {
        self.baseline.last().map(|b| self.value(&b.test))
    }

    /// `centralised - federated` of the headline metric after `round` (NaN when missing).
    pub fn gap(&self, round: i64) -> f64 {
        let fed = self.rounds.iter().find(|r| r.round == round);
        let cen = self.baseline.iter().find(|b| b.round == round);
        match (fed, cen) {
            (Some(f), Some(c)) => self.value(&c.test) - self.value(&f.test),
            _ => f64::NAN,
        }
    }

    /// One row per round: federated test metrics, clients' training metrics, baseline.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "round,seconds,elapsed_seconds,updates,test_loss,test_accuracy,test_roc_auc,train_loss,\
             train_accuracy,central_epochs,central_loss,central_accuracy,central_roc_auc,failure\n",
        );
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
        for r in &self.rounds {
            let b = self.baseline.iter().find(|b| b.round == r.round);
            let _ = writeln!(
                out,
                "{},{:.4},{:.4},{},{:.6},{},{},{},{},{},{},{},{},{}",
                r.round,
                r.seconds,
                r.elapsed,
                r.updates,
                r.test.loss,
                opt(r.test.accuracy),
                opt(r.test.roc_auc),
                opt(r.train.get("loss").copied()),
                opt(r.train.get("accuracy").copied()),
                b.map_or(String::new(), |b| b.epochs.to_string()),
                opt(b.map(|b| b.test.loss)),
                opt(b.and_then(|b| b.test.accuracy)),
                opt(b.and_then(|b| b.test.roc_auc)),
                r.failure.as_deref().unwrap_or("").replace([',', '\n'], " "),
            );
        }
        out
    }

    /// A line chart of the headline metric per round, federated and centralised.
    pub fn svg(&self) -> String {
        let fed: Vec<(f64, f64)> = self
            .rounds
            .iter()
            .map(|r| (r.round as f64, self.value(&r.test)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        let cen: Vec<(f64, f64)> = self
            .baseline
            .iter()
            .map(|b| (b.round as f64, self.value(&b.test)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        let title = format!(
            "{} per round: federated ({} clients, {}) vs centralised",
            self.headline(),
            self.client_rows.len(),
            self.partition
        );
        line_chart(
            &title,
            self.headline(),
            &[
                ("federated", "#2563eb", false, &fed),
                ("centralised (same epochs, all rows)", "#ea580c", true, &cen),
            ],
        )
    }

    /// Writes `metrics.csv`, `metrics.json` and `chart.svg` into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let files = [
            ("metrics.csv", self.csv()),
            ("metrics.json", json),
            ("chart.svg", self.svg()),
        ];
        let mut written = Vec::new();
        for (name, content) in files {
            let path = dir.join(name);
            std::fs::write(&path, content)?;
            written.push(path);
        }
        Ok(written)
    }
}

type Series<'a> = (&'a str, &'a str, bool, &'a [(f64, f64)]);

/// A small self-contained SVG line chart (no fonts or scripts fetched).
fn line_chart(title: &str, y_label: &str, series: &[Series<'_>]) -> String {
    let (w, h) = (760.0, 440.0);
    let (left, right, top, bottom) = (70.0, 20.0, 50.0, 80.0);
    let points = series.iter().flat_map(|s| s.3.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1.0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    (y0, y1) = (y0 - pad, y1 + pad);
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let sy = |y: f64| top + (1.0 - (y - y0) / (y1 - y0)) * (h - top - bottom);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        w / 2.0,
        escape(title)
    );
    // Axes, grid and ticks.
    let _ = writeln!(
        svg,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#333\"/>",
        h - bottom,
        w - right,
        h - bottom,
        h - bottom
    );
    for i in 0..=5 {
        let y = y0 + (y1 - y0) * i as f64 / 5.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" y1=\"{py:.1}\" x2=\"{}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{y:.3}</text>",
            w - right,
            left - 6.0,
            sy(y) + 4.0,
            py = sy(y),
        );
    }
    let step = ((x1 - x0) / 10.0).ceil().max(1.0);
    let mut x = x0.ceil();
    while x <= x1 + 1e-9 {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{x}</text>",
            sx(x),
            h - bottom + 18.0
        );
        x += step;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">round</text>\
         <text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">{}</text>",
        (left + w - right) / 2.0,
        h - bottom + 38.0,
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0,
        escape(y_label)
    );
    for (i, (name, colour, dashed, points)) in series.iter().enumerate() {
        let dash = if *dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash} points=\"{}\"/>",
            path.join(" ")
        );
        for &(x, y) in points.iter() {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>",
                sx(x),
                sy(y)
            );
        }
        let ly = h - 22.0;
        let lx = left + i as f64 * 300.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{colour}\" \
             stroke-width=\"2\"{dash}/><text x=\"{}\" y=\"{}\">{}</text>",
            lx + 30.0,
            lx + 36.0,
            ly + 4.0,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(acc: f64) -> Metrics {
        Metrics {
            num_samples: 10,
            loss: 1.0 - acc,
            accuracy: Some(acc),
            roc_auc: None,
        }
    }

    #[test]
    fn writes_csv_json_and_a_chart_with_both_series() {
        let report = SimReport {
            task: Task::BinaryClassification,
            strategy: serde_json::json!({"name": "fedavg"}),
            partition: "iid".into(),
            client_rows: vec![5, 5],
            test_rows: 10,
            rounds: (0..3)
                .map(|r| RoundRecord {
                    round: r,
                    seconds: 0.1,
                    elapsed: 0.1 * r as f64,
                    updates: 2,
                    failure: None,
                    test: metrics(0.5 + r as f64 / 10.0),
                    train: BTreeMap::from([("loss".into(), 0.4)]),
                    epsilon: None,
                })
                .collect(),
            baseline: (0..3)
                .map(|r| BaselineRecord {
                    round: r,
                    epochs: r as u64 * 5,
                    test: metrics(0.6 + r as f64 / 20.0),
                })
                .collect(),
            setup_seconds: 0.0,
            seconds_per_round: 0.1,
            total_seconds: 0.3,
            update_encoding: "int8".into(),
            dp: None,
            parameters: 100,
            uploads: 4,
            upload_bytes: 440,
            bytes_per_parameter: 1.1,
        };
        let csv = report.csv();
        assert_eq!(csv.lines().count(), 4);
        assert!(
            csv.lines()
                .nth(3)
                .unwrap()
                .starts_with("2,0.1000,0.2000,2,0.300000,0.700000,")
        );
        assert!((report.gap(2) - 0.0).abs() < 1e-9 && (report.gap(0) - 0.1).abs() < 1e-9);
        let svg = report.svg();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("centralised"));
        let dir = tempfile::tempdir().unwrap();
        let files = report.write(dir.path()).unwrap();
        assert_eq!(files.len(), 3);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("metrics.json")).unwrap())
                .unwrap();
        assert_eq!(json["rounds"][2]["updates"], 2);
    }
}
