"""Options shared by the commands that talk to a chain and a store, and how they are opened."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer
from eth_account.signers.local import LocalAccount
from rich.console import Console

from flchain.errors import ConfigError
from flchain.ledger.accounts import DEV_MNEMONIC, load_account
from flchain.ledger.chain import Chain
from flchain.storage import ContentStore, open_store

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


@dataclass(frozen=True)
class SignerOptions:
    """``--rpc-url`` and exactly one of ``--key``, ``--key-file``, ``--dev-account``: the chain
    a command talks to and the account that signs its transactions."""

    rpc_url: RpcOpt = None
    key: KeyOpt = None
    key_file: KeyFileOpt = None
    dev_account: DevAccountOpt = None

    def account(self) -> LocalAccount:
        return resolve_account(self.key, self.key_file, self.dev_account)

    def connect(self) -> tuple[LocalAccount, Chain]:
        """The signing account, and the chain with that account attached."""
        account = self.account()
        return account, open_chain(self.rpc_url, account)


@dataclass(frozen=True)
class StoreOptions:
    """``--store`` or ``--ipfs-api``: the embedded store or a Kubo daemon."""

    store: StoreOpt = None
    ipfs_api: ApiOpt = None

    def open(self, cid_version: int = 0) -> ContentStore:
        return open_store(self.store, self.ipfs_api, cid_version=cid_version)


OPTION_GROUPS = (SignerOptions, StoreOptions)


def with_option_groups(command: Callable[..., Any]) -> Callable[..., Any]:
    """Let ``command`` take whole option groups (:data:`OPTION_GROUPS`) as parameters.

    Typer reads one option per parameter and has no groups; so this hands Typer a signature
    in which each group parameter is replaced by the group's fields, and gathers those back
    into the group before calling ``command``. (Click's option decorators, as ape uses them,
    do the same for a plain click command.)"""
    hints = get_type_hints(command, include_extras=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, type] = {}
    for name, param in inspect.signature(command).parameters.items():
        hint = hints.get(name, param.annotation)
        if hint in OPTION_GROUPS:
            groups[name] = hint
            fields = get_type_hints(hint, include_extras=True)
            params += [
                inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                  annotation=fields[f.name])
                for f in dataclasses.fields(hint)
            ]  # fmt: skip
        else:
            params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hint))

    @functools.wraps(command)
    def run(**options: Any) -> Any:
        for name, group in groups.items():
            fields = [f.name for f in dataclasses.fields(group)]
            options[name] = group(**{field: options.pop(field) for field in fields})
        return command(**options)

    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run


def command_group(help: str) -> typer.Typer:
    """A sub-command group (``flchain node``, ``task``, ``store``): help when called bare, and
    plain one-line errors rather than rich tracebacks (see ``app.main``)."""
    return typer.Typer(help=help, no_args_is_help=True, pretty_exceptions_enable=False)


#: The width of tables written to a file or a pipe (a CI log, `flchain demo > log`): rich gives
#: such output 80 columns, which squeezes the demo's nine-column round table into cells like
#: "final…". ``COLUMNS`` still wins.
PIPED_WIDTH = 132


def open_console() -> Console:
    """The console the commands print tables to: the terminal's width, or
    :data:`PIPED_WIDTH` columns when the output is not a terminal."""
    out = Console()
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(width=PIPED_WIDTH)
    return out


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
