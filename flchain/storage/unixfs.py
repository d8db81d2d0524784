"""UnixFS files as `ipfs add` builds them: pure functions, no store, no daemon.

Kubo's defaults: fixed 256 KiB chunks, each wrapped in a dag-pb node with UnixFS ``File`` data
(raw leaves off), and a balanced DAG whose nodes hold at most 174 links. A file of one chunk is
that single leaf. The protobuf schemas (dag-pb ``PBNode``/``PBLink``, UnixFS ``Data``) are tiny,
so they are encoded by hand below, in the canonical field order dag-pb requires.

CIDv1 here means what Debian's ``ipfs_cid`` prints: the same DAG (CIDv0 links inside), with the
root named as a base32 CIDv1 of codec dag-pb. (``ipfs add --cid-version=1`` would also switch on
raw leaves and so give a different DAG.)
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from multiformats import CID as MFCID

from flchain.errors import ContentMismatch, ContentTooLarge, InvalidCID
from flchain.types import CID

CHUNK_SIZE = 256 * 1024
MAX_LINKS = 174

DAG_PB = 0x70
RAW = 0x55
SHA2_256 = 0x12
_MH_PREFIX = bytes([SHA2_256, 32])

# UnixFS Data.DataType values we read; we only ever write FILE.
UNIXFS_RAW = 0
UNIXFS_FILE = 2

#: Called with each new block: its multihash, and the block's bytes as parts to concatenate.
BlockSink = Callable[[bytes, list[bytes | memoryview]], None]
#: Returns the verified block named by binary CID bytes.
BlockSource = Callable[[bytes], bytes]


def parse_cid(cid: str | CID | MFCID) -> MFCID:
    """Parse a CID string; raise :class:`InvalidCID` unless it is a sha2-256 dag-pb/raw CID."""
    if isinstance(cid, MFCID):
        return _checked(cid, str(cid))
    if not isinstance(cid, str) or not cid:
        raise InvalidCID(f"not a CID: {cid!r}")
    return _parse_text(cid.strip())


@functools.lru_cache(maxsize=1024)
def _parse_text(text: str) -> MFCID:
    # multiformats checks types at run time (~0.1 ms a CID); CIDs are immutable, so cache.
    try:
        parsed = MFCID.decode(text)
    except (ValueError, KeyError, IndexError, TypeError) as exc:  # multiformats raises all four
        raise InvalidCID(f"not a CID: {text!r} ({exc})") from None
    return _checked(parsed, text)


def _checked(parsed: MFCID, text: str) -> MFCID:
    if parsed.codec.code not in (DAG_PB, RAW) or parsed.hashfun.code != SHA2_256:
        raise InvalidCID(
            f"unsupported CID {text}: codec {parsed.codec.name}, hash {parsed.hashfun.name} "
            "(supported: dag-pb or raw with sha2-256)"
        )
    if len(parsed.raw_digest) != 32:
        raise InvalidCID(f"unsupported CID {text}: digest of {len(parsed.raw_digest)} bytes")
    return parsed


def cid_bytes(cid: str | CID | MFCID) -> bytes:
    """The binary form of ``cid``; raise :class:`InvalidCID` as :func:`parse_cid` does.

    The text forms this module writes (base58btc CIDv0, lower-case base32 CIDv1) are decoded
    by hand: a CID seen for the first time costs multiformats ~0.5 ms to parse, and a store
    names every update it is given (see :func:`cid_str`)."""
    if isinstance(cid, str):
        binary = _decode_canonical(cid)
        if binary is not None:
            return binary
    return bytes(parse_cid(cid))


def _decode_canonical(text: str) -> bytes | None:
    """``text`` as binary when it is exactly what :func:`cid_str` writes for a supported CID;
    None otherwise (then multiformats decides)."""
    try:
        if len(text) == 46 and text.startswith("Qm"):
            n = 0
            for char in text:
                n = n * 58 + _B58_INDEX[char]
            binary = n.to_bytes(34, "big")
        elif len(text) == 59 and text.startswith("b"):
            binary = base64.b32decode(text[1:].upper() + "======")  # 36 bytes: 58 chars
        else:
            return None
        return binary if cid_str(binary) == text else None
    except (KeyError, ValueError, OverflowError):  # not base58 / base32, or an unsupported CID
        return None


def split_cid(cid: bytes) -> tuple[int, bytes]:
    """(codec, multihash) of a binary sha2-256 CID, parsed without multiformats' validation cost.

    Used on the hot path (one call per 256 KiB block); raises ``ValueError`` for anything else.
    """
    if len(cid) == 34 and cid[:2] == _MH_PREFIX:
        return DAG_PB, cid
    if len(cid) == 36 and cid[0] == 1 and cid[1] in (DAG_PB, RAW) and cid[2:4] == _MH_PREFIX:
        return cid[1], cid[2:]
    raise ValueError(f"unsupported CID bytes {cid.hex()} (need dag-pb or raw, sha2-256)")


def cid_text(cid: bytes) -> str:
    """A binary CID as text, for messages (never raises)."""
    try:
        return str(from_bytes(cid))
    except (ValueError, KeyError):
        return "0x" + cid.hex()


def from_bytes(cid: bytes) -> MFCID:
    """A binary CID, in the text base IPFS tools print (base58btc for v0, base32 for v1)."""
    parsed = MFCID.decode(cid)
    return parsed.set(base="base32") if parsed.version == 1 else parsed


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {char: i for i, char in enumerate(_B58)}


def _base58(raw: bytes) -> str:
    n, out = int.from_bytes(raw, "big"), []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + "".join(reversed(out))


def cid_str(cid: bytes, version: int | None = None) -> CID:
    """A binary CID as text, optionally as CIDv0/CIDv1 (raw-codec CIDs are always v1).

    Hand-rolled base58btc/base32: multiformats' encoders cost ~1 ms a CID, more than
    hashing a whole megabyte.
    """
    codec, multihash = split_cid(cid)
    if version is None:
        version = 0 if len(cid) == 34 else 1
    if version not in (0, 1):
        raise InvalidCID(f"CID version must be 0 or 1, not {version!r}")
    if version == 0 and codec == DAG_PB:
        return CID(_base58(multihash))
    raw = bytes([1, codec]) + multihash
    return CID("b" + base64.b32encode(raw).decode("ascii").rstrip("=").lower())


def root_cid(cid: MFCID | bytes, version: int) -> CID:
    """``cid`` as CIDv0 or CIDv1 text (the same DAG either way; raw CIDs stay v1)."""
    return cid_str(cid if isinstance(cid, bytes) else bytes(cid), version)


# --- protobuf encoding ------------------------------------------------------------------


def _varint(n: int) -> bytes:
    # multiformats.varint.encode validates its argument's type on every call: too slow here.
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(field_no: int, wire_type: int) -> bytes:
    return _varint(field_no << 3 | wire_type)


def _bytes_field(field_no: int, value: bytes) -> bytes:
    return _key(field_no, 2) + _varint(len(value)) + value


def _uint_field(field_no: int, value: int) -> bytes:
    return _key(field_no, 0) + _varint(value)


def leaf_parts(chunk: bytes | memoryview) -> list[bytes | memoryview]:
    """The dag-pb leaf block for one chunk, as [prefix, chunk, suffix] (the chunk is not copied)."""
    n = len(chunk)
    if n == 0:  # Kubo's empty file: UnixFS File with filesize 0 and no Data field.
        return [_bytes_field(1, _uint_field(1, UNIXFS_FILE) + _uint_field(3, 0))]
    suffix = _uint_field(3, n)
    unixfs_head = _uint_field(1, UNIXFS_FILE) + _key(2, 2) + _varint(n)
    unixfs_len = len(unixfs_head) + n + len(suffix)
    return [_key(1, 2) + _varint(unixfs_len) + unixfs_head, chunk, suffix]


def hash_parts(parts: list[bytes | memoryview]) -> bytes:
    """The sha2-256 multihash of a block given as parts."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return _MH_PREFIX + h.digest()


