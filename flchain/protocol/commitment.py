"""The commit-reveal binding of DESIGN.md step 1, computed exactly as ``TrainingTask`` does."""

from __future__ import annotations

import secrets

from eth_abi import encode
from eth_utils import keccak

from flchain.errors import ProtocolError
from flchain.types import Address, Digest, to_address

_COMMIT_TYPES = ["uint256", "address", "address", "uint256", "bytes32", "uint256", "bytes32"]


def new_salt() -> bytes:
    """A fresh 32-byte secret salt; kept by the participant until its reveal."""
    return secrets.token_bytes(32)


def commitment(
    *,
    chain_id: int,
    task: Address,
    sender: Address,
    round_id: int,
    digest: Digest,
    num_samples: int,
    salt: bytes,
) -> bytes:
    """``keccak256(abi.encode(chainid, task, sender, round, digest, numSamples, salt))``.

    Binding the chain, the task and the sender means a commitment copied from another account,
    task or chain can never be revealed by the copier.
    """
    if len(digest) != 32 or len(salt) != 32:
        raise ProtocolError(
            f"digest and salt must be 32 bytes each, got {len(digest)} and {len(salt)}"
        )
    values = [
        chain_id,
        to_address(task),
        to_address(sender),
        round_id,
        bytes(digest),
        num_samples,
        bytes(salt),
    ]
    return keccak(encode(_COMMIT_TYPES, values))
