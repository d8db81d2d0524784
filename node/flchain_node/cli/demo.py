"""``flchain demo``: a whole incentivized federation on the embedded chain and store."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flchain.config import ALGORITHMS, DATASETS, MODELS, PARTITIONS, SERVER_OPTIMIZERS
from flchain_node.cli.options import open_console

# Choices built from the config's own lists (typer shows and checks an Enum's values; the
# built-in data sets exclude "custom", a participant's own data).
Dataset = StrEnum("Dataset", [(d, d) for d in DATASETS if d != "custom"])
Model = StrEnum("Model", [(m, m) for m in MODELS])
Partition = StrEnum("Partition", [(p, p) for p in PARTITIONS])
ServerOptimizerName = StrEnum("ServerOptimizerName", [(o, o) for o in SERVER_OPTIMIZERS])
Algorithm = StrEnum("Algorithm", [(a, a) for a in ALGORITHMS])
MNIST, MLP, IID = Dataset("mnist"), Model("mlp"), Partition("iid")
FEDAVG = Algorithm("fedavg")
NO_SERVER_OPTIMIZER = ServerOptimizerName("none")


def demo(
    participants: Annotated[int, typer.Option(min=2, help="Participants (one key each).")] = 10,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds to finalize.")] = 5,
    rule: Annotated[
        str | None,
        typer.Option(
            help="Aggregation rule, by its task-config name (a wrong one lists all). Default: "
            "fltrust, which scores updates against the owner's own reference update (the demo "
            "runs that node too; benchmarks/results/attack_suite_v4.md); centered_clip with "
            "--algorithm scaffold, which fltrust does not support.",
            show_default=False,
        ),
    ] = None,
    attackers: Annotated[int, typer.Option(min=0, help="Poisoning participants.")] = 2,
    attack: Annotated[
        str,
        typer.Option(
            help="What attackers send, e.g. sign-flip, alie (A Little Is Enough), ipm "
            "(inner-product manipulation); a wrong name lists all."
        ),
    ] = "sign-flip",
    free_riders: Annotated[
        int, typer.Option(min=0, help="Participants that send the global model back.")
    ] = 1,
    dropouts: Annotated[int, typer.Option(min=0, help="Participants that never reveal.")] = 1,
    dataset: Annotated[Dataset, typer.Option(help="Built-in data set.")] = MNIST,
    model: Annotated[Model, typer.Option(help="The task's model.")] = MLP,
    partition: Annotated[Partition, typer.Option(help="How shards are cut.")] = IID,
    algorithm: Annotated[
        Algorithm,
        typer.Option(help="Local training: fedavg, fedprox or scaffold (control variates)."),
    ] = FEDAVG,
    server_optimizer: Annotated[
        ServerOptimizerName,
        typer.Option(help="How the committee turns the aggregate into the global step."),
    ] = NO_SERVER_OPTIMIZER,
    server_lr: Annotated[
        float | None,
        typer.Option(
            min=0.0, help="Server learning rate (default: one that suits --server-optimizer)."
        ),
    ] = None,
    validation_per_class: Annotated[
        int,
        typer.Option(
            min=0,
            help="Public validation samples per class (0: none); centered_clip then pays less "
            "to updates that raise their loss (MLP and logreg).",
        ),
    ] = 0,
    root_per_class: Annotated[
        int,
        typer.Option(
            min=1,
            help="fltrust: the owner's root data set, held-out samples per class; the owner "
            "runs one more node on it, whose update is the reference (it earns nothing).",
        ),
    ] = 10,
    seed: Annotated[int, typer.Option(help="Seed for data, models and training.")] = 0,
    threads: Annotated[int, typer.Option(min=1, help="Torch threads for training.")] = 1,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            show_default="one per core with --threads 1, else 0",
            help="Processes that train (and encode) honest participants' updates ahead of "
            "their steps, beside the chain's (0: each trains in its own step). The updates are "
            "the same either way; with cores to spare the rounds after the first are shorter. "
            "Needs --threads 1.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("flchain-out"),
) -> None:
    """Run a federation (participants, attackers, free-riders, dropouts) on the embedded
    chain and store; print a table per round and write report.json, CSVs and plots."""
    import torch

    from flchain.learning.server_opt import SUGGESTED_LR
    from flchain_node.federation import TOKEN, DemoConfig, Federation, RoundRow
    from flchain_node.outputs import write_outputs

    torch.set_num_threads(threads)  # small models: more threads only contend for the cores
    if rule is None:
        rule = "centered_clip" if algorithm.value == "scaffold" else "fltrust"
    params = rule_params(rule, attackers, participants - free_riders - dropouts)
    config = DemoConfig(
        participants=participants,
        rounds=rounds,
        rule=rule,
        rule_params=params,
        attackers=attackers,
        attack=attack.replace("-", "_"),
        free_riders=free_riders,
        dropouts=dropouts,
        dataset=dataset.value,
        model=model.value,
        partition=partition.value,
        seed=seed,
        server_optimizer=server_optimizer.value,
        server_lr=SUGGESTED_LR[server_optimizer.value] if server_lr is None else server_lr,
        algorithm=algorithm.value,
        validation_per_class=validation_per_class,
        root_per_class=root_per_class,
        workers=default_workers(threads) if workers is None else workers,
    )
    console = open_console()
    with console.status("deploying contracts and registering participants..."):
        fed = Federation(config, work_dir=out / "work")
    roles = fed.role_of
    console.print(
        f"[bold]FLChain demo[/]: {participants} participants "
        f"({attackers} {attack}, {free_riders} free-rider, {dropouts} dropout), rule {rule}, "
        f"{dataset.value}/{model.value}, {algorithm.value}"
        + (
            f", server optimizer {server_optimizer.value} (lr {config.server_lr:g})"
            if server_optimizer.value != "none"
            else ""
        )
        + f"; task {fed.deployment.task.address}"
    )
    table = Table(
        "round",
        "status",
        "accuracy",
        "accepted",
        "rejected",
        "rewards",
        "slashed",
        "gas",
        "seconds",
        title="Rounds",
    )

    def show(row: RoundRow) -> None:
        bad = sorted({roles[w] for w in row.rejected})
        table.add_row(
            str(row.round),
            row.status,
            f"{row.accuracy:.3f}" if row.accuracy is not None else "-",
            str(len(row.accepted)),
            f"{len(row.rejected)} ({', '.join(bad)})" if bad else "0",
            f"{sum(row.rewards.values()) / TOKEN:.1f}",
            f"{sum(row.slashes.values()) / TOKEN:.1f}",
            f"{sum(row.gas.values()) / 1e6:.2f}M",
            f"{row.seconds.get('wall', 0):.1f}",
        )
        console.print(
            f"round {row.round}: {row.status}"
            + (f", accuracy {row.accuracy:.3f}" if row.accuracy is not None else "")
        )

    try:
        result = fed.run(on_round=show)
    finally:
        fed.close()
    console.print(table)
    summary = Table(
        "role", "participants", "rewards (tokens)", "slashed (tokens)", title="Who earned what"
    )
    for role in ("honest", "attacker", "free_rider", "dropout", "reference"):
        members = [w for w, r in result.roles.items() if r == role]
        if not members:
            continue
        earned = sum(r.rewards.get(w, 0) for r in result.rounds for w in members) / TOKEN
        slashed = sum(r.slashes.get(w, 0) for r in result.rounds for w in members) / TOKEN
        summary.add_row(role, str(len(members)), f"{earned:.1f}", f"{slashed:.1f}")
    console.print(summary)
    files = write_outputs(result, out)
    console.print(f"wrote {', '.join(str(f) for f in files)} in {result.wall_seconds:.0f}s")


#: ``fltrust``'s options in the demo: pay and weigh each update by the share of it on weights
#: the owner's reference update moves, and leave the others unmoved (a backdoor's trigger on
#: pixels the root set never inks; ``benchmarks/results/attack_suite_v8.md``); and pay and weigh
#: less an update with an unusual share where that update is small (a trigger on inked pixels,
#: the CNN's backdoor; ``benchmarks/results/attack_suite_v9.md``); and pay less an update
#: whose signed mass sits far below the round's (ALIE's shift: 0.79x -> 0.14x an honest share at
#: 20% Dirichlet, least-paid honest 0.67x -> 0.63x; ``benchmarks/results/attack_suite_v10.md``);
#: and pay less an update whose own part does not persist from round to round (crafted from the
#: round's statistics plus fresh noise: ``benchmarks/results/attack_suite_v11.md``).
FLTRUST_DEFAULT: dict[str, float] = {"support": 2, "mask": 1, "quiet": 2, "lean": 2, "persist": 2}


def rule_params(rule: str, attackers: int, updates: int) -> dict[str, float]:
    """Parameters that let ``rule`` withstand ``attackers`` among ``updates`` valid updates:
    Krum-family rules are told ``f``; trimmed mean trims at least ``attackers`` per side;
    ``fltrust`` gets :data:`FLTRUST_DEFAULT`."""
    if rule == "fltrust":
        return dict(FLTRUST_DEFAULT)
    if rule in ("krum", "multi_krum", "bulyan"):
        return {"f": attackers}
    if rule == "trimmed_mean":
        return {"beta": min(0.45, max(0.1, (attackers + 0.5) / max(updates, 1)))}
    if rule == "norm_bounded_mean":
        return {"bound": 5.0}
    return {}


def default_workers(threads: int) -> int:
    """``--workers`` when not given: one per core, as Flower's simulation spreads its clients
    (with one worker on two cores the chain's process still waited ~0.35-0.45 s a round for
    training at 10 and 100 participants; the workers and the chain share the cores the rest of
    the time). Zero with more than one torch thread: workers are forked, and torch's OpenMP
    threads do not survive a fork (see :mod:`flchain_node.pool`)."""
    return len(os.sched_getaffinity(0)) if threads == 1 else 0
