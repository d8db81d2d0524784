"""Client sampling on the chain: only the participants the round's public draw picks commit;
the others sit the round out (no commitment, nothing slashed) and the round finalizes."""

from __future__ import annotations

import dataclasses

from flchain_node.federation import Federation
from support.fedkit import Driver

from flchain.learning.sampling import is_sampled, sampling_seed
from flchain.ledger.contracts import Committed, RoundStatus
from flchain.protocol.manifest import TaskManifest


def test_only_drawn_participants_commit_and_the_round_finalizes(fed: Federation) -> None:
    task, registry = fed.deployment.task, fed.deployment.registry
    seed = sampling_seed(task.address, 0, 0)  # round 0: no earlier committee seed
    people = [n.address for n in fed.nodes]
    fraction = next(  # a C that draws some of the three and leaves out others
        c for c in (0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6)
        if 0 < sum(is_sampled(c, seed, p) for p in people) < len(people)
    )  # fmt: skip
    drawn = {p for p in people if is_sampled(fraction, seed, p)}
    training = dataclasses.replace(fed.manifest.config.training, client_fraction=fraction)
    config = dataclasses.replace(fed.manifest.config, training=training)
    manifest = TaskManifest(config, fed.manifest.spec)
    for node in fed.nodes:  # as if the task had been created with this C
        node.view._manifest = node.manifest = manifest
    stakes = {p: registry.stake_of(p) for p in people}
    first = {n.address: n.step().actions for n in fed.nodes}
    assert first == {p: ["commit"] if p in drawn else ["not-sampled"] for p in people}
    Driver(fed).finish_round(0)
    assert task.round_record(0).status == RoundStatus.FINALIZED
    assert {e.account for e in task.events(Committed, round=0)} == drawn
    assert {p: registry.stake_of(p) for p in people} == stakes
    report = fed.nodes[0].report_of(0)
    assert {o.participant for o in report.outcomes if o.accepted} == drawn
