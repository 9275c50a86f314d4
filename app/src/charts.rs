//! Small charts as inline SVG and HTML (no chart library): metrics by round as lines, class
//! probabilities as bars. Every chart carries its numbers as text too (a `<title>` per point,
//! a table for screen readers), so nothing is shown only as a picture.

use leptos::prelude::*;

use crate::api::Metrics;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// `(x, y)` in data units, sorted by `x`.
    pub points: Vec<(f64, f64)>,
}

/// Okabe–Ito colours: told apart with the common colour-vision deficiencies too.
const COLOURS: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];

/// How series `i` named `name` is drawn: its colour, and a dash pattern for evaluation
/// series, so that training and evaluation of the same metric differ in two ways even when
/// their lines overlap (a loss measured on both is often near-identical).
pub fn series_style(i: usize, name: &str) -> (&'static str, &'static str) {
    let dash = if name.to_ascii_lowercase().contains("evaluation") {
        "7 4"
    } else {
        ""
    };
    (COLOURS[i % COLOURS.len()], dash)
}

const W: f64 = 480.0;
const H: f64 = 220.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 34.0;

/// About `count` round numbers spanning `[lo, hi]` (1, 2 or 5 times a power of ten apart).
pub fn nice_ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || count == 0 {
        return Vec::new();
    }
    if (hi - lo).abs() < f64::EPSILON {
        return vec![lo];
    }
    let raw = (hi - lo) / count as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() * step;
    let mut ticks = Vec::new();
    let mut t = first;
    while t <= hi + step * 1e-9 {
        // Avoid -0 and 0.30000000000000004.
        ticks.push(((t / step).round() * step * 1e9).round() / 1e9 + 0.0);
        t += step;
    }
    ticks
}

