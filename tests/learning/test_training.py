from __future__ import annotations

import math

import pytest
import torch

from flchain.errors import ConfigError
from flchain.learning.data import federate, load_digits
from flchain.learning.models import build_model
from flchain.learning.training import DPConfig, TrainConfig, dp_epsilon, evaluate, train_local


@pytest.fixture(scope="module")
def fed():  # type: ignore[no-untyped-def]
    return federate(load_digits(), 4, "iid", seed=0)


def _norm(delta: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float((t.double() ** 2).sum()) for t in delta.values()))


def test_training_is_seeded_leaves_the_model_alone_and_learns(fed) -> None:  # type: ignore[no-untyped-def]
    model = build_model("mlp", "digits")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.1)
    a = train_local(model, fed.clients[0], cfg, seed=5)
    b = train_local(model, fed.clients[0], cfg, seed=5)
    c = train_local(model, fed.clients[0], cfg, seed=6)
    assert all(torch.equal(a.delta[k], b.delta[k]) for k in a.delta)
    assert not all(torch.equal(a.delta[k], c.delta[k]) for k in a.delta)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert a.num_samples == len(fed.clients[0]) and a.epsilon is None
    acc0 = evaluate(model, fed.test).accuracy
    model.load_state_dict({k: v + a.delta[k] for k, v in model.state_dict().items()})
    assert evaluate(model, fed.test).accuracy > max(0.4, acc0 + 0.3)


def test_fedprox_term_keeps_the_update_closer(fed) -> None:  # type: ignore[no-untyped-def]
    model = build_model("mlp", "digits")
    plain = train_local(model, fed.clients[1], TrainConfig(epochs=3, lr=0.1), seed=1)
    prox = train_local(model, fed.clients[1], TrainConfig(epochs=3, lr=0.1, prox_mu=1.0), seed=1)
    assert _norm(prox.delta) < 0.9 * _norm(plain.delta)


# noise_multiplier=1e-6 gives an (expected) astronomically loose ε; Opacus warns about it
@pytest.mark.filterwarnings("ignore:Optimal order is the smallest alpha")
def test_dp_clips_adds_noise_and_reports_epsilon(fed) -> None:  # type: ignore[no-untyped-def]
    model = build_model("logreg", fed.clients[0])
    tiny = DPConfig(clip_norm=0.01, noise_multiplier=1e-6)
    r = train_local(model, fed.clients[2], TrainConfig(dp=tiny), seed=2)
    assert _norm(r.delta) == pytest.approx(0.01, rel=1e-3)
    noisy = DPConfig(clip_norm=0.01, noise_multiplier=2.0)
    r = train_local(model, fed.clients[2], TrainConfig(dp=noisy), seed=2)
    d = sum(t.numel() for t in r.delta.values())
    assert _norm(r.delta) == pytest.approx(2.0 * 0.01 * math.sqrt(d), rel=0.1)
    assert r.epsilon == pytest.approx(dp_epsilon(2.0, 1, 1e-5))
    assert 0 < dp_epsilon(2.0, 1, 1e-5) < dp_epsilon(2.0, 10, 1e-5) < dp_epsilon(1.0, 10, 1e-5)


def test_bad_config() -> None:
    with pytest.raises(ConfigError):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError):
        DPConfig(clip_norm=1.0, noise_multiplier=0.0)
