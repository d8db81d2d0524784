"""The node-process manager (``flchain.ledger.nodes``): a node is stopped whatever happens
after it started, and its CPU time can be read while it runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.tools import require_tool

from flchain.errors import LedgerError
from flchain.ledger.nodes import AnvilProcess


class FailingSetUp(AnvilProcess):
    """An anvil whose set-up after start fails (as geth's funding once did)."""

    pid = 0

    def after_start(self) -> None:
        assert self._process is not None
        self.pid = self._process.pid
        raise LedgerError("set-up failed")


@pytest.mark.anvil
def test_a_node_whose_set_up_fails_is_stopped() -> None:
    node = FailingSetUp(accounts=2)
    require_tool(node.binary is not None, "anvil not found", AnvilProcess.install_hint)
    with pytest.raises(LedgerError, match="set-up failed"):
        node.start()
    assert node.pid > 0
    with pytest.raises(ProcessLookupError):
        os.kill(node.pid, 0)  # gone, and reaped
    assert node.cpu_seconds() is None


@pytest.mark.anvil
def test_cpu_seconds_of_a_running_node() -> None:
    require_tool(AnvilProcess.find_binary() is not None, "anvil not found", "npm ci")
    with AnvilProcess(accounts=2) as node:
        first = node.cpu_seconds()
        assert first is not None and first >= 0
        for _ in range(50):
            node.rpc("eth_blockNumber", [])
        later = node.cpu_seconds()
        assert later is not None and later >= first
    assert node.cpu_seconds() is None


@pytest.mark.anvil
def test_a_killed_node_leaves_no_files_behind() -> None:
    """The node's disk cache lives in our scratch directory, removed on stop even when the
    node died without cleaning up (a SIGKILLed anvil once left 12 GB under ~/.foundry)."""
    require_tool(AnvilProcess.find_binary() is not None, "anvil not found", "npm ci")
    with AnvilProcess(accounts=2) as node:
        scratch = node.scratch
        assert scratch.is_dir()
        assert str(scratch) in node.command()  # anvil's --cache-path
        assert node._process is not None
        os.kill(node._process.pid, 9)
    assert not scratch.exists()


class Unstartable(AnvilProcess):
    """An "anvil" that cannot be executed; remembers the scratch directory it was given."""

    given: Path | None = None

    def command(self) -> list[str]:
        self.given = self.scratch
        return super().command()


def test_a_node_that_cannot_start_leaves_no_files_behind(tmp_path: Path) -> None:
    binary = tmp_path / "anvil"
    binary.write_text("not a program")  # not executable: Popen raises
    node = Unstartable(accounts=2, binary=binary)
    with pytest.raises(PermissionError):
        node.start()
    assert node.given is not None and not node.given.exists()
