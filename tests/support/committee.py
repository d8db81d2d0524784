"""A committee member recomputing rounds on its own store, fed the same public blobs as any
other member: what the committee suites (SCAFFOLD, server optimizers, both) drive."""

from __future__ import annotations

from pathlib import Path

import torch
from eth_utils import to_checksum_address

from flchain.config import AggregationConfig, TaskConfig, TrainingConfig
from flchain.learning.codec import encode_model, encode_update, update_digest
from flchain.learning.scaffold import CONTROL, update_spec
from flchain.protocol.committee import Reveal, RoundInputs, RoundOutcome, recompute_round
from flchain.protocol.report import RoundReport
from flchain.protocol.task import initial_model_and_manifest, server_optimizer
from flchain.storage import LocalStore
from flchain.types import CID, Address

TASK = Address("0x" + "77" * 20)
HONEST = [Address(to_checksum_address(f"0x{i:040x}")) for i in range(1, 5)]


def committee_config(*, algorithm: str = "fedavg", optimizer: str = "none") -> TaskConfig:
    """A task with the weighted-mean rule, ``algorithm`` and server ``optimizer`` (lr 0.01)."""
    training = (
        TrainingConfig(algorithm=algorithm)
        if optimizer == "none"
        else TrainingConfig(algorithm=algorithm, server_optimizer=optimizer, server_lr=0.01)
    )
    return TaskConfig(training=training, aggregation=AggregationConfig(rule="fedavg"))


class Member:
    """One committee member: its own store, fed the same public blobs. Updates are random and
    depend on the round only (not on the model), so two tasks see the same reveals; a SCAFFOLD
    task's carry ``Δc`` unless ``plain_updates``."""

    def __init__(self, root: Path, config: TaskConfig, *, plain_updates: bool = False) -> None:
        torch.set_num_threads(1)
        self.model, manifest = initial_model_and_manifest(config)
        self.manifest, self.spec = manifest, manifest.spec
        self.store = LocalStore(root, durable=False)
        self.initial = self.store.put(encode_model(self.model.state_dict(), self.spec))
        self.scaffold = config.training.algorithm == "scaffold"
        self.plain_updates = plain_updates

    def reveals(self, round_id: int) -> list[Reveal]:
        gen = torch.Generator().manual_seed(round_id)
        out = []
        for i, who in enumerate(HONEST):
            params = self.model.state_dict()
            delta = {k: 0.01 * torch.randn(v.shape, generator=gen) for k, v in params.items()}
            if self.scaffold and not self.plain_updates:
                delta |= {
                    CONTROL + k: torch.randn(v.shape, generator=gen) for k, v in params.items()
                }
                data = encode_update(delta, update_spec(self.spec))
            else:
                data = encode_update(delta, self.spec)
            out.append(Reveal(who, update_digest(data), 10 + i, self.store.put(data)))
        return out

    def inputs(
        self, round_id: int, model: CID, state: CID | None, previous: RoundReport | None = None
    ) -> RoundInputs:
        """Round ``round_id``'s inputs from ``model`` and companion ``state``, as
        ``TaskView.round_inputs`` reads them from the previous finalized report."""
        return RoundInputs(
            task=TASK,
            round_id=round_id,
            spec=self.spec,
            aggregator=self.manifest.aggregator(),
            global_model_cid=model,
            reward_pool=1000 * 10**18,
            previous_cumulative=previous.cumulative if previous else {},
            reveals=self.reveals(round_id),
            max_samples=100_000,
            server_optimizer=server_optimizer(self.manifest.config),
            server_state_cid=state,
            scaffold=self.scaffold,
        )

    def recompute(
        self, round_id: int, model: CID, state: CID | None, previous: RoundReport | None = None
    ) -> RoundOutcome:
        return recompute_round(self.inputs(round_id, model, state, previous), self.store)


def chain_of_rounds(member: Member, rounds: int) -> list[RoundOutcome]:
    """Round after round, each from the model and state the previous report names."""
    outcomes: list[RoundOutcome] = []
    model, state, previous = member.initial, None, None
    for r in range(rounds):
        outcome = member.recompute(r, model, state, previous)
        outcomes.append(outcome)
        previous = outcome.report
        model, state = CID(previous.model_cid), CID(previous.server_state_cid)
    return outcomes
