"""``fltrust``'s aggregate options (``sybil``, ``band``, ``support``, ``mask``, ``quiet``) and
its pay option ``lean`` are task options like any rule parameter: named in the manifest,
applied by every committee member's recomputation, and the attested round is what an
independent member computes with them (not without them)."""

from __future__ import annotations

from dataclasses import replace

import torch
from flchain_node.federation import Federation
from support.fedkit import DEMO, assert_recomputes

from flchain.learning.aggregation import FLTrust
from flchain.ledger.contracts import RoundFinalized
from flchain.protocol.committee import recompute_round
from flchain.protocol.rounds import TaskView

OPTIONS = {"sybil": 2, "band": 30, "support": 2, "mask": 1, "quiet": 2, "lean": 2}


def test_the_committee_recomputes_fltrust_with_its_aggregate_options() -> None:
    torch.set_num_threads(1)
    demo = replace(DEMO, participants=5, rule="fltrust", rule_params=dict(OPTIONS))
    fed = Federation(demo)
    try:
        result = fed.run()
        task = fed.deployment.task
        assert [row.status for row in result.rounds] == ["finalized"]
        assert fed.manifest.config.aggregation.params == OPTIONS
        inputs = TaskView(task, fed.store, fed.manifest).round_inputs(0)
        rule = inputs.aggregator
        assert isinstance(rule, FLTrust) and (rule.sybil, rule.band) == (2, 30)
        assert (rule.support, rule.mask, rule.quiet, rule.lean) == (2, 1, 2, 2)
        (event,) = task.events(RoundFinalized, round=0)
        assert_recomputes(inputs, fed.store, event, task.round_record(0))
        plain = FLTrust(reference=rule.reference)
        other = recompute_round(replace(inputs, aggregator=plain), fed.store)
        assert other.model_cid != event.model_cid  # the options changed the attested aggregate
    finally:
        fed.close()
