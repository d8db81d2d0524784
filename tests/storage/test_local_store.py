"""LocalStore specifics: corruption, atomic writes, crashes, several processes, gc."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flchain.errors import ContentMismatch, StorageError
from flchain.storage import LocalStore, cid_for, default_store_dir, local
from flchain.storage.unixfs import CHUNK_SIZE


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    with LocalStore(tmp_path / "store", durable=False) as s:
        yield s


def _blocks(store: LocalStore) -> list[Path]:
    return sorted(p for p in (store.root / "blocks").rglob("*") if p.is_file())


def _assert_blocks_intact(root: Path) -> None:
    """Every block file hashes to the multihash its name encodes."""
    import base64

    for path in (root / "blocks").rglob("*"):
        if path.is_file():
            name = path.name.upper() + "=" * (-len(path.name) % 8)
            multihash = base64.b32decode(name)
            assert hashlib.sha256(path.read_bytes()).digest() == multihash[2:], path


def test_flipped_byte_is_detected(store: LocalStore) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 3)
    cid = store.put(data)
    victim = max(_blocks(store), key=lambda p: p.stat().st_size)  # a 256 KiB leaf
    victim.chmod(0o644)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    victim.write_bytes(bytes(raw))
    with pytest.raises(ContentMismatch, match="corrupted"):
        store.get(cid)


def test_failed_write_leaves_no_block(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def torn_writev(fd: int, parts: list[bytes]) -> int:
        os.write(fd, bytes(parts[0])[:5])  # half a block reaches the temp file, then I/O fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local.os, "writev", torn_writev)
    with pytest.raises(StorageError, match="No space left"):
        store.put(b"some bytes")
    assert _blocks(store) == []
    assert list((store.root / "tmp").iterdir()) == []


def test_killed_writer_leaves_only_whole_blocks(tmp_path: Path) -> None:
    root = tmp_path / "store"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import os, sys
                from flchain.storage import LocalStore
                s = LocalStore({str(root)!r})
                print("ready", flush=True)
                while True:
                    s.put(os.urandom(8 * {CHUNK_SIZE}))
            """),
        ],
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    deadline = time.monotonic() + 30
    while len(list((root / "blocks").rglob("*"))) < 20:  # mid-stream, writes in flight
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()
    _assert_blocks_intact(root)
    with LocalStore(root) as s:
        s.gc()  # also sweeps temp files the killed writer left
        assert list((root / "tmp").iterdir()) == []


def test_gc_keeps_pinned_dags_only(store: LocalStore) -> None:
    shared_chunk = b"\x07" * CHUNK_SIZE
    kept = store.put(shared_chunk * 2 + b"kept")
    dropped = store.put(shared_chunk + b"dropped" * 1000, pin=False)
    before = len(_blocks(store))
    removed = store.gc()
    assert removed == 2  # the loose root and its unshared tail leaf
    assert len(_blocks(store)) == before - removed
    assert store.get(kept) == shared_chunk * 2 + b"kept"
    assert not store.has(dropped)
    store.unpin(kept)
    store.gc()
    assert _blocks(store) == []


def test_gc_keeps_two_layer_dags(store: LocalStore) -> None:
    data = b"\x05" * (174 * CHUNK_SIZE + 1)  # identical chunks: the DAG stays small on disk
    cid = store.put(data)
    assert cid == cid_for(data)
    assert store.gc() == 0
    assert store.get(cid) == data


def _worker(root: str, index: int, rounds: int, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    with LocalStore(Path(root)) as s:
        out = []
        for r in range(rounds):
            shared = b"shared-%d" % r * 30_000  # every process writes these same blocks
            mine = os.urandom(CHUNK_SIZE + r)
            out.append((s.put(shared), shared))
            out.append((s.put(mine), mine))
            s.put(os.urandom(1000), pin=False)  # garbage for the collector
            if index == 0:
                s.gc()
        queue.put(out)


def test_several_processes_share_one_store(tmp_path: Path) -> None:
    root = tmp_path / "store"
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(root), i, 6, queue)) for i in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    with LocalStore(root) as s:
        s.gc()  # concurrent gc must never have removed a pinned block
        for cid, data in (pair for result in results for pair in result):
            assert s.get(cid) == data
        assert len(s.pins()) == 6 + 3 * 6  # shared contents pinned once, private ones each
    _assert_blocks_intact(root)


def test_default_dir_is_overridable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLCHAIN_STORE", str(tmp_path / "x"))
    assert default_store_dir() == tmp_path / "x"
    monkeypatch.delenv("FLCHAIN_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_dir() == tmp_path / "xdg" / "flchain" / "store"


def test_durable_store_round_trip(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "d", durable=True) as s:
        data = os.urandom(3 * CHUNK_SIZE)
        assert s.get(s.put(data)) == data


def test_short_writes_are_completed(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real_writev = os.writev

    def stingy_writev(fd: int, parts: list[bytes]) -> int:
        return real_writev(fd, [memoryview(parts[0])[:1000]])  # the kernel may stop short

    monkeypatch.setattr(local.os, "writev", stingy_writev)
    data = os.urandom(CHUNK_SIZE + 10)
    cid = store.put(data)
    monkeypatch.undo()
    assert store.get(cid) == data


def _forked_put(store: LocalStore, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    queue.put(store.put(b"from a forked child" * 50_000))


def test_store_inherited_through_fork(store: LocalStore) -> None:
    """A forked child reopens its lock and threads instead of sharing the parent's."""
    store.put(b"warm up the writer threads" * 50_000)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_forked_put, args=(store, queue))
    child.start()
    cid = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert store.get(cid) == b"from a forked child" * 50_000
