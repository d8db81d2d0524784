"""WriteBehindStore: puts answered at once and written by a process of their own; the same CIDs
and files as synchronous puts, nothing served that is not there, and a failed write raised."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from multiformats import CID as MFCID
from support.stores import files_of, writers_held

from flchain.errors import ContentMismatch, ContentTooLarge, InvalidCID, StorageError
from flchain.storage import LocalStore, WriteBehindStore, cid_for, unixfs
from flchain.storage.behind import WRITER_NICENESS
from flchain.storage.unixfs import CHUNK_SIZE
from flchain.types import CID

#: Empty, small, several blocks, a repeat, and one left unpinned.
BLOBS = [
    (b"", True),
    (b"an update" * 100, True),
    (bytes(range(256)) * (3 * CHUNK_SIZE // 256 + 7), True),
    (b"an update" * 100, True),
    (b"unpinned" * 50, False),
]


def test_same_cids_and_same_files_as_synchronous_puts_written_by_the_writer(
    tmp_path: Path,
) -> None:
    with LocalStore(tmp_path / "sync", durable=False) as sync:
        expected = [sync.put(data, pin=pin) for data, pin in BLOBS]
    behind = WriteBehindStore(LocalStore(tmp_path / "behind", durable=False))
    cids = [behind.put(data, pin=pin) for data, pin in BLOBS]
    behind.close()
    assert cids == expected == [cid_for(data) for data, _ in BLOBS]
    assert behind.written_behind == behind.puts == len(BLOBS)  # every one by the writer process
    assert files_of(tmp_path / "behind") == files_of(tmp_path / "sync")
    assert files_of(tmp_path / "sync")  # blocks and pins, not two empty trees


def test_a_put_in_flight_is_read_from_memory_and_flush_waits_for_it(tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "store", durable=False)
    behind = WriteBehindStore(local)
    data = bytes(range(256)) * 2000
    with writers_held(local):
        cid = behind.put(data)
        assert behind.get(cid) == data  # not on disk yet, answered all the same
        assert not local.has(cid) and behind.written_behind == 0
        flushed = threading.Thread(target=behind.flush)
        flushed.start()
        flushed.join(0.3)
        assert flushed.is_alive()  # flush returns only once the put is written
    flushed.join()
    assert local.has(cid) and local.get(cid) == data and cid in local.pins()
    assert behind.written_behind == 1
    behind.close()


@pytest.mark.parametrize("ask", ["has", "pins", "gc", "get_block", "pin"])
def test_what_reads_the_inner_store_waits_for_the_puts_before_it(tmp_path: Path, ask: str) -> None:
    local = LocalStore(tmp_path / "store", durable=False)
    behind = WriteBehindStore(local)
    data = b"a model" * 1000
    answers: list[object] = []
    with writers_held(local):
        cid = behind.put(data)
        call: Callable[[], object] = {
            "has": lambda: behind.has(cid),
            "pins": behind.pins,
            "gc": behind.gc,
            "get_block": lambda: behind.get_block(cid),
            "pin": lambda: behind.pin(cid),
        }[ask]
        asked = threading.Thread(target=lambda: answers.append(call()))
        asked.start()
        asked.join(0.3)
        assert asked.is_alive() and not answers  # waits for the write queued before it
    asked.join()
    assert local.has(cid) and cid in local.pins()
    if ask == "has":
        assert answers == [True]
    if ask == "pins":
        assert answers == [[cid]]
    if ask == "gc":
        assert answers == [0]  # the put was pinned before gc ran: nothing collected
    behind.close()


@pytest.mark.parametrize("surfaces_at", ["put", "get", "flush", "close", "has"])
def test_a_write_that_fails_is_raised_naming_its_cid(tmp_path: Path, surfaces_at: str) -> None:
    local = LocalStore(tmp_path / "store", durable=False)
    behind = WriteBehindStore(local)
    shutil.rmtree(local.root / "tmp")  # where every block is written first: writes fail
    with writers_held(local):  # else a quick writer's failure can reach this very put
        cid = behind.put(b"lost" * 100)  # answered: the write happens later
    if surfaces_at in ("put", "get"):  # these raise a failure that happened before them
        while behind.failure is None:
            time.sleep(0.01)
    with pytest.raises(StorageError, match=f"not written.*{cid}"):
        {
            "put": lambda: behind.put(b"next"),
            "get": lambda: behind.get(cid_for(b"anything")),
            "flush": behind.flush,
            "close": behind.close,
            "has": lambda: behind.has(cid),
        }[surfaces_at]()
    with pytest.raises(StorageError, match="not written"):  # and every call after
        behind.get(cid)
    assert behind.written_behind == 0
    with pytest.raises(StorageError, match="not written"):
        behind.close()  # closes the inner store, then says what was lost
    assert local._lock_fd == -1


def test_bad_input_is_refused_at_the_put(tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "store", durable=False, max_size=10)
    behind = WriteBehindStore(local)
    with pytest.raises(ContentTooLarge):
        behind.put(b"more than ten bytes")
    behind.close()
    with pytest.raises(StorageError, match="closed"):
        behind.put(b"late")
    assert behind.puts == behind.written_behind == 0


def test_a_writer_that_dies_is_raised_with_the_puts_it_did_not_write(tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "store", durable=False)
    behind = WriteBehindStore(local)
    with writers_held(local):
        cid = behind.put(b"in flight" * 100)
        behind._writer.kill()  # a crash of the writer, mid-write
        behind._writer.join()
    with pytest.raises(StorageError, match=f"writer process died.*not written: {cid}"):
        behind.flush()
    assert not local.has(cid)
    with pytest.raises(StorageError, match="not written"):
        behind.close()


def test_put_named_is_not_hashed_at_the_put_and_a_wrong_name_fails_its_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name the caller computed is taken without hashing on the caller's thread (a training
    worker already hashed it); the writer's put hashes the bytes, and a name that is not
    theirs is raised before any flush returns, so a node never publishes it."""
    local = LocalStore(tmp_path / "store", durable=False)
    behind = WriteBehindStore(local)
    right, wrong = b"an update" * 500, b"another update" * 500
    hashed: list[bytes] = []
    real_cid_for = unixfs.cid_for
    monkeypatch.setattr(
        unixfs, "cid_for", lambda data, *a: hashed.append(data) or real_cid_for(data, *a)
    )
    assert behind.put_named(right, real_cid_for(right)) == real_cid_for(right)
    assert hashed == []  # in this process, that is: the writer hashed it in its own
    behind.flush()
    assert local.get(real_cid_for(right)) == right and real_cid_for(right) in local.pins()
    with pytest.raises(ContentMismatch, match="CIDv1"):  # not how this store names content
        behind.put_named(right, real_cid_for(right, 1))
    with pytest.raises(InvalidCID):
        behind.put_named(right, "not-a-cid")
    with writers_held(local):  # else a quick writer's answer can reach this very put
        lie = behind.put_named(wrong, real_cid_for(right * 2))
    assert lie == real_cid_for(right * 2)
    with pytest.raises(StorageError, match=f"not written.*{lie}"):
        behind.flush()
    assert not local.has(real_cid_for(right * 2))
    with pytest.raises(StorageError, match="not written"):
        behind.close()