@dataclass(frozen=True)
class Child:
    """A link from a file node: the child's CID bytes, cumulative block size and file bytes."""

    cid: bytes
    tsize: int
    filesize: int


def node_block(children: list[Child]) -> bytes:
    """An inner dag-pb/UnixFS File node over ``children`` (links first, as dag-pb requires)."""
    links = b"".join(
        _bytes_field(2, _bytes_field(1, c.cid) + _bytes_field(2, b"") + _uint_field(3, c.tsize))
        for c in children
    )
    unixfs = _uint_field(1, UNIXFS_FILE) + _uint_field(3, sum(c.filesize for c in children))
    unixfs += b"".join(_uint_field(4, c.filesize) for c in children)
    return links + _bytes_field(1, unixfs)


# --- building ---------------------------------------------------------------------------


@dataclass
class DagBuilder:
    """Streams chunks into the balanced ``ipfs add`` DAG, handing each block to ``sink``.

    Levels fill bottom-up: every 174 children at one level become a node one level up. That is
    the same tree as Kubo's balanced builder, which fills each subtree completely before the
    next one.
    """

    sink: BlockSink
    max_size: int | None = None
    size: int = 0
    _levels: list[list[Child]] = field(default_factory=lambda: [[]])
    _chunks: int = 0

    def add_chunk(self, chunk: bytes | memoryview) -> None:
        """Add the next chunk (at most :data:`CHUNK_SIZE` bytes; only the last may be shorter)."""
        if chunk:
            parts = leaf_parts(chunk)
            multihash = hash_parts(parts)
            self.sink(multihash, parts)
            self.add_leaf(multihash, parts, len(chunk))

    def add_leaf(self, multihash: bytes, parts: list[bytes | memoryview], size: int) -> None:
        """Add a leaf already hashed (and stored) by the caller, e.g. in a worker thread."""
        self.size += size
        if self.max_size is not None and self.size > self.max_size:
            raise ContentTooLarge(f"content exceeds the store's limit of {self.max_size} bytes")
        self._chunks += 1
        self._push(0, Child(multihash, sum(len(p) for p in parts), size))

    def _push(self, level: int, child: Child) -> None:
        if level == len(self._levels):
            self._levels.append([])
        self._levels[level].append(child)
        if len(self._levels[level]) == MAX_LINKS:
            self._push(level + 1, self._flush(level))

    def _flush(self, level: int) -> Child:
        children, self._levels[level] = self._levels[level], []
        block = node_block(children)
        multihash = _MH_PREFIX + hashlib.sha256(block).digest()
        self.sink(multihash, [block])
        filesize = sum(c.filesize for c in children)
        return Child(multihash, len(block) + sum(c.tsize for c in children), filesize)

    def finish(self) -> bytes:
        """Close the DAG and return its root CID (CIDv0, binary: the root's multihash)."""
        if self._chunks == 0:
            parts = leaf_parts(b"")
            multihash = hash_parts(parts)
            self.sink(multihash, parts)
            self.add_leaf(multihash, parts, 0)
        level = 0
        while True:
            pending = self._levels[level]
            higher = any(self._levels[level + 1 :])
            if not higher and len(pending) == 1:
                return pending[0].cid
            if pending:
                self._push(level + 1, self._flush(level))
            level += 1


