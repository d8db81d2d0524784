"""From a task config to the things a round needs: data, model, spec, manifest."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from flchain.config import CODECS, DataConfig, TaskConfig
from flchain.errors import ConfigError, ModelMismatch
from flchain.learning.data import FederatedData, federate, load_digits, load_mnist5k, synthetic
from flchain.learning.local_data import DataSpec
from flchain.learning.models import (
    DATASET_SHAPES,
    CodecParams,
    DataShape,
    Encoding,
    ModelSpec,
    build_model,
)
from flchain.learning.server_opt import ServerOptimizer
from flchain.learning.training import DPConfig, TrainConfig
from flchain.learning.validation import ValidationSet, validation_slice
from flchain.protocol.manifest import TaskManifest
from flchain.targets import import_target, one_line

MODEL_HINT = "pip install the task's model package"


def federated_data(config: DataConfig, num_clients: int) -> FederatedData:
    """The configured data set, split into a held-out test set and one shard per client.

    This is the simulation path: every participant derives its shard from the same seeded
    partition of a public data set. Real participants bring their own data
    (:mod:`flchain.learning.local_data`).
    """
    if config.dataset == "custom":
        raise ConfigError(
            'data.dataset = "custom": participants bring their own data (--data); there is '
            "no built-in data set to cut into shards"
        )
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


def data_shape(config: DataConfig) -> DataShape:
    """The input shape and class count the task's model is built for."""
    if config.dataset == "custom":
        return DataShape(tuple(config.input_shape), config.num_classes)
    shape, classes = DATASET_SHAPES[config.dataset]
    return DataShape(shape, classes)


def data_spec(config: TaskConfig) -> DataSpec:
    """What a participant's own data must look like, and how it is preprocessed."""
    d, shape = config.data, data_shape(config.data)
    return DataSpec(
        input_shape=shape.input_shape,
        num_classes=shape.num_classes,
        label_column=d.label_column,
        classes=tuple(d.classes),
        mean=tuple(float(v) for v in d.mean),
        std=tuple(float(v) for v in d.std),
    )


def task_model(config: TaskConfig, seed: int | None = None) -> nn.Module:
    """A fresh instance of the task's model: a built-in, or what the factory named in
    ``[model]`` returns for its kwargs. ``seed`` (default: the task's training seed) makes the
    initial weights reproducible."""
    seed = config.training.seed if seed is None else seed
    if not config.model.factory:
        return build_model(config.model.name or config.training.model, data_shape(config.data),
                           seed=seed)  # fmt: skip
    factory = import_target(config.model.factory, "model factory", MODEL_HINT)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = factory(**config.model.kwargs)
        except Exception as exc:  # user code: any failure becomes one clear line
            raise ConfigError(
                f"model factory {config.model.factory!r} raised {type(exc).__name__}: "
                f"{one_line(exc)}"
            ) from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model factory {config.model.factory!r} returned {type(model).__name__}, "
            "not a torch.nn.Module"
        )
    return model


def dp_config(config: TaskConfig) -> DPConfig | None:
    """The task's client-level DP (``[training] dp``), or ``None`` when it has none."""
    dp = config.training.dp
    if not dp:
        return None
    target = dp.get("target_epsilon")
    return DPConfig(
        clip_norm=float(dp["clip"]),
        noise_multiplier=float(dp["noise_multiplier"]),
        delta=float(dp["delta"]),
        target_epsilon=None if target is None else float(target),
    )


def validation_set(config: TaskConfig) -> ValidationSet | None:
    """The task's public validation set (``aggregation.validation_per_class`` samples of each
    class of the built-in data set's test split), or ``None``."""
    per_class = config.aggregation.validation_per_class
    if per_class <= 0:
        return None
    picked = validation_slice(federated_data(config.data, 1).test, per_class)
    assert picked is not None
    return ValidationSet.from_arrays(picked.x, picked.y, picked.num_classes)


def server_optimizer(config: TaskConfig) -> ServerOptimizer | None:
    """The task's server optimizer (``[training] server_*``), or ``None`` for plain FedAvg."""
    t = config.training
    if t.server_optimizer == "none":
        return None
    return ServerOptimizer(
        t.server_optimizer, t.server_lr, t.server_momentum, t.server_beta2, t.server_tau
    )


def codec_params(config: TaskConfig) -> CodecParams:
    """The update codec the task's manifest names (``[training] codec``)."""
    t = config.training
    return CodecParams(encoding=cast(Encoding, CODECS[t.codec]), topk_fraction=t.topk_fraction)


def train_config(config: TaskConfig) -> TrainConfig:
    t = config.training
    mu = t.mu if t.algorithm == "fedprox" else 0.0
    return TrainConfig(
        epochs=t.epochs,
        batch_size=t.batch_size,
        lr=t.lr,
        prox_mu=mu,
        dp=dp_config(config),
        scaffold=t.algorithm == "scaffold",
    )


def initial_model_and_manifest(config: TaskConfig) -> tuple[nn.Module, TaskManifest]:
    """The task's initial global model (seeded) and its manifest, which records the model's
    factory and kwargs (in the config) and its exact parameter layout (the spec)."""
    model = task_model(config)
    spec = ModelSpec.from_model(model, config.architecture, codec_params(config))
    return model, TaskManifest(config, spec)


def check_model_layout(config: TaskConfig, spec: ModelSpec, model: nn.Module) -> None:
    """Refuse a locally built model whose parameter layout is not the manifest's (e.g. another
    version of the model package), naming the first differing parameter."""
    try:
        local = ModelSpec.from_model(model, config.architecture, spec.codec)
    except ConfigError as exc:
        raise ModelMismatch(f"the model built here is not usable: {exc}") from exc
    where = spec.first_difference(local)
    if where is not None:
        raise ModelMismatch(
            f"the model {config.architecture!r} built here does not match the task's manifest: "
            f"{where}"
        )
