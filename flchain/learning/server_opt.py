"""Server optimizers of Reddi et al. (ICLR 2021, "Adaptive Federated Optimization") in exact
fixed point: FedAvgM, FedAdam, FedYogi and FedAdagrad.

The aggregation rule's output ``Δ`` (the weighted mean of the accepted updates, in the codec's
fixed-point units ``2^-F``) is the *pseudo-gradient*; the server optimizer turns it into the
step that moves the global model ``x``:

* ``none``: ``x ← x + Δ`` (FedAvg; no state);
* ``fedavgm``: ``m ← β·m + Δ``, ``x ← x + η·m`` (Flower's ``FedAvgM``, Hsu et al. 2019);
* ``fedadam`` / ``fedyogi`` / ``fedadagrad`` (Reddi et al., Algorithm 2):
  ``m ← β1·m + (1-β1)·Δ``, then
  ``v ← β2·v + (1-β2)·Δ²`` (Adam), ``v ← v - (1-β2)·Δ²·sign(v - Δ²)`` (Yogi) or
  ``v ← v + Δ²`` (Adagrad), and ``x ← x + η·m / (√v + τ)``, with ``m`` and ``v`` starting at
  zero and no bias correction (the paper's algorithm; Flower's ``FedAdam`` also rescales η by
  Adam's bias correction, which this does not).

Every committee member must compute byte-identical models, so all of it is integer arithmetic
on int64 numpy arrays: elementwise, no reductions, hence independent of thread count, BLAS
and platform. The formats:

* ``Δ``, ``m``, the step and ``√v``, ``τ``: fixed point at the codec's scale ``2^-F``;
* ``v``: at ``2^-2F`` (it holds squares of ``Δ``), so its square root is back at ``2^-F``;
* ``η``, ``β``, ``β1``, ``β2``: Q31 integers ``round(x·2^31)`` (Python's exact rounding of an
  exact product, so the same on every machine);
* every product by a Q31 constant, the ratio ``m/(√v+τ)`` and the square root are rounded to
  the nearest integer, ties away from zero (:func:`mul_q`, :func:`round_div`, :func:`isqrt`).

Ranges are saturated, never wrapped, so a bound hit is a documented clamp rather than garbage:
``|m| <= 2^40`` for FedAvgM's undamped sum and ``2^31`` for the adaptive optimizers' average
of updates (which cannot exceed ``|Δ| < 2^31`` anyway), ``0 <= v < 2^62``, the ratio
``|m/(√v+τ)| <= 2^20``, and the step, like any update, at most the codec's magnitude bound per
coordinate (so it is an :class:`~flchain.learning.codec.Update` and moves the float32 global
model exactly as an aggregate does).

The state (``m``, ``v``) is a canonical safetensors file of int64 tensors (:func:`encode_state`,
:func:`decode_state`), stored next to the global model; :mod:`flchain.protocol.committee` says
how it is found.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import safetensors.numpy

from flchain.errors import ConfigError, UpdateFormatError
from flchain.learning.codec import Update
from flchain.learning.models import ModelSpec

#: The registry: every optimizer's name (the config's ``SERVER_OPTIMIZERS`` lists the same ones,
#: for the CLI, without importing the maths) and the state tensors it keeps between rounds.
STATE_SLOTS: dict[str, tuple[str, ...]] = {
    "none": (),
    "fedavgm": ("m",),
    "fedadam": ("m", "v"),
    "fedyogi": ("m", "v"),
    "fedadagrad": ("m", "v"),
}
#: A server learning rate per optimizer: the ones ``scripts/bench_server_opt.py`` picked on
#: MNIST-5k with 2 shards per client (``benchmarks/results/server_opt.md``), which
#: ``flchain demo`` uses when it is not given one. A task should tune its own.
SUGGESTED_LR: dict[str, float] = {
    "none": 1.0,
    "fedavgm": 0.3,
    "fedadam": 0.03,
    "fedyogi": 0.03,
    "fedadagrad": 0.1,
}

Q = 31  # fraction bits of the hyper-parameters
ONE = 1 << Q
M_MAX = {"fedavgm": 1 << 40, "fedadam": ONE, "fedyogi": ONE, "fedadagrad": ONE}
V_MAX = (1 << 62) - 1
RATIO_MAX = 1 << 20  # |m / (√v + τ)|, in real units
MAX_LR = 1024.0


class MalformedServerState(UpdateFormatError):
    """A server-optimizer state blob is not the canonical encoding for the task."""


# --- exact integer primitives -----------------------------------------------------------------


def to_q(x: float) -> int:
    """``x`` as a Q31 integer: ``round(x·2^31)`` (an exact product, rounded half to even)."""
    return round(x * ONE)


def mul_q(a: np.ndarray, c: int) -> np.ndarray:
    """``round(a·c / 2^31)``, ties away from zero, exact, for int64 ``a`` with ``|a| < 2^62``
    and a Q31 constant ``0 <= c`` with ``|a|·(c >> 31) < 2^62`` (callers bound both)."""
    whole, frac = divmod(c, ONE)
    mag = np.abs(a)
    hi, lo = mag >> Q, mag & (ONE - 1)
    # |a|·frac / 2^31 = hi·frac + lo·frac / 2^31, and hi·frac is an integer: round the rest.
    out = mag * whole + hi * frac + ((lo * frac + (ONE >> 1)) >> Q)
    signed: np.ndarray = np.where(a < 0, -out, out)
    return signed


def round_div(a: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``round(a / d)`` elementwise, ties away from zero, for ``d >= 1``."""
    out = (np.abs(a) + (d >> 1)) // d
    signed: np.ndarray = np.where(a < 0, -out, out)
    return signed


