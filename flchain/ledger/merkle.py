"""Cumulative reward Merkle trees, byte-compatible with OpenZeppelin's ``StandardMerkleTree``.

A finalized round commits to what every account has been credited in total up to and including
that round. The leaf of ``(account, cumulative_amount)`` is
``keccak256(keccak256(abi.encode(address, uint256)))``; leaves are sorted by hash, pairs are hashed
sorted, and the tree is laid out as in ``@openzeppelin/merkle-tree`` (array heap, leaves at the
end in reverse order), so roots, proofs and :meth:`RewardTree.dump` match the JS library and
``MerkleProof.verify`` on-chain.

>>> tree = RewardTree({"0x" + "11" * 20: 5, "0x" + "22" * 20: 7})
>>> RewardTree.verify(tree.root, "0x" + "11" * 20, 5, tree.proof("0x" + "11" * 20))
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from eth_abi import encode
from eth_utils import is_address, keccak

from flchain.errors import LedgerError
from flchain.types import Address, Digest, to_address

_UINT256_MAX = 2**256 - 1
_LEAF_ENCODING = ["address", "uint256"]


class MerkleTreeError(LedgerError, ValueError):
    """A reward tree cannot be built or queried as asked (the message says why)."""


def leaf_hash(account: str, cumulative_amount: int) -> Digest:
    """The leaf of ``(account, cumulative_amount)``: double keccak of their ABI encoding."""
    return _leaf(*_check_entry(account, cumulative_amount))


def _leaf(account: Address, cumulative_amount: int) -> Digest:
    """:func:`leaf_hash` of an entry :func:`_check_entry` already checked."""
    return Digest(keccak(keccak(encode(_LEAF_ENCODING, [account, cumulative_amount]))))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Commutative node hash: keccak of the two children in ascending byte order."""
    return keccak(a + b if a < b else b + a)


class RewardTree:
    """A Merkle tree over ``{account: cumulative_amount}``.

    Args:
        credits: Cumulative amount credited to each account (at least one entry). Accounts are
            hex addresses in any case; two spellings of one address are an error.
    """

    def __init__(self, credits: Mapping[Address, int]) -> None:
        entries = [_check_entry(account, amount) for account, amount in credits.items()]
        if not entries:
            raise MerkleTreeError("a reward tree needs at least one account")
        self._values: list[tuple[Address, int]] = entries
        self._amounts: dict[Address, int] = dict(entries)
        if len(self._amounts) != len(entries):
            raise MerkleTreeError("the same account appears twice (addresses differ in case only)")
        hashed = sorted((_leaf(a, v), i) for i, (a, v) in enumerate(entries))
        size = 2 * len(hashed) - 1
        self._tree: list[bytes] = [b""] * size
        self._tree_index: dict[Address, int] = {}
        for position, (leaf, value_index) in enumerate(hashed):
            self._tree[size - 1 - position] = leaf
            self._tree_index[entries[value_index][0]] = size - 1 - position
        for i in range(size - 1 - len(hashed), -1, -1):
            self._tree[i] = hash_pair(self._tree[2 * i + 1], self._tree[2 * i + 2])

    @property
    def root(self) -> Digest:
        """The 32-byte root, as a task's ``rewardRoot``."""
        return Digest(self._tree[0])

    @property
    def credits(self) -> dict[Address, int]:
        """Cumulative amount per (checksummed) account."""
        return dict(self._amounts)

    def amount(self, account: str) -> int:
        """The cumulative amount credited to ``account``."""
        return self._amounts[self._lookup(account)]

    def proof(self, account: str) -> list[bytes]:
        """The sibling hashes from ``account``'s leaf up to the root (``MerkleProof`` order)."""
        index = self._tree_index[self._lookup(account)]
        proof = []
        while index > 0:
            sibling = index - 1 if index % 2 == 0 else index + 1
            proof.append(self._tree[sibling])
            index = (index - 1) // 2
        return proof

    @staticmethod
    def verify(root: bytes, account: str, cumulative_amount: int, proof: Iterable[bytes]) -> bool:
        """Whether ``proof`` places ``(account, cumulative_amount)`` under ``root``."""
        node: bytes = leaf_hash(account, cumulative_amount)
        for sibling in proof:
            node = hash_pair(node, bytes(sibling))
        return node == bytes(root)

    def dump(self) -> dict[str, Any]:
        """The tree in ``StandardMerkleTree.dump()`` format (``standard-v1``)."""
        return {
            "format": "standard-v1",
            "leafEncoding": list(_LEAF_ENCODING),
            "tree": ["0x" + node.hex() for node in self._tree],
            "values": [
                {"value": [account, str(amount)], "treeIndex": self._tree_index[account]}
                for account, amount in self._values
            ],
        }

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> RewardTree:
        """Rebuild a tree from :meth:`dump` output (or the JS library's), checking its root."""
        if data.get("format") != "standard-v1" or data.get("leafEncoding") != _LEAF_ENCODING:
            raise MerkleTreeError("not a standard-v1 tree with leaf encoding (address, uint256)")
        try:
            # checked (and checksummed) entry by entry by the constructor
            credits = {Address(str(v["value"][0])): int(v["value"][1]) for v in data["values"]}
            expected = bytes.fromhex(str(data["tree"][0]).removeprefix("0x"))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MerkleTreeError(f"malformed tree dump: {exc}") from exc
        tree = cls(credits)
        if tree.root != expected:
            raise MerkleTreeError("the dumped tree's root does not match its values")
        return tree

    def _lookup(self, account: str) -> Address:
        checksummed, _ = _check_entry(account, 0)
        if checksummed not in self._amounts:
            raise MerkleTreeError(f"account {checksummed} is not in the reward tree")
        return checksummed


def _check_entry(account: str, amount: int) -> tuple[Address, int]:
    if not isinstance(account, str) or not is_address(account):
        raise MerkleTreeError(f"not an address: {account!r}")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= _UINT256_MAX:
        raise MerkleTreeError(f"amount for {account} must be a uint256, got {amount!r}")
    return to_address(account), amount
