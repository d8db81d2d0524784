"""A committee with a server optimizer: two members recomputing independently (separate stores,
separate processes' worth of state) attest the same model, optimizer state and report, and the
state a round stores is what the next round steps from."""

from __future__ import annotations

from pathlib import Path

from support.committee import Member, chain_of_rounds, committee_config

from flchain.learning.server_opt import decode_state
from flchain.protocol.report import RoundReport
from flchain.protocol.task import server_optimizer
from flchain.types import CID


def test_two_members_attest_the_same_fedadam_rounds(tmp_path: Path) -> None:
    config = committee_config(optimizer="fedadam")
    a = chain_of_rounds(Member(tmp_path / "a", config), 3)
    b = chain_of_rounds(Member(tmp_path / "b", config), 3)
    for x, y in zip(a, b, strict=True):
        assert x.model_digest == y.model_digest and x.model_cid == y.model_cid
        assert x.report_digest == y.report_digest
        assert x.result_tuple() == y.result_tuple()
        assert x.report.server_state_cid and x.report.server_state_cid == y.report.server_state_cid
    assert len({o.model_digest for o in a}) == 3  # every round moved the model
    assert len({o.report.server_state_cid for o in a}) == 3  # and the state


def test_the_stored_state_is_what_the_next_round_steps_from(tmp_path: Path) -> None:
    member = Member(tmp_path / "m", committee_config(optimizer="fedadam"))
    first, second = chain_of_rounds(member, 2)
    optimizer = server_optimizer(member.manifest.config)
    assert optimizer is not None
    state = decode_state(member.store.get(CID(first.report.server_state_cid)), optimizer,
                         member.spec)  # fmt: skip
    assert state["v"].any() and state["m"].any()
    # the same round from a zero state (as if the state were lost) is a different result
    fresh = member.recompute(1, CID(first.report.model_cid), None, first.report)
    assert fresh.model_digest != second.model_digest


def test_fedadam_moves_the_model_differently_from_fedavg(tmp_path: Path) -> None:
    adam = chain_of_rounds(Member(tmp_path / "adam", committee_config(optimizer="fedadam")), 1)[0]
    plain = chain_of_rounds(Member(tmp_path / "plain", committee_config()), 1)[0]
    assert adam.model_digest != plain.model_digest
    assert plain.report.server_state_cid == ""
    assert b"server_state_cid" not in plain.report.to_bytes()  # reports keep their old bytes
    assert RoundReport.from_bytes(adam.report.to_bytes()) == adam.report
