"""The small federation tests drive by hand: an embedded federation whose participant nodes
keep their state in files, a node rebuilt the way a restarted process builds it (only its key,
its state file, the chain and the store to go on), and a driver that steps every node, restarts
the ones that "die", and moves the clock when nobody has anything to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from flchain_node import ParticipantNode
from flchain_node.factory import build_participant, shard_trainer
from flchain_node.federation import (
    DemoConfig,
    Federation,
    advance_clock,
    did_something,
)
from flchain_node.participant import Produced
from flchain_node.trainer import LocalTrainer

from flchain.learning.scaffold import Controls
from flchain.ledger.chain import Chain
from flchain.ledger.contracts import (
    Result,
    RoundFinalized,
    RoundRecord,
    RoundStatus,
    TrainingTask,
)
from flchain.protocol.committee import RoundInputs, RoundOutcome, recompute_round
from flchain.storage import ContentStore

#: Three honest participants; committee of 3 with quorum 2, so every node is a member.
DEMO = DemoConfig(
    participants=3,
    rounds=1,
    rule="fedavg",
    rule_params={},
    attackers=0,
    free_riders=0,
    dropouts=0,
    dataset="digits",
    model="mlp",
    epochs=1,
)


@contextmanager
def small_federation() -> Iterator[Federation]:
    """A fresh :data:`DEMO` federation on the embedded chain and a throw-away store."""
    torch.set_num_threads(1)
    federation = Federation(DEMO)
    try:
        yield federation
    finally:
        federation.close()


class Killed(BaseException):
    """A simulated SIGKILL: a BaseException, so no ``except Exception`` in the node can
    swallow it, and nothing after the injection point runs."""


def fresh_node(
    fed: Federation,
    index: int,
    state_dir: Path,
    *,
    chain: Chain | None = None,
    store: ContentStore | None = None,
    **options: Any,
) -> ParticipantNode:
    """Participant ``index`` as a freshly started process builds it: a new chain connection
    (own nonce manager and caches), a new task wrapper, its state file, a new trainer and the
    manifest fetched from the store."""
    account = fed.accounts[index]
    chain = chain or Chain(fed.chain.w3, fed.chain.accounts, label="restarted node")
    task = TrainingTask(chain, fed.deployment.task.address)
    trainer = shard_trainer(fed.config, index, fed.demo.participants, data=fed.fed)
    return build_participant(
        task, store or fed.store, account, trainer, state_path=state_dir / f"node{index}.json",
        **options,
    )  # fmt: skip


class SlowTrainer:
    """Trains like ``inner``, but the chain moves past the round's commit deadline meanwhile
    (a straggler, without waiting for it)."""

    def __init__(self, inner: LocalTrainer, task: TrainingTask) -> None:
        self.inner, self.task = inner, task

    def produce(
        self, global_state: dict[str, torch.Tensor], round_id: int, controls: Controls | None
    ) -> Produced:
        end = self.task.round_record(round_id).commit_end
        if end > self.task.chain.block_number:  # time passes
            self.task.chain.mine(end - self.task.chain.block_number)
        return self.inner.produce(global_state, round_id, controls)


class Driver:
    """Steps a set of nodes until a condition holds; a node that raises :class:`Killed` is
    replaced by ``restart(index)`` and counted in :attr:`restarts`."""

    def __init__(
        self,
        fed: Federation,
        nodes: dict[int, ParticipantNode] | None = None,
        restart: Callable[[int], ParticipantNode] | None = None,
    ) -> None:
        nodes = dict(enumerate(fed.nodes)) if nodes is None else nodes
        self.fed, self.nodes, self.restart = fed, nodes, restart
        self.restarts: list[int] = []

    def run_until(self, done: Callable[[], bool], max_passes: int = 40) -> None:
        for _ in range(max_passes):
            if done():
                return
            acted = False
            for i in list(self.nodes):
                try:
                    acted |= did_something(self.nodes[i].step())
                except Killed:
                    if self.restart is None:
                        raise
                    self.nodes[i] = self.restart(i)
                    self.restarts.append(i)
                    acted = True
            if not acted:
                advance_clock(self.fed.deployment.task)
        raise AssertionError(f"condition not reached in {max_passes} passes")

    @classmethod
    def restartable(
        cls, fed: Federation, state_dir: Path, indices: Iterable[int] = range(3)
    ) -> Driver:
        """Nodes ``indices`` built as processes build them (state files in ``state_dir``),
        and rebuilt the same way when they die."""
        return cls(
            fed,
            {i: fresh_node(fed, i, state_dir) for i in indices},
            lambda i: fresh_node(fed, i, state_dir),
        )

    def finish_round(self, round_id: int, max_passes: int = 40) -> None:
        """Step until round ``round_id`` is closed (finalized or expired)."""
        self.run_until(self.round_closed(round_id), max_passes)

    def round_closed(self, round_id: int) -> Callable[[], bool]:
        task = self.fed.deployment.task
        return lambda: task.round_record(round_id).status != RoundStatus.OPEN


def assert_recomputes(
    inputs: RoundInputs, store: ContentStore, event: RoundFinalized, record: RoundRecord
) -> RoundOutcome:
    """Recompute a round from ``inputs`` as any member would, and check it is what the chain
    finalized: the model and report named in ``event`` and the result hash ``record`` holds."""
    outcome = recompute_round(inputs, store)
    assert outcome.model_cid == event.model_cid
    assert outcome.report_digest == event.report_digest == record.report_digest
    assert Result(*outcome.result_tuple()).hash() == record.result_hash
    return outcome
