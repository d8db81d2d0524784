"""``flchain node run``, ``flchain status`` and ``flchain claim``: a participant's commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from eth_utils import is_address
from rich.table import Table

from flchain.errors import ConfigError
from flchain.ledger.contracts import ParticipantRegistry, TrainingTask
from flchain_node.cli.options import (
    ConfirmationsOpt,
    PollOpt,
    SignerOptions,
    StoreOptions,
    TaskOpt,
    TimeoutOpt,
    command_group,
    data_dir,
    open_chain,
    open_console,
    with_option_groups,
)

app = command_group("Run a participant node for one key on one task.")


@app.command()
@with_option_groups
def run(
    task: TaskOpt,
    shard: Annotated[
        int | None,
        typer.Option(min=0, help="This node's shard of the task's seeded data partition."),
    ] = None,
    shards: Annotated[
        int | None, typer.Option(min=1, help="Number of shards the partition is cut into.")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="This node's own data: a .npz (x, y), a .csv (features + the task's label "
            "column) or an image folder (one sub-folder per class). It never leaves the node."
        ),
    ] = None,
    data_loader: Annotated[
        str | None,
        typer.Option(help="package.module:function returning (x, y) or a torch Dataset."),
    ] = None,
    flower_client: Annotated[
        str | None,
        typer.Option(
            help="package.module:client_fn of an existing Flower client to train with "
            "(needs flchain[flower]); --data is passed to it as node_config['data-path']."
        ),
    ] = None,
    stake: Annotated[
        int | None,
        typer.Option(help="Stake to register with, in base units (default: the minimum)."),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the node persists salts and pending updates "
            "(default: ~/.local/share/flchain/nodes)."
        ),
    ] = None,
    poll: PollOpt = 0.5,
    timeout: TimeoutOpt = None,
    confirmations: ConfirmationsOpt = 0,
    threads: Annotated[int, typer.Option(min=1, help="Torch threads for training.")] = 1,
    *,
    signer: SignerOptions,
    where: StoreOptions,
) -> None:
    """Register if needed, then train, commit, reveal, attest (when drawn) every round until
    the task completes, and claim the rewards. Safe to kill and restart at any moment."""
    # The node's modules import torch (seconds): only the commands that run a node load them.
    import torch

    from flchain.protocol.rounds import TaskView, load_manifest
    from flchain_node.factory import (
        build_participant,
        flower_trainer,
        private_trainer,
        shard_trainer,
        state_file,
        validate_final,
    )
    from flchain_node.local import LocalMetrics, metrics_file
    from flchain_node.participant import UpdateSource
    from flchain_node.runner import ensure_registered, run_node

    simulated = shard is not None or shards is not None
    own = data is not None or data_loader is not None
    if data is not None and data_loader is not None:
        raise ConfigError("give either --data or --data-loader, not both")
    if flower_client is not None and data_loader is not None:
        raise ConfigError("a Flower client loads its own data: pass it a path with --data")
    if sum([simulated, own and flower_client is None, flower_client is not None]) != 1:
        raise ConfigError(
            "give this node one source of training data: --data PATH or --data-loader "
            "module:function (its own data), --flower-client module:client_fn (a Flower client), "
            "or --shard I --shards N (shard I of the task's seeded partition; simulation)"
        )
    if (shard is None) != (shards is None):
        raise ConfigError("--shard and --shards go together")
    if shard is not None and shards is not None and shard >= shards:
        raise ConfigError(f"--shard must be below --shards ({shards}), got {shard}")
    torch.set_num_threads(threads)  # small models: more threads only contend for the cores
    account, chain = signer.connect()
    training_task = TrainingTask(chain, task)
    with where.open() as s:
        manifest = load_manifest(training_task, s)
        path = state_file(state_dir or data_dir() / "nodes", training_task, account.address)
        metrics = LocalMetrics(metrics_file(path))
        # Every check of the data, the model and the Flower client happens here, before the
        # node stakes: bad input costs nothing.
        if flower_client is not None:
            initial = s.get(TaskView(training_task, s, manifest).global_model_cid(0))
            source: UpdateSource = flower_trainer(
                manifest, flower_client, initial, data=data, metrics=metrics, log=typer.echo
            )
            what = f"Flower client {flower_client}"
        elif shard is not None and shards is not None:
            source = shard_trainer(manifest.config, shard, shards)
            what = f"shard {shard}/{shards}"
        else:
            trainer = private_trainer(
                manifest, account.address, data=data, loader=data_loader, metrics=metrics,
                log=typer.echo,
            )  # fmt: skip
            source = trainer
            held = len(trainer.validation) if trainer.validation is not None else 0
            what = (f"{len(trainer.data)} own samples ({held} more held out for validation), "
                    f"reporting {trainer.num_samples}")  # fmt: skip
        registry = ParticipantRegistry(chain, training_task.registry())
        if ensure_registered(registry, account, stake):
            staked = registry.stake_of(account.address)
            typer.echo(f"registered {account.address} with stake {staked}")
        node = build_participant(
            training_task, s, account, source, state_path=path, manifest=manifest,
            confirmations=confirmations,
        )  # fmt: skip
        typer.echo(f"node {account.address} on task {training_task.address}: {what}, state {path}")
        summary = run_node(node, poll=poll, timeout=timeout, log=typer.echo, metrics=metrics)
        last = node.view.last_report()
        if last is not None:  # how the final global model does on this node's held-out data
            validate_final(source, s.get(last.model_cid), manifest, last.round + 1)
    typer.echo(f"done: {json.dumps(summary.actions)}, gas {summary.gas}, claimed {summary.claimed}")


@with_option_groups
def status(
    task: TaskOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="Show this node's own validation of every global model and its work per round "
            "(from its state directory; needs the node's account) instead of the task.",
        ),
    ] = False,
    state_dir: Annotated[
        Path | None, typer.Option(help="The node's state directory (with --local).")
    ] = None,
    *,
    signer: SignerOptions,
    where: StoreOptions,
) -> None:
    """Show a task: round, phase, participants with their stakes, credited and claimed
    rewards (credited amounts need the store that holds the round reports)."""
    if local:
        _local_status(task, state_dir, signer.account().address, as_json, signer.rpc_url)
        return
    from flchain_node.status import task_status

    with where.open() as s:
        info = task_status(open_chain(signer.rpc_url), task, s)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    console = open_console()
    console.print(
        f"[bold]task[/] {info['task']}  round {info['round']}  phase {info['phase']}  "
        f"finalized {info['finalized_rounds']}/{info['rounds']}  "
        f"pool {info['pool'] / 1e18:g} tokens"
    )
    dp = info.get("dp")
    privacy = ("DP rounds", "ε round", "ε cumulative") if dp else ()
    table = Table("participant", "stake", "active", "credited", "claimed", *privacy,
                  title="Participants")  # fmt: skip
    for p in info["participants"]:
        spent = (str(p["dp_rounds"]), f"{p['epsilon_round']:.3f}", f"{p['epsilon']:.3f}")
        table.add_row(
            p["address"],
            f"{p['stake'] / 1e18:g}",
            "yes" if p["active"] else "no",
            f"{p['credited'] / 1e18:g}",
            f"{p['claimed'] / 1e18:g}",
            *(spent if dp else ()),
        )
    console.print(table)
    if dp:
        typer.echo(f"ε at δ={dp['delta']:g} as the report of round {dp['round']} records it")


def _local_status(
    task: str, state_dir: Path | None, account: str, as_json: bool, rpc_url: str | None
) -> None:
    from dataclasses import asdict

    from eth_utils import to_checksum_address

    from flchain_node.factory import state_file
    from flchain_node.local import metrics_file, read_metrics, read_privacy, read_work
    from flchain_node.metering import WORK

    if not is_address(task):
        raise ConfigError(f"--task is not an address: {task!r}")
    directory = state_dir or data_dir() / "nodes"
    if rpc_url:  # the node's files are keyed by chain (id and genesis), task and account
        path = metrics_file(state_file(directory, TrainingTask(open_chain(rpc_url), task), account))
    else:  # without a chain to ask: the one file of this task and account, whatever chain
        found = sorted(directory.glob(f"*{to_checksum_address(task)}-{account}.metrics.json"))
        if len(found) > 1:
            raise ConfigError(
                f"local metrics of {account} on task {task} for {len(found)} chains in "
                f"{directory}: pass --rpc-url to pick one"
            )
        path = found[0] if found else directory / f"{task}-{account}.metrics.json"
    if not path.exists():
        raise ConfigError(f"no local metrics at {path}: has this node run yet?")
    rows = [asdict(m) for _, m in sorted(read_metrics(path).items())]
    privacy = [asdict(p) for _, p in sorted(read_privacy(path).items())]
    work = [asdict(w) for _, w in sorted(read_work(path).items())]
    if as_json:
        out = {"account": account, "task": task, "rounds": rows}
        if privacy:
            out["privacy"] = privacy
        if work:
            out["work"] = work
        typer.echo(json.dumps(out, indent=2))
        return
    if rows:  # a node with held-out data: how every global model did on it
        table = Table("round", "accuracy", "loss", "held-out samples",
                      title=f"Local validation of {account}")  # fmt: skip
        for r in rows:
            table.add_row(str(r["round"]), f"{r['accuracy']:.4f}", f"{r['loss']:.4f}",
                          str(r["samples"]))  # fmt: skip
        open_console().print(table)
        typer.echo("round r: the global model round r trains from (the last: the final model)")
    if work:
        spent = Table("round", "train s", "store s", "fetch s", "aggregate s", "chain s",
                      "stored bytes", "fetched bytes", title=f"Work of {account}")  # fmt: skip
        for w in work:
            spent.add_row(str(w["round"]), *(f"{w[k]:.2f}" for k in WORK),
                          str(w["store_bytes"]), str(w["fetch_bytes"]))  # fmt: skip
        open_console().print(spent)
    if privacy:  # a DP task: what this participant's updates have cost so far
        spent = Table("round", "ε this round", "ε cumulative", "δ",
                      title=f"Differential privacy spent by {account}")  # fmt: skip
        for p in privacy:
            spent.add_row(str(p["round"]), f"{p['epsilon_round']:.3f}",
                          f"{p['epsilon_total']:.3f}", f"{p['delta']:g}")  # fmt: skip
        open_console().print(spent)


@with_option_groups
def claim(
    task: TaskOpt,
    *,
    signer: SignerOptions,
    where: StoreOptions,
) -> None:
    """Claim every reward credited to the account so far, in one transaction."""

    from flchain_node.factory import build_participant
    from flchain_node.runner import NoTraining

    account, chain = signer.connect()
    with where.open() as s:
        node = build_participant(TrainingTask(chain, task), s, account, NoTraining())
        paid = node.claim()
    typer.echo(f"claimed {paid / 1e18:g} tokens ({paid} base units)" if paid else "nothing owed")
