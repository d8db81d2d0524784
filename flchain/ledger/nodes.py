"""Real JSON-RPC chain nodes as child processes, for tests and benchmarks: anvil (Foundry),
Hardhat Network (``hardhat node``) and ``geth --dev``.

One small process manager, :class:`NodeProcess`, starts a node on a free 127.0.0.1 port, waits
until it answers ``eth_chainId`` and stops it; each subclass only says where its binary is and
which command line to run. Every node funds the dev-mnemonic accounts the embedded chain
funds (geth --dev funds one account of its own: :class:`GethProcess` pays them from it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar, Self

import requests

from flchain.errors import LedgerError, RPCUnavailable
from flchain.ledger.accounts import DEV_MNEMONIC, dev_accounts

_REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_tool(env: str, *relative: str, on_path: str) -> Path | None:
    """The binary named by ``$env``, else the first of ``relative`` paths under the current
    directory or the repository root, else ``on_path`` on PATH; None if there is none."""
    if value := os.environ.get(env):
        return Path(value)
    for base in (Path.cwd(), _REPO_ROOT):
        for rel in relative:
            if (candidate := base / rel).exists():
                return candidate
    found = shutil.which(on_path)
    return Path(found) if found else None


class NodeProcess:
    """``with SomeNode() as node: Chain.connect(node.url)`` — started and stopped.

    Subclasses set :attr:`name` and :attr:`install_hint` and implement :meth:`find_binary`
    and :meth:`command`.

    Args:
        accounts: how many dev-mnemonic accounts the node funds.
        block_time: seconds between blocks (interval mining, what a shared chain looks like
            to a node); None mines each transaction at once.
        binary: the executable; by default :meth:`find_binary`.
        startup_timeout: seconds to wait for the node to answer.
    """

    name: ClassVar[str] = "node"
    install_hint: ClassVar[str] = ""

    def __init__(
        self,
        accounts: int = 20,
        block_time: float | None = None,
        binary: str | Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.binary = Path(binary) if binary else self.find_binary()
        self.accounts = accounts
        self.block_time = block_time
        self.startup_timeout = startup_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        # Throw-away files of the running node (geth's data, anvil's state cache). Ours, not
        # the node's: a node killed mid-run cannot clean up after itself, and anvil's default
        # cache under ~/.foundry grew by 12 GB per 1,000-participant run left behind.
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def find_binary(cls) -> Path | None:
        raise NotImplementedError

    def command(self) -> list[str]:
        """The command line that starts the node on :attr:`port`."""
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """Environment of the child process (None: inherit ours)."""
        return None

    def after_start(self) -> None:
        """Runs once the node answers (e.g. to fund accounts)."""

    @property
    def scratch(self) -> Path:
        """The node's throw-away directory (exists from start to stop)."""
        assert self._scratch is not None, "the node is not started"
        return Path(self._scratch.name)

    @property
    def url(self) -> str:
        """The JSON-RPC URL (valid once started)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start the node and wait until it answers ``eth_chainId``; returns self."""
        if self.binary is None or not self.binary.exists():
            raise LedgerError(f"{self.name} binary not found: {self.install_hint}")
        self.port = free_port()
        self._scratch = tempfile.TemporaryDirectory(prefix=f"flchain-{self.name}-")
        try:
            self._process = subprocess.Popen(
                self.command(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=self.environment(),
                start_new_session=True,  # stop() ends the node's process group (npx → node)
            )
            self._wait_ready()
            self.after_start()
        except BaseException:
            self.stop()  # a node left running here would outlive the failed start
            raise
        return self

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the node process has used so far, from ``/proc`` (None
        where there is none, or before start): what a benchmark measures a node's own work
        by, as it does not count time spent waiting for a busy machine."""
        if self._process is None:
            return None
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rpartition(")")[2]
        except OSError:
            return None
        utime, stime = fields.split()[11:13]  # fields 14 and 15 of proc(5), after the name
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def rpc(self, method: str, params: list[Any]) -> Any:
        """One raw JSON-RPC request (for set-up, before any ``Chain`` exists)."""
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        reply = requests.post(self.url, json=body, timeout=10).json()
        if "error" in reply:
            raise LedgerError(f"{method} failed on {self.name} {self.url}: {reply['error']}")
        return reply["result"]

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise LedgerError(
                    f"{self.name} exited with {self._process.returncode}: {stderr[-2000:]}"
                )
            try:
                if requests.post(self.url, json=body, timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RPCUnavailable(
            f"{self.name} did not answer on {self.url} within {self.startup_timeout}s"
        )

    def stop(self) -> None:
        """Terminate the node (kill it if it lingers) and remove its scratch directory."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
            if process.stderr:
                process.stderr.close()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AnvilProcess(NodeProcess):
    """anvil (Foundry). The binary comes from ``$FLCHAIN_ANVIL``, else
    ``node_modules/.bin/anvil`` (the pinned npm package ``@foundry-rs/anvil-linux-amd64``),
    else ``anvil`` on PATH."""

    name = "anvil"
    install_hint = (
        "run `npm ci` (installs node_modules/.bin/anvil), put anvil on PATH, "
        "or set FLCHAIN_ANVIL=/path/to/anvil"
    )

    @classmethod
    def find_binary(cls) -> Path | None:
        return find_tool("FLCHAIN_ANVIL", "node_modules/.bin/anvil", on_path="anvil")

    def command(self) -> list[str]:
        command = [
            str(self.binary),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--mnemonic", DEV_MNEMONIC,
            "--accounts", str(self.accounts),
            "--cache-path", str(self.scratch),  # the states it keeps on disk
            "--silent",
        ]  # fmt: skip
        if self.block_time:
            command += ["--block-time", str(self.block_time)]
        return command


class HardhatProcess(NodeProcess):
    """Hardhat Network (``hardhat node``, npm ``hardhat`` 2, pinned in package.json), with
    ``scripts/hardhat/hardhat.config.js``: auto-mining, Prague, the dev-mnemonic accounts.
    The binary comes from ``$FLCHAIN_HARDHAT``, else ``node_modules/.bin/hardhat``."""

    name = "hardhat"
    install_hint = "run `npm ci` (installs node_modules/.bin/hardhat), or set FLCHAIN_HARDHAT"
    config = _REPO_ROOT / "scripts" / "hardhat" / "hardhat.config.js"

    @classmethod
    def find_binary(cls) -> Path | None:
        return find_tool("FLCHAIN_HARDHAT", "node_modules/.bin/hardhat", on_path="hardhat")

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--config", str(self.config),
            "node",
            "--hostname", "127.0.0.1",
            "--port", str(self.port),
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "FLCHAIN_MNEMONIC": DEV_MNEMONIC,
            "FLCHAIN_ACCOUNTS": str(self.accounts),
            # interval mining on top of auto-mining; 0 turns it off
            "FLCHAIN_BLOCK_INTERVAL_MS": str(round((self.block_time or 0) * 1000)),
            "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true",  # never wait on a question
        }


