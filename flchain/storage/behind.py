"""A store whose puts are written to the inner store by a process of their own (write-behind).

In the one-process federation a round puts one update per participant (52 puts of ~0.4 MB
a round at 50 participants, a few files each) on the thread that also runs py-evm, the
nodes' signing and their training. A put's CID is a function of its bytes alone, so it can
be answered at once and the files written meanwhile elsewhere. Elsewhere is a forked writer
process, not a thread: a thread writing files hands the GIL back and forth with every system
call, and measured beside the nodes' torch training it slowed training by 30-85 % (each op
gives the GIL up and waits to get it back); the process has a GIL of its own. The bytes go
to it through a pipe (one write of the put's bytes, no pickling) from a sender thread, so a
put never waits for the writer to read, and it answers each put. The writer runs at a lower
scheduling priority (:data:`WRITER_NICENESS`): the puts' caller is the critical path, and
while it keeps every core busy (a federation's commits beside its training workers) the
writes wait for the cores it leaves idle; :meth:`~WriteBehindStore.flush` of one CID waits
for the puts up to that one only.

Nothing is lost or lied about:

- the bytes of a put not yet written are served from memory by :meth:`get`, so a reader in
  this process never misses them;
- everything that needs the inner store itself (``has``, pins, ``gc``, blocks, streams) first
  waits for the writes queued before it, and :meth:`flush` waits for them on demand: call it
  before publishing a CID another process may read (the nodes flush before they reveal or
  vote, which puts a CID on the chain);
- a write that fails is raised at the next put, get, flush or close (and every call after:
  the store no longer holds what it answered), naming the CID; so is a writer that died;
- :meth:`close` waits for every write.

Use it only where every reader of the content is this process until it flushes (the
one-process federation's own scratch store); a crash loses the puts not yet written, as
a crash of the one-process federation loses its in-memory chain too. It needs ``fork``
(Linux, macOS): the writer starts with this process's copy of ``inner``, nothing pickled.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import queue
import signal
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import BinaryIO

from flchain.errors import ContentMismatch, StorageError
from flchain.storage import unixfs
from flchain.storage.base import ContentStore, DelegatingStore
from flchain.types import CID

#: How much lower the writer process's scheduling priority is than its parent's.
WRITER_NICENESS = 10

#: The request pipe's buffer: two updates of ~0.4 MB fit, so the sender thread's writes
#: seldom wait for the writer to read (Linux's default is 64 KiB; 1 MiB is what an
#: unprivileged process may ask).
_PIPE_BYTES = 1 << 20


class WriteBehindStore(DelegatingStore):
    """``inner`` with each :meth:`put` answered at once (its CID computed from the bytes)
    and written to ``inner`` by one writer process, in order."""

    def __init__(self, inner: ContentStore) -> None:
        super().__init__(inner)
        context = multiprocessing.get_context("fork")
        requests_out, self._requests = context.Pipe(duplex=False)
        self._answers, answers_in = context.Pipe(duplex=False)
        with contextlib.suppress(OSError, AttributeError):  # a smaller pipe only waits more
            fcntl.fcntl(self._requests.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        self._writer = context.Process(
            target=_serve,
            args=(inner, requests_out, answers_in, (self._requests, self._answers)),
            name="flchain-store-writer",
            daemon=True,
        )
        self._writer.start()
        # The caller's thread is the critical path (puts are answered at once); the writes
        # only have to be done by its next flush, and take what CPU it leaves.
        writer = self._writer.pid
        with contextlib.suppress(OSError):  # not allowed here: the same priority, then
            lower = os.getpriority(os.PRIO_PROCESS, 0) + WRITER_NICENESS
            if writer is not None:  # (it is, once started)
                os.setpriority(os.PRIO_PROCESS, writer, min(19, lower))
        requests_out.close()  # the writer's ends: this process keeps only its own
        answers_in.close()
        # Puts reach the pipe through a thread of their own: a put never waits for the
        # writer to read (the pipe holds about one update, and the writer runs at a lower
        # priority, so it may not read at once).
        self._outgoing: queue.SimpleQueue[tuple[int, str, bool, bytes] | None] = queue.SimpleQueue()
        self._sender = threading.Thread(
            target=_send_all, args=(self._outgoing, self._requests), daemon=True
        )
        self._sender.start()
        self._lock = threading.RLock()
        self._sent = 0
        #: Puts sent and not yet answered: sequence number -> (CID, binary CID).
        self._unanswered: dict[int, tuple[CID, bytes]] = {}
        #: Bytes of those puts by binary CID, with how many of them hold each.
        self._held: dict[bytes, tuple[bytes, int]] = {}
        self._closed = False
        self._failure: StorageError | None = None
        #: Puts answered, and puts the writer process wrote to the inner store.
        self.puts, self.written_behind = 0, 0

    # --- the hot path ---------------------------------------------------------------------

    def put(self, data: bytes, *, pin: bool = True) -> CID:
        self._raise_failure()
        self._check_size(len(data))
        return self._send(data, unixfs.cid_for(data, self.cid_version), pin)

    def put_named(self, data: bytes, cid: CID | str, *, pin: bool = True) -> CID:
        """:meth:`put` without hashing ``data`` here: the writer's put hashes it and a name
        that is not ``cid`` fails there, raised at the next call (and by :meth:`flush`, which
        a node calls before it publishes ``cid``). Meanwhile :meth:`get` of ``cid`` answers
        ``data`` as the caller named it."""
        self._raise_failure()
        self._check_size(len(data))
        binary = unixfs.cid_bytes(cid)  # InvalidCID for a malformed name
        version = 0 if len(binary) == 34 else 1  # the only binary CIDv0: a bare multihash
        if version != self.cid_version:
            raise ContentMismatch(
                f"{cid} is a CIDv{version}; this store names content v{self.cid_version}"
            )
        name = unixfs.cid_str(binary)
        if name != cid:  # the same CID in another base: not this store's name, as in any store
            raise ContentMismatch(f"content named {cid} is stored as {name}")
        return self._send(data, name, pin)

    def _send(self, data: bytes, cid: CID, pin: bool) -> CID:
        key = _key(cid)
        with self._lock:
            if self._closed:
                raise StorageError("put on a closed write-behind store")
            self._sent += 1
            self._unanswered[self._sent] = (cid, key)
            held = self._held.get(key)
            self._held[key] = (bytes(data), 1 + (held[1] if held else 0))
            self._outgoing.put((self._sent, str(cid), pin, data))
            self._collect(wait=False)
            self.puts += 1
        self._raise_failure()
        return cid

    def get(self, cid: CID | str) -> bytes:
        key = _key(cid)
        with self._lock:
            self._collect(wait=False)
            held = self._held.get(key)
        self._raise_failure()
        if held is not None:
            return held[0]
        return self.inner.get(cid)

    def flush(self, cid: CID | str | None = None) -> None:
        """Wait until every put so far (with ``cid``: up to the latest put of ``cid``; they
        are written in order) is written to the inner store, and flushed there; raises the
        first write that failed."""
        with self._lock:
            if cid is None:
                self._collect(wait=True)
            else:
                key = _key(cid)
                due = [seq for seq, (_, k) in self._unanswered.items() if k == key]
                self._collect(wait=True, until=max(due, default=0))
        self._raise_failure()
        self.inner.flush(cid)

    def close(self) -> None:
        """Wait for every write, stop the writer and close the inner store; then raise the
        first write that failed, if one did."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._outgoing.put(None)  # the writer ends after the puts before this
                self._collect(wait=True)
                self._sender.join()
                self._requests.close()
                self._writer.join()
                self._answers.close()
                self.inner.close()
        self._raise_failure()

    @property
    def failure(self) -> StorageError | None:
        """The first write that failed, as far as the writer has answered (``None``: none)."""
        with self._lock:
            if not self._closed:
                self._collect(wait=False)
        return self._failure

    # --- the writer's answers -------------------------------------------------------------

    def _collect(self, *, wait: bool, until: int | None = None) -> None:
        """Take in the writer's answers: those ready, or (``wait``) every one still due, or
        (``until``) those up to the put of that sequence number."""
        while self._unanswered and (
            (until in self._unanswered) if until is not None else wait or self._answers.poll()
        ):
            try:
                seq, error = self._answers.recv()
            except (EOFError, OSError):
                self._lost(f"the store's writer process died (exit code {self._writer.exitcode})")
                return
            cid, key = self._unanswered.pop(seq)
            data, holders = self._held[key]
            if holders > 1:
                self._held[key] = (data, holders - 1)
            else:
                del self._held[key]
            if error is None:
                self.written_behind += 1
            else:
                self._fail(StorageError(f"writing {cid} to {self.inner!r} failed: {error}"))

    def _fail(self, failure: StorageError) -> None:
        if self._failure is None:
            self._failure = failure

    def _lost(self, why: str) -> None:
        """The writer is gone: no answer will come for the puts still unanswered."""
        cids = ", ".join(cid for cid, _ in self._unanswered.values())
        self._fail(StorageError(f"{why}; not written: {cids or 'none'}"))
        self._unanswered.clear()
        self._held.clear()

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


