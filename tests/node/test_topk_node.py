"""A top-k task on the embedded chain: every revealed update is a top-k file, rounds finalize
and recompute identically, and each node keeps its error-feedback residual in its state
directory: a restarted node retrains a round identically, and a residual written for another
codec is dropped rather than fed back."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from flchain_node.federation import Federation
from flchain_node.state import RoundVectors
from support.fedkit import DEMO, Driver, assert_recomputes, fresh_node

from flchain.learning.codec import decode_model, decode_update
from flchain.ledger.contracts import Revealed, RoundFinalized, RoundStatus
from flchain.protocol.rounds import TaskView
from flchain.types import CID

TOPK = replace(DEMO, rounds=2, codec="topk", topk_fraction=0.05)


def test_a_topk_task_finalizes_and_a_restarted_node_keeps_its_residual(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    fed = Federation(TOPK)
    try:
        task, spec = fed.deployment.task, fed.manifest.spec
        assert spec.codec.encoding == "topk" and spec.codec.topk_fraction == 0.05
        k = spec.codec.topk(spec.num_params)
        fed.nodes[0] = fresh_node(fed, 0, tmp_path)
        residuals = tmp_path / "node0.residuals"
        Driver(fed).finish_round(0)
        assert task.round_record(0).status == RoundStatus.FINALIZED
        for e in task.events(Revealed, round=0):
            assert 0 < np.count_nonzero(decode_update(fed.store.get(CID(e.cid)), spec).q) <= k
        (event,) = task.events(RoundFinalized, round=0)
        inputs = TaskView(task, fed.store, fed.manifest).round_inputs(0)
        assert_recomputes(inputs, fed.store, event, task.round_record(0))
        r0 = np.load(residuals / "0.npy")
        assert r0.shape == (spec.num_params,) and r0.any()  # 95% of the update held back

        fed.nodes[0] = fresh_node(fed, 0, tmp_path)  # restarted: files and chain only
        assert fed.nodes[0].step().actions == ["commit"]
        committed = fed.nodes[0].state.rounds[1].digest

        def retrain() -> str:
            """Round 1's update as a node restarted from the files alone trains it again."""
            node = fresh_node(fed, 0, tmp_path)
            global_state = decode_model(fed.store.get(node.view.global_model_cid(1)), spec)
            delta = node.source.produce(global_state, 1, None).update
            return "0x" + hashlib.sha256(node._sparse_update(delta, 1)).hexdigest()

        # round 1 feeds back round 0's residual, not the one it already saved for itself
        assert retrain() == committed
        shutil.rmtree(residuals)  # a node that lost its residual sends something else
        assert retrain() != committed
        Driver(fed).finish_round(1)
        assert task.round_record(1).status == RoundStatus.FINALIZED
    finally:
        fed.close()


def test_a_residual_kept_for_another_codec_is_dropped(tmp_path: Path) -> None:
    directory = tmp_path / "node.residuals"
    store = RoundVectors(directory, "residual", key="spec-a")
    store.save(0, np.full(4, 0.5))
    assert (RoundVectors(directory, "residual", key="spec-a").latest(1, 4) == 0.5).all()
    # the task's codec changed (another spec digest): start from zero, not the stale residual
    changed = RoundVectors(directory, "residual", key="spec-b")
    assert changed.rounds() == [] and not changed.latest(1, 4).any()
    changed.save(1, np.full(4, 1.5))
    assert (RoundVectors(directory, "residual", key="spec-b").latest(2, 4) == 1.5).all()
    assert RoundVectors(directory, "residual", key="spec-a").rounds() == []
