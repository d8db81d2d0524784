"""A SCAFFOLD committee: two members recomputing independently (separate stores) attest the
same model, server control variate and report; the variate a round stores is what the next
round adds to; updates of the plain model spec are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from eth_utils import to_checksum_address

from flchain.config import AggregationConfig, TaskConfig, TrainingConfig
from flchain.errors import AggregationError
from flchain.learning.codec import encode_model, encode_update, update_digest
from flchain.learning.scaffold import CONTROL, decode_control, update_spec
from flchain.protocol.committee import Reveal, RoundInputs, RoundOutcome, recompute_round
from flchain.protocol.report import RoundReport
from flchain.protocol.task import initial_model_and_manifest
from flchain.storage import LocalStore
from flchain.types import CID, Address

TASK = Address("0x" + "77" * 20)
HONEST = [Address(to_checksum_address(f"0x{i:040x}")) for i in range(1, 5)]
CONFIG = TaskConfig(
    training=TrainingConfig(algorithm="scaffold"), aggregation=AggregationConfig(rule="fedavg")
)


class Member:
    """One committee member: its own store, fed the same public blobs."""

    def __init__(self, root: Path, *, plain_updates: bool = False) -> None:
        torch.set_num_threads(1)
        self.model, manifest = initial_model_and_manifest(CONFIG)
        self.manifest, self.spec = manifest, manifest.spec
        self.store = LocalStore(root, durable=False)
        self.initial = self.store.put(encode_model(self.model.state_dict(), self.spec))
        self.plain_updates = plain_updates

    def reveals(self, round_id: int) -> list[Reveal]:
        gen = torch.Generator().manual_seed(round_id)
        out = []
        for i, who in enumerate(HONEST):
            params = self.model.state_dict()
            delta = {k: 0.01 * torch.randn(v.shape, generator=gen) for k, v in params.items()}
            if self.plain_updates:
                data = encode_update(delta, self.spec)
            else:
                delta |= {
                    CONTROL + k: torch.randn(v.shape, generator=gen) for k, v in params.items()
                }
                data = encode_update(delta, update_spec(self.spec))
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
            server_state_cid=state,
            scaffold=True,
        )
        return recompute_round(inputs, self.store)


def _chain_of_rounds(member: Member, rounds: int) -> list[RoundOutcome]:
    outcomes: list[RoundOutcome] = []
    model, state, previous = member.initial, None, None
    for r in range(rounds):
        outcome = member.recompute(r, model, state, previous)
        outcomes.append(outcome)
        previous = outcome.report
        model, state = CID(previous.model_cid), CID(previous.server_state_cid)
    return outcomes


def test_two_members_attest_the_same_scaffold_rounds(tmp_path: Path) -> None:
    a = _chain_of_rounds(Member(tmp_path / "a"), 3)
    b = _chain_of_rounds(Member(tmp_path / "b"), 3)
    for x, y in zip(a, b, strict=True):
        assert x.result_tuple() == y.result_tuple()
        assert x.report.server_state_cid and x.report.server_state_cid == y.report.server_state_cid
    assert all(all(o.accepted for o in x.report.outcomes) for x in a)
    assert len({o.model_digest for o in a}) == 3
    assert len({o.report.server_state_cid for o in a}) == 3


def test_the_stored_variate_is_what_the_next_round_adds_to(tmp_path: Path) -> None:
    member = Member(tmp_path / "m")
    first, second = _chain_of_rounds(member, 2)
    c1 = decode_control(member.store.get(CID(first.report.server_state_cid)), member.spec)
    c2 = decode_control(member.store.get(CID(second.report.server_state_cid)), member.spec)
    # the same round from a zero variate (as if it were lost): the model step does not depend
    # on c, the new variate does, by exactly c1 (C = 1: c ← c + Δc, integer addition)
    fresh = member.recompute(1, CID(first.report.model_cid), None, first.report)
    c2_fresh = decode_control(member.store.get(CID(fresh.report.server_state_cid)), member.spec)
    assert fresh.model_digest == second.model_digest
    assert c1.any() and not np.array_equal(c2, c2_fresh)
    assert np.array_equal(c2, c1 + c2_fresh)


def test_updates_without_control_tensors_are_failures(tmp_path: Path) -> None:
    member = Member(tmp_path / "p", plain_updates=True)
    with pytest.raises(AggregationError, match="0 valid update"):
        member.recompute(0, member.initial, None)
