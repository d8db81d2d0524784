"""Honest participants' local training in worker processes, ahead of their steps.

In the one-process federation every participant trains inside its own step, one after the
other, while the chain (py-evm, single-threaded) waits; on a machine with cores to spare the
others sit idle. A :class:`TrainingPool` starts each round's training for every pooled
participant at once in worker processes (as Flower's simulation spreads its clients over
cores), so it runs while the main process sends the other participants' transactions; a
node's step then takes its finished update instead of training. The worker also encodes the
update with the task's codec, digests it and names it as the node's store will (its CID: the
step then does no codec or hashing work; the store's writer checks the name as it writes),
except under top-k, whose selection needs the residual the node keeps.

The work is the same: a worker runs the participant's own :class:`LocalTrainer` (a copy made
by ``fork``, with its shard, model and seed) on the same global model bytes, with one torch
thread as the caller trains, so the update is bit for bit the one the step would have trained. The
caller must train with one torch thread: GNU OpenMP, under torch's intra-op threads, does not
survive a fork once the parent has used it (a worker's first parallel kernel waits forever on
a barrier of threads it does not have), so a pool refuses a caller with more. Only
trainers whose update is a pure function of the global model and the round are pooled: plain
:class:`LocalTrainer` (no attack), no differential privacy (its accountant lives in the node),
no buffers carried between rounds (BatchNorm statistics) and no SCAFFOLD (control variates).
A node whose job is missing or was made from another global model trains in its step as before.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np
import torch

from flchain.errors import ConfigError
from flchain.learning.codec import decode_model, encode_update, update_digest
from flchain.learning.models import ModelSpec
from flchain.learning.scaffold import Controls
from flchain.storage import unixfs
from flchain_node.participant import Encoded, Produced
from flchain_node.trainer import LocalTrainer

#: What a worker sends back for one participant: its update encoded with the task's codec
#: (bytes, digest, CID) or, under top-k (whose error feedback the node keeps), the float delta as
#: numpy arrays, which pickle as plain bytes (torch registers reductions that would move every
#: tensor through a shared-memory file and pass its descriptor over a socket instead); and
#: the number of samples.
Sent = tuple[Encoded | dict[str, np.ndarray], int]

# Set in the parent just before the workers fork: each worker holds a copy.
_TRAINERS: dict[int, LocalTrainer] = {}
_SPEC: list[ModelSpec] = []
_CID_VERSION: list[int] = []


def poolable(source: object) -> bool:
    """Whether ``source``'s update is a pure function of the global model and the round."""
    return (
        type(source) is LocalTrainer
        and source.privacy is None
        and not any(True for _ in source.model.buffers())
    )


def same_state(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """Whether two model states have the same names and the same values bit for bit (a
    comparison of the raw words: 0.0 and -0.0 differ, as they would in training)."""
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype
        and a[k].shape == b[k].shape
        and torch.equal(_words(a[k]), _words(b[k]))
        for k in a
    )


