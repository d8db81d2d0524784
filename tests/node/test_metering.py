"""A node's work per round: seconds split into train, store, fetch, aggregate and chain, and the
bytes it put and fetched, booked per step and kept in its metrics file."""

from __future__ import annotations

from pathlib import Path

import pytest
from flchain_node.federation import Federation, advance_clock
from flchain_node.local import LocalMetrics, read_work
from flchain_node.metering import WORK
from flchain_node.participant import StepReport
from flchain_node.runner import run_node

from flchain.errors import ProtocolError
from flchain.ledger.contracts import Phase, Revealed, RoundFinalized


def _step_all(fed: Federation) -> list[StepReport]:
    return [node.step() for node in fed.nodes]


def test_steps_book_their_work_and_the_bytes_they_moved(fed: Federation) -> None:
    task = fed.deployment.task
    commits = _step_all(fed)
    for report, node in zip(commits, fed.nodes, strict=True):
        assert report.actions == ["commit"]
        assert set(report.seconds) == {"train", "store", "fetch", "chain"}
        assert all(s >= 0 for s in report.seconds.values()) and report.seconds["train"] > 0
        update = fed.store.get(node.state.rounds[0].cid)
        assert report.moved["store"] == len(update)
        assert report.moved["fetch"] == len(fed.store.get(node.view.global_model_cid(0)))
    while task.phase() != Phase.ATTEST:
        if not any(r.actions for r in _step_all(fed)):
            advance_clock(task)
    sizes = [len(fed.store.get(e.cid)) for e in task.events(Revealed, round=0)]
    votes = [r for r in _step_all(fed) if "attest" in r.actions]
    assert votes  # every node sits on the committee; the round finalizes at quorum
    for report in votes:
        assert report.seconds["aggregate"] > 0
    # the member that recomputed fetched every revealed update (its own too: the recomputation
    # reads what was revealed, not what it remembers); members sharing this process and store
    # take its outcome (SharedRecomputation) and fetch nothing
    fetched = sorted(r.moved.get("fetch", 0) for r in votes)
    assert fetched[-1] >= sum(sizes)
    final = task.events(RoundFinalized, round=0)[0]
    new = len(fed.store.get(final.model_cid)) + len(fed.store.get(final.report_cid))
    # ... and stored the new global model and the round's report (it pins what it backs)
    stored = [r.moved.get("store", 0) for r in votes]
    assert max(stored) == new and all(size in (0, new) for size in stored)


def test_run_node_keeps_the_work_per_round_in_the_metrics_file(
    fed: Federation, tmp_path: Path
) -> None:
    node, path = fed.nodes[0], tmp_path / "node.metrics.json"
    with pytest.raises(ProtocolError, match="timed out"):  # nobody mines after its commit
        run_node(node, poll=0.05, timeout=1, log=lambda _: None, metrics=LocalMetrics(path))
    work = read_work(path)
    assert list(work) == [0]
    update = fed.store.get(node.state.rounds[0].cid)
    assert work[0].store_bytes == len(update) and work[0].train > 0
    assert all(getattr(work[0], kind) >= 0 for kind in WORK)
    assert LocalMetrics(path).work == work  # a restarted node resumes from what it booked
