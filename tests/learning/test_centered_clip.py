"""centered_clip: exact kernels, the bucketed centered clipping, the screens, and a score that
follows direction rather than centrality."""

from __future__ import annotations

import math
import tomllib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from flchain.config import config_from_dict
from flchain.errors import ConfigError
from flchain.learning.aggregation import (
    RULES,
    CenteredClip,
    ClientUpdate,
    Decision,
    Failure,
    FLTrust,
    Standing,
    aggregator_from_config,
    centered_clip,
    lean_discount,
    signed_mass,
)
from flchain.learning.aggregation.clipping import _keyed_permutation, _round_seed
from flchain.learning.aggregation.exact import exact_dot
from flchain.learning.codec import Update
from flchain.learning.models import CodecParams, ModelSpec, TensorSpec

D = 400
SPEC = ModelSpec("t", (TensorSpec("w", (D,)),), CodecParams("fixed", 16, 8.0))


def make(rows: list[np.ndarray], samples: list[int] | None = None) -> list[ClientUpdate]:
    out = []
    for i, row in enumerate(rows):
        q = np.asarray(np.rint(row), np.int32).copy()
        q.flags.writeable = False
        out.append(ClientUpdate(f"p{i:02d}", Update(SPEC, q), samples[i] if samples else 10))
    return out


