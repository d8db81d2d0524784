"""Run a real anvil node (Foundry) as a child process, for tests and benchmarks.

:class:`AnvilProcess` lives in :mod:`flchain.ledger.nodes` beside Hardhat and geth (one
process manager for all three); this module keeps the old import path working.
"""

from __future__ import annotations

from pathlib import Path

from flchain.ledger.nodes import AnvilProcess


def find_anvil() -> Path | None:
    """The anvil binary to use, or None if there is none."""
    return AnvilProcess.find_binary()


__all__ = ["AnvilProcess", "find_anvil"]
