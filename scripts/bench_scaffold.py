"""SCAFFOLD against FedAvg on MNIST-5k with pathological non-IID data (issue 16): rounds to a
target accuracy in the in-memory federation (real codec, integer FedAvg, the committee's
fixed-point server control variate), with the setup of ``scripts/bench_server_opt.py``
(``benchmarks/results/server_opt.md``). Nothing is tuned: both run the same client SGD.

    nice -n 10 .venv/bin/python scripts/bench_scaffold.py \
        --json benchmarks/results/scaffold.json --md benchmarks/results/scaffold.md
"""

from __future__ import annotations

import argparse
from typing import Any

import benchkit

from flchain.learning.data import FederatedData, federate, load_mnist5k
from flchain.learning.models import ModelSpec, build_model
from flchain.learning.simulation import SimConfig

LABEL = {"fedavg": "FedAvg", "scaffold": "SCAFFOLD"}


def run(args: argparse.Namespace, fed: FederatedData, algorithm: str, seed: int) -> dict[str, Any]:
    model = build_model(args.model, fed.test, seed=0)
    spec = ModelSpec.from_model(model, args.model)
    train = benchkit.train_config(args, scaffold=algorithm == "scaffold")
    sim = SimConfig(args.rounds, train, client_fraction=args.fraction, seed=seed)
    result, measured = benchkit.fedavg_run(model, spec, fed, sim)
    return {
        "algorithm": algorithm,
        "seed": seed,
        **measured,
        "rounds_to_target": result.rounds_to(args.target),
    }


def main() -> None:
    p = benchkit.bench_parser(__doc__, training={"epochs": 5, "batch_size": 10, "lr": 0.05})
    p.add_argument("--algorithms", default="fedavg,scaffold")
    benchkit.federation_options(p, rounds=50, target=0.75)
    p.add_argument("--seeds", default="0,1,2")
    args = benchkit.parse(p)
    fed = federate(load_mnist5k(), args.clients, "shards", seed=0)
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for algorithm in args.algorithms.split(","):  # side by side, seed by seed
            row = run(args, fed, algorithm, seed)
            benchkit.progress(row, leave_out=["accuracy_per_round"])
            runs.append(row)
    data = "MNIST-5k, 4,000 train / 1,000 test; 2 label-sorted shards per client"
    benchkit.write_results(args, {"setup": benchkit.setup_of(args, data=data), "runs": runs},
                           markdown)  # fmt: skip


def markdown(out: dict[str, Any]) -> str:
    s, runs = out["setup"], out["runs"]
    names = list(dict.fromkeys(r["algorithm"] for r in runs))
    seeds = list(dict.fromkeys(r["seed"] for r in runs))
    lines = [
        "# SCAFFOLD vs FedAvg on MNIST-5k, pathological non-IID (issue 16)",
        "",
        benchkit.shards_setup(s) + "; aggregation rule fedavg (exact integer weighted mean of the "
        "joint Δw‖Δc vector); SCAFFOLD Option II with the server variate c ← c + C·Δc in fixed "
        "point, as the committee computes it; global step size 1. Nothing tuned for either. One "
        "partition of the data (seeds change the client draw and local training only).",
        "",
        *benchkit.seed_table(["algorithm"], seeds, s["target"]),
    ]
    for name in names:
        rows = [r for r in runs if r["algorithm"] == name]
        lines.append(benchkit.seed_row([LABEL[name]], rows, seeds))
    lines += ["", "Accuracy every 5 rounds (seed by seed):", ""]
    for r in runs:
        acc = r["accuracy_per_round"]
        lines.append(
            f"- {LABEL[r['algorithm']]}, seed {r['seed']}: "
            + ", ".join(f"{acc[i]:.3f}" for i in range(4, len(acc), 5))
        )
    lines += [
        "",
        "One torch thread, `nice -n 10`, on a shared 2-core machine (the JSON keeps each "
        "run's wall time, which measures the machine's load more than the algorithms: this is "
        "not a speed benchmark).",
        "",
        "Reproduce: `nice -n 10 .venv/bin/python scripts/bench_scaffold.py "
        "--json benchmarks/results/scaffold.json --md benchmarks/results/scaffold.md`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
