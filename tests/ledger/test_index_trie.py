"""Block tries built bottom up give py-evm's root and nodes: any number of items (the one-,
two- and three-byte index keys around 127/128 and 255/256), values short enough to be
embedded in their parent, empty values (a HexaryTrie deletes those keys), and a real block."""

from __future__ import annotations

import random
from collections.abc import Iterator

import eth.db.trie
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flchain.ledger import index_trie, node_codec
from flchain.ledger.accounts import dev_accounts
from flchain.ledger.embedded import EMBEDDED_CHAIN_ID, make_tester

STOCK = index_trie._ORIGINAL.__wrapped__  # py-evm's builder, without its cache


@pytest.fixture(autouse=True)
def node_codec_installed() -> Iterator[None]:
    # as on the embedded chain (both builders then encode nodes the same fast way; the codec
    # itself is compared with pyrlp's in test_node_codec.py)
    node_codec.install()
    yield


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=70), max_size=40))
def test_small_tries_match_py_evm(values: list[bytes]) -> None:
    items = tuple(values)
    assert index_trie.trie_root_and_nodes(items) == STOCK(items)


@pytest.mark.parametrize("count", [1, 2, 16, 17, 127, 128, 129, 255, 256, 257, 1000])
def test_block_sized_tries_match_py_evm(count: int) -> None:
    rng = random.Random(count)
    items = tuple(rng.randbytes(rng.choice([1, 20, 31, 32, 33, 110, 250])) for _ in range(count))
    root, nodes = index_trie.trie_root_and_nodes(items)
    assert (root, nodes) == STOCK(items)
    assert root in nodes


def test_a_mined_block_has_the_roots_py_evm_builds() -> None:
    tester = make_tester(4)
    accounts = dev_accounts(4)
    tester.holding = True  # all of them in one block, as during a BlockPass
    for sender in accounts[1:]:
        tx = {
            "to": accounts[0].address, "value": 1, "gas": 21_000, "nonce": 0,
            "chainId": EMBEDDED_CHAIN_ID, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 1,
        }  # fmt: skip
        tester.send_raw_transaction(sender.sign_transaction(tx).raw_transaction.to_0x_hex())
    tester.mine_blocks(1)
    assert eth.db.trie._make_trie_root_and_nodes.__wrapped__ is index_trie.trie_root_and_nodes
    chain = tester.backend.chain
    head = chain.get_canonical_head()
    block = chain.get_block_by_header(head)
    assert len(block.transactions) == 3
    receipts = block.get_receipts(chain.chaindb)
    assert STOCK(tuple(t.encode() for t in block.transactions))[0] == head.transaction_root
    assert STOCK(tuple(r.encode() for r in receipts))[0] == head.receipt_root


def test_uninstall_restores_py_evms_builder() -> None:
    index_trie.uninstall()
    try:
        assert eth.db.trie._make_trie_root_and_nodes is index_trie._ORIGINAL
    finally:
        index_trie.install()
