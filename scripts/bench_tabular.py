#!/usr/bin/env python
"""The tabular example (examples/tabular: three hospitals, each with its own CSV) measured two
ways: as separate `flchain node run --data` processes on anvil (scripts/launch_federation.py)
and in memory (flchain.learning.simulation.run_federation, same data, model, split and rule).
Prints per-round accuracy on the public test set and wall time; writes
benchmarks/results/tabular.json and tabular.md.

    PYTHONPATH=examples/tabular/model python scripts/bench_tabular.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import tomli_w
import torch

from flchain.config import load_config
from flchain.learning.codec import decode_model
from flchain.learning.data import FederatedData
from flchain.learning.local_data import load_local
from flchain.learning.models import ModelSpec, load_parameters
from flchain.learning.simulation import SimConfig, run_federation
from flchain.learning.training import evaluate
from flchain.ledger.anvil import AnvilProcess
from flchain.ledger.chain import Chain
from flchain.ledger.contracts import RoundExpired, RoundFinalized, TrainingTask
from flchain.protocol.rounds import load_manifest
from flchain.protocol.task import data_spec, task_model, train_config
from flchain.storage import LocalStore
from flchain.types import CID

ROOT = Path(__file__).resolve().parents[1]
TABULAR = ROOT / "examples" / "tabular"
FILES = [TABULAR / f"hospital_{h}.csv" for h in "abc"]


def in_memory(config_path: Path, rounds: int) -> dict[str, object]:
    config = load_config(config_path)
    spec = data_spec(config)
    # each hospital trains on what its node trains on: its file minus the held-out 20%
    clients = tuple(
        load_local(spec, path=f, validation_fraction=config.data.validation_fraction,
                   seed=config.data.seed).train
        for f in FILES
    )  # fmt: skip
    test = load_local(spec, path=TABULAR / "test.csv").train
    model = task_model(config)
    manifest_spec = ModelSpec.from_model(model, config.architecture)
    initial = evaluate(model, test).accuracy
    from flchain.learning.aggregation import aggregator_from_config

    rule = aggregator_from_config(config.aggregation.rule, dict(config.aggregation.params))
    started = time.perf_counter()
    result = run_federation(
        model, manifest_spec, FederatedData(clients, test), rule,
        SimConfig(rounds=rounds, train=train_config(config), seed=config.training.seed),
    )  # fmt: skip
    wall = time.perf_counter() - started
    return {
        "accuracy": [initial] + [r.accuracy for r in result.rounds],
        "round_seconds": [r.train_seconds + r.aggregate_seconds for r in result.rounds],
        "wall_seconds": wall,
    }


def on_chain(config_path: Path, rounds: int, phase: int, block_time: float) -> dict[str, object]:
    raw = tomllib.loads(config_path.read_text())
    raw["ledger"] |= {"rounds": rounds, "commit_blocks": phase, "reveal_blocks": phase,
                      "attest_blocks": phase}  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="flchain-bench-tabular-"))
    (work / "cfg").mkdir()
    cfg = work / "cfg" / "task.toml"
    cfg.write_text(tomli_w.dumps(raw))
    env = os.environ | {"PYTHONPATH": str(TABULAR / "model")}
    with AnvilProcess(accounts=len(FILES) + 1, block_time=block_time) as anvil:
        started = time.perf_counter()
        run = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "launch_federation.py"), "--rpc-url",
             anvil.url, "--config", str(cfg), *[x for f in FILES for x in ("--data", str(f))],
             "--work", str(work / "run"), "--timeout", "900"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - started
        if run.returncode:
            raise SystemExit(f"federation failed:\n{run.stdout}\n{run.stderr}")
        chain = Chain.connect(anvil.url, accounts=[])
        address = next(
            line.split("task ")[1].split(";")[0] for line in run.stdout.splitlines()
            if line.startswith("chain ")
        )  # fmt: skip
        task = TrainingTask(chain, address)
        store = LocalStore(work / "run" / "store")
        manifest = load_manifest(task, store)
        events = task.events(RoundFinalized)
        expired = [e.round for e in task.events(RoundExpired)]
        stamps = [chain.w3.eth.get_block(e.block_number)["timestamp"] for e in events]
        created = chain.w3.eth.get_block(task.round_record(0).commit_end - phase)["timestamp"]
    model = task_model(manifest.config)
    test = load_local(data_spec(manifest.config), path=TABULAR / "test.csv").train
    accuracy = []
    for cid in [task.config().initial_model_cid] + [e.model_cid for e in events]:
        load_parameters(model, decode_model(store.get(CID(cid)), manifest.spec))
        accuracy.append(evaluate(model, test).accuracy)
    starts = [created, *stamps[:-1]]
    return {
        "accuracy": accuracy,
        "round_seconds": [float(b - a) for a, b in zip(starts, stamps, strict=True)],
        "wall_seconds": wall,
        "phase_blocks": phase,
        "block_time": block_time,
        "expired_rounds": expired,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--phase-blocks", type=int, default=10)
    ap.add_argument("--block-time", type=float, default=1.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    config = TABULAR / "task.toml"
    mem = in_memory(config, args.rounds)
    chain = on_chain(config, args.rounds, args.phase_blocks, args.block_time)
    out = {"in_memory": mem, "anvil": chain, "rounds": args.rounds}
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "tabular.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# Tabular example: 3 hospitals, own CSV each (breast cancer, 30 features)",
        "",
        f"anvil: {args.phase_blocks} blocks per phase, {args.block_time:g} s blocks, one "
        "`flchain node run --data` process per hospital plus the keeper; in memory: "
        "`run_federation` on the same training parts, model, rule and local epochs.",
        "",
        "| round | accuracy (anvil) | accuracy (in memory) | round seconds (anvil) "
        "| round seconds (in memory) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in range(args.rounds + 1):
        sec_chain = f"{chain['round_seconds'][r - 1]:.1f}" if r else "-"  # type: ignore[index]
        sec_mem = f"{mem['round_seconds'][r - 1]:.3f}" if r else "-"  # type: ignore[index]
        lines.append(
            f"| {r} | {chain['accuracy'][r]:.4f} | {mem['accuracy'][r]:.4f} "  # type: ignore[index]
            f"| {sec_chain} | {sec_mem} |"
        )
    lines += [
        "",
        f"Wall time: anvil {chain['wall_seconds']:.1f} s (process start, task creation, "
        f"{args.rounds} rounds, claims), in memory {mem['wall_seconds']:.2f} s.",
        f"Expired rounds on anvil: {chain['expired_rounds']} (a round whose commit phase closes "
        "before the node processes are up expires; the anvil round-1 figure counts from the "
        "start of round 0, so it includes that and node start-up).",
    ]
    (results / "tabular.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
