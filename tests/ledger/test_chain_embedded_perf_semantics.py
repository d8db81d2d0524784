"""The embedded chain's read caches (:mod:`flchain.ledger.embedded`) change costs, not answers.

Each test reads the same chain with the caches on and off (``EmbeddedTester.caching``; off is
eth-tester's own code) and asserts equal answers — and the concrete expected values, so that a
cache agreeing with itself on a stale answer fails too — at the latest block, at historical
blocks, after new blocks, and after snapshot reverts that replace blocks at the same heights.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import BlockNotFound
from eth_utils import keccak
from web3.contract import Contract

from flchain.errors import ContractRevert, FLChainError
from flchain.ledger.chain import Chain
from flchain.ledger.devchain import BlockPass
from flchain.ledger.embedded import EmbeddedTester, _Backend, make_tester

NUM_ACCOUNTS = 8


@pytest.fixture(scope="module")
def session() -> tuple[Chain, EmbeddedTester]:
    tester = make_tester(NUM_ACCOUNTS)
    return Chain.embedded(NUM_ACCOUNTS, tester=tester), tester


@pytest.fixture
def chain(session: tuple[Chain, EmbeddedTester]) -> Iterator[Chain]:
    chain, tester = session
    snapshot = chain.snapshot()
    yield chain
    tester.caching = True
    chain.revert(snapshot)


@pytest.fixture
def tester(session: tuple[Chain, EmbeddedTester]) -> EmbeddedTester:
    return session[1]


@pytest.fixture
def fixture(chain: Chain, fixture_artifact: dict[str, Any]) -> Contract:
    return chain.deploy(fixture_artifact, chain.accounts[0], 5)


def counting(tester: EmbeddedTester, method: str) -> list[Any]:
    """The arguments of every call of ``tester``'s ``method`` from now on (the caller deletes
    the instance attribute again to stop counting)."""
    calls: list[Any] = []
    stock = getattr(tester, method)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return stock(*args, **kwargs)

    setattr(tester, method, counted)
    return calls


def both(tester: EmbeddedTester, read: Callable[[], Any]) -> Any:
    """``read()`` with the caches on, then off; asserts the answers are equal."""
    tester.caching = True
    cached = read()
    tester.caching = False
    try:
        stock = read()
    finally:
        tester.caching = True
    assert cached == stock
    return cached


def test_caching_is_on_by_default_and_off_is_stock_eth_tester() -> None:
    assert make_tester(1).caching is True
    assert make_tester(1, caching=False).caching is False


def test_latest_view_follows_every_new_block(
    chain: Chain, tester: EmbeddedTester, fixture: Contract
) -> None:
    counter = fixture.functions.counter()
    assert both(tester, lambda: chain.call(counter)) == 5  # warms the cache for this block
    for amount in (1, 2, 3):
        before = chain.call(counter)
        chain.transact(fixture.functions.increment(amount), chain.accounts[1])
        assert both(tester, lambda: chain.call(counter)) == before + amount
    chain.mine(3)  # empty blocks: same state, new block hashes
    assert both(tester, lambda: chain.call(counter)) == 11


def test_calls_at_historical_blocks_see_that_block(
    chain: Chain, tester: EmbeddedTester, fixture: Contract
) -> None:
    seen: list[tuple[int, int]] = [(chain.block_number, 5)]
    for amount in (10, 20, 30, 40):
        chain.transact(fixture.functions.increment(amount), chain.accounts[0])
        seen.append((chain.block_number, seen[-1][1] + amount))
    # Read newest first and oldest last, twice, so cached states are reused out of order.
    for order in (reversed(seen), iter(seen)):
        for block, value in order:
            got = both(tester, lambda b=block: chain.call(fixture.functions.counter(), block=b))
            assert got == value
    # Before the deployment (genesis) there is no code: an empty answer, not a stale one.
    raw = {"to": fixture.address, "data": fixture.functions.counter()._encode_transaction_data()}
    assert both(tester, lambda: chain.w3.eth.call(raw, "earliest")) == b""  # type: ignore[arg-type]
    assert both(tester, lambda: chain.w3.eth.call(raw, seen[0][0])) == (5).to_bytes(32)  # type: ignore[arg-type]


def test_a_call_that_writes_leaves_the_cached_state_untouched(
    chain: Chain, tester: EmbeddedTester, fixture: Contract
) -> None:
    account = chain.accounts[2]
    balance = fixture.functions.balanceOf(account.address)
    assert chain.call(balance) == 0
    # eth_call executes mint/increment and throws the writes away; the next read at the same
    # block (the same cached state) must not see them.
    for _ in range(3):
        chain.call(fixture.functions.mint(100), sender=account)
        chain.call(fixture.functions.increment(7), sender=account)
    assert both(tester, lambda: chain.call(balance)) == 0
    assert both(tester, lambda: chain.call(fixture.functions.counter())) == 5
    # A call that reverts half-way also leaves nothing behind.
    with pytest.raises(ContractRevert):
        chain.call(fixture.functions.transfer(chain.accounts[3].address, 1), sender=account)
    assert both(tester, lambda: chain.call(balance)) == 0


def test_reverts_and_the_default_sender_are_the_same(
    chain: Chain, tester: EmbeddedTester, fixture: Contract
) -> None:
    def outcome(fn: Any, sender: LocalAccount | None = None) -> Any:
        try:
            return ("ok", chain.call(fn, sender=sender))
        except FLChainError as exc:  # custom errors, require strings, panics alike
            return (type(exc).__name__, exc.args)

    # Without a sender, eth-tester's first account calls: the deployer, so the owner check
    # passes; another sender gets NotOwner with its address in the error.
    assert both(tester, lambda: outcome(fixture.functions.onlyOwner())) == ("ok", True)
    not_owner = both(tester, lambda: outcome(fixture.functions.onlyOwner(), chain.accounts[4]))
    assert not_owner[0] == "NotOwner"
    assert chain.accounts[4].address in str(not_owner[1])
    too_large = both(tester, lambda: outcome(fixture.functions.requireSmall(11)))
    assert "value must be below 10" in str(too_large[1])


def test_snapshot_revert_then_different_blocks_at_the_same_heights(
    chain: Chain, tester: EmbeddedTester, fixture: Contract
) -> None:
    counter = fixture.functions.counter()
    snapshot = chain.snapshot()
    height = chain.block_number
    chain.transact(fixture.functions.increment(100), chain.accounts[0])
    chain.transact(fixture.functions.increment(100), chain.accounts[0])
    assert chain.call(counter) == 205
    assert chain.call(counter, block=height + 1) == 105
    stale_logs = chain.events(fixture, "Incremented", from_block=height)
    assert [e["args"]["amount"] for e in stale_logs] == [100, 100]

    chain.revert(snapshot)
    assert chain.block_number == height
    assert both(tester, lambda: chain.call(counter)) == 5
    assert both(tester, lambda: chain.events(fixture, "Incremented", from_block=height)) == []
    # New blocks at the heights the reverted ones had: the caches must not answer from those.
    chain.transact(fixture.functions.increment(1), chain.accounts[1])
    chain.transact(fixture.functions.increment(2), chain.accounts[1])
    assert both(tester, lambda: chain.call(counter)) == 8
    assert both(tester, lambda: chain.call(counter, block=height + 1)) == 6
    logs = both(tester, lambda: chain.events(fixture, "Incremented", from_block=height))
    assert [(e["args"]["amount"], e["args"]["by"]) for e in logs] == [
        (1, chain.accounts[1].address),
        (2, chain.accounts[1].address),
    ]
    receipt = chain.w3.eth.get_transaction_receipt(logs[0]["transactionHash"])
    assert receipt["blockNumber"] == height + 1


def _emit_many(chain: Chain, fixtures: list[Contract], blocks: int) -> None:
    """``blocks`` blocks of Incremented and Transferred logs from several senders and two
    contracts, with a few empty blocks between."""
    senders = chain.accounts[:4]
    for contract in fixtures:
        for sender in senders:
            chain.transact(contract.functions.mint(10_000), sender)
    for i in range(blocks):
        contract, sender = fixtures[i % 2], senders[i % 4]
        if i % 3 == 0:
            to = senders[(i + 1) % 4].address
            chain.transact(contract.functions.transfer(to, i + 1), sender)
        else:
            chain.transact(contract.functions.increment(i % 7 + 1), sender)
        if i % 10 == 9:
            chain.mine(2)


def _topic(address: str) -> str:
    return "0x" + bytes.fromhex(address[2:]).rjust(32, b"\0").hex()


def _filters(chain: Chain, fixtures: list[Contract], start: int) -> list[dict[str, Any]]:
    a, b = fixtures
    incremented = a.events.Incremented.topic
    transferred = a.events.Transferred.topic
    alice, bob = chain.accounts[0].address, chain.accounts[1].address
    head = chain.block_number
    return [
        {"fromBlock": 0, "toBlock": "latest"},
        {"fromBlock": start, "toBlock": head, "address": a.address},
        {"fromBlock": start + 5, "toBlock": start + 17, "address": [a.address, b.address]},
        {"fromBlock": "earliest", "address": b.address, "topics": [incremented]},
        {"fromBlock": 0, "topics": [transferred, _topic(alice)]},
        {"fromBlock": 0, "topics": [transferred, None, _topic(bob)]},
        {"fromBlock": 0, "topics": [[incremented, transferred], [_topic(alice), _topic(bob)]]},
        {"fromBlock": 0, "topics": [None, _topic(bob)]},
        {"fromBlock": 0, "topics": [incremented, None, None, None]},  # more topics than logs have
        {"fromBlock": start + 10, "toBlock": start + 10},
        {"fromBlock": head, "toBlock": head},
        {"fromBlock": start + 9, "toBlock": start + 3},  # empty range
        {"fromBlock": "latest", "toBlock": "latest", "address": [a.address]},
        {"fromBlock": 0, "address": chain.accounts[5].address},  # no logs at all
    ]


@pytest.fixture
def other(chain: Chain, fixture_artifact: dict[str, Any]) -> Contract:
    """A second contract of the same kind, so logs come from two addresses."""
    return chain.deploy(fixture_artifact, chain.accounts[0], 0)


def test_logs_match_stock_eth_tester_for_every_filter_shape(
    chain: Chain, tester: EmbeddedTester, fixture: Contract, other: Contract
) -> None:
    start = chain.block_number
    _emit_many(chain, [fixture, other], 30)
    filters = _filters(chain, [fixture, other], start)
    results = [both(tester, lambda f=f: chain.w3.eth.get_logs(f)) for f in filters]  # type: ignore[arg-type]
    everything = results[0]
    # Each of 30 transactions logs once; the mints log nothing.
    assert len(everything) == 30
    assert [(log["blockNumber"], log["logIndex"]) for log in everything] == sorted(
        (log["blockNumber"], log["logIndex"]) for log in everything
    )
    assert len(results[1]) == 15 and {log["address"] for log in results[1]} == {fixture.address}
    assert all(start + 5 <= log["blockNumber"] <= start + 17 for log in results[2])
    assert results[2] and len(results[11]) == 0 and len(results[13]) == 0
    assert all(len(log["topics"]) == 3 for log in results[4] + results[5])
    assert len(results[8]) == 0


def test_logs_stay_right_across_revert_and_new_blocks(
    chain: Chain, tester: EmbeddedTester, fixture: Contract, other: Contract
) -> None:
    start = chain.block_number
    _emit_many(chain, [fixture, other], 12)
    everything = {"fromBlock": 0, "toBlock": "latest"}
    assert len(both(tester, lambda: chain.w3.eth.get_logs(everything))) == 12  # type: ignore[arg-type]
    snapshot = chain.snapshot()
    chain.transact(fixture.functions.increment(1), chain.accounts[0])
    assert len(both(tester, lambda: chain.w3.eth.get_logs(everything))) == 13  # type: ignore[arg-type]

    chain.revert(snapshot)
    # Different blocks at the reverted height and above, mined before the next log query.
    chain.transact(other.functions.increment(6), chain.accounts[2])
    chain.mine(2)
    chain.transact(other.functions.increment(7), chain.accounts[3])
    assert len(both(tester, lambda: chain.w3.eth.get_logs(everything))) == 14  # type: ignore[arg-type]
    # Back once more, to fewer blocks than the index holds, and query at once.
    chain.revert(snapshot)
    assert len(both(tester, lambda: chain.w3.eth.get_logs(everything))) == 12  # type: ignore[arg-type]
    chain.transact(other.functions.increment(6), chain.accounts[2])
    chain.mine(2)
    chain.transact(other.functions.increment(7), chain.accounts[3])
    for f in _filters(chain, [fixture, other], start):
        both(tester, lambda f=f: chain.w3.eth.get_logs(f))  # type: ignore[arg-type]
    newest = both(tester, lambda: chain.events(other, "Incremented", from_block=start + 12))
    assert [(e["args"]["amount"], e["args"]["by"]) for e in newest[-2:]] == [
        (6, chain.accounts[2].address),
        (7, chain.accounts[3].address),
    ]


def test_logs_of_a_block_of_many_transactions_are_indexed_without_receipt_lookups(
    chain: Chain,
    tester: EmbeddedTester,
    fixture: Contract,
    other: Contract,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A block whose transactions log several times each (as a ``BlockPass`` mines a phase's
    commits or reveals) is indexed from the block and its receipts, decoded once: no receipt is
    looked up per transaction (one each before), and the logs are stock eth-tester's."""
    start = chain.block_number
    block_pass = BlockPass.on(chain.w3.provider)
    assert block_pass is not None
    senders, others = chain.accounts[:4], chain.accounts[4:8]
    block_pass.run([partial(chain.transact, fixture.functions.mint(10), s) for s in senders])
    jobs = [
        partial(chain.transact, fixture.functions.transfer(others[i].address, i + 1), s)
        for i, s in enumerate(senders)
    ]
    jobs += [
        partial(chain.transact, other.functions.increment(i + 1), s) for i, s in enumerate(others)
    ]
    block_pass.run(jobs)
    assert chain.block_number == start + 2  # the mints' block (no logs) and the 8 loggers'
    lookups: list[bytes] = []
    original = _Backend.get_transaction_receipt

    def counted(self: _Backend, transaction_hash: bytes) -> Any:
        lookups.append(transaction_hash)
        return original(self, transaction_hash)

    monkeypatch.setattr(_Backend, "get_transaction_receipt", counted)
    query = {"fromBlock": start + 1, "toBlock": "latest"}
    cached = chain.w3.eth.get_logs(query)  # type: ignore[arg-type]
    assert lookups == []  # one per transaction of the two blocks before
    assert both(tester, lambda: chain.w3.eth.get_logs(query)) == cached  # type: ignore[arg-type]
    assert [(log["blockNumber"], log["transactionIndex"], log["logIndex"]) for log in cached] == [
        (start + 2, i, 0) for i in range(8)
    ]
    assert [log["address"] for log in cached] == [fixture.address] * 4 + [other.address] * 4


