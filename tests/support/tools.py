"""``require_tool``: the one way a test says it needs an outside program (anvil, forge, Kubo,
slither, ipfs_cid, ...). Locally a missing tool skips the test with the reason; under
``CI=true`` it fails, so CI can never pass by silently skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def run_with_threads(code: str, threads: int, *args: str) -> str:
    """Run ``code`` in a fresh interpreter whose math libraries use ``threads`` threads (and
    whose hash seed differs with them); its stdout. Committee results must not depend on
    either, so determinism tests compare what two such children print."""
    n = str(threads)
    tests = str(Path(__file__).resolve().parents[1])  # the child imports test modules too
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "PYTHONHASHSEED": n,
    }
    done = subprocess.run(
        [sys.executable, "-c", code, n, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    return done.stdout
