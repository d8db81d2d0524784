"""What the benchmark scripts share: their command line, one torch thread, and where results go.

Every ``scripts/bench_*.py`` run writes one JSON document ``{"setup": ..., "runs": [...]}``
(``--json``) and a markdown table made from it (``--md``), and prints one JSON line per run as
it finishes, so a long benchmark shows progress and a killed one still left its lines.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flchain.learning.aggregation import aggregator_from_config
from flchain.learning.data import FederatedData
from flchain.learning.models import ModelSpec
from flchain.learning.simulation import SimConfig, SimResult, run_federation
from flchain.learning.training import TrainConfig

#: Options that say where results go, not how the benchmark ran.
_OUTPUT_OPTIONS = frozenset({"json", "md"})


def bench_parser(
    doc: str | None, *, training: Mapping[str, float | int] | None = None
) -> argparse.ArgumentParser:
    """A parser with ``--json`` and ``--md``, described by ``doc``'s first line; with
    ``training`` (defaults for ``epochs``, ``batch_size``, ``lr``) the local-training options."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    if training is not None:
        p.add_argument("--epochs", type=int, default=int(training.get("epochs", 1)))
        p.add_argument("--batch-size", type=int, default=int(training.get("batch_size", 10)))
        p.add_argument("--lr", type=float, default=float(training.get("lr", 0.05)))
    p.add_argument("--json", type=Path, help="write the runs and their setup here (JSON)")
    p.add_argument("--md", type=Path, help="write the markdown table here")
    return p


def federation_options(p: argparse.ArgumentParser, *, rounds: int, target: float) -> None:
    """The FedAvg paper's federation options: ``--clients`` (100), ``--fraction`` (C = 0.1),
    ``--rounds``, ``--target`` (the accuracy rounds are counted to) and ``--model``."""
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--target", type=float, default=target)
    p.add_argument("--model", default="mlp")


def parse(p: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and pin torch to one thread: runs measured side by side share the machine alike."""
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    return args


def setup_of(args: argparse.Namespace, *, leave_out: Iterable[str] = (), **extra: Any) -> dict:
    """The run's setup for the results: its options (not the output paths) and ``extra``."""
    skip = _OUTPUT_OPTIONS | set(leave_out)
    return {k: v for k, v in vars(args).items() if k not in skip} | extra


def progress(row: Mapping[str, Any], *, leave_out: Iterable[str] = ()) -> None:
    """Print one finished run as a JSON line, without its long per-round lists."""
    skip = set(leave_out)
    print(json.dumps({k: v for k, v in row.items() if k not in skip}), flush=True)


def write_results(
    args: argparse.Namespace, out: Mapping[str, Any], markdown: Callable[[Any], str]
) -> None:
    """Write ``out`` to ``--json`` and its markdown table to ``--md``, where asked."""
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    if args.md:
        args.md.write_text(markdown(out))


def shards_setup(s: Mapping[str, Any]) -> str:
    """The set-up sentence of a pathological non-IID run (``setup_of`` fields)."""
    return (
        f"{s['clients']} clients with 2 label-sorted shards each, C={s['fraction']}, model "
        f"{s['model']}, client SGD E={s['epochs']}, B={s['batch_size']}, lr={s['lr']}, "
        f"{s['rounds']} rounds"
    )


def seed_table(first: list[str], seeds: list[int], target: float) -> list[str]:
    """Header and separator of a table with the columns ``first``, rounds to ``target`` per
    seed, and the mean final and best accuracy (rows: :func:`seed_row`)."""
    head = first + [f"rounds to {target:.0%} (seed {x})" for x in seeds]
    head += ["final accuracy (mean over seeds)", "best accuracy (mean)"]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def seed_row(first: list[str], rows: list[Mapping[str, Any]], seeds: list[int]) -> str:
    """One :func:`seed_table` row from the runs ``rows`` of one variant."""
    cells = [
        str(next((r["rounds_to_target"] for r in rows if r["seed"] == x), "-") or "not reached")
        for x in seeds
    ]
    final = sum(r["final_accuracy"] for r in rows) / len(rows)
    best = sum(r["best_accuracy"] for r in rows) / len(rows)
    return "| " + " | ".join([*first, *cells, f"{final:.4f}", f"{best:.4f}"]) + " |"


def saved_results(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The ``results`` of saved ``--json`` files, in order (for ``--merge``)."""
    results: list[dict[str, Any]] = []
    for path in paths:
        results += json.loads(Path(path).read_text())["results"]
    return results


def train_config(args: argparse.Namespace, **extra: Any) -> TrainConfig:
    """Local training as the command line set it (``bench_parser(training=...)``)."""
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, **extra)


def fedavg_run(
    model: nn.Module, spec: ModelSpec, fed: FederatedData, sim: SimConfig
) -> tuple[SimResult, dict[str, Any]]:
    """One in-memory FedAvg federation, timed; its result and the row fields every
    simulation benchmark reports (accuracies and seconds)."""
    started = time.perf_counter()
    result = run_federation(model, spec, fed, aggregator_from_config("fedavg"), sim)
    acc = result.accuracies
    return result, {
        "final_accuracy": acc[-1],
        "best_accuracy": max(acc),
        "accuracy_per_round": acc,
        "seconds": round(time.perf_counter() - started, 1),
    }