def test_log_ranges_past_the_head_fail_like_eth_tester(
    chain: Chain, tester: EmbeddedTester, fixture: Contract
) -> None:
    head = chain.block_number
    for caching in (True, False):
        tester.caching = caching
        with pytest.raises(BlockNotFound):
            tester.get_logs(from_block=0, to_block=head + 1)
        with pytest.raises(BlockNotFound):
            tester.get_logs(from_block=head, to_block="pending")


def test_accounts_are_the_same_and_follow_added_keys(tester: EmbeddedTester) -> None:
    accounts = both(tester, tester.get_accounts)
    assert len(accounts) == NUM_ACCOUNTS
    tester.add_account("0x" + "11" * 32)
    try:
        grown = both(tester, tester.get_accounts)
        assert grown[:-1] == accounts and len(grown) == NUM_ACCOUNTS + 1
    finally:
        tester.backend.account_keys = tester.backend.account_keys[:-1]
    assert both(tester, tester.get_accounts) == accounts


def test_revert_to_genesis_builds_a_new_chain_and_the_caches_follow(
    fixture_artifact: dict[str, Any],
) -> None:
    tester = make_tester(2)
    chain = Chain.embedded(2, tester=tester)
    genesis = chain.snapshot()
    first = chain.deploy(fixture_artifact, chain.accounts[0], 5)
    chain.transact(first.functions.increment(1), chain.accounts[0])
    assert chain.call(first.functions.counter()) == 6
    assert len(chain.events(first, "Incremented")) == 1
    old_chain = tester.backend.chain
    chain.revert(genesis)
    assert tester.backend.chain is not old_chain  # eth-tester rebuilt it from the genesis header
    again = chain.deploy(fixture_artifact, chain.accounts[0], 9)
    assert again.address == first.address  # same deployer nonce, different contract state
    assert both(tester, lambda: chain.call(again.functions.counter())) == 9
    assert both(tester, lambda: chain.events(again, "Incremented")) == []


