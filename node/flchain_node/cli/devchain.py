"""``flchain devchain``: serve the embedded chain over JSON-RPC, like ``anvil``."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated

import typer

from flchain.errors import FLChainError
from flchain.ledger.devchain import EMBEDDED_CHAIN_ID, DevChain


def devchain(
    host: Annotated[str, typer.Option(help="Interface to bind (no authentication!).")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="TCP port (0 picks a free one).")
    ] = 8545,
    accounts: Annotated[
        int, typer.Option(min=1, help="Dev-mnemonic accounts funded at genesis.")
    ] = 20,
    block_time: Annotated[
        float | None,
        typer.Option(help="Mine an empty block every N seconds (default: only on transactions)."),
    ] = None,
) -> None:
    """Serve a local development chain with pre-funded accounts until Ctrl-C."""
    try:
        chain = DevChain(host=host, port=port, num_accounts=accounts, block_time=block_time)
    except FLChainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"FLChain devchain (eth-tester/py-evm), chain id {EMBEDDED_CHAIN_ID}")
    typer.echo("\nAvailable accounts (10000 ETH each)\n===================")
    for i, account in enumerate(chain.accounts):
        typer.echo(f"({i}) {account.address}")
    typer.echo("\nPrivate keys (publicly known: never use them outside this chain)\n============")
    for i, account in enumerate(chain.accounts):
        typer.echo(f"({i}) {account.key.to_0x_hex()}")
    if block_time:
        typer.echo(f"\nMining a block every {block_time:g}s")
    typer.echo(f"\nListening on {chain.url}")
    # Stop on Ctrl-C and on `kill` alike, even when started in the background of a script
    # (a non-interactive shell starts `cmd &` with SIGINT ignored, and Python then leaves it so).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        chain.serve_forever()
    except KeyboardInterrupt:
        typer.echo("\nstopped")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
