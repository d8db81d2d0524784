"""A committee with a server optimizer: two members recomputing independently (separate stores,
separate processes' worth of state) attest the same model, optimizer state and report, and the
state a round stores is what the next round steps from."""

from __future__ import annotations

from pathlib import Path

import torch
from eth_utils import to_checksum_address

from flchain.config import AggregationConfig, TaskConfig, TrainingConfig
from flchain.learning.codec import encode_model, encode_update, update_digest
from flchain.learning.server_opt import decode_state
from flchain.protocol.committee import Reveal, RoundInputs, RoundOutcome, recompute_round
from flchain.protocol.report import RoundReport
from flchain.protocol.task import initial_model_and_manifest, server_optimizer
from flchain.storage import LocalStore
from flchain.types import CID, Address

TASK = Address("0x" + "77" * 20)
HONEST = [Address(to_checksum_address(f"0x{i:040x}")) for i in range(1, 5)]


def _config(optimizer: str) -> TaskConfig:
    training = (
        TrainingConfig(server_optimizer=optimizer, server_lr=0.01)
        if optimizer != "none"
        else TrainingConfig()
    )
    return TaskConfig(training=training, aggregation=AggregationConfig(rule="fedavg"))


class Member:
    """One committee member: its own store, fed the same public blobs."""

    def __init__(self, root: Path, config: TaskConfig) -> None:
        torch.set_num_threads(1)
        self.model, manifest = initial_model_and_manifest(config)
        self.manifest, self.spec = manifest, manifest.spec
        self.store = LocalStore(root, durable=False)
        self.initial = self.store.put(encode_model(self.model.state_dict(), self.spec))

    def reveals(self, round_id: int) -> list[Reveal]:
        gen = torch.Generator().manual_seed(round_id)
        out = []
        for i, who in enumerate(HONEST):
            delta = {
                k: 0.01 * torch.randn(v.shape, generator=gen)
                for k, v in self.model.state_dict().items()
            }
            data = encode_update(delta, self.spec)
            out.append(Reveal(who, update_digest(data), 10 + i, self.store.put(data)))
        return out

    def recompute(
        self, round_id: int, model: CID, state: CID | None, previous: RoundReport | None = None
    ) -> RoundOutcome:
        inputs = RoundInputs(
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
        )
        return recompute_round(inputs, self.store)


def _chain_of_rounds(member: Member, rounds: int) -> list[RoundOutcome]:
    """Round after round, each from the model and state the previous report names (as
    ``TaskView.round_inputs`` reads them)."""
    outcomes: list[RoundOutcome] = []
    model, state, previous = member.initial, None, None
    for r in range(rounds):
        outcome = member.recompute(r, model, state, previous)
        outcomes.append(outcome)
        previous = outcome.report
        model, state = CID(previous.model_cid), CID(previous.server_state_cid)
    return outcomes


def test_two_members_attest_the_same_fedadam_rounds(tmp_path: Path) -> None:
    config = _config("fedadam")
    a = _chain_of_rounds(Member(tmp_path / "a", config), 3)
    b = _chain_of_rounds(Member(tmp_path / "b", config), 3)
    for x, y in zip(a, b, strict=True):
        assert x.model_digest == y.model_digest and x.model_cid == y.model_cid
        assert x.report_digest == y.report_digest
        assert x.result_tuple() == y.result_tuple()
        assert x.report.server_state_cid and x.report.server_state_cid == y.report.server_state_cid
    assert len({o.model_digest for o in a}) == 3  # every round moved the model
    assert len({o.report.server_state_cid for o in a}) == 3  # and the state


def test_the_stored_state_is_what_the_next_round_steps_from(tmp_path: Path) -> None:
    member = Member(tmp_path / "m", _config("fedadam"))
    first, second = _chain_of_rounds(member, 2)
    optimizer = server_optimizer(member.manifest.config)
    assert optimizer is not None
    state = decode_state(member.store.get(CID(first.report.server_state_cid)), optimizer,
                         member.spec)  # fmt: skip
    assert state["v"].any() and state["m"].any()
    # the same round from a zero state (as if the state were lost) is a different result
    fresh = member.recompute(1, CID(first.report.model_cid), None, first.report)
    assert fresh.model_digest != second.model_digest


def test_fedadam_moves_the_model_differently_from_fedavg(tmp_path: Path) -> None:
    adam = _chain_of_rounds(Member(tmp_path / "adam", _config("fedadam")), 1)[0]
    plain = _chain_of_rounds(Member(tmp_path / "plain", _config("none")), 1)[0]
    assert adam.model_digest != plain.model_digest
    assert plain.report.server_state_cid == ""
    assert b"server_state_cid" not in plain.report.to_bytes()  # reports keep their old bytes
    assert RoundReport.from_bytes(adam.report.to_bytes()) == adam.report
