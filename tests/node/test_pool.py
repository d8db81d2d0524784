"""The training pool's workers send each update encoded with the task's codec, with its
digest and CID: the very bytes the node's step would have encoded from its own training."""

from __future__ import annotations

import pytest
import torch
from flchain_node.factory import shard_trainer
from flchain_node.participant import Encoded
from flchain_node.pool import TrainingPool, same_state
from support.fedkit import DEMO, small_federation

from flchain.errors import ConfigError
from flchain.learning.codec import decode_model, encode_update, update_digest
from flchain.learning.models import ModelSpec, TensorSpec
from flchain.storage import cid_for


def test_a_worker_sends_the_bytes_and_digest_the_step_would_make() -> None:
    with small_federation() as fed:
        spec = fed.manifest.spec
        model = fed.store.get(fed.nodes[0].view.global_model_cid(0))
        trainers = {
            i: shard_trainer(fed.config, i, DEMO.participants, data=fed.fed)
            for i in range(DEMO.participants)
        }
        pool = TrainingPool(trainers, spec, 1)
        try:
            pool.prefetch(0, model)
            global_state = decode_model(model, spec)
            for i, trainer in trainers.items():
                pooled = pool.take(i, 0, global_state)
                assert pooled is not None and isinstance(pooled.update, Encoded)
                in_step = trainer.produce(global_state, 0, None)  # what the step trains
                assert isinstance(in_step.update, dict)
                data = encode_update(in_step.update, spec)
                assert pooled.update.data == data
                assert pooled.update.digest == update_digest(data)
                assert pooled.update.cid == cid_for(data)  # named as the store names it
                assert pooled.num_samples == in_step.num_samples
        finally:
            pool.close()


def test_a_job_trained_from_another_model_is_not_taken() -> None:
    """A step whose global model differs from the one a job trained from (by one bit, or a
    0.0 that is -0.0) trains itself: take gives None."""
    with small_federation() as fed:
        spec = fed.manifest.spec
        model = fed.store.get(fed.nodes[0].view.global_model_cid(0))
        trainers = {
            i: shard_trainer(fed.config, i, DEMO.participants, data=fed.fed) for i in (0, 1)
        }
        pool = TrainingPool(trainers, spec, 1)
        try:
            pool.prefetch(0, model)
            other = decode_model(model, spec)
            name = next(iter(other))
            flat = other[name].view(-1)
            flat[0] = torch.nextafter(flat[0], torch.tensor(float("inf")))
            assert pool.take(0, 0, other) is None
            zeroed = decode_model(model, spec)
            zeroed[name].view(-1)[0] = 0.0
            signed = decode_model(model, spec)
            signed[name].view(-1)[0] = -0.0
            assert same_state(zeroed, zeroed) and not same_state(zeroed, signed)
            assert pool.take(1, 0, decode_model(model, spec)) is not None  # the same model
        finally:
            pool.close()


def test_same_state_compares_scalars_and_other_widths_bit_for_bit() -> None:
    for t in (torch.tensor(1.5, dtype=torch.float64), torch.tensor(2.0), torch.ones(3).half()):
        assert same_state({"a": t}, {"a": t.clone()})
        assert not same_state({"a": t}, {"a": -t})
    assert not same_state({"a": torch.zeros(2)}, {"a": torch.zeros(2, dtype=torch.float64)})


def test_a_pool_refuses_a_caller_with_more_than_one_torch_thread() -> None:
    """Workers forked from a process that has run torch's OpenMP threads hang in their first
    parallel kernel (a federation built with torch's default thread count did, in round 0): the
    pool refuses before it forks, naming the way out."""
    spec = ModelSpec("toy", (TensorSpec("w", (4,)),))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.ones(1 << 16).add_(1)  # the parallel work that leaves OpenMP's threads behind
        with pytest.raises(ConfigError, match=r"torch\.set_num_threads\(1\)"):
            TrainingPool({}, spec, 1)
    finally:
        torch.set_num_threads(before)
