"""Client sampling: which participants train in a round (a fraction C of them, as in the FedAvg
paper's setup), decided so that anyone can check it from public data.

The round's own committee seed is fixed from the hash of its commit phase's *last* block, after
everyone committed, so a node cannot know it before committing. The draw for round ``r``
therefore uses the newest randomness that exists before round ``r`` opens: the committee seed of
round ``r - 1`` (on-chain in ``roundRecord`` and the ``CommitteeSeedFixed`` event; 0 for round 0
or when that round never fixed one), hashed with the task address and ``r``. Each participant is
then in the sample independently with probability C: ``sha256(seed || address) < C · 2^256``,
so no list of participants is needed and every node, committee member or auditor gets the same
answer from the same public inputs. Nobody chose the previous seed (a block hash), but it is
known for a whole round in advance; a sybil could register addresses that happen to be drawn,
which staking makes costly rather than impossible.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction

from flchain.types import Address


def sampling_seed(task: str, round_id: int, previous_seed: int) -> bytes:
    """The 32-byte seed of round ``round_id``'s sample on ``task``."""
    return hashlib.sha256(
        b"flchain-sample"
        + bytes.fromhex(task.removeprefix("0x").lower())
        + round_id.to_bytes(32, "big")
        + previous_seed.to_bytes(32, "big")
    ).digest()


def threshold(fraction: float) -> int:
    """``floor(fraction · 2^256)``, exactly (the float's exact rational value, no rounding)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"client fraction must be in (0, 1], got {fraction}")
    return int(Fraction(fraction) * 2**256)


def is_sampled(fraction: float, seed: bytes, participant: Address | str) -> bool:
    """Whether ``participant`` trains in the round whose sampling seed is ``seed``."""
    if fraction >= 1:
        return True
    h = hashlib.sha256(seed + bytes.fromhex(participant.removeprefix("0x").lower())).digest()
    return int.from_bytes(h, "big") < threshold(fraction)