def isqrt(v: np.ndarray) -> np.ndarray:
    """``floor(√v)`` elementwise for int64 ``0 <= v < 2^62``, exact: a float estimate, then
    integer corrections until ``s² <= v < (s+1)²`` (the answer is unique, so how good the
    estimate is cannot change it)."""
    s = np.minimum(np.floor(np.sqrt(v.astype(np.float64))), ONE - 1).astype(np.int64)
    while True:
        over = s * s > v
        under = (s + 1) * (s + 1) <= v
        if not (over.any() or under.any()):
            return s
        s = s - over + under


# --- the optimizers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerOptimizer:
    """A task's server optimizer and its hyper-parameters (``[training] server_*``).

    ``momentum`` is FedAvgM's β and the adaptive optimizers' β1; ``beta2`` and ``tau`` only
    matter to the adaptive ones. ``tau`` must be at least one fixed-point unit ``2^-F`` (the
    scale ``√v`` is computed at).
    """

    name: str = "none"
    lr: float = 1.0
    momentum: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3

    def __post_init__(self) -> None:
        if self.name not in STATE_SLOTS:
            raise ConfigError(
                f"training.server_optimizer must be one of {', '.join(STATE_SLOTS)}; "
                f"got {self.name!r}"
            )
        if not 0 < self.lr <= MAX_LR or to_q(self.lr) < 1:
            raise ConfigError(f"training.server_lr must be in (0, {MAX_LR:g}], got {self.lr}")
        for field, value in (("server_momentum", self.momentum), ("server_beta2", self.beta2)):
            if not (0 <= value < 1 and to_q(value) < ONE):
                raise ConfigError(f"training.{field} must be in [0, 1), got {value}")
        if not 0 < self.tau <= 1:
            raise ConfigError(f"training.server_tau must be in (0, 1], got {self.tau}")

    @property
    def slots(self) -> tuple[str, ...]:
        """The state tensors this optimizer keeps (empty: stateless)."""
        return STATE_SLOTS[self.name]

    def check_resolution(self, frac_bits: int) -> None:
        """Refuse a ``tau`` below the fixed-point resolution ``2^-frac_bits``."""
        if self.slots == ("m", "v") and round(self.tau * 2**frac_bits) < 1:
            raise ConfigError(
                f"training.server_tau = {self.tau:g} is below the update resolution "
                f"2^-{frac_bits} = {2.0**-frac_bits:.3g}"
            )

    def zero_state(self, size: int) -> dict[str, np.ndarray]:
        """The state before the first step: every slot zero."""
        return {slot: np.zeros(size, np.int64) for slot in self.slots}

    def step(
        self, delta: np.ndarray, state: Mapping[str, np.ndarray], frac_bits: int, bound_q: int
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The global step for pseudo-gradient ``delta`` (fixed point, ``|Δ| < 2^31``) and
        the new state; the step is int64 with ``|step| <= bound_q``."""
        d = delta.astype(np.int64)
        if self.name == "none":
            return np.clip(d, -bound_q, bound_q), {}
        if self.name == "fedavgm":
            bound = M_MAX[self.name]
            m = np.clip(mul_q(state["m"], to_q(self.momentum)) + d, -bound, bound)
            return np.clip(mul_q(m, to_q(self.lr)), -bound_q, bound_q), {"m": m}
        b1 = to_q(self.momentum)
        m = np.clip(mul_q(state["m"], b1) + mul_q(d, ONE - b1), -ONE, ONE)
        v = _second_moment(self.name, state["v"], d, to_q(self.beta2))
        tau_q = round(self.tau * 2**frac_bits)
        # m / (√v + τ) at scale 2^-F: both at 2^-F, so shift m by F first (|m| <= 2^31).
        ratio = round_div(m << frac_bits, isqrt(v) + tau_q)
        limit = RATIO_MAX << frac_bits
        ratio = np.clip(ratio, -limit, limit)
        return np.clip(mul_q(ratio, to_q(self.lr)), -bound_q, bound_q), {"m": m, "v": v}


def server_step(
    optimizer: ServerOptimizer, aggregate: Update, state: Mapping[str, np.ndarray]
) -> tuple[Update, dict[str, np.ndarray]]:
    """The global step for a round's aggregate, as an :class:`Update` of its spec (so it moves
    the model exactly as an aggregate does), and the optimizer's new state."""
    codec = aggregate.spec.codec
    q, new_state = optimizer.step(aggregate.q, state, codec.frac_bits, codec.bound_q)
    step = q.astype(np.int32)  # |step| <= bound_q < 2^31
    step.flags.writeable = False
    return Update(aggregate.spec, step), new_state


