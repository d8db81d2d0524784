"""FLChain against Flower: the same federation in Flower's simulation, FLChain's in-memory
simulation and ``flchain demo``, side by side.

The federation: MNIST-5k cut IID into one shard per client (the task's seeded partition), the
task's MLP from its seeded initial weights, FedAvg weighted by sample count, every client trains
every round (E=2, B=16, lr=0.1: the demo's defaults), and the new global model is evaluated on
the test split after each round. Every client trains with FLChain's ``train_local`` and the seed
``training_seed(client_seed(seed, i), round)``, so all three do the same work and their
accuracies can be compared round by round (the demo and the in-memory simulation agree bit for
bit; Flower averages float32 arrays where FLChain averages the exactly quantised updates, so its
models differ in the last bits and its accuracies may drift by a few test images).

Each side runs in a fresh Python process, timed from spawn to exit by this script (whole
process), and reports when each round's evaluated global model was ready:

    flower     Flower 1.x's simulation engine (``flwr.simulation.run_simulation``, Ray backend):
               a ``ServerApp`` running Flower's own ``FedAvg`` strategy (Message API) with a
               centralized ``evaluate_fn``, and a ``ClientApp`` whose ``train`` loads the arrays,
               runs FLChain's training and replies with the new arrays and ``num-examples``.
               ``--flower-cpus`` are the Ray resources per client: Flower's default 2 runs one
               client at a time on this 2-core machine, 1 runs two in parallel. No ledger.
    in-memory  :func:`flchain.learning.simulation.run_federation`: no chain, no store, but the
               codec and exact aggregation.
    demo       ``flchain demo --rule fedavg --attackers 0 --free-riders 0 --dropouts 0``:
               embedded chain, content store, commit/reveal, committee recomputation, rewards
               and final claims, report and plots. Per-round times from its report.json.

``per round`` is the mean wall time between successive evaluated global models after the first
round (start-up and the first round excluded). Ratios are against Flower at the first
``--flower-cpus`` value. ``--repeats`` runs every side of every size again, interleaved, and the
tables show medians: on a shared machine one run each is mostly noise.

    nice -n 10 python scripts/bench_vs_flower.py --sizes 10x5 50x2 100x2 --repeats 3 \\
        --json benchmarks/results/vs_flower.json --md benchmarks/results/vs_flower.md

Needs ``pip install -c constraints.txt -e '.[bench]'`` (Flower with Ray).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIDES = ("flower", "in-memory", "demo")
#: The side ``--baseline`` adds: another checkout's ``flchain demo``, in the same run.
BASELINE = "demo (baseline)"
#: Nothing leaves the machine: Flower's telemetry and Ray's usage stats are on by default and
#: would post to public servers (read at import, so set before flwr or ray is imported; the
#: side processes inherit them), and Ray's local cluster binds 127.0.0.1 only.
OFFLINE = {"FLWR_TELEMETRY_ENABLED": "0", "RAY_USAGE_STATS_ENABLED": "0"}
os.environ.update(OFFLINE)
RAY_INIT = {"_node_ip_address": "127.0.0.1", "include_dashboard": False}


def demo_config(participants: int, rounds: int, seed: int) -> Any:
    """The federation all three sides run: the demo's, with every participant honest."""
    from flchain_node.federation import DemoConfig

    return DemoConfig.honest_fedavg(participants, rounds, seed=seed)


# --- the sides, each run in its own process ----------------------------------------------------


def run_in_memory(participants: int, rounds: int, seed: int) -> dict[str, Any]:
    import torch

    from flchain.learning.aggregation import aggregator_from_config
    from flchain.learning.simulation import SimConfig, run_federation
    from flchain.protocol.task import federated_data, initial_model_and_manifest, train_config

    torch.set_num_threads(1)
    config = demo_config(participants, rounds, seed).task_config()
    model, manifest = initial_model_and_manifest(config)
    fed = federated_data(config.data, participants)
    ends = [time.time()]
    result = run_federation(
        model,
        manifest.spec,
        fed,
        aggregator_from_config("fedavg", {}),
        SimConfig(rounds=rounds, train=train_config(config), seed=config.training.seed),
        on_round=lambda _: ends.append(time.time()),
    )
    return {"accuracies": result.accuracies, "round_ends": ends}


