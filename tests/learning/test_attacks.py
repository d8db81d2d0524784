"""ALIE and IPM: the properties the papers define, determinism, what the robust rules and the
copy rule make of them, and the chain demo's single-node variant."""

from __future__ import annotations

import pytest
import torch
from flchain_node.trainer import Attacker, LocalTrainer
from scipy.stats import norm

from flchain.errors import ConfigError
from flchain.learning.aggregation import CoordinateMedian, FedAvg, lean_discount
from flchain.learning.attacks import Delta, alie, alie_z, collude, ipm, mean_std
from flchain.learning.data import federate, load_digits
from flchain.learning.models import ModelSpec, build_model
from flchain.learning.simulation import SimConfig, SimResult, participant_id, run_federation
from flchain.learning.training import TrainConfig

CFG = TrainConfig(epochs=5, batch_size=16, lr=0.1)


def _benign(k: int, seed: int = 0) -> list[Delta]:
    """``k`` updates sharing a direction, with per-coordinate spread of varying size."""
    g = torch.Generator().manual_seed(seed)
    mu = {"w": torch.randn(30, 20, generator=g), "b": torch.randn(20, generator=g)}
    scale = {n: torch.rand(v.shape, generator=g) for n, v in mu.items()}
    return [
        {n: mu[n] + scale[n] * torch.randn(v.shape, generator=g) for n, v in mu.items()}
        for _ in range(k)
    ]


def _flat(d: Delta) -> torch.Tensor:
    return torch.cat([d[k].flatten() for k in sorted(d)])


@pytest.mark.parametrize("n,f", [(10, 1), (10, 2), (10, 3), (25, 5), (50, 12), (7, 3)])
def test_alie_z_is_the_papers_formula(n: int, f: int) -> None:
    s = n // 2 + 1 - f
    assert alie_z(n, f) == pytest.approx(norm.ppf((n - s) / n), abs=1e-12)


def test_alie_z_refuses_what_the_formula_cannot_cover() -> None:
    assert alie_z(10, 1) == 0.0  # with one attacker of ten the paper's shift is zero
    for n, f in [(10, 0), (10, 10), (10, 6)]:
        with pytest.raises(ConfigError):
            alie_z(n, f)


def test_alie_sits_z_std_below_the_mean_per_coordinate() -> None:
    benign, z = _benign(6), 1.5
    mean, std = mean_std(benign)
    out = alie(benign, z)
    for k in mean:
        assert torch.allclose(out[k], mean[k] - z * std[k])
        assert bool(((out[k] - mean[k]).abs() <= z * std[k] + 1e-6).all())
        assert bool((out[k] < mean[k]).any())  # it does move


def test_alie_shrink_moves_every_coordinate_toward_zero_by_z_std() -> None:
    benign, z = _benign(6), 1.5
    mean, std = mean_std(benign)
    out = alie(benign, z, shrink=True)
    down = alie(benign, z)
    for k in mean:
        assert torch.allclose(out[k], mean[k] - z * std[k] * torch.sign(mean[k]))
        assert torch.allclose((out[k] - mean[k]).abs(), (down[k] - mean[k]).abs())  # same size
        assert bool((out[k] > mean[k]).any()) and bool((out[k] < mean[k]).any())
    crafted = collude("alie_shrink", benign, z=z, epsilon=0.1, jitter=0.0, gen=torch.Generator())
    assert torch.equal(_flat(crafted[0]), _flat(out))


def test_lean_pays_less_for_alie_but_not_for_alie_shrink() -> None:
    """The limit attack_suite_v10 §5 measured: lean sees ALIE's one direction, not its size."""
    benign, z = _benign(8, seed=3), 1.0
    honest = [(_flat(b) * 2**16).round().to(torch.int64).numpy() for b in benign]
    for shrink, discounted in ((False, True), (True, False)):
        crafted = (_flat(alie(benign, z, shrink=shrink)) * 2**16).round().to(torch.int64)
        vectors = [*honest, crafted.numpy(), crafted.numpy()]
        (pay,) = lean_discount([[1000] * len(vectors)], vectors, 2)
        assert pay[:-2] == [1000] * len(honest)
        assert (pay[-1] < 1000) is discounted, (shrink, pay)


