"""The commit-reveal binding of DESIGN.md step 1, computed exactly as ``TrainingTask`` does."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from eth_abi import encode
from eth_utils import keccak

from flchain.errors import ProtocolError
from flchain.types import Address, Digest, to_address

_COMMIT_TYPES = ["uint256", "address", "address", "uint256", "bytes32", "uint256", "bytes32"]
_SALT_TAG = b"flchain commit salt\x00"


def new_salt() -> bytes:
    """A fresh 32-byte secret salt; kept by the participant until its reveal."""
    return secrets.token_bytes(32)


def derived_salt(
    private_key: bytes, *, chain_id: int, task: Address, round_id: int, digest: Digest
) -> bytes:
    """The 32-byte salt for committing ``digest`` in ``round_id``: HMAC-SHA256 under the
    sender's private key of what the commitment binds, as RFC 6979 derives signature nonces.

    As secret as a random salt to anyone without the key (HMAC is a pseudo-random function;
    revealing it shows nothing of the key), and the same in every run of the same steps, so a
    federation on a deterministic chain (the embedded one) reproduces its blocks, and with
    them its committee draws.
    """
    if len(private_key) != 32 or len(digest) != 32:
        raise ProtocolError(
            f"private key and digest must be 32 bytes each, got {len(private_key)} "
            f"and {len(digest)}"
        )
    # Fixed-width fields after a domain tag: one reading only (eth-abi's encoder would cost
    # ~0.1 ms a commit for the same property).
    message = b"".join(
        (
            _SALT_TAG,
            chain_id.to_bytes(32, "big"),
            bytes.fromhex(to_address(task)[2:]),
            round_id.to_bytes(32, "big"),
            bytes(digest),
        )
    )
    return hmac.new(bytes(private_key), message, hashlib.sha256).digest()


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
