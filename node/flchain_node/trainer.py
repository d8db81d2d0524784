"""Where a participant's update comes from: honest local training, or (for attack studies) a
behaviour that wraps it."""

from __future__ import annotations

import torch
from torch import nn

from flchain.learning.data import TensorData
from flchain.learning.simulation import SimConfig, attack_update
from flchain.learning.training import TrainConfig, TrainResult, train_local


class LocalTrainer:
    """Trains the global model on this participant's own data (FedAvg / FedProx)."""

    def __init__(self, model: nn.Module, data: TensorData, config: TrainConfig, seed: int) -> None:
        self.model, self.data, self.config, self.seed = model, data, config, seed

    def train(self, global_state: dict[str, torch.Tensor], round_id: int) -> TrainResult:
        self.model.load_state_dict(global_state)
        return train_local(self.model, self.data, self.config, seed=self.seed * 100_003 + round_id)

    def produce(
        self, global_state: dict[str, torch.Tensor], round_id: int
    ) -> tuple[dict[str, torch.Tensor], int]:
        result = self.train(global_state, round_id)
        return result.delta, result.num_samples


class Attacker(LocalTrainer):
    """Trains honestly, then sends what ``attack`` makes of it (see
    :func:`flchain.learning.simulation.attack_update`); label-flip poisons the data instead."""

    def __init__(
        self,
        model: nn.Module,
        data: TensorData,
        config: TrainConfig,
        seed: int,
        attack: str,
        sim: SimConfig | None = None,
    ) -> None:
        if attack == "label_flip":
            data = TensorData(data.x, data.num_classes - 1 - data.y, data.num_classes)
        super().__init__(model, data, config, seed)
        self.attack = attack
        self.sim = sim or SimConfig(rounds=1, train=config, attack=attack, num_attackers=1)
        self.gen = torch.Generator().manual_seed(seed)

    def produce(
        self, global_state: dict[str, torch.Tensor], round_id: int
    ) -> tuple[dict[str, torch.Tensor], int]:
        honest = self.train(global_state, round_id)
        if self.attack == "label_flip":
            return honest.delta, honest.num_samples
        return attack_update(self.attack, honest, self.sim, self.gen), honest.num_samples
