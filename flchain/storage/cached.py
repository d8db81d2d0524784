"""A store that keeps the content this process put or got lately in memory.

In a one-process federation every node reads the same global model (50 reads of one CID a
round at 50 participants) and the committee's recomputation reads back every update the
nodes put a moment before; each read re-reads and re-hashes every block from disk. Content
is named by its hash, so bytes once verified against a CID (hashed into it by ``put``,
checked against it by the inner store's ``get``) are that CID's content for good: handing
them out again is the same answer without the disk. Nothing else changes: ``put`` still
stores (and pins) in the inner store, and a CID not in memory is read from it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from flchain.storage import unixfs
from flchain.storage.base import ContentStore, DelegatingStore
from flchain.types import CID

#: Default bound on the bytes kept: a round's updates at 100 participants (MLP, ~0.8 MB each)
#: and the models around them.
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024


class CachedStore(DelegatingStore):
    """``inner`` with the most recently put or got content (up to ``max_bytes`` in all) kept
    in memory, least recently used first out; content larger than the bound is not kept."""

    def __init__(self, inner: ContentStore, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        super().__init__(inner)
        self.max_bytes = max_bytes
        self._kept: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        #: Gets answered from memory, and gets passed to the inner store.
        self.hits, self.misses = 0, 0

    def put(self, data: bytes, *, pin: bool = True) -> CID:
        cid = self.inner.put(data, pin=pin)
        self._keep(cid, data)
        return cid

    def put_named(self, data: bytes, cid: CID | str, *, pin: bool = True) -> CID:
        stored = self.inner.put_named(data, cid, pin=pin)
        self._keep(stored, data)
        return stored

    def get(self, cid: CID | str) -> bytes:
        key = _key(cid)
        with self._lock:
            data = self._kept.get(key)
            if data is not None:
                self._kept.move_to_end(key)
                self.hits += 1
                return data
            self.misses += 1
        data = self.inner.get(cid)
        self._keep(cid, data)
        return data

    def gc(self) -> int:
        removed = self.inner.gc()
        # what the inner store collected is gone for this process too (``has`` and ``get``
        # must agree); gc is rare, so memory simply starts over
        with self._lock:
            self._kept.clear()
            self._size = 0
        return removed

    def _keep(self, cid: CID | str, data: bytes) -> None:
        data = bytes(data)  # a copy of a mutable buffer: what is kept cannot change
        if len(data) > self.max_bytes:
            return
        key = _key(cid)
        with self._lock:
            old = self._kept.pop(key, None)
            self._size += len(data) - (len(old) if old is not None else 0)
            self._kept[key] = data
            while self._size > self.max_bytes:
                _, dropped = self._kept.popitem(last=False)
                self._size -= len(dropped)


def _key(cid: CID | str) -> bytes:
    """The binary CID: one key for every text form of one CID (a v0 and a v1 CID of the
    same content are two keys, which only costs a read)."""
    return unixfs.cid_bytes(cid)
