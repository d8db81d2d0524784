"""SCAFFOLD (Karimireddy et al., ICML 2020, "SCAFFOLD: Stochastic Controlled Averaging for
Federated Learning"), Option II, with the server's part in exact fixed point.

Each participant ``i`` keeps a control variate ``c_i`` (zero at first); the server keeps ``c``.
A participant trains from the global model ``x`` with the corrected gradient ``g - c_i + c``
(:func:`~flchain.learning.training.train_local`'s ``correction``) for ``K`` steps of lr ``η``,
reaching ``y_i``, then sets (Option II)

    ``c_i⁺ = c_i - c + (x - y_i) / (K·η)``,  ``Δc_i = c_i⁺ - c_i = -c - Δw_i / (K·η)``

and sends ``Δw_i = y_i - x`` and ``Δc_i`` in **one update file**: the update spec
(:func:`update_spec`) is the model's tensors plus a ``.c/<name>`` tensor of the same shape for
each, so one digest commits to both and the codec, the commit-reveal and every aggregation
rule work unchanged.

The committee aggregates the concatenated vector with the task's rule, then splits it
(:func:`split`): the ``Δw`` half moves the model exactly as any aggregate does, and the server
variate becomes ``c ← c + (|S|/N)·Δc`` with ``Δc`` the ``.c/`` half. Aggregating ``Δc`` with
the task's rule rather than a plain mean is a deliberate choice: with a plain mean a single
poisoner could push ``c`` (and through it every participant's next steps) anywhere within the
codec bound, even where the rule keeps its ``Δw`` out. So ``Δc`` gets the same robustness as
``Δw``. What the rule sees is the joint vector: a selection rule (Krum, multi-Krum) selects or
rejects an update as a whole, distance- and norm-based rules (centered clipping, norm bounds)
measure both halves together, and coordinate-wise rules (median, trimmed mean) treat the
``.c/`` coordinates like any others. The halves are on different scales (``Δc`` is
``-c - Δw/(K·η)``), so a distance-based rule weighs the larger half more; with ``K·η`` near 1
(the FedAvg paper's MNIST setup: E=5, 40 samples, B=10, η=0.05) they are comparable. With the
weighted mean (``fedavg``) this is exactly the paper's server update (weighted by samples, as
FedAvg weights ``Δw``).

``|S|/N``: the committee knows who revealed but not ``N`` (anyone may join a task), so it uses
the task's expected sampling rate ``training.client_fraction`` (C); with C = 1 the variate is
``c + Δc``, the mean of the participants' ``c_i`` when every participant trains each round.

Everything the committee computes is integer: ``c`` is int64 at the codec's scale ``2^-F``,
``C`` a Q31 constant, the product rounded as :func:`~flchain.learning.server_opt.mul_q` does,
and ``c`` saturates at the codec's magnitude bound (a documented clamp, never a wrap). ``c`` is
a companion blob of the global model, found as the server optimizers' state is (the report's
``server_state_cid``; zero before the first finalized round; :mod:`flchain.protocol.committee`).

With a server optimizer (FedAvgM, FedAdam, ...) the ``Δw`` half of the aggregate is its
pseudo-gradient, exactly as in a FedAvg task (the optimizer plays SCAFFOLD's global step size
η_g), and ``c`` moves by the ``Δc`` half as above, untouched by the optimizer: ``Δc`` estimates
gradients, not a step. The optimizer's state (``m``, ``v``) then rides in the same companion
blob beside ``c`` (:func:`encode_control`), so one CID still names everything a round carries
over; participants, who need only ``c``, download the optimizer's state with it.

A participant updates ``c_i`` with the quantized ``Δc_i`` it sends (:func:`train_scaffold`),
so the server's ``c`` and the participants' ``c_i`` move by the same fixed-point amounts (the
participant adds them in float64, exact to its rounding), and quantization error does not
accumulate between ``c`` and the mean of the ``c_i``. A node saves ``c_i⁺`` when it trains
(before it commits, so a restart retrains the same bytes) but trains the next round from it
only if the round finalized with its update accepted; otherwise ``c`` never took that
``Δc_i``, and the node trains from the ``c_i`` before it, as the paper's unsampled client
keeps its own. The simulation does the same. One approximation is left: a rule that clips
(``centered_clip``) takes in a clipped ``Δc_i`` while the node keeps the whole one.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import safetensors.numpy
import torch
from torch import nn

from flchain.errors import UpdateFormatError
from flchain.learning.codec import Update, flat_layout, quantize
from flchain.learning.data import TensorData
from flchain.learning.models import ModelSpec, TensorSpec
from flchain.learning.server_opt import ServerOptimizer, check_ranges, mul_q, read_slots, to_q
from flchain.learning.training import TrainConfig, TrainResult, train_local

#: The prefix of a control tensor in a SCAFFOLD update. A leading dot cannot start a torch
#: parameter name, so it never collides with a model's tensor.
CONTROL = ".c/"


class MalformedControlState(UpdateFormatError):
    """A SCAFFOLD server state blob is not the canonical encoding for the task."""


@functools.lru_cache(maxsize=16)
def update_spec(spec: ModelSpec) -> ModelSpec:
    """The spec of a SCAFFOLD update for model ``spec``: its tensors and a ``.c/<name>``
    control tensor of the same shape for each, with the model's codec."""
    controls = tuple(TensorSpec(CONTROL + t.name, t.shape, t.dtype) for t in spec.tensors)
    return ModelSpec(spec.architecture, spec.tensors + controls, spec.codec)


