"""A store whose puts are written to the inner store by a thread of their own (write-behind).

In the one-process federation a round puts one update per participant (52 puts of ~0.4 MB
a round at 50 participants, a few files each) on the thread that also runs py-evm, the
nodes' signing and their training. A put's CID is a function of its bytes alone, so it can
be answered at once and the files written meanwhile by another thread: file I/O and
sha-256 release the GIL, so on a machine with a second core the writes run beside the round.

Nothing is lost or lied about:

- the bytes of a put not yet written are served from memory by :meth:`get`, so a reader in
  this process never misses them;
- everything that needs the inner store itself (``has``, pins, ``gc``, blocks, streams) first
  waits for the writes queued before it, and :meth:`flush` waits for them on demand: call it
  before publishing a CID another process may read (the nodes flush before they reveal or
  vote, which puts a CID on the chain);
- a write that fails is raised at the next put, get, flush or close (and every call after:
  the store no longer holds what it answered), naming the CID;
- :meth:`close` waits for every write.

Use it only where every reader of the content is this process until it flushes (the
one-process federation's own scratch store); a crash loses the puts not yet written, as
a crash of the one-process federation loses its in-memory chain too.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path
from typing import BinaryIO

from flchain.errors import ContentMismatch, StorageError
from flchain.storage import unixfs
from flchain.storage.base import ContentStore, DelegatingStore
from flchain.types import CID


class WriteBehindStore(DelegatingStore):
    """``inner`` with each :meth:`put` answered at once (its CID computed from the bytes)
    and written to ``inner`` by one writer thread, in order."""

    def __init__(self, inner: ContentStore) -> None:
        super().__init__(inner)
        self._queue: deque[tuple[CID, bytes, bool]] = deque()
        #: Bytes of the puts queued or being written, by binary CID (what ``get`` serves).
        self._pending: dict[bytes, bytes] = {}
        self._busy = False  # the writer holds a put it took off the queue
        self._cond = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closing = False
        self._failure: StorageError | None = None
        #: Puts answered, and puts the writer thread wrote to the inner store.
        self.puts, self.written_behind = 0, 0

    # --- the hot path ---------------------------------------------------------------------

    def put(self, data: bytes, *, pin: bool = True) -> CID:
        self._raise_failure()
        self._check_size(len(data))
        data = bytes(data)  # the caller's buffer may change before it is written
        cid = unixfs.cid_for(data, self.cid_version)
        with self._cond:
            if self._closing:
                raise StorageError("put on a closed write-behind store")
            self.puts += 1
            self._pending[_key(cid)] = data
            self._queue.append((cid, data, pin))
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write, name="flchain-store-writer", daemon=True
                )
                self._writer.start()
            self._cond.notify_all()
        return cid

    def get(self, cid: CID | str) -> bytes:
        self._raise_failure()
        with self._cond:
            data = self._pending.get(_key(cid))
        if data is not None:
            return data
        return self.inner.get(cid)

    def flush(self) -> None:
        """Wait until every put so far is written to the inner store (and flushed there);
        raises the first write that failed."""
        with self._cond:
            while self._queue or self._busy:
                self._cond.wait()
        self._raise_failure()
        self.inner.flush()

    def close(self) -> None:
        """Wait for every write, stop the writer and close the inner store; then raise the
        first write that failed, if one did."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            writer = self._writer
        try:
            if writer is not None:
                writer.join()
        finally:
            self.inner.close()
        self._raise_failure()

    # --- the writer -----------------------------------------------------------------------

    def _write(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:  # closing, and nothing left to write
                    return
                cid, data, pin = self._queue.popleft()
                self._busy = True
            failure: StorageError | None = None
            try:
                stored = self.inner.put(data, pin=pin)
                if stored != cid:
                    failure = ContentMismatch(
                        f"the inner store named the bytes of {cid} {stored} (its CID settings "
                        "differ from this store's)"
                    )
            except Exception as exc:  # surfaced to the caller's thread, never swallowed
                failure = StorageError(f"writing {cid} to {self.inner!r} failed: {exc}")
                failure.__cause__ = exc
            with self._cond:
                self._busy = False
                self.written_behind += failure is None
                # only drop the bytes once no later put of the same CID waits for them
                if not any(q[0] == cid for q in self._queue):
                    self._pending.pop(_key(cid), None)
                if failure is not None and self._failure is None:
                    self._failure = failure
                self._cond.notify_all()

    @property
    def failure(self) -> StorageError | None:
        """The first write that failed (``None`` while none did)."""
        return self._failure

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise StorageError(
                f"a put this store answered was not written: {self._failure}"
            ) from self._failure

    # --- what needs the inner store itself: the writes queued before it first -------------

    def has(self, cid: CID | str) -> bool:
        self.flush()
        return self.inner.has(cid)

    def pin(self, cid: CID | str) -> None:
        self.flush()
        self.inner.pin(cid)

    def unpin(self, cid: CID | str) -> None:
        self.flush()
        self.inner.unpin(cid)

    def pins(self) -> list[CID]:
        self.flush()
        return self.inner.pins()

    def gc(self) -> int:
        self.flush()
        return self.inner.gc()

    def get_block(self, cid: CID | str) -> bytes:
        self.flush()
        return self.inner.get_block(cid)

    def put_block(self, cid: CID | str, block: bytes) -> None:
        self.flush()
        self.inner.put_block(cid, block)

    def put_file(self, path: Path, *, pin: bool = True) -> CID:
        self.flush()
        return self.inner.put_file(path, pin=pin)

    def put_stream(self, stream: BinaryIO, *, pin: bool = True) -> CID:
        self.flush()
        return self.inner.put_stream(stream, pin=pin)


def _key(cid: CID | str) -> bytes:
    return bytes(unixfs.parse_cid(cid))
