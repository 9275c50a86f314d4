#!/usr/bin/env python3
"""Reference numbers for the drift statistics (issue #18), from scipy and numpy.

`models/src/drift/stattests.rs` re-implements scipy's and Evidently's drift statistics on
weighted points (the buckets of a value sketch) and category counts. This script computes the
same statistics with scipy/numpy on fixed inputs (small and larger, ties, weighted points, a
new category, a shifted normal sample drawn with a fixed seed and written out with its
results) and writes them to `models/src/drift/vectors.json`, which the Rust unit tests
(`models/src/drift/tests.rs`) read and compare against. The output is committed; rerun after
changing the cases:

    python3 scripts/drift-vectors.py            # writes models/src/drift/vectors.json
    python3 scripts/drift-vectors.py out.json   # or elsewhere

Without numpy/scipy importable, the script makes a venv at ~/.cache/b3o/drift-venv, installs
the pinned versions of scripts/drift-requirements.txt (numpy 2.4.6, scipy 1.17.1) and reruns
itself there.

Evidently (`evidently/legacy/calculations/stattests/`) is not installed (it pulls in pandas,
plotly and more); its few formulas are written out below with numpy, each next to the
Evidently function it follows:
- `get_binned_data`: Sturges edges (`np.histogram_bin_edges(concat, "sturges")`) when the
  reference has more than 20 distinct values, else shares per distinct value; zero shares
  filled with 0.0001 (or min/1e6 when the smallest share is at most 0.0001) for PSI;
- `_psi`: sum((r - c) * ln(r / c));
- `_wasserstein_distance_norm`: wasserstein_distance / max(np.std(reference), 0.001);
- `_chi_stat_test`: chisquare(f_obs, f_exp = ref * n_cur / n_ref);
- `_z_stat_test`: two-proportion z of "not the first (sorted) category";
- `_jensenshannon`: scipy's `distance.jensenshannon` on the raw shares.

Two deliberate choices, matched by the Rust side:
- KS p-value: Kolmogorov's limiting distribution `kstwobign.sf(sqrt(en) * D)`,
  en = n m / (n + m). scipy's `ks_2samp` itself uses the exact distribution for small samples
  (and `kstwo.sf(D, round(en))` for method="asymp"); D is scipy's statistic.
- z-test p-value: written as `2 * norm.sf(|z|)`, equal to Evidently's `2 * (1 - norm.cdf(|z|))`
  but without its cancellation in the tail (that one is also written, as
  `evidently_p_value`).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path.home() / ".cache" / "b3o" / "drift-venv"
REQUIREMENTS = ROOT / "scripts" / "drift-requirements.txt"

try:
    import numpy as np
    from scipy import stats
    from scipy.spatial import distance
except ImportError:
    if os.environ.get("B3O_DRIFT_VENV"):
        raise
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
    os.environ["B3O_DRIFT_VENV"] = "1"
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])

SEED = 18


def expand(points):
    """The repeated values of integer-weighted points: the sample a weighted case stands for."""
    values = np.array([p[0] for p in points], dtype=np.float64)
    weights = np.array([p[1] for p in points])
    return np.repeat(values, weights.astype(np.int64))


def integer_weights(points):
    return all(float(w).is_integer() for _, w in points)


def weighted_std(points):
    values = np.array([p[0] for p in points], dtype=np.float64)
    weights = np.array([p[1] for p in points], dtype=np.float64)
    mean = np.average(values, weights=weights)
    return float(np.sqrt(np.average((values - mean) ** 2, weights=weights)))


def evidently_fill(shares):
    """Evidently's `get_binned_data(..., feel_zeroes=True)` zero filling."""
    shares = shares.copy()
    smallest = min(shares[shares != 0])
    np.place(shares, shares == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return shares


def evidently_binned(ref, cur, numeric):
    """Evidently's `get_binned_data` before the zero filling: (edges, values, ref, cur)."""
    if numeric and len(np.unique(ref)) > 20:
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        r = np.histogram(ref, edges)[0] / len(ref)
        c = np.histogram(cur, edges)[0] / len(cur)
        return edges, np.array([]), r, c
    keys = np.array(sorted(set(ref.tolist()) | set(cur.tolist())), dtype=np.float64)
    r = np.array([np.sum(ref == k) for k in keys]) / len(ref)
    c = np.array([np.sum(cur == k) for k in keys]) / len(cur)
    return np.array([]), keys, r, c


def evidently_psi(r, c):
    r, c = evidently_fill(r), evidently_fill(c)
    return float(np.sum((r - c) * np.log(r / c)))


def floats(xs):
    return [float(x) for x in xs]


def numeric_case(name, distributions, ref_name, cur_name):
    ref_points, cur_points = distributions[ref_name], distributions[cur_name]
    case = {"name": name, "reference": ref_name, "current": cur_name}
    u = np.array([p[0] for p in ref_points], dtype=np.float64)
    uw = np.array([p[1] for p in ref_points], dtype=np.float64)
    v = np.array([p[0] for p in cur_points], dtype=np.float64)
    vw = np.array([p[1] for p in cur_points], dtype=np.float64)
    w = float(stats.wasserstein_distance(u, v, uw, vw))
    case["wasserstein"] = w
    case["wasserstein_normed"] = w / max(weighted_std(ref_points), 0.001)
    if integer_weights(ref_points) and integer_weights(cur_points):
        ref, cur = expand(ref_points), expand(cur_points)
        ks = stats.ks_2samp(ref, cur, method="asymp")
        n, m = float(len(ref)), float(len(cur))
        en = n * m / (n + m)
        d = float(ks.statistic)
        case["ks"] = {
            "statistic": d,
            "p_value": float(stats.kstwobign.sf(np.sqrt(en) * d)),
        }
        edges, values, r, c = evidently_binned(ref, cur, numeric=True)
        case["psi_bins"] = {
            "edges": floats(edges),
            "values": floats(values),
            "reference": floats(r),
            "current": floats(c),
        }
        case["psi"] = evidently_psi(r, c)
    return case


def categorical_case(name, reference, current):
    """Aligned counts over sorted category keys (index i is one category on both sides)."""
    ref = np.array(reference, dtype=np.float64)
    cur = np.array(current, dtype=np.float64)
    case = {"name": name, "reference": floats(ref), "current": floats(cur)}
    seen = (ref > 0) | (cur > 0)
    r, c = ref[seen], cur[seen]
    f_exp = r * (c.sum() / r.sum())
    if len(r) >= 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            chi = stats.chisquare(c, f_exp)
        statistic = float(chi.statistic)
    if len(r) >= 2:
        case["chi_square"] = {
            # JSON has no infinity: null stands for it (a category new in the current data).
            "statistic": statistic if np.isfinite(statistic) else None,
            "p_value": float(chi.pvalue),
        }
    if len(r) <= 2:
        case["z_test"] = z_test(r, c)
    # Evidently's keys are the categories seen on either side (`seen`).
    case["jensen_shannon"] = float(distance.jensenshannon(r / r.sum(), c / c.sum()))
    case["psi"] = evidently_psi(r / r.sum(), c / c.sum())
    return case


def z_test(r, c):
    """Evidently's `_z_stat_test` on the counts of the sorted categories `r`, `c`."""
    if len(r) == 1:
        # One and the same value on both sides.
        return {"statistic": 0.0, "p_value": 1.0, "evidently_p_value": 1.0}
    n1, n2 = r.sum(), c.sum()
    # Indicator "not the first category": 0 for keys[0], 1 otherwise.
    p1 = float(n1 - r[0]) / n1
    p2 = float(n2 - c[0]) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return {
        "statistic": float(z),
        "p_value": float(2 * stats.norm.sf(np.abs(z))),
        "evidently_p_value": float(2 * (1 - stats.norm.cdf(np.abs(z)))),
    }


def points_of(sample):
    values, counts = np.unique(sample, return_counts=True)
    return [[float(v), int(n)] for v, n in zip(values, counts)]


def distributions():
    rng = np.random.default_rng(SEED)
    normal_ref = rng.normal(0.0, 1.0, 400).round(6)
    normal_same = rng.normal(0.0, 1.0, 300).round(6)
    normal_shifted = rng.normal(0.5, 1.2, 300).round(6)
    poisson_ref = rng.poisson(20.0, 5000).astype(np.float64)
    poisson_cur = rng.poisson(23.0, 3000).astype(np.float64)
    # 1024 values from 0 to 49: log2(n) + 1 = 11 exactly, yet numpy's ceil(ptp / width) is
    # 12 bins (49 / (49 / 11) = 11.000000000000002).
    boundary_ref = (np.arange(512) % 50).astype(np.float64)
    boundary_cur = (np.arange(512) % 17 + 3).astype(np.float64)
    return {
        "small_a": [[1.0, 1], [2.0, 1], [3.0, 1], [4.0, 1], [5.0, 1]],
        "small_b": [[2.5, 1], [3.5, 1], [6.0, 1], [7.0, 1]],
        "ties_a": [[1.0, 2], [2.0, 3], [3.0, 1]],
        "ties_b": [[1.0, 1], [2.0, 1], [3.0, 4]],
        "low": [[-3.0, 4], [-1.5, 2], [0.0, 5]],
        "high": [[10.0, 3], [12.5, 1]],
        "constant": [[2.0, 7]],
        "fractional_a": [[0.0, 0.5], [1.0, 1.5], [3.0, 2.0]],
        "fractional_b": [[0.5, 1.0], [2.0, 1.0], [4.0, 0.25], [5.0, 3.0]],
        # A value 20000 times, another once: a reference share below 0.0001.
        "tiny_share_ref": [[0.0, 20000], [1.0, 1]],
        "tiny_share_cur": [[0.0, 50], [1.0, 30], [2.0, 20]],
        "normal_ref": points_of(normal_ref),
        "normal_same": points_of(normal_same),
        "normal_shifted": points_of(normal_shifted),
        "poisson_ref": points_of(poisson_ref),
        "poisson_cur": points_of(poisson_cur),
        "boundary_ref": points_of(boundary_ref),
        "boundary_cur": points_of(boundary_cur),
    }


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "models/src/drift/vectors.json"
    dists = distributions()
    numeric = [
        ("small", "small_a", "small_b"),
        ("ties", "ties_a", "ties_b"),
        ("identical", "ties_a", "ties_a"),
        ("disjoint", "low", "high"),
        ("constant_reference", "constant", "small_a"),
        ("fractional_weights", "fractional_a", "fractional_b"),
        ("tiny_share", "tiny_share_ref", "tiny_share_cur"),
        ("normal_same", "normal_ref", "normal_same"),
        ("normal_shifted", "normal_ref", "normal_shifted"),
        ("poisson_weighted", "poisson_ref", "poisson_cur"),
        ("sturges_boundary", "boundary_ref", "boundary_cur"),
    ]
    rng = np.random.default_rng(SEED + 1)
    many_ref = rng.integers(20, 200, 40)
    many_cur = (many_ref * np.linspace(0.7, 1.4, 40)).round()
    many_weak = many_ref + rng.integers(-8, 9, 40)
    categorical = [
        ("no_drift", [50, 30, 20], [48, 33, 19]),
        ("drift", [50, 30, 20], [20, 30, 50]),
        ("new_category", [50, 30, 20, 0], [45, 30, 20, 5]),
        ("vanished_category", [50, 30, 20, 10], [60, 30, 20, 0]),
        ("many_categories_tiny_p", many_ref.tolist(), many_cur.tolist()),
        ("many_categories_weak", many_ref.tolist(), many_weak.tolist()),
        ("two_close", [60, 40], [55, 45]),
        ("two_far", [60, 40], [20, 80]),
        ("two_extreme", [900, 100], [100, 900]),
        ("one_value_both", [100, 0], [50, 0]),
        ("one_value_reference", [100, 0], [40, 10]),
        ("two_unnormalised", [7, 3], [1, 1]),
    ]
    vectors = {
        "generator": (
            f"scripts/drift-vectors.py: numpy {np.__version__}, "
            f"scipy {__import__('scipy').__version__}, seed {SEED}"
        ),
        "distributions": dists,
        "numeric": [numeric_case(n, dists, r, c) for n, r, c in numeric],
        "categorical": [categorical_case(n, r, c) for n, r, c in categorical],
        "kolmogorov": [
            {"x": x, "sf": float(stats.kstwobign.sf(x))}
            for x in [0.05, 0.2, 0.5, 0.8, 0.99, 1.0, 1.01, 1.5, 2.5, 4.0, 6.0]
        ],
        "chi2_sf": [
            {"x": x, "df": df, "sf": float(stats.chi2.sf(x, df))}
            for x, df in [
                (0.5, 1), (3.0, 2), (10.0, 3), (100.0, 10), (50.0, 80),
                (300.0, 100), (1000.0, 20), (0.01, 5), (39.0, 39),
            ]
        ],
    }
    text = json.dumps(vectors, indent=None, separators=(",", ":"))
    out.write_text(text + "\n")
    print(f"wrote {out} ({len(text)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
