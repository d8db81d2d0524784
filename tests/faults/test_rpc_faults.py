"""The participant's JSON-RPC endpoint drops requests, loses replies, or goes away for seconds.

The victim node talks to the chain through ``support.rpc_proxy.RPCProxy``, a real HTTP proxy in
front of a ``DevChain`` serving the federation's chain; the other nodes use the chain
in-process. The node must retry through short trouble, never send a transaction twice, never
lose its update, and fail with a clear :class:`~flchain.errors.RPCUnavailable` when the
endpoint stays down.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flchain_node import NodeState, ParticipantNode
from flchain_node.factory import build_participant, state_file
from flchain_node.federation import Federation
from flchain_node.owner import Keeper
from flchain_node.runner import NoTraining, run_keeper, run_node
from support.fedkit import Driver, fresh_node
from support.rpc_proxy import Action, RPCProxy

from flchain.errors import ContractGone, LedgerError, ProtocolError, RPCUnavailable
from flchain.ledger.chain import Chain
from flchain.ledger.contracts import Attested, Committed, Revealed, RoundStatus, TrainingTask
from flchain.ledger.devchain import DevChain

VICTIM = 0
Served = tuple[Federation, str, list[RPCProxy]]


@pytest.fixture
def served(rewound: Federation) -> Iterator[Served]:
    """The federation's embedded chain, also served over HTTP: (federation, devchain URL,
    the proxies to close at teardown)."""
    proxies: list[RPCProxy] = []
    with DevChain(port=0, provider=rewound.chain.w3.provider) as devchain:  # type: ignore[arg-type]
        try:
            yield rewound, devchain.url, proxies
        finally:
            for proxy in proxies:
                proxy.close()


def _through(
    served: Served, tmp_path: Path, decide: Callable[[str, int], Action], **kw: float
) -> tuple[Federation, RPCProxy, Driver]:
    fed, url, proxies = served
    proxy = RPCProxy(url, decide)
    proxies.append(proxy)

    def build(i: int) -> ParticipantNode:
        if i != VICTIM:
            return fresh_node(fed, i, tmp_path)
        chain = Chain.connect(proxy.url, timeout=5, **kw)  # type: ignore[arg-type]
        return fresh_node(fed, i, tmp_path, chain=chain)

    return fed, proxy, Driver(fed, {i: build(i) for i in range(3)}, build)


def _assert_once_and_paid(fed: Federation, node: ParticipantNode, nonce_before: int) -> None:
    task, address = fed.deployment.task, node.address
    assert task.round_record(0).status == RoundStatus.FINALIZED
    for events in (task.events(Committed, round=0), task.events(Revealed, round=0)):
        assert [e.account for e in events].count(address) == 1
    assert [e.member for e in task.events(Attested, round=0)].count(address) == 1
    saved = node.state.rounds[0]
    (revealed,) = [e for e in task.events(Revealed, round=0) if e.account == address]
    assert "0x" + revealed.digest.hex() == saved.digest  # the update it committed to
    (mine,) = [o for o in node.report_of(0).outcomes if o.participant == address]
    assert mine.accepted and task.claimed(address) == mine.reward > 0
    # commit, reveal, attest, claim: four transactions, none sent twice
    assert fed.chain.w3.eth.get_transaction_count(address) == nonce_before + 4


def _everyone_voted(fed: Federation, driver: Driver) -> Callable[[], bool]:
    task = fed.deployment.task

    def done() -> bool:
        if task.round_record(0).status != RoundStatus.FINALIZED:
            return False
        return all(any(task.vote_of(0, n.address).result_hash) for n in driver.nodes.values())

    return done


def test_dropped_requests_and_lost_replies_are_retried_without_duplicates(
    served: Served, tmp_path: Path
) -> None:
    def decide(method: str, n: int) -> Action:
        if method == "eth_sendRawTransaction":
            return "lose_reply" if n % 2 == 1 else "forward"  # every transaction's 1st try
        # every other request of each method: the node makes few enough requests a round
        # (one stepView a step, no gas estimates for commit/reveal) that every third would
        # leave fewer than ten drops to ride out
        return "drop" if n % 2 == 0 else "forward"

    fed, proxy, driver = _through(served, tmp_path, decide, retries=5)
    victim = driver.nodes[VICTIM]
    nonce_before = fed.chain.w3.eth.get_transaction_count(victim.address)
    driver.run_until(_everyone_voted(fed, driver))
    assert victim.claim() > 0

    _assert_once_and_paid(fed, victim, nonce_before)
    assert proxy.faults["lose_reply"] == 4  # each transaction's first send lost its reply...
    assert proxy.seen["eth_sendRawTransaction"] == 8  # ...and was re-sent exactly once
    assert proxy.faults["drop"] >= 10
    assert driver.restarts == []


def test_endpoint_down_for_two_seconds_is_ridden_out(served: Served, tmp_path: Path) -> None:
    def decide(method: str, n: int) -> Action:
        # the reveal reaches the chain, then the endpoint vanishes for 2 s
        return "go_down" if method == "eth_sendRawTransaction" and n == 2 else "forward"

    fed, proxy, driver = _through(served, tmp_path, decide, retries=7)
    proxy.down_for = 2.0
    victim = driver.nodes[VICTIM]
    nonce_before = fed.chain.w3.eth.get_transaction_count(victim.address)
    started = time.monotonic()
    driver.run_until(_everyone_voted(fed, driver))
    took = time.monotonic() - started
    assert victim.claim() > 0

    assert proxy.faults["go_down"] == 1
    assert took >= 2.0  # the node really waited the outage out, retrying
    _assert_once_and_paid(fed, victim, nonce_before)
    assert driver.restarts == []


def test_endpoint_gone_for_good_is_a_clear_error_and_nothing_is_lost(
    served: Served, tmp_path: Path
) -> None:
    def decide(method: str, n: int) -> Action:
        # the commit reaches the chain, then the endpoint stays down
        return "go_down" if method == "eth_sendRawTransaction" and n == 1 else "forward"

    fed, proxy, driver = _through(served, tmp_path, decide, retries=3)
    task = fed.deployment.task
    victim = driver.nodes.pop(VICTIM)
    nonce_before = fed.chain.w3.eth.get_transaction_count(victim.address)

    started = time.monotonic()
    with pytest.raises(RPCUnavailable, match=r"unreachable after 4 attempts") as info:
        victim.step()
    assert time.monotonic() - started < 10
    assert isinstance(info.value, LedgerError) and isinstance(info.value, ConnectionError)
    assert proxy.url in str(info.value)
    assert [e.account for e in task.events(Committed, round=0)] == [victim.address]  # it did land
    assert not victim.state.rounds[0].committed  # ...but the node never heard back

    # the others finish committing; the endpoint comes back during the reveal phase
    driver.run_until(lambda: task.round_record(0).commits == 3)
    proxy.up()
    driver.nodes[VICTIM] = victim
    driver.run_until(_everyone_voted(fed, driver))
    assert victim.claim() > 0

    _assert_once_and_paid(fed, victim, nonce_before)


def _outage_lines(logs: list[str]) -> tuple[int, int]:
    return (
        sum(line.startswith("chain unreachable") for line in logs),
        sum(line.startswith("chain back") for line in logs),
    )


def test_keeper_and_node_ride_out_an_outage_and_log_it_once_each_way(
    served: Served, tmp_path: Path
) -> None:
    fed, url, proxies = served
    task = fed.deployment.task
    driver = Driver(fed, {i: fresh_node(fed, i, tmp_path) for i in range(3)}, lambda i: None)  # type: ignore[arg-type,return-value]
    driver.run_until(_everyone_voted(fed, driver))  # the one round done: the task completed
    fed.chain.mine(task.attest_deadline(0) - fed.chain.block_number + 1)  # its window closed

    proxy = RPCProxy(url, lambda method, n: "forward")
    proxies.append(proxy)
    chain = Chain.connect(proxy.url, timeout=2, retries=1)
    keeper = Keeper(TrainingTask(chain, task.address), fed.owner)
    victim = fresh_node(fed, VICTIM, tmp_path, chain=chain)  # resumes from its state file

    for run in (
        lambda log: run_keeper(keeper, poll=0.05, timeout=60, log=log),
        lambda log: run_node(victim, poll=0.05, timeout=60, log=log),
    ):
        proxy.down()  # the chain is away when the loop starts, back a second later
        back = threading.Timer(1.0, proxy.up)
        back.start()
        logs: list[str] = []
        try:
            run(logs.append)  # before the fix run_keeper raised RPCUnavailable here
        finally:
            back.join()
        assert _outage_lines(logs) == (1, 1), logs  # one line per change, not one per poll
    assert keeper.done() and 0 in keeper.settled
    assert task.claimed(victim.address) > 0  # run_node went on to claim after the outage


def test_a_chain_reset_under_a_running_node_is_one_clear_error(
    served: Served, tmp_path: Path
) -> None:
    fed, url, proxies = served
    proxy = RPCProxy(url, lambda method, n: "forward")
    proxies.append(proxy)
    victim = fresh_node(fed, VICTIM, tmp_path, chain=Chain.connect(proxy.url, retries=1))
    assert "commit" in victim.step().actions

    # The endpoint goes away and comes back as a fresh, empty dev chain (same chain id, same
    # port): what a restarted `flchain devchain` or anvil looks like to a running node.
    with DevChain(port=0) as empty:
        proxy.down()
        proxy.upstream = urlsplit(empty.url)
        proxy.up()
        logs: list[str] = []
        gone = r"TrainingTask contract gone at 0x[0-9a-fA-F]{40}.*reset"
        with pytest.raises(ContractGone, match=gone) as info:
            run_node(victim, poll=0.05, timeout=60, log=logs.append)
    assert isinstance(info.value, LedgerError)
    assert "\n" not in str(info.value)  # the CLI prints it as its one line
    assert not any(line.startswith("refused") for line in logs)  # no retry loop on a dead task


def test_node_state_is_keyed_by_chain_so_a_reset_chain_never_sees_stale_salts(
    served: Served, tmp_path: Path
) -> None:
    fed, _, _ = served
    task, account = fed.deployment.task, fed.accounts[VICTIM]
    path = state_file(tmp_path, task, account)
    assert path.name.startswith(f"{fed.chain.chain_id}-{fed.chain.genesis_hash[2:10]}-")
    node = build_participant(task, fed.store, account, NoTraining(), state_path=path)
    node.state.save()
    saved = json.loads(path.read_text())
    assert (saved["chain_id"], saved["genesis"]) == (fed.chain.chain_id, fed.chain.genesis_hash)

    # a fresh chain with the same chain id and the same task address: another genesis, so
    # another state file name, and the old file handed over explicitly is refused
    with DevChain(port=0) as fresh:
        other = Chain.connect(fresh.url, retries=1)
        assert other.chain_id == fed.chain.chain_id
        assert other.genesis_hash != fed.chain.genesis_hash
        with pytest.raises(ProtocolError, match=r"belongs to chain .* reset"):
            NodeState.load(
                path,
                account=account.address,
                task=task.address,
                chain_id=other.chain_id,
                genesis=other.genesis_hash,
            )

    # a state file from before chain keying is refused with a clear error (no migration)
    del saved["chain_id"], saved["genesis"]
    path.write_text(json.dumps(saved))
    with pytest.raises(ProtocolError, match=r"no chain id or genesis hash \(an old format\)"):
        build_participant(task, fed.store, account, NoTraining(), state_path=path)
