"""Client sampling on MNIST-5k (issue 16): the FedAvg paper's setup of 100 clients with
C = 0.1 against every client every round, in the in-memory federation (real codec, integer
FedAvg). Clients are drawn as participant nodes draw them (flchain.learning.sampling).

    nice -n 10 .venv/bin/python scripts/bench_sampling.py \
        --json benchmarks/results/sampling.json --md benchmarks/results/sampling.md
"""

from __future__ import annotations

import argparse

import benchkit

from flchain.learning.data import federate, load_mnist5k
from flchain.learning.models import ModelSpec, build_model
from flchain.learning.simulation import SimConfig, sampled_clients


def run(args: argparse.Namespace, partition: str, fraction: float) -> dict[str, object]:
    fed = federate(load_mnist5k(), args.clients, partition, seed=0)
    model = build_model(args.model, fed.test, seed=0)
    spec = ModelSpec.from_model(model, args.model)
    sim = SimConfig(args.rounds, benchkit.train_config(args), client_fraction=fraction)
    drawn = [len(sampled_clients(args.clients, sim, r)) for r in range(1, args.rounds + 1)]
    result, measured = benchkit.fedavg_run(model, spec, fed, sim)
    return {
        "partition": partition,
        "client_fraction": fraction,
        "clients_per_round": drawn,
        "mean_clients_per_round": sum(drawn) / len(drawn),
        **measured,
        "rounds_to_target": result.rounds_to(args.target),
    }


def main() -> None:
    p = benchkit.bench_parser(__doc__, training={"epochs": 5, "batch_size": 10, "lr": 0.05})
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--fractions", default="1.0,0.1")
    p.add_argument("--partitions", default="iid,shards")
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--target", type=float, default=0.85)
    p.add_argument("--model", default="mlp")
    args = benchkit.parse(p)
    rows = []
    for partition in args.partitions.split(","):
        for fraction in map(float, args.fractions.split(",")):
            row = run(args, partition, fraction)
            benchkit.progress(row, leave_out=["accuracy_per_round", "clients_per_round"])
            rows.append(row)
    data = "MNIST-5k, 4,000 train / 1,000 test; shards = 2 label-sorted shards per client"
    benchkit.write_results(
        args, {"setup": benchkit.setup_of(args, data=data), "runs": rows}, markdown
    )


def markdown(out: dict[str, object]) -> str:
    s, runs = out["setup"], out["runs"]
    assert isinstance(s, dict) and isinstance(runs, list)
    lines = [
        "# Client sampling on MNIST-5k (issue 16)",
        "",
        f"{s['clients']} clients, model {s['model']}, FedAvg, E={s['epochs']}, "
        f"B={s['batch_size']}, lr={s['lr']}, {s['rounds']} rounds; each round every client is "
        "drawn with probability C from the public seed (as participant nodes are).",
        "",
        f"| partition | C | mean clients/round (min–max) | rounds to {s['target']:.0%} | "
        "final accuracy |",
        "|---|---|---|---|---|",
    ]
    for r in runs:
        per = r["clients_per_round"]
        lines.append(
            f"| {r['partition']} | {r['client_fraction']} | {r['mean_clients_per_round']:.1f} "
            f"({min(per)}–{max(per)}) | {r['rounds_to_target'] or 'not reached'} | "
            f"{r['final_accuracy']:.4f} |"
        )
    lines += [
        "",
        "Reproduce: `nice -n 10 .venv/bin/python scripts/bench_sampling.py "
        "--json benchmarks/results/sampling.json --md benchmarks/results/sampling.md`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
