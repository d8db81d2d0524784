"""``TaskView``: the one reader of a task's protocol state (finalized rounds, verified reports,
the model a round trains from, the reward pool, a committee member's inputs)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from flchain_node.federation import Federation
from support.fedkit import DEMO

from flchain.errors import ProtocolError
from flchain.ledger.contracts import RoundFinalized
from flchain.protocol.committee import recompute_round
from flchain.protocol.rounds import TaskView, fetch_report, finalized_bound, reward_pool


def test_view_of_a_finalized_round_agrees_with_the_chain(fed: Federation) -> None:
    task = fed.deployment.task
    view = TaskView(task, fed.store)
    initial = view.params.initial_model_cid
    assert view.last_report() is None and view.global_model_cid(0) == initial
    with pytest.raises(ProtocolError, match="not been finalized"):
        view.report_of(0)

    fed.run()

    report = view.report_of(0)  # the view scans on: no new object needed
    assert view.last_report() == report and view.last_report(before=0) is None
    assert view.global_model_cid(0) == initial  # round 0 trained from the initial model
    assert view.global_model_cid(1) == report.model_cid == task.model_cid()
    record = task.round_record(0)
    fee = view.params.committee_fee * min(view.params.committee_size, record.commits)
    assert reward_pool(view.params, record) == view.params.round_budget - fee
    # a committee member recomputing from the view's inputs gets the finalized result
    outcome = recompute_round(view.round_inputs(0), fed.store)
    assert outcome.report_digest == record.report_digest == report.digest()
    assert sorted(r.participant for r in view.reveals(0)) == sorted(fed.role_of)


def test_a_report_that_does_not_match_its_digest_is_refused(fed: Federation) -> None:
    fed.run()
    (event,) = fed.deployment.task.events(RoundFinalized, round=0)
    assert fetch_report(fed.store, event).digest() == event.report_digest
    forged = dataclasses.replace(event, report_digest=b"\x01" * 32)
    with pytest.raises(ProtocolError, match="does not match its digest"):
        fetch_report(fed.store, forged)


def test_reports_are_found_from_state_without_scanning_logs_from_block_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fed = Federation(dataclasses.replace(DEMO, rounds=2))
    try:
        fed.run()
        task = fed.deployment.task
        scans: list[int] = []
        events = task.chain.events

        def spy(contract: Any, name: str, from_block: int, *args: Any) -> Any:
            scans.append(from_block)
            return events(contract, name, from_block, *args)

        monkeypatch.setattr(task.chain, "events", spy)
        view = TaskView(task, fed.store)  # fresh: nothing remembered
        latest = view.last_report()
        assert latest is not None and latest.round == 1 == task.reward_round()
        assert view.report_of(0).round == 0 and view.last_report(before=1) == view.report_of(0)
        assert view.global_model_cid(2) == latest.model_cid == task.model_cid()
        # one query per report, each from where its round's votes began (round 1's after
        # round 0's end), never from block 0
        starts = [finalized_bound(task.round_record(r)) for r in (1, 0)]
        assert scans == starts and 0 < starts[1] < starts[0]
        assert starts[1] > task.round_record(0).commit_end > 0
    finally:
        fed.close()
