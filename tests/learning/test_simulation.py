from __future__ import annotations

import pytest

from flchain.errors import ConfigError
from flchain.learning.aggregation import CenteredClip, FedAvg, FLTrust, Standing, TrimmedMean
from flchain.learning.data import federate, load_digits
from flchain.learning.models import ModelSpec, build_model
from flchain.learning.simulation import (
    REFERENCE_ID,
    SimConfig,
    participant_id,
    reference_train_config,
    run_federation,
)
from flchain.learning.training import TrainConfig

CFG = TrainConfig(epochs=5, batch_size=16, lr=0.1)


@pytest.fixture(scope="module")
def fed():  # type: ignore[no-untyped-def]
    return federate(load_digits(), 8, "iid", seed=0)


def _run(fed, rule, attack=None, k=0, rounds=4, root=None):  # type: ignore[no-untyped-def]
    model = build_model("mlp", "digits")
    spec = ModelSpec.from_model(model, "mlp:digits")
    return run_federation(model, spec, fed, rule, SimConfig(rounds, CFG, attack, k), root=root)


def test_clean_fedavg_learns(fed) -> None:  # type: ignore[no-untyped-def]
    res = _run(fed, FedAvg())
    assert res.accuracies[-1] > 0.85 and res.accuracies[-1] > res.accuracies[0]
    assert res.rounds_to(0.5) is not None
    assert all(d.accepted for r in res.rounds for d in r.decisions)


def test_sign_flip_breaks_fedavg_not_trimmed_mean(fed) -> None:  # type: ignore[no-untyped-def]
    bad = _run(fed, FedAvg(), "sign_flip", 2)
    robust = _run(fed, TrimmedMean(0.25), "sign_flip", 2)
    assert robust.accuracies[-1] > 0.8 > bad.accuracies[-1]


def test_free_riders_and_copycats_get_nothing(fed) -> None:  # type: ignore[no-untyped-def]
    for attack, word in [("free_rider", "empty"), ("copycat", "identical")]:
        res = _run(fed, FedAvg(), attack, 2, rounds=1)
        by = {d.participant: d for d in res.rounds[0].decisions}
        for i in range(2):
            assert not by[participant_id(i)].accepted and word in by[participant_id(i)].reason
        if attack == "copycat":  # the victim (first honest client) is a copy too
            assert not by[participant_id(2)].accepted


def test_out_of_bound_updates_become_failures(fed) -> None:  # type: ignore[no-untyped-def]
    model = build_model("mlp", "digits")
    spec = ModelSpec.from_model(model, "mlp:digits")
    sim = SimConfig(1, CFG, "gaussian", 1, gaussian_std=100.0)  # beyond the ±64 bound
    res = run_federation(model, spec, fed, FedAvg(), sim)
    d = res.rounds[0].decisions[0]
    assert not d.accepted and d.reason.startswith("invalid:")


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="unknown attack"):
        SimConfig(1, CFG, "ddos", 1)


def test_the_owner_root_update_steers_fltrust_and_earns_nothing(fed) -> None:  # type: ignore[no-untyped-def]
    root = fed.test.subset(list(range(60)))
    # clients hold ~180 samples, 3x the root set: the owner takes 3x the epochs, as many steps
    assert reference_train_config(CFG, [len(c) for c in fed.clients], 60).epochs == 5 * 3
    res = _run(fed, FLTrust(reference=REFERENCE_ID), "sign_flip", 2, rounds=3, root=root)
    assert res.accuracies[-1] > 0.8
    for r in res.rounds:
        by = {d.participant: d for d in r.decisions}
        assert by[REFERENCE_ID].score == 0 and not by[REFERENCE_ID].accepted
        assert all(by[participant_id(i)].score == 0 for i in range(2))
        assert all(by[participant_id(i)].score > 0 for i in range(2, 8))
    # no root data set: the same rule falls back to centered_clip, round for round
    bare = _run(fed, FLTrust(reference=REFERENCE_ID), "sign_flip", 2, rounds=2)
    plain = _run(fed, CenteredClip(), "sign_flip", 2, rounds=2)
    assert bare.accuracies == plain.accuracies
    assert all("fallback" in d.reason for d in bare.rounds[0].decisions)


class _Remembering(FLTrust):
    """``fltrust`` with memory that notes the standing each round gets and leaves."""

    def __init__(self) -> None:
        super().__init__(reference=REFERENCE_ID, memory=1)
        self.seen: list[tuple[dict[str, Standing], dict[str, Standing]]] = []

    def aggregate(self, updates, failures=(), validation=None, standing=None):  # type: ignore[no-untyped-def]
        r = super().aggregate(updates, failures, validation, standing)
        self.seen.append((dict(standing or {}), dict(r.standing)))
        return r


def test_a_rule_with_memory_reads_each_rounds_standing_from_the_last(fed) -> None:  # type: ignore[no-untyped-def]
    root = fed.test.subset(list(range(60)))
    rule = _Remembering()
    res = _run(fed, rule, "sign_flip", 2, rounds=3, root=root)
    got, left = zip(*rule.seen, strict=True)
    assert got[0] == {} and list(got[1:]) == list(left[:-1])
    assert {p for p, s in left[-1].items() if s.rounds == 3} == {
        participant_id(i) for i in range(2, 8)
    }  # the honest, paid every round; the sign flips never weighed
    plain = _run(fed, FLTrust(reference=REFERENCE_ID), "sign_flip", 2, rounds=3, root=root)
    assert res.accuracies == plain.accuracies  # memory is about pay only


def test_intermittent_colluders_send_honest_updates_between_attacks(fed) -> None:  # type: ignore[no-untyped-def]
    model = build_model("mlp", "digits")
    spec = ModelSpec.from_model(model, "mlp:digits")
    every = SimConfig(2, CFG, "alie", 2, omniscient=True, collusion_jitter=1.0, attack_every=2)
    res = run_federation(model, spec, fed, FedAvg(), every)
    clean = _run(fed, FedAvg(), rounds=2)
    always = _run(fed, FedAvg(), "alie", 2, rounds=2)
    assert res.accuracies[0] == clean.accuracies[0] != always.accuracies[0]  # round 1: honest
    assert res.accuracies[1] != clean.accuracies[1]  # round 2: crafted
    with pytest.raises(ConfigError, match="attack_every"):
        SimConfig(2, CFG, "sign_flip", 2, attack_every=2)
