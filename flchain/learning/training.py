"""Local training (FedAvg / FedProx / SCAFFOLD's corrected steps, optional client-level DP) and
evaluation.

Training is reproducible from its seed on a given machine and torch build; it need not be
bit-identical across machines, because only the aggregation is recomputed by the committee.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from flchain.errors import ConfigError, DataError
from flchain.learning.data import TensorData
from flchain.learning.models import parameter_state


@dataclass(frozen=True)
class DPConfig:
    """Client-level DP (McMahan et al., 2018), applied by the participant itself: clip the
    whole update's L2 norm to ``clip_norm`` and add Gaussian noise of std
    ``noise_multiplier · clip_norm`` to every coordinate.

    The guarantee: each released update is a Gaussian mechanism of L2 sensitivity
    ``clip_norm`` with respect to replacing the participant's *entire* data set, so it is
    (ε, δ)-DP at the participant level, against everyone who sees the update (the committee,
    anyone reading the store after the reveal), not only against a trusted server. It is not
    per-example DP-SGD: the noise is far larger than one example needs, and no sampling
    amplification is claimed (a participant's data is used in full every round it trains).
    ``target_epsilon``: the cumulative ε a participant will not go past."""

    clip_norm: float
    noise_multiplier: float
    delta: float = 1e-5
    target_epsilon: float | None = None

    def __post_init__(self) -> None:
        if self.clip_norm <= 0 or self.noise_multiplier <= 0 or not 0 < self.delta < 1:
            raise ConfigError("dp needs clip_norm > 0, noise_multiplier > 0, 0 < delta < 1")
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise ConfigError("dp target_epsilon must be > 0")


def client_seed(task_seed: int, client: int) -> int:
    """The training seed of simulated client ``client`` (its shard number) of a task seeded
    ``task_seed``: the same in the in-memory simulation, the participant nodes of
    ``flchain demo`` and a benchmark's Flower clients, so the three train alike."""
    return task_seed * 100_003 + client


def training_seed(client: int, round_id: int) -> int:
    """The seed of one round of a client's local training, from its training seed ``client``
    (:func:`client_seed`, or a real participant's own) and the chain's round id (from 0; the
    in-memory simulation's round ``r`` is round id ``r - 1``). Clients below 1,009 never share
    a seed within a task."""
    return client + (round_id + 1) * 1009


@dataclass(frozen=True)
class TrainConfig:
    """Local training: ``epochs`` (E), ``batch_size`` (B), ``lr``; ``prox_mu`` > 0 is FedProx;
    ``scaffold`` trains with SCAFFOLD's control variates (:mod:`flchain.learning.scaffold`)."""

    epochs: int = 1
    batch_size: int = 10
    lr: float = 0.05
    prox_mu: float = 0.0
    dp: DPConfig | None = None
    scaffold: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.prox_mu < 0:
            raise ConfigError("train needs epochs >= 1, batch_size >= 1, lr > 0, prox_mu >= 0")
        if self.scaffold and (self.dp is not None or self.prox_mu > 0):
            raise ConfigError("scaffold cannot be combined with dp or FedProx's prox_mu")


@dataclass(frozen=True)
class TrainResult:
    """What a participant sends: the delta from the global weights, its sample count, the mean
    training loss, and (with DP) ε of this single release at ``dp.delta``."""

    delta: dict[str, torch.Tensor]
    num_samples: int
    train_loss: float
    epsilon: float | None = None
    #: The trained copy's buffers (e.g. BatchNorm running statistics): they stay with the
    #: participant and are never part of an update (see ``models.parameter_state``).
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    #: Local SGD steps taken (SCAFFOLD's K).
    steps: int = 0


@dataclass(frozen=True)
class EvalResult:
    """Mean cross-entropy and accuracy on a data set."""

    loss: float
    accuracy: float


# Opacus's default RDP orders plus finer ones near 1, which heavy noise needs for a tight bound.
_ALPHAS = (
    [1 + x / 100 for x in range(1, 10)] + [1 + x / 10 for x in range(1, 100)] + list(range(12, 256))
)


def dp_epsilon(
    noise_multiplier: float, releases: int, delta: float, sample_rate: float = 1.0
) -> float:
    """ε after ``releases`` Gaussian releases, from Opacus's RDP accountant."""
    # Imported here, not at the top: Opacus pulls in torch.distributed and more (a sixth of
    # `flchain demo`'s import time), and only DP tasks need it.
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(noise_multiplier, sample_rate, releases)]
    return float(acc.get_epsilon(delta, alphas=_ALPHAS))


def train_local(
    model: nn.Module,
    data: TensorData,
    config: TrainConfig,
    seed: int,
    correction: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train a copy of ``model`` (holding the round's global weights) on ``data`` with SGD;
    ``model`` itself is left unchanged. Shuffling and DP noise come from ``seed``.

    ``correction`` (per parameter name) is added to every step's gradient: SCAFFOLD's
    ``c - c_i``, so each step follows ``g - c_i + c``."""
    if len(data) == 0:
        raise DataError("cannot train on an empty data set")
    gen = torch.Generator().manual_seed(seed)
    start = {k: v.clone() for k, v in parameter_state(model).items()}
    local = copy.deepcopy(model).train()
    opt = torch.optim.SGD(local.parameters(), lr=config.lr)
    anchors = [p.detach().clone() for p in local.parameters()]
    total, batches = 0.0, 0
    for _ in range(config.epochs):
        perm = torch.randperm(len(data), generator=gen)
        for s in range(0, len(data), config.batch_size):
            idx = perm[s : s + config.batch_size]
            loss = nn.functional.cross_entropy(local(data.x[idx]), data.y[idx])
            total, batches = total + loss.item(), batches + 1
            if config.prox_mu > 0:
                prox = sum(
                    ((p - a) ** 2).sum() for p, a in zip(local.parameters(), anchors, strict=True)
                )
                loss = loss + config.prox_mu / 2 * prox
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            if correction is not None:
                for name, p in local.named_parameters():
                    if p.grad is not None:
                        p.grad.add_(correction[name])
            opt.step()
    delta = {k: v - start[k] for k, v in parameter_state(local).items()}
    buffers = {k: v.detach() for k, v in local.named_buffers()}
    eps = None
    if config.dp is not None:
        delta = _privatize(delta, config.dp, gen)
        eps = dp_epsilon(config.dp.noise_multiplier, 1, config.dp.delta)
    return TrainResult(delta, len(data), total / batches, eps, buffers, batches)


def _privatize(
    delta: dict[str, torch.Tensor], dp: DPConfig, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    norm = math.sqrt(sum(float((t.double() ** 2).sum()) for t in delta.values()))
    scale = min(1.0, dp.clip_norm / norm) if norm > 0 else 1.0
    std = dp.noise_multiplier * dp.clip_norm
    return {k: t * scale + torch.randn(t.shape, generator=gen) * std for k, t in delta.items()}


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorData, batch_size: int = 1000) -> EvalResult:
    """Mean cross-entropy and accuracy of ``model`` on ``data``."""
    if len(data) == 0:
        raise DataError("cannot evaluate on an empty data set")
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for s in range(0, len(data), batch_size):
        out = model(data.x[s : s + batch_size])
        y = data.y[s : s + batch_size]
        loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
    model.train(was_training)
    return EvalResult(loss / len(data), correct / len(data))
