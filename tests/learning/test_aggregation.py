from __future__ import annotations

import hashlib
import json
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.tools import run_with_threads

from flchain.errors import AggregationError, ConfigError
from flchain.learning.aggregation import (
    RULES,
    SKETCH_BOUND,
    SKETCH_SIZE,
    AggregateResult,
    Aggregator,
    Bulyan,
    CenteredClip,
    ClientUpdate,
    CoordinateMedian,
    Failure,
    FedAvg,
    FLTrust,
    Krum,
    MultiKrum,
    NormBoundedMean,
    Standing,
    TrimmedMean,
    aggregator_from_config,
)
from flchain.learning.aggregation.exact import gram
from flchain.learning.codec import Update, encode_update
from flchain.learning.models import CodecParams, ModelSpec, TensorSpec

SPEC = ModelSpec("t", (TensorSpec("w", (40,)),), CodecParams("fixed", 16, 8.0))
B = SPEC.codec.bound_q


def make(
    q: np.ndarray, spec: ModelSpec = SPEC, samples: list[int] | None = None, prefix: str = "p"
) -> list[ClientUpdate]:
    out = []
    for i, row in enumerate(np.asarray(q, np.int32)):
        row = row.copy()
        row.flags.writeable = False
        n = samples[i] if samples else 10
        out.append(ClientUpdate(f"{prefix}{i:02d}", Update(spec, row), n))
    return out


def rnd(seed: int, n: int, d: int = 40, scale: int = 1000) -> np.ndarray:
    return np.random.default_rng(seed).integers(-scale, scale + 1, (n, d)).astype(np.int32)


def ref_round(num: int, den: int) -> int:
    """Nearest integer to num/den, ties upward (the documented rule)."""
    return int((Fraction(num, den) + Fraction(1, 2)).__floor__())


def result_bytes(r: AggregateResult) -> bytes:
    standing = json.dumps(sorted(r.standing.items())).encode()
    return encode_update(r.update, r.update.spec) + json.dumps(r.report()).encode() + standing


ALL_RULES = [
    FedAvg(),
    CoordinateMedian(),
    TrimmedMean(0.2),
    Krum(2),
    MultiKrum(2, 5),
    Bulyan(1),
    NormBoundedMean(0.01),
    CenteredClip(),
    CenteredClip(bucket=3, iters=2, tau=0.05),
    FLTrust(reference="p03"),
    FLTrust(reference="p03", screens=0),
    FLTrust(reference="p03", cap=1, power=3, weigh=1),
    FLTrust(reference="p03", cap=1, crowd=2),
    FLTrust(reference="p03", memory=2),
    FLTrust(reference="p03", screens=0, power=2, weigh=1, cap=1, crowd=2, memory=3),
    FLTrust(reference="p03", sybil=2),
    FLTrust(reference="p03", sybil=1, sybil_pay=1),
    FLTrust(reference="p03", band=30),
    FLTrust(reference="p03", support=2, mask=1),
    FLTrust(reference="p03", quiet=2),
    FLTrust(reference="p03", support=2, mask=1, quiet=4),
    FLTrust(reference="p03", lean=2),
    FLTrust(reference="p03", support=2, mask=1, quiet=2, lean=4),
    FLTrust(reference="p03", persist=2),
    FLTrust(reference="p03", support=2, mask=1, quiet=2, lean=2, persist=4, memory=1),
    FLTrust(reference="p03", support=2, mask=1, quiet=2, lean=2, persist=2, hold=1),
    FLTrust(reference="p03", screens=0, power=2, weigh=1, sybil=3, band=20, crowd=1),
]
#: A sketch for ``persist`` to compare with (any integers within the bound do).
SKETCH = tuple((i * 7919) % (2 * SKETCH_BOUND + 1) - SKETCH_BOUND for i in range(SKETCH_SIZE))
#: Evidence from earlier rounds, for the rules with memory (and one participant not in any round).
STANDING = {
    "p00": Standing(5, -5),
    "p01": Standing(2, 2, SKETCH),
    "p06": Standing(9, -3, SKETCH[::-1]),
    "x": Standing(1, 0),
}


def result_of(rule: Aggregator, ups: list[ClientUpdate], fails: list[Failure]) -> AggregateResult:
    return (
        rule.aggregate(ups, fails, standing=STANDING)
        if rule.remembers
        else rule.aggregate(ups, fails)
    )