def split(update: Update, spec: ModelSpec) -> tuple[Update, np.ndarray]:
    """A SCAFFOLD update (or aggregate) of ``update_spec(spec)`` as the model update ``Δw``
    (an :class:`Update` of ``spec``) and ``Δc`` (int64, fixed point, in ``spec``'s flat
    layout)."""
    if update.spec != update_spec(spec):
        raise UpdateFormatError("not a SCAFFOLD update of this model spec")
    where = {name: (a, b) for name, _, a, b in flat_layout(update.spec)}
    w = np.empty(spec.num_params, np.int32)
    c = np.empty(spec.num_params, np.int64)
    for name, _, a, b in flat_layout(spec):
        wa, wb = where[name]
        ca, cb = where[CONTROL + name]
        w[a:b] = update.q[wa:wb]
        c[a:b] = update.q[ca:cb]
    w.flags.writeable = False
    return Update(spec, w), c


def named(flat: np.ndarray, spec: ModelSpec) -> dict[str, torch.Tensor]:
    """A flat float array in ``spec``'s layout as float32 tensors by name."""
    return {
        name: torch.from_numpy(np.asarray(flat[a:b], np.float32).reshape(shape))
        for name, shape, a, b in flat_layout(spec)
    }


def flatten(tensors: dict[str, torch.Tensor], spec: ModelSpec) -> np.ndarray:
    """Tensors by name as one float64 array in ``spec``'s flat layout."""
    return np.concatenate(
        [tensors[name].detach().double().numpy().reshape(-1) for name, *_ in flat_layout(spec)]
    )