def _second_moment(name: str, v: np.ndarray, d: np.ndarray, b2: int) -> np.ndarray:
    sq = d * d  # < 2^62: |Δ| < 2^31
    out: np.ndarray
    if name == "fedadagrad":
        out = np.minimum(v + sq, V_MAX)  # v + sq < 2^63: no wrap before the clamp
    elif name == "fedadam":
        out = np.minimum(mul_q(v, b2) + mul_q(sq, ONE - b2), V_MAX)
    else:  # fedyogi: v moves towards Δ² by (1-β2)·Δ², never past zero
        change = mul_q(sq, ONE - b2)
        out = np.clip(v - change * np.sign(v - sq), 0, V_MAX)
    return out


# --- the state's canonical bytes ------------------------------------------------------------------


def _metadata(optimizer: ServerOptimizer, spec: ModelSpec) -> dict[str, str]:
    # ONE key (safetensors writes metadata from a hash map): the header is then a function of
    # the optimizer and the spec alone, so decoding is one byte comparison.
    return {"flchain": f"server-state:{optimizer.name}:{spec.digest().hex()}"}


@functools.lru_cache(maxsize=16)
def _header(optimizer: ServerOptimizer, spec: ModelSpec) -> tuple[bytes, int]:
    zeros = optimizer.zero_state(spec.num_params)
    blob = safetensors.numpy.save(zeros, metadata=_metadata(optimizer, spec))
    header_len = 8 + int.from_bytes(blob[:8], "little")
    return blob[:header_len], len(blob)


def encode_state(
    state: Mapping[str, np.ndarray], optimizer: ServerOptimizer, spec: ModelSpec
) -> bytes:
    """The canonical bytes of an optimizer state (int64 tensors named by slot)."""
    if set(state) != set(optimizer.slots):
        raise MalformedServerState(f"state has {sorted(state)}, {optimizer.name} keeps "
                                   f"{list(optimizer.slots)}")  # fmt: skip
    arrays = {k: np.ascontiguousarray(state[k], dtype="<i8") for k in optimizer.slots}
    return safetensors.numpy.save(arrays, metadata=_metadata(optimizer, spec))


def decode_state(data: bytes, optimizer: ServerOptimizer, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Check ``data`` is the canonical state of ``optimizer`` for ``spec`` (header, size and
    value ranges) and return its slots."""
    header, size = _header(optimizer, spec)
    out = read_slots(data, header, size, optimizer.slots)
    if out is None:
        raise MalformedServerState(
            f"not a {optimizer.name} state for this model spec ({len(data)} bytes, need {size})"
        )
    check_ranges(out, optimizer)
    return out


def read_slots(
    data: bytes, header: bytes, size: int, names: Iterable[str]
) -> dict[str, np.ndarray] | None:
    """The int64 arrays ``names`` of a state blob (safetensors, canonical ``header``, ``size``
    bytes in all), or None when ``data`` is not that blob. Shared by the server optimizer's
    state and SCAFFOLD's, which carries the optimizer's slots beside ``c``."""
    if len(data) != size or bytes(data[: len(header)]) != header:
        return None
    layout = json.loads(header[8:])
    body = np.frombuffer(data, dtype="<i8", offset=len(header))
    slots = {}
    for name in names:
        a, b = (x // 8 for x in layout[name]["data_offsets"])
        slots[name] = body[a:b].astype(np.int64)
    return slots


def check_ranges(state: Mapping[str, np.ndarray], optimizer: ServerOptimizer) -> None:
    """Refuse a decoded state whose ``m`` or ``v`` is outside the range the optimizer keeps
    it in (a state no honest committee wrote)."""
    if "m" in state and np.abs(state["m"]).max(initial=0) > M_MAX[optimizer.name]:
        raise MalformedServerState(f"server state m exceeds {M_MAX[optimizer.name]}, its bound")
    if "v" in state and (state["v"].min(initial=0) < 0 or state["v"].max(initial=0) > V_MAX):
        raise MalformedServerState("server state v is outside [0, 2^62)")
