"""The embedded chain's trie nodes and node keys encoded and decoded without the generic
machinery of pyrlp and py-trie.

py-trie encodes every node it writes with ``rlp.codec.encode_raw`` and decodes every node
it reads with ``rlp.decode``. Both are generic: the encoder asks the ``Atomic`` ABC about
every item (an ``isinstance`` through ``abc`` each time), and the pure-Python decoder builds
the RLP of every item and of every prefix of every list beside the items (for sedes that
cache it), which a raw node never uses. py-evm reads and writes the state's tries through
them ~10,000 times a 100-participant round (every storage slot, account, receipt and
transaction trie). The functions here give the same bytes and the same nested lists for the
same input, 2-4x faster; anything they do not handle exactly (another item type, input that
is not canonical RLP) goes to pyrlp, whose result or error is then the answer. The same for
py-trie's nibble paths (``trie.utils.nibbles``): a key's nibbles through ``bytes.hex`` instead
of a generator per byte, and the hex-prefix decoding and terminator helpers without their
generators and ``to_tuple`` wrappers (same tuples, same errors).

:func:`install` puts them in ``trie.hexary``'s namespace (where HexaryTrie looks them up), for
every trie in the process: the embedded chain installs them when it is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import rlp
import trie.hexary
import trie.utils.nibbles
import trie.utils.nodes
from rlp.codec import encode_raw as rlp_encode_raw
from trie.constants import HP_FLAG_0, HP_FLAG_2, NIBBLE_TERMINATOR

_SHORT_STRING = [bytes([0x80 + n]) for n in range(56)]
_SHORT_LIST = [bytes([0xC0 + n]) for n in range(56)]


class _NotCanonical(Exception):
    """The input is not canonical RLP that the fast path reads: pyrlp decides."""


def encode_raw(item: Any) -> bytes:
    """``rlp.codec.encode_raw``: the RLP of bytes or of (nested) lists and tuples of bytes."""
    kind = type(item)
    if kind is bytes:
        size = len(item)
        if size < 56:
            if size == 1 and item[0] < 0x80:
                return item  # type: ignore[no-any-return]
            return _SHORT_STRING[size] + item  # type: ignore[no-any-return]
        return _long_prefix(0xB7, size) + item  # type: ignore[no-any-return]
    if kind is list or kind is tuple:
        payload = b"".join([encode_raw(x) for x in item])
        size = len(payload)
        if size < 56:
            return _SHORT_LIST[size] + payload
        return _long_prefix(0xF7, size) + payload
    return rlp_encode_raw(item)  # type: ignore[no-any-return]  # bytearray, other sequences, errors


def _long_prefix(base: int, size: int) -> bytes:
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([base + len(length)]) + length


def decode_node(encoded: Any) -> Any:
    """``trie.utils.nodes.decode_node``: a node from its encoding (a blank node stays blank,
    an embedded node, already a list, stays as it is)."""
    if encoded == b"":
        return b""
    if isinstance(encoded, list):
        return encoded
    if type(encoded) is bytes:
        try:
            item, end = _item(encoded, 0, len(encoded))
        except (_NotCanonical, IndexError):
            pass
        else:
            if end == len(encoded):
                return item
    return rlp.decode(encoded)  # not canonical, or not bytes: pyrlp's answer or error


def _item(data: bytes, position: int, end: int) -> tuple[Any, int]:
    """The item at ``position`` (which must end by ``end``) and where it ends. Raises
    :class:`_NotCanonical` (or IndexError) wherever pyrlp would raise, and in no other case
    returns what pyrlp would not."""
    first = data[position]
    if first < 0x80:
        return data[position : position + 1], position + 1
    if first < 0xB8:
        start, stop = position + 1, position + 1 + first - 0x80
        if stop > end or (stop == start + 1 and data[start] < 0x80):
            raise _NotCanonical  # past the end, or one byte that should stand alone
        return data[start:stop], stop
    if first < 0xC0:
        start, stop = _long_payload(data, position, first - 0xB7, end)
        return data[start:stop], stop
    if first < 0xF8:
        start, stop = position + 1, position + 1 + first - 0xC0
        if stop > end:
            raise _NotCanonical
    else:
        start, stop = _long_payload(data, position, first - 0xF7, end)
    items: list[Any] = []
    while start < stop:
        head = data[start]
        if 0x80 <= head < 0xB8:  # a short string (hashes, keys, values): inline
            begin, start = start + 1, start + 1 + head - 0x80
            if start > stop or (start == begin + 1 and data[begin] < 0x80):
                raise _NotCanonical
            items.append(data[begin:start])
        else:
            item, start = _item(data, start, stop)
            items.append(item)
    return items, stop


def _long_payload(data: bytes, position: int, width: int, end: int) -> tuple[int, int]:
    """Where the payload of a long string or list starts and stops (its length in ``width``
    bytes after the first): canonical only (no leading zero, at least 56 bytes)."""
    start = position + 1 + width
    if start > end or data[position + 1] == 0:
        raise _NotCanonical
    size = int.from_bytes(data[position + 1 : start], "big")
    if size < 56 or start + size > end:
        raise _NotCanonical
    return start, start + size


#: Each hex digit's nibble value, indexed by the digit's ASCII code.
_NIBBLE_OF_DIGIT = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))
_TERMINATED = (NIBBLE_TERMINATOR,)


def bytes_to_nibbles(value: bytes) -> tuple[int, ...]:
    """``trie.utils.nibbles.bytes_to_nibbles``: each byte's high then low nibble."""
    return tuple(value.hex().encode().translate(_NIBBLE_OF_DIGIT))