def test_fedavg_is_the_exact_rounded_weighted_mean() -> None:
    q, w = rnd(1, 5), [3, 1, 7, 2, 11]
    r = FedAvg().aggregate(make(q, samples=w))
    want = [ref_round(sum(int(q[i, j]) * w[i] for i in range(5)), sum(w)) for j in range(40)]
    assert r.update.q.tolist() == want
    assert [(d.accepted, d.score) for d in r.decisions] == [(True, x) for x in w]


def test_fedavg_int64_path_for_huge_sample_counts() -> None:
    q, w = rnd(2, 4, scale=2**31 - 1), [2**24, 2**24 - 1, 5, 2**23]  # Σw ≥ 2^22: int64 path
    r = FedAvg().aggregate(make(q, samples=w))
    want = [ref_round(sum(int(q[i, j]) * w[i] for i in range(4)), sum(w)) for j in range(40)]
    assert r.update.q.tolist() == want


def test_fedavg_is_exact_across_slabs_of_updates_and_coordinates() -> None:
    # more updates and coordinates than one slab of the weighted sum holds, at the largest
    # weights and values the float path takes (every partial sum just under 2^53)
    n, d = 150, 9000
    spec = ModelSpec("t", (TensorSpec("w", (d,)),), CodecParams("fixed", 16, 8.0))
    q = rnd(3, n, d=d, scale=2**31 - 1)
    q[:, :7] = 2**31 - 1
    w = [(2**22 - 1) // n] * (n - 1) + [2**22 - 1 - (n - 1) * ((2**22 - 1) // n)]
    r = FedAvg().aggregate(make(q, spec, samples=w))
    sums = (q.astype(object) * np.array(w, dtype=object)[:, None]).sum(axis=0)
    assert r.update.q.tolist() == [ref_round(int(x), sum(w)) for x in sums]


def test_median_and_trimmed_mean_match_sorting() -> None:
    for n in (5, 6, 10):
        q = rnd(n, n)
        s = np.sort(q.astype(np.int64), axis=0)
        med = CoordinateMedian().aggregate(make(q)).update.q
        assert med.tolist() == [
            ref_round(int(s[(n - 1) // 2, j] + s[n // 2, j]), 2) for j in range(40)
        ]
        k = int(0.2 * n)
        tm = TrimmedMean(0.2).aggregate(make(q)).update.q
        assert tm.tolist() == [ref_round(int(s[k : n - k, j].sum()), n - 2 * k) for j in range(40)]


def test_band_rules_reject_a_far_outlier_and_score_in_band_counts() -> None:
    q = rnd(3, 9, scale=100)
    q[4] = 5000  # far above every honest value in every coordinate
    r = TrimmedMean(0.2).aggregate(make(q))
    bad = r.decisions[4]
    assert not bad.accepted and bad.score == 0 and "outlier: 0 of 40 informative" in bad.reason
    q[:, :10] = 7  # coordinates everybody agrees on tell nothing about anyone
    r = TrimmedMean(0.2).aggregate(make(q))
    assert "0 of 30 informative" in r.decisions[4].reason
    good = [d for i, d in enumerate(r.decisions) if i != 4]
    assert all(d.accepted and 0 < d.score <= 40 for d in good)


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_median_scores_every_honest_update_for_odd_and_even_counts(n: int) -> None:
    # Regression: with an odd count the median's band is one rank wide, and every update
    # used to score 0, so a round of 3 or 5 honest participants paid nobody.
    q = rnd(11, n, d=400, scale=100)
    q[:, :5] = 3  # coordinates everybody agrees on still tell nothing about anyone
    r = CoordinateMedian().aggregate(make(q))
    assert all(d.accepted and d.score > 0 for d in r.decisions), r.decisions
    assert sum(d.score for d in r.decisions) >= 395  # every informative coordinate counts


def test_gram_is_exact_at_int32_extremes_across_blocks() -> None:
    rng = np.random.default_rng(4)
    d = (1 << 15) * 2 + 17  # crosses two block boundaries
    x = rng.choice(np.array([-(2**31), 2**31 - 1, -1, 0, 65535, -65536], np.int64), (3, d))
    x = x.astype(np.int32)
    xo = x.astype(object)
    want = [[int(np.dot(xo[i], xo[j])) for j in range(3)] for i in range(3)]
    assert gram(list(x)) == want
    small = (x // 2**12).astype(np.int32)  # |q| < 2^20: the one-limb path
    so = small.astype(object)
    assert gram(list(small)) == [[int(np.dot(so[i], so[j])) for j in range(3)] for i in range(3)]


def test_krum_keeps_the_honest_cluster_and_breaks_ties_by_id() -> None:
    q = rnd(5, 7, scale=10)
    q[[1, 5]] = rnd(6, 2, scale=B)  # two far-away attackers
    r = MultiKrum(f=2).aggregate(make(q))
    assert [d.accepted for d in r.decisions] == [True, False, True, True, True, False, True]
    assert "krum rank" in r.decisions[1].reason
    # four updates at the corners of a square: all Krum scores tie, the smallest id wins
    sq = np.zeros((4, 40), np.int32)
    sq[:, :2] = [[1, 1], [1, -1], [-1, 1], [-1, -1]]
    for prefix in ("b", "a"):
        k = Krum(f=0).aggregate(make(sq[::-1], prefix=prefix))
        assert [d.accepted for d in k.decisions] == [True, False, False, False]


def test_bulyan_drops_attackers_and_needs_4f_plus_3() -> None:
    q = rnd(7, 7, scale=10)
    q[2] = -B
    r = Bulyan(f=1).aggregate(make(q))
    assert not r.decisions[2].accepted and r.decisions[2].reason == "not picked by Krum"
    assert int(np.abs(r.update.q).max()) <= 10
    with pytest.raises(AggregationError, match="at least 7"):
        Bulyan(f=1).aggregate(make(q[:6]))


def test_norm_bounded_mean_clips_to_the_bound() -> None:
    q = rnd(8, 3, scale=10)
    q[1] = 30000
    bound = 1.0  # 65536 in fixed point; row 1 has norm 30000·√40 ≈ 189737
    r = NormBoundedMean(bound).aggregate(make(q))
    assert [d.reason for d in r.decisions] == ["", "clipped", ""]
    clipped = r.update.q.astype(np.int64) * 3 - q[0] - q[2]  # ≈ the clipped row
    assert abs(float(np.linalg.norm(clipped)) - 65536) < 40


def test_copies_zeros_failures_and_bad_sample_counts_get_nothing() -> None:
    q = rnd(9, 6)
    q[3] = q[1]
    q[4] = 0
    ups = make(q, samples=[10, 30, 10, 20, 10, 0])
    r = FedAvg().aggregate(ups, [Failure("p99", "digest mismatch")])
    by = {d.participant: d for d in r.decisions}
    assert [p for p, d in by.items() if d.accepted] == ["p00", "p02"]
    assert "identical" in by["p01"].reason and "identical" in by["p03"].reason
    assert by["p01"].score == by["p03"].score == 0
    # The copies' update is in the aggregate once, weighed by the smaller of their counts (20).
    once = FedAvg().aggregate(make(q[:3], samples=[10, 20, 10]))
    assert np.array_equal(r.update.q, once.update.q)
    without = FedAvg().aggregate([ups[0], ups[2]])
    assert not np.array_equal(r.update.q, without.update.q)
    assert "counted once" in by["p01"].reason
    assert "empty" in by["p04"].reason and "num_samples=0" in by["p05"].reason
    assert by["p99"].reason == "invalid: digest mismatch" and by["p99"].score == 0
    assert [d.participant for d in r.decisions] == sorted(by)


def test_usage_errors() -> None:
    ups = make(rnd(10, 3))
    with pytest.raises(AggregationError, match="more than once"):
        FedAvg().aggregate(ups, [Failure("p00", "x")])
    with pytest.raises(AggregationError, match="at least 7"):
        Krum(f=2).aggregate(ups)
    with pytest.raises(AggregationError, match="too many"):
        FedAvg().aggregate(make(rnd(10, 200), samples=[2**24] * 200))
    with pytest.raises(AggregationError, match="at least 1"):
        FedAvg().aggregate([], [Failure("p00", "x")])
    with pytest.raises(ConfigError, match="unknown aggregation rule"):
        aggregator_from_config("mean")
    with pytest.raises(ConfigError, match="bad parameters"):
        aggregator_from_config("krum", {"beta": 1})
    with pytest.raises(ConfigError):
        TrimmedMean(0.5)
    assert aggregator_from_config("multi_krum", {"f": 2, "m": 3}).params() == {"f": 2, "m": 3}
    assert set(RULES) == {
        "fedavg",
        "median",
        "trimmed_mean",
        "krum",
        "multi_krum",
        "bulyan",
        "norm_bounded_mean",
        "centered_clip",
        "fltrust",
    }


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.permutations(range(9)))
def test_every_rule_is_independent_of_arrival_order(seed: int, perm: list[int]) -> None:
    q = rnd(seed, 9, scale=B)
    ups = make(q, samples=[int(x) for x in np.random.default_rng(seed).integers(1, 500, 9)])
    shuffled = [ups[i] for i in perm]
    fails = [Failure("x1", "missing"), Failure("x0", "bad")]
    for rule in ALL_RULES:
        a = result_of(rule, ups, fails)
        b = result_of(rule, shuffled, fails[::-1])
        assert result_bytes(a) == result_bytes(b), rule.name


_CHILD = """
import hashlib, json, sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from flchain.learning.aggregation import *
from flchain.learning.codec import Update, apply_update, encode_model, encode_update
from flchain.learning.models import CodecParams, ModelSpec, TensorSpec
spec = ModelSpec("t", (TensorSpec("w", (70000,)),), CodecParams("fixed", 20, 64.0))
gen = torch.Generator().manual_seed(3)
state = {"w": torch.randn(70000, generator=gen)}
rng = np.random.default_rng(11)
q = rng.integers(-spec.codec.bound_q, spec.codec.bound_q + 1, (9, 70000)).astype(np.int32)
q[4, :5000] = 0  # coordinates the reference update p4 leaves alone (fltrust's support, mask)
order = rng.permutation(9) if sys.argv[1] == "2" else range(9)
ups = [ClientUpdate(f"p{i}", Update(spec, q[i]), 1 + 37 * i) for i in order]
h = hashlib.sha256()
sk = np.random.default_rng(12).integers(-SKETCH_BOUND, SKETCH_BOUND + 1, SKETCH_SIZE)
sk = tuple(int(t) for t in sk)
standing = {"p1": Standing(5, -5), "p2": Standing(2, 2, sk), "p7": Standing(9, -3, sk[::-1]),
            "p0": Standing(3, 1, sk[1:] + sk[:1]), "x": Standing(1, 0)}
for rule in [FedAvg(), CoordinateMedian(), TrimmedMean(0.2), Krum(2), MultiKrum(2), Bulyan(1),
             NormBoundedMean(3.0), CenteredClip(), CenteredClip(bucket=3, tau=1.0),
             FLTrust(reference="p4"), FLTrust(reference="p4", screens=0), FLTrust(reference="p"),
             FLTrust(reference="p4", cap=1, power=3, weigh=1), FLTrust(reference="p4", power=2),
             FLTrust(reference="p4", cap=1, crowd=2), FLTrust(reference="p4", memory=1),
             FLTrust(reference="p4", power=2, weigh=1, cap=1, crowd=2, memory=3),
             FLTrust(reference="p4", sybil=2), FLTrust(reference="p4", band=30),
             FLTrust(reference="p4", sybil=2, sybil_pay=1),
             FLTrust(reference="p4", support=2), FLTrust(reference="p4", support=4, mask=1),
             FLTrust(reference="p4", quiet=1), FLTrust(reference="p4", support=2, mask=1, quiet=2),
             FLTrust(reference="p4", screens=0, power=2, weigh=1, sybil=3, band=20),
             FLTrust(reference="p4", persist=2), FLTrust(reference="p4", memory=2, persist=3),
             FLTrust(reference="p4", persist=2, hold=1),
             FLTrust(reference="p4", support=2, mask=1, quiet=2, lean=2, persist=2, hold=1)]:
    r = rule.aggregate(ups, standing=standing) if rule.remembers else rule.aggregate(ups)
    h.update(encode_update(r.update, spec) + json.dumps(r.report()).encode())
    h.update(json.dumps(sorted(r.standing.items())).encode())  # what the next round reads
    h.update(encode_model(apply_update(state, r.update), spec))  # the next global model
# lean: updates halfway to the reference p4 (so trusted), p1, p6 and p8 then shifted down in
# every coordinate (ALIE's -z·σ)
q2 = (q.astype(np.int64) + q[4]) // 2
q2[[1, 6, 8]] = np.maximum(q2[[1, 6, 8]] - spec.codec.bound_q // 4, -spec.codec.bound_q)
ups2 = [ClientUpdate(f"p{i}", Update(spec, q2[i].astype(np.int32)), 1 + 37 * i) for i in order]
for rule in [FLTrust(reference="p4", screens=0, lean=1), FLTrust(reference="p4", lean=2),
             FLTrust(reference="p4", support=2, mask=1, quiet=2, lean=4)]:
    r = rule.aggregate(ups2)
    h.update(encode_update(r.update, spec) + json.dumps(r.report()).encode())
    h.update(encode_model(apply_update(state, r.update), spec))
print(h.hexdigest())
"""


def test_same_bytes_in_separate_processes_with_1_and_2_threads() -> None:
    digests = [run_with_threads(_CHILD, threads).strip() for threads in (1, 2)]
    assert len(digests[0]) == 64 and digests[0] == digests[1]
    assert hashlib.sha256(b"").hexdigest() not in digests
