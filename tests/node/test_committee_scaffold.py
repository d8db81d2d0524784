"""A SCAFFOLD committee: two members recomputing independently (separate stores) attest the
same model, server control variate and report; the variate a round stores is what the next
round adds to; updates of the plain model spec are refused. With a server optimizer the
optimizer steps with the ``Δw`` half, ``c`` moves exactly as without one, and the optimizer's
state rides in the same companion blob."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from support.committee import Member, chain_of_rounds, committee_config

from flchain.config import TaskConfig
from flchain.errors import AggregationError
from flchain.learning.aggregation import ClientUpdate
from flchain.learning.codec import apply_update, decode_model, decode_update, encode_model
from flchain.learning.scaffold import (
    decode_control,
    decode_control_state,
    server_control_step,
    split,
    update_spec,
    zero_control,
)
from flchain.learning.server_opt import server_step
from flchain.protocol.task import server_optimizer
from flchain.types import CID

SCAFFOLD = committee_config(algorithm="scaffold")
WITH_ADAM = committee_config(algorithm="scaffold", optimizer="fedadam")


@pytest.mark.parametrize("config", [SCAFFOLD, WITH_ADAM], ids=["plain", "fedadam"])
def test_two_members_attest_the_same_scaffold_rounds(tmp_path: Path, config: TaskConfig) -> None:
    a = chain_of_rounds(Member(tmp_path / "a", config), 3)
    b = chain_of_rounds(Member(tmp_path / "b", config), 3)
    for x, y in zip(a, b, strict=True):
        assert x.result_tuple() == y.result_tuple()
        assert x.report.server_state_cid and x.report.server_state_cid == y.report.server_state_cid
    assert all(all(o.accepted for o in x.report.outcomes) for x in a)
    assert len({o.model_digest for o in a}) == 3
    assert len({o.report.server_state_cid for o in a}) == 3


def test_the_stored_variate_is_what_the_next_round_adds_to(tmp_path: Path) -> None:
    member = Member(tmp_path / "m", SCAFFOLD)
    first, second = chain_of_rounds(member, 2)
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
    member = Member(tmp_path / "p", SCAFFOLD, plain_updates=True)
    with pytest.raises(AggregationError, match="0 valid update"):
        member.recompute(0, member.initial, None)


def test_a_server_optimizer_steps_with_the_model_half_and_leaves_c_alone(tmp_path: Path) -> None:
    adam = Member(tmp_path / "adam", WITH_ADAM)
    plain = Member(tmp_path / "plain", SCAFFOLD)
    with_adam, without = chain_of_rounds(adam, 2), chain_of_rounds(plain, 2)
    optimizer = server_optimizer(adam.manifest.config)
    assert optimizer is not None
    # the same reveals each round: c is the same with and without the optimizer, the model not
    for x, y in zip(with_adam, without, strict=True):
        cx, state = decode_control_state(
            adam.store.get(CID(x.report.server_state_cid)), adam.spec, optimizer
        )
        cy = decode_control(plain.store.get(CID(y.report.server_state_cid)), plain.spec)
        assert np.array_equal(cx, cy) and cx.any()
        assert state["m"].any() and state["v"].any()
        assert x.model_digest != y.model_digest
    # round 0 recomputed from the pure parts: weighted mean, split, c step, optimizer step
    inputs = adam.inputs(0, adam.initial, None)
    uspec = update_spec(adam.spec)
    updates = [
        ClientUpdate(r.participant, decode_update(adam.store.get(r.cid), uspec), r.num_samples)
        for r in inputs.reveals
    ]
    dw, dc = split(inputs.aggregator.aggregate(updates, []).update, adam.spec)
    step, state = server_step(optimizer, dw, optimizer.zero_state(adam.spec.num_params))
    initial = decode_model(adam.store.get(adam.initial), adam.spec)
    model = encode_model(apply_update(initial, step), adam.spec)
    assert hashlib.sha256(model).digest() == with_adam[0].model_digest
    c0, stored = decode_control_state(
        adam.store.get(CID(with_adam[0].report.server_state_cid)), adam.spec, optimizer
    )
    bound = adam.spec.codec.bound_q
    assert np.array_equal(c0, server_control_step(zero_control(adam.spec), dc, 1.0, bound))
    assert all(np.array_equal(stored[k], state[k]) for k in ("m", "v"))


def test_a_lost_optimizer_state_changes_the_result(tmp_path: Path) -> None:
    member = Member(tmp_path / "m", WITH_ADAM)
    first, second = chain_of_rounds(member, 2)
    fresh = member.recompute(1, CID(first.report.model_cid), None, first.report)
    assert fresh.model_digest != second.model_digest  # zero m, v: a different step
