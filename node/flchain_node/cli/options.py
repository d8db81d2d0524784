"""Options shared by the commands that talk to a chain and a store, and how they are opened."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from eth_account.signers.local import LocalAccount

from flchain.errors import ConfigError
from flchain.ledger.accounts import DEV_MNEMONIC, load_account
from flchain.ledger.chain import Chain

RpcOpt = Annotated[
    str | None,
    typer.Option(
        "--rpc-url",
        envvar="FLCHAIN_RPC_URL",
        help="JSON-RPC URL of the chain (flchain devchain, anvil, geth, an L2).",
    ),
]
StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        envvar="FLCHAIN_STORE",
        help="Embedded store directory (default: ~/.local/share/flchain/store).",
        show_default=False,
    ),
]
ApiOpt = Annotated[
    str | None,
    typer.Option(
        "--ipfs-api",
        envvar="FLCHAIN_IPFS_API",
        help="Kubo RPC multiaddr (e.g. /ip4/127.0.0.1/tcp/5001); overrides --store.",
    ),
]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="FLCHAIN_KEY",
        help="Hex private key of the account (prefer the FLCHAIN_KEY variable: argv is public).",
        show_default=False,
    ),
]
KeyFileOpt = Annotated[
    Path | None,
    typer.Option("--key-file", help="Encrypted JSON keystore (password from FLCHAIN_PASSWORD)."),
]
DevAccountOpt = Annotated[
    int | None,
    typer.Option(
        "--dev-account",
        min=0,
        help="Use dev-mnemonic account N (pre-funded by anvil and flchain devchain; local only).",
    ),
]
TaskOpt = Annotated[
    str,
    typer.Option("--task", envvar="FLCHAIN_TASK", help="Address of the TrainingTask contract."),
]

PollOpt = Annotated[float, typer.Option(min=0.05, help="Seconds between chain polls.")]
TimeoutOpt = Annotated[
    float | None, typer.Option(help="Give up after this many seconds (default: never).")
]
ConfirmationsOpt = Annotated[
    int,
    typer.Option(
        min=0,
        help="Blocks on top of one's own transaction before its effect counts as done "
        "(until then a reorg that drops it has it sent again).",
    ),
]


def command_group(help: str) -> typer.Typer:
    """A sub-command group (``flchain node``, ``task``, ``store``): help when called bare, and
    plain one-line errors rather than rich tracebacks (see ``app.main``)."""
    return typer.Typer(help=help, no_args_is_help=True, pretty_exceptions_enable=False)


def open_chain(rpc_url: str | None, account: LocalAccount | None = None) -> Chain:
    """The chain at ``rpc_url``; without one there is nothing to connect to: the embedded chain
    lives inside a single process (``flchain demo``)."""
    if not rpc_url:
        raise ConfigError(
            "no chain: pass --rpc-url (or set FLCHAIN_RPC_URL); for a local chain run "
            "`flchain devchain` or anvil in another terminal. The embedded chain only lives "
            "inside one process: `flchain demo` runs a whole federation on it."
        )
    return Chain.connect(rpc_url, accounts=[account] if account else [])


def resolve_account(
    key: str | None, key_file: Path | None, dev_account: int | None
) -> LocalAccount:
    """The account from exactly one of ``--key``/``FLCHAIN_KEY``, ``--key-file``,
    ``--dev-account``."""
    if dev_account is not None:
        if key or key_file:
            raise ConfigError("give one of --key, --key-file, --dev-account")
        return load_account(mnemonic=DEV_MNEMONIC, index=dev_account)
    if not key and not key_file:
        raise ConfigError("no account: pass --key (or FLCHAIN_KEY), --key-file or --dev-account")
    return load_account(key=key, key_file=key_file, password=os.environ.get("FLCHAIN_PASSWORD"))


def data_dir() -> Path:
    """Where node state lives by default (``$XDG_DATA_HOME/flchain``)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "flchain"