def test_put_named_takes_names_as_the_store_writes_them(tmp_path: Path) -> None:
    """As any store's put_named (see the behaviour suite): the store's own text form of the
    CID is taken (v1: base32), the same CID in another base is refused at the put."""
    local = LocalStore(tmp_path / "store", durable=False, cid_version=1)
    behind = WriteBehindStore(local)
    data = b"named in base32" * 100
    with pytest.raises(ContentMismatch, match="stored as"):
        behind.put_named(data, MFCID.decode(cid_for(data, 1)).encode("base58btc"))
    assert behind.put_named(data, cid_for(data, 1)) == cid_for(data, 1)
    behind.close()
    assert local.get(cid_for(data, 1)) == data


#: Content whose write a :class:`_Gated` store holds back.
GATED = b"held back" * 1000


class _Gated(LocalStore):
    """A store that holds the write of :data:`GATED` until ``gate`` is set (an event shared
    with the forked writer process)."""

    def __init__(self, root: Path, gate: multiprocessing.synchronize.Event) -> None:
        super().__init__(root, durable=False)
        self.gate = gate

    def put(self, data: bytes, *, pin: bool = True) -> CID:
        if data == GATED:
            self.gate.wait(30)
        return super().put(data, pin=pin)


def test_flush_of_one_cid_waits_for_the_puts_up_to_it_only(tmp_path: Path) -> None:
    """A node flushes its own update before revealing it: the puts after it (the other
    nodes') may still be in flight."""
    gate = multiprocessing.get_context("fork").Event()
    local = _Gated(tmp_path / "store", gate)
    behind = WriteBehindStore(local)
    first, later = behind.put(b"first" * 100), behind.put(GATED)
    behind.flush(first)
    assert local.has(first) and not local.has(later)
    waiting = threading.Thread(target=behind.flush, args=(later,))
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive()  # the later put is not written yet
    gate.set()
    waiting.join()
    assert local.has(later) and behind.written_behind == 2
    behind.close()


def test_a_put_does_not_wait_for_the_writer_which_runs_at_a_lower_priority(
    tmp_path: Path,
) -> None:
    local = LocalStore(tmp_path / "store", durable=False)
    behind = WriteBehindStore(local)
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, behind._writer.pid) == min(19, mine + WRITER_NICENESS)
    blobs = [bytes([i]) * 900_000 for i in range(4)]  # far more than the pipe holds
    cids: list[str] = []
    os.kill(behind._writer.pid, signal.SIGSTOP)  # a writer that reads nothing for now
    try:
        putting = threading.Thread(target=lambda: cids.extend(behind.put(b) for b in blobs))
        putting.start()
        putting.join(5)
        assert not putting.is_alive() and cids == [cid_for(b) for b in blobs]
        assert [behind.get(c) for c in cids] == blobs  # from memory
    finally:
        os.kill(behind._writer.pid, signal.SIGCONT)
    behind.flush()
    assert [local.get(c) for c in cids] == blobs
    behind.close()
