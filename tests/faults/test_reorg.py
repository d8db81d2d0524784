"""A chain that drops recent blocks under a running node (anvil's ``evm_snapshot`` /
``evm_revert`` around the commit and around the reveal: the blocks holding them vanish, as in
a reorg). A node that waits for confirmations notices, sends the same commitment and the same
reveal again, and ends the round paid: nothing lost, nothing sent twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flchain_node import ParticipantNode
from flchain_node.federation import Federation
from support.fedkit import DEMO, Driver, fresh_node
from support.tools import require_tool

from flchain.ledger.chain import Chain
from flchain.ledger.contracts import Committed, Phase, Revealed, RoundStatus
from flchain.ledger.nodes import AnvilProcess

VICTIM, CONFIRMATIONS = 0, 2

pytestmark = pytest.mark.anvil


@pytest.fixture
def on_anvil() -> Iterator[Federation]:
    binary = AnvilProcess.find_binary()
    require_tool(
        binary is not None and binary.exists(), "anvil not found", AnvilProcess.install_hint
    )
    with AnvilProcess(accounts=DEMO.participants + 1) as anvil:
        chain = Chain.connect(anvil.url, num_accounts=DEMO.participants + 1, receipt_timeout=30)
        federation = Federation(DEMO, chain=chain)
        try:
            yield federation
        finally:
            federation.close()


def test_commit_and_reveal_dropped_by_a_reorg_are_sent_again_once(
    on_anvil: Federation, tmp_path: Path
) -> None:
    fed = on_anvil
    task, chain = fed.deployment.task, fed.chain

    def build(i: int) -> ParticipantNode:
        # each node its own chain connection (own nonce counts), as separate processes have
        options = {"confirmations": CONFIRMATIONS} if i == VICTIM else {}
        return fresh_node(fed, i, tmp_path, **options)

    driver = Driver(fed, {i: build(i) for i in range(3)}, build)
    victim = driver.nodes[VICTIM]
    nonce_before = chain.w3.eth.get_transaction_count(victim.address)

    # the block with the commit is dropped
    before_commit = chain.snapshot()
    assert victim.step().actions == ["commit"]
    committed = victim.state.rounds[0]
    chain.revert(before_commit)
    assert not task.commitment_of(victim.address).exists  # gone with its block
    assert victim.step().actions == ["reorg", "commit"]  # noticed, and committed again...
    assert victim.state.rounds[0].digest == committed.digest  # ...the very same update
    assert victim.state.rounds[0].salt == committed.salt

    driver.run_until(lambda: task.phase() == Phase.REVEAL)
    chain.mine(CONFIRMATIONS)  # the commit is deep enough to build on

    # the block with the reveal is dropped
    before_reveal = chain.snapshot()
    assert victim.step().actions == ["reveal"]
    chain.revert(before_reveal)
    assert victim.step().actions == ["reorg", "reveal"]
    chain.mine(CONFIRMATIONS)
    assert victim.step().actions == []  # now deep: done, nothing re-sent

    driver.run_until(lambda: task.round_record(0).status == RoundStatus.FINALIZED)
    for events in (task.events(Committed, round=0), task.events(Revealed, round=0)):
        assert [e.account for e in events].count(victim.address) == 1
    (mine,) = [o for o in victim.report_of(0).outcomes if o.participant == victim.address]
    assert mine.accepted  # its update counted
    sent = chain.w3.eth.get_transaction_count(victim.address) - nonce_before
    voted = any(task.vote_of(0, victim.address).result_hash)
    assert sent == 2 + voted  # commit, reveal (+ its vote): the dropped copies left no trace