def run_flower(participants: int, rounds: int, seed: int, cpus: float) -> dict[str, Any]:
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    from flchain.learning.training import evaluate
    from flchain.protocol.task import federated_data, initial_model_and_manifest

    torch.set_num_threads(1)
    config = demo_config(participants, rounds, seed).task_config()
    initial, _ = initial_model_and_manifest(config)
    fed = federated_data(config.data, participants)
    ends: list[float] = []
    accuracies: list[float] = []

    client_app = ClientApp()

    @client_app.train()  # type: ignore[misc]
    def train(msg: Message, context: Context) -> Message:
        # Runs in a Ray actor: everything it needs is built there, once per actor process.
        import sys
        import types

        import torch

        from flchain.learning.training import client_seed, train_local, training_seed
        from flchain.protocol.task import federated_data, task_model, train_config

        torch.set_num_threads(1)
        cid = int(context.node_config["partition-id"])
        shards = int(context.node_config["num-partitions"])
        # one data partition and model per actor process, however the app reaches the actor
        cache = sys.modules.setdefault("_flchain_bench_cache", types.ModuleType("cache")).__dict__
        if shards not in cache:
            cache[shards] = (federated_data(config.data, shards), task_model(config))
        data, model = cache[shards]
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        server_round = int(msg.content["config"]["server-round"])
        seed = training_seed(client_seed(config.training.seed, cid), server_round - 1)
        res = train_local(model, data.clients[cid], train_config(config), seed=seed)
        state = {k: v + res.delta[k] for k, v in model.state_dict().items()}
        reply = RecordDict(
            {
                "arrays": ArrayRecord(state),
                "metrics": MetricRecord({"num-examples": res.num_samples}),
            }
        )
        return Message(content=reply, reply_to=msg)

    def central(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        initial.load_state_dict(arrays.to_torch_state_dict())
        ev = evaluate(initial, fed.test)
        ends.append(time.time())
        if server_round > 0:
            accuracies.append(ev.accuracy)
        return MetricRecord({"accuracy": ev.accuracy, "loss": ev.loss})

    server_app = ServerApp()

    @server_app.main()  # type: ignore[misc]
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(
            fraction_train=1.0,
            fraction_evaluate=0.0,  # the global model is evaluated centrally, as in FLChain
            min_train_nodes=participants,
            min_available_nodes=participants,
        )
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(initial.state_dict()),
            num_rounds=rounds,
            train_config=ConfigRecord({}),
            evaluate_fn=central,
        )

    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=participants,
        backend_config={
            "client_resources": {"num_cpus": cpus, "num_gpus": 0.0},
            "init_args": RAY_INIT,
        },
    )
    if len(accuracies) != rounds:
        raise RuntimeError(f"Flower finished {len(accuracies)} of {rounds} rounds")
    # ends[0] is the initial model's evaluation, just before round 1 starts
    return {"accuracies": accuracies, "round_ends": ends}


def demo_command(
    participants: int, rounds: int, seed: int, out: Path, flchain: Path | None = None
) -> list[str]:
    """``flchain demo`` for the all-honest FedAvg federation (``flchain``: the executable,
    this environment's by default)."""
    flchain = flchain or Path(sys.executable).parent / "flchain"
    return [
        str(flchain), "demo", "--participants", str(participants), "--rounds", str(rounds),
        "--rule", "fedavg", "--attackers", "0", "--free-riders", "0", "--dropouts", "0",
        "--seed", str(seed), "--threads", "1", "--out", str(out),
    ]  # fmt: skip


def demo_rounds(out: Path) -> dict[str, Any]:
    report = json.loads((out / "report.json").read_text())
    rows = report["rounds"]
    return {
        "accuracies": [r["accuracy"] for r in rows],
        "round_seconds": [r["seconds"]["wall"] for r in rows],
        "statuses": [r["status"] for r in rows],
        "wall_seconds_in_run": report["wall_seconds"],
    }


# --- the driver --------------------------------------------------------------------------------