/// `0.1234` -> `0.123`, `0.5` -> `0.5`, `1500` -> `1500`, `2` -> `2`, `1.5` -> `1.50`.
pub fn short_number(v: f64) -> String {
    if (v.fract() == 0.0 && v.abs() < 1e9) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// `{"accuracy": 0.91234, "num_examples": 120}` -> `"accuracy 0.912, num examples 120"`.
pub fn metric_text(metrics: Option<&Metrics>) -> String {
    metrics
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{} {}", k.replace('_', " "), short_number(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One series per metric name in `rows` (`(x, {name: value})`, e.g. a round and its metrics)
/// that `keep` selects, named `prefix` + the metric's name.
pub fn series_by_metric(
    rows: &[(f64, Option<&Metrics>)],
    prefix: &str,
    keep: impl Fn(&str) -> bool,
) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for &(x, metrics) in rows {
        for (name, &y) in metrics.into_iter().flatten() {
            if !y.is_finite() || !keep(name) {
                continue;
            }
            let label = format!("{prefix}{}", name.replace('_', " "));
            match out.iter_mut().find(|s| s.name == label) {
                Some(s) => s.points.push((x, y)),
                None => out.push(Series {
                    name: label,
                    points: vec![(x, y)],
                }),
            }
        }
    }
    for s in &mut out {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// Loss-like metric names.
pub fn is_loss(name: &str) -> bool {
    name.to_ascii_lowercase().contains("loss")
}

/// Quality metrics between 0 and 1 (accuracy, AUC, F1, precision, recall).
pub fn is_quality(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["acc", "auc", "f1", "precision", "recall"]
        .iter()
        .any(|k| n.contains(k))
}

/// A line chart of `series` against a shared x axis (rounds). `id` names the figure for tests.
pub fn line_chart(
    id: String,
    title: String,
    x_label: &'static str,
    series: Vec<Series>,
) -> AnyView {
    let points: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.clone()).collect();
    if points.is_empty() {
        return view! {
            <figure class="chart empty-chart" id=id>
                <figcaption>{title}</figcaption>
                <p class="muted">"No values yet."</p>
            </figure>
        }
        .into_any();
    }
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in &points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    // Leave room above and below; metrics between 0 and 1 keep a 0..1 scale.
    if y0 >= 0.0 && y1 <= 1.0 {
        y0 = 0.0;
        y1 = 1.0;
    } else if (y1 - y0).abs() < 1e-12 {
        y0 -= 1.0;
        y1 += 1.0;
    } else {
        let pad = (y1 - y0) * 0.1;
        y0 -= pad;
        y1 += pad;
    }
    if (x1 - x0).abs() < 1e-12 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let sx = move |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let sy = move |y: f64| H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM);
    let y_ticks = nice_ticks(y0, y1, 4);
    // Rounds: label each one while they are few.
    let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let x_ticks: Vec<f64> = if xs.len() <= 12 {
        xs.clone()
    } else {
        nice_ticks(x0, x1, 6)
            .into_iter()
            .filter(|t| t.fract() == 0.0)
            .collect()
    };

    let grid = y_ticks
        .iter()
        .map(|&t| {
            let y = sy(t);
            view! {
                <line class="grid" x1=LEFT x2=W - RIGHT y1=y y2=y/>
                <text class="tick" x=LEFT - 6.0 y=y + 4.0 text-anchor="end">{short_number(t)}</text>
            }
        })
        .collect_view();
    let x_axis = x_ticks
        .iter()
        .map(|&t| {
            let x = sx(t);
            view! {
                <text class="tick" x=x y=H - BOTTOM + 16.0 text-anchor="middle">{short_number(t)}</text>
            }
        })
        .collect_view();
    let lines = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (colour, dash) = series_style(i, &s.name);
            let path = s
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect::<Vec<_>>()
                .join(" ");
            let dots = s
                .points
                .iter()
                .map(|&(x, y)| {
                    let label = format!(
                        "{} at {} {}: {}",
                        s.name,
                        x_label,
                        short_number(x),
                        short_number(y)
                    );
                    view! {
                        <circle cx=sx(x) cy=sy(y) r="3.5" fill=colour>
                            <title>{label}</title>
                        </circle>
                    }
                })
                .collect_view();
            view! {
                <polyline points=path fill="none" stroke=colour stroke-width="2"
                    stroke-dasharray=dash data-series=s.name.clone()/>
                {dots}
            }
        })
        .collect_view();
    let legend = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (colour, dash) = series_style(i, &s.name);
            let style = if dash.is_empty() {
                format!("background:{colour}")
            } else {
                format!(
                    "background:repeating-linear-gradient(90deg,{colour} 0 4px,transparent 4px 6px)"
                )
            };
            view! { <li><span class="swatch" style=style></span>{s.name.clone()}</li> }
        })
        .collect_view();
    let table_rows = xs
        .iter()
        .map(|&x| {
            let cells = series
                .iter()
                .map(|s| {
                    let v = s
                        .points
                        .iter()
                        .find(|p| p.0 == x)
                        .map_or("–".to_string(), |p| short_number(p.1));
                    view! { <td>{v}</td> }
                })
                .collect_view();
            view! { <tr><th scope="row">{short_number(x)}</th>{cells}</tr> }
        })
        .collect_view();
    let heads = series
        .iter()
        .map(|s| view! { <th scope="col">{s.name.clone()}</th> })
        .collect_view();
    let view_box = format!("0 0 {W} {H}");
    // The numbers as a table for screen readers. A table cannot be narrower than its content,
    // so its wrapper is what is visually hidden.
    view! {
        <figure class="chart" id=id>
            <figcaption>{title.clone()}</figcaption>
            <svg viewBox=view_box role="img" aria-label=title.clone() preserveAspectRatio="xMidYMid meet">
                {grid}
                <line class="axis" x1=LEFT x2=W - RIGHT y1=H - BOTTOM y2=H - BOTTOM/>
                {x_axis}
                <text class="axis-label" x=(LEFT + W - RIGHT) / 2.0 y=H - 4.0 text-anchor="middle">{x_label}</text>
                {lines}
            </svg>
            <ul class="legend">{legend}</ul>
            <div class="visually-hidden">
                <table>
                    <caption>{title}</caption>
                    <thead><tr><th scope="col">{x_label}</th>{heads}</tr></thead>
                    <tbody>{table_rows}</tbody>
                </table>
            </div>
        </figure>
    }
    .into_any()
}

/// Horizontal bars of each label's probability, the most likely highlighted.
pub fn probability_bars(id: &'static str, labels: Vec<String>, probabilities: Vec<f64>) -> AnyView {
    let best = probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i);
    let rows = labels
        .into_iter()
        .zip(probabilities)
        .enumerate()
        .map(|(i, (label, p))| {
            let pct = (p.clamp(0.0, 1.0) * 100.0).round();
            let style = format!("width:{pct}%");
            let class = if Some(i) == best { "bar best" } else { "bar" };
            let data_label = label.clone();
            view! {
                <li class=class data-label=data_label data-probability=format!("{p:.6}")>
                    <span class="bar-label">{label}</span>
                    <span class="bar-track" aria-hidden="true"><span class="bar-fill" style=style></span></span>
                    <span class="bar-value">{format!("{pct:.0}%")}</span>
                </li>
            }
        })
        .collect_view();
    view! { <ol class="bars" id=id aria-label="Probability of each class">{rows}</ol> }.into_any()
}

