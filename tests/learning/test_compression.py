"""Compressed updates (int16 / int8 with per-tensor power-of-two scales): one canonical
encoding per update, exact integer aggregation at the common fixed-point scale."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch
from support.tools import codec_rules_child, run_with_threads

from flchain.config import config_from_dict
from flchain.errors import ConfigError, UpdateFormatError
from flchain.learning.aggregation import ClientUpdate, FedAvg
from flchain.learning.codec import (
    EXPONENTS,
    MagnitudeBoundExceeded,
    NonCanonicalEncoding,
    Update,
    decode_update,
    encode_update,
    quantize,
)
from flchain.learning.models import CodecParams, ModelSpec
from flchain.protocol.manifest import TaskManifest
from flchain.protocol.task import initial_model_and_manifest


def _spec(spec: ModelSpec, encoding: str) -> ModelSpec:
    return dataclasses.replace(spec, codec=dataclasses.replace(spec.codec, encoding=encoding))  # type: ignore[arg-type]


def _delta(spec: ModelSpec, seed: int, scale: float = 0.3) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {t.name: torch.randn(t.shape, generator=gen) * scale for t in spec.tensors}


@pytest.mark.parametrize(("encoding", "bits"), [("int8", 8), ("int16", 16)])
def test_decode_then_encode_is_byte_identical_and_error_is_one_code_step(
    spec: ModelSpec, encoding: str, bits: int
) -> None:
    small = _spec(spec, encoding)
    for seed in range(20):
        delta = _delta(small, seed, scale=10.0 ** (seed % 5 - 4))
        delta["b"] = torch.zeros(3)  # an all-zero tensor: exponent 0
        blob = encode_update(delta, small)
        update = decode_update(blob, small)
        assert encode_update(update, small) == blob
        assert encode_update(quantize(delta, small), small) == blob
        back = update.to_tensors()
        cmax = 2 ** (bits - 1) - 1
        for name, x in delta.items():
            top = float(x.abs().max())
            # one code step is at most 2·top/cmax (power-of-two scale), rounding is half of it
            step = max(2 * top / cmax, 2.0**-small.codec.frac_bits)
            assert float((back[name] - x).abs().max()) <= step / 2 + 1e-12, (seed, name)
        assert not back["b"].any()


def _body(blob: bytes) -> int:
    return len(blob) - 8 - int.from_bytes(blob[:8], "little")


def test_body_is_one_code_per_parameter_plus_one_exponent_per_tensor(spec: ModelSpec) -> None:
    delta = _delta(spec, 1)
    assert _body(encode_update(delta, spec)) == 4 * spec.num_params
    for encoding, size in (("int16", 2), ("int8", 1)):
        blob = encode_update(delta, _spec(spec, encoding))
        assert _body(blob) == size * (spec.num_params + len(spec.tensors))


def _tamper(blob: bytes, spec: ModelSpec, index: int, value: int) -> bytes:
    """``blob`` with body item ``index`` (in items of the update dtype) set to ``value``."""
    dtype = np.int8 if spec.codec.encoding == "int8" else np.int16
    header = 8 + int.from_bytes(blob[:8], "little")
    body = np.frombuffer(blob, dtype=dtype, offset=header).copy()
    body[index] = value
    return blob[:header] + body.tobytes()


def _exponent_index(blob: bytes, spec: ModelSpec, tensor: int) -> int:
    import json

    header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
    return int(header[EXPONENTS]["data_offsets"][0]) + tensor  # int8: bytes are items


def test_non_canonical_compressed_files_are_refused(spec: ModelSpec) -> None:
    small = _spec(spec, "int8")
    delta = _delta(small, 3)
    delta["b"] = torch.zeros(3)
    blob = encode_update(delta, small)
    ok = decode_update(blob, small)
    e_at = _exponent_index(blob, small, 1)  # exponents follow the name order: a.weight, b, w
    # zero codes under exponent 3 decode to the same zeros as under 0: only 0 is canonical
    with pytest.raises(NonCanonicalEncoding, match="'b' has scale exponent 3, but its codes fit"):
        decode_update(_tamper(blob, small, e_at, 3), small)
    with pytest.raises(NonCanonicalEncoding, match=r"not in 0\.\.30"):
        decode_update(_tamper(blob, small, e_at, -1), small)
    first_code = len(small.tensors)  # ".exponents" sorts before every parameter name
    assert _exponent_index(blob, small, 0) == 0
    with pytest.raises(NonCanonicalEncoding, match="magnitude 128"):
        decode_update(_tamper(blob, small, first_code, -128), small)
    # an int32 file is not an int8 update, and the reverse
    with pytest.raises(UpdateFormatError, match=r"dtype|missing|not in the model spec"):
        decode_update(encode_update(ok.to_tensors(), spec), small)
    with pytest.raises(UpdateFormatError, match=r"dtype|missing|not in the model spec"):
        decode_update(blob, spec)


def test_values_not_on_the_grid_cannot_be_encoded_and_the_bound_holds(spec: ModelSpec) -> None:
    small = _spec(spec, "int8")
    q = quantize(_delta(spec, 4), spec).q.copy()  # full int32 resolution
    q[0] |= 1  # odd, but the tensor's scale is well above 2^0
    with pytest.raises(NonCanonicalEncoding, match="not representable in int8"):
        encode_update(Update(small, q), small)
    huge = _delta(small, 5)
    huge["w"][0, 0] = small.codec.bound * 1.5
    with pytest.raises(MagnitudeBoundExceeded):
        encode_update(huge, small)


def test_aggregation_of_compressed_updates_is_the_integer_rule_on_their_values(
    spec: ModelSpec,
) -> None:
    small = _spec(spec, "int8")
    ups8 = [
        ClientUpdate(f"p{i}", decode_update(encode_update(_delta(small, i), small), small), 3 + i)
        for i in range(5)
    ]
    # the same fixed-point integers sent as int32 updates aggregate to the same bytes
    ups32 = [ClientUpdate(u.participant, Update(spec, u.update.q), u.num_samples) for u in ups8]
    a, b = FedAvg().aggregate(ups8), FedAvg().aggregate(ups32)
    assert a.update.q.tobytes() == b.update.q.tobytes()
    assert a.update.q.dtype == np.int32


def test_task_config_names_the_codec_in_the_manifest() -> None:
    raw = {"data": {"dataset": "digits"}, "training": {"codec": "int8"}}
    _, manifest = initial_model_and_manifest(config_from_dict(raw))
    assert manifest.spec.codec == CodecParams(encoding="int8")
    assert TaskManifest.from_bytes(manifest.to_bytes()).spec.codec.encoding == "int8"
    with pytest.raises(ConfigError, match=r"training\.codec must be one of int32, int16, int8"):
        config_from_dict({"training": {"codec": "int4"}})
    lying = TaskManifest(manifest.config, _spec(manifest.spec, "int16"))
    with pytest.raises(ConfigError, match=r"training\.codec is 'int8'"):
        TaskManifest.from_bytes(lying.to_bytes())


_CHILD = codec_rules_child('[CodecParams(e, 20, 64.0) for e in ("int8", "int16")]')


def test_same_bytes_in_separate_processes_with_1_and_2_threads() -> None:
    digests = [run_with_threads(_CHILD, threads).strip() for threads in (1, 2)]
    assert len(digests[0]) == 64 and digests[0] == digests[1]
    assert hashlib.sha256(b"").hexdigest() not in digests
