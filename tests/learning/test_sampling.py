"""Client sampling: a public, deterministic draw of a fraction C of the participants."""

from __future__ import annotations

import hashlib

import pytest

from flchain.config import config_from_dict
from flchain.errors import ConfigError
from flchain.learning.sampling import is_sampled, sampling_seed, threshold
from flchain.learning.simulation import SimConfig, sampled_clients
from flchain.learning.training import TrainConfig

TASK = "0x" + "12" * 20


def _addresses(n: int) -> list[str]:
    return ["0x" + hashlib.sha256(str(i).encode()).hexdigest()[:40] for i in range(n)]


def test_the_draw_takes_about_c_of_the_participants_and_changes_every_round() -> None:
    people = _addresses(2000)
    drawn = []
    for rnd in range(5):
        seed = sampling_seed(TASK, rnd, previous_seed=12345 + rnd)
        drawn.append({a for a in people if is_sampled(0.1, seed, a)})
    assert all(150 <= len(d) <= 250 for d in drawn), [len(d) for d in drawn]  # 200 ± 3.5σ
    assert len(drawn[0] & drawn[1]) < 60  # independent rounds overlap by ~C² · n = 20
    assert all(is_sampled(1.0, sampling_seed(TASK, 0, 0), a) for a in people[:50])


def test_the_draw_is_a_function_of_public_inputs_only() -> None:
    seed = sampling_seed(TASK, 3, 99)
    assert seed == sampling_seed(TASK.upper().replace("0X", "0x"), 3, 99)  # case-insensitive
    assert seed != sampling_seed(TASK, 3, 98) and seed != sampling_seed(TASK, 4, 99)
    person = _addresses(1)[0]
    assert is_sampled(0.5, seed, person) == is_sampled(0.5, seed, person.upper()[2:])
    assert threshold(0.5) == 2**255 and threshold(1.0) == 2**256
    with pytest.raises(ValueError, match="client fraction"):
        threshold(0.0)


def test_config_and_simulation_take_a_client_fraction() -> None:
    assert config_from_dict({"training": {"client_fraction": 0.1}}).training.client_fraction == 0.1
    with pytest.raises(ConfigError, match=r"training\.client_fraction must be in \(0, 1\]"):
        config_from_dict({"training": {"client_fraction": 1.5}})
    assert "client_fraction" not in config_from_dict({}).to_dict()["training"]
    sim = SimConfig(rounds=3, train=TrainConfig(), client_fraction=0.1)
    sizes = [len(sampled_clients(100, sim, r)) for r in range(1, 4)]
    assert all(2 <= s <= 20 for s in sizes) and len(set(map(frozenset, (
        sampled_clients(100, sim, r) for r in range(1, 4))))) == 3  # fmt: skip
    assert sampled_clients(7, SimConfig(rounds=1, train=TrainConfig()), 1) == set(range(7))
    with pytest.raises(ConfigError, match="client_fraction"):
        SimConfig(rounds=1, train=TrainConfig(), client_fraction=0.5, attack="sign_flip",
                  num_attackers=1)  # fmt: skip
