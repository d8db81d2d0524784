"""``BlockPass``: jobs run one at a time in job order, and the transactions they send share
blocks; every transaction is still signed, mined and its receipt checked by its sender."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eth_tester.backends.pyevm.main import PyEVMBackend
from web3.contract import Contract
from web3.exceptions import Web3RPCError
from web3.types import TxReceipt

from flchain.errors import ContractRevert, LedgerError, TransactionFailed
from flchain.ledger import embedded
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


def test_a_shared_block_has_the_state_root_py_evm_computes(chain: Chain, fixture: Contract) -> None:
    """The held transactions run on one state whose root is computed when something reads
    the pending state or the block is mined: reads of "pending" see every held transaction,
    one refused mid-block changes nothing, and py-evm's own block import (which re-executes
    the block from its parent's state and checks the root) accepts the mined block."""
    tester = chain.w3.provider.ethereum_tester
    start = chain.call(fixture.functions.counter())
    senders = chain.accounts[1:4]

    def job(i: int) -> Any:
        sent = chain.send(fixture.functions.increment(i + 1), senders[i], gas=100_000)
        pending = chain.call(fixture.functions.counter(), block="pending")
        count = chain.w3.eth.get_transaction_count(senders[i].address, "pending")
        if i == 1:  # a transaction refused when sent (its nonce is used): no effect
            used = {"to": fixture.address, "value": 1, "gas": 21_000, "nonce": count - 1}
            stale = senders[i].sign_transaction(
                {**used, "chainId": chain.chain_id, "gasPrice": 10**10}
            )
            with pytest.raises(Web3RPCError, match="nonce"):
                chain.w3.eth.send_raw_transaction(stale.raw_transaction)
        chain.wait_for_receipt(sent)
        return pending, count

    seen = block_pass(chain).run([lambda i=i: job(i) for i in range(3)])
    assert [p for p, _ in seen] == [start + 1, start + 3, start + 6]
    assert chain.call(fixture.functions.counter()) == start + 6
    backend = tester.backend
    block = backend.chain.get_canonical_block_by_number(chain.block_number)
    assert len(block.transactions) == 3
    backend.chain.import_block(block)  # re-executed from the parent state: the root must match


def test_a_transaction_failing_while_it_runs_leaves_the_others(
    chain: Chain, fixture: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error inside py-evm after a transaction was validated (none is expected: a fault
    injected here) drops only that transaction: the block is rebuilt from the held ones."""
    backend = chain.w3.provider.ethereum_tester.backend
    state_class = type(backend.chain.get_vm().state)
    # the faulty sender's nonce is known before the pass: no pending read settles the block
    chain.transact(fixture.functions.increment(1), chain.accounts[2], gas=100_000)
    start = chain.call(fixture.functions.counter())
    run = state_class.apply_transaction
    faults = [RuntimeError("injected fault")]

    def faulty(self: Any, transaction: Any) -> Any:
        if faults:  # once: the transactions applied again after it run as before
            raise faults.pop()
        return run(self, transaction)

    def job(i: int) -> int:
        if i == 1:
            monkeypatch.setattr(state_class, "apply_transaction", faulty)
            with pytest.raises(TransactionFailed, match="injected fault"):
                chain.send(fixture.functions.increment(10), chain.accounts[2], gas=100_000)
            monkeypatch.setattr(state_class, "apply_transaction", run)
            return int(chain.call(fixture.functions.counter(), block="pending"))
        chain.transact(fixture.functions.increment(1), chain.accounts[i + 1], gas=100_000)
        return 0

    seen = block_pass(chain).run([lambda i=i: job(i) for i in range(3)])
    assert seen[1] == start + 1  # the first job's increment held, the faulty one gone
    assert chain.call(fixture.functions.counter()) == start + 2
    block = backend.chain.get_canonical_block_by_number(chain.block_number)
    assert len(block.transactions) == 2
    backend.chain.import_block(block)


def test_every_backend_read_at_a_block_settles_the_pending_state_first() -> None:
    """The held transactions' state root is computed only when something reads the pending
    state (``embedded._settling``): every eth-tester backend method that takes a block number
    must be on that list, at the right argument, or an eth-tester upgrade could add a read
    that sees a pending block without its state root."""
    takes_block = {
        name: list(inspect.signature(fn).parameters).index("block_number") - 1  # minus self
        for name, fn in inspect.getmembers(PyEVMBackend, inspect.isfunction)
        if not name.startswith("_") and "block_number" in inspect.signature(fn).parameters
    }
    assert takes_block, "eth-tester's backend no longer names a block_number parameter"
    assert takes_block == embedded._READS_AT


def test_a_transaction_s_sender_is_recovered_once_for_its_send_and_its_receipt(
    chain: Chain, fixture: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender recovered while a held transaction was validated is its receipt's ``from``
    too (stock eth-tester recovers it again from the mined block's copy); the signature is
    still checked on send, and each receipt names its signer."""
    recovered: list[bytes] = []
    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "")
        if name.startswith("eth.vm.forks.") and name.endswith(".transactions"):
            stock = getattr(module, "extract_transaction_sender", None)
            if stock is not None:

                def counted(tx: Any, stock: Callable[[Any], bytes] = stock) -> bytes:
                    recovered.append(stock(tx))
                    return recovered[-1]

                monkeypatch.setattr(module, "extract_transaction_sender", counted)
    results = block_pass(chain).run(increments(chain, fixture, [1, 2, 3]))
    receipts = [receipt for _, receipt in results]
    signers = [a.address for a in chain.accounts[1:4]]
    assert [r["from"] for r in receipts] == signers
    assert sorted(recovered) == sorted(bytes.fromhex(a[2:]) for a in signers)  # once each