def timed(cmd: list[str], log: Path) -> tuple[float, list[tuple[float, str]]]:
    """Run ``cmd`` to completion: its wall time from spawn to exit, and each line it printed
    with the time since spawn it was read (also written to ``log``)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    lines: list[tuple[float, str]] = []
    started = time.perf_counter()
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter() - started, line.rstrip()))
    seconds = time.perf_counter() - started
    log.write_text("".join(f"[{t:8.2f}] {line}\n" for t, line in lines))
    if proc.returncode != 0:
        tail = "\n".join(line for _, line in lines[-15:])
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({proc.returncode}):\n{tail}")
    return seconds, lines


def demo_phases(whole: float, lines: list[tuple[float, str]]) -> dict[str, float]:
    """Where ``flchain demo``'s whole process goes, from when its lines were printed: start-up
    (imports, deployment, registration: until its first line), the rounds (until the last
    round's line), settling the last committees and every participant's claim (until the
    outputs' line), writing the report and plots, exiting."""
    banner = next(t for t, line in lines if line.startswith("FLChain demo"))
    last_round = max(t for t, line in lines if line.startswith("round "))
    wrote = next(t for t, line in lines if line.startswith("wrote "))
    return {
        "start_up": banner,
        "rounds": last_round - banner,
        "settle_and_claims": wrote - last_round,
        "outputs_and_exit": whole - wrote,
    }


def summarise(whole: float, rounds: dict[str, Any]) -> dict[str, Any]:
    if "round_seconds" in rounds:
        per = list(rounds["round_seconds"])
    else:
        ends = rounds["round_ends"]
        per = [b - a for a, b in itertools.pairwise(ends)]
    return {
        "whole_seconds": whole,
        "round_seconds": per,
        "first_round_seconds": per[0],
        "per_round_after_first": statistics.mean(per[1:]) if len(per) > 1 else None,
        "accuracies": rounds["accuracies"],
        **{k: v for k, v in rounds.items() if k in ("statuses", "wall_seconds_in_run")},
    }


def flower_side(cpus: float) -> str:
    return f"Flower, {cpus:g} CPU/client"


def run_size(
    participants: int,
    rounds: int,
    seed: int,
    flower_cpus: list[float],
    work: Path,
    baseline: Path | None = None,
) -> dict[str, Any]:
    """One run of every side on one size, each a fresh process."""
    me = [sys.executable, __file__]
    common = ["--participants", str(participants), "--rounds", str(rounds), "--seed", str(seed)]
    out: dict[str, Any] = {}
    for cpus in flower_cpus:
        path = work / f"flower-{participants}-{cpus}.json"
        cmd = [*me, "--child", "flower", *common, "--flower-cpus", str(cpus), "--out", str(path)]
        whole, _ = timed(cmd, work / f"flower-{participants}-{cpus}.log")
        out[flower_side(cpus)] = summarise(whole, json.loads(path.read_text()))
    path = work / f"memory-{participants}.json"
    whole, _ = timed([*me, "--child", "in-memory", *common, "--out", str(path)],
                     work / f"memory-{participants}.log")  # fmt: skip
    out["in-memory"] = summarise(whole, json.loads(path.read_text()))
    demo_out = work / f"demo-{participants}"
    whole, lines = timed(demo_command(participants, rounds, seed, demo_out),
                         work / f"demo-{participants}.log")  # fmt: skip
    out["demo"] = summarise(whole, demo_rounds(demo_out))
    out["demo"]["phases"] = demo_phases(whole, lines)
    if baseline is not None:  # another checkout's flchain, e.g. before a change
        base_out = work / f"baseline-{participants}"
        whole, lines = timed(demo_command(participants, rounds, seed, base_out, baseline),
                             work / f"baseline-{participants}.log")  # fmt: skip
        out[BASELINE] = summarise(whole, demo_rounds(base_out))
        out[BASELINE]["phases"] = demo_phases(whole, lines)
    print("  " + ", ".join(f"{k}: {v['whole_seconds']:.1f} s" for k, v in out.items()), flush=True)
    return out


def median_of(runs: list[dict[str, Any]], side: str, key: str) -> float:
    return statistics.median(run[side][key] for run in runs)


def markdown(results: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> str:
    """Tables of the medians over the repeats (the spread in brackets)."""
    results = {size: runs for size, runs in results.items() if runs}  # sizes not run yet
    repeats = max(len(runs) for runs in results.values())
    lines = [
        "# FLChain vs Flower: the same federation, side by side",
        "",
        f"MNIST-5k, MLP, IID, FedAvg, every client every round, E={meta['epochs']}, "
        f"B={meta['batch_size']}, lr={meta['lr']}, seed {meta['seed']}; "
        f"flwr {meta['flwr']}, ray {meta['ray']}, torch {meta['torch']}, 1 torch thread per "
        f"process, {meta['cpus']} cores shared with other sessions (load average "
        f"{meta['load_before']} before, {meta['load_after']} after). Each side is a fresh "
        f"process, run up to {repeats}× interleaved (every side of every size, then again); "
        "medians, with min-max in brackets. Raw results: `vs_flower.json`.",
        "",
        "    " + meta["command"],
        "",
    ]
    sides = list(next(iter(results.values()))[0].keys())
    base = sides[0]
    for title, key in (
        ("Whole process (spawn to exit)", "whole_seconds"),
        ("Per round after the first (mean wall time between evaluated global models)",
         "per_round_after_first"),
    ):  # fmt: skip
        lines += [f"## {title}", "", "| clients × rounds | " + " | ".join(sides) + " |",
                  "|---|" + "---:|" * len(sides)]  # fmt: skip
        for size, runs in results.items():
            cells = []
            for side in sides:
                values = [run[side][key] for run in runs]
                v = statistics.median(values)
                cell = f"{v:.2f} s"
                if len(values) > 1:
                    cell += f" [{min(values):.1f}-{max(values):.1f}]"
                if side != base:
                    cell += f" (**{v / median_of(runs, base, key):.2f}×**)"
                cells.append(cell)
            lines.append(f"| {size} | " + " | ".join(cells) + " |")
        lines += ["", f"(×: median relative to {base})", ""]
    lines += ["## Where the demo's whole process goes (medians)", "",
              "| clients × rounds | side | start-up | rounds | settle + claims | outputs + exit |",
              "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for size, runs in results.items():
        for side in (s for s in sides if "phases" in runs[0][s]):
            phases = [run[side]["phases"] for run in runs]
            cells = [f"{statistics.median(p[k] for p in phases):.1f} s" for k in phases[0]]
            lines.append(f"| {size} | {side} | " + " | ".join(cells) + " |")
    header = "| clients × rounds | " + " | ".join(sides) + " |"
    lines += ["", "## First round (includes Flower's Ray actors starting; medians)", "",
              header, "|---|" + "---:|" * len(sides)]  # fmt: skip
    for size, runs in results.items():
        cells = [f"{median_of(runs, side, 'first_round_seconds'):.2f} s" for side in sides]
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    lines += ["", "## Accuracy after each round (first repeat; every repeat is in the JSON)", "",
              "| clients × rounds | side | accuracies |", "|---|---|---|"]  # fmt: skip
    for size, runs in results.items():
        for side, r in runs[0].items():
            accs = ", ".join(f"{a:.4f}" for a in r["accuracies"])
            lines.append(f"| {size} | {side} | {accs} |")
        same = all(run[s]["accuracies"] == runs[0][s]["accuracies"] for run in runs for s in sides)
        if not same:
            lines.append(f"| {size} | (repeats differ: see the JSON) | |")
    lines.append("")
    return "\n".join(lines)


def child(args: argparse.Namespace) -> None:
    if args.child == "flower":
        result = run_flower(args.participants, args.rounds, args.seed, args.flower_cpus[0])
    else:
        result = run_in_memory(args.participants, args.rounds, args.seed)
    Path(args.out).write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["10x5", "50x2", "100x2"],
                        help="clients x rounds")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flower-cpus", type=float, nargs="+", default=[2.0, 1.0],
                        help="Ray CPUs per Flower client; the first is the baseline")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=1, help="runs of every side, interleaved")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--child", choices=SIDES[:2], help=argparse.SUPPRESS)
    parser.add_argument("--participants", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", type=Path, metavar="FLCHAIN",
                        help="another checkout's flchain executable, run as one more demo side "
                        "(e.g. the main branch's, for before/after in one run)")  # fmt: skip
    parser.add_argument("--work-dir", type=Path, metavar="DIR",
                        help="where the sides' scratch files go (the demo's --out: its store, "
                        "report and plots); default: the system's temporary directory (on the "
                        "test machine a file created in a new directory of /tmp cost 0.2-0.9 "
                        "ms, 0.02 ms elsewhere; per_round_profile_session7.md)")  # fmt: skip
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import flwr
    import ray
    import torch

    sizes = []
    for s in args.sizes:
        n, _, r = s.partition("x")
        if not (n.isdigit() and r.isdigit()):
            raise SystemExit(f"--sizes takes CLIENTSxROUNDS, e.g. 10x5, not {s!r}")
        sizes.append((int(n), int(r)))
    cfg = demo_config(2, 1, args.seed).task_config().training
    meta = {
        # as run: the niceness this process has, not the one the docstring suggests
        "command": (f"nice -n {os.nice(0)} " if os.nice(0) else "")
        + "python scripts/bench_vs_flower.py "
        + " ".join(sys.argv[1:]),
        "flwr": flwr.__version__ if hasattr(flwr, "__version__") else "?",
        "ray": ray.__version__,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "seed": args.seed,
        "load_before": round(os.getloadavg()[0], 2),
    }
    results: dict[str, list[dict[str, Any]]] = {f"{n} × {r}": [] for n, r in sizes}

    def write() -> None:
        meta["load_after"] = round(os.getloadavg()[0], 2)
        if args.json:
            args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
        if args.md:
            args.md.write_text(markdown(results, meta))

    with tempfile.TemporaryDirectory(prefix="flchain-vs-flower-", dir=args.work_dir) as tmp:
        for repeat in range(args.repeats):
            for n, r in sizes:
                print(f"repeat {repeat + 1}: {n} clients x {r} rounds", flush=True)
                run = run_size(n, r, args.seed, args.flower_cpus, Path(tmp), args.baseline)
                results[f"{n} × {r}"].append(run)
                write()  # after every size, so an interrupted run keeps what it measured
    print(markdown(results, meta))


if __name__ == "__main__":
    main()
