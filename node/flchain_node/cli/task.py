"""``flchain task``: the task owner's commands (create a task, keep its rounds moving)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flchain.config import load_config
from flchain_node.cli.options import (
    ConfirmationsOpt,
    PollOpt,
    SignerOptions,
    StoreOptions,
    TaskOpt,
    TimeoutOpt,
    command_group,
    with_option_groups,
)

app = command_group("Create a training task and keep its rounds moving (the task owner's side).")


@app.command()
@with_option_groups
def create(
    config: Annotated[Path, typer.Argument(help="Task config (TOML); see examples/task.toml.")],
    mint_to: Annotated[
        list[str] | None,
        typer.Option(
            "--mint-to",
            help="Address to receive one minimum stake of the task's token (repeatable; "
            "local chains and studies).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the addresses as JSON.")] = False,
    *,
    signer: SignerOptions,
    where: StoreOptions,
) -> None:
    """Store the manifest and initial model, deploy token, registry and task, fund the pool."""
    from flchain_node.owner import create_task

    task_config = load_config(config)
    owner, chain = signer.connect()
    with where.open() as s:
        created = create_task(chain, owner, task_config, s, mint_to=mint_to or [])
    out = created.deployment.addresses() | {
        "manifest_cid": created.manifest_cid,
        "initial_model_cid": created.initial_model_cid,
    }
    if as_json:
        typer.echo(json.dumps(out))
    else:
        for name, value in out.items():
            typer.echo(f"{name:18} {value}")


@app.command()
@with_option_groups
def keep(
    task: TaskOpt,
    poll: PollOpt = 0.5,
    timeout: TimeoutOpt = None,
    confirmations: ConfirmationsOpt = 0,
    *,
    signer: SignerOptions,
) -> None:
    """Slash non-revealers and settle committees until the task completes (anyone may)."""
    from flchain.ledger.contracts import TrainingTask
    from flchain_node.owner import Keeper
    from flchain_node.runner import run_keeper

    account, chain = signer.connect()
    gas = run_keeper(
        Keeper(TrainingTask(chain, task), account, confirmations), poll=poll, timeout=timeout
    )
    typer.echo(f"task complete; keeper gas: {json.dumps(gas)}")
