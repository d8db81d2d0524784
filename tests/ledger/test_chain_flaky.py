"""Retries through a real, deliberately unreliable HTTP proxy (``support.rpc_proxy.RPCProxy``):
nothing lost, nothing doubled."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from support.rpc_proxy import Action, RPCProxy, Schedule

from flchain.errors import RPCUnavailable
from flchain.ledger.chain import Chain, TxRequest

RPC_BACKENDS = ["devchain", pytest.param("anvil", marks=pytest.mark.anvil)]


def flaky_schedule() -> Schedule:
    """A fixed schedule of faults:

    * every 2nd ``eth_sendRawTransaction`` is forwarded and then its reply is dropped (the
      node has the transaction, the client cannot know), and so is every odd batch of them;
    * every 5th other request is dropped before forwarding (connection closed);
    * every 7th other request gets an HTTP 503.
    """
    others = itertools.count(1)

    def decide(method: str, n: int) -> Action:
        if method == "eth_sendRawTransaction":
            return "lose_reply" if n % 2 == 0 else "forward"
        if method == "batch:eth_sendRawTransaction":
            return "lose_reply" if n % 2 == 1 else "forward"
        k = next(others)
        return "drop" if k % 5 == 0 else "http_503" if k % 7 == 0 else "forward"

    return decide


@pytest.fixture
def flaky_chain(rpc_url: str) -> Iterator[tuple[Chain, RPCProxy]]:
    direct = Chain.connect(rpc_url)
    snapshot = direct.snapshot()
    with RPCProxy(rpc_url, flaky_schedule()) as proxy:
        yield Chain.connect(proxy.url, retries=8, timeout=5, receipt_timeout=30), proxy
    direct.revert(snapshot)


@pytest.mark.parametrize("rpc_url", RPC_BACKENDS, indirect=True)
def test_transactions_land_exactly_once_through_a_flaky_proxy(
    flaky_chain: tuple[Chain, RPCProxy],
    fixture_artifact: dict,
    send_concurrently: Any,
    assert_exactly_once: Any,
) -> None:
    chain, proxy = flaky_chain
    contract = chain.deploy(fixture_artifact, chain.accounts[12], 0)
    senders = chain.accounts[13:16]
    start = {a.address: chain.w3.eth.get_transaction_count(a.address) for a in senders}

    receipts = send_concurrently(chain, contract, senders, threads_per_sender=2, each=3)

    assert chain.call(contract.functions.counter()) == len(receipts) == 18
    assert_exactly_once(chain, receipts, start)
    # The schedule really bit: replies to sent transactions were lost and retried.
    assert proxy.faults["lose_reply"] >= 9
    assert proxy.faults["drop"] > 0 and proxy.faults["http_503"] > 0


@pytest.mark.parametrize("rpc_url", RPC_BACKENDS, indirect=True)
def test_a_batch_of_transactions_lands_exactly_once_through_a_flaky_proxy(
    flaky_chain: tuple[Chain, RPCProxy], fixture_artifact: dict, assert_exactly_once: Any
) -> None:
    chain, proxy = flaky_chain
    contract = chain.deploy(fixture_artifact, chain.accounts[12], 0)
    senders = chain.accounts[13:16]
    start = {a.address: chain.w3.eth.get_transaction_count(a.address) for a in senders}

    txs = [TxRequest(contract.functions.increment(1), senders[i % 3]) for i in range(9)]
    receipts = chain.transact_all(txs)

    assert chain.call(contract.functions.counter()) == len(receipts) == 9
    assert_exactly_once(chain, receipts, start)
    # The batch's reply was lost after the node took it: the same bytes went again.
    assert proxy.seen["batch:eth_sendRawTransaction"] == 2
    assert proxy.faults["lose_reply"] == 1


@pytest.mark.parametrize("rpc_url", RPC_BACKENDS, indirect=True)
def test_mining_through_an_unreachable_node_is_not_done_block_by_block(rpc_url: str) -> None:
    def drop_mining(method: str, n: int) -> Action:
        return "drop" if method == "anvil_mine" else "forward"

    with RPCProxy(rpc_url, drop_mining) as proxy:
        chain = Chain.connect(proxy.url, retries=1, timeout=5)
        with pytest.raises(RPCUnavailable):
            chain.mine(500)
    assert proxy.seen["anvil_mine"] == 2  # tried and retried once, then given up
    assert proxy.seen["evm_mine"] == 0  # no fallback of 500 single blocks
