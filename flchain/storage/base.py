"""The content-store interface: bytes in, IPFS CID out, and back.

Like Flower's ``Strategy`` or eth-tester's backends, one small abstract class with swappable
implementations: :class:`~flchain.storage.local.LocalStore` (a directory, no daemon) and
:class:`~flchain.storage.kubo.KuboStore` (a Kubo daemon's RPC API). Both name content exactly as
``ipfs add`` does, so a CID written on-chain resolves the same way in either.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO

from flchain.errors import ContentMismatch, ContentTooLarge
from flchain.types import CID

#: Default size limit for one piece of content (model updates are far smaller).
DEFAULT_MAX_SIZE = 1 << 30


class ContentStore(ABC):
    """Content-addressed storage of files, named by their ``ipfs add`` CID.

    Errors (all from :mod:`flchain.errors`): :class:`~flchain.errors.ContentNotFound` for an
    unknown CID, :class:`~flchain.errors.ContentMismatch` when bytes do not hash to their CID,
    :class:`~flchain.errors.ContentTooLarge` over :attr:`max_size`,
    :class:`~flchain.errors.InvalidCID` for a malformed CID, and
    :class:`~flchain.errors.StoreUnavailable` when the backing service cannot be reached.
    """

    #: Largest content, in bytes, that ``put`` accepts and ``get`` returns.
    max_size: int = DEFAULT_MAX_SIZE
    #: 0 for ``Qm...`` CIDs (Kubo's default), 1 for ``bafy...``; the same DAG either way.
    cid_version: int = 0

    @abstractmethod
    def put(self, data: bytes, *, pin: bool = True) -> CID:
        """Store ``data`` as a UnixFS file and return its CID; pinned unless ``pin=False``."""

    def put_named(self, data: bytes, cid: CID | str, *, pin: bool = True) -> CID:
        """:meth:`put` of ``data`` that the caller already named ``cid`` (hashed elsewhere, by
        a training worker, say); :class:`~flchain.errors.ContentMismatch` if ``cid`` is not
        its name. Here it is stored and its name compared; a store that writes behind its puts
        skips the hashing on the caller's thread and compares in its writer instead."""
        stored = self.put(data, pin=pin)
        if stored != cid:
            raise ContentMismatch(f"content named {cid} is stored as {stored}")
        return stored

    @abstractmethod
    def get(self, cid: CID | str) -> bytes:
        """The bytes of the file named ``cid``, verified against it."""

    @abstractmethod
    def has(self, cid: CID | str) -> bool:
        """Whether the root block of ``cid`` is held by this store (no network lookup)."""

    @abstractmethod
    def pin(self, cid: CID | str) -> None:
        """Keep ``cid`` and everything it links to through garbage collection."""

    @abstractmethod
    def unpin(self, cid: CID | str) -> None:
        """Drop the pin on ``cid``; a no-op if it is not pinned."""

    @abstractmethod
    def pins(self) -> list[CID]:
        """The CIDs pinned (recursively) in this store."""

    @abstractmethod
    def gc(self) -> int:
        """Remove every block no pin reaches; return how many blocks were removed."""

    @abstractmethod
    def get_block(self, cid: CID | str) -> bytes:
        """One raw block, verified against its CID (used for CAR export)."""

    @abstractmethod
    def put_block(self, cid: CID | str, block: bytes) -> None:
        """Store one raw block under ``cid`` after checking that it hashes to it."""

    def put_file(self, path: Path, *, pin: bool = True) -> CID:
        """Store the file at ``path``; stores that can stream override this."""
        with open(path, "rb") as f:
            return self.put_stream(f, pin=pin)

    def put_stream(self, stream: BinaryIO, *, pin: bool = True) -> CID:
        """Store everything read from ``stream``."""
        data = stream.read(self.max_size + 1)
        self._check_size(len(data))
        return self.put(data, pin=pin)

    def _check_size(self, size: int) -> None:
        if size > self.max_size:
            raise ContentTooLarge(f"content exceeds the store's limit of {self.max_size} bytes")

    def flush(self, cid: CID | str | None = None) -> None:  # noqa: B027 - optional hook
        """Wait until every put so far (with ``cid``: at least every put of ``cid``) is in the
        backing store, where other processes can read it (a store that writes behind its
        puts; the others, which write at once, do nothing)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing open
        """Release connections or handles the store holds."""

    def __enter__(self) -> ContentStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class DelegatingStore(ContentStore):
    """A store that forwards everything to ``inner``: the base of wrappers that change only
    a few methods (a subclass overrides ``put`` and ``get``, say, and inherits the rest)."""

    def __init__(self, inner: ContentStore) -> None:
        self.inner = inner
        self.max_size, self.cid_version = inner.max_size, inner.cid_version

    def put(self, data: bytes, *, pin: bool = True) -> CID:
        return self.inner.put(data, pin=pin)

    def put_named(self, data: bytes, cid: CID | str, *, pin: bool = True) -> CID:
        return self.inner.put_named(data, cid, pin=pin)

    def get(self, cid: CID | str) -> bytes:
        return self.inner.get(cid)

    def has(self, cid: CID | str) -> bool:
        return self.inner.has(cid)

    def pin(self, cid: CID | str) -> None:
        self.inner.pin(cid)

    def unpin(self, cid: CID | str) -> None:
        self.inner.unpin(cid)

    def pins(self) -> list[CID]:
        return self.inner.pins()

    def gc(self) -> int:
        return self.inner.gc()

    def get_block(self, cid: CID | str) -> bytes:
        return self.inner.get_block(cid)

    def put_block(self, cid: CID | str, block: bytes) -> None:
        self.inner.put_block(cid, block)

    def put_file(self, path: Path, *, pin: bool = True) -> CID:
        return self.inner.put_file(path, pin=pin)

    def put_stream(self, stream: BinaryIO, *, pin: bool = True) -> CID:
        return self.inner.put_stream(stream, pin=pin)

    def flush(self, cid: CID | str | None = None) -> None:
        self.inner.flush(cid)

    def close(self) -> None:
        self.inner.close()