def iter_chunks(data: bytes | memoryview, chunk_size: int = CHUNK_SIZE) -> Iterator[memoryview]:
    """Fixed-size chunks of ``data`` without copying it."""
    view = memoryview(data)
    for start in range(0, len(view), chunk_size):
        yield view[start : start + chunk_size]


def build_dag(
    chunks: Iterable[bytes | memoryview], sink: BlockSink, max_size: int | None = None
) -> bytes:
    """Build the DAG of a file given as its chunks; return the binary root CID (v0)."""
    builder = DagBuilder(sink, max_size)
    for chunk in chunks:
        builder.add_chunk(chunk)
    return builder.finish()


def cid_for(data: bytes, cid_version: int = 0) -> CID:
    """The CID ``ipfs add`` gives ``data`` (like ``ipfs add -n``), without storing anything."""
    root = build_dag(iter_chunks(data), lambda cid, parts: None)
    return root_cid(root, cid_version)


# --- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A decoded dag-pb node: its links (CID bytes, tsize) and its ``Data`` field."""

    links: list[tuple[bytes, int]]
    data: memoryview | None


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) pairs of a protobuf message; varints as int, bytes as views."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field_no, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            yield field_no, value
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated length-delimited field")
            yield field_no, buf[pos : pos + n]
            pos += n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def decode_node(block: bytes | memoryview) -> Node:
    """Decode a dag-pb block (without copying its data); ``ValueError`` if it is not one."""
    links: list[tuple[bytes, int]] = []
    data: memoryview | None = None
    for field_no, value in _fields(memoryview(block)):
        if field_no == 2 and isinstance(value, memoryview):
            cid, tsize = b"", 0
            for f, v in _fields(value):
                if f == 1 and isinstance(v, memoryview):
                    cid = bytes(v)
                elif f == 3 and isinstance(v, int):
                    tsize = v
            if not cid:
                raise ValueError("dag-pb link without a hash")
            if data is not None:
                raise ValueError("dag-pb link after the Data field (not canonical)")
            links.append((cid, tsize))
        elif field_no == 1 and isinstance(value, memoryview):
            data = value
        else:
            raise ValueError(f"unexpected dag-pb field {field_no}")
    return Node(links, data)


