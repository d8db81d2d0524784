"""CARv1 export/import: round trips, other producers' layouts, and malformed files."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from multiformats import CID as MFCID
from multiformats import varint

from flchain.errors import ContentNotFound, InvalidCAR
from flchain.storage import LocalStore, cid_for, export_car, import_car
from flchain.storage import car as carmod
from flchain.storage.unixfs import CHUNK_SIZE, decode_node


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    with LocalStore(tmp_path / "a", durable=False) as s:
        yield s


@pytest.fixture
def other(tmp_path: Path) -> Iterator[LocalStore]:
    with LocalStore(tmp_path / "b", durable=False) as s:
        yield s


def _car(roots: list[MFCID], sections: list[tuple[bytes, bytes]]) -> bytes:
    header = carmod.encode_header(roots)
    out = varint.encode(len(header)) + header
    for cid, block in sections:
        out += varint.encode(len(cid) + len(block)) + cid + block
    return out


def _exported(store: LocalStore, cid: str) -> bytes:
    buf = io.BytesIO()
    export_car(store, cid, buf)
    return buf.getvalue()


def test_export_layout(store: LocalStore) -> None:
    """Header {roots, version: 1}, then the root block first and each block once."""
    data = b"\x00" * CHUNK_SIZE * 3 + b"tail"  # three identical leaves: stored once
    cid = store.put(data)
    raw = _exported(store, cid)
    roots, sections = carmod.iter_car(io.BytesIO(raw))
    blocks = list(sections)
    assert [str(r) for r in roots] == [cid]
    assert MFCID.decode(blocks[0][0]) == MFCID.decode(cid)
    assert len(blocks) == 3  # root, the zero leaf once, the tail leaf
    assert len(decode_node(blocks[0][1]).links) == 4
    assert raw[1:8] == b"\xa2eroots"  # canonical DAG-CBOR: the same header bytes as go-car


def test_round_trip_v1_root(store: LocalStore, other: LocalStore) -> None:
    data = hashlib.shake_256(b"v1").digest(CHUNK_SIZE + 9)
    cid = cid_for(data, cid_version=1)
    store.put(data)
    car = _exported(store, cid)
    assert import_car(other, io.BytesIO(car)) == [cid]
    assert other.get(cid) == data
    assert _exported(other, cid) == car  # export is deterministic


def test_import_raw_leaves_dag(other: LocalStore) -> None:
    """A DAG as `ipfs add --cid-version=1` makes it (raw leaves, CIDv1 links) is readable."""
    chunks = [b"a" * 10, b"b" * 20]
    leaves = [(bytes(MFCID("base32", 1, "raw", _mh(c))), c) for c in chunks]
    links = b"".join(
        _field(2, _field(1, cid) + _field(2, b"") + b"\x18" + varint.encode(len(c)))
        for cid, c in leaves
    )
    unixfs_data = b"\x08\x02\x18\x1e\x20\x0a\x20\x14"  # File, filesize 30, blocksizes 10, 20
    root_block = links + _field(1, unixfs_data)
    root = MFCID("base32", 1, "dag-pb", _mh(root_block))
    car = _car([root], [(bytes(root), root_block), *leaves])
    assert import_car(other, io.BytesIO(car)) == [str(root)]
    assert other.get(str(root)) == b"a" * 10 + b"b" * 20


def _mh(block: bytes) -> bytes:
    return b"\x12\x20" + hashlib.sha256(block).digest()


def _field(n: int, value: bytes) -> bytes:
    return bytes([n << 3 | 2]) + varint.encode(len(value)) + value


def test_export_unknown(store: LocalStore) -> None:
    with pytest.raises(ContentNotFound):
        export_car(store, cid_for(b"never stored"), io.BytesIO())


@pytest.fixture
def good_car(store: LocalStore) -> bytes:
    return _exported(store, store.put(hashlib.shake_256(b"g").digest(2 * CHUNK_SIZE)))


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda car: b"", "not a CAR"),
        (lambda car: b"\x05hello", "bad CAR header"),
        (lambda car: car[:20], "truncated"),
        (lambda car: car[:-10], "truncated"),
        (lambda car: car[:-1] + bytes([car[-1] ^ 1]), "does not match its hash"),
        (lambda car: car + b"\x03abc", "unsupported CID"),
        (lambda car: car.replace(b"gversion\x01", b"gversion\x02", 1), "CAR version 2"),
    ],
    ids=["empty", "garbage", "cut-header", "cut-block", "flipped-byte", "bad-cid", "carv2"],
)
def test_malformed_car(other: LocalStore, good_car: bytes, mangle, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidCAR, match=match):
        import_car(other, io.BytesIO(mangle(good_car)))


def test_incomplete_car(other: LocalStore, good_car: bytes) -> None:
    roots, sections = carmod.iter_car(io.BytesIO(good_car))
    blocks = list(sections)
    with pytest.raises(InvalidCAR, match="incomplete"):
        import_car(other, io.BytesIO(_car(roots, blocks[:-1])))
    assert other.pins() == []


def test_import_from_path(store: LocalStore, other: LocalStore, tmp_path: Path) -> None:
    cid = store.put(b"from a file")
    path = tmp_path / "f.car"
    export_car(store, cid, path)
    assert import_car(other, path) == [cid]
