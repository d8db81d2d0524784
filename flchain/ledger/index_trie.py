"""A block's transaction, receipt and withdrawal tries built in one pass, bottom up.

py-evm builds each of these tries (keys ``rlp(0)``, ``rlp(1)``, ... and the items' encodings)
by inserting the items one by one into a ``HexaryTrie``: every insertion re-encodes and
re-hashes the whole path from the root, and each node a later insertion replaces is pruned
again, ~9 ms for a block of 100 transactions and as much for its receipts. Here the keys are
sorted once and every node is encoded and hashed exactly once: the same root and the same
``{hash: node}`` dict, for the embedded chain's blocks of 100 and more transactions.

:func:`install` puts :func:`trie_root_and_nodes` behind ``eth.db.trie.make_trie_root_and_nodes``
(behind py-evm's own ``lru_cache``, which block validation and persisting hit again), for every
chain in the process; :func:`uninstall` restores py-evm's.
"""

from __future__ import annotations

import functools
from typing import Any

import eth.db.trie
import rlp
from eth.constants import BLANK_ROOT_HASH
from eth_hash.auto import keccak
from eth_typing import Hash32
from trie.utils.nibbles import encode_nibbles

from flchain.ledger.node_codec import add_nibbles_terminator, bytes_to_nibbles, encode_raw

#: A node as py-trie holds it: bytes, or a (nested) list of bytes.
_Node = Any
#: Keys as nibbles, with their values, sorted by key.
_Pairs = list[tuple[tuple[int, ...], bytes]]


def _hex_prefix(nibbles: tuple[int, ...], leaf: bool) -> bytes:
    """A node's path in hex-prefix form, as py-trie writes it."""
    return encode_nibbles(add_nibbles_terminator(nibbles) if leaf else nibbles)


def trie_root_and_nodes(items: tuple[bytes, ...]) -> tuple[Hash32, dict[Hash32, bytes]]:
    """The root hash of the trie mapping ``rlp(i)`` to ``items[i]``, and its nodes by hash
    (those of 32 bytes or more, and the root): what py-evm's ``_make_trie_root_and_nodes``
    returns for the same items."""
    # An empty value deletes its key from a HexaryTrie (block items are never empty).
    pairs = sorted((bytes_to_nibbles(rlp.encode(i)), item) for i, item in enumerate(items) if item)
    if not pairs:
        return BLANK_ROOT_HASH, {}
    nodes: dict[bytes, bytes] = {}
    root = encode_raw(_build(pairs, 0, nodes))
    root_hash = Hash32(keccak(root))
    nodes[root_hash] = root
    return root_hash, nodes  # type: ignore[return-value]  # keys are all keccak hashes


def _build(pairs: _Pairs, depth: int, nodes: dict[bytes, bytes]) -> _Node:
    """The node over ``pairs`` (sorted, all agreeing on their first ``depth`` nibbles)."""
    first, last = pairs[0][0], pairs[-1][0]
    if len(pairs) == 1:
        return [_hex_prefix(first[depth:], leaf=True), pairs[0][1]]
    # Sorted: the first and the last key share the prefix all of them share.
    common = 0
    limit = min(len(first), len(last)) - depth
    while common < limit and first[depth + common] == last[depth + common]:
        common += 1
    if common:
        branch = _branch(pairs, depth + common, nodes)
        return [_hex_prefix(first[depth : depth + common], leaf=False), _reference(branch, nodes)]
    return _branch(pairs, depth, nodes)


def _branch(pairs: _Pairs, depth: int, nodes: dict[bytes, bytes]) -> _Node:
    slots: list[_Node] = [b""] * 17
    start = 0
    if len(pairs[0][0]) == depth:  # a key that ends here (sorted first): the branch's value
        slots[16] = pairs[0][1]
        start = 1
    while start < len(pairs):
        nibble = pairs[start][0][depth]
        end = start + 1
        while end < len(pairs) and pairs[end][0][depth] == nibble:
            end += 1
        slots[nibble] = _reference(_build(pairs[start:end], depth + 1, nodes), nodes)
        start = end
    return slots


def _reference(node: _Node, nodes: dict[bytes, bytes]) -> _Node:
    """How a parent names ``node``: the node itself when its encoding is under 32 bytes,
    else the hash of its encoding (then kept in ``nodes``)."""
    encoded = encode_raw(node)
    if len(encoded) < 32:
        return node
    key = keccak(encoded)
    nodes[key] = encoded
    return key


_ORIGINAL = eth.db.trie._make_trie_root_and_nodes


def install() -> None:
    """Build every block trie in this process with :func:`trie_root_and_nodes`."""
    eth.db.trie._make_trie_root_and_nodes = functools.lru_cache(128)(trie_root_and_nodes)


def uninstall() -> None:
    """py-evm's own builder again (to compare with it)."""
    eth.db.trie._make_trie_root_and_nodes = _ORIGINAL
