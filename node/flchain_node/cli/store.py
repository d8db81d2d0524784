"""``flchain store``: add, cat, export and import content, like ``ipfs add -Q`` / ``ipfs cat``;
``gc`` releases what a task no longer needs (policy in :mod:`flchain.storage.retention`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from flchain.errors import FLChainError
from flchain.storage import export_car, import_car
from flchain.storage.retention import DEFAULT_RETENTION, plan
from flchain_node.cli.options import (
    RpcOpt,
    StoreOptions,
    command_group,
    open_chain,
    with_option_groups,
)

app = command_group("Content-addressed storage (IPFS CIDs): embedded store or a Kubo daemon.")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@app.command()
@with_option_groups
def add(
    path: Annotated[Path, typer.Argument(help="File to add ('-' for stdin).")],
    cid_version: Annotated[int, typer.Option("--cid-version", min=0, max=1)] = 0,
    *,
    where: StoreOptions,
) -> None:
    """Store a file and print its CID (only the CID) on stdout."""
    try:
        with where.open(cid_version) as s:
            cid = s.put_stream(sys.stdin.buffer) if str(path) == "-" else s.put_file(path)
    except FLChainError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}") from None
    typer.echo(cid)


@app.command()
@with_option_groups
def cat(
    cid: Annotated[str, typer.Argument(help="CID of the content.")],
    *,
    where: StoreOptions,
) -> None:
    """Write the content named CID to stdout."""
    try:
        with where.open() as s:
            data = s.get(cid)
    except FLChainError as exc:
        raise _fail(str(exc)) from None
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@app.command("export")
@with_option_groups
def export(
    cid: Annotated[str, typer.Argument(help="Root CID of the DAG to export.")],
    out: Annotated[Path, typer.Argument(help="CAR file to write.")],
    *,
    where: StoreOptions,
) -> None:
    """Write the DAG under CID to a CARv1 file (for `ipfs dag import`)."""
    # Write beside OUT and rename: a failed export never leaves half a CAR, nor removes an
    # existing file (it used to unlink OUT on any error, even a mistyped CID).
    partial = out.parent / f".{out.name or 'export'}.partial"  # out may be "" or "/"
    try:
        with where.open() as s:
            export_car(s, cid, partial)
        partial.replace(out)
    except FLChainError as exc:
        partial.unlink(missing_ok=True)
        raise _fail(str(exc)) from None
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise _fail(f"cannot write {out}: {exc.strerror or exc}") from None


@app.command("import")
@with_option_groups
def import_(
    car: Annotated[Path, typer.Argument(help="CARv1 file to read.")],
    *,
    where: StoreOptions,
) -> None:
    """Load a CARv1 file, verifying every block; pin and print its roots."""
    try:
        with where.open() as s:
            roots = import_car(s, car)
    except FLChainError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot read {car}: {exc.strerror or exc}") from None
    for root in roots:
        typer.echo(root)


@app.command()
@with_option_groups
def gc(
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            envvar="FLCHAIN_TASK",
            help="First unpin what this TrainingTask no longer needs (needs --rpc-url).",
        ),
    ] = None,
    retention: Annotated[
        int,
        typer.Option(
            "--retention", min=0, help="Closed rounds whose updates and results stay pinned."
        ),
    ] = DEFAULT_RETENTION,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be unpinned; change nothing.")
    ] = False,
    rpc_url: RpcOpt = None,
    *,
    where: StoreOptions,
) -> None:
    """Remove every block no pin reaches. With --task, first unpin the task's content that is
    past retention: updates of rounds closed more than RETENTION rounds ago, older global
    models, reports and server-optimizer states (the newest, the manifest and the initial model
    are always kept).
    Pins the task never named are left alone."""
    # The protocol layer imports torch (seconds): load it only for --task.
    from flchain.ledger.contracts import TrainingTask
    from flchain.protocol.rounds import named_content

    try:
        with where.open() as s:
            if task:
                rounds, permanent = named_content(TrainingTask(open_chain(rpc_url), task), s)
                decided = plan(s.pins(), rounds, permanent, retention)
                for cid in decided.unpin:
                    typer.echo(f"unpin {cid}")
                    if not dry_run:
                        s.unpin(cid)
                typer.echo(
                    f"{'would unpin' if dry_run else 'unpinned'} {len(decided.unpin)}, "
                    f"kept {len(decided.keep)} pins the task still needs"
                )
            if not dry_run:
                typer.echo(f"removed {s.gc()} unpinned blocks")
    except FLChainError as exc:
        raise _fail(str(exc)) from None
