"""The typed vocabulary shared across FLChain's layers."""

from __future__ import annotations

from typing import NewType

#: A checksummed 20-byte Ethereum address, ``0x``-prefixed.
Address = NewType("Address", str)
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
