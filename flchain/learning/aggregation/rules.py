"""The classic rules: FedAvg and the robust statistics (coordinate median, trimmed mean,
Krum, Multi-Krum, Bulyan, norm-bounded mean).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from flchain.errors import AggregationError, ConfigError
from flchain.learning.aggregation.base import Aggregator, ClientUpdate, accept_all, update_vectors
from flchain.learning.aggregation.exact import gram, order_stats, sq_distances, weighted_mean


class FedAvg(Aggregator):
    """Mean weighted by sample counts (McMahan et al., 2017); score = sample count."""

    name = "fedavg"
    rule_id = 1

    def _combine(self, updates, spec):  # type: ignore[no-untyped-def]
        w = [u.num_samples for u in updates]
        return weighted_mean([u.update.q for u in updates], w), accept_all(updates)


class _BandRule(Aggregator):
    """Coordinate-wise order statistics. The score is the number of informative coordinates
    (see :func:`order_stats`) where the participant's value lies within the kept band of ranks
    ``[k, n-1-k]``; a participant inside the band less than half as often as the band's share
    ``(n-2k)/n`` is rejected as an outlier and scores 0."""

    _median: ClassVar[bool] = False

    def _trim(self, n: int) -> int:
        raise NotImplementedError

    def _combine(self, updates, spec):  # type: ignore[no-untyped-def]
        n, k = len(updates), self._trim(len(updates))
        q, counts, d = order_stats(update_vectors(updates), k, self._median)
        verdicts = {}
        for u, c in zip(updates, counts, strict=True):
            ok = 2 * n * c >= (n - 2 * k) * d  # c/d >= (n-2k)/(2n), in integers
            why = "" if ok else f"outlier: {c} of {d} informative coordinates in band"
            verdicts[u.participant] = (ok, c if ok else 0, why)
        return q, verdicts


class CoordinateMedian(_BandRule):
    """Coordinate-wise median (Yin et al., 2018); an even count takes the rounded mean of the
    two middle values. The score band is the middle half of the ranks, rounded inward
    (``k = ceil(n/4)``), so a colluding quarter or more at one extreme is never inside it."""

    name = "median"
    rule_id = 2
    _median = True

    def _trim(self, n: int) -> int:
        return min((n - 1) // 2, -(-n // 4))


class TrimmedMean(_BandRule):
    """Coordinate-wise β-trimmed mean (Yin et al., 2018): drop the ``floor(β·n)`` smallest and
    largest values of each coordinate, average the rest."""

    name = "trimmed_mean"
    rule_id = 3

    def __init__(self, beta: float = 0.1) -> None:
        if not 0 <= beta < 0.5:
            raise ConfigError(f"trimmed_mean.beta must be in [0, 0.5), not {beta}")
        self.beta = beta

    def params(self) -> dict[str, int | float]:
        return {"beta": self.beta}

    def _trim(self, n: int) -> int:
        return math.floor(self.beta * n)


def _krum_order(
    dist: list[list[int]], members: list[int], f: int, ids: list[str]
) -> list[tuple[int, str, int]]:
    """Krum scores over ``members``: sum of the squared distances to the ``r - f - 2`` nearest
    others (at least 1); returns ``(score, id, index)`` sorted, ties broken by id."""
    nb = max(1, len(members) - f - 2)
    out = []
    for i in members:
        ds = sorted(dist[i][j] for j in members if j != i)
        out.append((sum(ds[:nb]), ids[i], i))
    return sorted(out)


def _krum_inputs(
    updates: Sequence[ClientUpdate],
) -> tuple[list[np.ndarray], list[str], list[list[int]]]:
    """What the Krum family reads: the updates' vectors, their ids and the exact pairwise
    squared distances."""
    x = update_vectors(updates)
    return x, [u.participant for u in updates], sq_distances(x)


class MultiKrum(Aggregator):
    """Multi-Krum (Blanchard et al., 2017): score each update by its squared distances to its
    ``n - f - 2`` nearest neighbours, keep the ``m`` best (default ``n - f``) and average them
    weighted by samples. Kept updates score their sample count."""

    name = "multi_krum"
    rule_id = 5

    def __init__(self, f: int = 1, m: int | None = None) -> None:
        if f < 0 or (m is not None and m < 1):
            raise ConfigError(f"{self.name}: need f >= 0 and m >= 1, got f={f}, m={m}")
        self.f, self.m = f, m

    def params(self) -> dict[str, int | float]:
        return {"f": self.f} if self.m is None else {"f": self.f, "m": self.m}

    def min_inputs(self) -> int:
        return 2 * self.f + 3

    def _combine(self, updates, spec):  # type: ignore[no-untyped-def]
        x, ids, dist = _krum_inputs(updates)
        n = len(ids)
        order = _krum_order(dist, list(range(n)), self.f, ids)
        m = min(n, self.m if self.m is not None else n - self.f)
        chosen = sorted(i for _, _, i in order[:m])
        rank = {i: r for r, (_, _, i) in enumerate(order)}
        q = weighted_mean([x[i] for i in chosen], [updates[i].num_samples for i in chosen])
        verdicts = {
            ids[i]: (True, updates[i].num_samples, "")
            if rank[i] < m
            else (False, 0, f"krum rank {rank[i] + 1} of {n}, keeps {m}")
            for i in range(n)
        }
        return q, verdicts


class Krum(MultiKrum):
    """Krum (Blanchard et al., 2017): Multi-Krum keeping a single update."""

    name = "krum"
    rule_id = 4

    def __init__(self, f: int = 1) -> None:
        super().__init__(f, 1)

    def params(self) -> dict[str, int | float]:
        return {"f": self.f}


class Bulyan(Aggregator):
    """Bulyan (El Mhamdi et al., 2018): pick ``θ = n - 2f`` updates by repeated Krum, then take
    the coordinate-wise trimmed mean of the picked ones, dropping ``f`` values at each end
    (the common simplification of "the β closest to the median"). Needs ``n >= 4f + 3``.
    Picked updates score the number of coordinates where they fall in the kept band."""

    name = "bulyan"
    rule_id = 6

    def __init__(self, f: int = 1) -> None:
        if f < 0:
            raise ConfigError(f"bulyan.f must be >= 0, not {f}")
        self.f = f

    def params(self) -> dict[str, int | float]:
        return {"f": self.f}

    def min_inputs(self) -> int:
        return 4 * self.f + 3

    def _combine(self, updates, spec):  # type: ignore[no-untyped-def]
        x, ids, dist = _krum_inputs(updates)
        n = len(ids)
        remaining, picked = list(range(n)), list[int]()
        while len(picked) < n - 2 * self.f:
            best = _krum_order(dist, remaining, self.f, ids)[0][2]
            picked.append(best)
            remaining.remove(best)
        picked.sort()
        q, band, _ = order_stats([x[i] for i in picked], self.f, median=False)
        counts = dict(zip(picked, band, strict=True))
        verdicts = {
            ids[i]: (True, counts[i], "") if i in counts else (False, 0, "not picked by Krum")
            for i in range(n)
        }
        return q, verdicts


class NormBoundedMean(Aggregator):
    """Norm bounding (Sun et al., 2019): scale every update whose L2 norm exceeds ``bound`` down
    to ``bound``, then average weighted by samples. Everyone valid is accepted and scores its
    sample count; the reason notes clipping."""

    name = "norm_bounded_mean"
    rule_id = 7

    def __init__(self, bound: float = 1.0) -> None:
        if not bound > 0:
            raise ConfigError(f"norm_bounded_mean.bound must be > 0, not {bound}")
        self.bound = bound

    def params(self) -> dict[str, int | float]:
        return {"bound": self.bound}

    def _combine(self, updates, spec):  # type: ignore[no-untyped-def]
        bound = int(self.bound * 2**spec.codec.frac_bits)  # the bound in fixed-point units
        if bound >= 2**31:
            raise AggregationError(f"norm bound {self.bound} too large for the codec")
        vectors, verdicts = [], {}
        for u in updates:
            v = u.update.q
            norm = math.isqrt(gram([v])[0][0])  # floor of the exact L2 norm
            if norm > bound:
                # one IEEE multiply and round-half-even per coordinate: correctly rounded, so
                # the same bits on every machine (and 5x faster than int64 division)
                v = np.rint(v * (bound / norm)).astype(np.int32)
                verdicts[u.participant] = (True, u.num_samples, "clipped")
            else:
                verdicts[u.participant] = (True, u.num_samples, "")
            vectors.append(v)
        w = [u.num_samples for u in updates]
        return weighted_mean(vectors, w), verdicts
