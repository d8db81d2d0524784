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
from flchain.ledger.merkle import RewardTree
from flchain.protocol.committee import recompute_round
from flchain.protocol.report import RoundReport
from flchain.protocol.rounds import (
    TaskView,
    VerifiedReports,
    fetch_report,
    finalized_bound,
    reward_pool,
)


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
        view = TaskView(task, fed.store, reports=VerifiedReports())  # fresh: nothing remembered
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


# --- one verified report and reward tree per process ------------------------------------------


def _forbid(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("read again what this process had already checked")


def test_views_of_one_process_fetch_each_report_and_build_each_tree_once(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    fed.run()
    task = fed.deployment.task
    reports = VerifiedReports()
    first = TaskView(task, fed.store, reports=reports)
    report, tree = first.report_of(0), first.reward_tree(0)
    record = task.round_record(0)
    assert report.digest() == record.report_digest and bytes(tree.root) == record.reward_root
    assert len(reports) == 1

    # another node's view: no log query, no store read, no tree built; the same objects
    monkeypatch.setattr(task.chain, "events", _forbid)
    monkeypatch.setattr(fed.store, "get", _forbid)
    second = TaskView(task, fed.store, fed.manifest, reports=reports)
    assert second.last_report() is report and second.report_of(0) is report
    assert second.reward_tree(0) is tree
    node = fed.nodes[0]
    assert tree.proof(node.address) == RewardTree(report.cumulative).proof(node.address)


def test_a_held_report_answers_only_for_the_digest_the_chain_names(fed: Federation) -> None:
    fed.run()
    task = fed.deployment.task
    true = TaskView(task, fed.store, reports=VerifiedReports()).report_of(0)
    reports = VerifiedReports()
    forged = dataclasses.replace(true, model_cid="bafyforged")
    assert reports.put(forged) == forged.digest() != true.digest()  # held under its own digest
    view = TaskView(task, fed.store, reports=reports)
    assert view.report_of(0) == true and view.last_report() == true
    assert len(reports) == 2 and reports.get(true.digest()) == true


def test_views_follow_a_reset_chain_rather_than_what_they_held(fed: Federation) -> None:
    chain, task = fed.chain, fed.deployment.task
    before = chain.snapshot()
    fed.run()
    reports = VerifiedReports()
    view = TaskView(task, fed.store, reports=reports)
    report = view.report_of(0)
    assert view.last_report() == report and view.global_model_cid(1) == report.model_cid

    chain.revert(before)  # round 0 never finalized on this chain
    assert reports.get(report.digest()) == report  # still held: content, not chain state
    assert view.last_report() is None
    assert view.global_model_cid(1) == view.params.initial_model_cid
    with pytest.raises(ProtocolError, match="not been finalized"):
        view.report_of(0)
    with pytest.raises(ProtocolError, match="not been finalized"):
        view.reward_tree(0)


def test_verified_reports_keep_the_most_recently_used() -> None:
    def report(round_id: int) -> RoundReport:
        return RoundReport(
            task="0x" + "11" * 20, round=round_id, rule="fedavg", previous_model_cid="a",
            model_cid="b", model_digest="0x" + "00" * 32, outcomes=(), reward_total=5,
            cumulative={"0x" + "22" * 20: 5 + round_id},  # type: ignore[dict-item]
        )  # fmt: skip

    reports = VerifiedReports(capacity=2)
    d0, d1 = reports.put(report(0)), reports.put(report(1))
    tree = reports.tree(d0)
    assert reports.tree(d0) is tree  # built once
    assert reports.get(d0) == report(0)  # used: round 1's is now the oldest
    d2 = reports.put(report(2))
    assert len(reports) == 2 and reports.get(d1) is None
    assert reports.get(d0) == report(0) and reports.get(d2) == report(2)
    with pytest.raises(KeyError):
        reports.tree(d1)  # gone with its report
    with pytest.raises(ValueError, match="capacity"):
        VerifiedReports(capacity=0)