def decode_nibbles(value: bytes) -> tuple[int, ...]:
    """``trie.utils.nibbles.decode_nibbles``: a node key's nibbles from its hex-prefix form."""
    nibbles = bytes_to_nibbles(value)
    flag = nibbles[0]  # IndexError for b"", as py-trie
    raw = nibbles[1:] if flag in (HP_FLAG_0 + 1, HP_FLAG_2 + 1) else nibbles[2:]
    return raw + _TERMINATED if flag in (HP_FLAG_2, HP_FLAG_2 + 1) else raw


def add_nibbles_terminator(nibbles: Sequence[int]) -> tuple[int, ...]:
    """``trie.utils.nibbles.add_nibbles_terminator``."""
    path = tuple(nibbles)
    return path if path and path[-1] == NIBBLE_TERMINATOR else path + _TERMINATED


def remove_nibbles_terminator(nibbles: Sequence[int]) -> tuple[int, ...]:
    """``trie.utils.nibbles.remove_nibbles_terminator``."""
    path = tuple(nibbles)
    return path[:-1] if path and path[-1] == NIBBLE_TERMINATOR else path


#: (module, name, replacement): where py-trie looks each one up.
_REPLACEMENTS: tuple[tuple[Any, str, Any], ...] = (
    (trie.hexary, "encode_raw", encode_raw),
    (trie.hexary, "decode_node", decode_node),
    (trie.hexary, "bytes_to_nibbles", bytes_to_nibbles),
    (trie.hexary, "decode_nibbles", decode_nibbles),
    (trie.utils.nibbles, "bytes_to_nibbles", bytes_to_nibbles),
    (trie.utils.nibbles, "add_nibbles_terminator", add_nibbles_terminator),
    (trie.utils.nibbles, "remove_nibbles_terminator", remove_nibbles_terminator),
    (trie.utils.nodes, "decode_nibbles", decode_nibbles),
    (trie.utils.nodes, "add_nibbles_terminator", add_nibbles_terminator),
    (trie.utils.nodes, "remove_nibbles_terminator", remove_nibbles_terminator),
)

#: py-trie's and pyrlp's own functions, as found before any :func:`install`.
ORIGINALS: dict[str, Any] = {name: getattr(module, name) for module, name, _ in _REPLACEMENTS}


def install() -> None:
    """Make every HexaryTrie in this process use these."""
    for module, name, replacement in _REPLACEMENTS:
        setattr(module, name, replacement)


def uninstall() -> None:
    """py-trie's and pyrlp's own functions again (to compare with them)."""
    for module, name, _ in _REPLACEMENTS:
        setattr(module, name, ORIGINALS[name])
