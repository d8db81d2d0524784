"""Quality bar of issue 4: MNIST-5k, 10 clients, CNN, 20 rounds.

Centralized training on the same 4,000 training images with the same budget (one pass over
all data per round) vs FedAvg on IID and Dirichlet(0.5) partitions, and robust rules with 3 of
10 clients attacking (sign flip ×−4, Gaussian noise). Every update goes through the real codec
and aggregation path (flchain.learning.simulation).

    nice -n 10 .venv/bin/python scripts/bench_accuracy.py [--json out.json] [--quick]
    # or in two processes:  --only clean --json a.json & --only attacks --json b.json; then
    #                       --merge a.json b.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import benchkit
import torch

from flchain.learning.aggregation import aggregator_from_config
from flchain.learning.codec import apply_update, quantize
from flchain.learning.data import TensorData, federate, load_mnist5k
from flchain.learning.models import ModelSpec, build_model
from flchain.learning.simulation import SimConfig, participant_id, run_federation
from flchain.learning.training import TrainConfig, evaluate, train_local

# McMahan et al. 2017, Table 2 (full MNIST, 100 clients, C = 0.1, CNN, rounds to 99%):
PAPER = (
    "FedAvg paper (60k MNIST, 100 clients, C=0.1, to 99%): FedSGD 626 rounds; "
    "FedAvg E=5 B=10: 20 rounds IID, 229 pathological non-IID"
)


@dataclass(frozen=True)
class Run:
    label: str
    partition: str
    rule: str
    params: dict[str, float]
    attack: str | None = None


def runs(n_att: int) -> list[Run]:
    robust = [("median", {}), ("trimmed_mean", {"beta": 0.3}), ("multi_krum", {"f": n_att})]
    out = [
        Run("FedAvg IID", "iid", "fedavg", {}),
        Run("FedAvg Dir(0.5)", "dirichlet", "fedavg", {}),
    ]
    out += [Run(f"{r} IID", "iid", r, p) for r, p in robust]
    for attack in ("sign_flip", "gaussian"):
        for r, p in [("fedavg", {}), *robust]:
            out.append(Run(f"{r} IID +{attack}", "iid", r, p, attack))
    return out


def centralized(
    model_name: str, train: TensorData, test: TensorData, rounds: int, cfg: TrainConfig
) -> list[float]:
    model = build_model(model_name, "mnist", seed=0)
    spec = ModelSpec.from_model(model, model_name)
    accs = []
    for r in range(rounds):
        res = train_local(model, train, cfg, seed=r)
        model.load_state_dict(apply_update(model.state_dict(), quantize(res.delta, spec)))
        accs.append(evaluate(model, test).accuracy)
    return accs


def first_reach(accs: list[float], target: float) -> int | None:
    return next((i + 1 for i, a in enumerate(accs) if a >= target), None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: MLP, 2 rounds")
    ap.add_argument("--json", help="write all results to this file")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)"
    )
    ap.add_argument(
        "--only",
        choices=("clean", "attacks"),
        help="run one half (centralized + clean runs, or the attacked runs) to split the "
        "benchmark over two processes; combine with --merge",
    )
    ap.add_argument(
        "--match", metavar="TEXT", help="only the federated runs whose label contains TEXT"
    )
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="print the table of saved runs")
    args = ap.parse_args(argv)
    if args.merge:
        results = benchkit.saved_results(args.merge)
        results.sort(key=lambda r: r["label"] != "centralized")
        print_table(results, 0.95)
        return 0
    torch.set_num_threads(args.threads)
    model_name, rounds = ("mlp", 2) if args.quick else ("cnn", args.rounds)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr)
    n_clients, n_att, target = 10, 3, 0.95
    data = load_mnist5k()
    feds = {p: federate(data, n_clients, p, alpha=0.5, seed=0) for p in ("iid", "dirichlet")}
    pooled = TensorData(
        torch.cat([c.x for c in feds["iid"].clients]),
        torch.cat([c.y for c in feds["iid"].clients]),
        10,
    )
    print(
        f"MNIST-5k: {len(pooled)} train / {len(feds['iid'].test)} test, {n_clients} clients, "
        f"{model_name}, {rounds} rounds, E={cfg.epochs} B={cfg.batch_size} lr={cfg.lr}",
        file=sys.stderr,
    )
    results = []

    def save() -> None:  # after every run, so a long benchmark never loses finished work
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"config": vars(args), "model": model_name, "results": results}, fh)

    if args.only != "attacks":
        t = time.perf_counter()
        accs = centralized(model_name, pooled, feds["iid"].test, rounds, cfg)
        results.append(
            {"label": "centralized", "accuracy": accs, "seconds": time.perf_counter() - t}
        )
        print(f"centralized done in {results[0]['seconds']:.0f}s", file=sys.stderr)
        save()
    attackers = {participant_id(i) for i in range(n_att)}
    todo = [
        r
        for r in runs(n_att)
        if (args.only is None or (r.attack is None) == (args.only == "clean"))
        and (args.match is None or args.match in r.label)
    ]
    for run in todo:
        model = build_model(model_name, "mnist", seed=0)
        spec = ModelSpec.from_model(model, model_name)
        sim = SimConfig(rounds, cfg, run.attack, n_att if run.attack else 0, seed=0)
        t = time.perf_counter()
        res = run_federation(
            model, spec, feds[run.partition], aggregator_from_config(run.rule, run.params), sim
        )
        share, honest_ok = [], []
        for r in res.rounds:
            total = sum(d.score for d in r.decisions)
            bad = sum(d.score for d in r.decisions if d.participant in attackers)
            share.append(bad / total if total else 0.0)
            honest = [
                d.accepted for d in r.decisions if d.participant not in attackers or not run.attack
            ]
            honest_ok.append(sum(honest) / len(honest))
        results.append(
            {
                "label": run.label,
                "rule": run.rule,
                "params": run.params,
                "attack": run.attack,
                "partition": run.partition,
                "accuracy": res.accuracies,
                "attacker_score_share": sum(share) / len(share) if run.attack else 0.0,
                "honest_accept_rate": sum(honest_ok) / len(honest_ok),
                "train_s_per_round": sum(r.train_seconds for r in res.rounds) / rounds,
                "aggregate_s_per_round": sum(r.aggregate_seconds for r in res.rounds) / rounds,
                "seconds": time.perf_counter() - t,
            }
        )
        print(
            f"{run.label}: {res.accuracies[-1]:.4f} in {results[-1]['seconds']:.0f}s",
            file=sys.stderr,
        )
        save()
    if args.only is None:
        print_table(results, target)
    return 0


def print_table(results: list[dict], target: float) -> None:
    central = results[0]["accuracy"][-1]
    clean = {
        r["rule"]: r["accuracy"][-1]
        for r in results[1:]
        if not r.get("attack") and r.get("partition") == "iid"
    }
    print(
        f"| run | final acc | best | Δ vs centralized | Δ vs clean same rule | "
        f"rounds to {target:.0%} | attackers' score share | honest accepted | agg s/round |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        acc = r["accuracy"]
        reach = first_reach(acc, target)
        vs_clean = (
            f"{(acc[-1] - clean[r['rule']]) * 100:+.1f}"
            if r.get("attack") and r["rule"] in clean
            else ""
        )
        share = f"{r['attacker_score_share']:.1%}" if r.get("attack") else ""
        agg = f"{r['aggregate_s_per_round']:.2f}" if "aggregate_s_per_round" in r else ""
        ok = f"{r['honest_accept_rate']:.0%}" if "honest_accept_rate" in r else ""
        print(
            f"| {r['label']} | {acc[-1]:.2%} | {max(acc):.2%} | "
            f"{(acc[-1] - central) * 100:+.1f} | {vs_clean} | {reach or '—'} | {share} | "
            f"{ok} | {agg} |"
        )
    print(f"\nContext — {PAPER}.")


if __name__ == "__main__":
    raise SystemExit(main())