def test_colluders_jitter_keeps_them_distinct_and_within_bounds() -> None:
    benign, z = _benign(3), alie_z(10, 3)
    mean, std = mean_std(benign)
    same = collude("alie", benign, z=z, epsilon=0.1, jitter=0.0, gen=torch.Generator())
    assert all(torch.equal(_flat(s), _flat(same[0])) for s in same)  # the papers' one vector
    out = collude("alie", benign, z=z, epsilon=0.1, jitter=0.01, gen=torch.Generator())
    assert len({_flat(o).numpy().tobytes() for o in out}) == 3
    for o in out:  # 1% noise: still within (z + 0.06)·std, i.e. 6 noise sigmas
        for k in mean:
            assert bool(((o[k] - mean[k]).abs() <= (z + 0.06) * std[k] + 1e-6).all())


def test_colluders_fixed_noise_points_the_same_way_every_round() -> None:
    """``noise_seeds``: each colluder's noise comes from its own seed, so two rounds (another
    round's benign updates, the shared generator in another state) give it the same standard
    normal draws, scaled by that round's std; colluders still differ from each other."""
    seeds = [7, 8, 9]
    draws, stds = [], []
    for seed in (1, 2):
        benign = _benign(4, seed=seed)
        base, (_, std) = alie(benign, 0.5), mean_std(benign)
        gen = torch.Generator().manual_seed(seed)
        out = collude(
            "alie", benign, z=0.5, epsilon=0.1, jitter=1.0, gen=gen, count=3, noise_seeds=seeds
        )
        draws.append([_flat({k: (o[k] - base[k]) / std[k] for k in o}) for o in out])
        stds.append(_flat(std))
    ok = (stds[0] > 0.05) & (stds[1] > 0.05)  # float32 error over a tiny std would swamp it
    for a, b in zip(*draws, strict=True):
        assert torch.allclose(a[ok], b[ok], atol=1e-3)
    assert not torch.allclose(draws[0][0][ok], draws[0][1][ok], atol=0.1)
    fresh = collude("alie", _benign(4), z=0.5, epsilon=0.1, jitter=1.0, gen=torch.Generator())
    again = collude("alie", _benign(4), z=0.5, epsilon=0.1, jitter=1.0, gen=torch.Generator())
    assert torch.equal(_flat(fresh[0]), _flat(again[0]))  # the shared generator: its own state
    with pytest.raises(ConfigError, match="one noise seed per colluder"):
        collude("alie", _benign(4), z=0.5, epsilon=0.1, jitter=1.0, gen=gen, noise_seeds=[1])


def test_ipm_has_negative_inner_product_with_the_benign_mean() -> None:
    benign = _benign(4)
    mean, _ = mean_std(benign)
    for eps in (0.1, 0.5, 10.0):
        out = _flat(ipm(benign, eps))
        dot = float(out @ _flat(mean))
        assert dot < 0
        assert dot == pytest.approx(-eps * float(_flat(mean) @ _flat(mean)), rel=1e-5)


def test_collude_is_deterministic_from_the_generator() -> None:
    benign = _benign(3)

    def run(seed: int) -> list[bytes]:
        gen = torch.Generator().manual_seed(seed)
        out = collude("ipm", benign, z=0.0, epsilon=0.1, jitter=0.01, gen=gen)
        return [_flat(o).numpy().tobytes() for o in out]

    assert run(1) == run(1) and run(1) != run(2)


def test_bad_attack_parameters() -> None:
    gen = torch.Generator()
    with pytest.raises(ConfigError, match="unknown"):
        collude("sign_flip", _benign(2), z=1.0, epsilon=0.1, jitter=0.0, gen=gen)
    with pytest.raises(ConfigError, match="jitter"):
        collude("alie", _benign(2), z=1.0, epsilon=0.1, jitter=-1.0, gen=gen)
    with pytest.raises(ConfigError, match="epsilon"):
        ipm(_benign(2), 0.0)
    with pytest.raises(ConfigError, match="benign"):
        alie([], 1.0)
    with pytest.raises(ConfigError):
        SimConfig(1, CFG, "ipm", 1, ipm_epsilon=-0.1)


# --- in the in-memory federation (digits, MLP, 8 clients) -------------------------------------


@pytest.fixture(scope="module")
def fed():  # type: ignore[no-untyped-def]
    return federate(load_digits(), 8, "iid", seed=0)


