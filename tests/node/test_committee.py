"""Committee recomputation is deterministic and turns a participant's bad update into a
failure in the report, never an exception."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from eth_utils import to_checksum_address
from torch import nn

from flchain.config import AggregationConfig, TaskConfig
from flchain.learning.aggregation import ClientUpdate
from flchain.learning.codec import (
    decode_model,
    decode_update,
    encode_model,
    encode_update,
    update_digest,
)
from flchain.learning.models import ModelSpec
from flchain.learning.validation import RoundValidation, ValidationSet, fixed_model
from flchain.protocol import committee
from flchain.protocol.committee import (
    Reveal,
    RoundInputs,
    RoundOutcome,
    SharedRecomputation,
    recompute_round,
)
from flchain.protocol.task import initial_model_and_manifest
from flchain.storage import LocalStore
from flchain.types import Address

TASK = Address("0x" + "77" * 20)
HONEST = [Address(to_checksum_address(f"0x{i:040x}")) for i in range(1, 5)]
BAD = {
    "missing": Address(to_checksum_address("0x" + "b1" * 20)),
    "mismatch": Address(to_checksum_address("0x" + "b2" * 20)),
    "malformed": Address(to_checksum_address("0x" + "b3" * 20)),
}


def _honest_reveals(
    model: nn.Module, spec: ModelSpec, store: LocalStore, seed: int
) -> list[Reveal]:
    """One small random update per honest participant, stored, as their reveals."""
    gen = torch.Generator().manual_seed(seed)
    reveals = []
    for i, who in enumerate(HONEST):
        delta = {
            k: 0.01 * torch.randn(v.shape, generator=gen) for k, v in model.state_dict().items()
        }
        data = encode_update(delta, spec)
        reveals.append(Reveal(who, update_digest(data), 10 + i, store.put(data)))
    return reveals


@pytest.fixture
def setup(tmp_path: Path) -> tuple[LocalStore, RoundInputs]:
    torch.set_num_threads(1)
    config = TaskConfig(aggregation=AggregationConfig(rule="median"))
    model, manifest = initial_model_and_manifest(config)
    spec = manifest.spec
    store = LocalStore(tmp_path / "store", durable=False)
    reveals = _honest_reveals(model, spec, store, seed=0)
    good = store.get(reveals[0].cid)
    elsewhere = LocalStore(tmp_path / "elsewhere", durable=False)
    missing = good[:-1] + bytes([good[-1] ^ 1])
    reveals.append(Reveal(BAD["missing"], update_digest(missing), 10, elsewhere.put(missing)))
    reveals.append(Reveal(BAD["mismatch"], hashlib.sha256(b"other").digest(), 10, reveals[1].cid))
    junk = b"not a safetensors update"
    reveals.append(Reveal(BAD["malformed"], update_digest(junk), 10, store.put(junk)))
    inputs = RoundInputs(
        task=TASK,
        round_id=0,
        spec=spec,
        aggregator=manifest.aggregator(),
        global_model_cid=store.put(encode_model(model.state_dict(), spec)),
        reward_pool=1000 * 10**18,
        previous_cumulative={HONEST[0]: 5},
        reveals=reveals,
        max_samples=100_000,
    )
    return store, inputs


def _recompute(store: LocalStore, inputs: RoundInputs, order: Sequence[int]) -> RoundOutcome:
    reveals = [inputs.reveals[i] for i in order]
    return recompute_round(RoundInputs(**{**inputs.__dict__, "reveals": reveals}), store)


def test_reveal_order_does_not_change_the_result(setup: tuple[LocalStore, RoundInputs]) -> None:
    store, inputs = setup
    n = len(inputs.reveals)
    a = _recompute(store, inputs, range(n))
    b = _recompute(store, inputs, [3, 6, 0, 5, 1, 4, 2][:n])
    assert a.model_cid == b.model_cid and a.model_digest == b.model_digest
    assert a.report.to_bytes() == b.report.to_bytes()
    assert a.report_cid == b.report_cid
    assert a.result_tuple() == b.result_tuple()
    assert a.model_cid != inputs.global_model_cid  # the honest updates moved the model


def test_members_in_one_process_compute_equal_inputs_once(
    setup: tuple[LocalStore, RoundInputs],
) -> None:
    store, inputs = setup
    shared = SharedRecomputation()
    first = shared(inputs, store)
    # another member's inputs, read from the chain on its own: equal, not the same object
    again = shared(RoundInputs(**{**inputs.__dict__, "reveals": list(inputs.reveals)}), store)
    assert again is first
    assert first.result_tuple() == recompute_round(inputs, store).result_tuple()
    # anything a member read differently is computed anew
    fewer_inputs = RoundInputs(**{**inputs.__dict__, "reveals": inputs.reveals[1:]})
    fewer = shared(fewer_inputs, store)
    assert fewer.result_tuple() == recompute_round(fewer_inputs, store).result_tuple()
    assert fewer.model_cid != first.model_cid
    poorer = shared(RoundInputs(**{**inputs.__dict__, "reward_pool": 10**18}), store)
    assert poorer is not first and poorer.model_cid == first.model_cid
    assert poorer.reward_total < first.reward_total


def test_bad_updates_are_failures_in_the_report(setup: tuple[LocalStore, RoundInputs]) -> None:
    store, inputs = setup
    outcome = recompute_round(inputs, store)
    by_who = {o.participant: o for o in outcome.report.outcomes}
    assert set(by_who) == set(HONEST) | set(BAD.values())
    reasons = {kind: by_who[who].reason for kind, who in BAD.items()}
    assert "unavailable" in reasons["missing"]
    assert "do not match the revealed digest" in reasons["mismatch"]
    assert "invalid update" in reasons["malformed"]
    for who in BAD.values():
        assert not by_who[who].accepted and by_who[who].reward == 0
        assert who not in outcome.report.cumulative
    assert all(by_who[w].accepted and by_who[w].reward > 0 for w in HONEST)
    assert outcome.reward_total == sum(o.reward for o in outcome.report.outcomes)
    assert outcome.reward_total <= inputs.reward_pool
    assert outcome.report.cumulative[HONEST[0]] == 5 + by_who[HONEST[0]].reward
    assert outcome.tree is not None and outcome.reward_root == bytes(outcome.tree.root)


@pytest.mark.parametrize(("chunk", "threads"), [(1, 1), (2, 4), (3, 2)])
def test_updates_hashed_in_chunks_and_threads_give_the_same_report(
    setup: tuple[LocalStore, RoundInputs],
    monkeypatch: pytest.MonkeyPatch,
    chunk: int,
    threads: int,
) -> None:
    """Updates are fetched a chunk at a time and their digests computed on several threads:
    the report (every reason, in order) is the same whatever the chunk and thread counts."""
    store, inputs = setup
    reference = recompute_round(inputs, store).report.to_bytes()
    monkeypatch.setattr(committee, "FETCH_CHUNK", chunk)
    monkeypatch.setattr(committee, "DIGEST_THREADS", threads)
    assert recompute_round(inputs, store).report.to_bytes() == reference


def test_a_reveal_the_round_did_not_draw_is_a_failure(
    setup: tuple[LocalStore, RoundInputs],
) -> None:
    from flchain.learning.sampling import is_sampled, sampling_seed

    store, inputs = setup
    seed = next(  # a seed that draws some honest participants and leaves others out
        s for s in (sampling_seed(TASK, 0, p) for p in range(100))
        if 0 < sum(is_sampled(0.5, s, h) for h in HONEST) < len(HONEST)
    )  # fmt: skip
    drawn = {h for h in HONEST if is_sampled(0.5, seed, h)}
    sampled = RoundInputs(**{**inputs.__dict__, "client_fraction": 0.5, "sampling_seed": seed})
    outcome = recompute_round(sampled, store)
    by = {o.participant: o for o in outcome.report.outcomes}
    for h in HONEST:
        if h in drawn:
            assert "not sampled" not in by[h].reason
        else:
            assert not by[h].accepted and by[h].reward == 0
            assert by[h].reason.endswith("not sampled for this round")


def test_the_validation_set_reaches_the_rule(tmp_path: Path) -> None:
    """With a validation set in the inputs, the report carries the rule's validation-weighted
    scores, as the rule computes them from the round's global model."""
    config = TaskConfig(aggregation=AggregationConfig(rule="centered_clip"))
    model, manifest = initial_model_and_manifest(config)
    spec = manifest.spec
    store = LocalStore(tmp_path / "store", durable=False)
    reveals = _honest_reveals(model, spec, store, seed=1)
    features = spec.tensors[0].shape[1]
    rng = np.random.default_rng(2)
    val = ValidationSet.from_arrays(rng.uniform(0, 1, (50, features)), rng.integers(0, 10, 50), 10)
    global_cid = store.put(encode_model(model.state_dict(), spec))
    inputs = RoundInputs(
        task=TASK,
        round_id=0,
        spec=spec,
        aggregator=manifest.aggregator(),
        global_model_cid=global_cid,
        reward_pool=1000 * 10**18,
        previous_cumulative={},
        reveals=reveals,
        max_samples=100_000,
        validation=val,
    )
    outcome = recompute_round(inputs, store)
    ups = [
        ClientUpdate(r.participant, decode_update(store.get(r.cid), spec), r.num_samples)
        for r in reveals
    ]
    g = fixed_model(decode_model(store.get(global_cid), spec), spec)
    want = manifest.aggregator().aggregate(ups, validation=RoundValidation(val, g))
    assert [(o.participant, o.score, o.reason) for o in outcome.report.outcomes] == [
        (d.participant, d.score, d.reason) for d in want.decisions
    ]
    assert any("validation loss" in o.reason for o in outcome.report.outcomes)
    plain = recompute_round(RoundInputs(**{**inputs.__dict__, "validation": None}), store)
    assert plain.model_digest == outcome.model_digest  # the aggregate does not depend on it
    assert plain.report_digest != outcome.report_digest
