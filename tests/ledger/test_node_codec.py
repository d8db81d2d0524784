"""The trie node codec gives pyrlp's bytes, items and errors, only faster: random nested
items, random and mutated encodings, the non-canonical forms pyrlp refuses, and tries built
with it against tries built with pyrlp (same root hashes)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import rlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rlp.codec import encode_raw as rlp_encode_raw
from trie import HexaryTrie
from trie.utils.nodes import decode_node as stock_decode_node

from flchain.ledger import node_codec

STOCK = node_codec.ORIGINALS
#: The stock functions stay in place for all of a test's examples (nothing changes them).
FIXTURE = HealthCheck.function_scoped_fixture


@pytest.fixture
def stock_trie() -> Iterator[None]:
    """py-trie's own functions while the test runs (py-trie's decode_nibbles calls its
    module's bytes_to_nibbles: installed, that would be ours), as this process had them after."""
    installed = {name: getattr(module, name) for module, name, _ in node_codec._REPLACEMENTS}
    node_codec.uninstall()
    try:
        yield
    finally:
        for module, name, _ in node_codec._REPLACEMENTS:
            setattr(module, name, installed[name])


items = st.recursive(
    st.binary(max_size=80),
    lambda children: st.lists(children, max_size=18),
    max_leaves=40,
)


def outcome(decode: Any, data: bytes) -> tuple[str, Any]:
    try:
        return ("value", decode(data))
    except rlp.DecodingError:
        return ("error", None)


@settings(max_examples=400, deadline=None)
@given(items)
def test_encodes_and_decodes_as_pyrlp_does(item: Any) -> None:
    encoded = rlp_encode_raw(item)
    assert node_codec.encode_raw(item) == encoded
    assert node_codec.encode_raw(tuple(item) if isinstance(item, list) else item) == encoded
    if encoded != b"":
        assert node_codec.decode_node(encoded) == rlp.decode(encoded)


@settings(max_examples=400, deadline=None)
@given(items, st.data())
def test_any_bytes_decode_to_what_pyrlp_gives_or_fail_as_it_does(item: Any, data: Any) -> None:
    """Cut, extended or with one byte changed, an encoding is either decoded to pyrlp's
    items or refused with pyrlp's error."""
    encoded = bytearray(rlp_encode_raw(item))
    change = data.draw(st.sampled_from(["cut", "extend", "flip"]))
    if change == "cut" and len(encoded) > 1:
        del encoded[data.draw(st.integers(1, len(encoded) - 1)) :]
    elif change == "extend":
        encoded += data.draw(st.binary(min_size=1, max_size=4))
    elif encoded:
        at = data.draw(st.integers(0, len(encoded) - 1))
        encoded[at] = data.draw(st.integers(0, 255))
    mutated = bytes(encoded)
    if mutated == b"":
        return
    assert outcome(node_codec.decode_node, mutated) == outcome(rlp.decode, mutated)


@pytest.mark.parametrize(
    "data",
    [
        b"\x81\x05",  # one byte below 0x80 as a string of one
        b"\xc2\x81\x05",  # the same in a list
        b"\xb8\x05hello",  # a long-string prefix for a short string
        b"\xb9\x00\x38" + b"x" * 56,  # a length with a leading zero
        b"\xf8\x02\x80\x80",  # a long-list prefix for a short list
        b"\xc3\x80\x80",  # a list shorter than it says
        b"\xc1\x80\x80",  # a list longer than it says
        b"\x83ab",  # a string shorter than it says
        b"\x80\x80",  # superfluous bytes
    ],
)
def test_non_canonical_encodings_fail_as_in_pyrlp(data: bytes) -> None:
    with pytest.raises(rlp.DecodingError):
        rlp.decode(data)
    with pytest.raises(rlp.DecodingError):
        node_codec.decode_node(data)


def test_blank_and_embedded_nodes_pass_through() -> None:
    assert node_codec.decode_node(b"") == stock_decode_node(b"") == b""
    embedded = [b"\x20", b"\x01"]
    assert node_codec.decode_node(embedded) is embedded


def test_other_items_are_pyrlps_to_encode() -> None:
    assert node_codec.encode_raw(bytearray(b"\x01\x02")) == rlp_encode_raw(bytearray(b"\x01\x02"))
    with pytest.raises(rlp.EncodingError):
        node_codec.encode_raw(5)


@settings(max_examples=300, deadline=None, suppress_health_check=[FIXTURE])
@given(st.binary(max_size=40))
def test_nibble_paths_as_py_trie_makes_them(stock_trie: None, value: bytes) -> None:
    assert node_codec.bytes_to_nibbles(value) == STOCK["bytes_to_nibbles"](value)
    if value:
        assert node_codec.decode_nibbles(value) == STOCK["decode_nibbles"](value)
    else:
        with pytest.raises(IndexError):
            STOCK["decode_nibbles"](value)
        with pytest.raises(IndexError):
            node_codec.decode_nibbles(value)


@settings(max_examples=300, deadline=None, suppress_health_check=[FIXTURE])
@given(st.lists(st.integers(0, 16), max_size=12), st.booleans())
def test_terminators_as_py_trie_handles_them(
    stock_trie: None, path: list[int], as_tuple: bool
) -> None:
    given_path: Any = tuple(path) if as_tuple else path
    for ours, theirs in [
        (node_codec.add_nibbles_terminator, STOCK["add_nibbles_terminator"]),
        (node_codec.remove_nibbles_terminator, STOCK["remove_nibbles_terminator"]),
    ]:
        assert ours(given_path) == theirs(given_path)
        assert type(ours(given_path)) is tuple


def build_trie(seed: int) -> bytes:
    rng = random.Random(seed)
    keys = [rng.randbytes(32) for _ in range(300)]
    t = HexaryTrie({}, prune=True)
    for key in keys:
        t[key] = rlp.encode(rng.getrandbits(rng.choice([8, 64, 256, 600])))
    for key in rng.sample(keys, 100):
        del t[key]
    for key in keys[:50]:
        t[key] = rng.randbytes(rng.choice([1, 20, 70]))
    assert all(t[key] == t.get(key) for key in keys)
    return t.root_hash


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tries_built_with_it_have_pyrlps_root_hashes(stock_trie: None, seed: int) -> None:
    stock = build_trie(seed)
    node_codec.install()
    assert build_trie(seed) == stock
