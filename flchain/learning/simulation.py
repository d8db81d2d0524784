"""An in-memory federation: no chain, no store, but the real codec and aggregation path.

Each round every client trains from the global model; attackers replace or corrupt their
update (the colluding ALIE and IPM attackers first train honestly, then pool their own honest
updates — or, with ``SimConfig.omniscient``, every honest update of the round; see
:mod:`.attacks`; backdoor attackers train on triggered data and boost); every update is
encoded to canonical bytes and decoded again exactly as a committee member would (decode
failures become :class:`~.aggregation.Failure` s); the rule aggregates; the global model moves
by the aggregate. With ``train.scaffold`` every client keeps its SCAFFOLD control variate
between rounds and the server variate moves exactly as a committee moves it
(:mod:`.scaffold`); a server optimizer then steps with the ``Δw`` half of the aggregate, and
attackers craft their updates from the joint ``Δw‖Δc`` vector a SCAFFOLD client sends. With a
top-k codec every client keeps its error-feedback residual between rounds, as a participant
node does (:func:`.codec.sparsify`), unless ``SimConfig.error_feedback`` is off. This is the
"plain in-memory FedAvg" baseline the participant node's overhead is measured against.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from flchain.errors import ConfigError, UpdateFormatError
from flchain.learning.aggregation import Aggregator, ClientUpdate, Decision, Failure, Standing
from flchain.learning.attacks import (
    ALIE_FAMILY,
    COLLUDING,
    Attack,
    alie,
    alie_z,
    attack_named,
    backdoor_data,
    backdoor_success,
    boost,
    collude,
    ipm,
)
from flchain.learning.codec import (
    Update,
    apply_update,
    decode_update,
    encode_update,
    sparsify,
)
from flchain.learning.data import FederatedData, TensorData
from flchain.learning.models import ModelSpec
from flchain.learning.sampling import is_sampled, sampling_seed
from flchain.learning.scaffold import (
    Controls,
    server_control_step,
    split,
    train_scaffold,
    update_spec,
    zero_control,
)
from flchain.learning.server_opt import ServerOptimizer, server_step
from flchain.learning.training import (
    TrainConfig,
    TrainResult,
    client_seed,
    evaluate,
    train_local,
    training_seed,
)
from flchain.learning.validation import RoundValidation, ValidationSet, fixed_model

__all__ = [
    "COLLUDING",
    "REFERENCE_ID",
    "Attack",
    "RoundStats",
    "SimConfig",
    "SimResult",
    "alie",
    "alie_z",
    "attack_update",
    "collude",
    "ipm",
    "participant_id",
    "reference_train_config",
    "run_federation",
]

#: Attacks a client can mount; see :func:`attack_update` and, for the colluding ``alie`` and
#: ``ipm``, :mod:`flchain.learning.attacks`.
_NO_TRAINING = ("gaussian", "free_rider", "copycat")


@dataclass(frozen=True)
class SimConfig:
    """One federated run. Clients ``0 .. num_attackers-1`` mount ``attack``.

    For the colluding attacks, ``alie_z`` defaults to Baruch et al.'s z for the run's client
    and attacker counts, ``ipm_epsilon`` is IPM's ε and ``collusion_jitter`` the relative
    noise that keeps the colluders' updates distinct (see :mod:`flchain.learning.attacks`);
    ``omniscient`` colluders compute their statistics from every honest update of the round
    (the papers' worst case) instead of from their own.

    Backdoor attackers poison ``backdoor_fraction`` of their samples with the trigger and label
    ``backdoor_target`` and boost their update by ``backdoor_boost`` (default: clients /
    attackers, model replacement for FedAvg); every round then records the backdoor's success
    rate on the test split.
    """

    rounds: int
    train: TrainConfig
    attack: str | None = None
    num_attackers: int = 0
    sign_flip_scale: float = -4.0
    gaussian_std: float = 1.0
    seed: int = 0
    alie_z: float | None = None
    ipm_epsilon: float = 0.1
    collusion_jitter: float = 0.01
    omniscient: bool = False
    backdoor_target: int = 0
    backdoor_fraction: float = 0.5
    backdoor_boost: float | None = None
    #: the trigger square's distance in pixels from the bottom-right border (1: the corner)
    backdoor_offset: int = 1
    #: C of the FedAvg paper: each round a client trains with this probability, drawn as a
    #: participant node's sample is (:mod:`.sampling`, seeded by ``seed``).
    client_fraction: float = 1.0
    #: The server optimizer turning each round's aggregate into the global step, as a
    #: committee applies it (:mod:`.server_opt`); ``None``: the aggregate is the step.
    server_optimizer: ServerOptimizer | None = None
    #: Top-k codecs: whether clients feed back what they did not send (a node always does;
    #: off, the rest of each update is dropped).
    error_feedback: bool = True
    #: Colluding attacks (ALIE, IPM) only: the colluders craft their updates in every
    #: ``attack_every``-th round and send their honest ones in the others: an attacker that
    #: tends its standing under a rule with memory (``fltrust``'s ``memory``).
    attack_every: int = 1
    #: Colluding attacks only: each colluder's noise is drawn the same way every round (seeded
    #: by the run's seed and its index) instead of afresh (:func:`~.attacks.collude`).
    fixed_noise: bool = False

    def __post_init__(self) -> None:
        if self.attack is not None:
            attack_named(self.attack)  # raises ConfigError naming the known attacks
        if self.rounds < 1 or self.num_attackers < 0:
            raise ConfigError("rounds must be >= 1 and num_attackers >= 0")
        if not self.ipm_epsilon > 0 or self.collusion_jitter < 0:
            raise ConfigError("ipm_epsilon must be > 0 and collusion_jitter >= 0")
        if not 0 < self.client_fraction <= 1:
            raise ConfigError(f"client_fraction must be in (0, 1], got {self.client_fraction}")
        if self.client_fraction < 1 and self.attack is not None:
            raise ConfigError("client_fraction < 1 is not supported with attacks")
        if self.attack_every < 1 or (self.attack_every > 1 and self.attack not in COLLUDING):
            raise ConfigError("attack_every must be >= 1, and above 1 only for alie and ipm")
        if not 0 < self.backdoor_fraction <= 1 or (
            self.backdoor_boost is not None and not self.backdoor_boost > 0
        ):
            raise ConfigError("backdoor_fraction must be in (0, 1] and backdoor_boost > 0")


@dataclass
class RoundStats:
    """One round: test accuracy and loss of the new global model, wall time, decisions, and
    (backdoor runs only) the backdoor's success rate."""

    round: int
    accuracy: float
    loss: float
    train_seconds: float
    aggregate_seconds: float
    decisions: tuple[Decision, ...]
    backdoor_success: float | None = None


@dataclass
class SimResult:
    """Per-round statistics of a run."""

    rounds: list[RoundStats] = field(default_factory=list)

    @property
    def accuracies(self) -> list[float]:
        """Test accuracy after each round."""
        return [r.accuracy for r in self.rounds]

    def rounds_to(self, target: float) -> int | None:
        """First round (1-based) whose test accuracy reaches ``target``, if any."""
        return next((r.round for r in self.rounds if r.accuracy >= target), None)


def participant_id(i: int) -> str:
    """The simulated participant id of client ``i``."""
    return f"client-{i:03d}"


#: The simulated task owner's participant id: with a root data set it sends the round's
#: reference update (``fltrust``'s ``reference``).
REFERENCE_ID = "task-owner"


def reference_train_config(train: TrainConfig, client_sizes: list[int], root: int) -> TrainConfig:
    """The owner's training on its ``root`` samples: as many local steps as the average client
    takes (FLTrust trains the server model with the clients' local iterations), i.e. the
    clients' epochs times ⌈mean client samples / root samples⌉."""
    mean = sum(client_sizes) / max(1, len(client_sizes))
    return replace(train, epochs=train.epochs * max(1, math.ceil(mean / max(1, root))))


def attack_update(
    attack: str,
    honest: TrainResult,
    config: SimConfig,
    gen: torch.Generator,
    victim: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The update an attacker sends instead of ``honest`` (label-flip attacks the training
    data instead, so it arrives here already poisoned)."""
    if attack == "sign_flip":
        return {k: v * config.sign_flip_scale for k, v in honest.delta.items()}
    if attack == "gaussian":
        return {
            k: torch.randn(v.shape, generator=gen) * config.gaussian_std
            for k, v in honest.delta.items()
        }
    if attack == "free_rider":
        return {k: torch.zeros_like(v) for k, v in honest.delta.items()}
    if attack == "copycat":
        return dict(victim if victim is not None else honest.delta)
    return honest.delta


#: The task address simulated clients are sampled under (any fixed value would do).
_SIM_TASK = "0x" + "00" * 19 + "51"


def sampled_clients(num_clients: int, config: SimConfig, round_id: int) -> set[int]:
    """The clients drawn to train in ``round_id`` (all of them at ``client_fraction`` 1)."""
    if config.client_fraction >= 1:
        return set(range(num_clients))
    seed = sampling_seed(_SIM_TASK, round_id, config.seed)
    return {
        i
        for i in range(num_clients)
        if is_sampled(config.client_fraction, seed, _client_address(i))
    }


def _client_address(i: int) -> str:
    return "0x" + hashlib.sha256(participant_id(i).encode()).hexdigest()[:40]


def _label_flipped(data: TensorData) -> TensorData:
    return TensorData(data.x, data.num_classes - 1 - data.y, data.num_classes)


def run_federation(
    model: nn.Module,
    spec: ModelSpec,
    fed: FederatedData,
    aggregator: Aggregator,
    config: SimConfig,
    on_round: Callable[[RoundStats], None] | None = None,
    validation: TensorData | None = None,
    root: TensorData | None = None,
) -> SimResult:
    """Run ``config.rounds`` rounds from ``model``'s weights (``model`` ends at the final
    global model) and return per-round test accuracy and decisions. ``validation`` is the
    task's public validation set, handed to the rule each round with the global model (see
    :class:`~flchain.learning.validation.RoundValidation`). With ``root`` the task owner
    trains honestly on it each round (:func:`reference_train_config`) and sends the update as
    participant :data:`REFERENCE_ID`, after the attackers crafted theirs (commit-reveal hides
    it from them); the rule decides what it is worth (``fltrust``: the reference, paid 0)."""
    if config.num_attackers > len(fed.clients):
        raise ConfigError("more attackers than clients")
    if root is not None and config.train.scaffold:
        raise ConfigError("a reference update (root data set) does not work with scaffold")
    gen = torch.Generator().manual_seed(config.seed)
    poisoned: dict[int, TensorData] = {}
    if config.attack == "backdoor":  # each attacker poisons its data once, for every round
        for i in range(config.num_attackers):
            poisoned[i] = backdoor_data(
                fed.clients[i],
                config.backdoor_target,
                config.backdoor_fraction,
                gen,
                config.backdoor_offset,
            )
    gamma = config.backdoor_boost or len(fed.clients) / max(1, config.num_attackers)
    val_set = None
    if validation is not None:
        val_set = ValidationSet.from_arrays(validation.x, validation.y, validation.num_classes)
    result = SimResult()
    honest_first = config.num_attackers  # the copycat's victim
    optimizer = config.server_optimizer
    server_state = optimizer.zero_state(spec.num_params) if optimizer else {}
    scaffold = config.train.scaffold
    uspec = update_spec(spec) if scaffold else spec
    server_c = zero_control(spec)
    standing: Mapping[str, Standing] = {}  # a rule with memory: each client's evidence so far
    client_c = {i: np.zeros(spec.num_params) for i in range(len(fed.clients))} if scaffold else {}
    if scaffold and spec.codec.encoding == "topk":  # as the task config refuses it
        raise ConfigError('scaffold cannot be combined with codec "topk"')
    feedback = spec.codec.encoding == "topk" and config.error_feedback
    residual: dict[int, np.ndarray] = {}  # top-k error feedback: what each client held back
    for rnd in range(1, config.rounds + 1):
        t0 = time.perf_counter()
        trained: dict[int, TrainResult] = {}
        controlled: dict[int, Update] = {}  # SCAFFOLD: what each client sends (Δw and Δc)
        new_c: dict[int, np.ndarray] = {}  # SCAFFOLD: c_i⁺, kept once the update is accepted
        # honest clients first so the copycat's victim exists; every attacker has trained
        # before any attacker crafts its update, so colluders can pool their honest updates
        drawn = sampled_clients(len(fed.clients), config, rnd)
        if not drawn:  # nobody drawn: the round changes nothing (the model stays)
            ev = evaluate(model, fed.test)
            result.rounds.append(RoundStats(rnd, ev.accuracy, ev.loss, 0.0, 0.0, ()))
            continue
        for i in list(range(honest_first, len(fed.clients))) + list(range(honest_first)):
            if i not in drawn:
                continue
            attacker = i < config.num_attackers
            data = fed.clients[i]
            if attacker and config.attack == "label_flip":
                data = _label_flipped(data)
            if attacker and config.attack == "backdoor":
                data = poisoned[i]
            if attacker and config.attack in _NO_TRAINING:  # they claim samples, train nothing
                zeros = {t.name: torch.zeros(t.shape) for t in uspec.tensors}
                trained[i] = TrainResult(zeros, len(data), float("nan"))
            elif scaffold:
                seed = training_seed(client_seed(config.seed, i), rnd - 1)
                controls = Controls(spec, client_c[i], server_c)
                run = train_scaffold(model, data, config.train, seed, controls)
                new_c[i] = run.client_control
                # attackers craft from what a client sends, the joint Δw‖Δc (so a sign flip
                # flips Δc too and colluders pool both halves); honest clients send run.update
                joint = run.update.to_tensors()
                trained[i] = TrainResult(joint, run.train.num_samples, run.train.train_loss)
                controlled[i] = run.update
            else:
                seed = training_seed(client_seed(config.seed, i), rnd - 1)
                trained[i] = train_local(model, data, config.train, seed=seed)
        sent: dict[int, dict[str, torch.Tensor] | Update] = {
            i: controlled.get(i, res.delta) for i, res in trained.items()
        }
        if feedback:  # honest clients; an update sparsify refuses goes out as garbage below
            for i in (i for i in trained if i >= config.num_attackers):
                with contextlib.suppress(UpdateFormatError):
                    sent[i], residual[i] = sparsify(trained[i].delta, residual.get(i), spec)
        attackers = range(config.num_attackers)
        crafting = rnd % config.attack_every == 0  # else the colluders send honest updates
        if config.attack in COLLUDING and config.num_attackers and crafting:
            z = config.alie_z
            if z is None and config.attack in ALIE_FAMILY:
                z = alie_z(len(fed.clients), config.num_attackers)
            pool = range(config.num_attackers, len(fed.clients)) if config.omniscient else attackers
            crafted = collude(
                config.attack,
                [trained[i].delta for i in pool],
                z=z or 0.0,
                epsilon=config.ipm_epsilon,
                jitter=config.collusion_jitter,
                gen=gen,
                count=config.num_attackers,
                noise_seeds=[config.seed * 1000 + i for i in attackers]
                if config.fixed_noise
                else None,
            )
            sent.update(zip(attackers, crafted, strict=True))
        elif config.attack == "backdoor":
            for i in attackers:
                sent[i] = boost(trained[i].delta, gamma)
        elif config.attack is not None and config.attack not in COLLUDING:
            victim = trained[honest_first].delta if honest_first in trained else None
            for i in attackers:
                sent[i] = attack_update(config.attack, trained[i], config, gen, victim)
        blobs = [
            (participant_id(i), _encode_or_garbage(sent[i], uspec), trained[i].num_samples)
            for i in trained
        ]
        if root is not None:
            owner_cfg = reference_train_config(
                config.train, [len(c) for c in fed.clients], len(root)
            )
            seed = training_seed(client_seed(config.seed, len(fed.clients)), rnd - 1)
            owner = train_local(model, root, owner_cfg, seed=seed)
            blobs.append((REFERENCE_ID, _encode_or_garbage(owner.delta, uspec), len(root)))
        t1 = time.perf_counter()
        updates, failures = [], []
        for pid, blob, n in blobs:
            try:
                updates.append(ClientUpdate(pid, decode_update(blob, uspec), n))
            except UpdateFormatError as exc:
                failures.append(Failure(pid, str(exc)))
        checked = None
        if val_set is not None:
            checked = RoundValidation(val_set, fixed_model(model.state_dict(), spec))
        if aggregator.remembers:  # the evidence the previous round's report would keep
            agg = aggregator.aggregate(updates, failures, validation=checked, standing=standing)
            standing = agg.standing
        elif checked is None:  # no keyword then: rules that override aggregate() keep working
            agg = aggregator.aggregate(updates, failures)
        else:
            agg = aggregator.aggregate(updates, failures, validation=checked)
        step = agg.update
        if scaffold:  # as a node does: c_i moves only by a Δc_i that c takes in
            accepted = {d.participant for d in agg.decisions if d.accepted}
            client_c.update((i, c) for i, c in new_c.items() if participant_id(i) in accepted)
            step, delta_c = split(step, spec)
            bound_q = spec.codec.bound_q
            server_c = server_control_step(server_c, delta_c, config.client_fraction, bound_q)
        if optimizer is not None:
            step, server_state = server_step(optimizer, step, server_state)
        model.load_state_dict(apply_update(model.state_dict(), step))
        t2 = time.perf_counter()
        ev = evaluate(model, fed.test)
        bd = None
        if config.attack == "backdoor" and config.num_attackers:
            bd = backdoor_success(model, fed.test, config.backdoor_target, config.backdoor_offset)
        stats = RoundStats(rnd, ev.accuracy, ev.loss, t1 - t0, t2 - t1, agg.decisions, bd)
        result.rounds.append(stats)
        if on_round is not None:
            on_round(stats)
    return result


def _encode_or_garbage(delta: dict[str, torch.Tensor] | Update, spec: ModelSpec) -> bytes:
    """Encode; an update the codec refuses (e.g. beyond the bound) is sent as garbage so the
    committee records it as a failure, as it would on the network."""
    try:
        return encode_update(delta, spec)
    except UpdateFormatError as exc:
        return f"unencodable: {exc}".encode()
