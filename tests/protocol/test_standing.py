"""``fltrust``'s ``memory``: each participant's evidence over rounds lives in the round report
(canonical integers, digest on-chain), and the next round's inputs read it from the report its
credits build on, so every committee member pays from the same history and none keeps any."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from flchain_node.federation import DemoConfig, Federation
from support.fedkit import DEMO

from flchain.errors import ProtocolError
from flchain.learning.aggregation import SKETCH_BOUND, SKETCH_SIZE, Standing
from flchain.ledger.contracts import RoundFinalized
from flchain.protocol.committee import recompute_round
from flchain.protocol.report import RoundReport
from flchain.protocol.rounds import fetch_report
from flchain.types import Address

REMEMBERING = dataclasses.replace(DEMO, rule="fltrust", rule_params={"memory": 2}, rounds=2)
PERSISTING = dataclasses.replace(REMEMBERING, rule_params={"persist": 2})


@pytest.mark.parametrize("config", [REMEMBERING, PERSISTING], ids=["memory", "persist"])
def test_the_next_rounds_inputs_read_the_standing_of_the_report_they_build_on(
    config: DemoConfig,
) -> None:
    torch.set_num_threads(1)
    fed = Federation(config)
    try:
        fed.run()
        task = fed.deployment.task
        reports = []
        for r in range(config.rounds):
            (event,) = task.events(RoundFinalized, round=r)
            # two committee members, each with its own view of chain and store: same bytes
            inputs = [n.view.round_inputs(r) for n in fed.nodes[:2]]
            a, b = (recompute_round(i, fed.store) for i in inputs)
            assert a.report.to_bytes() == b.report.to_bytes()
            assert a.report_digest == event.report_digest
            reports.append(fetch_report(fed.store, event))
            if r == 0:
                assert all(not i.previous_standing for i in inputs)
            else:
                assert all(i.previous_standing == reports[0].standing for i in inputs)
        first, second = (rep.standing for rep in reports)
        paid = {o.participant for o in reports[0].outcomes if o.accepted}
        assert set(first) == paid and all(s.rounds == 1 for s in first.values())
        for who, s in second.items():  # one more round of evidence for those paid again
            was = first.get(who, Standing(0, 0))
            assert s.rounds - was.rounds in (0, 1) and abs(s.balance - was.balance) <= 1
        assert any(second[w].rounds == 2 for w in second)
        assert b'"standing"' in reports[1].to_bytes()
        kept = [len(s.sketch) for rep in reports for s in rep.standing.values()]
        assert set(kept) == ({SKETCH_SIZE} if "persist" in config.rule_params else {0})
    finally:
        fed.close()


def test_reports_without_memory_keep_their_bytes_and_bad_standing_is_refused() -> None:
    base = RoundReport("0xt", 1, "fltrust", "a", "b", "0x00", (), 0)
    assert b"standing" not in base.to_bytes()
    kept = dataclasses.replace(base, standing={Address("0xp"): Standing(3, -2)})
    assert RoundReport.from_bytes(kept.to_bytes()) == kept
    assert b'"standing":{"0xp":[3,-2]}' in kept.to_bytes()
    for bad in ([0, 0], [2, 3], [2], [1.0, 1], "x", [True, 0]):
        raw = json.loads(kept.to_bytes())
        raw["standing"] = {"0xp": bad}
        text = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
        with pytest.raises(ProtocolError, match="standing must map addresses"):
            RoundReport.from_bytes(text)


def test_a_standing_with_a_sketch_round_trips_and_a_bad_sketch_is_refused() -> None:
    sketch = tuple(range(-SKETCH_BOUND, SKETCH_BOUND, 2 * SKETCH_BOUND // SKETCH_SIZE + 1))
    sketch = (sketch + (SKETCH_BOUND,) * SKETCH_SIZE)[:SKETCH_SIZE]
    base = RoundReport("0xt", 1, "fltrust", "a", "b", "0x00", (), 0)
    kept = dataclasses.replace(
        base, standing={Address("0xp"): Standing(3, -2, sketch), Address("0xq"): Standing(1, 0)}
    )
    assert RoundReport.from_bytes(kept.to_bytes()) == kept
    assert b'"0xq":[1,0]' in kept.to_bytes()  # no sketch kept: the old two numbers
    assert b'"0xp":[3,-2,[' + str(sketch[0]).encode() in kept.to_bytes()
    for bad in (
        [1, 0, list(sketch[:-1])],  # too short
        [1, 0, [*sketch[:-1], SKETCH_BOUND + 1]],  # out of bounds
        [1, 0, [*sketch[:-1], 1.0]],  # not an integer
        [1, 0, [*sketch[:-1], True]],
        [1, 0, "x"],
        [1, 0, list(sketch), 4],
    ):
        raw = json.loads(kept.to_bytes())
        raw["standing"] = {"0xp": bad}
        text = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
        with pytest.raises(ProtocolError, match="standing must map addresses"):
            RoundReport.from_bytes(text)
