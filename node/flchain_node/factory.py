"""How a participant node is put together, written once: ``flchain node run``, the one-process
federation, the fault-injection tests and the node processes they spawn all build it here.

A node is its key, a task wrapper on its own chain connection, the content store, its state file
(optional: the demo keeps state in memory) and an update source. On the simulation path the
update source trains on one shard of the task's seeded partition, seeded per participant by
:func:`participant_seed`.
"""

from __future__ import annotations

from pathlib import Path

from eth_account.signers.local import LocalAccount
from torch import nn

from flchain.config import TaskConfig
from flchain.learning.data import FederatedData
from flchain.learning.models import build_model
from flchain.ledger.contracts import TrainingTask
from flchain.protocol.manifest import TaskManifest
from flchain.protocol.task import federated_data, train_config
from flchain.storage import ContentStore
from flchain_node.participant import ParticipantNode, UpdateSource
from flchain_node.state import NodeState
from flchain_node.trainer import LocalTrainer


def participant_seed(config: TaskConfig, index: int) -> int:
    """The training seed of participant ``index`` (its shard number) of a simulated task."""
    return config.training.seed * 1000 + index


def task_model(config: TaskConfig) -> nn.Module:
    """A fresh instance of the task's model, for a participant to train (weights come from the
    global model each round)."""
    return build_model(config.training.model, config.data.dataset)


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
        participant_seed(config, shard),
    )


def state_file(state_dir: Path, task: TrainingTask, account: LocalAccount) -> Path:
    """Where a node of ``account`` on ``task`` keeps its state under ``state_dir``: keyed by
    chain id and genesis hash too, since fresh dev chains reuse task addresses (the file
    itself records the full genesis hash, checked on load)."""
    chain = task.chain
    return (
        state_dir
        / f"{chain.chain_id}-{chain.genesis_hash[2:10]}-{task.address}-{account.address}.json"
    )


def build_participant(
    task: TrainingTask,
    store: ContentStore,
    account: LocalAccount,
    source: UpdateSource,
    *,
    state_path: Path | None = None,
    manifest: TaskManifest | None = None,
    reveal: bool = True,
    attest: bool = True,
    confirmations: int = 0,
) -> ParticipantNode:
    """A participant node; with ``state_path`` it resumes from (and persists to) that file."""
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
    return ParticipantNode(
        task, store, account, source, state=state, manifest=manifest, reveal=reveal,
        attest=attest, confirmations=confirmations,
    )  # fmt: skip
