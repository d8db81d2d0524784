"""A validation score every committee member computes to the same integer.

The task names a small public validation set. A committee member evaluates candidate models on
it with an *exact integer* forward pass, so the losses — and the scores derived from them — are
the same integers on every machine, whatever its BLAS or thread count:

* weights are the task's fixed-point integers (``round(w·2^F)``, ``F = frac_bits``; the global
  model's float32 values convert exactly, updates already are);
* inputs are quantized once to ``round(x·2^A)`` (``A = INPUT_BITS``);
* each linear layer is a product of integers. Weights are split into a signed high and an
  unsigned low 15-bit limb, and each limb's product is one float64 matmul whose every partial
  sum is an integer below 2^53 (checked bounds: activations ≤ ``ACT_CAP``, weights ≤
  ``WEIGHT_CAP``, fan-in ≤ ``MAX_FAN_IN``), hence exact in any summation order; the limbs are
  recombined in int64;
* ReLU, then an arithmetic right shift by ``F`` brings the activations back to scale 2^A
  (floor: exact); activations saturate at ``ACT_CAP`` (a real value of 4096), weights at
  ``WEIGHT_CAP`` (1024 at F = 20), so an absurd update cannot overflow anything;
* the loss is the multiclass hinge loss (Crammer & Singer, 2001) with margin 1, summed over the
  set in Python integers: ``Σ max(0, 1 − (z_y − max_{k≠y} z_k))`` at scale 2^(A+F).

Supported: models that are a chain of linear layers with ReLU between them (``mlp``,
``logreg``). The CNN's convolutions are not implemented here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from flchain.errors import ConfigError, DataError
from flchain.learning.codec import _slices
from flchain.learning.data import TensorData
from flchain.learning.models import ModelSpec

#: Input resolution: inputs are quantized to multiples of 2^-INPUT_BITS.
INPUT_BITS = 8
#: Activations saturate here (scale 2^INPUT_BITS: a real activation of 4096).
ACT_CAP = 2**20
#: Weights saturate at ±WEIGHT_CAP (fixed point: |w| ≤ 1024 at 20 fractional bits).
WEIGHT_CAP = 2**30
#: Largest fan-in for which ACT_CAP·2^15·fan-in stays below 2^53 (and the int64 sum below 2^62).
MAX_FAN_IN = 2**12
_LIMB = 15
#: Architectures that are a chain of linear layers with ReLU between them.
LINEAR_STACKS = ("mlp", "2nn", "logreg")


@dataclass(frozen=True, eq=False)
class ValidationSet:
    """The task's public validation samples: inputs quantized to ``round(x·2^INPUT_BITS)``
    (int64, one row per sample, flattened) and labels."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int

    @classmethod
    def from_arrays(
        cls, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, num_classes: int
    ) -> ValidationSet:
        xs = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x)
        ys = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
        if len(xs) == 0 or len(xs) != len(ys):
            raise DataError(
                f"validation set needs samples and one label each: {len(xs)} inputs, "
                f"{len(ys)} labels"
            )
        if not np.isfinite(xs).all() or np.abs(xs).max() > 2**20:
            raise DataError("validation inputs must be finite and below 2^20 in magnitude")
        ys = ys.astype(np.int64)
        if ys.min() < 0 or ys.max() >= num_classes:
            raise DataError(f"validation labels must be in [0, {num_classes})")
        xq = np.rint(xs.reshape(len(xs), -1).astype(np.float64) * 2.0**INPUT_BITS).astype(np.int64)
        xq.flags.writeable = False
        ys.flags.writeable = False
        return cls(xq, ys, num_classes)


def validation_slice(test: TensorData, per_class: int, skip: int = 0) -> TensorData | None:
    """The first ``per_class`` samples of each class of a test split (in split order), after
    the first ``skip`` of that class: a task's public validation set
    (``aggregation.validation_per_class``), or with ``skip`` = that count the owner's root set
    for ``fltrust`` (so the two never overlap). The validation set only weights rewards (the
    aggregate does not depend on it), so test accuracy stays unbiased."""
    if per_class <= 0:
        return None
    y = test.y.numpy()
    idx = sorted(
        i for c in range(test.num_classes) for i in np.flatnonzero(y == c)[skip : skip + per_class]
    )
    return test.subset(idx)


@dataclass(frozen=True, eq=False)
class RoundValidation:
    """What a rule needs to score updates on the validation set in one round: the set and the
    round's global model as fixed-point integers in the update layout (:func:`fixed_model`)."""

    data: ValidationSet
    global_q: np.ndarray


