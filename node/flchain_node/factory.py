"""How a participant node is put together, written once: ``flchain node run``, the one-process
federation, the fault-injection tests and the node processes they spawn all build it here.

A node is its key, a task wrapper on its own chain connection, the content store, its state file
(optional: the demo keeps state in memory) and an update source. On the simulation path the
update source trains on one shard of the task's seeded partition, seeded per participant by
:func:`~flchain.learning.training.client_seed` as the in-memory simulation seeds its clients, so
the two agree round by round. A real participant's update source trains on the operator's own
data (:func:`private_trainer`) or runs an existing Flower client (:func:`flower_trainer`); both
are built, and their data and model checked against the manifest, before the node stakes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from eth_account.signers.local import LocalAccount
from torch import nn
from typing_extensions import Unpack

from flchain.config import TaskConfig
from flchain.errors import ConfigError
from flchain.learning.codec import decode_model
from flchain.learning.data import FederatedData
from flchain.learning.local_data import load_local
from flchain.learning.training import client_seed
from flchain.ledger.contracts import TrainingTask
from flchain.protocol.manifest import TaskManifest
from flchain.protocol.task import (
    check_model_layout,
    data_spec,
    federated_data,
    train_config,
)
from flchain.protocol.task import task_model as _task_model
from flchain.storage import ContentStore
from flchain.targets import one_line
from flchain_node.flower import FlowerTrainer
from flchain_node.local import LocalMetrics, Log, PrivateTrainer
from flchain_node.participant import NodeOptions, ParticipantNode, UpdateSource
from flchain_node.state import NodeState
from flchain_node.trainer import LocalTrainer


def task_model(config: TaskConfig) -> nn.Module:
    """A fresh instance of the task's model, for a participant to train (weights come from the
    global model each round)."""
    return _task_model(config, seed=0)


def checked_model(manifest: TaskManifest) -> nn.Module:
    """The task's model built here (its factory from the package installed on this machine),
    refused with the first differing parameter when its layout is not the manifest's."""
    model = task_model(manifest.config)
    check_model_layout(manifest.config, manifest.spec, model)
    return model


def private_seed(config: TaskConfig, account: str) -> int:
    """A real participant's training seed: from the task's seed and its own address, so two
    nodes never shuffle alike, and a restarted node trains the same way again."""
    digest = hashlib.sha256(f"{config.training.seed}:{account.lower()}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def private_trainer(
    manifest: TaskManifest,
    account: str,
    *,
    data: Path | None = None,
    loader: str | None = None,
    metrics: LocalMetrics | None = None,
    log: Log | None = None,
) -> PrivateTrainer:
    """An honest trainer on the operator's own data (``data``: a file or image folder, or
    ``loader``: ``package.module:function``), checked against the task's ``[data]`` section and
    model: raises a one-line :class:`~flchain.errors.DataError` or
    :class:`~flchain.errors.ModelMismatch` before anything is staked."""
    config = manifest.config
    model = checked_model(manifest)
    local = load_local(
        data_spec(config),
        path=data,
        loader=loader,
        min_samples=config.training.batch_size,
        validation_fraction=config.data.validation_fraction,
        seed=config.data.seed,
    )
    _check_forward(model, local.train.x[: config.training.batch_size], local.train.num_classes)
    return PrivateTrainer(
        model,
        local.train,
        train_config(config),
        private_seed(config, account),
        validation=local.validation,
        max_samples=config.ledger.max_samples,
        metrics=metrics,
        log=log,
    )


def _check_forward(model: nn.Module, batch: torch.Tensor, num_classes: int) -> None:
    """One forward pass: the model must map the task's inputs to one score per class."""
    try:
        with torch.no_grad():
            out = model.eval()(batch)
    except Exception as exc:  # a factory model that cannot take the task's inputs
        raise ConfigError(
            f"the task's model cannot take the task's inputs {list(batch.shape[1:])}: "
            f"{type(exc).__name__}: {one_line(exc)}"
        ) from exc
    finally:
        model.train()
    if tuple(out.shape) != (len(batch), num_classes):
        raise ConfigError(
            f"the task's model outputs shape {list(out.shape[1:])} per input, the task has "
            f"{num_classes} classes"
        )


def flower_trainer(
    manifest: TaskManifest,
    target: str,
    initial_model: bytes,
    *,
    data: Path | None = None,
    metrics: LocalMetrics | None = None,
    log: Log | None = None,
) -> FlowerTrainer:
    """A Flower client (``target``: ``package.module:client_fn``) as the node's trainer, tried
    once on the task's initial model (``initial_model``: its encoded bytes) so a client that
    returns the wrong arrays is refused before the node stakes."""
    if manifest.config.training.algorithm == "scaffold":
        raise ConfigError(
            'training.algorithm = "scaffold": the node trains with control variates in its own '
            "trainer; a Flower client cannot be used for it"
        )
    if manifest.config.training.dp:
        raise ConfigError(
            "training.dp: this task trains with differential privacy, which the node applies "
            "in its own trainer; a Flower client cannot be used for it"
        )
    node_config = {"data-path": str(data)} if data is not None else {}
    trainer = FlowerTrainer(
        target,
        manifest.config,
        manifest.spec,
        node_config=node_config,
        max_samples=manifest.config.ledger.max_samples,
        metrics=metrics,
        log=log,
    )
    trainer.check(decode_model(initial_model, manifest.spec))
    return trainer


def validate_final(
    source: object, model_bytes: bytes, manifest: TaskManifest, round_id: int
) -> None:
    """Evaluate the task's final global model on the node's held-out data (if it keeps any)."""
    state = decode_model(model_bytes, manifest.spec)
    if isinstance(source, PrivateTrainer | FlowerTrainer):
        source.validate(state, round_id)


def shard_trainer(
    config: TaskConfig, shard: int, shards: int, *, data: FederatedData | None = None
) -> LocalTrainer:
    """An honest trainer on shard ``shard`` of the task's seeded partition into ``shards``
    (``data``: that partition, when the caller already cut it)."""
    data = data or federated_data(config.data, shards)
    return LocalTrainer(
        task_model(config),
        data.clients[shard],
        train_config(config),
        client_seed(config.training.seed, shard),
    )


def state_file(state_dir: Path, task: TrainingTask, account: str) -> Path:
    """Where the node of address ``account`` on ``task`` keeps its state under ``state_dir``:
    keyed by chain id and genesis hash too, since fresh dev chains reuse task addresses (the
    file itself records the full genesis hash, checked on load)."""
    chain = task.chain
    return state_dir / f"{chain.chain_id}-{chain.genesis_hash[2:10]}-{task.address}-{account}.json"


def build_participant(
    task: TrainingTask,
    store: ContentStore,
    account: LocalAccount,
    source: UpdateSource,
    *,
    state_path: Path | None = None,
    **options: Unpack[NodeOptions],
) -> ParticipantNode:
    """A participant node; with ``state_path`` it resumes from (and persists to) that file. The
    other ``options`` go to :class:`ParticipantNode` as they are."""
    state = (
        NodeState.load(
            state_path,
            account=account.address,
            task=task.address,
            chain_id=task.chain.chain_id,
            genesis=task.chain.genesis_hash,
        )
        if state_path is not None
        else None
    )
    return ParticipantNode(task, store, account, source, state=state, **options)
