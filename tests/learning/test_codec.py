from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import safetensors.numpy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flchain.errors import UpdateFormatError
from flchain.learning import codec
from flchain.learning.models import CodecParams, ModelSpec, TensorSpec


def random_delta(spec: ModelSpec, seed: int, scale: float = 0.5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {t.name: torch.randn(t.shape, generator=g) * scale for t in spec.tensors}


def test_roundtrip_is_canonical_and_close(spec: ModelSpec) -> None:
    delta = random_delta(spec, 1)
    data = codec.encode_update(delta, spec)
    upd = codec.decode_update(data, spec)
    assert codec.encode_update(upd, spec) == data
    back = upd.to_tensors()
    assert list(back) == [t.name for t in spec.tensors]
    for name, t in delta.items():
        assert torch.allclose(back[name], t, atol=2.0**-17)
    assert len(codec.update_digest(data)) == 32


def test_bytes_are_plain_safetensors_bound_to_the_spec(spec: ModelSpec) -> None:
    data = codec.encode_update(random_delta(spec, 2), spec)
    tensors = safetensors.numpy.load(data)
    assert {k: v.dtype for k, v in tensors.items()} == {t.name: np.int32 for t in spec.tensors}
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    assert header["__metadata__"] == {"flchain": "update:" + spec.digest().hex()}


def test_float32_encoding_quantizes_on_decode(spec: ModelSpec) -> None:
    fspec = dataclasses.replace(spec, codec=CodecParams("float32", 16, 8.0))
    delta = random_delta(fspec, 3)
    data = codec.encode_update(delta, fspec)
    assert safetensors.numpy.load(data)["w"].dtype == np.float32
    upd = codec.decode_update(data, fspec)
    assert np.array_equal(upd.q, codec.quantize(delta, fspec).q)
    assert codec.encode_update(upd, fspec) == data
    raw = {t.name: np.full(t.shape, 0.1, np.float32) for t in fspec.tensors}  # not k·2^-16
    with pytest.raises(codec.NonCanonicalEncoding, match="multiples"):
        codec.decode_update(_st(raw, fspec), fspec)
    raw = {t.name: np.full(t.shape, -0.0, np.float32) for t in fspec.tensors}
    with pytest.raises(codec.NonCanonicalEncoding):
        codec.decode_update(_st(raw, fspec), fspec)


def _st(tensors: dict[str, np.ndarray], spec: ModelSpec, **meta: str) -> bytes:
    metadata = {"flchain": "update:" + spec.digest().hex(), **meta}
    return safetensors.numpy.save(tensors, metadata=metadata)


def _ints(spec: ModelSpec) -> dict[str, np.ndarray]:
    return {t.name: np.ones(t.shape, np.int32) for t in spec.tensors}


def test_rejects_each_kind_of_bad_input(spec: ModelSpec) -> None:
    good = codec.encode_update(random_delta(spec, 4), spec)
    cases: list[tuple[object, type[UpdateFormatError], str]] = [
        (b"", codec.MalformedEncoding, "cannot hold"),
        (b"\xff" * 40, codec.MalformedEncoding, "runs past"),
        (b"\x04\0\0\0\0\0\0\0nope", codec.MalformedEncoding, "JSON"),
        (good[:-4], codec.TruncatedEncoding, "needs"),
        (good + b"\0", codec.SizeBoundExceeded, "exceed"),
        ("text", codec.MalformedEncoding, "bytes"),
    ]
    t = _ints(spec)
    del t["b"]
    cases.append((_st(t, spec), codec.MissingTensor, "'b'"))
    cases.append(
        (_st({**_ints(spec), "z": np.ones(1, np.int32)}, spec), codec.UnexpectedTensor, "'z'")
    )
    cases.append(
        (_st({**_ints(spec), "b": np.ones(4, np.int32)}, spec), codec.ShapeMismatch, "'b'")
    )
    cases.append(
        (_st({**_ints(spec), "w": np.ones((3, 4), np.float32)}, spec), codec.DtypeMismatch, "'w'")
    )
    cases.append((_st(_ints(spec), spec, extra="x"), codec.SizeBoundExceeded, "exceed"))
    meta = {"flchain": "update:" + bytes(32).hex()}  # same length, another spec
    cases.append(
        (safetensors.numpy.save(_ints(spec), metadata=meta), codec.NonCanonicalEncoding, "metadata")
    )
    other = dataclasses.replace(spec, architecture="other")
    cases.append(
        (codec.encode_update(random_delta(other, 4), other), codec.NonCanonicalEncoding, "metadata")
    )
    big = _ints(spec)
    big["w"][1, 2] = spec.codec.bound_q + 1
    cases.append((_st(big, spec), codec.MagnitudeBoundExceeded, "'w'"))
    for data, err, words in cases:
        with pytest.raises(err, match=words):
            codec.decode_update(data, spec)  # type: ignore[arg-type]


def test_float_encoding_rejects_nan_inf_and_bound(spec: ModelSpec) -> None:
    fspec = dataclasses.replace(spec, codec=CodecParams("float32", 16, 8.0))
    for bad, err in [
        (np.nan, codec.NonFiniteValue),
        (np.inf, codec.NonFiniteValue),
        (9.0, codec.MagnitudeBoundExceeded),
    ]:
        t = {x.name: np.zeros(x.shape, np.float32) for x in fspec.tensors}
        t["b"][2] = bad
        with pytest.raises(err, match="'b'"):
            codec.decode_update(_st(t, fspec), fspec)
        with pytest.raises(err, match="'b'"):
            codec.encode_update({k: torch.from_numpy(v) for k, v in t.items()}, fspec)


def test_encode_checks_names_and_shapes(spec: ModelSpec) -> None:
    delta = random_delta(spec, 5)
    with pytest.raises(codec.MissingTensor):
        codec.encode_update({k: v for k, v in delta.items() if k != "w"}, spec)
    with pytest.raises(codec.ShapeMismatch):
        codec.encode_update({**delta, "b": torch.zeros(5)}, spec)


def test_model_roundtrip_and_apply(spec: ModelSpec) -> None:
    state = random_delta(spec, 6, scale=100.0)  # models have no magnitude bound
    data = codec.encode_model(state, spec)
    back = codec.decode_model(data, spec)
    assert codec.encode_model(back, spec) == data
    assert all(torch.equal(back[k], state[k]) for k in state)
    upd = codec.quantize(random_delta(spec, 7), spec)
    new = codec.apply_update(back, upd)
    assert torch.equal(new["w"], back["w"] + upd.to_tensors()["w"])
    with pytest.raises(codec.DtypeMismatch):  # model bytes are not update bytes
        codec.decode_update(data, spec)
    fspec = dataclasses.replace(spec, codec=CodecParams("float32", 16, 8.0))
    with pytest.raises(codec.NonCanonicalEncoding, match="metadata"):  # same dtype, other kind
        codec.decode_update(codec.encode_model(state, fspec), fspec)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-(8 << 16), 8 << 16), min_size=19, max_size=19))