def fixed_model(state: Mapping[str, torch.Tensor], spec: ModelSpec) -> np.ndarray:
    """A model state as int64 fixed-point values in :attr:`Update.q`'s layout. float32 values
    times a power of two are exact in float64, so the rounding is the same everywhere."""
    parts = []
    for name, _shape, _a, _b in _slices(spec):
        if name not in state:
            raise ConfigError(f"model state lacks tensor {name!r}")
        w = state[name].detach().cpu().numpy().astype(np.float64).reshape(-1)
        parts.append(np.rint(np.clip(w * 2.0**spec.codec.frac_bits, -WEIGHT_CAP, WEIGHT_CAP)))
    return np.concatenate(parts).astype(np.int64)


def check_supported(spec: ModelSpec) -> None:
    """Raise :class:`ConfigError` unless the exact forward pass covers ``spec``'s model."""
    _layers(spec)


def _layers(spec: ModelSpec) -> list[tuple[int, int, int, int, int]]:
    """``(w_start, w_end, b_start, out, in)`` per linear layer, in forward order (the spec's
    parameter order: weight then bias, each layer's input the previous layer's output)."""
    if spec.architecture.split(":")[0] not in LINEAR_STACKS:
        raise ConfigError(
            f"the validation score needs a linear-stack model ({', '.join(LINEAR_STACKS)}); "
            f"{spec.architecture!r} is not supported"
        )
    where = {name: (a, b) for name, _s, a, b in _slices(spec)}
    tensors = list(spec.tensors)
    if len(tensors) % 2:
        raise ConfigError("validation score: expected weight/bias pairs of linear layers")
    layers, prev = [], None
    for w, b in zip(tensors[::2], tensors[1::2], strict=True):
        if (
            len(w.shape) != 2
            or b.shape != (w.shape[0],)
            or (prev is not None and w.shape[1] != prev)
        ):
            raise ConfigError(
                f"validation score: {w.name!r}/{b.name!r} are not a linear layer of the chain"
            )
        if w.shape[1] > MAX_FAN_IN:
            raise ConfigError(f"validation score: fan-in {w.shape[1]} above {MAX_FAN_IN}")
        layers.append(
            (where[w.name][0], where[w.name][1], where[b.name][0], w.shape[0], w.shape[1])
        )
        prev = w.shape[0]
    return layers


def _exact_matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``a @ w.T`` of int64 arrays with ``|a| ≤ ACT_CAP``, ``|w| ≤ WEIGHT_CAP`` and fan-in
    ≤ MAX_FAN_IN, exactly: two float64 products of 15-bit limbs, each partial sum < 2^53."""
    hi, lo = w >> _LIMB, w & ((1 << _LIMB) - 1)
    af = a.astype(np.float64)
    out: np.ndarray = ((af @ hi.T.astype(np.float64)).astype(np.int64) << _LIMB) + (
        af @ lo.T.astype(np.float64)
    ).astype(np.int64)
    return out


def logits(weights: np.ndarray, spec: ModelSpec, data: ValidationSet) -> np.ndarray:
    """The model's logits on the set, int64 at scale 2^(INPUT_BITS + frac_bits)."""
    f = spec.codec.frac_bits
    w = np.clip(weights.astype(np.int64), -WEIGHT_CAP, WEIGHT_CAP)
    layers = _layers(spec)
    if data.x.shape[1] != layers[0][4]:
        raise ConfigError(
            f"validation inputs have {data.x.shape[1]} features, the model takes {layers[0][4]}"
        )
    a = np.clip(data.x, -ACT_CAP, ACT_CAP)
    z = np.zeros((len(data.x), 0), np.int64)
    for i, (ws, we, bs, out, fan_in) in enumerate(layers):
        z = _exact_matmul(a, w[ws:we].reshape(out, fan_in)) + (w[bs : bs + out] << INPUT_BITS)
        if i < len(layers) - 1:
            a = np.minimum(np.maximum(z, 0) >> f, ACT_CAP)
    return z


def hinge_loss(weights: np.ndarray, spec: ModelSpec, data: ValidationSet) -> int:
    """Summed multiclass hinge loss (margin 1) of the model on the set, as an exact integer at
    scale 2^(INPUT_BITS + frac_bits)."""
    z = logits(weights, spec, data)
    margin = 1 << (INPUT_BITS + spec.codec.frac_bits)
    total = 0
    for row, label in zip(z.tolist(), data.y.tolist(), strict=True):
        own = row[label]
        other = max(v for k, v in enumerate(row) if k != label)
        total += max(0, margin - (own - other))
    return total


def correct(weights: np.ndarray, spec: ModelSpec, data: ValidationSet) -> int:
    """How many validation samples the model classifies right (argmax, ties to the lowest
    class: exact on integers)."""
    return int(np.count_nonzero(np.argmax(logits(weights, spec, data), axis=1) == data.y))
