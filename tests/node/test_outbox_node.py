"""Participant nodes that queue their commits and reveals in one :class:`Outbox` (a one-process
federation sending a phase's transactions together): what a node learns at the flush is what
it learned from sending alone — its block and gas, a reveal refused for good, a commit that
failed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flchain_node.federation import Federation, advance_clock
from flchain_node.participant import StepReport
from support.fedkit import DEMO

from flchain.ledger.chain import Outbox
from flchain.ledger.contracts import Phase


@pytest.fixture
def queued() -> Iterator[tuple[Federation, Outbox]]:
    fed = Federation(DEMO)  # embedded chain, 3 participants
    outbox = Outbox(fed.chain)
    for node in fed.nodes:
        node.outbox = outbox
    try:
        yield fed, outbox
    finally:
        fed.close()


def _step_all(fed: Federation) -> list[StepReport]:
    return [node.step() for node in fed.nodes]


def _advance_to(fed: Federation, phase: Phase) -> None:
    task = fed.deployment.task
    for _ in range(4):  # one deadline at a time
        if task.phase() == phase:
            return
        advance_clock(task)
    assert task.phase() == phase


def test_a_queued_reveal_refused_for_good_is_recorded_and_the_others_land(
    queued: tuple[Federation, Outbox],
) -> None:
    fed, outbox = queued
    task = fed.deployment.task
    commits = _step_all(fed)
    assert all(s.actions == ["commit"] and not s.gas for s in commits)  # queued, not sent
    assert not task.commitment_of(fed.nodes[0].address).exists
    assert outbox.flush() == 3
    assert all(s.gas["commit"] > 0 for s in commits)  # booked into the steps that queued them
    _advance_to(fed, Phase.REVEAL)

    liar = fed.nodes[0]
    liar.state.rounds[0].salt = "0x" + "00" * 32  # its reveal no longer opens its commitment
    reveals = _step_all(fed)
    assert outbox.flush() == 3  # a refusal is the liar's outcome, not raised
    assert reveals[0].actions == ["reveal", "reveal-refused"]
    mine = liar.state.rounds[0]
    assert mine.revealed and "CommitmentMismatch" in mine.error
    for node, step in zip(fed.nodes[1:], reveals[1:], strict=True):
        state = node.state.rounds[0]
        assert state.revealed and not state.error and state.reveal_block > state.commit_block
        assert step.gas["reveal"] > 0
    assert task.round_record(0).reveals == 2


def test_a_queued_commit_that_fails_is_raised_from_the_flush(
    queued: tuple[Federation, Outbox],
) -> None:
    fed, outbox = queued
    _step_all(fed)  # queued while the commit phase is open...
    commit_end = fed.deployment.task.round_record(0).commit_end
    fed.chain.mine(commit_end - fed.chain.block_number)  # ...sent after it closed
    with pytest.raises(Exception, match="CommitPhaseClosed"):
        outbox.flush()
    assert not any(node.state.rounds[0].committed for node in fed.nodes)
    assert len(outbox) == 0