def _words(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().contiguous().reshape(-1)  # flat: a 0-d tensor cannot change element size
    return t.view(torch.int32) if t.element_size() == 4 else t.view(torch.uint8)


def _init_worker() -> None:
    torch.set_num_threads(1)


def encodes(spec: ModelSpec) -> bool:
    """Whether a worker encodes the updates it trains with ``spec``'s codec (all but top-k,
    whose selection adds the residual the node keeps between rounds)."""
    return spec.codec.encoding != "topk"


def _train(indices: list[int], round_id: int, model: bytes) -> list[Sent]:
    spec = _SPEC[0]
    global_state = decode_model(model, spec)
    sent: list[Sent] = []
    for i in indices:
        produced = _TRAINERS[i].produce(global_state, round_id, None)
        delta = produced.update
        assert isinstance(delta, dict)  # a float delta: no control variates were passed
        if encodes(spec):  # the bytes the node's step would encode, on this core instead
            data = encode_update(delta, spec)
            named = Encoded(data, update_digest(data), unixfs.cid_for(data, _CID_VERSION[0]))
            sent.append((named, produced.num_samples))
        else:
            sent.append(({k: v.detach().numpy() for k, v in delta.items()}, produced.num_samples))
    return sent


class TrainingPool:
    """Worker processes that train ``trainers`` (by participant index) ahead of their steps;
    the updates are named as a store of ``cid_version`` names content."""

    def __init__(
        self,
        trainers: Mapping[int, LocalTrainer],
        spec: ModelSpec,
        workers: int,
        cid_version: int = 0,
    ) -> None:
        threads = torch.get_num_threads()
        if threads != 1:
            raise ConfigError(
                f"training workers need one torch thread, not {threads}: they are forked and "
                "torch's OpenMP threads do not survive a fork (a worker would hang); call "
                "torch.set_num_threads(1) (flchain demo --threads 1) or train without workers"
            )
        _TRAINERS.clear()
        _TRAINERS.update(trainers)
        _SPEC[:] = [spec]
        _CID_VERSION[:] = [cid_version]
        self.spec, self.indices = spec, sorted(trainers)
        self.workers = workers
        # fork: the workers start with the parent's data and models, nothing to rebuild.
        # Not multiprocessing.Pool: its worker-handler thread also waits on the result pipe,
        # so while a finished job's bytes sit unread it spins (0.2 s of CPU a 100-participant
        # round, taking the GIL from the steps).
        context = multiprocessing.get_context("fork")
        self._pool = ProcessPoolExecutor(workers, context, initializer=_init_worker)
        # The executor forks its workers at the first submit: do it now, while the caller
        # knows nothing is in flight (see Federation), not in the middle of a round.
        self._pool.submit(_init_worker).result()
        self._jobs: dict[
            tuple[int, int], tuple[dict[str, torch.Tensor], Future[list[Sent]], int]
        ] = {}
        self._rounds: set[int] = set()
        #: Updates handed to a step (trained by a worker rather than in the step).
        self.served = 0

    def prefetch(self, round_id: int, model: bytes) -> None:
        """Start training round ``round_id`` from the global model ``model`` (its encoded
        bytes) for every pooled participant; once per round."""
        if round_id in self._rounds:
            return
        self._rounds.add(round_id)
        trained_from = decode_model(model, self.spec)
        # Small jobs in step order: the first nodes' updates are ready first, and the
        # model bytes are sent once per job rather than once per participant.
        size = max(1, len(self.indices) // (4 * self.workers))
        for start in range(0, len(self.indices), size):
            chunk = self.indices[start : start + size]
            job = self._pool.submit(_train, chunk, round_id, model)
            for position, index in enumerate(chunk):
                self._jobs[(index, round_id)] = (trained_from, job, position)

    def take(
        self, index: int, round_id: int, global_state: Mapping[str, torch.Tensor]
    ) -> Produced | None:
        """Participant ``index``'s update for ``round_id`` if a worker trained it from
        ``global_state``; ``None`` otherwise (the caller trains)."""
        job = self._jobs.pop((index, round_id), None)
        if job is None:
            return None
        trained_from, result, position = job
        if not same_state(trained_from, global_state):
            return None
        update, num_samples = result.result()[position]
        self.served += 1
        if isinstance(update, Encoded):
            return Produced(update, num_samples)
        return Produced({k: torch.from_numpy(v) for k, v in update.items()}, num_samples)

    def close(self) -> None:
        self._jobs.clear()
        self._pool.shutdown(cancel_futures=True)


class PooledTrainer:
    """A participant's :class:`LocalTrainer` whose update may already be trained by a pool."""

    def __init__(self, trainer: LocalTrainer, pool: TrainingPool, index: int) -> None:
        self.trainer, self.pool, self.index = trainer, pool, index

    def produce(
        self, global_state: dict[str, torch.Tensor], round_id: int, controls: Controls | None
    ) -> Produced:
        found = None if controls else self.pool.take(self.index, round_id, global_state)
        return found or self.trainer.produce(global_state, round_id, controls)
