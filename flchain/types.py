"""The typed vocabulary shared across FLChain's layers."""

from __future__ import annotations

import functools
from typing import NewType

from eth_utils import to_checksum_address

#: A checksummed 20-byte Ethereum address, ``0x``-prefixed. Make one with :func:`to_address`.
Address = NewType("Address", str)


@functools.lru_cache(maxsize=4096)
def to_address(value: str | bytes) -> Address:
    """``value`` as a checksummed :data:`Address`; raises ``ValueError`` if it is none.

    Cached: a federation checksums the same few hundred addresses thousands of times a round
    (every argument, log and answer), and eth-utils takes ~19 µs each (a keccak and checks)."""
    return Address(to_checksum_address(value))


#: A 32-byte digest (sha-256 of canonical bytes unless stated otherwise).
Digest = NewType("Digest", bytes)
#: A content identifier as text (``Qm...`` for CIDv0, ``bafy...`` for CIDv1).
CID = NewType("CID", str)
#: An amount of ERC-20 token in its smallest unit.
TokenAmount = NewType("TokenAmount", int)
#: A block number.
BlockNumber = NewType("BlockNumber", int)
#: A task's round number, starting at 0.
RoundId = NewType("RoundId", int)
