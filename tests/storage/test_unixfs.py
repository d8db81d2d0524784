"""The UnixFS builder gives exactly the CIDs of `ipfs add` (Kubo) and Debian's ipfs_cid."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multiformats import CID as MFCID
from store_vectors import VECTORS, vector_content

from flchain.errors import InvalidCID
from flchain.storage import unixfs

# The 45-50 MB vectors take a few seconds each (mostly rebuilding their bytes): marked slow,
# but nothing deselects them, so CI runs them.
_BIG = 10_000_000


def _params() -> list[Any]:
    return [
        pytest.param(e, id=f"{e['size']}", marks=[pytest.mark.slow] if e["size"] > _BIG else [])
        for e in VECTORS
    ]


@pytest.mark.parametrize("entry", _params())
def test_vectors(entry: dict[str, Any]) -> None:
    data = vector_content(entry)
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert unixfs.cid_for(data) == entry["cid_v0_kubo"] == entry["cid_v0_ipfs_cid"]
    assert unixfs.cid_for(data, cid_version=1) == entry["cid_v1_dagpb_ipfs_cid"]


def test_vectors_cover_the_layout_edges() -> None:
    sizes = {e["size"] for e in VECTORS}
    chunk, fanout = unixfs.CHUNK_SIZE, unixfs.MAX_LINKS
    assert {0, chunk - 1, chunk, chunk + 1, fanout * chunk, fanout * chunk + 1} <= sizes


def test_two_layer_dag_shape() -> None:
    """174 chunks fit one node; one byte more needs a root over two inner nodes."""
    blocks: list[bytes] = []
    data = b"\x01" * (unixfs.MAX_LINKS * unixfs.CHUNK_SIZE + 1)
    unixfs.build_dag(unixfs.iter_chunks(data), lambda mh, parts: blocks.append(b"".join(parts)))
    root = unixfs.decode_node(blocks[-1])
    assert len(root.links) == 2
    first, second = (b for b in blocks if b[:1] == b"\x12" and b is not blocks[-1])
    assert len(unixfs.decode_node(first).links) == unixfs.MAX_LINKS
    assert len(unixfs.decode_node(second).links) == 1


_sizes = st.one_of(
    st.integers(0, 3 * unixfs.CHUNK_SIZE),
    st.sampled_from([unixfs.CHUNK_SIZE * k + d for k in (1, 2, 4) for d in (-1, 0, 1)]),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(size=_sizes, seed=st.binary(min_size=1, max_size=8), repeat=st.booleans())
def test_random_contents_match_ipfs_cid(
    ipfs_cid: Callable[[bytes, Path], dict[str, str]],
    tmp_path: Path,
    size: int,
    seed: bytes,
    repeat: bool,
) -> None:
    # Repeated bytes give identical chunks (deduplicated links); random bytes do not.
    if repeat:
        data = (seed * (size // len(seed) + 1))[:size]
    else:
        data = hashlib.shake_256(seed).digest(size) if size else b""
    expected = ipfs_cid(data, tmp_path)
    assert unixfs.cid_for(data) == expected["CIDv0"]
    assert unixfs.cid_for(data, cid_version=1) == expected["CIDv1"]


def test_read_file_round_trip_from_blocks() -> None:
    data = hashlib.shake_256(b"x").digest(3 * unixfs.CHUNK_SIZE + 7)
    blocks: dict[bytes, bytes] = {}
    root = unixfs.build_dag(
        unixfs.iter_chunks(data), lambda mh, parts: blocks.__setitem__(mh, b"".join(parts))
    )
    out = b"".join(unixfs.read_file(root, lambda cid: blocks[unixfs.split_cid(cid)[1]]))
    assert out == data


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Qmfoo",
        "not a cid",
        "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5",  # one character short
        "zQmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",  # v0 with a multibase prefix
    ],
)
def test_invalid_cid_strings(bad: str) -> None:
    with pytest.raises(InvalidCID):
        unixfs.parse_cid(bad)
    with pytest.raises(InvalidCID):
        unixfs.cid_bytes(bad)


def test_unsupported_hash_is_invalid() -> None:
    # identity multihash, CIDv1 raw: a valid CID, but not one this store can verify.
    with pytest.raises(InvalidCID, match="identity"):
        unixfs.parse_cid("bafkqaaa")


def test_cid_versions_name_the_same_dag() -> None:
    v0 = unixfs.parse_cid(unixfs.cid_for(b"abc"))
    v1 = unixfs.parse_cid(unixfs.cid_for(b"abc", cid_version=1))
    assert v0.version == 0 and v1.version == 1 and v0.digest == v1.digest


@given(
    digest=st.binary(min_size=32, max_size=32), raw=st.booleans(), version=st.sampled_from([0, 1])
)
def test_fast_cid_text_agrees_with_multiformats(digest: bytes, raw: bool, version: int) -> None:
    """Our hand-rolled base58btc/base32 CID text equals multiformats' encoding."""
    codec = "raw" if raw else "dag-pb"
    reference = MFCID("base32", 1, codec, b"\x12\x20" + digest)
    if version == 0 and not raw:
        reference = reference.set(base="base58btc", version=0)
    assert unixfs.cid_str(bytes(reference)) == str(reference)
    assert unixfs.cid_str(bytes(reference), version) == str(reference)


@given(
    digest=st.binary(min_size=32, max_size=32), raw=st.booleans(), version=st.sampled_from([0, 1])
)
def test_cid_bytes_agrees_with_multiformats(digest: bytes, raw: bool, version: int) -> None:
    """The binary CID of the text forms this module writes (decoded by hand) and of the
    others (multiformats decodes those) is multiformats' binary CID."""
    codec = "raw" if raw else "dag-pb"
    reference = MFCID("base32", 1, codec, b"\x12\x20" + digest)
    if version == 0 and not raw:
        reference = reference.set(base="base58btc", version=0)
    text = str(reference)
    assert unixfs._decode_canonical(text) == bytes(reference)  # the hand-rolled path
    assert unixfs.cid_bytes(text) == bytes(reference)
    assert unixfs.cid_bytes(reference) == bytes(reference)
    if reference.version == 1:  # other bases of the same CID: multiformats' path
        for base in ("base58btc", "base32upper", "base36"):
            other = reference.encode(base)
            assert unixfs._decode_canonical(other) is None
            assert unixfs.cid_bytes(other) == bytes(reference)


def test_cid_bytes_refuses_what_parse_cid_refuses() -> None:
    for bad in ("bafkqaaa", "Qm" + "l" * 44, "b" + "a" * 58, " " + unixfs.cid_for(b"x")[1:]):
        with pytest.raises(InvalidCID):
            unixfs.parse_cid(bad)
        with pytest.raises(InvalidCID):
            unixfs.cid_bytes(bad)
