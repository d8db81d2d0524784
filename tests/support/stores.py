"""Store helpers: what a store directory holds (to compare two stores file by file), and its
writers held off (to catch puts written behind while they are still in flight)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flchain.storage import LocalStore


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but the lock file, by path relative to it, with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


@contextmanager
def writers_held(store: LocalStore) -> Iterator[None]:
    """Keep every writer out of ``store`` until the block exits, as another process's ``gc``
    does (the store's lock, exclusively): puts written behind wait, still in flight."""
    fd = os.open(store.root / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
