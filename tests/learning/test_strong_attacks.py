"""Issue 14's stronger attacker: omniscient colluding ALIE/IPM (statistics of every honest
update of the round) and the backdoor / model-replacement attack with its success rate."""

from __future__ import annotations

import pytest
import torch

from flchain.errors import ConfigError
from flchain.learning.aggregation import CenteredClip, ClientUpdate, FedAvg
from flchain.learning.attacks import (
    add_trigger,
    backdoor_data,
    backdoor_success,
    boost,
    collude,
    mean_std,
)
from flchain.learning.data import TensorData, federate, load_digits
from flchain.learning.models import ModelSpec, build_model
from flchain.learning.simulation import SimConfig, participant_id, run_federation
from flchain.learning.training import TrainConfig

CFG = TrainConfig(epochs=5, batch_size=16, lr=0.1)


def _flat(d: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([d[k].flatten() for k in sorted(d)])


def test_collude_makes_count_updates_from_any_benign_pool() -> None:
    g = torch.Generator().manual_seed(0)
    benign = [{"w": torch.randn(50, generator=g) + 3.0} for _ in range(7)]
    mean, std = mean_std(benign)
    out = collude("ipm", benign, z=0.0, epsilon=0.1, jitter=0.0, gen=g, count=3)
    assert len(out) == 3
    assert all(torch.allclose(o["w"], -0.1 * mean["w"]) for o in out)
    out = collude("alie", benign, z=1.0, epsilon=0.1, jitter=0.01, gen=g, count=2)
    assert len(out) == 2 and not torch.equal(out[0]["w"], out[1]["w"])
    assert torch.allclose(out[0]["w"], mean["w"] - std["w"], atol=float(0.07 * std["w"].max()))
    with pytest.raises(ConfigError, match="colluder"):
        collude("ipm", benign, z=0.0, epsilon=0.1, jitter=0.0, gen=g, count=0)


def test_trigger_marks_only_the_corner_square() -> None:
    x = torch.zeros(3, 1, 28, 28)
    t = add_trigger(x, size=4)
    assert torch.equal(x, torch.zeros_like(x))  # a copy, not in place
    assert float(t.sum()) == 3 * 16
    assert bool((t[..., 23:27, 23:27] == 1).all()) and float(t[..., 27, :].sum()) == 0
    with pytest.raises(ConfigError):
        add_trigger(torch.zeros(1, 1, 4, 4), size=4)
    centre = add_trigger(x, size=4, offset=12)  # towards the centre, onto inked pixels
    assert float(centre.sum()) == 3 * 16 and bool((centre[..., 12:16, 12:16] == 1).all())
    for bad in (0, 25):
        with pytest.raises(ConfigError):
            add_trigger(x, size=4, offset=bad)


def test_backdoor_data_poisons_the_given_fraction() -> None:
    g = torch.Generator().manual_seed(0)
    data = TensorData(torch.zeros(40, 1, 8, 8), torch.arange(40) % 10, 10)
    out = backdoor_data(data, target=3, fraction=0.25, gen=g)
    marked = out.x.flatten(1).sum(1) > 0
    assert int(marked.sum()) == 10
    assert bool((out.y[marked] == 3).all())
    assert torch.equal(out.y[~marked], data.y[~marked])
    with pytest.raises(ConfigError):
        backdoor_data(data, target=10, fraction=0.5, gen=g)
    with pytest.raises(ConfigError):
        boost({"w": torch.ones(2)}, 0.0)
    assert torch.equal(boost({"w": torch.ones(2)}, 2.5)["w"], torch.full((2,), 2.5))


class _Always(torch.nn.Module):
    def __init__(self, label: int) -> None:
        super().__init__()
        self.label = label

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), 10)
        out[:, self.label] = 1.0
        return out


def test_backdoor_success_counts_only_other_classes() -> None:
    test = TensorData(torch.zeros(20, 1, 8, 8), torch.arange(20) % 10, 10)
    assert backdoor_success(_Always(3), test, target=3) == 1.0
    assert backdoor_success(_Always(4), test, target=3) == 0.0
    with pytest.raises(ConfigError):
        backdoor_success(_Always(3), TensorData(torch.zeros(2, 1, 8, 8), torch.zeros(2), 10), 0)


# --- in the in-memory federation (digits, MLP, 8 clients) -------------------------------------


@pytest.fixture(scope="module")
def fed():  # type: ignore[no-untyped-def]
    return federate(load_digits(), 8, "iid", seed=0)


class _Spy(FedAvg):
    """FedAvg that keeps what it was given."""

    seen: list[list[ClientUpdate]]

    def __init__(self) -> None:
        self.seen = []

    def aggregate(self, updates, failures=()):  # type: ignore[no-untyped-def]
        self.seen.append(list(updates))
        return super().aggregate(updates, failures)


def _run(fed, rule, attack, k, rounds=1, **kw):  # type: ignore[no-untyped-def]
    model = build_model("mlp", "digits")
    spec = ModelSpec.from_model(model, "mlp:digits")
    return run_federation(model, spec, fed, rule, SimConfig(rounds, CFG, attack, k, **kw)), spec


def _ipm_error(fed, omniscient: bool) -> float:  # type: ignore[no-untyped-def]
    """Relative distance of colluder 0's update from −0.1 x the honest clients' mean (no
    jitter: the spy sees the updates before the copy rule rejects them)."""
    spy = _Spy()
    _run(fed, spy, "ipm", 2, omniscient=omniscient, collusion_jitter=0.0)
    q = {u.participant: torch.from_numpy(u.update.q.astype("float64")) for u in spy.seen[0]}
    honest = torch.stack([q[participant_id(i)] for i in range(2, 8)]).mean(0)
    return float((q[participant_id(0)] + 0.1 * honest).norm() / (0.1 * honest).norm())


def test_omniscient_ipm_is_minus_epsilon_times_the_honest_mean(fed) -> None:  # type: ignore[no-untyped-def]
    omniscient = _ipm_error(fed, True)
    assert omniscient < 1e-3  # quantisation only
    # the non-omniscient colluders use their own two updates' mean: measurably elsewhere
    assert _ipm_error(fed, False) > 0.1


def test_backdoor_replaces_a_fedavg_model_and_centered_clip_refuses_the_boost(fed) -> None:  # type: ignore[no-untyped-def]
    res, _ = _run(fed, FedAvg(), "backdoor", 1, rounds=3, backdoor_target=0)
    assert all(r.backdoor_success is not None for r in res.rounds)
    assert res.rounds[-1].backdoor_success > 0.8  # boost 8: the mean lands on its model
    clean, _ = _run(fed, FedAvg(), None, 0, rounds=3)
    assert all(r.backdoor_success is None for r in clean.rounds)
    robust, _ = _run(fed, CenteredClip(), "backdoor", 1, rounds=3, backdoor_target=0)
    for r in robust.rounds:
        (mine,) = [d for d in r.decisions if d.participant == participant_id(0)]
        assert not mine.accepted and mine.reason.startswith("norm")
    assert robust.rounds[-1].backdoor_success < 0.2
