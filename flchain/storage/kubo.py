"""The content store over a Kubo daemon's RPC API, through ipfshttpclient 0.7.0.

``ipfshttpclient.connect()`` refuses any daemon newer than 0.7, so the client is built directly
and the version is checked here against what this module needs. Content is added with Kubo's
defaults made explicit (256 KiB chunks, no raw leaves, CIDv0) and the CID Kubo returns is checked
against our own computation, so a daemon configured differently cannot silently give content a
different name than the embedded store would. Reads go block by block through ``block/get`` and
are re-hashed here: we verify the daemon rather than trust it.

Over a network, two clocks matter. ``timeout`` bounds an RPC call to the daemon (it is on this
machine or next to it); transport failures are retried with a backoff. ``fetch_timeout`` is how
long the daemon may look for a block it does not hold (bitswap asks every connected peer): it is
sent as Kubo's own ``timeout`` option, so the daemon stops looking and answers, and the caller
gets :class:`~flchain.errors.ContentNotFound` naming the CID. A fetch that ran out of time is not
retried: the daemon was asking its peers the whole time, and a retry would only be a longer
``fetch_timeout``; the caller (the committee) reports the update missing instead. The default,
15 s, is ample on a LAN (a connected peer answers a want in milliseconds) and must stay well
under a task's attest window, since a committee member fetches the round's updates one by one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Callable
from typing import TypeVar

import ipfshttpclient
from ipfshttpclient import exceptions as ipfs_exc

from flchain.errors import (
    ConfigError,
    ContentMismatch,
    ContentNotFound,
    StorageError,
    StoreUnavailable,
)
from flchain.storage import unixfs
from flchain.storage.base import DEFAULT_MAX_SIZE, ContentStore
from flchain.types import CID

log = logging.getLogger(__name__)

DEFAULT_API = "/ip4/127.0.0.1/tcp/5001"
#: block/put's ``cid-codec`` option and today's pin/ls output appeared in Kubo 0.19.
MIN_VERSION = (0, 19, 0)
#: Files at least this big log their fetch progress (INFO) every this many bytes.
PROGRESS_STEP = 16 << 20

T = TypeVar("T")


def _parse_version(text: str) -> tuple[int, int, int]:
    core = text.split("-")[0].split("+")[0]
    major, minor, patch = ([int(p) for p in core.split(".")[:3]] + [0, 0])[:3]
    return major, minor, patch


class KuboStore(ContentStore):
    """A :class:`ContentStore` backed by a Kubo daemon (``ipfs daemon``).

    ``timeout`` (seconds) bounds each RPC call; transport failures are retried ``retries``
    times with a short backoff, then raise :class:`~flchain.errors.StoreUnavailable`. A block the
    daemon cannot find on its peers within ``fetch_timeout`` seconds raises
    :class:`~flchain.errors.ContentNotFound`.
    """

    def __init__(
        self,
        api: str = DEFAULT_API,
        timeout: float = 30.0,
        retries: int = 2,
        cid_version: int = 0,
        max_size: int = DEFAULT_MAX_SIZE,
        fetch_timeout: float = 15.0,
    ) -> None:
        if timeout <= 0 or fetch_timeout <= 0 or retries < 0:
            raise ConfigError("KuboStore: timeout and fetch_timeout must be > 0, retries >= 0")
        self.api = api
        self.timeout = timeout
        self.fetch_timeout = fetch_timeout
        self.retries = retries
        self.cid_version = cid_version
        self.max_size = max_size
        # Client(), not ipfshttpclient.connect(): connect() asserts 0.4.23 <= version < 0.8.0 and
        # so refuses every Kubo release since 2021; the version is checked below instead.
        try:
            self._client = ipfshttpclient.Client(api, timeout=timeout, session=True)
        except ipfs_exc.AddressError as exc:
            raise StoreUnavailable(f"invalid IPFS API address {api!r}: {exc}") from None
        info = self._call(lambda: self._client.version())
        version = str(info.get("Version", "?"))
        try:
            ok = _parse_version(version) >= MIN_VERSION
        except ValueError:
            ok = False
        if not ok:
            self.close()
            need = ".".join(map(str, MIN_VERSION))
            raise StoreUnavailable(
                f"IPFS daemon at {api} is version {version}; FLChain needs Kubo >= {need}"
            )
        self.daemon_version = version

    def __repr__(self) -> str:
        return f"KuboStore({self.api!r})"

    def _call(self, fn: Callable[[], T], *, missing: str | None = None) -> T:
        """Run one RPC call with retries; map ipfshttpclient errors onto ours."""
        for attempt in range(self.retries + 1):
            try:
                with warnings.catch_warnings():
                    # ipfshttpclient 0.7 hands urllib3 a long-deprecated argument: harmless noise.
                    warnings.filterwarnings("ignore", "The 'strict'", FutureWarning)
                    return fn()
            except ipfs_exc.TimeoutError:
                if missing is not None:
                    # Only if the daemon ignored its own deadline (see _fetch_opts).
                    raise ContentNotFound(
                        f"{missing} not retrievable from the IPFS daemon within "
                        f"{self.fetch_timeout + self.timeout}s"
                    ) from None
                err: Exception = StoreUnavailable(f"IPFS daemon at {self.api} timed out")
            except (ipfs_exc.ConnectionError, ipfs_exc.ProtocolError) as exc:
                err = StoreUnavailable(f"IPFS daemon at {self.api} unreachable: {exc}")
            except ipfs_exc.ErrorResponse as exc:
                text = str(exc)
                if missing is not None and "context deadline exceeded" in text:
                    # The daemon's own `timeout` option ran out while it asked its peers.
                    raise ContentNotFound(
                        f"{missing} not found on the IPFS network within {self.fetch_timeout}s"
                    ) from None
                if missing is not None and ("not found" in text or "not pinned" in text):
                    raise ContentNotFound(f"{missing}: {text}") from None
                raise StorageError(f"IPFS daemon refused the request: {text}") from None
            except ipfs_exc.Error as exc:
                raise StorageError(f"IPFS RPC failed: {exc}") from None
            if attempt < self.retries:
                time.sleep(0.2 * 2**attempt)
        raise err

    # --- files --------------------------------------------------------------------------

    def put(self, data: bytes, *, pin: bool = True) -> CID:
        """``ipfs add`` with explicit defaults; checks the daemon's CID against our own."""
        self._check_size(len(data))
        expected = unixfs.cid_for(data)
        result = self._call(
            lambda: self._client.add(
                io.BytesIO(data),
                pin=pin,
                chunker=f"size-{unixfs.CHUNK_SIZE}",
                raw_leaves=False,
                cid_version=0,
            )
        )
        got = result["Hash"]
        if got != expected:
            raise ContentMismatch(
                f"IPFS daemon named the content {got}, expected {expected} "
                "(check its Import.* config)"
            )
        return unixfs.root_cid(unixfs.parse_cid(expected), self.cid_version)

    def _fetch_opts(self) -> dict[str, object]:
        """Keyword arguments for a call that may fetch from peers: the daemon gives up after
        ``fetch_timeout`` (Kubo's ``timeout`` option) and answers before our socket timeout."""
        return {
            "opts": {"timeout": f"{self.fetch_timeout}s"},
            "timeout": self.fetch_timeout + self.timeout,
        }

    def get(self, cid: CID | str) -> bytes:
        """The file's bytes, every block re-hashed here; big files log their progress."""
        parsed = unixfs.parse_cid(cid)
        pieces: list[memoryview] = []
        done, next_report = 0, PROGRESS_STEP
        for piece in unixfs.read_file(parsed, self._get_block_bytes, self.max_size):
            pieces.append(piece)
            done += len(piece)
            if done >= next_report:
                log.info("fetched %.1f MiB of %s", done / (1 << 20), parsed)
                next_report += PROGRESS_STEP
        return b"".join(pieces)

    def _get_block_bytes(self, cid: bytes) -> bytes:
        return self.get_block(unixfs.cid_text(cid))

    def get_block(self, cid: CID | str) -> bytes:
        """``block/get``, re-hashed against ``cid``."""
        parsed = unixfs.parse_cid(cid)
        block: bytes = self._call(
            lambda: self._client.block.get(str(parsed), **self._fetch_opts()), missing=str(parsed)
        )
        if unixfs.hash_parts([block]) != parsed.digest:
            raise ContentMismatch(f"IPFS daemon returned a block that does not hash to {parsed}")
        return block

    def put_block(self, cid: CID | str, block: bytes) -> None:
        """``block/put`` with the CID's codec; the daemon's answer must name the same block."""
        parsed = unixfs.parse_cid(cid)
        if unixfs.hash_parts([block]) != parsed.digest:
            raise ContentMismatch(f"block does not hash to {cid}")
        opts = {"cid-codec": parsed.codec.name, "mhtype": "sha2-256"}
        result = self._call(lambda: self._client.block.put(io.BytesIO(block), opts=opts))
        if unixfs.parse_cid(result["Key"]).digest != parsed.digest:
            raise ContentMismatch(f"IPFS daemon stored the block as {result['Key']}, not {cid}")

    def has(self, cid: CID | str) -> bool:
        """``block/stat --offline``: whether the daemon holds the root block locally."""
        parsed = unixfs.parse_cid(cid)
        try:
            self._call(lambda: self._client.block.stat(str(parsed), offline=True))
        except StorageError as exc:
            if isinstance(exc, StoreUnavailable):
                raise
            return False
        return True

    # --- pins ---------------------------------------------------------------------------

    def pin(self, cid: CID | str) -> None:
        """``pin/add`` (recursive); fetches missing blocks through the daemon."""
        parsed = unixfs.parse_cid(cid)
        self._call(
            lambda: self._client.pin.add(str(parsed), **self._fetch_opts()), missing=str(parsed)
        )

    def unpin(self, cid: CID | str) -> None:
        """``pin/rm``; a no-op when not pinned."""
        parsed = unixfs.parse_cid(cid)
        with contextlib.suppress(ContentNotFound):
            self._call(lambda: self._client.pin.rm(str(parsed)), missing=str(parsed))

    def pins(self) -> list[CID]:
        """``pin/ls --type=recursive`` (Kubo reports CIDv0 roots as ``Qm...``)."""
        result = self._call(lambda: self._client.pin.ls(type="recursive"))
        return sorted(CID(k) for k in result["Keys"])

    def gc(self) -> int:
        """``repo/gc``: remove every block no pin reaches; return how many were removed."""
        # The daemon streams one line per removed block; a big repo may take a while, but each
        # line comes well within `timeout` of the previous one.
        removed = self._call(lambda: self._client.repo.gc(quiet=False))
        return sum(1 for entry in removed if entry.get("Key"))

    def close(self) -> None:
        """Close the HTTP session."""
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
