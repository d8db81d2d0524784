"""A SCAFFOLD node's own parts: the per-round store of its control variate, and the trainers
and demo roles that cannot send control variates, refused with one clear error."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from flchain_node.factory import flower_trainer
from flchain_node.state import RoundVectors
from flchain_node.trainer import Attacker, LocalTrainer
from support.fedkit import DEMO

from flchain.config import TaskConfig, TrainingConfig
from flchain.errors import ConfigError, ProtocolError
from flchain.learning.codec import encode_model
from flchain.learning.data import federate, load_digits
from flchain.learning.models import build_model
from flchain.learning.training import TrainConfig
from flchain.protocol.task import initial_model_and_manifest


@pytest.mark.parametrize("on_disk", [True, False])
def test_a_round_trains_from_the_variate_the_rounds_before_it_left(
    tmp_path: Path, on_disk: bool
) -> None:
    store = RoundVectors(tmp_path / "node.controls" if on_disk else None)
    assert not store.latest(before=5, size=4).any()
    store.save(0, np.full(4, 0.5))
    store.save(3, np.full(4, 3.5))
    assert (store.latest(before=3, size=4) == 0.5).all()  # round 3 retrained: round 0's c_i
    assert (store.latest(before=4, size=4) == 3.5).all()
    if on_disk:  # a restarted node reads the same
        assert (RoundVectors(tmp_path / "node.controls").latest(4, 4) == 3.5).all()
        assert store.rounds() == [0, 3]
        store.save(5, np.full(4, 5.5))  # round 0's variate is no longer needed by anyone
        assert store.rounds() == [3, 5]
        assert (store.latest(before=5, size=4) == 3.5).all()
    store.save(6, np.full(4, 6.5))
    store.discard(6)  # e.g. trained but missed the commit deadline: its Δc was never sent
    expected = 5.5 if on_disk else 3.5  # the latest variate before round 6
    assert (store.latest(before=7, size=4) == expected).all()


def test_a_damaged_variate_is_refused(tmp_path: Path) -> None:
    store = RoundVectors(tmp_path)
    store.save(0, np.zeros(4))
    with pytest.raises(ProtocolError, match=r"float64\[5\]"):
        store.latest(before=1, size=5)
    (tmp_path / "1.npy").write_bytes(b"not numpy")
    with pytest.raises(ProtocolError, match="unreadable"):
        store.latest(before=2, size=4)


def test_trainers_that_cannot_send_control_variates_are_refused() -> None:
    config = TaskConfig(training=TrainingConfig(algorithm="scaffold")).validate()
    model, manifest = initial_model_and_manifest(config)
    with pytest.raises(ConfigError, match="Flower client cannot be used"):
        flower_trainer(manifest, "pkg.mod:fn", encode_model(model.state_dict(), manifest.spec))
    data = federate(load_digits(), 2, "iid", seed=0).clients[0]
    with pytest.raises(ConfigError, match="scaffold"):
        honest = LocalTrainer(build_model("mlp", "digits"), data, TrainConfig(scaffold=True), 0)
        Attacker(honest, "sign_flip")
    with pytest.raises(ConfigError, match="--attackers 0 --free-riders 0"):
        replace(DEMO, algorithm="scaffold", free_riders=1).roles()
