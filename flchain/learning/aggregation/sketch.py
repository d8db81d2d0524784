"""Count sketches of fixed-point updates: a few hundred exact integers that keep a long vector's
direction well enough to compare it with another round's (pure maths, no rule logic).

A coordinate's bucket and sign come from splitmix64 of its index, so every machine, process and
numpy version sketches the same vector into the same integers, and a sketch made in one round
compares with one made in the next. Cosines of two sketches estimate the cosines of the vectors
(at 256 buckets on FLChain's MLP updates off by 0.04 in standard deviation, 0.15 at most;
``benchmarks/results/attack_suite_v11.md``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

#: Buckets of a sketch.
SKETCH_SIZE = 256
#: A stored sketch is rescaled so its largest bucket is this (16-bit integers: a round report
#: keeps one sketch per participant).
SKETCH_BOUND = 2**15 - 1


@functools.lru_cache(maxsize=8)
def _buckets(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``d`` coordinates' bucket and sign (±1): splitmix64 of its index."""
    z = np.arange(d, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):  # multiplication modulo 2^64 is the hash
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    bucket = (z % np.uint64(SKETCH_SIZE)).astype(np.intp)
    sign = np.where(z >> np.uint64(63), -1, 1).astype(np.int64)
    bucket.flags.writeable = sign.flags.writeable = False
    return bucket, sign


def count_sketch(x: np.ndarray) -> list[int]:
    """The exact bucket sums ``Σ_{j: b(j)=k} s(j)·xⱼ`` of an integer vector."""
    bucket, sign = _buckets(x.shape[0])
    signed = sign * x.astype(np.int64)
    if x.shape[0] * int(np.abs(signed).max(initial=0)) < 2**53:
        # every partial sum is an integer below 2^53: float64 adds them exactly in any order
        sums = np.bincount(bucket, weights=signed.astype(np.float64), minlength=SKETCH_SIZE)
        return [int(s) for s in sums]
    exact = np.zeros(SKETCH_SIZE, np.int64)
    np.add.at(exact, bucket, signed)
    return [int(s) for s in exact]


def residual_sketch(sx: Sequence[int], sv: Sequence[int]) -> tuple[int, ...]:
    """What is left of the sketch ``sx`` without its part along the sketch ``sv`` (the
    projection made in the sketch's own space: a sketch's dot products estimate the vectors',
    and exact integers cost 256 multiplications instead of a pass over the vectors), rescaled
    so its largest bucket is :data:`SKETCH_BOUND` (nearest integer, ties upward); all zeros
    when nothing is left."""
    xv = sum(a * b for a, b in zip(sx, sv, strict=True))
    vv = sum(b * b for b in sv)
    # vv·sx − xv·sv: the residual times vv > 0, the same direction, in integers
    raw = [vv * a - xv * b for a, b in zip(sx, sv, strict=True)] if vv else list(sx)
    top = max(map(abs, raw))
    if top == 0:
        return (0,) * len(raw)
    return tuple((2 * r * SKETCH_BOUND + top) // (2 * top) for r in raw)


def sketch_cosine(a: Sequence[int], b: Sequence[int], scale: int) -> int:
    """``⌊scale · cos(a, b)⌋`` of two sketches in exact integers (0 when either is zero)."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    den = math.isqrt(sum(x * x for x in a) * sum(y * y for y in b))
    return scale * dot // den if den else 0
