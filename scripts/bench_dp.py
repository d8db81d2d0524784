"""Accuracy against ε on MNIST-5k with client-level DP (issue 16).

Every participant clips its whole update to L2 norm ``clip`` and adds N(0, (σ·clip)²) to each
coordinate (:class:`flchain.learning.training.DPConfig`), every round; ε is Opacus' RDP
accountant for that many compositions at δ (sampling rate 1: a participant trains every round).
The federation is in memory (flchain.learning.simulation: the real codec and integer FedAvg).

    nice -n 10 .venv/bin/python scripts/bench_dp.py --json benchmarks/results/dp.json \
        --md benchmarks/results/dp.md
"""

from __future__ import annotations

import argparse

import benchkit

from flchain.learning.data import federate, load_mnist5k
from flchain.learning.models import ModelSpec, build_model
from flchain.learning.simulation import SimConfig
from flchain.learning.training import DPConfig, dp_epsilon


def run(args: argparse.Namespace, sigma: float | None) -> dict[str, object]:
    fed = federate(load_mnist5k(), args.clients, "iid", seed=0)
    model = build_model(args.model, fed.test, seed=0)
    spec = ModelSpec.from_model(model, args.model)
    dp = None if sigma is None else DPConfig(args.clip, sigma, args.delta)
    _, measured = benchkit.fedavg_run(
        model, spec, fed, SimConfig(args.rounds, benchkit.train_config(args, dp=dp))
    )
    eps_round = None if sigma is None else dp_epsilon(sigma, 1, args.delta)
    eps_total = None if sigma is None else dp_epsilon(sigma, args.rounds, args.delta)
    return {
        "noise_multiplier": sigma,
        "epsilon_per_round": eps_round,
        "epsilon_cumulative": eps_total,
        **measured,
    }


def main() -> None:
    p = benchkit.bench_parser(__doc__, training={"epochs": 1, "batch_size": 10, "lr": 0.1})
    p.add_argument("--sigmas", default="none,0.3,0.5,1.0,2.0")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--model", default="logreg")
    p.add_argument("--clip", type=float, default=0.5)
    p.add_argument("--delta", type=float, default=1e-5)
    args = benchkit.parse(p)
    rows = []
    for s in args.sigmas.split(","):
        row = run(args, None if s == "none" else float(s))
        benchkit.progress(row, leave_out=["accuracy_per_round"])
        rows.append(row)
    setup = benchkit.setup_of(
        args,
        leave_out=["sigmas"],
        data="MNIST-5k, 4,000 train / 1,000 test, IID",
        rule="fedavg",
        codec="int32 fixed point",
    )
    benchkit.write_results(args, {"setup": setup, "runs": rows}, markdown)


def markdown(out: dict[str, object]) -> str:
    s = out["setup"]
    assert isinstance(s, dict)
    lines = [
        "# Accuracy against ε: client-level DP on MNIST-5k (issue 16)",
        "",
        f"{s['clients']} clients (IID), {s['rounds']} rounds, model {s['model']}, FedAvg, E="
        f"{s['epochs']}, B={s['batch_size']}, lr={s['lr']}; every participant clips its update "
        f"to L2 norm {s['clip']} and adds N(0, (σ·{s['clip']})²) per coordinate every round. "
        f"ε: Opacus RDP accountant at δ={s['delta']}, sampling rate 1 (participant-level "
        "guarantee, local: against everyone who sees the update).",
        "",
        "| σ | ε per round | ε after all rounds | final accuracy | best accuracy |",
        "|---|---|---|---|---|",
    ]
    runs = out["runs"]
    assert isinstance(runs, list)
    for r in runs:
        sigma = "no DP" if r["noise_multiplier"] is None else r["noise_multiplier"]
        e1 = "∞" if r["epsilon_per_round"] is None else f"{r['epsilon_per_round']:.2f}"
        et = "∞" if r["epsilon_cumulative"] is None else f"{r['epsilon_cumulative']:.2f}"
        lines.append(f"| {sigma} | {e1} | {et} | {r['final_accuracy']:.4f} | "
                     f"{r['best_accuracy']:.4f} |")  # fmt: skip
    lines += [
        "",
        "Reproduce: `nice -n 10 .venv/bin/python scripts/bench_dp.py "
        "--json benchmarks/results/dp.json --md benchmarks/results/dp.md`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
