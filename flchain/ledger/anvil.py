"""Run a real anvil node (Foundry) as a child process, for tests and benchmarks.

The binary comes from ``$FLCHAIN_ANVIL``, else ``node_modules/.bin/anvil`` (the pinned npm
package ``@foundry-rs/anvil-linux-amd64``) under the current directory or the repository root,
else ``anvil`` on PATH. It listens on a free 127.0.0.1 port and funds the same dev-mnemonic
accounts as the embedded chain.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from flchain.errors import LedgerError, RPCUnavailable
from flchain.ledger.accounts import DEV_MNEMONIC

_REPO_ROOT = Path(__file__).resolve().parents[2]


def find_anvil() -> Path | None:
    """The anvil binary to use, or None if there is none."""
    if env := os.environ.get("FLCHAIN_ANVIL"):
        return Path(env)
    for base in (Path.cwd(), _REPO_ROOT):
        candidate = base / "node_modules" / ".bin" / "anvil"
        if candidate.exists():
            return candidate
    found = shutil.which("anvil")
    return Path(found) if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AnvilProcess:
    """``with AnvilProcess() as anvil: Chain.connect(anvil.url)`` — started and stopped.

    Args:
        accounts: how many dev-mnemonic accounts anvil funds.
        block_time: seconds between blocks; None mines each transaction at once.
        binary: the anvil executable; by default :func:`find_anvil`.
        startup_timeout: seconds to wait for anvil to answer.
    """

    def __init__(
        self,
        accounts: int = 20,
        block_time: float | None = None,
        binary: str | Path | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.binary = Path(binary) if binary else find_anvil()
        self.accounts = accounts
        self.block_time = block_time
        self.startup_timeout = startup_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The JSON-RPC URL (valid once started)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AnvilProcess:
        """Start anvil and wait until it answers ``eth_chainId``; returns self."""
        if self.binary is None or not self.binary.exists():
            raise LedgerError(
                "anvil binary not found: run `npm ci` (installs node_modules/.bin/anvil), "
                "put anvil on PATH, or set FLCHAIN_ANVIL=/path/to/anvil"
            )
        self.port = _free_port()
        command = [
            str(self.binary),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--mnemonic", DEV_MNEMONIC,
            "--accounts", str(self.accounts),
            "--silent",
        ]  # fmt: skip
        if self.block_time:
            command += ["--block-time", str(self.block_time)]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise LedgerError(f"anvil exited with {self._process.returncode}: {stderr}")
            try:
                if requests.post(self.url, json=body, timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.05)
        self.stop()
        raise RPCUnavailable(f"anvil did not answer on {self.url} within {self.startup_timeout}s")

    def stop(self) -> None:
        """Terminate anvil (kill it if it lingers)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def __enter__(self) -> AnvilProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
