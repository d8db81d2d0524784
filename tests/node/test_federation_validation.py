"""A task with a public validation set (``aggregation.validation_per_class``): the set is
named by the manifest's config, every committee member builds the same one from the built-in
data set, the rule scores with it, and an independent recomputation reproduces the attested
results; without the set, the same round scores differently."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from flchain_node.federation import Federation
from support.fedkit import DEMO, assert_recomputes

from flchain.config import TaskConfig, config_from_dict
from flchain.errors import ConfigError
from flchain.ledger.contracts import RoundFinalized
from flchain.protocol.committee import recompute_round
from flchain.protocol.rounds import TaskView, fetch_report
from flchain.protocol.task import validation_set

PER_CLASS = 5


def test_the_validation_set_weights_the_attested_scores() -> None:
    torch.set_num_threads(1)
    demo = replace(
        DEMO, participants=4, rule="centered_clip", attackers=1, attack="label_flip",
        validation_per_class=PER_CLASS,
    )  # fmt: skip
    fed = Federation(demo)
    try:
        result = fed.run()
        task = fed.deployment.task
        assert [row.status for row in result.rounds] == ["finalized"]
        view = TaskView(task, fed.store, fed.manifest)
        inputs = view.round_inputs(0)
        assert inputs.validation is not None
        assert len(inputs.validation.y) == PER_CLASS * 10
        assert sorted(set(inputs.validation.y.tolist())) == list(range(10))
        (event,) = task.events(RoundFinalized, round=0)
        assert_recomputes(inputs, fed.store, event, task.round_record(0))
        attested = {o.participant: o.score for o in fetch_report(fed.store, event).outcomes}
        unweighted = recompute_round(replace(inputs, validation=None), fed.store)
        assert {o.participant: o.score for o in unweighted.report.outcomes} != attested
    finally:
        fed.close()


def test_the_set_is_the_same_for_every_member_and_only_where_it_can_be() -> None:
    base = TaskConfig().to_dict()
    assert "validation_per_class" not in base["aggregation"]  # old manifests keep their bytes
    config = config_from_dict(base | {"aggregation": {"rule": "centered_clip",
                                                      "validation_per_class": 3}})  # fmt: skip
    one, two = validation_set(config), validation_set(config)
    assert one is not None and two is not None
    assert (one.x == two.x).all() and (one.y == two.y).all() and len(one.y) == 30
    for change, message in (
        ({"data": {"dataset": "custom", "input_shape": [4], "num_classes": 2}}, "built-in"),
        ({"training": {"model": "cnn"}}, "forward pass"),
        ({"training": {"algorithm": "scaffold"}}, "scaffold"),
    ):
        raw = base | {"aggregation": {"rule": "centered_clip", "validation_per_class": 3}}
        with pytest.raises(ConfigError, match=message):
            config_from_dict(raw | change).validate()
