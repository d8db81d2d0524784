"""``fltrust``'s ``persist``: count sketches of each update's own part, kept in the standing from
round to round, and pay by how much that part persists. Recomputed here in plain Python ints
(splitmix64, bucket sums, the residual, the cosine, the median and the formula), so the numpy
kernels and the rule's bookkeeping are checked against an independent implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flchain.errors import ConfigError
from flchain.learning.aggregation import (
    SKETCH_BOUND,
    SKETCH_SIZE,
    ClientUpdate,
    FLTrust,
    Standing,
)
from flchain.learning.aggregation.sketch import count_sketch, residual_sketch, sketch_cosine
from flchain.learning.codec import Update
from flchain.learning.models import CodecParams, ModelSpec, TensorSpec

D = 3000
SPEC = ModelSpec("t", (TensorSpec("w", (D,)),), CodecParams("fixed", 16, 8.0))
OWNER = "owner"
MASK64 = 2**64 - 1


def _splitmix(j: int) -> int:
    z = (j + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def py_sketch(x: list[int]) -> list[int]:
    out = [0] * SKETCH_SIZE
    for j, v in enumerate(x):
        h = _splitmix(j)
        out[h % SKETCH_SIZE] += -v if h >> 63 else v
    return out


def py_residual(x: list[int], v: list[int]) -> list[int]:
    """``x``'s sketch without its part along ``v``'s sketch, rescaled to ±SKETCH_BOUND
    (nearest, ties up)."""
    sx, sv = py_sketch(x), py_sketch(v)
    xv, vv = sum(a * b for a, b in zip(sx, sv, strict=True)), sum(b * b for b in sv)
    raw = [vv * a - xv * b for a, b in zip(sx, sv, strict=True)] if vv else sx
    top = max(abs(r) for r in raw)
    if not top:
        return [0] * SKETCH_SIZE
    return [(2 * r * SKETCH_BOUND + top) // (2 * top) for r in raw]  # r·B/top, ties upward


def py_cos(a: list[int], b: list[int]) -> int:
    den = math.isqrt(sum(x * x for x in a) * sum(y * y for y in b))
    return 10**6 * sum(x * y for x, y in zip(a, b, strict=True)) // den if den else 0


def test_count_sketch_is_splitmix64_bucket_sums_on_both_paths() -> None:
    rng = np.random.default_rng(5)
    small = rng.integers(-(2**20), 2**20, D)
    assert count_sketch(small.astype(np.int32)) == py_sketch(small.tolist())  # float64 path
    big = rng.integers(-(2**45), 2**45, 700)  # D·max ≥ 2^53: the int64 path
    assert count_sketch(big) == py_sketch(big.tolist())
    assert count_sketch(np.zeros(9, np.int32)) == [0] * SKETCH_SIZE


def test_residual_sketch_and_cosine_match_python() -> None:
    rng = np.random.default_rng(6)
    v = rng.integers(-5000, 5000, D)
    for x in (rng.integers(-5000, 5000, D), 3 * v + 1, v * 0):
        got = residual_sketch(count_sketch(x), count_sketch(v))
        assert list(got) == py_residual(x.tolist(), v.tolist())
        assert max(map(abs, got)) in (0, SKETCH_BOUND)
    # x along v leaves nothing of its own: all zeros, and a cosine of 0 with anything
    x = 3 * v
    assert set(residual_sketch(count_sketch(x), count_sketch(v))) == {0}
    a, b = [3, -4, 0], [6, 8, 1]
    assert sketch_cosine(a, b, 10**6) == 10**6 * (18 - 32) // math.isqrt(25 * 101)
    assert sketch_cosine(a, [0, 0, 0], 10**6) == 0


def persist_rounds(rounds: int, seed: int = 3) -> list[list[ClientUpdate]]:
    """Ten participants (an even count: the lower median is not the upper) and the owner,
    ``rounds`` rounds. Each round has its own common
    direction; honest ``p03``-``p09`` add their own fixed direction (their data) and fresh
    noise, crafted ``p00``-``p02`` only fresh noise (the round's statistics, new each round)."""
    rng = np.random.default_rng(seed)
    own = [rng.normal(0, 600, D) for _ in range(10)]
    out = []
    for _ in range(rounds):
        common = rng.normal(0, 1000, D)
        rows = [
            common + (0 if i < 3 else own[i]) + rng.normal(0, 700 if i < 3 else 400, D)
            for i in range(10)
        ]
        g0 = common + rng.normal(0, 300, D)
        ups = [
            ClientUpdate(p, Update(SPEC, np.asarray(np.rint(r), np.int32)), 10)
            for p, r in [*((f"p{i:02d}", row) for i, row in enumerate(rows)), (OWNER, g0)]
        ]
        for u in ups:
            u.update.q.flags.writeable = False
        out.append(ups)
    return out


@pytest.mark.parametrize("power", [1, 2, 4])
def test_persist_pays_updates_without_a_lasting_part_of_their_own_less(power: int) -> None:
    """Round by round, recomputed in Python: each accepted update's own part sketched against
    the aggregate, ``ρ`` its cosine with the sketch the standing keeps, ``m`` the lower median;
    pay times ``(max(0, 2ρ)/m)^p`` below ``m/2``. The first round has nothing to compare with;
    after it exactly the three crafted updates are paid less; the aggregate and the accepted
    set are those without ``persist``; the standing counts one round per accepted update."""
    plain = FLTrust(reference=OWNER, screens=0)
    rule = FLTrust(reference=OWNER, screens=0, persist=power)
    assert rule.remembers and rule.params()["persist"] == power and "persist" not in plain.params()
    standing: dict[str, Standing] = {}
    for rnd, ups in enumerate(persist_rounds(4)):
        base = plain.aggregate(ups)
        r = rule.aggregate(ups, standing=standing)
        assert r.update.q.tolist() == base.update.q.tolist()
        paid = {d.participant: d.score for d in base.decisions if d.accepted}
        assert {d.participant for d in r.decisions if d.accepted} == set(paid)
        v = [int(t) for t in r.update.q]
        sketch = {u.participant: py_residual([int(t) for t in u.update.q], v) for u in ups}
        rho = {p: py_cos(sketch[p], list(standing[p].sketch)) for p in paid if p in standing}
        m = sorted(rho.values())[(len(rho) - 1) // 2] if rho else 0
        want = dict(paid)
        for p, r_p in rho.items():
            if m > 0 and 2 * r_p < m:
                want[p] = paid[p] * max(0, 2 * r_p) ** power // m**power
        got = {d.participant: d.score for d in r.decisions if d.accepted}
        assert got == want, rnd
        cut = {p for p in paid if got[p] < paid[p]}
        assert cut == (set() if rnd == 0 else {"p00", "p01", "p02"}), rnd
        for p in paid:
            assert r.standing[p] == Standing(standing.get(p, Standing(0, 0)).rounds + 1, 0,
                                             tuple(sketch[p]))  # fmt: skip
        if rnd:  # the reason says why
            (why,) = [d.reason for d in r.decisions if d.participant == "p00"]
            assert f"persistence {rho['p00']} (round median {m})" in why
        standing = dict(r.standing)


def test_persist_keeps_the_absent_and_composes_with_memory() -> None:
    rounds = persist_rounds(3, seed=4)
    rule = FLTrust(reference=OWNER, screens=0, persist=2)
    first = rule.aggregate(rounds[0]).standing
    gone = {**first, "gone": Standing(2, 0, (1,) * SKETCH_SIZE)}
    r = rule.aggregate([u for u in rounds[1] if u.participant != "p05"], standing=gone)
    assert r.standing["gone"] == gone["gone"] and r.standing["p05"] == first["p05"]
    # with memory: one round counted for both, memory's balance and persist's sketch kept
    both = FLTrust(reference=OWNER, screens=0, persist=2, memory=2)
    s1 = both.aggregate(rounds[0]).standing
    s2 = both.aggregate(rounds[1], standing=s1).standing
    mem = FLTrust(reference=OWNER, screens=0, memory=2)
    m2 = mem.aggregate(rounds[1], standing=mem.aggregate(rounds[0]).standing).standing
    for p, s in s2.items():
        assert s.rounds == 2 and s.balance == m2[p].balance and len(s.sketch) == SKETCH_SIZE
    assert not any(s.sketch for s in m2.values())  # memory alone keeps no sketch
    with pytest.raises(ConfigError, match="persist"):
        FLTrust(reference=OWNER, persist=5)


def test_a_copied_update_is_in_the_aggregate_once_pays_nothing_and_adds_no_evidence() -> None:
    """``p04`` copies honest ``p03``'s update: both are paid 0 and keep their standing (a copy
    adds no evidence), and the aggregate is the round without ``p04``: ``p03``'s data once."""
    rounds = persist_rounds(2, seed=5)
    rule = FLTrust(reference=OWNER, screens=0, persist=2, memory=2)
    first = rule.aggregate(rounds[0]).standing
    ups = list(rounds[1])
    copied = ups[3]
    ups[4] = ClientUpdate("p04", copied.update, copied.num_samples)
    r = rule.aggregate(ups, standing=first)
    by = {d.participant: d for d in r.decisions}
    for p in ("p03", "p04"):
        assert not by[p].accepted and by[p].score == 0 and "identical" in by[p].reason
        assert r.standing[p] == first[p]
    alone = rule.aggregate([u for u in ups if u.participant != "p04"], standing=first)
    assert r.update.q.tolist() == alone.update.q.tolist()
    assert all(by[p].accepted for p in ("p05", "p06", "p07", "p08", "p09"))


def test_hold_weighs_the_aggregate_by_persistence_and_leaves_pay_and_standing_alone() -> None:
    """``hold=1``: the aggregate is ``Σ TSᵢ·fᵢ·ĝᵢ / Σ TSᵢ·fᵢ`` with ``fᵢ = (max(0, 2ρᵢ)/m)^p``
    for the updates with ``2ρᵢ < m`` (``ρ`` recomputed here in Python against the aggregate
    without ``hold``), 1 for the others; decisions and standing are those without it."""
    power = 2
    plain = FLTrust(reference=OWNER, screens=0, persist=power)
    held = FLTrust(reference=OWNER, screens=0, persist=power, hold=1)
    assert held.params()["hold"] == 1 and "hold" not in plain.params()
    standing: dict[str, Standing] = {}
    for rnd, ups in enumerate(persist_rounds(4, seed=7)):
        base = plain.aggregate(ups, standing=standing)
        r = held.aggregate(ups, standing=standing)
        assert r.decisions == base.decisions and r.standing == base.standing
        v = [int(t) for t in base.update.q]
        g0 = [int(t) for t in ups[-1].update.q]
        sq0 = sum(t * t for t in g0)
        n0 = math.isqrt(sq0)
        sketch = {u.participant: py_residual([int(t) for t in u.update.q], v) for u in ups}
        accepted = [u for u in ups[:-1] if any(d.participant == u.participant and d.accepted
                                              for d in base.decisions)]  # fmt: skip
        rho = {
            u.participant: py_cos(sketch[u.participant], list(standing[u.participant].sketch))
            for u in accepted
            if u.participant in standing
        }
        m = sorted(rho.values())[(len(rho) - 1) // 2] if rho else 0
        num = [0] * D
        den = 0
        for u in accepted:
            x = [int(t) for t in u.update.q]
            sq = sum(t * t for t in x)
            w = 10**6 * sum(a * b for a, b in zip(x, g0, strict=True)) // math.isqrt(sq * sq0)
            r_p = rho.get(u.participant)
            if r_p is not None and m > 0 and 2 * r_p < m:
                w = w * max(0, 2 * r_p) ** power // m**power
            scaled = np.rint(np.asarray(x, np.int64) * (n0 / math.isqrt(sq))).astype(np.int64)
            num = [a + w * int(b) for a, b in zip(num, scaled, strict=True)]
            den += w
        want = [(2 * a + den) // (2 * den) for a in num]  # nearest, ties upward
        assert r.update.q.tolist() == want, rnd
        if rnd == 0:
            assert r.update.q.tolist() == base.update.q.tolist()  # nothing to compare with yet
        else:
            assert r.update.q.tolist() != base.update.q.tolist()
        standing = dict(r.standing)
    with pytest.raises(ConfigError, match="hold"):
        FLTrust(reference=OWNER, hold=1)
