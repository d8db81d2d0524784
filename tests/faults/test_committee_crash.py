"""Committee members that crash before attesting: the others still reach the quorum, or, when
too few are left, the round expires cleanly and the next one runs; silent members are slashed
when the committee is settled."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from flchain_node.federation import Federation
from support.fedkit import DEMO, Driver

from flchain.ledger.contract_errors import NothingToSettle
from flchain.ledger.contracts import (
    Attested,
    CommitteeMemberSettled,
    Phase,
    RoundStatus,
    Settlement,
)


def _settle(fed: Federation, round_id: int) -> dict[str, Settlement]:
    """Mine past the round's attest window and settle every member, as any keeper may."""
    task = fed.deployment.task
    block, deadline = fed.chain.block_number, task.attest_deadline(round_id)
    if block <= deadline:
        fed.chain.mine(deadline - block + 1)
    for member in task.committee(round_id):
        with contextlib.suppress(NothingToSettle):  # an expired round's voters: neither
            task.settle_committee_member(fed.owner, round_id, member)
    return {s.member: s.outcome for s in task.events(CommitteeMemberSettled) if s.round == round_id}


def _start_round_crashing(fed: Federation, tmp_path: Path, crashed: set[int]) -> Driver:
    """Run round 0 until everyone revealed, then let the ``crashed`` nodes die for good."""
    task = fed.deployment.task
    driver = Driver.restartable(fed, tmp_path)
    driver.run_until(lambda: task.round_record(0).reveals == 3)
    assert set(task.committee(0)) == {n.address for n in driver.nodes.values()}
    for i in crashed:
        del driver.nodes[i]
    return driver


def test_quorum_is_reached_without_a_crashed_member_who_is_then_slashed(
    fed: Federation, tmp_path: Path
) -> None:
    task, registry = fed.deployment.task, fed.deployment.registry
    silent = fed.accounts[2].address
    stake_before = registry.stake_of(silent)
    driver = _start_round_crashing(fed, tmp_path, crashed={2})

    driver.run_until(driver.round_closed(0))

    assert task.round_record(0).status == RoundStatus.FINALIZED
    assert task.effective_quorum(3) == 2 and len(task.events(Attested, round=0)) == 2
    settled = _settle(fed, 0)
    assert settled.pop(silent) == Settlement.SLASHED_SILENT
    assert set(settled.values()) == {Settlement.FEE_CREDITED} and len(settled) == 2
    assert registry.stake_of(silent) < stake_before
    assert task.fees_owed(fed.accounts[0].address) > 0


@pytest.fixture
def two_rounds() -> Iterator[Federation]:
    torch.set_num_threads(1)
    federation = Federation(dataclasses.replace(DEMO, rounds=2))
    try:
        yield federation
    finally:
        federation.close()


def test_round_without_quorum_expires_and_the_next_round_runs(
    two_rounds: Federation, tmp_path: Path
) -> None:
    fed = two_rounds
    task, registry = fed.deployment.task, fed.deployment.registry
    initial_model = task.model_cid()
    survivor = fed.accounts[0].address
    driver = _start_round_crashing(fed, tmp_path, crashed={1, 2})

    driver.run_until(lambda: task.current_round() == 1)

    assert task.round_record(0).status == RoundStatus.EXPIRED
    assert [e.member for e in task.events(Attested, round=0)] == [survivor]  # 1 vote < quorum 2
    assert task.model_cid() == initial_model  # an expired round leaves the global model
    settled = _settle(fed, 0)
    silent = {a.address for a in fed.accounts[1:3]}
    assert settled == dict.fromkeys(silent, Settlement.SLASHED_SILENT)  # survivor: neither
    # the crashed nodes come back; slashed below the minimum stake, they sit the round out
    for i in (1, 2):
        driver.nodes[i] = driver.restart(i)
    assert not any(registry.is_active(a) for a in silent)
    driver.run_until(driver.round_closed(1))

    assert task.round_record(1).status == RoundStatus.FINALIZED
    report = driver.nodes[0].report_of(1)
    assert report.previous_model_cid == initial_model != report.model_cid
    assert [o.participant for o in report.outcomes if o.accepted] == [survivor]
    assert task.finalized_rounds() == 1 and task.current_round() == 2  # expired ones don't count
    assert task.phase() == Phase.COMMIT


def test_vote_that_becomes_the_finalizing_one_after_its_gas_estimate_lands(
    fed: Federation, tmp_path: Path
) -> None:
    """Regression: members vote concurrently. A vote whose gas was estimated while it would
    not reach the quorum, but which lands after a rival's vote and so also finalizes the
    round (~3x the gas), ran out of gas; the member crashed and missed its vote."""
    task = fed.deployment.task
    driver = _start_round_crashing(fed, tmp_path, crashed=set())
    fed.chain.mine(1)  # the reveal phase ended in the last reveal's block
    assert task.phase() == Phase.ATTEST
    rival, slow = driver.nodes[0], driver.nodes[1]
    send = slow.chain._send

    def send_after_the_rival_voted(tx: Any, sender: Any, *rest: Any) -> Any:
        assert rival.step().actions == ["attest"]  # lands between our estimate and our send
        return send(tx, sender, *rest)

    slow.chain._send = send_after_the_rival_voted  # type: ignore[method-assign]
    assert slow.step().actions == ["attest"]

    assert task.round_record(0).status == RoundStatus.FINALIZED
    assert [e.votes for e in task.events(Attested, round=0)] == [1, 2]
