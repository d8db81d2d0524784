"""Canonical bytes for model updates and global models (safetensors, never pickle).

For a given :class:`~flchain.learning.models.ModelSpec` there is exactly one valid encoding of
each update: the safetensors file that ``safetensors.numpy.save`` writes for the spec's tensors
(laid out by name) with metadata naming the spec digest. Its header is therefore a function of
the spec alone, so decoding checks the header and the length against the expected ones and then
reads the body without copying; anything else is diagnosed and rejected with an error naming the
problem. One digest ↔ one update: re-encoding a decoded update reproduces the input bytes.

With ``codec.encoding == "fixed"`` a coordinate ``x`` is stored as the int32 ``round(x·2^F)``
(F = ``frac_bits``), which is what the aggregators compute on, exactly.

Compressed updates (``"int16"``, ``"int8"``): each tensor ``t`` stores codes ``c`` (int16 or
int8, ``|c| <= 2^(b-1) - 1``) and one exponent ``e_t`` in the extra tensor
:data:`EXPONENTS` (same dtype, one entry per tensor in the spec's layout order). A code stands
for the fixed-point value ``q = c · 2^e_t`` at the task's common scale 2^-F. The scale is a
power of two *in fixed-point units*, so decoding is an exact left shift and every rule sees
int32 integers at one common scale, exactly as for int32 updates: the rules' integer maths
(sums in int64, medians, exact norms) need nothing new, and a mix of tensors with different
scales is just a vector of integers. The price of power-of-two rather than arbitrary scales is
under one bit of code range; what it buys is one canonical encoding per update: ``e_t`` is the
smallest exponent whose codes fit (``e_t = 0`` or ``max|c| >= 2^(b-2)``), a function of the
decoded integers alone, so decode → encode is byte-identical and two different files never
decode to the same update. The exponents live in a tensor rather than in the safetensors
metadata so the header stays a function of the spec (one byte comparison on decode).

Top-k updates (``"topk"``, Stich, Cordonnier & Jaggi, NeurIPS 2018, "Sparsified SGD with
memory"): the file holds two int32 tensors of ``k = ceil(topk_fraction · N)`` entries,
:data:`INDICES` (positions in the flat layout of :func:`flat_layout`, strictly ascending) and
:data:`VALUES` (the fixed-point values there, at the full 2^-F resolution); every other
coordinate is zero. ``k`` is a function of the spec, so the header is too and the size is
fixed. The decoded update is the dense int32 vector, so every rule computes on it exactly as on
an int32 update. Canonical: the entries are the ``k`` largest ``|q|`` (ties to the lower index,
:func:`top_k`); an update with fewer than ``k`` nonzero coordinates pads with zero values at
the lowest free indices, the only place a zero value may appear. Decoding checks ranges,
duplicates, order and that padding rule, so decode → encode is byte-identical here too. Error
feedback (what the node did not send, added to its next update before selecting) is
:func:`sparsify`'s job; the node keeps the residual.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import safetensors.numpy
import torch

from flchain import safejson
from flchain.errors import UpdateFormatError
from flchain.learning.models import COMPRESSED, ModelSpec
from flchain.types import Digest

Kind = Literal["update", "model"]
Array = np.ndarray | torch.Tensor


# --- errors: what is wrong with the bytes ----------------------------------------------------


class MalformedEncoding(UpdateFormatError):
    """The bytes are not a safetensors file (garbage, truncated header, bad JSON)."""


class SizeBoundExceeded(UpdateFormatError):
    """The bytes are longer than the spec's canonical encoding."""


class TruncatedEncoding(UpdateFormatError):
    """The header is right but the body is shorter than the spec requires."""


class MissingTensor(UpdateFormatError):
    """A tensor the spec requires is absent."""


class UnexpectedTensor(UpdateFormatError):
    """A tensor the spec does not know is present."""


class ShapeMismatch(UpdateFormatError):
    """A tensor has the wrong shape."""


class DtypeMismatch(UpdateFormatError):
    """A tensor has the wrong dtype."""


class NonFiniteValue(UpdateFormatError):
    """A tensor holds NaN or ±Inf."""


class MagnitudeBoundExceeded(UpdateFormatError):
    """A coordinate exceeds the spec's magnitude bound."""


class IndexOutOfRange(UpdateFormatError):
    """A top-k update names a coordinate the model does not have."""


class DuplicateIndex(UpdateFormatError):
    """A top-k update names one coordinate twice."""


