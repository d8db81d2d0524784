"""A straggler: a node whose training outlasts the commit phase sits the round out cleanly (no
commit sent to revert, no commitment, so nothing slashed) and the others' round finalizes."""

from __future__ import annotations

from flchain_node.federation import Federation
from support.fedkit import Driver, SlowTrainer

from flchain.ledger.contracts import Committed, RoundStatus


def test_a_node_that_trains_past_the_commit_deadline_skips_the_round(fed: Federation) -> None:
    task, registry = fed.deployment.task, fed.deployment.registry
    slow = fed.nodes[0]
    slow.source = SlowTrainer(slow.source, task)  # type: ignore[arg-type]
    stakes = {n.address: registry.stake_of(n.address) for n in fed.nodes}
    for node in fed.nodes[1:]:
        assert node.step().actions == ["commit"]
    assert slow.step().actions == ["missed-commit-deadline"]
    assert slow.step().actions == []  # said once; no commit is ever sent for the round
    Driver(fed).finish_round(0)
    assert task.round_record(0).status == RoundStatus.FINALIZED
    assert slow.address not in {e.account for e in task.events(Committed, round=0)}
    assert {n.address: registry.stake_of(n.address) for n in fed.nodes} == stakes
    assert not slow.state.rounds[0].committed
