"""A SCAFFOLD task on the embedded chain: every round finalizes, each update file carries Δw
and Δc under one commitment, each report names the server control variate stored beside the
model, an independent recomputation from what the chain names reproduces the attested results,
and a restarted node keeps its own control variate (so it retrains a round identically)."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from flchain_node.factory import build_participant
from flchain_node.federation import Federation
from flchain_node.participant import Produced
from flchain_node.trainer import LocalTrainer
from support.fedkit import DEMO, Driver, assert_recomputes, fresh_node

from flchain.errors import ConfigError
from flchain.learning.codec import decode_model, decode_update, encode_update
from flchain.learning.scaffold import (
    Controls,
    decode_control,
    decode_control_state,
    split,
    update_spec,
)
from flchain.ledger.contracts import Revealed, RoundFinalized, RoundStatus
from flchain.protocol.rounds import TaskView, fetch_report, named_content
from flchain.protocol.task import server_optimizer
from flchain.types import CID

ROUNDS = 2
SCAFFOLD = replace(DEMO, rounds=ROUNDS, algorithm="scaffold")


@pytest.mark.parametrize("optimizer", ["none", "fedadam"])
def test_a_scaffold_task_runs_and_finalizes(optimizer: str) -> None:
    torch.set_num_threads(1)
    fed = Federation(replace(SCAFFOLD, server_optimizer=optimizer, server_lr=0.01))
    try:
        result = fed.run()
        task, spec = fed.deployment.task, fed.manifest.spec
        adam = server_optimizer(fed.manifest.config)  # the optimizer's m, v ride beside c
        assert (adam is not None) == (optimizer != "none")
        assert [row.status for row in result.rounds] == ["finalized"] * ROUNDS
        assert fed.manifest.config.training.algorithm == "scaffold"
        view = TaskView(task, fed.store, fed.manifest)
        states = []
        for r in range(ROUNDS):
            record = task.round_record(r)
            assert record.status == RoundStatus.FINALIZED
            for e in task.events(Revealed, round=r):  # one file: Δw and Δc, both non-zero
                dw, dc = split(decode_update(fed.store.get(CID(e.cid)), update_spec(spec)), spec)
                assert dw.q.any() and dc.any()
            (event,) = task.events(RoundFinalized, round=r)
            report = fetch_report(fed.store, event)
            blob = fed.store.get(CID(report.server_state_cid))
            control, state = decode_control_state(blob, spec, adam)
            assert control.any() and all(v.any() for v in state.values())
            assert set(state) == ({"m", "v"} if adam else set())
            states.append(report.server_state_cid)
            inputs = view.round_inputs(r)
            assert inputs.scaffold
            assert inputs.server_state_cid == (CID(states[r - 1]) if r else None)
            assert_recomputes(inputs, fed.store, event, record)
        assert len(set(states)) == ROUNDS
        # the nodes of round 1 trained with the variate round 0's report names
        assert np.array_equal(view.server_control(1), decode_control(
            fed.store.get(CID(states[0])), spec, adam))  # fmt: skip
        assert not view.server_control(0).any()
        rounds, _ = named_content(task, fed.store)
        assert sorted((r.round, r.state) for r in rounds) == list(enumerate(states))
    finally:
        fed.close()


def test_a_restarted_node_keeps_its_control_variate(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    fed = Federation(SCAFFOLD)
    try:
        fed.nodes[0] = fresh_node(fed, 0, tmp_path)
        controls = tmp_path / "node0.controls"
        Driver(fed).finish_round(0)
        assert fed.deployment.task.round_record(0).status == RoundStatus.FINALIZED
        c0 = np.load(controls / "0.npy")
        assert c0.shape == (fed.manifest.spec.num_params,) and c0.any()

        fed.nodes[0] = fresh_node(fed, 0, tmp_path)  # restarted: files and chain only
        assert fed.nodes[0].step().actions == ["commit"]
        committed = fed.nodes[0].state.rounds[1].digest
        assert (controls / "1.npy").exists()

        def retrain() -> str:
            """Round 1's update as a node restarted from the files alone trains it again."""
            node = fresh_node(fed, 0, tmp_path)
            global_state = decode_model(
                fed.store.get(node.view.global_model_cid(1)), fed.manifest.spec
            )
            produced = node.source.produce(global_state, 1, node._controls(1))
            data = encode_update(produced.update, update_spec(fed.manifest.spec))
            return "0x" + hashlib.sha256(data).hexdigest()

        # round 1 trains from round 0's c_i, not from the c_i⁺ it already saved for round 1
        assert retrain() == committed
        shutil.rmtree(controls)  # a node that lost c_i trains differently
        assert retrain() != committed
        Driver(fed).finish_round(1)
        assert fed.deployment.task.round_record(1).status == RoundStatus.FINALIZED
    finally:
        fed.close()


class FloatDeltasOnly:
    """An update source that knows nothing of control variates (as a Flower client): it trains
    the round from the global model alone."""

    def __init__(self, inner: LocalTrainer) -> None:
        self.inner = inner

    def produce(
        self, global_state: dict[str, torch.Tensor], round_id: int, controls: Controls | None
    ) -> Produced:
        return self.inner.produce(global_state, round_id, None)


def test_a_trainer_without_control_variates_is_refused_when_it_would_train() -> None:
    torch.set_num_threads(1)
    fed = Federation(replace(SCAFFOLD, rounds=1))
    try:
        task = fed.deployment.task
        trainer = FloatDeltasOnly(fed.nodes[0].source)  # type: ignore[arg-type]
        node = build_participant(task, fed.store, fed.accounts[0], trainer)  # builds: may attest
        with pytest.raises(ConfigError, match="cannot train with control variates"):
            node.step()
    finally:
        fed.close()


def test_c_i_moves_only_by_a_delta_c_the_server_took_in() -> None:
    """A node whose round-0 update never reached the aggregate (it did not reveal) trains
    round 1 from its c_i before round 0, zero, not from the c_i⁺ it saved: the server's c has
    no Δc_i of it. A node whose update was accepted trains from its round-0 c_i⁺."""
    torch.set_num_threads(1)
    fed = Federation(SCAFFOLD)
    try:
        silent, counted = fed.nodes[0], fed.nodes[1]
        silent.will_reveal = False
        driver = Driver(fed)
        driver.finish_round(0)
        task = fed.deployment.task
        assert task.round_record(0).status == RoundStatus.FINALIZED
        report = fed.nodes[1].report_of(0)
        accepted = {o.participant for o in report.outcomes if o.accepted}
        assert silent.address not in accepted and counted.address in accepted
        assert silent.controls.rounds() == counted.controls.rounds() == [0]
        saved = counted.controls.latest(before=1, size=fed.manifest.spec.num_params)
        assert saved.any()

        assert not silent._controls(1).client.any()
        assert silent.controls.rounds() == []  # round 0's c_i⁺ was dropped
        assert np.array_equal(counted._controls(1).client, saved)
        assert counted.controls.rounds() == [0]
        silent.will_reveal = True
        driver.finish_round(1)
        assert task.round_record(1).status == RoundStatus.FINALIZED
        assert silent.controls.rounds() == [1]
    finally:
        fed.close()