class NonCanonicalEncoding(UpdateFormatError):
    """Tensors match the spec but the bytes differ from the canonical encoding (metadata,
    header layout, padding, a different spec digest or kind)."""


# --- layout -----------------------------------------------------------------------------------


#: The tensor of a compressed update that holds each tensor's scale exponent. A leading dot
#: cannot start a torch parameter name, so it never collides with a model's tensor.
EXPONENTS = ".exponents"
#: The tensors of a top-k update: flat positions and the fixed-point values there.
INDICES, VALUES = ".indices", ".values"


@dataclass(frozen=True)
class _Layout:
    header: bytes  # the 8-byte length prefix and the JSON header, padding included
    size: int
    dtype: np.dtype
    slices: tuple[tuple[str, tuple[int, ...], int, int], ...]  # name, shape, start, end (items)
    exponents: tuple[int, int] | None = None  # where a compressed update's exponents are
    sparse: tuple[slice, slice] | None = None  # where a top-k update's indices and values are


_ST_DTYPE = {"int32": "I32", "float32": "F32", "int16": "I16", "int8": "I8"}


def _store(spec: ModelSpec, kind: Kind) -> str:
    if kind == "model" or spec.codec.encoding == "float32":
        return "float32"
    return "int32" if spec.codec.encoding in ("fixed", "topk") else spec.codec.encoding