def decode_unixfs(data: bytes | memoryview) -> tuple[int, memoryview, int | None]:
    """(type, inline data, filesize) of a UnixFS ``Data`` message."""
    kind, inline, filesize = -1, memoryview(b""), None
    for field_no, value in _fields(memoryview(data)):
        if field_no == 1 and isinstance(value, int):
            kind = value
        elif field_no == 2 and isinstance(value, memoryview):
            inline = value
        elif field_no == 3 and isinstance(value, int):
            filesize = value
    return kind, inline, filesize


def file_size(cid: bytes, block: bytes) -> int | None:
    """The file size a UnixFS root block declares (raw blocks: their length), if any."""
    if split_cid(cid)[0] == RAW:
        return len(block)
    try:
        return decode_unixfs(decode_node(block).data or b"")[2]
    except ValueError:
        return None


def read_file(
    cid: MFCID | bytes,
    get_block: BlockSource,
    max_size: int | None = None,
    get_many: Callable[[list[bytes]], Iterator[bytes]] | None = None,
) -> Iterator[memoryview]:
    """Yield a UnixFS file's bytes in order, fetching (already verified) blocks by CID bytes.

    ``get_many`` may fetch a node's children concurrently (in order); by default one by one.
    Reads any chunking and layout (balanced, trickle, raw leaves), not only our own.
    """
    walk = _Walk(get_many or (lambda cids: map(get_block, cids)))
    root_bytes = cid if isinstance(cid, bytes) else bytes(cid)
    name = str(cid) if isinstance(cid, MFCID) else f"CID 0x{cid.hex()}"
    root = get_block(root_bytes)
    declared = file_size(root_bytes, root)
    if max_size is not None and declared is not None and declared > max_size:
        raise ContentTooLarge(f"{name} is {declared} bytes, over the limit of {max_size}")
    total = 0
    for piece in _walk(root_bytes, root, walk, 0):
        total += len(piece)
        if max_size is not None and total > max_size:
            raise ContentTooLarge(f"{name} exceeds the limit of {max_size} bytes")
        yield piece
    if declared is not None and total != declared:
        raise ContentMismatch(f"{name} declares {declared} bytes but its blocks hold {total}")


#: Deepest DAG read: a balanced ``ipfs add`` DAG of a terabyte is 4 levels deep.
MAX_DEPTH = 64
#: Blocks a read may visit beyond one per byte returned: stops DAG bombs (a node linking the
#: same empty leaf 174 times, itself linked 174 times, ...) that cost work but yield nothing.
SPARE_VISITS = 1024


@dataclass
class _Walk:
    many: Callable[[list[bytes]], Iterator[bytes]]
    blocks: int = 0
    size: int = 0

    def visit(self, cid: bytes, depth: int) -> None:
        self.blocks += 1
        if depth > MAX_DEPTH:
            raise ContentMismatch(f"DAG at {cid_text(cid)} is over {MAX_DEPTH} levels deep")
        if self.blocks > self.size + SPARE_VISITS:
            raise ContentMismatch(
                f"DAG at {cid_text(cid)} links far more blocks ({self.blocks}) than bytes "
                f"({self.size}): not a file"
            )


def _walk(cid: bytes, block: bytes, walk: _Walk, depth: int) -> Iterator[memoryview]:
    walk.visit(cid, depth)
    if split_cid(cid)[0] == RAW:
        walk.size += len(block)
        yield memoryview(block)
        return
    try:
        node = decode_node(block)
        kind, piece, _ = decode_unixfs(node.data or b"")
    except ValueError as exc:
        raise ContentMismatch(f"block {cid_text(cid)} is not a UnixFS file node: {exc}") from None
    if kind not in (UNIXFS_FILE, UNIXFS_RAW):
        raise ContentMismatch(f"block {cid_text(cid)} is UnixFS type {kind}, not a file")
    if piece:
        walk.size += len(piece)
        yield piece  # a node's own data comes before its children's
    links = [link for link, _ in node.links]
    for link, child in zip(links, walk.many(links), strict=True):
        yield from _walk(link, child, walk, depth + 1)


def links_of(cid: bytes, block: bytes) -> list[bytes]:
    """The binary CIDs a block links to (none for raw blocks); ``ValueError`` if not dag-pb."""
    if split_cid(cid)[0] == RAW:
        return []
    return [link for link, _ in decode_node(block).links]


def has_links(first_bytes: bytes) -> bool:
    """Whether a canonical dag-pb block starting with ``first_bytes`` has links.

    Canonical dag-pb puts every link (field 2, key byte 0x12) before the Data field (0x0a), so
    one byte tells a leaf from an inner node without reading the whole 256 KiB leaf.
    """
    return first_bytes[:1] == b"\x12"
