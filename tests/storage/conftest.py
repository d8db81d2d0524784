"""Fixtures for the content-store tests: Debian's ipfs_cid binary as a second implementation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ipfs_cid() -> Callable[[bytes, Path], dict[str, str]]:
    """Run Debian's ``ipfs_cid`` on some bytes; a missing binary fails under CI=true."""
    binary = shutil.which("ipfs_cid")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("ipfs_cid is not installed (apt-get install ipfs-cid); CI requires it")
        pytest.skip("ipfs_cid not installed (apt-get install ipfs-cid) - cross-check skipped")

    def run(data: bytes, tmp: Path) -> dict[str, str]:
        path = tmp / "content.bin"
        path.write_bytes(data)
        proc = subprocess.run([binary, str(path)], capture_output=True, check=True, timeout=60)
        result: dict[str, str] = json.loads(proc.stdout)
        return result

    return run
