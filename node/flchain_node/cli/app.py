"""The ``flchain`` command: a thin Typer shell over the library (``flchain``) and the node
(``flchain_node``); imports run one way: library ← node ← CLI."""

from __future__ import annotations

import sys

import typer

from flchain.errors import FLChainError
from flchain_node.cli import node, store, task
from flchain_node.cli.demo import demo
from flchain_node.cli.devchain import devchain

app = typer.Typer(
    help="FLChain: incentivized federated learning on an EVM ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("demo")(demo)
app.command("devchain")(devchain)
app.add_typer(task.app, name="task")
app.add_typer(node.app, name="node")
app.command("status")(node.status)
app.command("claim")(node.claim)
app.add_typer(store.app, name="store")


def main() -> None:
    """Console entry point: project errors become one clear line and exit status 1."""
    try:
        app()
    except FLChainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
