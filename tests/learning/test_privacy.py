"""Client-level DP as a task option: the config schema, the accountant, the manifest."""

from __future__ import annotations

import pytest

from flchain.config import TaskConfig, config_from_dict
from flchain.errors import ConfigError, PrivacyBudgetExhausted
from flchain.learning.privacy import PrivacyAccountant
from flchain.learning.training import DPConfig, dp_epsilon
from flchain.protocol.manifest import TaskManifest
from flchain.protocol.task import initial_model_and_manifest, train_config

DP = {"clip": 1.0, "noise_multiplier": 1.1, "delta": 1e-5, "target_epsilon": 3.0}


def _config(**training: object) -> TaskConfig:
    return config_from_dict({"data": {"dataset": "digits"}, "training": training})


def test_dp_reaches_training_and_the_manifest() -> None:
    config = _config(dp=DP)
    assert train_config(config).dp == DPConfig(1.0, 1.1, 1e-5, target_epsilon=3.0)
    _, manifest = initial_model_and_manifest(config)
    again = TaskManifest.from_bytes(manifest.to_bytes())
    assert again.config.training.dp == DP  # every node and committee member sees the same
    assert train_config(_config()).dp is None


def test_a_task_without_dp_keeps_its_manifest_bytes() -> None:
    # manifests written before dp/codec existed hash the same: the new fields are left out
    raw = _config().to_dict()
    assert "dp" not in raw["training"] and "codec" not in raw["training"]
    assert "dp" in _config(dp=DP).to_dict()["training"]


@pytest.mark.parametrize(
    ("dp", "field"),
    [
        ({"clip": 1.0, "noise_multiplier": 1.0}, "training.dp.delta"),
        ({**DP, "sigma": 1.0}, "training.dp"),
        ({**DP, "clip": 0.0}, "training.dp.clip"),
        ({**DP, "noise_multiplier": "1"}, "training.dp.noise_multiplier"),
        ({**DP, "delta": 1.5}, "training.dp.delta"),
        ({**DP, "target_epsilon": -1.0}, "training.dp.target_epsilon"),
        ({**DP, "clip": True}, "training.dp.clip"),
        ({**DP, "clip": 4.0, "noise_multiplier": 4.0}, "training.dp: clip"),
    ],
)
def test_bad_dp_is_a_config_error_naming_the_field(dp: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as err:
        _config(dp=dp)
    assert "\n" not in str(err.value)


def test_accountant_composes_rounds_and_refuses_past_the_target() -> None:
    one = dp_epsilon(1.1, 1, 1e-5)
    target = dp_epsilon(1.1, 3, 1e-5) * 1.0001  # room for exactly three rounds
    acc = PrivacyAccountant(DPConfig(1.0, 1.1, 1e-5, target_epsilon=target))
    spends = [acc.spend(r) for r in (0, 1, 2)]
    assert [s.epsilon_round for s in spends] == [pytest.approx(one)] * 3
    totals = [s.epsilon_total for s in spends]
    assert totals[0] == pytest.approx(one) and totals[0] < totals[1] < totals[2] <= target
    assert totals[2] < 3 * one  # RDP composes tighter than adding ε
    with pytest.raises(PrivacyBudgetExhausted, match="round 3: skipped"):
        acc.check(3)
    acc.check(2)  # a round already spent (a restarted node) costs nothing more
    assert acc.spend(2).epsilon_total == pytest.approx(totals[2])
    # a resumed accountant knows what was spent
    with pytest.raises(PrivacyBudgetExhausted):
        PrivacyAccountant(acc.dp, rounds=[0, 1, 2]).check(5)
    PrivacyAccountant(DPConfig(1.0, 1.1, 1e-5)).check(10**6)  # no target: never refuses
