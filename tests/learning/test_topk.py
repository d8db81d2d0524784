"""Top-k updates with error feedback: indices and fixed-point values that decode exactly to one
dense integer vector, malformed files refused with one-line errors, the residual carrying what
was not sent, the codec named in the manifest, and the committee's bytes the same everywhere."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch
from support.tools import codec_rules_child, run_with_threads

from flchain.config import TaskConfig, TrainingConfig, config_from_dict
from flchain.errors import ConfigError, UpdateFormatError
from flchain.learning.aggregation import CenteredClip, ClientUpdate, FedAvg
from flchain.learning.codec import (
    INDICES,
    VALUES,
    DtypeMismatch,
    DuplicateIndex,
    IndexOutOfRange,
    MagnitudeBoundExceeded,
    NonCanonicalEncoding,
    NonFiniteValue,
    ShapeMismatch,
    Update,
    decode_update,
    encode_update,
    flat_layout,
    quantize,
    sparsify,
    top_k,
)
from flchain.learning.data import federate, load_digits
from flchain.learning.models import CodecParams, ModelSpec, build_model
from flchain.learning.simulation import SimConfig, run_federation
from flchain.learning.training import TrainConfig
from flchain.protocol.manifest import TaskManifest
from flchain.protocol.task import initial_model_and_manifest


def _topk(spec: ModelSpec, fraction: float) -> ModelSpec:
    codec = dataclasses.replace(spec.codec, encoding="topk", topk_fraction=fraction)
    return dataclasses.replace(spec, codec=codec)


def _random(spec: ModelSpec, seed: int, scale: float = 0.3) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {t.name: torch.randn(t.shape, generator=gen) * scale for t in spec.tensors}


def _flat(delta: dict[str, torch.Tensor], spec: ModelSpec) -> np.ndarray:
    return np.concatenate([delta[n].double().numpy().reshape(-1) for n, *_ in flat_layout(spec)])


def _parts(blob: bytes) -> tuple[bytes, np.ndarray, np.ndarray, int, int]:
    """A top-k file's header and its indices and values (copies), with their item offsets."""
    end = 8 + int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:end])
    body = np.frombuffer(blob, dtype="<i4", offset=end)
    (ia, ib), (va, vb) = (header[n]["data_offsets"] for n in (INDICES, VALUES))
    return blob[:end], body[ia // 4 : ib // 4].copy(), body[va // 4 : vb // 4].copy(), ia, va


def _rebuilt(blob: bytes, indices: np.ndarray, values: np.ndarray) -> bytes:
    header, _, _, ia, va = _parts(blob)
    body = np.frombuffer(blob, dtype="<i4", offset=len(header)).copy()
    body[ia // 4 : ia // 4 + indices.size] = indices
    body[va // 4 : va // 4 + values.size] = values
    return header + body.tobytes()


def test_topk_sends_the_k_largest_and_decodes_to_exactly_them(spec: ModelSpec) -> None:
    sparse = _topk(spec, 0.25)
    k = sparse.codec.topk(spec.num_params)
    assert k == -(-spec.num_params // 4)
    for seed in range(10):
        delta = _random(spec, seed)
        full = quantize(delta, spec).q.astype(np.int64)
        blob = encode_update(delta, sparse)
        update = decode_update(blob, sparse)
        assert encode_update(update, sparse) == blob  # one digest <-> one update
        kept = np.flatnonzero(update.q)
        assert kept.size == k
        # exactly the k largest magnitudes, at full int32 resolution, zero elsewhere
        assert np.array_equal(update.q[kept], full[kept])
        assert np.abs(full[kept]).min() >= np.delete(np.abs(full), kept).max()
        _, indices, values, _, _ = _parts(blob)
        assert np.array_equal(indices, kept) and np.array_equal(values, full[kept])
    # the body is k indices and k values, whatever the model's size
    assert len(blob) - len(_parts(blob)[0]) == 8 * k


def test_ties_go_to_the_lower_index_and_short_updates_pad_with_zeros(spec: ModelSpec) -> None:
    assert top_k(np.array([3, -5, 5, 0, 5, 1]), 3).tolist() == [1, 2, 4]
    assert top_k(np.array([3, -5, 5, 0, 5, 1]), 2).tolist() == [1, 2]
    sparse = _topk(spec, 0.25)
    delta = {k: torch.zeros_like(v) for k, v in _random(spec, 0).items()}
    delta["w"][2, 3] = 0.5
    blob = encode_update(delta, sparse)
    _, indices, values, _, _ = _parts(blob)
    where = next(a for n, _, a, _ in flat_layout(spec) if n == "w") + 11
    # the nonzero coordinate, then zeros at the lowest free indices: the only canonical padding
    padding = [i for i in range(spec.num_params) if i != where][: indices.size - 1]
    assert indices.tolist() == sorted([where, *padding])
    assert np.count_nonzero(values) == 1
    assert encode_update(decode_update(blob, sparse), sparse) == blob


def test_malformed_topk_files_are_refused_with_one_line_errors(spec: ModelSpec) -> None:
    sparse = _topk(spec, 0.25)
    blob = encode_update(_random(spec, 1), sparse)
    _, indices, values, _, _ = _parts(blob)
    n = spec.num_params
    cases: list[tuple[np.ndarray, np.ndarray, type[UpdateFormatError], str]] = []
    out = indices.copy()
    out[-1] = n
    cases.append((out, values, IndexOutOfRange, f"index {n} is outside 0..{n - 1}"))
    negative = indices.copy()
    negative[0] = -1
    cases.append((negative, values, IndexOutOfRange, "index -1"))
    twice = indices.copy()
    twice[1] = twice[0]
    cases.append((twice, values, DuplicateIndex, f"index {twice[0]} appears twice"))
    cases.append((indices[::-1].copy(), values[::-1].copy(), NonCanonicalEncoding, "ascending"))
    # a small coordinate sent in place of a larger one: not the top-k of what it decodes to...
    zero = values.copy()
    zero[0] = 0  # ...and a zero value that is not padding at the lowest free index
    cases.append((indices, zero, NonCanonicalEncoding, "pad at the lowest free indices"))
    huge = values.copy()
    huge[0] = sparse.codec.bound_q + 1
    cases.append((indices, huge, MagnitudeBoundExceeded, "bound is"))
    for idx, val, error, message in cases:
        with pytest.raises(error, match=message) as caught:
            decode_update(_rebuilt(blob, idx, val), sparse)
        assert "\n" not in str(caught.value)
    # wrong shapes, float values (which could hold NaN), a dense file: refused before reading
    other = encode_update(_random(spec, 1), _topk(spec, 0.5))
    with pytest.raises(ShapeMismatch, match=r"'\.indices' has shape"):
        decode_update(other, sparse)
    import safetensors.numpy

    header_meta = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])["__metadata__"]
    nan = safetensors.numpy.save(
        {INDICES: indices, VALUES: np.full(indices.size, np.nan, np.float32)},
        metadata=header_meta,
    )
    with pytest.raises(DtypeMismatch, match=r"'\.values' has dtype F32, need I32"):
        decode_update(nan, sparse)
    with pytest.raises(UpdateFormatError, match=r"missing|not in the model spec"):
        decode_update(encode_update(_random(spec, 1), spec), sparse)
    with pytest.raises(NonFiniteValue):
        sparsify({**_random(spec, 1), "b": torch.full((3,), float("nan"))}, None, sparse)


def test_error_feedback_sends_everything_eventually_and_feeds_back_clipping(
    spec: ModelSpec,
) -> None:
    sparse = _topk(spec, 0.1)
    residual: np.ndarray | None = None
    sent_total = np.zeros(spec.num_params)
    delta_total = np.zeros(spec.num_params)
    scale = 2.0**-spec.codec.frac_bits
    for seed in range(30):
        delta = _random(spec, seed, scale=0.01)
        update, residual = sparsify(delta, residual, sparse)
        assert np.count_nonzero(update.q) <= sparse.codec.topk(spec.num_params)
        sent_total += update.q.astype(np.float64) * scale
        delta_total += _flat(delta, spec)
        # what was sent plus what is held back is everything trained so far
        np.testing.assert_allclose(sent_total + residual, delta_total, rtol=0, atol=1e-12)
    # held back, not lost: the residual stays small next to what was sent
    assert residual is not None and np.abs(residual).max() < np.abs(sent_total).max()
    # with no residual, sparsify is what quantize sends
    delta = _random(spec, 99)
    assert np.array_equal(sparsify(delta, None, sparse)[0].q, quantize(delta, sparse).q)
    # beyond the magnitude bound: the bound is sent and the excess waits in the residual
    big = _random(spec, 7, scale=0.0)
    big["w"][0, 0] = spec.codec.bound * 1.5
    update, residual = sparsify(big, None, sparse)
    assert int(np.abs(update.q).max()) == spec.codec.bound_q
    assert residual.max() == pytest.approx(spec.codec.bound * 0.5)
    with pytest.raises(MagnitudeBoundExceeded):
        quantize(big, sparse)  # without feedback there is nowhere to keep it: refused
    with pytest.raises(ShapeMismatch, match="residual"):
        sparsify(delta, np.zeros(3), sparse)


def test_the_task_config_names_topk_and_its_fraction_in_the_manifest() -> None:
    raw = {"data": {"dataset": "digits"}, "training": {"codec": "topk", "topk_fraction": 0.01}}
    _, manifest = initial_model_and_manifest(config_from_dict(raw))
    assert manifest.spec.codec == CodecParams(encoding="topk", topk_fraction=0.01)
    assert TaskManifest.from_bytes(manifest.to_bytes()).spec.codec.topk_fraction == 0.01
    lying = TaskManifest(manifest.config, _topk(manifest.spec, 0.1))
    with pytest.raises(ConfigError, match=r"training\.topk_fraction is 0\.01 but"):
        TaskManifest.from_bytes(lying.to_bytes())
    # int32 tasks keep their exact manifest and spec bytes (and digests)
    _, plain = initial_model_and_manifest(config_from_dict({"data": {"dataset": "digits"}}))
    assert b"topk" not in plain.to_bytes()
    refused = {
        "training.topk_fraction must be in \\(0, 1\\]": {"codec": "topk"},
        "must be in \\(0, 1\\] with codec": {"codec": "topk", "topk_fraction": 1.5},
        "topk_fraction is set, but training.codec is 'int8'": {
            "codec": "int8",
            "topk_fraction": 0.1,
        },
        'scaffold" cannot be combined with codec "topk"': {
            "codec": "topk",
            "topk_fraction": 0.1,
            "algorithm": "scaffold",
        },
    }
    for message, training in refused.items():
        with pytest.raises(ConfigError, match=message):
            config_from_dict({"training": training})
    with pytest.raises(ConfigError, match=r"topk_fraction must be in \(0, 1\] for topk"):
        CodecParams(encoding="topk")


def test_honest_topk_updates_pass_centered_clip_screens() -> None:
    """A sparse update decodes to a dense integer vector, zero off its k coordinates. What the
    screens see: honest top-k updates keep their largest coordinates (aligned with the
    aggregate: the direction screen), all have about the same length (norm screen), and no
    two share most of their support (near-copy and too-central screens): all accepted."""
    torch.set_num_threads(1)
    fed = federate(load_digits(), 8, "iid", seed=0)
    model = build_model("logreg", fed.test, seed=0)
    config = TaskConfig(training=TrainingConfig(codec="topk", topk_fraction=0.1)).validate()
    spec = ModelSpec.from_model(model, "logreg", CodecParams("topk", topk_fraction=0.1))
    assert config.training.topk_fraction == spec.codec.topk_fraction
    train = TrainConfig(epochs=1, batch_size=10, lr=0.05)
    result = run_federation(model, spec, fed, CenteredClip(), SimConfig(4, train))
    for stats in result.rounds:
        assert [d.accepted for d in stats.decisions] == [True] * 8, stats.decisions
    assert result.accuracies[-1] > result.accuracies[0]


def test_aggregating_topk_updates_is_the_integer_rule_on_their_dense_values(
    spec: ModelSpec,
) -> None:
    sparse = _topk(spec, 0.3)
    ups = [
        ClientUpdate(f"p{i}", decode_update(encode_update(_random(spec, i), sparse), sparse), i + 1)
        for i in range(5)
    ]
    dense = [ClientUpdate(u.participant, Update(spec, u.update.q), u.num_samples) for u in ups]
    assert (
        FedAvg().aggregate(ups).update.q.tobytes() == FedAvg().aggregate(dense).update.q.tobytes()
    )


_CHILD = codec_rules_child('[CodecParams("topk", 20, 64.0, f) for f in (0.01, 0.1)]')


def test_same_bytes_in_separate_processes_with_1_and_2_threads() -> None:
    digests = [run_with_threads(_CHILD, threads).strip() for threads in (1, 2)]
    assert len(digests[0]) == 64 and digests[0] == digests[1]
    assert hashlib.sha256(b"").hexdigest() not in digests