def test_any_in_bound_vector_roundtrips_bit_exact(values: list[int]) -> None:
    spec = ModelSpec(
        "h",
        (TensorSpec("w", (3, 4)), TensorSpec("b", (3,)), TensorSpec("a.weight", (2, 2))),
        CodecParams("fixed", 16, 8.0),
    )
    q = np.asarray(values, np.int32)
    q.flags.writeable = False
    data = codec.encode_update(codec.Update(spec, q), spec)
    assert codec.decode_update(data, spec).q.tobytes() == q.tobytes()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_header_byte_change_is_rejected(data: st.DataObject) -> None:
    spec = ModelSpec("h", (TensorSpec("w", (3, 4)),), CodecParams("fixed", 16, 8.0))
    good = codec.encode_update({"w": torch.ones(3, 4)}, spec)
    header_len = 8 + int.from_bytes(good[:8], "little")
    pos = data.draw(st.integers(0, header_len - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != good[pos]))
    bad = good[:pos] + bytes([new]) + good[pos + 1 :]
    with pytest.raises(UpdateFormatError):
        codec.decode_update(bad, spec)


def test_bound_applies_to_the_rounded_value_on_both_sides() -> None:
    spec = ModelSpec("r", (TensorSpec("w", (2,)),), CodecParams("fixed", 4, 0.3))  # bound_q 4
    with pytest.raises(codec.MagnitudeBoundExceeded):
        codec.encode_update({"w": torch.tensor([0.3, 0.0])}, spec)  # rounds to 5/16 > 4/16
    assert codec.decode_update(
        codec.encode_update({"w": torch.tensor([0.25, -0.25])}, spec), spec
    ).q.tolist() == [4, -4]


def test_is_zero_looks_past_its_sample() -> None:
    spec = ModelSpec("z", (TensorSpec("w", (5000,)),), CodecParams())
    q = np.zeros(5000, np.int32)
    assert codec.Update(spec, q).is_zero()
    q[1] = 1  # not on the sampling stride
    assert not codec.Update(spec, q).is_zero()
