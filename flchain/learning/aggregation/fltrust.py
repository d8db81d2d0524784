"""FLTrust (Cao et al., NDSS 2021): trust and pay from each update's agreement with the task
owner's reference update, and the pay options FLChain adds to it (pure functions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from flchain.errors import ConfigError
from flchain.learning.aggregation.base import ClientUpdate, Standing, Standings, Verdicts
from flchain.learning.aggregation.clipping import CenteredClip
from flchain.learning.aggregation.exact import (
    block_columns,
    exact_dot,
    exact_weighted_mean,
    gram,
    lower_median,
    rescale,
)
from flchain.learning.aggregation.sketch import count_sketch, residual_sketch, sketch_cosine
from flchain.learning.models import ModelSpec


class FLTrust(CenteredClip):
    """FLTrust (Cao, Fang, Liu & Gong, NDSS 2021): the task owner's own update, trained on a
    small root data set, is the reference direction ``g₀``; scores and aggregate follow it.

    The reference account (``aggregation.reference_account`` in the task manifest) must be the
    task's owner as the chain records it: creating the task, loading its manifest and building
    a round's inputs refuse any other (:meth:`TaskManifest.check_owner`), since whoever sends
    ``g₀`` steers every round's aggregate and pay. It commits and reveals like any
    participant, so commit-reveal hides ``g₀`` from attackers until every update is fixed.
    Its update is used only as ``g₀``: it is not averaged in and scores 0 (it earns nothing).

    For every other update ``gᵢ`` that passes the screens of :class:`CenteredClip` (near-copy,
    norm, too central, opposed; ``screens=0`` skips them, as in the paper):

    * trust ``TSᵢ = ⌊10⁶·max(0, cos(gᵢ, g₀))⌋`` in exact integers (integer square root of
      the product of the exact squared lengths), which is also the update's score: rewards
      follow agreement with an update the attackers never saw, not centrality;
    * ``ĝᵢ = gᵢ·‖g₀‖/‖gᵢ‖`` (lengths by integer square root, one correctly rounded multiply
      per coordinate), so a boosted update weighs no more than a normal one;
    * aggregate ``Σ TSᵢ·ĝᵢ / Σ TSᵢ`` (exact integer sum, rounded to the nearest fixed-point
      value). An update with ``TSᵢ = 0`` is rejected (it points away from ``g₀``).

    Without a usable reference update (not revealed, invalid, empty or a copy) the round falls
    back to plain :class:`CenteredClip` with the same parameters, and every decision's reason
    says so. Needs no forward pass, so it covers every model, the CNN included.

    Pay options, all off by default (:meth:`_pay`, :func:`crowd_pay`): ``power`` pays trust
    below the round's median disproportionately less, ``cap`` pays no more than the median,
    ``weigh`` uses the (uncapped) pay as the aggregate's weight, ``crowd`` pays less to an
    update that agrees with the round's aggregate much more than with ``g₀``. Each one that
    pays attackers less pays the least-paid honest client less too
    (``benchmarks/results/attack_suite_v5.md``). ``memory`` (:func:`remembered_pay`) pays
    less to a participant whose crowd ratio has been below the round's median in
    significantly more of its rounds than above, from the evidence the previous round
    report keeps (``benchmarks/results/attack_suite_v6.md``).

    Aggregate options, off by default. ``sybil=p`` (1-4; :func:`sybil_discount`) weighs an
    update that resembles another one of the round more than the round's typical update does
    less in the aggregate (sybils pursuing one backdoor share its direction; honest clients
    share only what their data share); ``sybil_pay=1`` discounts its pay the same way, which
    also pays an honest client that resembles another less, and an update crafted from the
    benign mean plus noise (which resembles nobody in particular) relatively more.
    ``band=b`` (percent, 0-49) clamps, coordinate by
    coordinate, every rescaled update in the aggregate into the band between the round's
    ``k``-th smallest and ``k``-th largest value of that coordinate (``k = ⌊b·n/100⌋`` of the
    ``n`` updates averaged; :func:`winsorize`) before the trust-weighted mean. Rescaling
    bounds an update's length, not where it puts it: a backdoor whose update is half honest
    keeps its trust and writes its trigger into weights the honest clients leave alone (a
    pixel pattern on MNIST's nearly always black corner: their updates are mostly 0 there). With
    ``k`` at least the attackers' count, such a coordinate's band is the honest value. Pay
    does not change (trust is computed before); ``benchmarks/results/attack_suite_v7.md``.

    Reference-support options, off by default. The owner's update leaves exactly at 0 the
    coordinates its root data give no gradient (first-layer weights of pixels no root image
    inks), so trust cannot check what an update does there. ``support=p`` (1-4;
    :func:`support_discount`) multiplies pay and aggregate weight by ``(1 − oᵢ)^p``, ``oᵢ``
    the share of the update's squared length on those coordinates; ``mask=1`` leaves them
    at 0 in the aggregate. A trigger drawn on pixels the owner's data never ink is both
    unpaid and not learnt; one drawn on inked pixels is untouched by either
    (``benchmarks/results/attack_suite_v8.md``). ``quiet=p`` (1-4; :func:`quiet_discount`)
    does the same relative to the round for the half of the coordinates where ``|g₀|`` is
    smallest: an update whose share of squared length there is more than 3/2 of the round's
    median share has pay and weight times ``(1.5·median/share)^p``. It needs no exact zeros,
    so it also sees a trigger on inked pixels and the CNN's, whose shared filters ``g₀``
    moves everywhere (``benchmarks/results/attack_suite_v9.md``).

    Pay option against a one-direction shift, off by default. ``lean=p`` (1-4;
    :func:`lean_discount`) pays less to an update whose signed mass ``rᵢ = Σxᵢ / Σ|xᵢ|`` is
    more than 1/10 below the round's lower median: pay times ``((1/10)/(m − rᵢ))^p``. ALIE
    (Baruch et al., NeurIPS 2019) sends the benign mean minus ``z·σ`` in every coordinate,
    ``σ ≥ 0``, so even with honest-sized noise on top its ``r`` falls past that slack in every
    round measured, while its cosine with ``g₀`` and its quiet share are honest-like; 0-10 %
    of honest updates fall past it too (``benchmarks/results/attack_suite_v10.md``). Pay only:
    the aggregate weights are not touched (an earlier, unrecorded attempt found that leaning
    them cost accuracy on Dirichlet data; not re-measured), so a run with ``lean`` learns the
    same model as without. An attacker that knows the test defeats it for free by shifting
    along ``−z·σ·sign(μ)`` (toward 0; measured there) or with random signs instead.

    Pay option against updates crafted from the round's statistics, off by default.
    ``persist=p`` (1-4; :func:`persisted_pay`) pays less to an update whose own part (what is
    left of it without its part along the round's aggregate) does not point where the same
    participant's did in its previous round: an honest participant's data are the same every
    round, while ALIE, IPM and ``alie_shrink`` send the round's benign statistics plus fresh
    noise. The own part is kept as a 256-integer count sketch in the participant's
    :class:`Standing` (the round report), so the next round's committee compares without the
    earlier update. Pay only, like ``lean``; the first round a participant is paid in has
    nothing to compare with and is paid in full. Measured in
    ``benchmarks/results/attack_suite_v11.md``, where colluders that draw the same noise
    every round get past it (their own part persists: paid as without ``persist``).
    ``hold=1`` (with ``persist``) weighs the aggregate by the same factor, in a second pass
    (:func:`persistence_weights`; own parts are taken against the aggregate without it, so
    pay, verdicts and standing are those without ``hold``): a crafted update is then not
    only unpaid but left out of the model (``benchmarks/results/attack_suite_v12.md``).

    Limits: the owner's root data must look like the task's data (FLTrust's assumption); an
    honest client whose skewed data points away from ``g₀`` earns less (measured in
    ``benchmarks/results/attack_suite_v4.md``); a crafted update close to the benign mean
    plus honest-sized noise agrees with ``g₀`` as well as an honest one does.
    """

    name = "fltrust"
    rule_id = 9

    def __init__(
        self,
        reference: str = "",
        screens: int = 1,
        cap: int = 0,
        power: int = 1,
        weigh: int = 0,
        crowd: int = 0,
        memory: int = 0,
        band: int = 0,
        sybil: int = 0,
        sybil_pay: int = 0,
        support: int = 0,
        mask: int = 0,
        quiet: int = 0,
        lean: int = 0,
        persist: int = 0,
        hold: int = 0,
        **clip: Any,
    ) -> None:
        super().__init__(**clip)
        if persist not in (0, 1, 2, 3, 4):
            raise ConfigError(f"{self.name}: persist must be 0 to 4, got {persist}")
        self.persist = int(persist)
        if hold not in (0, 1) or (hold and not persist):
            raise ConfigError(f"{self.name}: hold must be 0 or 1, and 1 only with persist")
        self.hold = int(hold)
        if lean not in (0, 1, 2, 3, 4):
            raise ConfigError(f"{self.name}: lean must be 0 to 4, got {lean}")
        self.lean = int(lean)
        if quiet not in (0, 1, 2, 3, 4):
            raise ConfigError(f"{self.name}: quiet must be 0 to 4, got {quiet}")
        self.quiet = int(quiet)
        if support not in (0, 1, 2, 3, 4) or mask not in (0, 1):
            raise ConfigError(
                f"{self.name}: support must be 0 to 4 and mask 0 or 1, got {support}, {mask}"
            )
        self.support, self.mask = int(support), int(mask)
        if sybil not in (0, 1, 2, 3, 4) or sybil_pay not in (0, 1):
            raise ConfigError(
                f"{self.name}: sybil must be 0 to 4 and sybil_pay 0 or 1, got {sybil}, {sybil_pay}"
            )
        self.sybil, self.sybil_pay = int(sybil), int(sybil_pay)
        if band not in range(50):
            raise ConfigError(f"{self.name}: band must be an integer percent 0 to 49, got {band}")
        self.band = int(band)
        if screens not in (0, 1) or cap not in (0, 1) or weigh not in (0, 1):
            raise ConfigError(
                f"{self.name}: screens, cap and weigh must be 0 or 1, got {screens}, {cap}, {weigh}"
            )
        if power not in (1, 2, 3, 4) or crowd not in (0, 1, 2, 3):
            raise ConfigError(
                f"{self.name}: power must be 1 to 4 and crowd 0 to 3, got {power}, {crowd}"
            )
        self.reference, self.screens = reference, int(screens)
        self.cap, self.power, self.weigh = int(cap), int(power), int(weigh)
        if memory not in (0, 1, 2, 3, 4):
            raise ConfigError(f"{self.name}: memory must be 0 to 4, got {memory}")
        self.crowd, self.memory = int(crowd), int(memory)

    def params(self) -> dict[str, int | float]:
        pay = {"cap": self.cap, "power": self.power, "weigh": self.weigh, "crowd": self.crowd}
        # memory=0 stays out, so the parameters of tasks without it are what they were
        mem = {"memory": self.memory} if self.memory else {}
        # likewise band and sybil
        named = (
            ("band", self.band),
            ("sybil", self.sybil),
            ("sybil_pay", self.sybil_pay),
            ("support", self.support),
            ("mask", self.mask),
            ("quiet", self.quiet),
            ("lean", self.lean),
            ("persist", self.persist),
            ("hold", self.hold),
        )
        new = {k: v for k, v in named if v}
        return super().params() | {"screens": self.screens} | pay | mem | new

    @property
    def remembers(self) -> bool:
        return self.memory > 0 or self.persist > 0

    def _remember(
        self,
        updates: Sequence[ClientUpdate],
        v: np.ndarray,
        verdicts: Verdicts,
        standing: Standings,
    ) -> tuple[np.ndarray, Verdicts, dict[str, Standing]]:
        """:func:`remembered_pay` (``memory``) and :func:`persisted_pay` (``persist``) on
        the accepted updates (exact trust and agreement with the aggregate ``v``, as the rule
        computes them). A round without a usable reference update adds no evidence and keeps
        everyone's standing. With ``hold`` the aggregate is made again with each update's
        weight times its persistence factor (:func:`persistence_weights`); otherwise ``v``."""
        ref = [u for u in updates if self._is_reference(u.participant)]
        if not ref:
            return v, verdicts, dict(standing)
        g0 = ref[0].update.q
        paid = [u for u in updates if u is not ref[0] and verdicts[u.participant][0]]
        who = [u.participant for u in paid]
        before = [verdicts[p][1] for p in who]
        pay, after, why = list(before), dict(standing), dict.fromkeys(who, "")
        if self.memory:
            trust = [cosine_score(u.update.q, g0) for u in paid]
            vv = exact_dot(v, v)
            agree = [cosine_score(u.update.q, v, sq_y=vv) for u in paid]
            pay, after = remembered_pay(who, pay, trust, agree, standing, self.memory)
            for p, was, now in zip(who, before, pay, strict=True):
                if now != was:
                    why[p] = f"standing {after[p].balance} in {after[p].rounds} rounds"
        held: dict[str, tuple[int, int]] = {}
        if self.persist:
            was_paid = list(pay)
            pay, after, rho, m = persisted_pay(paid, pay, v, standing, after, self.persist)
            for p, was, now in zip(who, was_paid, pay, strict=True):
                if now != was:
                    note = f"persistence {rho[p]} (round median {m})"
                    why[p] = f"{why[p]}; {note}" if why[p] else note
            if self.hold:
                held = persistence_weights(rho, m, self.persist)
        out = dict(verdicts)
        for p, was, now in zip(who, before, pay, strict=True):
            if now != was:
                reason = verdicts[p][2]
                note = f"{why[p]}: paid {now} of {was}"
                out[p] = (True, now, f"{reason}; {note}" if reason else note)
        if held:
            # The second pass: the same rule with these weights; pay, verdicts and standing
            # stay the first pass's (own parts are taken against the aggregate without hold).
            q, _ = self._combine(updates, updates[0].update.spec, held)
            v = q.astype(np.int32)
            v.flags.writeable = False
        return v, out, after

    def _pay(self, trust: Sequence[int], cap: bool | None = None) -> list[int]:
        """Each accepted update's pay from its trust, relative to the round's (lower) median
        trust ``m``: ``TS`` at or above ``m`` (``m`` with ``cap``, default the rule's),
        ``⌊TSᵖ / mᵖ⁻¹⌋`` below it (``p = power``). Exact integers. ``power`` > 1 pays an
        update that agrees with ``g₀`` markedly less than the round's typical one (a boosted
        backdoor, a crafted update offset from the benign mean) disproportionately less;
        ``cap`` stops paying agreement beyond the typical, which a client whose data resemble
        the owner's root set gets by luck, not by work. With ``weigh`` the same without the
        cap is the update's weight in the aggregate (the cap is about pay only: above the
        median, more agreement with ``g₀`` still means a better update to average in)."""
        m = lower_median(trust)
        if m == 0:
            return list(trust)
        top = self.cap if cap is None else cap
        return [
            (m if top else ts) if ts >= m else ts**self.power // m ** (self.power - 1)
            for ts in trust
        ]

    def _is_reference(self, participant: str) -> bool:
        # addresses arrive checksummed from the committee, lower-case from a hand-written config
        return bool(self.reference) and participant.lower() == self.reference.lower()

    def _combine(
        self,
        updates: Sequence[ClientUpdate],
        spec: ModelSpec,
        held: Mapping[str, tuple[int, int]] | None = None,
    ) -> tuple[np.ndarray, dict[str, tuple[bool, int, str]]]:
        """``held``: participant -> (numerator, denominator) of a factor on its aggregate
        weight (``hold``'s second pass); verdicts are those without it."""
        ref = [u for u in updates if self._is_reference(u.participant)]
        others = [u for u in updates if not self._is_reference(u.participant)]
        if not ref:
            v, verdicts = super()._combine(updates, spec)
            why = "no usable reference update: centered_clip fallback"
            return v, {p: (a, s, f"{why}; {r}" if r else why) for p, (a, s, r) in verdicts.items()}
        g0 = ref[0].update.q
        verdicts = {ref[0].participant: (False, 0, "reference update (task owner): earns nothing")}
        sq0 = exact_dot(g0, g0)
        n0 = math.isqrt(sq0)
        if not others:
            return np.zeros_like(g0, dtype=np.int64), verdicts
        if self.screens:
            alive, screened, _, sq = self._screen(others, spec)
            verdicts |= screened
        else:
            alive, sq = (
                list(range(len(others))),
                [exact_dot(u.update.q, u.update.q) for u in others],
            )
        vectors, trust = [], []
        for i in alive:
            u = others[i]
            den = math.isqrt(sq[i] * sq0)
            ts = max(0, self.SCALE * exact_dot(u.update.q, g0) // den) if den else 0
            if ts == 0:
                verdicts[u.participant] = (False, 0, "direction opposes the reference update")
                continue
            verdicts[u.participant] = (True, ts, "")
            vectors.append(rescale(u.update.q, n0, math.isqrt(sq[i])))
            trust.append(ts)
        if not trust:
            return np.zeros_like(g0, dtype=np.int64), verdicts
        kept = [i for i in alive if verdicts[others[i].participant][0]]
        xs = [others[i].update.q for i in kept]  # the accepted updates, as sent
        pay = self._pay(trust)
        # with weigh a zero weight leaves the aggregate
        weights = self._pay(trust, cap=False) if self.weigh else trust
        if self.sybil:
            discounted, weights = sybil_discount([pay, weights], xs, self.sybil)
            pay = discounted if self.sybil_pay else pay
        # coordinates the owner's update leaves exactly at 0: its root data give them no
        # gradient, so nothing there can be checked against g₀
        unmoved = g0 == 0
        if self.support:
            pay, weights = support_discount([pay, weights], xs, unmoved, self.support)
        if self.quiet:
            pay, weights = quiet_discount([pay, weights], xs, g0, self.quiet)
        if self.lean:  # pay only: the aggregate stays the one without lean
            (pay,) = lean_discount([pay], xs, self.lean)
        if held:
            names = [others[i].participant for i in kept]
            weights = [
                w * held[p][0] // held[p][1] if p in held else w
                for w, p in zip(weights, names, strict=True)
            ]
        used = [k for k, w in enumerate(weights) if w]
        averaged = [vectors[k] for k in used]
        if self.band:
            averaged = winsorize(averaged, self.band * len(used) // 100)
        mean = (
            exact_weighted_mean(averaged, [weights[k] for k in used])
            if used
            else np.zeros_like(g0, dtype=np.int64)  # every weight discounted to 0
        )
        if self.mask:
            mean[unmoved] = 0
        # a rescaled update can be longer per coordinate than any input; the step must fit
        # the codec like every other rule's
        v = np.clip(mean, -spec.codec.bound_q, spec.codec.bound_q)
        if self.crowd:
            xs = [others[i].update.q for i in kept]
            pay = self._crowd(pay, trust, xs, [sq[i] for i in kept], v)
        m = lower_median(trust)
        for k, (i, ts, paid) in enumerate(zip(kept, trust, pay, strict=True)):
            if paid != ts:
                why = f"trust {ts} (round median {m}): paid {paid}"
                verdicts[others[i].participant] = (bool(weights[k]), paid, why)
        return v, verdicts

    def _crowd(
        self,
        pay: Sequence[int],
        trust: Sequence[int],
        xs: Sequence[np.ndarray],
        sqs: Sequence[int],
        v: np.ndarray,
    ) -> list[int]:
        """:func:`crowd_pay` with each update's agreement with the aggregate ``v``,
        ``Cᵢ = ⌊10⁶·cos(xᵢ, v)⌋`` in exact integers."""
        vv = exact_dot(v, v)
        agree = [cosine_score(x, v, s, vv) for x, s in zip(xs, sqs, strict=True)]
        return crowd_pay(pay, trust, agree, self.crowd)


def sybil_discount(
    amounts: Sequence[Sequence[int]], vectors: Sequence[np.ndarray], power: int
) -> list[list[int]]:
    """Each list in ``amounts`` (pay, aggregate weights: one entry per vector) scaled down
    for the vectors that resemble another one of the round more than the round's typical
    vector does: with ``sᵢ = maxⱼ ⌊10⁶·cos(xᵢ, xⱼ)⌋`` and ``m`` the lower median of the
    ``sᵢ``, by ``((10⁶ − sᵢ)/(10⁶ − m))^power`` when ``sᵢ > m``; exact integers.

    A one-round form of FoolsGold's similarity weighting (Fung, Yoon & Beschastnikh, RAID
    2020): sybils that pursue one goal (a backdoor's trigger) send updates that share that
    goal's direction, while honest clients, each with its own data, agree with each other
    only as much as their data do."""
    n = len(vectors)
    if n < 3:  # with two, each one's nearest is the other: nothing to compare with
        return [list(a) for a in amounts]
    g, scale = gram(vectors), CenteredClip.SCALE
    near = []
    for i in range(n):
        cos = [scale * g[i][j] // math.isqrt(g[i][i] * g[j][j]) for j in range(n) if j != i]
        near.append(min(scale, max(cos)))
    m = lower_median(near)
    out = []
    for a in amounts:
        out.append(
            [
                x * (scale - s) ** power // (scale - m) ** power if s > m else x
                for x, s in zip(a, near, strict=True)
            ]
        )
    return out


def support_discount(
    amounts: Sequence[Sequence[int]],
    vectors: Sequence[np.ndarray],
    unmoved: np.ndarray,
    power: int,
) -> list[list[int]]:
    """Each list in ``amounts`` (pay, aggregate weights: one entry per vector) times
    ``(1 − oᵢ)^power``, where ``oᵢ = ‖xᵢ|U‖² / ‖xᵢ‖²`` is the share of vector ``i``'s squared
    length on the coordinates ``U`` (``unmoved``, a boolean mask) that the owner's reference
    update leaves at exactly 0; exact integers (floor of the product).

    On image data the owner's root set leaves some inputs black, so ``g₀`` does not move the
    first-layer weights of those pixels; an honest client's data ink them rarely (0.0-0.7 %
    of its squared length on MNIST with a 100-image root set), a backdoor whose trigger is a
    pixel pattern there puts 17-37 % of its update on them
    (``benchmarks/results/attack_suite_v8.md``). Trust measures agreement on the rest only
    through the cosine; this pays for the part of an update the reference can vouch for."""
    out = [list(a) for a in amounts]
    if not unmoved.any():
        return out
    for i, x in enumerate(vectors):
        total = exact_dot(x, x)
        off = x[unmoved]
        outside = exact_dot(off, off)
        if total and outside:
            keep = (total - outside) ** power
            for a in out:
                a[i] = a[i] * keep // total**power
    return out


#: ``quiet``'s slack: an update is discounted once its share of squared length on ``g₀``'s
#: quiet half is more than this times the round's median share. In the probes it was chosen
#: on (MLP seed 0, CNN seed 2, every round) honest updates reached 1.16-1.36x the median (one
#: CNN client 2.55x, in the first round), a backdoor 1.3-9.7x (MLP), 2.0-3.6x (CNN);
#: ``benchmarks/results/attack_suite_v9.md``.
QUIET_SLACK = Fraction(3, 2)


def quiet_discount(
    amounts: Sequence[Sequence[int]], vectors: Sequence[np.ndarray], g0: np.ndarray, power: int
) -> list[list[int]]:
    """Each list in ``amounts`` (pay, aggregate weights: one entry per vector) scaled down for
    the vectors that put an unusual share of their squared length where the owner's update is
    quiet. ``Q``: the coordinates with ``|g₀|`` at most its lower median (half of them or
    more); ``sᵢ = ‖xᵢ|Q‖² / ‖xᵢ‖²``; ``m`` the lower median of the ``sᵢ``; a vector with
    ``sᵢ > 1.5·m`` (:data:`QUIET_SLACK`) has its amounts times ``(1.5·m / sᵢ)^power``. Exact
    integers and fractions (floor of the product); nothing changes when ``m`` is 0.

    An honest update is large where the owner's is (the same inputs and classes drive both)
    and puts 2-13 % of its squared length on ``Q`` on MNIST; a backdoor writes its trigger into
    weights the owner's clean data barely move: 7-58 %, on the MLP also for a trigger on
    inked pixels (where :func:`support_discount`, which needs exact zeros, sees nothing) and
    on the CNN. Cosine trust misses it: that part of the update is nearly orthogonal to
    ``g₀``, so it lowers the cosine only a little."""
    out = [list(a) for a in amounts]
    if len(vectors) < 2:
        return out
    a = np.abs(g0.astype(np.int64))
    mid = (a.shape[0] - 1) // 2
    quiet = a <= np.partition(a, mid)[mid]
    shares = []
    for x in vectors:
        part = x[quiet]
        shares.append(Fraction(exact_dot(part, part), exact_dot(x, x)))
    m = sorted(shares)[(len(shares) - 1) // 2] * QUIET_SLACK
    if m == 0:
        return out
    for i, s in enumerate(shares):
        if s > m:
            num, den = m.numerator * s.denominator, m.denominator * s.numerator
            for amount in out:
                amount[i] = amount[i] * num**power // den**power
    return out


#: ``lean``'s slack: an update is paid less once its signed mass ``Σx / Σ|x|`` is more than
#: this below the round's lower median. In the probe (MLP seed 0, noisy ALIE at 20 %, 6
#: rounds; ``benchmarks/results/attack_suite_v10.md``) every crafted update was past it
#: (0.11-0.24 below on IID data, 0.22-0.29 on Dirichlet), and 2-6 of 48-60 honest updates a
#: run too (up to 0.17 below on IID data, 0.22 on Dirichlet): the two overlap; a wider slack
#: lets IID ALIE through.
LEAN_SLACK = Fraction(1, 10)


def signed_mass(x: np.ndarray) -> Fraction:
    """``Σx / Σ|x|`` of an integer vector, exact (0 for the zero vector): +1 when every
    coordinate is positive, −1 when every one is negative."""
    total = int(np.abs(x.astype(np.int64)).sum(dtype=np.int64))
    return Fraction(int(x.astype(np.int64).sum(dtype=np.int64)), total) if total else Fraction(0)


def lean_discount(
    amounts: Sequence[Sequence[int]], vectors: Sequence[np.ndarray], power: int
) -> list[list[int]]:
    """Each list in ``amounts`` (pay: one entry per vector) scaled down for the vectors whose
    signed mass ``rᵢ = Σxᵢ / Σ|xᵢ|`` (:func:`signed_mass`) lies more than 1/10
    (:data:`LEAN_SLACK`) below ``m``, the lower median of the ``rᵢ``: times
    ``((1/10) / (m − rᵢ))^power``. Exact integers and fractions (floor of the product);
    nothing changes with fewer than two vectors.

    ALIE sends the benign mean minus ``z·σ`` coordinate by coordinate (``σ ≥ 0``): every
    coordinate moves down, so its signed mass is pulled below the honest updates', whose
    signs follow their data, noise added on top or not. Pay only (see :class:`FLTrust`)."""
    out = [list(a) for a in amounts]
    if len(vectors) < 2:
        return out
    lean = [signed_mass(x) for x in vectors]
    m = sorted(lean)[(len(lean) - 1) // 2]
    for i, r in enumerate(lean):
        gap = m - r
        if gap > LEAN_SLACK:
            f = LEAN_SLACK / gap
            for amount in out:
                amount[i] = amount[i] * f.numerator**power // f.denominator**power
    return out


def winsorize(vectors: Sequence[np.ndarray], k: int) -> list[np.ndarray]:
    """Every vector clamped, coordinate by coordinate, into the band between the ``k``-th
    smallest and the ``k``-th largest value of that coordinate (0-based ranks ``k`` and
    ``n-1-k``; ``k`` above ``(n-1)//2`` is taken as that: the median band). Integer
    comparisons only, on cache-sized column blocks, so the same values on every machine."""
    n = len(vectors)
    k = min(k, (n - 1) // 2)
    if k <= 0:
        return list(vectors)
    d, b = vectors[0].shape[0], block_columns(n)
    out = [np.empty(d, np.int64) for _ in range(n)]
    for s in range(0, d, b):
        x = np.stack([v[s : s + b] for v in vectors]).astype(np.int64)  # (n, block)
        t = np.sort(x, axis=0)
        x = np.clip(x, t[k], t[n - 1 - k])
        for o, row in zip(out, x, strict=True):
            o[s : s + b] = row
    return out


def cosine_score(
    x: np.ndarray, y: np.ndarray, sq_x: int | None = None, sq_y: int | None = None
) -> int:
    """``⌊10⁶·cos(x, y)⌋`` of integer vectors in exact integers (negative when they oppose;
    0 when one is zero); ``sq_x``, ``sq_y`` are the squared lengths when already known."""
    sx = exact_dot(x, x) if sq_x is None else sq_x
    sy = exact_dot(y, y) if sq_y is None else sq_y
    den = math.isqrt(sx * sy)
    return CenteredClip.SCALE * exact_dot(x, y) // den if den else 0


def crowd_pay(
    pay: Sequence[int], trust: Sequence[int], agree: Sequence[int], power: int
) -> list[int]:
    """``pay`` times ``min(1, ρᵢ/ρₘ)^power``, where ``ρᵢ = TSᵢ / Cᵢ`` is how much an update
    agrees with the owner's ``g₀`` relative to how much it agrees with the round's aggregate
    (``Cᵢ``, same scale as the trust ``TSᵢ``) and ``ρₘ`` the round's lower median (exact
    fractions). A crafted update built from the other updates' statistics (ALIE plus
    honest-sized noise) agrees with the crowd it was computed from more than with ``g₀``,
    which it never saw; an honest update's two agreements move together. An update with
    ``Cᵢ <= 0`` keeps its pay (it follows the owner, not the crowd)."""
    ratios = sorted(Fraction(t, c) for t, c in zip(trust, agree, strict=True) if c > 0)
    if not ratios:
        return list(pay)
    rm = ratios[(len(ratios) - 1) // 2]
    out = []
    for p, t, c in zip(pay, trust, agree, strict=True):
        if c > 0 and Fraction(t, c) < rm:
            num, den = t * rm.denominator, c * rm.numerator
            p = p * num**power // den**power
        out.append(p)
    return out


#: ``memory``'s slack: a participant is paid less once its balance of rounds above minus
#: below the round's median crowd ratio is lower than ``-MEMORY_SLACK·√rounds``: 1.5 standard
#: deviations of a fair coin's balance; a crafted update offset from the benign mean is below
#: in (nearly) every round, so its balance is ``-rounds``. Honest clients are not fair coins
#: (their local data stay the same, so their place persists: about twice the spread, 20-27 %
#: past the slack in clean 20-round runs; ``benchmarks/results/attack_suite_v6.md``).
MEMORY_SLACK = Fraction(3, 2)


def remembered_pay(
    participants: Sequence[str],
    pay: Sequence[int],
    trust: Sequence[int],
    agree: Sequence[int],
    standing: Mapping[str, Standing],
    memory: int,
    slack: Fraction = MEMORY_SLACK,
) -> tuple[list[int], dict[str, Standing]]:
    """Pay by evidence accumulated over rounds: each paid update's crowd ratio
    ``ρᵢ = TSᵢ / Cᵢ`` (trust over agreement with the round's aggregate, as in
    :func:`crowd_pay`) is compared with the round's lower median ``ρₘ``, and the
    participant's :class:`Standing` gains a round and ``+1`` (above), ``-1`` (below) or 0.
    With ``n`` rounds and balance ``b`` after this one, the excess ``e = -b - 1.5·√n``
    (:data:`MEMORY_SLACK`) scales this round's pay by ``max(0, 1 - e/memory)`` when positive:
    ``memory`` is how many rounds below the median beyond the slack take the pay to zero.

    A noisy crafted update (ALIE plus honest-sized noise) is statistically honest in any one
    round — its offset is a few percent of cosine — but the offset is systematic, so it is
    below the median round after round. An honest client's place moves from round to round,
    but less than a coin's: one whose data sit persistently below the crowd is marked down
    too, the more the longer the task runs (see :data:`MEMORY_SLACK`). Updates with
    ``Cᵢ <= 0`` add no evidence (they follow the owner, not the crowd) and keep their pay;
    participants absent this round keep their standing.
    Exact integers: the slack is ``⌊1.5·√n·10⁶⌋`` by integer square root (``slack`` other
    than 1.5 is for the benchmark's measurements; ``slack²·10¹²`` must be an integer)."""
    after = dict(standing)
    ratios = [Fraction(t, c) if c > 0 else None for t, c in zip(trust, agree, strict=True)]
    known = sorted(r for r in ratios if r is not None)
    if not known:
        return list(pay), after
    rm, scale = known[(len(known) - 1) // 2], CenteredClip.SCALE
    slack_sq = Fraction(slack) ** 2 * scale**2  # an integer: 9/4 · 10¹²
    if slack_sq.denominator != 1:
        raise ValueError(f"slack {slack}: slack² · 10¹² must be an integer")
    out = []
    for p, x, r in zip(participants, pay, ratios, strict=True):
        if r is None:
            out.append(x)
            continue
        old = after.get(p, Standing(0, 0))
        s = after[p] = Standing(old.rounds + 1, old.balance + (r > rm) - (r < rm), old.sketch)
        excess = -s.balance * scale - math.isqrt(slack_sq.numerator * s.rounds)
        if excess > 0:
            x = x * max(0, memory * scale - excess) // (memory * scale)
        out.append(x)
    return out, after


def persistence_weights(rho: Mapping[str, int], m: int, power: int) -> dict[str, tuple[int, int]]:
    """:func:`persisted_pay`'s factor as aggregate weights (``hold``): participant ->
    ``(max(0, 2ρ)^power, m^power)`` for each update with ``2ρ < m``, none when ``m ≤ 0``."""
    if m <= 0:
        return {}
    return {p: (max(0, 2 * r) ** power, m**power) for p, r in rho.items() if 2 * r < m}


def persisted_pay(
    updates: Sequence[ClientUpdate],
    pay: Sequence[int],
    v: np.ndarray,
    base: Standings,
    after: Mapping[str, Standing],
    power: int,
) -> tuple[list[int], dict[str, Standing], dict[str, int], int]:
    """Pay by persistence: an honest participant trains on its own data every round, so what
    its update adds to the round's consensus points the same way from one round to the next; a
    crafted update built from the round's statistics plus fresh noise (ALIE, IPM, the
    omniscient colluders of the attack suite) has no such part of its own.

    For each accepted update ``xᵢ`` (``pay``: one entry each) its own part, ``xᵢ`` without its
    part along ``v`` (the round's aggregate), is sketched (:func:`residual_sketch`); its
    persistence ``ρᵢ = ⌊10⁶·cos⌋`` of that sketch with the one ``base`` (the previous
    report's standing) keeps for the participant. With ``m`` the lower median of the round's
    ``ρ``, an update with ``2ρᵢ < m`` is paid ``(max(0, 2ρᵢ) / m)^power`` of its pay (floor;
    below half the median, to zero at ``ρ = 0``). Updates without an earlier sketch keep their
    pay. Every accepted participant's sketch is stored in ``after`` (a copy), its round counted
    unless ``memory`` counted it already. Returns the pay, the standing, each compared
    participant's ``ρ`` and ``m``.

    Measured (``benchmarks/results/attack_suite_v11.md``, MLP, exact vectors): honest
    clients' persistence is 0.34-0.69 on IID data and 0.40-0.91 on Dirichlet data, the
    omniscient ALIE's, ``alie_shrink``'s and IPM's -0.04 … 0.20; colluders that draw the same
    noise every round persist (0.85-0.96) and get past it."""
    sv = count_sketch(v)
    sketch = {u.participant: residual_sketch(count_sketch(u.update.q), sv) for u in updates}
    rho = {
        p: sketch_cosine(s, base[p].sketch, CenteredClip.SCALE)
        for p, s in sketch.items()
        if p in base and base[p].sketch
    }
    m = lower_median(list(rho.values())) if rho else 0
    out = []
    for u, x in zip(updates, pay, strict=True):
        r = rho.get(u.participant)
        if r is not None and m > 0 and 2 * r < m:
            x = x * max(0, 2 * r) ** power // m**power
        out.append(x)
    new = dict(after)
    for p, s in sketch.items():
        old, now = base.get(p, Standing(0, 0)), new.get(p, Standing(0, 0))
        rounds = now.rounds if now.rounds == old.rounds + 1 else old.rounds + 1
        new[p] = Standing(rounds, now.balance, s)
    return out, new, rho, m
