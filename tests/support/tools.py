"""``require_tool``: the one way a test says it needs an outside program (anvil, forge, Kubo,
slither, ipfs_cid, ...). Locally a missing tool skips the test with the reason; under
``CI=true`` it fails, so CI can never pass by silently skipping."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def require_tool(available: bool, reason: str, how: str) -> None:
    """Skip (locally) or fail (CI) unless ``available``; ``how`` says how to install it."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{reason}; CI must run this test ({how})")
    pytest.skip(f"{reason} ({how})")