class GethProcess(NodeProcess):
    """``geth --dev`` (the reference client, built pinned into ``.tools/bin`` by
    ``scripts/install_tools.sh``): HTTP on 127.0.0.1 only, no peers, no discovery, no IPC, a
    throw-away data directory. Dev mode pre-funds one account of its own; once geth answers,
    it pays each dev-mnemonic account :attr:`FUNDING` wei, so the suite's accounts work as on
    the other nodes. Blocks come on each transaction (``--dev.period 0``; with ``block_time``,
    every whole second or more instead), and
    :meth:`Chain.mine` makes empty ones through the dev API. The binary comes from
    ``$FLCHAIN_GETH``, else ``.tools/bin/geth``, else ``geth`` on PATH."""

    name = "geth"
    install_hint = (
        "run `bash scripts/install_tools.sh` (builds .tools/bin/geth), or set FLCHAIN_GETH"
    )
    FUNDING = 10_000 * 10**18

    @classmethod
    def find_binary(cls) -> Path | None:
        return find_tool("FLCHAIN_GETH", ".tools/bin/geth", on_path="geth")

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--dev",
            "--datadir", str(self.scratch),
            "--http", "--http.addr", "127.0.0.1", "--http.port", str(self.port),
            "--http.api", "eth,net,web3,debug,dev,txpool",
            "--nodiscover", "--maxpeers", "0", "--ipcdisable",
            "--authrpc.port", "0", "--port", "0",
            "--verbosity", "2",
        ] + (
            # geth seals on a whole-second period (and then only then: no block per transaction)
            ["--dev.period", str(max(1, round(self.block_time)))] if self.block_time else []
        )  # fmt: skip

    def after_start(self) -> None:
        (funder,) = self.rpc("eth_accounts", [])[:1]
        # Explicit nonces: geth numbers back-to-back sends from its pending state, which can
        # lag behind (a thousand transfers met "replacement transaction underpriced").
        first = int(self.rpc("eth_getTransactionCount", [funder, "pending"]), 16)
        hashes = [
            self.rpc(
                "eth_sendTransaction",
                [
                    {
                        "from": funder,
                        "to": account.address,
                        "value": hex(self.FUNDING),
                        "nonce": hex(first + i),
                    }
                ],
            )
            for i, account in enumerate(dev_accounts(self.accounts))
        ]
        deadline = time.monotonic() + self.startup_timeout
        for tx_hash in hashes:
            while self.rpc("eth_getTransactionReceipt", [tx_hash]) is None:
                if time.monotonic() > deadline:
                    raise RPCUnavailable(f"geth on {self.url} did not mine the funding transfers")
                time.sleep(0.05)
