"""The one-process federation on the chain (``flchain demo``) and the in-memory simulation train
alike: same shards, same per-client seeds (``client_seed``/``training_seed``), same exact FedAvg,
so with honest clients every round's global model is the same, bit for bit. This is what lets
the in-memory simulation (and a Flower simulation seeded the same way) stand as the ledger-free
baseline of the demo, round by round."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
from flchain_node import participant
from flchain_node.factory import shard_trainer
from flchain_node.federation import Federation
from support.fedkit import DEMO as KIT_DEMO

from flchain.learning.aggregation import aggregator_from_config
from flchain.learning.codec import decode_model, encode_update
from flchain.learning.simulation import SimConfig, run_federation
from flchain.learning.training import client_seed, training_seed
from flchain.protocol.task import task_model, train_config

DEMO = replace(KIT_DEMO, rounds=2, seed=3)


@pytest.mark.parametrize("workers", [0, 2], ids=["in-step", "worker-processes"])
def test_demo_and_in_memory_simulation_agree_round_by_round(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also with the honest participants' training run ahead in worker processes (which
    also encode the updates): the updates, hence the models, are the same bit for bit."""
    torch.set_num_threads(1)
    encoded_in_steps: list[int] = []

    def counted(*args: Any) -> bytes:
        encoded_in_steps.append(1)
        return encode_update(*args)

    monkeypatch.setattr(participant, "encode_update", counted)
    fed = Federation(replace(DEMO, workers=workers))
    try:
        result = fed.run()
        chain_models = [
            decode_model(fed.store.get(row.model_cid), fed.manifest.spec) for row in result.rounds
        ]
        served = fed.pool.served if fed.pool is not None else 0
    finally:
        fed.close()
    # with workers, every update came from one (none fell back to training in the step)
    assert served == (DEMO.participants * DEMO.rounds if workers else 0)
    # ... and the steps encoded none of them (the workers did)
    assert len(encoded_in_steps) == (0 if workers else DEMO.participants * DEMO.rounds)
    assert [row.status for row in result.rounds] == ["finalized"] * DEMO.rounds

    config = DEMO.task_config()
    model = task_model(config)  # the task's initial global model, as create_task builds it
    sim_models: list[dict[str, torch.Tensor]] = []
    sim = run_federation(
        model,
        fed.manifest.spec,
        fed.fed,
        aggregator_from_config("fedavg", {}),
        SimConfig(rounds=DEMO.rounds, train=train_config(config), seed=config.training.seed),
        on_round=lambda _: sim_models.append({k: v.clone() for k, v in model.state_dict().items()}),
    )

    assert sim.accuracies == [row.accuracy for row in result.rounds]
    for round_id, (on_chain, in_memory) in enumerate(zip(chain_models, sim_models, strict=True)):
        for name, tensor in on_chain.items():
            assert torch.equal(tensor, in_memory[name]), f"round {round_id}: {name} differs"
    # the models did move: the agreement is not two untouched initial models
    first, second = chain_models
    assert any(not torch.equal(first[name], second[name]) for name in first)


def test_each_client_trains_on_its_own_seed_every_round() -> None:
    seeds = {
        training_seed(client_seed(task_seed, client), round_id)
        for task_seed in (0, 1)
        for client in range(1009)
        for round_id in range(5)
    }
    assert len(seeds) == 2 * 1009 * 5
    trainer = shard_trainer(DEMO.task_config(), 2, DEMO.participants)
    assert trainer.seed == client_seed(DEMO.seed, 2)
