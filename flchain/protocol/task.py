"""From a task config to the things a round needs: data, model, spec, manifest."""

from __future__ import annotations

from torch import nn

from flchain.config import DataConfig, TaskConfig
from flchain.learning.data import FederatedData, federate, load_digits, load_mnist5k, synthetic
from flchain.learning.models import ModelSpec, build_model
from flchain.learning.training import TrainConfig
from flchain.protocol.manifest import TaskManifest


def federated_data(config: DataConfig, num_clients: int) -> FederatedData:
    """The configured data set, split into a held-out test set and one shard per client.

    In a real consortium each participant brings its own data; for demos and studies every
    participant derives its shard from the same seeded partition.
    """
    if config.dataset == "synthetic":
        # FedProx's Synthetic(α, β) is non-IID by construction: one generator per client.
        return synthetic(
            config.alpha,
            config.alpha,
            num_clients,
            seed=config.seed,
            test_fraction=config.test_fraction,
        )
    data = load_mnist5k() if config.dataset == "mnist" else load_digits()
    return federate(
        data,
        num_clients,
        config.partition,
        alpha=config.alpha,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )


def train_config(config: TaskConfig) -> TrainConfig:
    t = config.training
    mu = t.mu if t.algorithm == "fedprox" else 0.0
    return TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, prox_mu=mu)


def initial_model_and_manifest(config: TaskConfig) -> tuple[nn.Module, TaskManifest]:
    """The task's initial global model (seeded) and its manifest."""
    model = build_model(config.training.model, config.data.dataset, seed=config.training.seed)
    spec = ModelSpec.from_model(model, config.training.model)
    return model, TaskManifest(config, spec)