/// Side-by-side bars of two distributions over the same bins (reference and current shares),
/// for a drifted feature; `data-bin` and the shares are on each row for tests. Without a
/// reference (`None`), the served shares alone.
pub fn histogram_pair(
    id: String,
    title: String,
    labels: Vec<String>,
    reference: Option<Vec<f64>>,
    current: Vec<f64>,
) -> AnyView {
    let paired = reference.is_some();
    let reference = reference.unwrap_or_default();
    let top = reference
        .iter()
        .chain(current.iter())
        .copied()
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let rows = labels
        .into_iter()
        .enumerate()
        .map(|(i, label)| {
            let r = reference.get(i).copied().unwrap_or(0.0);
            let c = current.get(i).copied().unwrap_or(0.0);
            let width = |v: f64| format!("width:{:.1}%", (v / top).clamp(0.0, 1.0) * 100.0);
            let bin = label.clone();
            view! {
                <li class="pair" data-bin=bin data-reference=format!("{r:.4}")
                    data-current=format!("{c:.4}")>
                    <span class="bar-label">{label}</span>
                    <span class="bar-track" aria-hidden="true">
                        {paired.then(|| view! { <span class="bar-fill reference" style=width(r)></span> })}
                        <span class="bar-fill current" style=width(c)></span>
                    </span>
                    <span class="bar-value">{if paired {
                        format!("{:.0}% → {:.0}%", r * 100.0, c * 100.0)
                    } else {
                        format!("{:.0}%", c * 100.0)
                    }}</span>
                </li>
            }
        })
        .collect_view();
    view! {
        <figure class="chart histogram-pair" id=id>
            <figcaption>{title}</figcaption>
            <p class="legend">
                {paired.then(|| view! { <span class="key reference">"training data"</span> " " })}
                <span class="key current">"served"</span>
            </p>
            <ol class="bars">{rows}</ol>
        </figure>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_and_evaluation_series_differ_in_colour_and_dash() {
        let a = series_style(0, "training loss");
        let b = series_style(1, "evaluation loss");
        assert_ne!(a.0, b.0);
        assert_eq!(a.1, "");
        assert_ne!(b.1, "");
    }

    #[test]
    fn ticks_are_round_numbers_inside_the_range() {
        assert_eq!(nice_ticks(0.0, 1.0, 4), vec![0.0, 0.5, 1.0]);
        assert_eq!(nice_ticks(1.0, 10.0, 5), vec![2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(nice_ticks(3.0, 3.0, 4), vec![3.0]);
        assert!(nice_ticks(f64::NAN, 1.0, 4).is_empty());
        let t = nice_ticks(0.31, 0.69, 4);
        assert!(t.iter().all(|v| (0.31..=0.69).contains(v)), "{t:?}");
    }

    #[test]
    fn metrics_become_one_series_each() {
        let r1: Metrics = [("loss", 0.7), ("accuracy", 0.6), ("num_examples", 10.0)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        let r2: Metrics = [("loss", 0.5), ("accuracy", 0.7)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        let rows = [(2.0, Some(&r2)), (1.0, Some(&r1))];
        let loss = series_by_metric(&rows, "training ", is_loss);
        assert_eq!(loss.len(), 1);
        assert_eq!(loss[0].name, "training loss");
        assert_eq!(loss[0].points, vec![(1.0, 0.7), (2.0, 0.5)]);
        let quality = series_by_metric(&rows, "", is_quality);
        assert_eq!(quality[0].name, "accuracy");
        assert!(series_by_metric(&[(1.0, None)], "", is_loss).is_empty());
    }

    #[test]
    fn metrics_read_as_text() {
        let m: Metrics = [("accuracy", 0.91234), ("num_samples", 2000.0)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        assert_eq!(metric_text(Some(&m)), "accuracy 0.912, num samples 2000");
        assert_eq!(metric_text(None), "");
    }

    #[test]
    fn numbers_are_shortened() {
        assert_eq!(short_number(3.0), "3");
        assert_eq!(short_number(0.12345), "0.123");
        assert_eq!(short_number(0.5), "0.5");
        assert_eq!(short_number(2000.0), "2000");
        assert_eq!(short_number(1.5), "1.50");
        assert_eq!(short_number(1234.7), "1235");
    }
}