def honest(n: int, seed: int = 0, spread: tuple[float, float] = (1.0, 1.0)) -> list[np.ndarray]:
    """``n`` updates around one direction, each with its own noise scale in ``spread`` (a
    stand-in for clients with more or less, more or less skewed data)."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(0, 1000, D)
    scales = rng.uniform(*spread, n)
    return [mean + rng.normal(0, 1000 * s, D) for s in scales]


def test_exact_dot_matches_python_ints_at_the_limits() -> None:
    rng = np.random.default_rng(1)
    for lim in (2**16, 2**31, 2**39):
        a = rng.integers(-lim, lim, 40_000)
        b = rng.integers(-lim, lim, 40_000)
        a[:3], b[:3] = lim - 1, -lim  # the extremes
        assert exact_dot(a, b) == sum(x * y for x, y in zip(a.tolist(), b.tolist(), strict=True))


def test_exact_dot_is_exact_on_both_sides_of_the_one_dot_bound() -> None:
    """Just under ``len · max|a| · max|b| = 2^63`` one int64 dot is exact; just over it, one
    int64 dot of the same vectors would wrap (checked), and the limb path must be taken."""
    n = 4
    for m in (math.isqrt(2**63 // n) - 1, math.isqrt(2**63 // n) + 1):
        a = np.full(n, m, np.int64)
        b = np.full(n, -m, np.int64)
        exact = -n * m * m
        assert (
            exact_dot(a, b)
            == exact
            == sum(x * y for x, y in zip(a.tolist(), b.tolist(), strict=True))
        )
        assert exact_dot(a, a) == n * m * m
        if n * m * m >= 2**63:  # the case that needs the limbs
            with np.errstate(over="ignore"):
                assert int(np.dot(a, b)) != exact
    assert exact_dot(np.zeros(0, np.int64), np.zeros(0, np.int64)) == 0


def test_unclipped_centered_clip_is_the_rounded_mean() -> None:
    rng = np.random.default_rng(2)
    pts = [rng.integers(-5000, 5000, D) for _ in range(7)]
    v = centered_clip(pts, np.zeros(D, np.int64), iters=1, tau=10**9)
    total = np.sum(pts, axis=0)
    want = [int((Fraction(int(t), 7) + Fraction(1, 2)).__floor__()) for t in total]
    assert v.tolist() == want


def test_a_far_point_moves_centered_clip_by_at_most_tau_over_m() -> None:
    pts = [np.zeros(D, np.int64) for _ in range(4)] + [np.full(D, 10**6, np.int64)]
    for it in (1, 3):
        v = centered_clip(pts, np.zeros(D, np.int64), iters=it, tau=500)
        # each iteration adds at most tau/5 along the outlier's direction (plus rounding)
        assert math.isqrt(exact_dot(v, v)) <= it * (500 // 5 + math.isqrt(D))
        assert int(v.min()) >= 0


def test_keyed_permutation_is_a_permutation_fixed_by_its_seed() -> None:
    p = _keyed_permutation(10, b"a")
    assert sorted(p) == list(range(10))
    assert p == _keyed_permutation(10, b"a") and p != _keyed_permutation(10, b"b")
    ups = make(honest(5))
    assert _round_seed(ups) != _round_seed(make(honest(5, seed=1)))


def test_scores_are_the_exact_floored_cosine_with_the_aggregate() -> None:
    ups = make(honest(8, spread=(0.5, 2.0)))
    r = CenteredClip().aggregate(ups)
    v = [int(x) for x in r.update.q]
    for u, d in zip(ups, r.decisions, strict=True):
        x = [int(t) for t in u.update.q]
        dot = sum(a * b for a, b in zip(x, v, strict=True))
        den = math.isqrt(sum(a * a for a in x) * sum(b * b for b in v))
        assert d.accepted and d.reason == ""
        assert d.score == max(0, 10**6 * dot // den) > 0


def test_honest_rounds_with_uneven_noise_keep_everyone() -> None:
    for seed in range(20):
        r = CenteredClip().aggregate(make(honest(10, seed=seed, spread=(0.4, 1.6))))
        assert all(d.accepted and d.score > 0 for d in r.decisions), seed


def test_too_central_screen_boundary() -> None:
    """The known limit: an honest update much less noisy than the rest is taken for a
    computed one. With central_ratio = 2 a client 3x less noisy than the others goes."""
    rows = honest(10, seed=7)
    rows[0] = np.mean(rows[1:], axis=0) + (rows[0] - np.mean(rows[1:], axis=0)) / 3
    strict = CenteredClip(central_ratio=2).aggregate(make(rows))
    assert strict.decisions[0].reason.startswith("too central")
    assert CenteredClip().aggregate(make(rows)).decisions[0].accepted


def test_screens_reject_near_copies_boost_and_opposed_updates() -> None:
    rng = np.random.default_rng(3)
    rows = honest(10, seed=4)
    mean = np.mean(rows[3:9], axis=0)  # the honest are p03..p08
    rows[0] = -0.1 * mean  # IPM: opposes the honest direction
    rows[1] = 6 * rows[1]  # boosted
    rows[9] = rows[2] + rng.normal(0, 5, D)  # two colluders sending one vector
    r = CenteredClip().aggregate(make(rows))
    why = {d.participant: d.reason for d in r.decisions}
    assert why["p00"] == "direction opposes the aggregate"
    assert why["p01"].startswith("norm")
    assert why["p02"].startswith("near-copy") and why["p09"].startswith("near-copy")
    ok = [d for d in r.decisions if d.accepted]
    assert {d.participant for d in ok} == {f"p{i:02d}" for i in range(3, 9)}
    assert all(d.score > 0 for d in ok)
    assert all(d.score == 0 for d in r.decisions if not d.accepted)
    # the aggregate follows the honest mean, not the attackers
    q = r.update.q.astype(np.float64)
    assert float(q @ mean) / (np.linalg.norm(q) * np.linalg.norm(mean)) > 0.9


def test_the_benign_mean_is_too_central_to_be_paid() -> None:
    """An omniscient ALIE at z = 0 sends the mean of the honest updates (plus 1% noise): it
    did no work, and it sits far closer to the aggregate than any honest update."""
    rows = honest(10, seed=8)
    rows[0] = np.mean(rows[1:], axis=0) + np.random.default_rng(9).normal(0, 10, D)
    r = CenteredClip().aggregate(make(rows))
    assert r.decisions[0].reason.startswith("too central")
    assert all(d.accepted for d in r.decisions[1:])


def test_thirty_percent_colluders_leave_the_aggregate_honest() -> None:
    rows = honest(10, seed=5)
    mean = np.mean(rows[3:], axis=0)
    rng = np.random.default_rng(6)
    for i in range(3):  # omniscient IPM colluders with 1% jitter
        rows[i] = -0.1 * mean + rng.normal(0, 10, D)
    r = CenteredClip().aggregate(make(rows))
    assert [d.accepted for d in r.decisions] == [False] * 3 + [True] * 7
    q = r.update.q.astype(np.float64)
    assert float(q @ mean) / (np.linalg.norm(q) * np.linalg.norm(mean)) > 0.9


def test_small_rounds_and_config() -> None:
    one = CenteredClip().aggregate(make(honest(1)))
    assert one.update.q.tolist() == make(honest(1))[0].update.q.tolist()
    assert one.decisions[0].accepted and one.decisions[0].score == 10**6  # cos = 1 exactly
    two = CenteredClip().aggregate(make(honest(2)))
    assert all(d.accepted for d in two.decisions)
    rule = aggregator_from_config("centered_clip", {"bucket": 3, "tau": 0.5})
    assert rule.params() == {
        "bucket": 3,
        "iters": 3,
        "tau": 0.5,
        "copy_ratio": 4,
        "central_ratio": 8,
        "norm_ratio": 4,
    }
    for bad in ({"bucket": 0}, {"iters": 0}, {"tau": 0.0}, {"copy_ratio": 0}):
        with pytest.raises(ConfigError):
            CenteredClip(**bad)  # type: ignore[arg-type]


def test_a_task_config_can_name_it_and_the_ledger_has_an_id() -> None:
    raw = tomllib.loads((Path(__file__).parents[2] / "examples" / "task.toml").read_text())
    raw["aggregation"] = {"rule": "centered_clip", "params": {"bucket": 2, "iters": 3}}
    cfg = config_from_dict(raw).validate()
    assert cfg.aggregation.rule == "centered_clip"
    ids = [rule.rule_id for rule in RULES.values()]
    assert RULES["centered_clip"].rule_id > 0 and len(set(ids)) == len(ids)  # one id per rule


# --- fltrust: the same screens, scored and averaged against the owner's reference update ---

OWNER = "p99"


def with_owner(rows: list[np.ndarray], g0: np.ndarray) -> list[ClientUpdate]:
    ups = make(rows)
    q = np.asarray(np.rint(g0), np.int32).copy()
    q.flags.writeable = False
    return [*ups, ClientUpdate(OWNER, Update(SPEC, q), 100)]


def test_fltrust_is_the_exact_relu_cosine_and_rescaled_weighted_mean() -> None:
    """Scores ⌊10⁶·max(0, cos(gᵢ, g₀))⌋, updates rescaled to ‖g₀‖, aggregate Σ TSᵢ·ĝᵢ / Σ TSᵢ:
    recomputed here with Python integers and fractions."""
    rows = honest(8, seed=11, spread=(0.5, 2.0))
    g0 = np.mean(rows, axis=0) * 0.3 + np.random.default_rng(12).normal(0, 300, D)
    ups = with_owner(rows, g0)
    r = FLTrust(reference=OWNER, screens=0).aggregate(ups)
    ref = [int(t) for t in ups[-1].update.q]
    n0 = math.isqrt(sum(a * a for a in ref))
    num, den = [Fraction(0)] * D, 0
    by_id = {d.participant: d for d in r.decisions}
    assert by_id[OWNER] == Decision(OWNER, False, 0, "reference update (task owner): earns nothing")
    for u in ups[:-1]:
        x = [int(t) for t in u.update.q]
        nx = math.isqrt(sum(a * a for a in x))
        dot = sum(a * b for a, b in zip(x, ref, strict=True))
        ts = max(0, 10**6 * dot // math.isqrt(sum(a * a for a in x) * sum(b * b for b in ref)))
        assert by_id[u.participant].score == ts and by_id[u.participant].accepted == (ts > 0)
        if ts:
            scaled = [round(a * (n0 / nx)) for a in x]  # Python's round: half to even, as rint
            num = [s + ts * v for s, v in zip(num, scaled, strict=True)]
            den += ts
    want = [(2 * t + den) // (2 * den) for t in num]
    assert r.update.q.tolist() == want


def test_fltrust_rescales_boost_away_and_rejects_what_opposes_the_reference() -> None:
    rows = honest(10, seed=13)
    g0 = np.mean(rows[3:], axis=0)
    plain = FLTrust(reference=OWNER, screens=0).aggregate(with_owner(rows, g0))
    rows[1] = 3 * np.rint(rows[1])  # boosted: exactly three times the same integers
    rows[2] = -rows[2]  # sign flip
    r = FLTrust(reference=OWNER, screens=0).aggregate(with_owner(rows, g0))
    d = {x.participant: x for x in r.decisions}
    was = {x.participant: x for x in plain.decisions}
    assert d["p02"].reason == "direction opposes the reference update" and d["p02"].score == 0
    # the boost buys nothing: the same cosine, so the same score, and rescaled to ‖g₀‖
    assert d["p01"].score == was["p01"].score
    assert all(d[p].score > 0 for p in d if p not in ("p02", OWNER))
    assert d[OWNER].score == 0 and not d[OWNER].accepted
    q, mean = r.update.q.astype(np.float64), g0
    assert float(q @ mean) / (np.linalg.norm(q) * np.linalg.norm(mean)) > 0.9
    assert np.linalg.norm(q) <= np.linalg.norm(np.rint(g0)) + 1  # never longer than ‖g₀‖


def test_fltrust_keeps_the_centered_clip_screens() -> None:
    rows = honest(10, seed=5)
    mean = np.mean(rows[3:], axis=0)
    rng = np.random.default_rng(6)
    for i in range(3):  # omniscient ALIE at z = 0: the benign mean plus 1% jitter
        rows[i] = mean + rng.normal(0, 10, D)
    r = FLTrust(reference=OWNER).aggregate(with_owner(rows, mean + rng.normal(0, 800, D)))
    reasons = [d.reason for d in r.decisions[:3]]
    assert all(w.startswith(("near-copy", "too central")) for w in reasons), reasons
    assert all(d.accepted and d.score > 0 for d in r.decisions[3:10])
    # without screens the same colluders are paid at least as much as any honest update
    bare = FLTrust(reference=OWNER, screens=0).aggregate(with_owner(rows, mean))
    assert min(d.score for d in bare.decisions[:3]) >= max(d.score for d in bare.decisions[3:10])


@pytest.mark.parametrize(
    ("cap", "power", "weigh", "crowd"),
    [(0, 2, 0, 0), (1, 1, 0, 0), (1, 3, 0, 0), (1, 3, 1, 0), (0, 1, 0, 2), (1, 2, 1, 1)],
)
def test_fltrust_pays_trust_relative_to_the_rounds_median(
    cap: int, power: int, weigh: int, crowd: int
) -> None:
    """Pay ``TS`` (``m`` with ``cap``) at or above the median trust ``m``, ``⌊TSᵖ/mᵖ⁻¹⌋``
    below; with ``weigh`` the pay is also the aggregate's weight; with ``crowd`` the pay is
    then scaled by ``min(1, ρᵢ/ρₘ)^crowd``, ``ρ = trust / agreement with the aggregate``.
    Recomputed with Python ints and fractions."""
    rows = honest(9, seed=21, spread=(0.5, 2.0))
    rng = np.random.default_rng(22)
    g0 = np.mean(rows, axis=0) * 0.5 + rng.normal(0, 400, D)
    ups = with_owner(rows, g0)
    base = FLTrust(reference=OWNER, screens=0).aggregate(ups)
    rule = FLTrust(reference=OWNER, screens=0, cap=cap, power=power, weigh=weigh, crowd=crowd)
    r = rule.aggregate(ups)
    trust = {d.participant: d.score for d in base.decisions if d.accepted}
    m = sorted(trust.values())[(len(trust) - 1) // 2]
    assert len(trust) >= 5 and len(set(trust.values())) == len(trust)  # a real spread
    want = {
        p: (m if cap else t) if t >= m else t**power // m ** (power - 1) for p, t in trust.items()
    }
    weight = {p: t if t >= m else t**power // m ** (power - 1) for p, t in trust.items()}
    if weigh:  # weights: the pay without the cap
        ref = [int(t) for t in ups[-1].update.q]
        n0 = math.isqrt(sum(a * a for a in ref))
        num, den = [0] * D, 0
        for u in ups[:-1]:
            w = weight.get(u.participant, 0)
            x = [int(t) for t in u.update.q]
            nx = math.isqrt(sum(a * a for a in x))
            num = [s + w * round(a * (n0 / nx)) for s, a in zip(num, x, strict=True)]
            den += w
        assert r.update.q.tolist() == [(2 * t + den) // (2 * den) for t in num]
    else:  # pay only: the aggregate is FLTrust's
        assert r.update.q.tolist() == base.update.q.tolist()
    if crowd:
        v = [int(t) for t in r.update.q]
        vv = sum(a * a for a in v)
        agree = {}
        for u in ups[:-1]:
            x = [int(t) for t in u.update.q]
            dot = sum(a * b for a, b in zip(x, v, strict=True))
            agree[u.participant] = 10**6 * dot // math.isqrt(sum(a * a for a in x) * vv)
        rho = {p: Fraction(t, agree[p]) for p, t in trust.items() if agree[p] > 0}
        rm = sorted(rho.values())[(len(rho) - 1) // 2]
        for p, q in rho.items():
            if q < rm:
                f = q / rm
                want[p] = want[p] * f.numerator**crowd // f.denominator**crowd
    by_id = {d.participant: d for d in r.decisions}
    for p in trust:
        assert by_id[p].score == want[p], p
        assert by_id[p].accepted == bool(not weigh or weight[p])
    assert want != trust  # the options changed the pay
    assert by_id[OWNER].score == 0 and not by_id[OWNER].accepted


def _cos(x: list[int], y: list[int]) -> int:
    """⌊10⁶·cos(x, y)⌋ with Python ints (the documented trust and agreement)."""
    dot = sum(a * b for a, b in zip(x, y, strict=True))
    return 10**6 * dot // math.isqrt(sum(a * a for a in x) * sum(b * b for b in y))


def crowd_round(seed: int) -> list[ClientUpdate]:
    """Nine updates and the owner's ``g₀``; ``p00`` is the crowd's mean plus honest-sized
    noise, turned a little away from the owner's own noise: in any one round a plausible
    update, but one whose trust-to-agreement ratio is below the median every round."""
    rows = honest(9, seed=seed, spread=(0.6, 1.4))
    rng = np.random.default_rng(seed + 1000)
    own = rng.normal(0, 400, D)
    g0 = np.mean(rows[1:], axis=0) * 0.5 + own
    rows[0] = np.mean(rows[1:], axis=0) + rng.normal(0, 1000, D) - 0.8 * own
    return with_owner(rows, g0)


@pytest.mark.parametrize("memory", [1, 3])
def test_fltrust_memory_pays_by_the_evidence_of_earlier_rounds(memory: int) -> None:
    """Each paid update's crowd ratio ``ρ = TS/C`` against the round's lower median adds a
    round and +1/−1/0 to its standing; the pay is scaled by ``max(0, 1 − e/memory)`` with
    ``e = −balance − 1.5·√rounds`` when positive. Recomputed over six rounds with Python
    ints and fractions, the standing threaded from round to round as the report keeps it."""
    rule = FLTrust(reference=OWNER, screens=0, memory=memory)
    plain = FLTrust(reference=OWNER, screens=0)
    assert rule.remembers and not plain.remembers
    standing: dict[str, Standing] = {}
    want_standing: dict[str, Standing] = {}
    cut = []
    for rnd in range(6):
        ups = crowd_round(40 + rnd)
        base = plain.aggregate(ups)
        r = rule.aggregate(ups, standing=standing)
        assert r.update.q.tolist() == base.update.q.tolist()  # pay only
        assert not base.standing  # rules without memory keep none
        g0, v = [int(t) for t in ups[-1].update.q], [int(t) for t in r.update.q]
        paid = [d for d in base.decisions if d.accepted]
        rho = {}
        for u in ups[:-1]:
            if any(d.participant == u.participant for d in paid):
                x = [int(t) for t in u.update.q]
                rho[u.participant] = Fraction(_cos(x, g0), _cos(x, v))
        rm = sorted(rho.values())[(len(rho) - 1) // 2]
        by_id = {d.participant: d for d in r.decisions}
        for d in paid:
            old = want_standing.get(d.participant, Standing(0, 0))
            q = rho[d.participant]
            s = Standing(old.rounds + 1, old.balance + (q > rm) - (q < rm))
            want_standing[d.participant] = s
            slack = math.isqrt(9 * s.rounds * 10**12 // 4)  # ⌊1.5·√rounds·10⁶⌋
            assert abs(slack - 1.5e6 * math.sqrt(s.rounds)) <= 1
            excess = -s.balance * 10**6 - slack  # in millionths of a round
            want = d.score
            if excess > 0:
                want = d.score * max(0, memory * 10**6 - excess) // (memory * 10**6)
            assert by_id[d.participant].score == want, (rnd, d.participant)
        assert r.standing == want_standing
        standing = dict(r.standing)
        cut.append(by_id["p00"].score / max(d.score for d in paid))
    assert standing["p00"] == Standing(6, -6)  # below the median every round
    assert all(abs(s.balance) < 6 for p, s in standing.items() if p != "p00")
    assert cut[0] > 0.5 and cut[-1] < cut[0]  # little evidence at first, more later
    if memory == 1:
        assert cut[-1] == 0


def test_fltrust_memory_keeps_the_standing_of_the_absent_and_of_rounds_without_g0() -> None:
    rule = FLTrust(reference=OWNER, screens=0, memory=2)
    before = {"p00": Standing(4, -4), "gone": Standing(3, 1)}
    r = rule.aggregate(crowd_round(7), standing=before)
    assert r.standing["gone"] == Standing(3, 1)  # absent this round: kept as it was
    assert r.standing["p00"].rounds == 5
    assert set(r.standing) == {"gone"} | {d.participant for d in r.decisions if d.accepted}
    ups = [u for u in crowd_round(7) if u.participant != OWNER]  # the owner did not reveal
    assert rule.aggregate(ups, standing=before).standing == before
    assert FLTrust(reference=OWNER).aggregate(crowd_round(7), standing=before).standing == {}


def test_fltrust_pay_options_are_checked() -> None:
    for bad in ({"cap": 2}, {"power": 0}, {"power": 5}, {"weigh": -1}, {"crowd": 4}, {"memory": 5}):
        with pytest.raises(ConfigError, match="fltrust"):
            FLTrust(reference=OWNER, **bad)
    assert FLTrust(cap=1, power=3).params() | {"cap": 1, "power": 3, "weigh": 0, "crowd": 0} == (
        FLTrust(cap=1, power=3).params()
    )
    assert "memory" not in FLTrust().params() and FLTrust(memory=2).params()["memory"] == 2


def test_fltrust_falls_back_to_centered_clip_without_a_usable_reference() -> None:
    rows = honest(8, seed=14)
    plain = CenteredClip().aggregate(make(rows))
    why = "no usable reference update: centered_clip fallback"
    for ups, fails in (
        (make(rows), []),  # the owner did not reveal
        (make(rows), [Failure(OWNER, "bad bytes")]),  # its update did not decode
        (with_owner(rows, np.zeros(D)), []),  # it sent the global model back
    ):
        r = FLTrust(reference=OWNER).aggregate(ups, fails)
        assert r.update.q.tolist() == plain.update.q.tolist()
        clients = [d for d in r.decisions if d.participant != OWNER]
        assert [(d.accepted, d.score) for d in clients] == [
            (d.accepted, d.score) for d in plain.decisions
        ]
        assert all(d.reason.startswith(why) for d in clients)
        assert all(d.score == 0 for d in r.decisions if d.participant == OWNER)
    only = FLTrust(reference=OWNER).aggregate(with_owner([], honest(1)[0]))
    assert not only.update.q.any() and only.decisions[0].score == 0


def test_a_task_names_the_reference_account_for_fltrust_only() -> None:
    raw = tomllib.loads((Path(__file__).parents[2] / "examples" / "task.toml").read_text())
    owner = "0x" + "aB" * 20
    raw["aggregation"] = {"rule": "fltrust", "reference_account": owner}
    cfg = config_from_dict(raw)
    assert cfg.to_dict()["aggregation"]["reference_account"] == owner
    rule = aggregator_from_config("fltrust", {}, owner)
    assert isinstance(rule, FLTrust) and rule._is_reference(owner.lower())
    assert RULES["fltrust"].rule_id == 9
    raw["aggregation"] = {"rule": "fltrust"}
    with pytest.raises(ConfigError, match="reference_account"):
        config_from_dict(raw)
    raw["aggregation"] = {"rule": "centered_clip", "reference_account": owner}
    with pytest.raises(ConfigError, match="for fltrust"):
        config_from_dict(raw)
    raw["aggregation"] = {"rule": "centered_clip"}
    assert "reference_account" not in config_from_dict(raw).to_dict()["aggregation"]
    with pytest.raises(ConfigError):
        FLTrust(screens=2)


def _rescaled_mean(ups: list[ClientUpdate], weight: dict[str, int], band_k: int = 0) -> list[int]:
    """FLTrust's aggregate recomputed with Python ints: each weighted update rescaled to
    ‖g₀‖ (round half to even, as rint), clamped coordinate by coordinate into the band of
    ranks ``band_k`` and ``n-1-band_k`` of the weighted ones, then the rounded weighted mean."""
    ref = [int(t) for t in ups[-1].update.q]
    n0 = math.isqrt(sum(a * a for a in ref))
    rows, ws = [], []
    for u in ups[:-1]:
        if weight.get(u.participant, 0):
            x = [int(t) for t in u.update.q]
            nx = math.isqrt(sum(a * a for a in x))
            rows.append([round(a * (n0 / nx)) for a in x])
            ws.append(weight[u.participant])
    if band_k:
        cols = [sorted(c) for c in zip(*rows, strict=True)]
        lo, hi = [c[band_k] for c in cols], [c[-1 - band_k] for c in cols]
        rows = [
            [min(max(a, low), high) for a, low, high in zip(r, lo, hi, strict=True)] for r in rows
        ]
    den = sum(ws)
    num = [sum(w * r[j] for w, r in zip(ws, rows, strict=True)) for j in range(D)]
    return [(2 * t + den) // (2 * den) for t in num]


def sybil_round(seed: int) -> list[ClientUpdate]:
    """Ten updates and ``g₀``: three sybils (``p00``-``p02``) share one extra direction (a
    backdoor's goal) on top of their own honest-looking updates."""
    rows = honest(10, seed=seed, spread=(0.6, 1.6))
    rng = np.random.default_rng(seed + 500)
    goal = rng.normal(0, 1500, D)
    for i in range(3):
        rows[i] = rows[i] + goal
    g0 = np.mean(rows[3:], axis=0) * 0.5 + rng.normal(0, 400, D)
    return with_owner(rows, g0)


@pytest.mark.parametrize(("power", "weigh", "pay"), [(1, 0, 0), (2, 0, 1), (2, 1, 0), (3, 1, 1)])
def test_fltrust_sybil_discounts_the_weight_of_the_most_alike(
    power: int, weigh: int, pay: int
) -> None:
    """``sᵢ = maxⱼ ⌊10⁶·cos(xᵢ, xⱼ)⌋`` over the other accepted updates, ``m`` its lower
    median; weight (and pay with ``sybil_pay``) scaled by ``((10⁶ − sᵢ)/(10⁶ − m))^power``
    above ``m``. Recomputed with Python ints; the three sybils are the three most discounted."""
    ups = sybil_round(31)
    base = FLTrust(reference=OWNER, screens=0, power=2, weigh=weigh).aggregate(ups)
    rule = FLTrust(reference=OWNER, screens=0, power=2, weigh=weigh, sybil=power, sybil_pay=pay)
    r = rule.aggregate(ups)
    paid = {d.participant: d.score for d in base.decisions if d.accepted}
    assert len(paid) == 10
    trust = {
        u.participant: _cos([int(t) for t in u.update.q], [int(t) for t in ups[-1].update.q])
        for u in ups[:-1]
    }
    m_t = sorted(trust.values())[4]
    weight = {p: t if t >= m_t else t * t // m_t for p, t in trust.items()} if weigh else trust
    xs = {u.participant: [int(t) for t in u.update.q] for u in ups[:-1]}
    near = {p: max(_cos(x, y) for q, y in xs.items() if q != p) for p, x in xs.items()}
    m = sorted(near.values())[4]

    def discount(amount: int, p: str) -> int:
        s = near[p]
        return amount * (10**6 - s) ** power // (10**6 - m) ** power if s > m else amount

    discounted = {p: discount(a, p) for p, a in paid.items()}
    want_weight = {p: discount(a, p) for p, a in weight.items()}
    by_id = {d.participant: d for d in r.decisions}
    assert {p: by_id[p].score for p in paid} == (discounted if pay else paid)
    assert r.update.q.tolist() == _rescaled_mean(ups, want_weight)
    factor = {p: Fraction(discounted[p], paid[p]) for p in paid}
    assert set(sorted(factor, key=factor.__getitem__)[:3]) == {"p00", "p01", "p02"}
    assert max(factor[p] for p in ("p00", "p01", "p02")) < 1


def test_fltrust_band_clamps_every_coordinate_into_the_rounds_band() -> None:
    """``band=b``: every rescaled update clamped, coordinate by coordinate, between the
    ``k``-th smallest and largest (``k = ⌊b·n/100⌋``) before the weighted mean (recomputed
    with Python ints). Weights three sybils alone move (a trigger on pixels honest data
    leave at 0) stay at 0 once ``k`` reaches their count, and not before."""
    rows = honest(10, seed=41)
    trigger = slice(0, 40)
    for i in range(10):
        rows[i][trigger] = 0.0
    for i in range(3):
        rows[i][trigger] = 4000.0 + 100 * i
    ups = with_owner(rows, np.mean(rows[3:], axis=0))
    trust = {
        d.participant: d.score
        for d in FLTrust(reference=OWNER, screens=0).aggregate(ups).decisions
        if d.accepted
    }
    assert len(trust) == 10
    for band, k in ((10, 1), (20, 2), (30, 3), (49, 4)):
        r = FLTrust(reference=OWNER, screens=0, band=band).aggregate(ups)
        q = r.update.q.tolist()
        assert q == _rescaled_mean(ups, trust, k), band
        assert (max(q[trigger]) == 0) == (k >= 3), band
        assert {d.participant: d.score for d in r.decisions if d.accepted} == trust  # pay alone


def support_round(seed: int) -> tuple[list[ClientUpdate], slice]:
    """Ten updates and ``g₀``; ``g₀`` leaves the first 40 coordinates at exactly 0 (inputs its
    root data never ink), honest updates put a little there, three backdoor updates
    (``p00``-``p02``) a lot (their trigger)."""
    rows = honest(10, seed=seed, spread=(0.6, 1.6))
    rng = np.random.default_rng(seed + 700)
    unmoved = slice(0, 40)
    for i in range(10):
        rows[i][unmoved] = rng.normal(0, 30, 40)
    for i in range(3):
        rows[i][unmoved] = rng.normal(0, 3000, 40)
    g0 = np.mean(rows[3:], axis=0)
    g0[unmoved] = 0.0
    return with_owner(rows, g0), unmoved


@pytest.mark.parametrize(("power", "mask"), [(1, 0), (2, 1), (4, 0), (0, 1)])
def test_fltrust_support_pays_and_weighs_the_share_the_reference_can_check(
    power: int, mask: int
) -> None:
    """``support=p``: pay and weight times ``((‖x‖² − ‖x|U‖²)/‖x‖²)^p`` (floor), ``U`` the
    coordinates ``g₀`` leaves at 0; ``mask=1``: the aggregate is 0 on ``U``. Recomputed with
    Python ints; the three updates with their mass on ``U`` are the three most discounted."""
    ups, unmoved = support_round(17)
    base = FLTrust(reference=OWNER, screens=0).aggregate(ups)
    trust = {d.participant: d.score for d in base.decisions if d.accepted}
    assert len(trust) == 10
    r = FLTrust(reference=OWNER, screens=0, support=power, mask=mask).aggregate(ups)
    factor = {}
    for u in ups[:-1]:
        x = [int(t) for t in u.update.q]
        total = sum(a * a for a in x)
        inside = total - sum(a * a for a in x[unmoved])
        factor[u.participant] = (inside**power, total**power)
    want = {p: t * factor[p][0] // factor[p][1] for p, t in trust.items()}
    assert {d.participant: d.score for d in r.decisions if d.accepted} == want
    q = _rescaled_mean(ups, want)
    if mask:
        q[unmoved] = [0] * 40
    assert r.update.q.tolist() == q
    assert (max(map(abs, r.update.q[unmoved].tolist())) == 0) == bool(mask)
    if power:
        kept = {p: Fraction(*factor[p]) for p in trust}
        assert set(sorted(kept, key=kept.__getitem__)[:3]) == {"p00", "p01", "p02"}
        assert max(kept[p] for p in ("p00", "p01", "p02")) < min(
            kept[p] for p in trust if p not in ("p00", "p01", "p02")
        )


def test_fltrust_support_without_unmoved_coordinates_changes_nothing() -> None:
    ups = sybil_round(5)
    g0 = ups[-1].update.q.astype(np.float64)
    g0[g0 == 0] = 1.0  # the reference moves every coordinate
    ups = with_owner([u.update.q.astype(np.float64) for u in ups[:-1]], g0)
    a = FLTrust(reference=OWNER, screens=0).aggregate(ups)
    b = FLTrust(reference=OWNER, screens=0, support=4, mask=1).aggregate(ups)
    assert a.update.q.tolist() == b.update.q.tolist() and a.decisions == b.decisions


def quiet_round(seed: int) -> tuple[list[ClientUpdate], list[int]]:
    """Ten updates and ``g₀``, which moves every coordinate but the last 40 only a little
    (inputs its root data rarely ink): honest updates follow ``g₀``'s magnitudes, three
    backdoor updates (``p00``-``p02``) put a large extra part there. Returns the quiet
    coordinates (``|g₀|`` at most its lower median) computed here in Python."""
    rows = honest(10, seed=seed, spread=(0.6, 1.6))
    rng = np.random.default_rng(seed + 900)
    faint = slice(D - 40, D)
    g0 = np.mean(rows[3:], axis=0)
    g0[faint] = rng.normal(0, 20, 40)
    for i in range(10):
        rows[i][faint] = rng.normal(0, 60, 40)
    for i in range(3):
        rows[i][faint] += rng.normal(0, 5000, 40)
    ups = with_owner(rows, g0)
    mags = [abs(int(t)) for t in ups[-1].update.q]
    cut = sorted(mags)[(D - 1) // 2]
    return ups, [j for j in range(D) if mags[j] <= cut]


@pytest.mark.parametrize("power", [1, 2, 4])
def test_fltrust_quiet_discounts_an_unusual_share_where_the_reference_is_quiet(
    power: int,
) -> None:
    """``quiet=p``: ``sᵢ`` the share of ``‖xᵢ‖²`` on the coordinates where ``|g₀|`` is at most
    its lower median, ``m`` 3/2 of the lower median ``sᵢ``; pay and weight of an update with
    ``sᵢ > m`` times ``(m/sᵢ)^p`` (floor). Recomputed with Python ints and fractions: exactly
    the three backdoor updates are discounted, the aggregate is the reweighted mean."""
    ups, quiet = quiet_round(23)
    base = FLTrust(reference=OWNER, screens=0).aggregate(ups)
    trust = {d.participant: d.score for d in base.decisions if d.accepted}
    assert len(trust) == 10
    share = {}
    for u in ups[:-1]:
        x = [int(t) for t in u.update.q]
        share[u.participant] = Fraction(sum(x[j] ** 2 for j in quiet), sum(a * a for a in x))
    m = sorted(share.values())[4] * Fraction(3, 2)
    want = {p: t if share[p] <= m else int(t * (m / share[p]) ** power) for p, t in trust.items()}
    assert {p for p in trust if want[p] < trust[p]} == {"p00", "p01", "p02"}
    r = FLTrust(reference=OWNER, screens=0, quiet=power).aggregate(ups)
    assert {d.participant: d.score for d in r.decisions if d.accepted} == want
    assert r.update.q.tolist() == _rescaled_mean(ups, want)


def test_fltrust_quiet_leaves_a_round_without_an_unusual_share_alone() -> None:
    """Honest updates only (each one's share within 3/2 of the median): nothing changes."""
    ups, _ = quiet_round(31)
    rows = [u.update.q.astype(np.float64) for u in ups[3:-1]]
    ups = with_owner(rows, ups[-1].update.q.astype(np.float64))
    a = FLTrust(reference=OWNER, screens=0).aggregate(ups)
    b = FLTrust(reference=OWNER, screens=0, quiet=4).aggregate(ups)
    assert a.update.q.tolist() == b.update.q.tolist() and a.decisions == b.decisions


def lean_round(seed: int, z: float = 0.52) -> list[ClientUpdate]:
    """Ten updates and ``g₀``: seven honest ones around one direction, and three (``p00``-
    ``p02``) crafted like the noisy colluding ALIE: the honest mean minus ``z·σ`` per
    coordinate (``σ`` the honest spread; ``z`` 0.52 as ALIE's for 3 of 10) plus honest-sized
    noise."""
    rows = honest(10, seed=seed, spread=(0.6, 1.6))
    rng = np.random.default_rng(seed + 1100)
    benign = np.stack(rows[3:])
    mu, sigma = benign.mean(axis=0), benign.std(axis=0)
    for i in range(3):
        rows[i] = mu - z * sigma + rng.normal(0, 1, D) * sigma
    return with_owner(rows, mu + rng.normal(0, 300, D))


def _signed_mass(u: ClientUpdate) -> Fraction:
    x = [int(t) for t in u.update.q]
    return Fraction(sum(x), sum(abs(a) for a in x))


@pytest.mark.parametrize("power", [1, 2, 4])
def test_fltrust_lean_pays_a_shift_down_by_the_formula_and_leaves_the_aggregate(
    power: int,
) -> None:
    """``lean=p``: ``rᵢ = Σxᵢ / Σ|xᵢ|``, ``m`` the lower median of the accepted updates'
    ``rᵢ``; pay of an update with ``m − rᵢ > 1/10`` times ``((1/10)/(m − rᵢ))^p`` (floor).
    Recomputed with Python ints and fractions: exactly the three shifted updates are paid
    less; the aggregate and who is accepted are as without ``lean`` (pay only)."""
    ups = lean_round(41)
    base = FLTrust(reference=OWNER, screens=0).aggregate(ups)
    trust = {d.participant: d.score for d in base.decisions if d.accepted}
    assert len(trust) == 10
    r_of = {u.participant: _signed_mass(u) for u in ups[:-1]}
    m = sorted(r_of.values())[4]
    tenth = Fraction(1, 10)
    want = {
        p: t if m - r_of[p] <= tenth else int(t * (tenth / (m - r_of[p])) ** power)
        for p, t in trust.items()
    }
    assert {p for p in trust if want[p] < trust[p]} == {"p00", "p01", "p02"}
    r = FLTrust(reference=OWNER, screens=0, lean=power).aggregate(ups)
    assert {d.participant: d.score for d in r.decisions if d.accepted} == want
    assert {d.participant for d in r.decisions if d.accepted} == set(trust)
    assert r.update.q.tolist() == base.update.q.tolist()


def test_fltrust_lean_composes_with_the_aggregate_options() -> None:
    """With ``support``, ``mask`` and ``quiet`` (the demo's), ``lean`` scales the pay they
    leave, and the model is theirs."""
    ups = lean_round(43)
    opts = {"support": 2, "mask": 1, "quiet": 2}
    a = FLTrust(reference=OWNER, screens=0, **opts).aggregate(ups)
    b = FLTrust(reference=OWNER, screens=0, lean=2, **opts).aggregate(ups)
    assert a.update.q.tolist() == b.update.q.tolist()
    before = {d.participant: d.score for d in a.decisions if d.accepted}
    r_of = {u.participant: _signed_mass(u) for u in ups[:-1] if u.participant in before}
    m = sorted(r_of.values())[(len(r_of) - 1) // 2]
    tenth = Fraction(1, 10)
    want = {
        p: s if m - r_of[p] <= tenth else int(s * (tenth / (m - r_of[p])) ** 2)
        for p, s in before.items()
    }
    assert {d.participant: d.score for d in b.decisions if d.accepted} == want
    assert {p for p in want if want[p] < before[p]} == {"p00", "p01", "p02"}


def test_fltrust_lean_leaves_honest_like_updates_alone() -> None:
    """Honest updates only: nothing is paid less. The same round with the three crafted
    updates shifted *up* instead: they keep their pay (the test is one-sided)."""
    for seed in (41, 47):
        ups = lean_round(seed)
        honest_only = with_owner(
            [u.update.q.astype(np.float64) for u in ups[3:-1]],
            ups[-1].update.q.astype(np.float64),
        )
        a = FLTrust(reference=OWNER, screens=0).aggregate(honest_only)
        b = FLTrust(reference=OWNER, screens=0, lean=4).aggregate(honest_only)
        assert a.update.q.tolist() == b.update.q.tolist() and a.decisions == b.decisions
    up = lean_round(41, z=-0.52)
    a = FLTrust(reference=OWNER, screens=0).aggregate(up)
    b = FLTrust(reference=OWNER, screens=0, lean=4).aggregate(up)
    assert a.update.q.tolist() == b.update.q.tolist()
    assert [d for d in a.decisions if d.participant < "p03"] == [
        d for d in b.decisions if d.participant < "p03"
    ]


def test_signed_mass_and_lean_discount_edges() -> None:
    assert signed_mass(np.array([3, -1, 0], np.int32)) == Fraction(2, 4)
    assert signed_mass(np.zeros(5, np.int32)) == 0
    assert signed_mass(np.full(3, -(2**31) + 1, np.int64)) == -1
    one = [np.array([-5, -5], np.int32)]
    assert lean_discount([[7]], one, 4) == [[7]]  # one vector: no round to compare with
    # r = 1, 1, 0.4: median 1, gap 0.6: 1000 · (1/6)² = 27.7…
    xs = [np.array([1, 1]), np.array([2, 3]), np.array([7, -3])]
    assert lean_discount([[1000, 1000, 1000], [5, 5, 5]], xs, 2) == [[1000, 1000, 27], [5, 5, 0]]


def test_fltrust_band_and_sybil_options_are_checked() -> None:
    for bad in (
        {"band": -1},
        {"band": 50},
        {"sybil": 5},
        {"sybil": -1},
        {"sybil_pay": 2},
        {"support": 5},
        {"mask": 2},
        {"quiet": 5},
        {"quiet": -1},
        {"lean": 5},
        {"lean": -1},
    ):
        with pytest.raises(ConfigError, match="fltrust"):
            FLTrust(reference=OWNER, **bad)
    assert not {"band", "sybil", "support", "mask", "quiet", "lean"} & set(FLTrust().params())
    assert FLTrust(quiet=2).params()["quiet"] == 2
    assert FLTrust(lean=3).params()["lean"] == 3
    assert FLTrust(support=2, mask=1).params() | {"support": 2, "mask": 1} == (
        FLTrust(support=2, mask=1).params()
    )
    assert (
        FLTrust(band=30, sybil=2).params() | {"band": 30, "sybil": 2}
        == FLTrust(band=30, sybil=2).params()
    )
