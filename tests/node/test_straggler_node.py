"""A straggler: a node whose training outlasts the commit phase sits the round out cleanly (no
commit sent to revert, no commitment, so nothing slashed) and the others' round finalizes."""

from __future__ import annotations

import torch
from flchain_node.federation import Federation, advance_clock, did_something
from flchain_node.trainer import LocalTrainer

from flchain.ledger.contracts import Committed, RoundStatus, TrainingTask


class SlowTrainer:
    """Trains like ``inner``, but the chain moves past the commit deadline meanwhile."""

    def __init__(self, inner: LocalTrainer, task: TrainingTask) -> None:
        self.inner, self.task = inner, task

    def produce(
        self, global_state: dict[str, torch.Tensor], round_id: int
    ) -> tuple[dict[str, torch.Tensor], int]:
        end = self.task.round_record(round_id).commit_end
        if end > self.task.chain.block_number:  # time passes
            self.task.chain.mine(end - self.task.chain.block_number)
        return self.inner.produce(global_state, round_id)


def test_a_node_that_trains_past_the_commit_deadline_skips_the_round(fed: Federation) -> None:
    task, registry = fed.deployment.task, fed.deployment.registry
    slow = fed.nodes[0]
    slow.source = SlowTrainer(slow.source, task)  # type: ignore[arg-type]
    stakes = {n.address: registry.stake_of(n.address) for n in fed.nodes}
    for node in fed.nodes[1:]:
        assert node.step().actions == ["commit"]
    assert slow.step().actions == ["missed-commit-deadline"]
    assert slow.step().actions == []  # said once; no commit is ever sent for the round
    for _ in range(30):
        if task.round_record(0).status != RoundStatus.OPEN:
            break
        if not any([did_something(n.step()) for n in fed.nodes]):
            advance_clock(task)
    assert task.round_record(0).status == RoundStatus.FINALIZED
    assert slow.address not in {e.account for e in task.events(Committed, round=0)}
    assert {n.address: registry.stake_of(n.address) for n in fed.nodes} == stakes
    assert not slow.state.rounds[0].committed