def _run(fed, rule, attack, k, rounds=3, **kw) -> SimResult:  # type: ignore[no-untyped-def]
    model = build_model("mlp", "digits")
    spec = ModelSpec.from_model(model, "mlp:digits")
    return run_federation(model, spec, fed, rule, SimConfig(rounds, CFG, attack, k, **kw))


def test_alie_run_is_deterministic_from_the_seed(fed) -> None:  # type: ignore[no-untyped-def]
    a, b = (_run(fed, FedAvg(), "alie", 2, rounds=2, alie_z=1.0) for _ in range(2))
    assert a.accuracies == b.accuracies
    assert [r.decisions for r in a.rounds] == [r.decisions for r in b.rounds]


def test_copy_rule_rejects_papers_colluders_unless_jittered(fed) -> None:  # type: ignore[no-untyped-def]
    bad = {participant_id(i) for i in range(3)}
    for jitter, rejected in [(0.0, True), (0.01, False)]:
        res = _run(fed, FedAvg(), "ipm", 3, rounds=1, collusion_jitter=jitter)
        mine = [d for d in res.rounds[0].decisions if d.participant in bad]
        assert all(("identical" in d.reason) == rejected for d in mine)
        assert all(d.accepted != rejected for d in mine)


def test_median_rejects_strong_ipm_that_breaks_fedavg(fed) -> None:  # type: ignore[no-untyped-def]
    # 2 of 8 at −4·mean pull FedAvg's aggregate to (6 − 8)/8 of the mean: backwards
    naive = _run(fed, FedAvg(), "ipm", 2, ipm_epsilon=4.0)
    robust = _run(fed, CoordinateMedian(), "ipm", 2, ipm_epsilon=4.0)
    assert robust.accuracies[-1] > 0.8 > naive.accuracies[-1] + 0.2
    bad = {participant_id(i) for i in range(2)}
    for r in robust.rounds:
        assert not any(d.accepted for d in r.decisions if d.participant in bad)
        assert all(d.score == 0 for d in r.decisions if d.participant in bad)


# --- the chain demo's single-node variant -----------------------------------------------------


def _attacker(attack: str, **kw) -> tuple[Attacker, dict[str, torch.Tensor]]:  # type: ignore[no-untyped-def]
    fed = federate(load_digits(), 8, "iid", seed=0)
    model = build_model("mlp", "digits")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.1)
    return Attacker(LocalTrainer(model, fed.clients[0], cfg, seed=7), attack, **kw), state


def test_node_alie_is_bootstrap_mean_minus_z_std_and_reproducible() -> None:
    att, state = _attacker("alie", participants=10, sim=SimConfig(1, CFG, "alie", 3))
    assert att.z == pytest.approx(alie_z(10, 3))
    produced = att.produce(state, 5, None)
    sent, n = produced.update, produced.num_samples
    honest = att.train(state, 5)
    est = att.estimates(state, 5, honest)
    mean, std = mean_std(est)
    assert n == len(att.data) and len(est) == 4
    assert float(_flat(std).max()) > 0  # the replicas do differ
    for k in sent:
        assert torch.allclose(sent[k], mean[k] - att.z * std[k], atol=1e-6)
    twin = _attacker("alie", participants=10, sim=SimConfig(1, CFG, "alie", 3))[0]
    again = twin.produce(state, 5, None).update
    assert torch.equal(_flat(sent), _flat(again))
    assert not torch.equal(_flat(sent), _flat(honest.delta))


def test_node_alie_shrink_moves_the_bootstrap_mean_toward_zero() -> None:
    att, state = _attacker("alie_shrink", participants=10, sim=SimConfig(1, CFG, "alie_shrink", 3))
    sent = att.produce(state, 5, None).update
    mean, std = mean_std(att.estimates(state, 5, att.train(state, 5)))
    for k in sent:
        expected = mean[k] - att.z * std[k] * torch.sign(mean[k])
        assert torch.allclose(sent[k], expected, atol=1e-6)


def test_node_ipm_points_against_its_honest_update() -> None:
    att, state = _attacker("ipm")
    sent = att.produce(state, 1, None).update
    honest = att.train(state, 1)
    assert float(_flat(sent) @ _flat(honest.delta)) < 0


def test_node_alie_needs_a_participant_count() -> None:
    with pytest.raises(ConfigError, match="participants"):
        _attacker("alie")
    with pytest.raises(ConfigError, match="replicas"):
        _attacker("alie", participants=10, replicas=1)
