"""Fixtures for the content-store tests: Debian's ipfs_cid binary as a second implementation,
and a real private Kubo daemon (scripts/install_tools.sh builds it) for the KuboStore suite."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.kubo_daemon import KUBO_VERSION, KuboDaemon, KuboMissing, find_ipfs
from support.tools import in_ci, require_tool


@pytest.fixture(scope="session")
def ipfs_cid() -> Callable[[bytes, Path], dict[str, str]]:
    """Run Debian's ``ipfs_cid`` on some bytes; a missing binary fails under CI=true."""
    binary = shutil.which("ipfs_cid")
    require_tool(binary is not None, "ipfs_cid is not installed", "apt-get install ipfs-cid")
    assert binary is not None

    def run(data: bytes, tmp: Path) -> dict[str, str]:
        path = tmp / "content.bin"
        path.write_bytes(data)
        proc = subprocess.run([binary, str(path)], capture_output=True, check=True, timeout=60)
        result: dict[str, str] = json.loads(proc.stdout)
        return result

    return run


@pytest.fixture(scope="session")
def kubo_binary() -> Path:
    """The pinned Kubo binary; a missing one skips, and fails under CI=true."""
    binary = find_ipfs()
    require_tool(binary is not None and binary.exists(), "Kubo not installed",
                 "run scripts/install_tools.sh, or set FLCHAIN_IPFS_BIN")  # fmt: skip
    assert binary is not None
    version = subprocess.run(
        [str(binary), "version", "--number"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    if version != KUBO_VERSION and in_ci():
        pytest.fail(f"{binary} is Kubo {version!r}; CI pins {KUBO_VERSION}")
    return binary


@pytest.fixture(scope="session")
def kubo_daemon(
    kubo_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KuboDaemon]:
    """One private Kubo daemon for the session."""
    try:
        with KuboDaemon(tmp_path_factory.mktemp("kubo") / "repo", binary=kubo_binary) as daemon:
            yield daemon
    except (KuboMissing, RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"Kubo daemon did not start: {exc}")


@pytest.fixture(scope="session")
def kubo_api(kubo_daemon: KuboDaemon) -> str:
    """The RPC multiaddr of the session's private daemon."""
    return kubo_daemon.api
