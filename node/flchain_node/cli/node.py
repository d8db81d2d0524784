"""``flchain node run``, ``flchain status`` and ``flchain claim``: a participant's commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flchain.errors import ConfigError
from flchain.ledger.contracts import ParticipantRegistry, TrainingTask
from flchain.storage import open_store
from flchain_node.cli.options import (
    ApiOpt,
    DevAccountOpt,
    KeyFileOpt,
    KeyOpt,
    RpcOpt,
    StoreOpt,
    TaskOpt,
    data_dir,
    open_chain,
    resolve_account,
)

app = typer.Typer(
    help="Run a participant node for one key on one task.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
def run(
    task: TaskOpt,
    shard: Annotated[
        int | None,
        typer.Option(min=0, help="This node's shard of the task's seeded data partition."),
    ] = None,
    shards: Annotated[
        int | None, typer.Option(min=1, help="Number of shards the partition is cut into.")
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
    poll: Annotated[float, typer.Option(min=0.05, help="Seconds between chain polls.")] = 0.5,
    timeout: Annotated[
        float | None, typer.Option(help="Give up after this many seconds (default: never).")
    ] = None,
    confirmations: Annotated[
        int,
        typer.Option(min=0, help="Blocks on top of a commit/reveal before it counts as done."),
    ] = 0,
    threads: Annotated[int, typer.Option(min=1, help="Torch threads for training.")] = 1,
    rpc_url: RpcOpt = None,
    key: KeyOpt = None,
    key_file: KeyFileOpt = None,
    dev_account: DevAccountOpt = None,
    store: StoreOpt = None,
    ipfs_api: ApiOpt = None,
) -> None:
    """Register if needed, then train, commit, reveal, attest (when drawn) every round until
    the task completes, and claim the rewards. Safe to kill and restart at any moment."""
    # The node's modules import torch (seconds): only the commands that run a node load them.
    import torch

    from flchain.protocol.rounds import load_manifest
    from flchain_node.factory import build_participant, shard_trainer, state_file
    from flchain_node.runner import ensure_registered, run_node

    if shard is None or shards is None:
        raise ConfigError(
            "this node needs training data: --shard I --shards N trains on shard I of the "
            "task's seeded partition into N shards"
        )
    if shard >= shards:
        raise ConfigError(f"--shard must be below --shards ({shards}), got {shard}")
    torch.set_num_threads(threads)  # small models: more threads only contend for the cores
    account = resolve_account(key, key_file, dev_account)
    chain = open_chain(rpc_url, account)
    training_task = TrainingTask(chain, task)
    with open_store(store, ipfs_api) as s:
        manifest = load_manifest(training_task, s)
        source = shard_trainer(manifest.config, shard, shards)
        path = state_file(state_dir or data_dir() / "nodes", training_task, account)
        registry = ParticipantRegistry(chain, training_task.registry())
        if ensure_registered(registry, account, stake):
            staked = registry.stake_of(account.address)
            typer.echo(f"registered {account.address} with stake {staked}")
        node = build_participant(
            training_task, s, account, source, state_path=path, manifest=manifest,
            confirmations=confirmations,
        )  # fmt: skip
        typer.echo(
            f"node {account.address} on task {training_task.address}: "
            f"shard {shard}/{shards}, state {path}"
        )
        summary = run_node(node, poll=poll, timeout=timeout, log=typer.echo)
    typer.echo(f"done: {json.dumps(summary.actions)}, gas {summary.gas}, claimed {summary.claimed}")


def status(
    task: TaskOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    rpc_url: RpcOpt = None,
    store: StoreOpt = None,
    ipfs_api: ApiOpt = None,
) -> None:
    """Show a task: round, phase, participants with their stakes, credited and claimed
    rewards (credited amounts need the store that holds the round reports)."""
    from flchain_node.status import task_status

    chain = open_chain(rpc_url)
    with open_store(store, ipfs_api) as s:
        info = task_status(chain, task, s)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    console = Console()
    console.print(
        f"[bold]task[/] {info['task']}  round {info['round']}  phase {info['phase']}  "
        f"finalized {info['finalized_rounds']}/{info['rounds']}  "
        f"pool {info['pool'] / 1e18:g} tokens"
    )
    table = Table("participant", "stake", "active", "credited", "claimed", title="Participants")
    for p in info["participants"]:
        table.add_row(
            p["address"],
            f"{p['stake'] / 1e18:g}",
            "yes" if p["active"] else "no",
            f"{p['credited'] / 1e18:g}",
            f"{p['claimed'] / 1e18:g}",
        )
    console.print(table)


def claim(
    task: TaskOpt,
    rpc_url: RpcOpt = None,
    key: KeyOpt = None,
    key_file: KeyFileOpt = None,
    dev_account: DevAccountOpt = None,
    store: StoreOpt = None,
    ipfs_api: ApiOpt = None,
) -> None:
    """Claim every reward credited to the account so far, in one transaction."""

    from flchain_node.factory import build_participant
    from flchain_node.runner import NoTraining

    account = resolve_account(key, key_file, dev_account)
    chain = open_chain(rpc_url, account)
    with open_store(store, ipfs_api) as s:
        node = build_participant(TrainingTask(chain, task), s, account, NoTraining())
        paid = node.claim()
    typer.echo(f"claimed {paid / 1e18:g} tokens ({paid} base units)" if paid else "nothing owed")
