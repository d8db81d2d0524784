"""Colluding model-poisoning attacks, as pure functions on update tensors.

Both attacks craft one update from statistics of *benign* updates, so that it hides among
them while pulling the aggregate the wrong way:

* "A Little Is Enough" (ALIE; Baruch et al., NeurIPS 2019): send ``mean − z·std``, per
  coordinate, with ``z`` the largest shift that still leaves enough honest updates on the far
  side for the attackers to look like the majority (:func:`alie_z`).
  ``alie_shrink`` is the same shift of each coordinate *toward 0* (``mean − z·std·sign(mean)``):
  the size of ALIE's shift without its one direction, so an update's signed mass ``Σx / Σ|x|``
  stays honest-like and ``fltrust``'s ``lean`` pay test does not see it
  (``benchmarks/results/attack_suite_v10.md`` §5): an attacker that knows the defence.
* Inner-product manipulation (IPM; Xie et al., UAI 2020): send ``−ε·mean``, whose inner product
  with the true mean is negative; ε = 0.1 is the setting of Xie et al. and of Karimireddy et al.
  (ICML 2021) against Krum and the median.

The papers' attackers are omniscient (they see every honest update); ``SimConfig.omniscient``
gives the simulation's colluders exactly that (the round's benign mean and per-coordinate std,
from every honest update), the worst case the attack suite measures. Without it, in the
in-memory simulation the colluders pool *their own* honestly trained updates (they train first,
then collude); on the chain, where one process runs one node and the colluders cannot talk, one
attacker estimates the statistics from bootstrap replicas of its own training
(``node/flchain_node/trainer.py``). With a single colluder the pooled std is zero, so its ALIE
update is its own honest update (and for n = 10, f = 1 the paper's z is 0 anyway).

Because FLChain rejects identical updates as copies, colluders that sent the paper's single
vector would all be rejected at once. A smarter colluder adds independent noise of
``jitter · std`` per coordinate (1% by default) — far below the statistics the robust rules
look at, but enough to make every colluder's bytes distinct.

The backdoor / model-replacement attack (Bagdasaryan et al., AISTATS 2020) trains on local data
of which a fraction carries a pixel-pattern trigger relabelled to a target class
(:func:`backdoor_data`), then boosts the update by γ (model replacement: γ = n / attackers
makes the FedAvg mean land on the attackers' model); :func:`backdoor_success` measures the
fraction of triggered test images of other classes that the model puts in the target class.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from statistics import NormalDist

import torch
from torch import nn

from flchain.errors import ConfigError
from flchain.learning.data import TensorData

Delta = dict[str, torch.Tensor]


class Attack(StrEnum):
    """Every attack the learning layer can mount, by its configuration name (one list: the
    simulation, the chain demo's nodes and the CLI build their choices from it)."""

    SIGN_FLIP = "sign_flip"
    GAUSSIAN = "gaussian"
    LABEL_FLIP = "label_flip"
    FREE_RIDER = "free_rider"
    COPYCAT = "copycat"
    BACKDOOR = "backdoor"
    ALIE = "alie"
    ALIE_SHRINK = "alie_shrink"
    IPM = "ipm"


#: ALIE's two directions of shift (both take ``z``, see :func:`alie`).
ALIE_FAMILY = (Attack.ALIE, Attack.ALIE_SHRINK)
#: Attacks that need the statistics of several benign updates (see :func:`collude`).
COLLUDING = (*ALIE_FAMILY, Attack.IPM)


def attack_named(name: str, known: tuple[Attack, ...] = tuple(Attack)) -> Attack:
    """The attack called ``name`` (``-`` or ``_``), if it is one of ``known``."""
    wanted = name.replace("-", "_")
    for attack in known:
        if attack.value == wanted:
            return attack
    raise ConfigError(f"unknown attack {name!r}; known: {', '.join(a.value for a in known)}")


def alie_z(n: int, f: int) -> float:
    """Baruch et al. (2019), §3: with ``s = ⌊n/2 + 1⌋ − f`` honest "supporters" needed for a
    majority, ``z = Φ⁻¹((n − s)/n)`` (0 for n = 10, f = 1; 0.25 for f = 2; 0.52 for f = 3)."""
    if not 1 <= f < n:
        raise ConfigError(f"alie needs 1 <= attackers < clients, got f={f}, n={n}")
    s = n // 2 + 1 - f
    if s <= 0:  # the attackers already are a majority; the paper's formula does not apply
        raise ConfigError(f"alie: {f} attackers of {n} are a majority; pass z explicitly")
    return NormalDist().inv_cdf((n - s) / n)


def mean_std(benign: Sequence[Delta]) -> tuple[Delta, Delta]:
    """Per-coordinate mean and (unbiased; 0 for a single update) std of ``benign``."""
    if not benign:
        raise ConfigError("need at least one benign update")
    mean, std = {}, {}
    for k in benign[0]:
        x = torch.stack([b[k] for b in benign])
        mean[k] = x.mean(0)
        std[k] = x.std(0) if len(benign) > 1 else torch.zeros_like(mean[k])
    return mean, std


def alie(benign: Sequence[Delta], z: float, *, shrink: bool = False) -> Delta:
    """ALIE: ``mean − z·std`` of ``benign``, per coordinate; ``shrink``: ``mean −
    z·std·sign(mean)``, each coordinate moved toward 0 (``alie_shrink``)."""
    mean, std = mean_std(benign)
    if shrink:
        return {k: mean[k] - z * std[k] * torch.sign(mean[k]) for k in mean}
    return {k: mean[k] - z * std[k] for k in mean}


def ipm(benign: Sequence[Delta], epsilon: float) -> Delta:
    """IPM: ``−ε·mean`` of ``benign`` (inner product ``−ε·‖mean‖²`` with the benign mean)."""
    if not epsilon > 0:
        raise ConfigError(f"ipm epsilon must be > 0, not {epsilon}")
    mean, _ = mean_std(benign)
    return {k: -epsilon * v for k, v in mean.items()}


def collude(
    attack: str,
    benign: Sequence[Delta],
    *,
    z: float,
    epsilon: float,
    jitter: float,
    gen: torch.Generator,
    count: int | None = None,
    noise_seeds: Sequence[int] | None = None,
) -> list[Delta]:
    """``count`` malicious updates (default ``len(benign)``), one per colluder, from the
    benign updates ``benign``: the colluders' own honest updates, or — omniscient — every
    honest update of the round.

    Every colluder sends the same ALIE (either direction) or IPM update plus independent
    Gaussian noise of ``jitter · std`` per coordinate (see the module docstring); ``jitter =
    0`` is the papers' single shared vector. Deterministic given ``gen``'s state. With
    ``noise_seeds`` (one per colluder) colluder ``k``'s standard normal draws come from a
    generator seeded with ``noise_seeds[k]`` instead: the same seeds every round give noise
    that points the same way round after round (an attacker that fakes the lasting part an
    honest client's own data give its updates, against ``fltrust``'s ``persist``).
    """
    if attack not in COLLUDING:
        raise ConfigError(f"unknown colluding attack {attack!r}; known: {COLLUDING}")
    if jitter < 0:
        raise ConfigError(f"jitter must be >= 0, not {jitter}")
    count = len(benign) if count is None else count
    if count < 1:
        raise ConfigError(f"need at least one colluder, not {count}")
    if attack == Attack.IPM:
        base = ipm(benign, epsilon)
    else:
        base = alie(benign, z, shrink=attack == Attack.ALIE_SHRINK)
    if jitter == 0 or len(benign) == 1:
        return [dict(base) for _ in range(count)]
    _, std = mean_std(benign)
    if noise_seeds is not None and len(noise_seeds) != count:
        raise ConfigError(f"need one noise seed per colluder: {count}, not {len(noise_seeds)}")
    gens = [torch.Generator().manual_seed(s) for s in noise_seeds] if noise_seeds else [gen] * count
    return [
        {k: v + jitter * std[k] * torch.randn(v.shape, generator=g) for k, v in base.items()}
        for g in gens
    ]


def add_trigger(
    x: torch.Tensor, size: int = 4, value: float = 1.0, offset: int = 1
) -> torch.Tensor:
    """A copy of images ``x`` (N × C × H × W) with a ``size``×``size`` square of ``value`` in
    the bottom-right corner, ``offset`` pixels in from the border (Bagdasaryan et al.'s pixel
    pattern, simplified to a square; MNIST's corners are nearly always black, so the pattern is
    new there; a larger ``offset`` moves it towards the centre, onto pixels digits ink)."""
    if x.dim() != 4 or size < 1 or offset < 1 or size + offset > min(x.shape[-2:]):
        raise ConfigError(
            f"add_trigger wants N x C x H x W images larger than {size}+{offset}, offset >= 1"
        )
    out = x.clone()
    out[..., -size - offset : -offset, -size - offset : -offset] = value
    return out


def backdoor_data(
    data: TensorData, target: int, fraction: float, gen: torch.Generator, offset: int = 1
) -> TensorData:
    """``data`` with a random ``fraction`` of its samples triggered and relabelled ``target``
    (the rest stay clean, so the poisoned model keeps its main-task accuracy)."""
    if not 0 < fraction <= 1 or not 0 <= target < data.num_classes:
        raise ConfigError(
            f"backdoor needs 0 < fraction <= 1 and a valid target, got {fraction}, {target}"
        )
    k = max(1, round(fraction * len(data)))
    idx = torch.randperm(len(data), generator=gen)[:k]
    x, y = data.x.clone(), data.y.clone()
    x[idx] = add_trigger(x[idx], offset=offset)
    y[idx] = target
    return TensorData(x, y, data.num_classes)


def boost(delta: Delta, gamma: float) -> Delta:
    """Model replacement: the update scaled by ``gamma``."""
    if not gamma > 0:
        raise ConfigError(f"boost must be > 0, not {gamma}")
    return {k: gamma * v for k, v in delta.items()}


@torch.no_grad()
def backdoor_success(model: nn.Module, test: TensorData, target: int, offset: int = 1) -> float:
    """Fraction of triggered test images whose true class is not ``target`` that ``model``
    classifies as ``target`` (the attack's success rate; ~1/classes for a clean model at
    chance on triggered images, usually far less)."""
    keep = test.y != target
    if not bool(keep.any()):
        raise ConfigError("no test image outside the target class")
    was = model.training
    model.eval()
    pred = model(add_trigger(test.x[keep], offset=offset)).argmax(dim=1)
    model.train(was)
    return float((pred == target).float().mean())