def _send_all(
    outgoing: queue.SimpleQueue[tuple[int, str, bool, bytes] | None], requests: Connection
) -> None:
    """The parent's sender thread: each put to the writer, in order, then the end."""
    try:
        while (item := outgoing.get()) is not None:
            seq, cid, pin, data = item
            requests.send((seq, cid, pin))
            requests.send_bytes(data)
        requests.send(None)
    except OSError:  # the writer is gone: the parent finds its answers pipe closed
        pass


def _serve(
    inner: ContentStore,
    requests: Connection,
    answers: Connection,
    parents: tuple[Connection, Connection],
) -> None:
    """The writer process: write each put to ``inner`` in order and answer it (``None``, or
    what went wrong). A reader thread empties the pipe as requests come, so the parent's
    sends never wait for a write in progress."""
    for end in parents:  # the parent's ends: held here, a dead parent would never be seen
        end.close()
    # Ctrl-C reaches the whole process group: the parent decides, and closes or dies
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    received: queue.SimpleQueue[tuple[int, str, bool, bytes] | None] = queue.SimpleQueue()

    def read() -> None:
        try:
            while (head := requests.recv()) is not None:
                seq, cid, pin = head
                received.put((seq, cid, pin, requests.recv_bytes()))
        except EOFError:  # the parent died without closing
            pass
        received.put(None)

    threading.Thread(target=read, name="flchain-store-reader", daemon=True).start()
    while (item := received.get()) is not None:
        seq, cid, pin, data = item
        error: str | None = None
        try:
            stored = inner.put(data, pin=pin)
            if stored != cid:
                # a put_named whose name is not its bytes', or CID settings that differ
                error = f"the inner store named it {stored}"
        except Exception as exc:  # answered to the parent, which raises it
            error = f"{type(exc).__name__}: {exc}"
        answers.send((seq, error))
    inner.close()


def _key(cid: CID | str) -> bytes:
    return unixfs.cid_bytes(cid)