def test_gas_estimates_are_the_same(
    chain: Chain, tester: EmbeddedTester, fixture: Contract
) -> None:
    def estimate(fn: Any, sender: LocalAccount) -> int:
        tx = {"from": sender.address, "to": fixture.address, "data": fn._encode_transaction_data()}
        return int(chain.w3.eth.estimate_gas(tx))  # type: ignore[arg-type]

    account, to = chain.accounts[1], chain.accounts[2].address
    selector = keccak(text="InsufficientBalance(address,uint256,uint256)")[:4].hex()
    for caching in (True, False):  # nothing minted yet: the estimate reverts with the error
        tester.caching = caching
        with pytest.raises(Exception, match=selector):
            estimate(fixture.functions.transfer(to, 1), account)
    tester.caching = True
    fresh = both(tester, lambda: estimate(fixture.functions.mint(100), account))
    chain.transact(fixture.functions.mint(100), account)
    # The balance slot is now non-zero: a second mint writes nonzero -> nonzero, far cheaper.
    again = both(tester, lambda: estimate(fixture.functions.mint(100), account))
    assert again < fresh - 10_000
    assert both(tester, lambda: estimate(fixture.functions.transfer(to, 1), account)) > 21_000


def test_block_number_is_the_latest_mined_block_without_building_it(
    chain: Chain, tester: EmbeddedTester, fixture: Contract
) -> None:
    """``eth_blockNumber`` answers as stock eth-tester (which builds the whole latest block
    to read its number) after transactions, while a transaction waits in the pending block,
    and after a snapshot revert; with the caches on, no block is built for it."""
    built = counting(tester, "get_block_by_number")
    try:
        height = chain.block_number
        assert built == []
        snapshot = chain.snapshot()
        chain.transact(fixture.functions.increment(1), chain.accounts[1])
        assert both(tester, lambda: chain.block_number) == height + 1
        tester.holding = True
        try:
            chain.send(fixture.functions.increment(2), chain.accounts[1], gas=100_000)
            assert both(tester, lambda: chain.block_number) == height + 1  # held, not mined
        finally:
            tester.holding = False
        chain.mine(2)  # the held transaction's block, then an empty one
        assert both(tester, lambda: chain.block_number) == height + 3
        chain.revert(snapshot)
        assert both(tester, lambda: chain.block_number) == height
        built.clear()
        assert chain.block_number == height and built == []
    finally:
        del tester.get_block_by_number


