"""Where a participant's update comes from: honest local training, or (for attack studies) a
behaviour that wraps it."""

from __future__ import annotations

import torch
from torch import nn

from flchain.errors import ConfigError
from flchain.learning.attacks import ALIE_FAMILY, COLLUDING, Attack, Delta, alie, alie_z, ipm
from flchain.learning.data import TensorData
from flchain.learning.models import load_parameters
from flchain.learning.privacy import PrivacyAccountant, PrivacySpend
from flchain.learning.scaffold import Controls, train_scaffold
from flchain.learning.simulation import SimConfig, attack_update
from flchain.learning.training import TrainConfig, TrainResult, train_local, training_seed
from flchain_node.participant import Produced

#: The attacks one participant node can run on its own (free-riding is a node role, not an
#: attack; copycats and backdoors exist in the in-memory simulation only).
NODE_ATTACKS = (Attack.SIGN_FLIP, Attack.GAUSSIAN, Attack.LABEL_FLIP, *ALIE_FAMILY, Attack.IPM)


class LocalTrainer:
    """Trains the global model on this participant's own data (FedAvg / FedProx, and SCAFFOLD
    when :meth:`produce` is given control variates).

    On a DP task (``config.dp``) every round's update is clipped and noised and charged to
    ``privacy`` (a fresh in-memory accountant unless given one that remembers past rounds);
    a round that would go past the task's target ε raises
    :class:`~flchain.errors.PrivacyBudgetExhausted` before any training, and the node sits
    it out."""

    def __init__(
        self,
        model: nn.Module,
        data: TensorData,
        config: TrainConfig,
        seed: int,
        *,
        privacy: PrivacyAccountant | None = None,
    ) -> None:
        self.model, self.data, self.config, self.seed = model, data, config, seed
        if privacy is None and config.dp is not None:
            privacy = PrivacyAccountant(config.dp)
        self.privacy = privacy
        self.last_spend: PrivacySpend | None = None

    def train(self, global_state: dict[str, torch.Tensor], round_id: int) -> TrainResult:
        if self.privacy is not None:
            self.privacy.check(round_id)
        load_parameters(self.model, global_state)
        result = train_local(
            self.model, self.data, self.config, seed=training_seed(self.seed, round_id)
        )
        if result.buffers:  # local statistics (BatchNorm) carry over to the next round
            self.model.load_state_dict(result.buffers, strict=False)
        if self.privacy is not None:
            self.last_spend = self.spend(round_id)
        return result

    def spend(self, round_id: int) -> PrivacySpend:
        """Charge ``round_id``'s release to the accountant (subclasses also persist it)."""
        assert self.privacy is not None
        return self.privacy.spend(round_id)

    def produce(
        self, global_state: dict[str, torch.Tensor], round_id: int, controls: Controls | None
    ) -> Produced:
        """The round's delta; with ``controls``, a SCAFFOLD round
        (:mod:`flchain.learning.scaffold`): the update carrying ``Δw`` and ``Δc`` and this
        participant's new control variate ``c_i⁺``."""
        if controls is None:
            result = self.train(global_state, round_id)
            return Produced(result.delta, result.num_samples)
        load_parameters(self.model, global_state)
        seed = training_seed(self.seed, round_id)
        run = train_scaffold(self.model, self.data, self.config, seed, controls)
        if run.train.buffers:
            self.model.load_state_dict(run.train.buffers, strict=False)
        return Produced(run.update, run.train.num_samples, run.client_control)


class Attacker(LocalTrainer):
    """Trains as ``honest`` would (its model, data, config and seed), then sends what
    ``attack`` makes of it (see :func:`flchain.learning.simulation.attack_update`); label-flip
    poisons the data instead.

    ``alie`` and ``ipm`` need the statistics of benign updates, but one node cannot see the
    others' before the reveal, and attackers here do not talk to each other. So each estimates
    them alone: ALIE takes the mean and std over its honest update and ``replicas - 1`` more
    trained on bootstrap resamples of its own data (same size, so the same number of steps;
    the spread mixes SGD noise with sampling noise, a stand-in for the spread between
    clients), with Baruch et al.'s z for ``participants`` and ``sim.num_attackers`` unless
    ``sim.alie_z`` is set; IPM sends ``−ε`` times its own honest update. The replicas are
    seeded from ``seed`` and the round, so the attack is reproducible.
    """

    def __init__(
        self,
        honest: LocalTrainer,
        attack: str,
        sim: SimConfig | None = None,
        *,
        participants: int | None = None,
        replicas: int = 4,
    ) -> None:
        model, data, config, seed = honest.model, honest.data, honest.config, honest.seed
        if config.scaffold:
            raise ConfigError("attack studies do not support training.algorithm = 'scaffold'")
        if attack == "label_flip":
            data = TensorData(data.x, data.num_classes - 1 - data.y, data.num_classes)
        super().__init__(model, data, config, seed)
        self.attack = attack
        self.sim = sim or SimConfig(rounds=1, train=config, attack=attack, num_attackers=1)
        self.gen = torch.Generator().manual_seed(seed)
        self.replicas = replicas
        if attack in ALIE_FAMILY and replicas < 2:
            raise ConfigError(f"{attack} needs replicas >= 2 to estimate a std, not {replicas}")
        z = self.sim.alie_z
        if attack in ALIE_FAMILY and z is None:
            if participants is None:
                raise ConfigError(f"{attack} needs participants= (or sim.alie_z) to choose z")
            z = alie_z(participants, max(1, self.sim.num_attackers))
        self.z: float = z if z is not None else 0.0

    def estimates(
        self, global_state: dict[str, torch.Tensor], round_id: int, honest: TrainResult
    ) -> list[Delta]:
        """``honest``'s update and ``replicas - 1`` updates trained on bootstrap resamples."""
        base = training_seed(self.seed, round_id)
        gen = torch.Generator().manual_seed(base)
        out = [honest.delta]
        for r in range(1, self.replicas):
            idx = torch.randint(len(self.data), (len(self.data),), generator=gen)
            boot = TensorData(self.data.x[idx], self.data.y[idx], self.data.num_classes)
            load_parameters(self.model, global_state)
            seed = base * 31 + r
            out.append(train_local(self.model, boot, self.config, seed=seed).delta)
        return out

    def produce(
        self, global_state: dict[str, torch.Tensor], round_id: int, controls: Controls | None
    ) -> Produced:
        if controls is not None:  # refused at construction too; a node's attacks are deltas
            raise ConfigError("attack studies do not support training.algorithm = 'scaffold'")
        honest = self.train(global_state, round_id)
        if self.attack == "label_flip":
            return Produced(honest.delta, honest.num_samples)
        if self.attack in COLLUDING:
            if self.attack == "ipm":
                return Produced(ipm([honest.delta], self.sim.ipm_epsilon), honest.num_samples)
            estimates = self.estimates(global_state, round_id, honest)
            crafted = alie(estimates, self.z, shrink=self.attack == Attack.ALIE_SHRINK)
            return Produced(crafted, honest.num_samples)
        return Produced(attack_update(self.attack, honest, self.sim, self.gen), honest.num_samples)
