"""The embedded content store: IPFS blocks in a directory, no daemon.

Layout under ``root``::

    blocks/XY/<base32 multihash>   one file per block, XY = last two characters (like Kubo's flatfs)
    pins/<base32 CID bytes>        one file per recursive pin; it holds the CID text
    tmp/                           blocks being written (renamed into place when complete)
    lock                           flock: writers share it, ``gc`` takes it exclusively

Blocks are immutable and named by their hash, so concurrent writers of the same block cannot
conflict: each writes its own temp file, fsyncs it and renames it into place (atomic on POSIX).
Every read re-hashes the block. Several processes may share one directory; ``gc`` excludes
writers with the lock so it never removes blocks of a ``put`` that has not pinned yet.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import mmap
import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from flchain.errors import ContentMismatch, ContentNotFound, InvalidCID, StorageError
from flchain.storage import unixfs
from flchain.storage.base import DEFAULT_MAX_SIZE, ContentStore
from flchain.types import CID

#: Blocks hashed/written or read ahead at once (bounds memory when streaming a large file).
_IN_FLIGHT = 16
#: Blocks at least this big are memory-mapped rather than read.
_MMAP_MIN = 64 * 1024


def default_store_dir() -> Path:
    """``$FLCHAIN_STORE``, else ``$XDG_DATA_HOME/flchain/store`` (``~/.local/share/...``)."""
    if env := os.environ.get("FLCHAIN_STORE"):
        return Path(env).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "flchain" / "store"


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(ContentStore):
    """A directory of IPFS blocks whose CIDs equal those of ``ipfs add`` (Kubo defaults).

    ``durable=False`` skips the fsyncs: a crash can then lose recent blocks (never serve torn
    ones, since reads verify), which suits scratch stores and tests.
    """

    def __init__(
        self,
        root: Path | None = None,
        cid_version: int = 0,
        max_size: int = DEFAULT_MAX_SIZE,
        *,
        durable: bool = True,
    ) -> None:
        if cid_version not in (0, 1):
            raise InvalidCID(f"cid_version must be 0 or 1, not {cid_version!r}")
        self.root = Path(root) if root is not None else default_store_dir()
        self.cid_version = cid_version
        self.max_size = max_size
        self.durable = durable
        self._blocks = self.root / "blocks"
        self._pins = self.root / "pins"
        self._tmp = self.root / "tmp"
        try:
            for d in (self._blocks, self._pins, self._tmp):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot open store directory {self.root}: {exc}") from exc
        self._lock_fd = -1
        self._open_handles()

    def _open_handles(self) -> None:
        # flock belongs to the open file, and worker threads do not survive fork: a process
        # that inherits this object (multiprocessing's fork) needs its own of both.
        self._pid = os.getpid()
        self._lock_fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._lock_guard = threading.Lock()
        self._lock_depth = 0
        self._pool: ThreadPoolExecutor | None = None

    def _after_fork(self) -> None:
        if self._pid != os.getpid():
            self._open_handles()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r}, cid_version={self.cid_version})"

    # --- locking ------------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the shared writer lock: ``gc`` in any process waits until the block exits."""
        self._after_fork()
        with self._lock_guard:
            if self._lock_depth == 0:
                fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
            self._lock_depth += 1
        try:
            yield
        finally:
            with self._lock_guard:
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # --- blocks -------------------------------------------------------------------------

    def _block_path(self, multihash: bytes) -> Path:
        name = _b32(multihash)
        return Path(f"{self._blocks}/{name[-3:-1]}/{name}")

    def _write_block(self, path: Path, parts: list[bytes | memoryview]) -> Path:
        tmp = f"{self._tmp}/{path.name}.{os.getpid()}.{threading.get_ident()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
            try:
                _write_all(fd, parts)
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.replace(tmp, path)
            except FileNotFoundError:  # first block in this shard directory
                path.parent.mkdir(exist_ok=True)
                os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StorageError(f"cannot write block {path.name}: {exc}") from exc
        return path.parent

    def _read_block(self, cid: bytes) -> bytes:
        try:
            multihash = unixfs.split_cid(cid)[1]
        except ValueError as exc:
            raise ContentMismatch(f"a DAG links to an unsupported CID: {exc}") from None
        path = self._block_path(multihash)
        try:
            with open(path, "rb", buffering=0) as f:
                size = os.fstat(f.fileno()).st_size
                # Mapping big blocks saves a copy (hashing and the final join read the page
                # cache directly). Writers never modify a block file in place, they replace it.
                if size >= _MMAP_MIN:
                    block: bytes = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # type: ignore[assignment]
                else:
                    block = f.read()
        except FileNotFoundError:
            raise ContentNotFound(
                f"{unixfs.cid_text(cid)} is not in the store at {self.root}"
            ) from None
        if hashlib.sha256(block).digest() != multihash[2:]:
            raise ContentMismatch(
                f"block {unixfs.cid_text(cid)} at {path} does not match its hash (corrupted)"
            )
        return block

    def get_block(self, cid: CID | str) -> bytes:
        """One block, re-hashed against ``cid``."""
        return bytes(self._read_block(unixfs.cid_bytes(cid)))

    def put_block(self, cid: CID | str, block: bytes) -> None:
        """Store one block after checking it hashes to ``cid`` (hold :meth:`writing` around
        a batch of these plus the final :meth:`pin`, so ``gc`` cannot interleave)."""
        parsed = unixfs.parse_cid(cid)
        if hashlib.sha256(block).digest() != parsed.raw_digest:
            raise ContentMismatch(f"block does not hash to {cid}")
        path = self._block_path(parsed.digest)
        if not path.exists():
            with self.writing():
                parent = self._write_block(path, [block])
                if self.durable:
                    _fsync_dir(parent)

    # --- files --------------------------------------------------------------------------

    def put(self, data: bytes, *, pin: bool = True) -> CID:
        """Store ``data`` as ``ipfs add`` would and return its CID."""
        self._check_size(len(data))
        return self._put_chunks(unixfs.iter_chunks(data), pin)

    def put_stream(self, stream: BinaryIO, *, pin: bool = True) -> CID:
        """Store a stream chunk by chunk, never holding more than a few chunks in memory."""
        return self._put_chunks(_read_chunks(stream), pin)

    def _put_chunks(self, chunks: Iterator[bytes | memoryview], pin: bool) -> CID:
        # A durable store hashes and writes leaves in worker threads (hashlib, I/O and fsync
        # drop the GIL), at most _IN_FLIGHT at a time, handed to the builder in order: that
        # hides fsync latency. Without fsync, thread hand-offs cost more than they save
        # (measured on 2 cores), so leaves are done inline.
        threaded = self.durable
        with self.writing():
            pool = self._pool_()
            dirs: set[Path] = set()

            def store(multihash: bytes, parts: list[bytes | memoryview]) -> None:
                path = self._block_path(multihash)
                if not path.exists():
                    dirs.add(self._write_block(path, parts))

            def leaf(chunk: bytes | memoryview) -> tuple[bytes, list[bytes | memoryview], int]:
                parts = unixfs.leaf_parts(chunk)
                multihash = unixfs.hash_parts(parts)
                store(multihash, parts)
                return multihash, parts, len(chunk)

            builder = unixfs.DagBuilder(store, self.max_size)
            window: deque[Future[tuple[bytes, list[bytes | memoryview], int]]] = deque()
            try:
                for chunk in chunks:
                    if not threaded:
                        builder.add_leaf(*leaf(chunk))
                        continue
                    window.append(pool.submit(leaf, chunk))
                    if len(window) >= _IN_FLIGHT:
                        builder.add_leaf(*window.popleft().result())
                while window:
                    builder.add_leaf(*window.popleft().result())
            finally:
                for future in window:
                    future.cancel()
            root = builder.finish()
            if self.durable:
                for d in dirs:
                    _fsync_dir(d)
            if pin:
                self._write_pin(root)
        return unixfs.root_cid(root, self.cid_version)

    def _get_many(self, cids: list[bytes]) -> Iterator[bytes]:
        """Blocks in order, read and verified a few at a time by worker threads."""
        pool = self._pool_()
        window: deque[Future[bytes]] = deque()
        try:
            for cid in cids:
                window.append(pool.submit(self._read_block, cid))
                if len(window) >= _IN_FLIGHT:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for future in window:
                future.cancel()

    def _pool_(self) -> ThreadPoolExecutor:
        self._after_fork()
        with self._lock_guard:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="flchain-store")
            return self._pool

    def get(self, cid: CID | str) -> bytes:
        """The file's bytes; every block is re-hashed on the way."""
        return b"".join(self.iter_content(cid))

    def iter_content(self, cid: CID | str) -> Iterator[memoryview]:
        """The file's bytes piece by piece (for streaming to a file or stdout)."""
        return unixfs.read_file(
            unixfs.parse_cid(cid), self._read_block, self.max_size, self._get_many
        )

    def has(self, cid: CID | str) -> bool:
        """Whether the root block is present (not re-verified; :meth:`get` does that)."""
        return self._block_path(unixfs.parse_cid(cid).digest).exists()

    # --- pins and gc --------------------------------------------------------------------

    def _pin_path(self, cid: bytes) -> Path:
        return self._pins / _b32(cid)

    def _write_pin(self, cid: bytes) -> None:
        path = self._pin_path(cid)
        if not path.exists():
            parent = self._write_block(path, [unixfs.cid_str(cid).encode()])
            if self.durable:
                _fsync_dir(parent)

    def pin(self, cid: CID | str) -> None:
        """Pin ``cid``; its root block must be in the store."""
        parsed = unixfs.parse_cid(cid)
        with self.writing():
            if not self._block_path(parsed.digest).exists():
                raise ContentNotFound(f"cannot pin {cid}: not in the store at {self.root}")
            self._write_pin(bytes(parsed))

    def unpin(self, cid: CID | str) -> None:
        """Remove the pin on ``cid`` if there is one."""
        self._pin_path(unixfs.cid_bytes(cid)).unlink(missing_ok=True)

    def pins(self) -> list[CID]:
        """Pinned CIDs, in the version they were pinned with."""
        out = []
        for path in sorted(self._pins.iterdir()):
            try:
                out.append(CID(path.read_text().strip()))
            except FileNotFoundError:  # unpinned by another process meanwhile
                continue
        return out

    def gc(self) -> int:
        """Remove every block not reachable from a pin; return how many were removed.

        Waits for writers in all processes to finish and keeps them out while it runs.
        """
        self._after_fork()
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            keep = self._reachable()
            removed = 0
            for shard in self._blocks.iterdir():
                for path in shard.iterdir():
                    if path.name not in keep:
                        path.unlink(missing_ok=True)
                        removed += 1
            for stale in self._tmp.iterdir():  # left by a crashed writer
                stale.unlink(missing_ok=True)
            return removed
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _reachable(self) -> set[str]:
        keep: set[str] = set()
        todo = [bytes(unixfs.parse_cid(c)) for c in self.pins()]
        while todo:
            cid = todo.pop()
            try:
                codec, multihash = unixfs.split_cid(cid)
            except ValueError:
                continue
            path = self._block_path(multihash)
            if path.name in keep:
                continue
            try:
                with open(path, "rb") as f:
                    head = f.read(1)
                    # Leaves are most of the bytes; only inner nodes need reading in full.
                    if codec == unixfs.DAG_PB and unixfs.has_links(head):
                        todo.extend(unixfs.links_of(cid, head + f.read()))
            except FileNotFoundError:
                continue  # a pin whose DAG is incomplete keeps what it has
            except ValueError:
                pass  # a corrupt inner node: keep it, its children stay unknown
            keep.add(path.name)
        return keep

    def close(self) -> None:
        """Stop the writer threads and close the lock file."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _write_all(fd: int, parts: list[bytes | memoryview]) -> None:
    """``writev`` until every byte is written (it may stop short, e.g. near a full disk)."""
    views = [memoryview(p) for p in parts if len(p)]
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views:
            views[0] = views[0][n:]


def _read_chunks(stream: BinaryIO) -> Iterator[bytes]:
    """Full-size chunks from a stream (pipes may return short reads; chunks must not be)."""
    while True:
        chunk = stream.read(unixfs.CHUNK_SIZE)
        if not chunk:
            return
        while len(chunk) < unixfs.CHUNK_SIZE:
            more = stream.read(unixfs.CHUNK_SIZE - len(chunk))
            if not more:
                break
            chunk += more
        yield chunk
