"""The reward tree matches OpenZeppelin's StandardMerkleTree (JS) and MerkleProof (Solidity)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract

from flchain.ledger.merkle import MerkleTreeError, RewardTree, leaf_hash

HARNESS = Path(__file__).parent / "fixtures" / "merkle" / "MerkleProofHarness.json"

# Derived once with @openzeppelin/merkle-tree 1.0.8:
#   StandardMerkleTree.of(VALUES, ["address", "uint256"]) -> root, getProof(2), dump()
VALUES = {
    "0x1111111111111111111111111111111111111111": 5 * 10**18,
    "0x2222222222222222222222222222222222222222": 25 * 10**17,
    "0x3333333333333333333333333333333333333333": 1,
    "0x4444444444444444444444444444444444444444": 0,
    "0x5555555555555555555555555555555555555555": 2**256 - 1,
}
OZ_ROOT = "c77e31eb7c9b337f6acd297673f6dd12d36d1bdb56f0a417741e115d53f00d3c"
OZ_PROOF_OF_THIRD = [
    "b92c48e9d7abe27fd8dfd6b5dfdbfb1c9a463f80c712b66f3a5180a090cccafc",
    "6ef80964aaac49b4a3b3cfb5f32aa027be994713e6572e02d57cad8a12080997",
]
OZ_TREE_INDEX = [4, 6, 5, 7, 8]
OZ_SINGLE_LEAF_ROOT = "eb02c421cfa48976e66dfb29120745909ea3a0f843456c263cf8f1253483e283"


@pytest.fixture(scope="module")
def harness() -> Contract:
    w3 = Web3(EthereumTesterProvider())
    data = json.loads(HARNESS.read_text())
    factory = w3.eth.contract(abi=data["abi"], bytecode=data["bytecode"])
    tx = factory.constructor().transact({"from": w3.eth.accounts[0]})
    address = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
    return w3.eth.contract(address=address, abi=data["abi"])


def accounts(n: int) -> list[str]:
    return [Account.from_key(i.to_bytes(32, "big")).address for i in range(1, n + 1)]


def test_root_proof_and_dump_match_the_openzeppelin_js_library() -> None:
    tree = RewardTree(VALUES)
    assert tree.root.hex() == OZ_ROOT
    third = "0x3333333333333333333333333333333333333333"
    assert [p.hex() for p in tree.proof(third)] == OZ_PROOF_OF_THIRD
    dump = tree.dump()
    assert [v["treeIndex"] for v in dump["values"]] == OZ_TREE_INDEX
    assert dump["tree"][0] == "0x" + OZ_ROOT
    first = "0x1111111111111111111111111111111111111111"
    assert RewardTree({first: 5 * 10**18}).root.hex() == OZ_SINGLE_LEAF_ROOT


def test_a_single_account_tree_has_its_leaf_as_root_and_an_empty_proof() -> None:
    (account,) = accounts(1)
    tree = RewardTree({account: 7})
    assert tree.root == leaf_hash(account, 7)
    assert tree.proof(account) == []
    assert RewardTree.verify(tree.root, account, 7, [])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
def test_every_proof_verifies_on_chain_with_openzeppelin_merkleproof(
    harness: Contract, size: int
) -> None:
    credits = {a: 1000 * (i + 1) for i, a in enumerate(accounts(size))}
    tree = RewardTree(credits)
    for account, amount in credits.items():
        assert harness.functions.leaf(account, amount).call() == leaf_hash(account, amount)
        proof = tree.proof(account)
        assert harness.functions.verify(proof, tree.root, account, amount).call()
        # Any other amount, or another account's proof, is rejected on-chain as in Python.
        assert not harness.functions.verify(proof, tree.root, account, amount + 1).call()
        assert not RewardTree.verify(tree.root, account, amount + 1, proof)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(1, 10**6), st.integers(0, 2**256 - 1), min_size=1, max_size=40))
def test_proofs_verify_and_bind_the_amount(raw: dict[int, int]) -> None:
    credits = {Account.from_key(k.to_bytes(32, "big")).address: v for k, v in raw.items()}
    tree = RewardTree(credits)
    for account, amount in credits.items():
        proof = tree.proof(account)
        assert RewardTree.verify(tree.root, account, amount, proof)
        assert not RewardTree.verify(tree.root, account, amount ^ 1, proof)
        assert len(proof) <= (len(credits) - 1).bit_length()
    # Insertion order does not change the tree (leaves are sorted by hash).
    assert RewardTree(dict(reversed(list(credits.items())))).root == tree.root


def test_dump_round_trips_and_load_rejects_a_tampered_dump() -> None:
    tree = RewardTree(VALUES)
    assert RewardTree.load(json.loads(json.dumps(tree.dump()))).root == tree.root
    tampered = tree.dump()
    tampered["values"][2]["value"][1] = "2"
    with pytest.raises(MerkleTreeError, match="root does not match"):
        RewardTree.load(tampered)
    with pytest.raises(MerkleTreeError, match="standard-v1"):
        RewardTree.load({**tree.dump(), "leafEncoding": ["address", "uint128"]})


def test_lookups_accept_any_address_case() -> None:
    tree = RewardTree({"0x" + "ab" * 20: 9})
    assert tree.amount("0x" + "AB" * 20) == 9
    assert tree.credits == {Web3.to_checksum_address("0x" + "ab" * 20): 9}


@pytest.mark.parametrize(
    ("credits", "message"),
    [
        ({}, "at least one account"),
        ({"0x1234": 1}, "not an address"),
        ({"0x" + "11" * 20: -1}, "must be a uint256"),
        ({"0x" + "11" * 20: 2**256}, "must be a uint256"),
        ({"0x" + "11" * 20: True}, "must be a uint256"),
        ({"0x" + "ab" * 20: 1, "0x" + "AB" * 20: 2}, "appears twice"),
    ],
)
def test_bad_credits_raise_a_clear_error(credits: dict[str, int], message: str) -> None:
    with pytest.raises(MerkleTreeError, match=message):
        RewardTree(credits)


def test_proof_for_an_unknown_account_is_an_error() -> None:
    tree = RewardTree({"0x" + "11" * 20: 1})
    with pytest.raises(MerkleTreeError, match="not in the reward tree"):
        tree.proof("0x" + "22" * 20)
    with pytest.raises(ValueError):  # MerkleTreeError is also a ValueError
        tree.amount("nope")
