"""``BlockPass``: jobs run one at a time in job order, and the transactions they send share
blocks; every transaction is still signed, mined and its receipt checked by its sender."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from web3.contract import Contract
from web3.types import TxReceipt

from flchain.errors import ContractRevert, LedgerError
from flchain.ledger.chain import Chain
from flchain.ledger.devchain import BlockPass, EmbeddedProvider
from flchain.ledger.embedded import make_tester

NUM_ACCOUNTS = 6


@pytest.fixture(scope="module")
def session() -> Chain:
    return Chain.embedded(NUM_ACCOUNTS, tester=make_tester(NUM_ACCOUNTS))


@pytest.fixture
def chain(session: Chain) -> Iterator[Chain]:
    snapshot = session.snapshot()
    yield session
    session.revert(snapshot)


@pytest.fixture
def fixture(chain: Chain, fixture_artifact: dict[str, Any]) -> Contract:
    return chain.deploy(fixture_artifact, chain.accounts[0], 5)


def block_pass(chain: Chain) -> BlockPass:
    made = BlockPass.on(chain.w3.provider)
    assert made is not None
    return made


def increments(chain: Chain, fixture: Contract, amounts: list[int]) -> list[Callable[[], Any]]:
    """One job per amount: account i+1 reads the counter, then increments it by amounts[i]."""

    def job(i: int, amount: int) -> tuple[int, TxReceipt]:
        seen = chain.call(fixture.functions.counter())
        return seen, chain.transact(fixture.functions.increment(amount), chain.accounts[i + 1])

    return [lambda i=i, a=a: job(i, a) for i, a in enumerate(amounts)]


def test_the_jobs_transactions_share_one_block_in_job_order(
    chain: Chain, fixture: Contract
) -> None:
    start = chain.block_number
    running = block_pass(chain)
    results = running.run(increments(chain, fixture, [1, 2, 3, 4]))
    assert running.blocks == 1 and chain.block_number == start + 1
    # every job read the last mined block (none saw another's pending increment)
    assert [seen for seen, _ in results] == [5, 5, 5, 5]
    receipts = [receipt for _, receipt in results]
    assert {r["blockNumber"] for r in receipts} == {start + 1}
    assert [r["transactionIndex"] for r in receipts] == [0, 1, 2, 3]
    assert all(r["status"] == 1 for r in receipts)
    senders = [chain.w3.eth.get_transaction(r["transactionHash"])["from"] for r in receipts]
    assert senders == [a.address for a in chain.accounts[1:5]]
    assert chain.call(fixture.functions.counter()) == 5 + 1 + 2 + 3 + 4
    # the chain mines each transaction at once again after the pass
    chain.transact(fixture.functions.increment(1), chain.accounts[1])
    assert chain.block_number == start + 2


def test_a_job_sending_twice_waits_a_block_between(chain: Chain, fixture: Contract) -> None:
    def twice() -> list[int]:
        sender = chain.accounts[1]
        return [
            chain.transact(fixture.functions.increment(n), sender)["blockNumber"] for n in (1, 1)
        ]

    start = chain.block_number
    running = block_pass(chain)
    first, single = running.run([twice, increments(chain, fixture, [10])[0]])
    assert running.blocks == 2
    assert first == [start + 1, start + 2]  # its second send came after its first receipt
    assert single[1]["blockNumber"] == start + 1  # the other job's shared the first block
    assert chain.call(fixture.functions.counter()) == 5 + 1 + 1 + 10


def test_a_revert_is_raised_after_every_job_ended(chain: Chain, fixture: Contract) -> None:
    poor = chain.accounts[3]

    def overdraw() -> TxReceipt:
        # fixed gas: no estimate refuses it, so it is mined and reverts in the shared block
        call = fixture.functions.transfer(chain.accounts[4].address, 1)
        return chain.transact(call, poor, gas=100_000)

    ok = increments(chain, fixture, [1, 2])
    with pytest.raises(ContractRevert, match="InsufficientBalance"):
        block_pass(chain).run([ok[0], overdraw, ok[1]])
    assert chain.call(fixture.functions.counter()) == 5 + 1 + 2  # both others were mined
    assert chain.w3.eth.get_transaction_count(poor.address) == 1  # the revert used its nonce


def test_a_failing_job_leaves_no_transaction_pending(chain: Chain, fixture: Contract) -> None:
    def send_and_fail() -> None:
        chain.send(fixture.functions.increment(7), chain.accounts[2])  # does not wait
        raise RuntimeError("the job failed after sending")

    start = chain.block_number
    with pytest.raises(RuntimeError, match="after sending"):
        block_pass(chain).run([send_and_fail])
    assert chain.block_number == start + 1  # its transaction was mined after all
    assert chain.call(fixture.functions.counter()) == 5 + 7


def test_passes_do_not_nest_and_need_the_embedded_tester(chain: Chain) -> None:
    running = block_pass(chain)
    with pytest.raises(LedgerError, match="already running"):
        running.run([lambda: running.run([])])
    assert BlockPass.on(object()) is None
    assert isinstance(chain.w3.provider, EmbeddedProvider)
