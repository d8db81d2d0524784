"""A federation whose task uses FedAdam: the embedded nodes finalize every round, each report
names the optimizer state stored beside the new model, and an independent recomputation from
what the chain names (TaskView's inputs: model and state of the previous report) reproduces the
attested results."""

from __future__ import annotations

from dataclasses import replace

import torch
from flchain_node.federation import Federation
from support.fedkit import DEMO, assert_recomputes

from flchain.learning.server_opt import decode_state
from flchain.ledger.contracts import RoundFinalized, RoundStatus
from flchain.protocol.rounds import TaskView, fetch_report, named_content
from flchain.protocol.task import server_optimizer
from flchain.types import CID

ROUNDS = 2


def test_a_fedadam_task_runs_and_finalizes() -> None:
    torch.set_num_threads(1)
    fed = Federation(replace(DEMO, rounds=ROUNDS, server_optimizer="fedadam", server_lr=0.01))
    try:
        result = fed.run()
        task = fed.deployment.task
        assert [row.status for row in result.rounds] == ["finalized"] * ROUNDS
        assert fed.manifest.config.training.server_optimizer == "fedadam"
        optimizer = server_optimizer(fed.manifest.config)
        assert optimizer is not None
        view = TaskView(task, fed.store, fed.manifest)
        states = []
        for r in range(ROUNDS):
            record = task.round_record(r)
            assert record.status == RoundStatus.FINALIZED
            (event,) = task.events(RoundFinalized, round=r)
            report = fetch_report(fed.store, event)
            state = decode_state(fed.store.get(CID(report.server_state_cid)), optimizer,
                                 fed.manifest.spec)  # fmt: skip
            assert state["m"].any() and state["v"].any()
            states.append(report.server_state_cid)
            inputs = view.round_inputs(r)
            assert inputs.server_state_cid == (CID(states[r - 1]) if r else None)
            assert_recomputes(inputs, fed.store, event, record)
        assert len(set(states)) == ROUNDS
        # `flchain store gc --task` sees the states as content the task named
        rounds, _ = named_content(task, fed.store)
        assert sorted((r.round, r.state) for r in rounds) == list(enumerate(states))
    finally:
        fed.close()