def to_float(control_q: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """A fixed-point control variate in real units (float64, exact: ``|q| < 2^53``)."""
    return control_q.astype(np.float64) * 2.0**-spec.codec.frac_bits


# --- the participant's side -----------------------------------------------------------------


@dataclass(frozen=True)
class Controls:
    """The control variates one participant's SCAFFOLD round starts from, in ``spec``'s
    layout: its own ``c_i`` (``client``: float64, flat) and the server's ``c`` (``server``:
    fixed point, as its state blob holds it)."""

    spec: ModelSpec
    client: np.ndarray
    server: np.ndarray


@dataclass(frozen=True)
class ScaffoldResult:
    """A SCAFFOLD participant's round: the update it sends (``Δw`` and ``Δc``, quantized, of
    ``update_spec``), its new control variate ``c_i⁺`` (float64, flat) and the training run."""

    update: Update
    client_control: np.ndarray
    train: TrainResult


def train_scaffold(
    model: nn.Module, data: TensorData, config: TrainConfig, seed: int, controls: Controls
) -> ScaffoldResult:
    """One participant's SCAFFOLD round from the global weights in ``model`` (left unchanged):
    corrected local SGD from ``controls``, then Option II's control update."""
    spec, client_control = controls.spec, controls.client
    c = to_float(controls.server, spec)
    correction = named(c - client_control, spec)
    result = train_local(model, data, config, seed, correction=correction)
    dw = flatten(result.delta, spec)
    dc = -c - dw / (result.steps * config.lr)
    tensors = dict(result.delta)
    tensors.update({CONTROL + k: v for k, v in named(dc, spec).items()})
    update = quantize(tensors, update_spec(spec))
    _, dc_q = split(update, spec)
    # c_i moves by exactly what the server will see, so c stays the mean of the c_i
    return ScaffoldResult(update, client_control + to_float(dc_q, spec), result)


# --- the committee's side -------------------------------------------------------------------


def server_control_step(
    control: np.ndarray, delta_c: np.ndarray, client_fraction: float, bound_q: int
) -> np.ndarray:
    """``c + C·Δc`` in exact integer arithmetic (int64, fixed point), saturated at the codec
    bound ``bound_q``. ``delta_c`` is the ``.c/`` half of the round's aggregate."""
    moved = control.astype(np.int64) + mul_q(delta_c.astype(np.int64), to_q(client_fraction))
    out: np.ndarray = np.clip(moved, -bound_q, bound_q)
    return out


def zero_control(spec: ModelSpec) -> np.ndarray:
    """The server variate before the first finalized round."""
    return np.zeros(spec.num_params, np.int64)


def _stateful(optimizer: ServerOptimizer | None) -> ServerOptimizer | None:
    """The optimizer whose state rides along with ``c`` (``None``: none, or a stateless one)."""
    return optimizer if optimizer is not None and optimizer.slots else None


def _metadata(spec: ModelSpec, optimizer: ServerOptimizer | None) -> dict[str, str]:
    # c alone keeps the bytes it had before server optimizers could join SCAFFOLD
    tail = f":{optimizer.name}" if optimizer is not None else ""
    return {"flchain": f"scaffold-state:{spec.digest().hex()}{tail}"}


@functools.lru_cache(maxsize=16)
def _header(spec: ModelSpec, optimizer: ServerOptimizer | None) -> tuple[bytes, int]:
    zeros = {"c": zero_control(spec)}
    if optimizer is not None:
        zeros |= optimizer.zero_state(spec.num_params)
    blob = safetensors.numpy.save(zeros, metadata=_metadata(spec, optimizer))
    return blob[: 8 + int.from_bytes(blob[:8], "little")], len(blob)


def encode_control(
    control: np.ndarray,
    spec: ModelSpec,
    optimizer: ServerOptimizer | None = None,
    state: Mapping[str, np.ndarray] | None = None,
) -> bytes:
    """The canonical bytes of the server variate ``c`` (an int64 tensor ``c``) and, for a task
    with a stateful server optimizer, that optimizer's ``state`` beside it (its slots)."""
    if control.shape != (spec.num_params,):
        raise MalformedControlState(f"control has shape {control.shape}, need {spec.num_params}")
    optimizer = _stateful(optimizer)
    slots = optimizer.slots if optimizer is not None else ()
    state = state or {}
    if set(state) != set(slots) or any(state[k].shape != control.shape for k in slots):
        raise MalformedControlState(f"optimizer state has {sorted(state)}, need {list(slots)}")
    arrays = {k: np.ascontiguousarray(v, dtype="<i8") for k, v in {"c": control, **state}.items()}
    return safetensors.numpy.save(arrays, metadata=_metadata(spec, optimizer))


def decode_control_state(
    data: bytes, spec: ModelSpec, optimizer: ServerOptimizer | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Check ``data`` is the canonical SCAFFOLD state for ``spec`` and the task's server
    ``optimizer`` (header, size, the codec's magnitude bound for ``c``, the optimizer's ranges)
    and return ``c`` and the optimizer's state (empty without a stateful optimizer)."""
    optimizer = _stateful(optimizer)
    header, size = _header(spec, optimizer)
    slots = read_slots(data, header, size, ("c", *(optimizer.slots if optimizer else ())))
    if slots is None:
        raise MalformedControlState(
            f"not a SCAFFOLD state for this model spec ({len(data)} bytes, need {size})"
        )
    c = slots.pop("c")
    if np.abs(c).max(initial=0) > spec.codec.bound_q:
        raise MalformedControlState("SCAFFOLD state c exceeds the codec's magnitude bound")
    if optimizer is not None:
        check_ranges(slots, optimizer)
    return c, slots


def decode_control(
    data: bytes, spec: ModelSpec, optimizer: ServerOptimizer | None = None
) -> np.ndarray:
    """The server variate ``c`` of a SCAFFOLD state (checked as :func:`decode_control_state`
    checks it): what a participant trains with."""
    return decode_control_state(data, spec, optimizer)[0]