def test_mining_feeds_block_and_log_filters_and_reads_no_block_without_them(
    chain: Chain, tester: EmbeddedTester, fixture: Contract
) -> None:
    """eth-tester reads every block it mines to feed its block and log filters; with the
    caches on and no filter installed that read is skipped (same block hashes returned), and
    with filters installed they get every mined block and log as on stock eth-tester."""
    read = counting(tester, "get_block_by_hash")
    try:
        hashes = tester.mine_blocks(2)
        assert read == []
        head = chain.block_number
        assert hashes == [tester.get_block_by_number(n)["hash"] for n in (head - 1, head)]
        for caching in (True, False):
            tester.caching = caching
            blocks = tester.create_block_filter()
            logs = tester.create_log_filter(address=fixture.address)
            try:
                chain.transact(fixture.functions.increment(1), chain.accounts[1])
                mined = tester.mine_blocks(1)
                assert read  # read to feed the filters
                changes = tester.get_only_filter_changes(blocks)
                assert mined[0] in changes and len(changes) == 2  # the transaction's, then this
                (log,) = tester.get_only_filter_changes(logs)
                assert log["address"] == fixture.address
            finally:
                tester.delete_filter(blocks)
                tester.delete_filter(logs)
                read.clear()
    finally:
        del tester.get_block_by_hash


def test_flchain_hashes_with_the_c_keccak_and_same_digests() -> None:
    """Importing flchain makes eth-hash use pysha3's C keccak (not pycryptodome's, which it
    would pick first), unless the user chose a backend; both give the same digests."""
    probe = (
        "import flchain, eth_utils, eth_hash.auto as a; eth_utils.keccak(b'x'); "
        "print(a.keccak.hasher.__module__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "ETH_HASH_BACKEND"}
    chosen = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert chosen == "eth_hash.backends.pysha3"
    own = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "ETH_HASH_BACKEND": "pycryptodome"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert own == "eth_hash.backends.pycryptodome"
    from eth_hash.backends import pycryptodome, pysha3

    for data in (b"", b"x" * 31, bytes(range(256)) * 5):
        assert pysha3.keccak256(data) == pycryptodome.keccak256(data) == keccak(data)
