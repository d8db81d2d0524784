"""CachedStore: content put or got once is served from memory, bounded, and only for its CID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flchain.errors import ContentNotFound
from flchain.storage import CachedStore, LocalStore, cid_for
from flchain.storage.unixfs import CHUNK_SIZE, parse_cid


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalStore]:
    with LocalStore(tmp_path / "store", durable=False) as s:
        yield s


def _drop_blocks(store: LocalStore) -> None:
    """Delete every block file: from then on only memory can answer."""
    for path in (store.root / "blocks").rglob("*"):
        if path.is_file():
            path.unlink()


@pytest.mark.parametrize("named", [False, True])
def test_content_put_is_got_back_without_reading_the_inner_store(
    local: LocalStore, named: bool
) -> None:
    data = bytes(range(256)) * (3 * CHUNK_SIZE // 256 + 7)  # several blocks
    cached = CachedStore(local)
    cid = cached.put_named(data, cid_for(data)) if named else cached.put(data)
    assert cid == cid_for(data) and local.get(cid) == data  # stored and pinned as before
    assert cid in local.pins()
    _drop_blocks(local)
    with pytest.raises(ContentNotFound):
        local.get(cid)
    assert cached.get(cid) == data
    assert cached.get(parse_cid(cid)) == data  # the parsed CID is the same entry
    assert (cached.hits, cached.misses) == (2, 0)


def test_content_got_once_is_read_from_the_inner_store_once(local: LocalStore) -> None:
    data = b"an update" * 1000
    cid = local.put(data)
    cached = CachedStore(local)
    assert cached.get(cid) == data
    _drop_blocks(local)
    assert cached.get(cid) == data
    assert (cached.hits, cached.misses) == (1, 1)


def test_unknown_content_is_still_not_found(local: LocalStore) -> None:
    cached = CachedStore(local)
    with pytest.raises(ContentNotFound):
        cached.get(cid_for(b"never stored"))


def test_the_least_recently_used_content_leaves_first_within_the_bound(
    local: LocalStore,
) -> None:
    blobs = [bytes([i]) * 1000 for i in range(3)]
    cached = CachedStore(local, max_bytes=2500)
    cids = [cached.put(b) for b in blobs[:2]]
    assert cached.get(cids[0]) == blobs[0]  # now the most recent: blob 1 is the oldest
    cids.append(cached.put(blobs[2]))
    _drop_blocks(local)
    assert cached.get(cids[0]) == blobs[0] and cached.get(cids[2]) == blobs[2]
    with pytest.raises(ContentNotFound):
        cached.get(cids[1])
    too_big = CachedStore(local, max_bytes=10)
    cid = too_big.put(b"more than ten bytes")
    _drop_blocks(local)
    with pytest.raises(ContentNotFound):
        too_big.get(cid)


def test_what_gc_collects_is_not_served_from_memory(local: LocalStore) -> None:
    """``has`` and ``get`` agree after a gc: content collected from the inner store is gone
    for the process too (the federation's store faults garbage-collect a revealed update)."""
    cached = CachedStore(local)
    kept, dropped = cached.put(b"pinned" * 100), cached.put(b"unpinned" * 100)
    cached.unpin(dropped)
    assert cached.gc() > 0
    assert not cached.has(dropped)
    with pytest.raises(ContentNotFound):
        cached.get(dropped)
    assert cached.get(kept) == b"pinned" * 100  # read back from the inner store
