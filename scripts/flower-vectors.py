#!/usr/bin/env python3
"""Reference numbers from Flower's own strategies (issue #17, "Flower-exact strategies").

Runs each of Flower's server strategies (flwr from PyPI, `pip install flwr==1.42.0`) for
three rounds over fixed client updates and writes what it returns, so that the server's
strategies can be checked against it (server/src/strategy/flower_vectors.rs). Rerun after
changing the cases; the output is committed:

    python3 scripts/flower-vectors.py > server/src/strategy/flower_vectors.json
"""

import json
import sys

import numpy as np
import flwr
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import strategy as S

SHAPES = [(3, 2), (2,)]
ROUNDS = 3


def flat(arrays):
    return [float(x) for a in arrays for x in np.asarray(a, dtype=np.float32).ravel()]


def unflat(values):
    out, at = [], 0
    for shape in SHAPES:
        n = int(np.prod(shape))
        out.append(np.asarray(values[at : at + n], dtype=np.float32).reshape(shape))
        at += n
    return out


def run(name, make, clients, seed):
    rng = np.random.default_rng(seed)
    initial = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    strategy = make(initial)
    current = initial
    rounds = []
    for r in range(1, ROUNDS + 1):
        fits = []
        for c in range(clients):
            params = [(x + rng.normal(scale=0.5, size=x.shape)).astype(np.float32) for x in current]
            # One outlier per round for the robust strategies to drop.
            if c == clients - 1:
                params = [x + np.float32(25.0) for x in params]
            fits.append((flat(params), int(rng.integers(5, 50))))
        results = [
            (
                None,
                FitRes(
                    status=Status(code=Code.OK, message=""),
                    parameters=ndarrays_to_parameters(unflat(p)),
                    num_examples=n,
                    metrics={},
                ),
            )
            for p, n in fits
        ]
        aggregated, _ = strategy.aggregate_fit(r, results, [])
        new = parameters_to_ndarrays(aggregated)
        rounds.append(
            {
                "round": r,
                "current": flat(current),
                "fits": [{"params": p, "num_samples": n} for p, n in fits],
                "expected": flat(new),
            }
        )
        current = new
    return {"name": name, "rounds": rounds}


def main():
    init = lambda i: ndarrays_to_parameters(i)  # noqa: E731
    cases = [
        # (our strategy config, Flower's strategy, clients)
        ({"name": "fedavg"}, lambda i: S.FedAvg(), 5),
        ({"name": "fedavgm", "server_lr": 1.0, "server_momentum": 0.9},
         lambda i: S.FedAvgM(initial_parameters=init(i), server_learning_rate=1.0, server_momentum=0.9), 5),
        ({"name": "fedadam"}, lambda i: S.FedAdam(initial_parameters=init(i)), 5),
        ({"name": "fedadam", "eta": 0.05, "beta_1": 0.5, "beta_2": 0.9, "tau": 0.001},
         lambda i: S.FedAdam(initial_parameters=init(i), eta=0.05, beta_1=0.5, beta_2=0.9, tau=0.001), 5),
        ({"name": "fedyogi"}, lambda i: S.FedYogi(initial_parameters=init(i)), 5),
        ({"name": "fedadagrad"}, lambda i: S.FedAdagrad(initial_parameters=init(i)), 5),
        ({"name": "fedmedian"}, lambda i: S.FedMedian(), 6),
        ({"name": "fedtrimmedavg", "beta": 0.2}, lambda i: S.FedTrimmedAvg(beta=0.2), 10),
        ({"name": "fedtrimmedavg", "beta": 0.35}, lambda i: S.FedTrimmedAvg(beta=0.35), 20),
        ({"name": "fedtrimmedavg", "beta": 0.45}, lambda i: S.FedTrimmedAvg(beta=0.45), 40),
        ({"name": "krum", "num_malicious": 1}, lambda i: S.Krum(num_malicious_clients=1), 7),
        ({"name": "krum", "num_malicious": 1, "num_to_keep": 3},
         lambda i: S.Krum(num_malicious_clients=1, num_clients_to_keep=3), 7),
        # Flower's Bulyan passes its extra keyword arguments to Krum, which needs `to_keep`.
        ({"name": "bulyan", "num_malicious": 1}, lambda i: S.Bulyan(num_malicious_clients=1, to_keep=0), 7),
        ({"name": "bulyan", "num_malicious_clients": 2}, lambda i: S.Bulyan(num_malicious_clients=2, to_keep=0), 12),
        ({"name": "fedprox", "proximal_mu": 0.1}, lambda i: S.FedProx(proximal_mu=0.1), 5),
    ]
    out = {"flwr": flwr.__version__, "shapes": SHAPES, "cases": []}
    for seed, (config, make, clients) in enumerate(cases):
        case = run(config["name"], make, clients, seed)
        case["config"] = config
        out["cases"].append(case)
    json.dump(out, sys.stdout, indent=None, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