@functools.lru_cache(maxsize=32)
def _layout(spec: ModelSpec, kind: Kind) -> _Layout:
    dtype = np.dtype(_store(spec, kind)).newbyteorder("<")
    zeros = {t.name: np.zeros(t.shape, dtype) for t in spec.tensors}
    compressed = kind == "update" and spec.codec.encoding in COMPRESSED
    if compressed:
        zeros[EXPONENTS] = np.zeros(len(spec.tensors), dtype)
    topk = kind == "update" and spec.codec.encoding == "topk"
    if topk:
        k = spec.codec.topk(spec.num_params)
        zeros = {INDICES: np.zeros(k, dtype), VALUES: np.zeros(k, dtype)}
    blob = safetensors.numpy.save(zeros, metadata=_metadata(spec, kind))
    header_len = 8 + int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:header_len])
    size = dtype.itemsize
    slices = sorted(
        (
            (name, tuple(h["shape"]), h["data_offsets"][0] // size, h["data_offsets"][1] // size)
            for name, h in header.items()
            if name not in ("__metadata__", EXPONENTS, INDICES, VALUES)
        ),
        key=lambda s: s[2],
    )
    exponents = None
    if compressed:
        a, b = header[EXPONENTS]["data_offsets"]
        exponents = (a // size, b // size)
    sparse = None
    if topk:
        (ia, ib), (va, vb) = (header[n]["data_offsets"] for n in (INDICES, VALUES))
        sparse = (slice(ia // size, ib // size), slice(va // size, vb // size))
    return _Layout(blob[:header_len], len(blob), dtype, tuple(slices), exponents, sparse)


def flat_layout(spec: ModelSpec) -> tuple[tuple[str, tuple[int, ...], int, int], ...]:
    """The flat layout of :attr:`Update.q` and of models: tensors ordered by name, whatever
    the update encoding (a compressed file interleaves its exponents tensor); each entry is
    ``(name, shape, start, end)``."""
    return _layout(spec, "model").slices


_slices = flat_layout


def _metadata(spec: ModelSpec, kind: Kind) -> dict[str, str]:
    # ONE key: safetensors writes __metadata__ from a hash map whose order varies per call
    return {"flchain": f"{kind}:{spec.digest().hex()}"}


# --- the decoded update -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Update:
    """A model update (delta from the round's global model) in fixed-point form.

    ``q`` is a read-only 1-D int32 array holding ``round(x·2^frac_bits)`` of every coordinate,
    in the canonical layout of ``spec`` (tensors ordered by name). Build one with
    :func:`quantize` or :func:`decode_update`.
    """

    spec: ModelSpec
    q: np.ndarray

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The update as float32 tensors, in the spec's tensor order."""
        scale = 2.0**-self.spec.codec.frac_bits
        flat = (self.q.astype(np.float64) * scale).astype(np.float32)
        parts = {
            name: torch.from_numpy(flat[a:b].reshape(shape))
            for name, shape, a, b in _slices(self.spec)
        }
        return {t.name: parts[t.name] for t in self.spec.tensors}

    def is_zero(self) -> bool:
        """True when the update changes nothing (the global model sent back)."""
        # a strided sample settles almost every real update without a full pass
        return not np.any(self.q[:: max(1, self.q.size // 1024)]) and not np.any(self.q)


def _as_numpy(x: Array) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_tensors(tensors: Mapping[str, Array], spec: ModelSpec) -> None:
    names = set(tensors)
    for t in spec.tensors:
        if t.name not in names:
            raise MissingTensor(f"tensor {t.name!r} is missing")
        shape = tuple(tensors[t.name].shape)
        if shape != t.shape:
            raise ShapeMismatch(f"tensor {t.name!r} has shape {shape}, spec says {t.shape}")
    extra = names - {t.name for t in spec.tensors}
    if extra:
        raise UnexpectedTensor(f"tensor {sorted(extra)[0]!r} is not in the model spec")


def _flatten(tensors: Mapping[str, Array], spec: ModelSpec, kind: Kind) -> np.ndarray:
    _check_tensors(tensors, spec)
    return np.concatenate(
        [_as_numpy(tensors[name]).astype(np.float64).reshape(-1) for name, *_ in _slices(spec)]
    )


def _name_at(spec: ModelSpec, kind: Kind, index: int) -> str:
    for name, _, a, b in _slices(spec):
        if a <= index < b:
            return name
    return "?"


def _check_finite(flat: np.ndarray, spec: ModelSpec, kind: Kind) -> None:
    finite = np.isfinite(flat)
    if not finite.all():
        i = int(np.argmin(finite))
        raise NonFiniteValue(f"tensor {_name_at(spec, kind, i)!r} holds {flat[i]}")


def _to_fixed(flat: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Finite check, round to the nearest multiple of 2^-frac_bits (ties to even), then the
    magnitude bound on the rounded value, the one decode checks."""
    _check_finite(flat, spec, "update")
    q = np.rint(flat.astype(np.float64) * 2.0**spec.codec.frac_bits)
    big = np.abs(q) > spec.codec.bound_q
    if big.any():
        i = int(np.argmax(big))
        raise MagnitudeBoundExceeded(
            f"tensor {_name_at(spec, 'update', i)!r} holds {float(flat[i])!r}, "
            f"bound is {spec.codec.bound}"
        )
    if spec.codec.encoding in COMPRESSED:
        q = _compress(flat.astype(np.float64), spec)
        big = np.abs(q) > spec.codec.bound_q  # coarser rounding can step over the bound
        if big.any():
            i = int(np.argmax(big))
            raise MagnitudeBoundExceeded(
                f"tensor {_name_at(spec, 'update', i)!r} holds {float(flat[i])!r}, which "
                f"{spec.codec.encoding} rounds past the bound {spec.codec.bound}"
            )
    if spec.codec.encoding == "topk":
        kept = np.zeros_like(q)
        where = top_k(q, spec.codec.topk(spec.num_params))
        kept[where] = q[where]
        q = kept
    q = q.astype(np.int32)
    q.flags.writeable = False
    return q


def top_k(q: np.ndarray, k: int) -> np.ndarray:
    """The positions of the ``k`` largest ``|q|``, ascending; among equal magnitudes the lower
    positions win, so the choice is a function of ``q`` alone (exact: ``q`` holds integers)."""
    size = np.abs(q.astype(np.int64))
    if k >= size.size:
        return np.arange(size.size, dtype=np.int64)
    cut = np.partition(size, size.size - k)[size.size - k]  # the k-th largest magnitude
    above = np.flatnonzero(size > cut)
    ties = np.flatnonzero(size == cut)[: k - above.size]
    return np.sort(np.concatenate([above, ties]))


def sparsify(
    delta: Mapping[str, Array], residual: np.ndarray | None, spec: ModelSpec
) -> tuple[Update, np.ndarray]:
    """Top-k with error feedback: the :class:`Update` a node sends for ``delta`` plus what it
    held back before (``residual``: float64, flat, :func:`flat_layout`; ``None`` = zero), and
    what it holds back now. The sum is rounded to fixed point and clipped to the magnitude
    bound (the excess stays in the residual rather than failing the round); its top-k
    coordinates are sent; the new residual is the sum minus exactly what was sent, so rounding
    and clipping are fed back too."""
    if spec.codec.encoding != "topk":
        raise NonCanonicalEncoding(f"sparsify needs a topk codec, not {spec.codec.encoding!r}")
    flat = _flatten(delta, spec, "update")
    if residual is not None:
        if residual.shape != flat.shape:
            raise ShapeMismatch(f"residual has shape {residual.shape}, need {flat.shape}")
        flat = flat + residual
    _check_finite(flat, spec, "update")
    bound_q = spec.codec.bound_q
    q = np.clip(np.rint(flat * 2.0**spec.codec.frac_bits), -bound_q, bound_q).astype(np.int64)
    sent = np.zeros(q.size, np.int32)
    where = top_k(q, spec.codec.topk(spec.num_params))
    sent[where] = q[where]
    sent.flags.writeable = False
    return Update(spec, sent), flat - sent.astype(np.float64) * 2.0**-spec.codec.frac_bits


def _compress(flat: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Per tensor: the smallest exponent ``e`` whose codes ``round(x·2^(F-e))`` fit the
    encoding (ties to even), and the fixed-point values ``code · 2^e`` they stand for."""
    cmax = COMPRESSED[spec.codec.encoding]
    out = np.zeros(flat.size, np.int64)
    for _, _, a, b in _slices(spec):
        x = flat[a:b] * 2.0**spec.codec.frac_bits  # a power-of-two scaling: exact
        top = float(np.abs(x).max()) if b > a else 0.0
        if top == 0.0:
            continue
        e = max(0, int(np.floor(np.log2(top / cmax))))  # an estimate, then made exact

        def fits(e: int, x: np.ndarray = x) -> bool:
            return bool(np.abs(np.rint(x * 2.0**-e)).max() <= cmax)

        while not fits(e):
            e += 1
        while e > 0 and fits(e - 1):
            e -= 1
        out[a:b] = np.rint(x * 2.0**-e).astype(np.int64) << e
    return out


def _exponent(top: int, cmax: int) -> int:
    """The smallest ``e >= 0`` with ``top <= cmax · 2^e``."""
    e = 0
    while top > cmax << e:
        e += 1
    return e


def quantize(delta: Mapping[str, Array], spec: ModelSpec) -> Update:
    """Turn a float delta into an :class:`Update` after checking names, shapes, finiteness and
    the magnitude bound."""
    return Update(spec, _to_fixed(_flatten(delta, spec, "update"), spec))


# --- encode / decode --------------------------------------------------------------------------


def encode_update(update: Update | Mapping[str, Array], spec: ModelSpec) -> bytes:
    """The canonical bytes of an update (a float delta is quantized first)."""
    if not isinstance(update, Update):
        update = quantize(update, spec)
    elif update.spec != spec:
        raise NonCanonicalEncoding("update was built for a different model spec")
    lay = _layout(spec, "update")
    if spec.codec.encoding == "fixed":
        body = update.q.astype(lay.dtype, copy=False)
    elif spec.codec.encoding in COMPRESSED:
        body = _pack(update.q, spec, lay)
    elif spec.codec.encoding == "topk":
        body = _pack_sparse(update.q, spec, lay)
    else:
        body = (update.q.astype(np.float64) * 2.0**-spec.codec.frac_bits).astype(lay.dtype)
    return lay.header + body.tobytes()


def _pack(q: np.ndarray, spec: ModelSpec, lay: _Layout) -> np.ndarray:
    """The body of a compressed update: codes and exponents, a function of ``q`` alone."""
    cmax = COMPRESSED[spec.codec.encoding]
    body = np.zeros((lay.size - len(lay.header)) // lay.dtype.itemsize, np.int64)
    assert lay.exponents is not None
    exponents = []
    for (name, _, a, b), (_, _, qa, qb) in zip(lay.slices, _slices(spec), strict=True):
        part = q[qa:qb].astype(np.int64)
        e = _exponent(int(np.abs(part).max()) if part.size else 0, cmax)
        if np.any(part & ((1 << e) - 1)):
            raise NonCanonicalEncoding(
                f"tensor {name!r} is not representable in {spec.codec.encoding} "
                f"(values are not multiples of its scale 2^{e})"
            )
        body[a:b] = part >> e
        exponents.append(e)
    body[lay.exponents[0] : lay.exponents[1]] = exponents
    return body.astype(lay.dtype)


def _pack_sparse(q: np.ndarray, spec: ModelSpec, lay: _Layout) -> np.ndarray:
    """The body of a top-k update: its ``k`` canonical positions and the values there."""
    assert lay.sparse is not None
    where = top_k(q, spec.codec.topk(spec.num_params))
    if np.count_nonzero(q) > where.size:
        raise NonCanonicalEncoding(
            f"update has {np.count_nonzero(q)} nonzero coordinates, topk sends {where.size}"
        )
    body = np.zeros((lay.size - len(lay.header)) // lay.dtype.itemsize, np.int32)
    body[lay.sparse[0]] = where
    body[lay.sparse[1]] = q[where]
    return body


def _unpack_sparse(body: np.ndarray, spec: ModelSpec, lay: _Layout) -> np.ndarray:
    """The dense fixed-point update of a top-k body (int64), after checking the positions are
    in range, distinct, ascending and the canonical choice for the values."""
    assert lay.sparse is not None
    n = spec.num_params
    where = body[lay.sparse[0]].astype(np.int64)
    values = body[lay.sparse[1]].astype(np.int64)
    bad = (where < 0) | (where >= n)
    if bad.any():
        raise IndexOutOfRange(f"index {int(where[np.argmax(bad)])} is outside 0..{n - 1}")
    steps = np.diff(where)
    if not (steps > 0).all():
        unique, counts = np.unique(where, return_counts=True)
        if (counts > 1).any():
            raise DuplicateIndex(f"index {int(unique[np.argmax(counts > 1)])} appears twice")
        raise NonCanonicalEncoding("top-k indices are not in ascending order")
    q = np.zeros(n, np.int64)
    q[where] = values
    if not np.array_equal(top_k(q, where.size), where):
        raise NonCanonicalEncoding(
            "top-k zero values must pad at the lowest free indices, after every nonzero one"
        )
    return q


def _unpack(body: np.ndarray, spec: ModelSpec, lay: _Layout) -> np.ndarray:
    """The fixed-point values of a compressed update, after checking it is the canonical
    encoding of them."""
    cmax = COMPRESSED[spec.codec.encoding]
    assert lay.exponents is not None
    exponents = body[lay.exponents[0] : lay.exponents[1]].astype(np.int64)
    q = np.zeros(spec.num_params, np.int64)
    for (name, _, a, b), (_, _, qa, qb), e in zip(
        lay.slices, _slices(spec), exponents.tolist(), strict=True
    ):
        codes = body[a:b].astype(np.int64)
        top = int(np.abs(codes).max()) if codes.size else 0
        if not 0 <= e <= 30:
            raise NonCanonicalEncoding(f"tensor {name!r} has scale exponent {e}, not in 0..30")
        if top > cmax:
            raise NonCanonicalEncoding(
                f"tensor {name!r} holds a code of magnitude {top}, over {cmax}"
            )
        if e > 0 and top <= cmax >> 1:
            raise NonCanonicalEncoding(
                f"tensor {name!r} has scale exponent {e}, but its codes fit a smaller one"
            )
        q[qa:qb] = codes << e
    return q


def decode_update(data: bytes, spec: ModelSpec) -> Update:
    """Check ``data`` against ``spec`` and return the :class:`Update`.

    Raises a subclass of :class:`~flchain.errors.UpdateFormatError` naming the problem:
    malformed/truncated bytes, size bound, missing/extra tensor, shape, dtype, NaN/Inf,
    magnitude bound, or a non-canonical encoding.
    """
    body = _checked_body(data, spec, "update")
    if spec.codec.encoding in ("fixed", "topk", *COMPRESSED):
        if spec.codec.encoding == "fixed":
            q = body
        else:
            unpack = _unpack_sparse if spec.codec.encoding == "topk" else _unpack
            wide = unpack(body, spec, _layout(spec, "update"))
            if np.abs(wide).max(initial=0) > spec.codec.bound_q:
                q = wide  # the bound check below names the tensor
            else:
                q = wide.astype(np.int32)
                q.flags.writeable = False
        lo, hi = (int(q.min()), int(q.max())) if q.size else (0, 0)
        bound_q = spec.codec.bound_q
        if lo < -bound_q or hi > bound_q:
            i = int(np.argmax(np.abs(q.astype(np.int64)) > bound_q))
            value = int(q[i]) * 2.0**-spec.codec.frac_bits
            raise MagnitudeBoundExceeded(
                f"tensor {_name_at(spec, 'update', i)!r} holds {value}, bound is {spec.codec.bound}"
            )
        return Update(spec, q)
    update = Update(spec, _to_fixed(body, spec))
    # one digest <-> one update: floats must be exactly what encode_update writes for q
    if encode_update(update, spec)[len(_layout(spec, "update").header) :] != bytes(body.data):
        raise NonCanonicalEncoding(
            f"float32 values are not multiples of 2^-{spec.codec.frac_bits} (or are -0.0)"
        )
    return update


def encode_model(state: Mapping[str, Array], spec: ModelSpec) -> bytes:
    """The canonical float32 bytes of a full model state (e.g. the new global model)."""
    flat = _flatten(state, spec, "model")
    _check_finite(flat, spec, "model")
    lay = _layout(spec, "model")
    return lay.header + flat.astype(lay.dtype).tobytes()


def decode_model(data: bytes, spec: ModelSpec) -> dict[str, torch.Tensor]:
    """Check ``data`` against ``spec`` (as :func:`decode_update`, without the magnitude bound)
    and return the state dict in the spec's tensor order."""
    body = _checked_body(data, spec, "model")
    _check_finite(body, spec, "model")
    parts = {
        name: torch.from_numpy(body[a:b].copy().reshape(shape))
        for name, shape, a, b in _layout(spec, "model").slices
    }
    return {t.name: parts[t.name] for t in spec.tensors}


def apply_update(state: Mapping[str, torch.Tensor], update: Update) -> dict[str, torch.Tensor]:
    """``state + update`` in float32, element by element (so bit-for-bit reproducible)."""
    delta = update.to_tensors()
    _check_tensors(state, update.spec)
    return {name: (state[name].detach().float() + d) for name, d in delta.items()}


def update_digest(data: bytes) -> Digest:
    """sha-256 of the encoded bytes, 32 bytes: what a participant commits to and reveals."""
    return Digest(hashlib.sha256(data).digest())


def _checked_body(data: bytes, spec: ModelSpec, kind: Kind) -> np.ndarray:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedEncoding(f"expected bytes, got {type(data).__name__}")
    lay = _layout(spec, kind)
    if len(data) != lay.size or bytes(data[: len(lay.header)]) != lay.header:
        _diagnose(bytes(data), spec, kind, lay)
    body = np.frombuffer(data, dtype=lay.dtype, offset=len(lay.header))
    if not body.flags.writeable:
        return body
    body = body.copy()  # a bytearray could change under us
    body.flags.writeable = False
    return body


def _diagnose(data: bytes, spec: ModelSpec, kind: Kind, lay: _Layout) -> None:
    """Raise the most specific error for bytes that are not the canonical encoding."""
    too_big = SizeBoundExceeded(f"{len(data)} bytes exceed the spec's {lay.size}")
    if len(data) < 8:
        raise MalformedEncoding(f"{len(data)} bytes cannot hold a safetensors header")
    n = int.from_bytes(data[:8], "little")
    if len(data) > lay.size and n > 2 * len(lay.header):
        raise too_big  # do not parse a huge header just to name the problem
    if n > len(data) - 8:
        raise MalformedEncoding(f"header length {n} runs past the end ({len(data)} bytes)")
    try:
        header = safejson.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedEncoding(f"header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise MalformedEncoding("header is not a JSON object")
    meta = header.pop("__metadata__", None)
    want = {t.name: t.shape for t in spec.tensors}
    if lay.exponents is not None:
        want[EXPONENTS] = (len(spec.tensors),)
    if lay.sparse is not None:
        k = spec.codec.topk(spec.num_params)
        want = {INDICES: (k,), VALUES: (k,)}
    for name in want:
        if name not in header:
            raise MissingTensor(f"tensor {name!r} is missing")
    for name, entry in header.items():
        if name not in want:
            raise UnexpectedTensor(f"tensor {name!r} is not in the model spec")
        if not isinstance(entry, dict):
            raise MalformedEncoding(f"header entry for {name!r} is not an object")
        dtype = _ST_DTYPE[str(lay.dtype.name)]
        if entry.get("dtype") != dtype:
            raise DtypeMismatch(f"tensor {name!r} has dtype {entry.get('dtype')}, need {dtype}")
        if tuple(entry.get("shape", ())) != want[name]:
            raise ShapeMismatch(
                f"tensor {name!r} has shape {tuple(entry.get('shape', ()))}, spec says {want[name]}"
            )
    if len(data) > lay.size:
        raise too_big
    if meta != _metadata(spec, kind):
        raise NonCanonicalEncoding(f"metadata {meta!r} does not name this {kind} spec")
    if 8 + n == len(lay.header) and len(data) < lay.size:
        raise TruncatedEncoding(f"{len(data)} bytes, the spec needs {lay.size}")
    raise NonCanonicalEncoding("tensors match the spec but the header bytes are not canonical")
