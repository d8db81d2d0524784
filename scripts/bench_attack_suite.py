"""Attack suite of issue 6: every attack x attacker share x partition x aggregation rule.

MNIST-5k, 10 clients, MLP, through the real codec and aggregation path
(flchain.learning.simulation). Attacks: sign flip (x-4), Gaussian noise, label flip, "A Little
Is Enough" and inner-product manipulation (colluders pool their own honest updates; see
flchain.learning.attacks), by 1, 2 and 3 of the 10 clients, on IID and Dirichlet(0.5)
partitions, for all seven rules, each next to the clean run of the same rule and parameters.
Rule parameters are sized to the attacker count as ``flchain demo`` does, capped where the rule
cannot take more with 10 inputs (Bulyan needs n >= 4f + 3, so it runs with f = 1).

For each run: final test accuracy, Δ vs clean, the attackers' share of the contribution score
(= their share of the round's rewards, averaged over rounds) and their share of the samples
(the work they claim). A rule *holds* an attack when it stays within 5 points of clean and
pays the attackers no more than their share of the work.

    nice -n 10 .venv/bin/python scripts/bench_attack_suite.py --json suite.json
    # subsets (results are saved after every run; --resume skips runs already in --json);
    # two processes: --shard 0/2 --json a.json & --shard 1/2 --json b.json; then --merge:
    ... --only partition=iid --only rule=median,trimmed_mean --only attackers=1,2 --match ipm
    ... --merge a.json b.json   # print the table of saved runs

Suite v2 (issue 14, ``--suite v2``): seeds (data split, model init and attack noise), the
omniscient colluding ALIE/IPM (statistics of every honest update of the round), the backdoor /
model-replacement attack (with its success rate), free-riders and copycats, and the
centered_clip rule; per-capita reward of attackers vs honest clients, accuracy vs the rule's
own clean run (same seed), and the spread of honest rewards (min/median/max per-capita, Gini)
next to their sample shares. ``--merge`` of v2 results prints the v2 tables.

    nice -n 10 .venv/bin/python scripts/bench_attack_suite.py --suite v2 --rounds 6 \
        --shard 0/2 --json a.json   # and --shard 1/2 --json b.json, then --merge a.json b.json

v3 (``--validation K``): the rules get a public validation set, the first K test samples of
each class, which centered_clip uses to weight rewards by held-out loss (the aggregate does not
change). ``--merge new.json --before old.json`` prints a before/after table of the same runs.

v4 (``--suite v4``): the v2 grid for ``fltrust`` and ``centered_clip`` side by side. The task
owner trains on a root data set each round (``--root K``: K test samples of each class, taken
after the first ``--validation`` ones so the two never overlap) and sends the reference update
``fltrust`` scores against; other rules get no owner update. ``--model cnn`` runs the CNN.

v7 (``benchmarks/results/attack_suite_v7.md``): ``--attackers 4`` adds a share to the grid
(a free-rider run with 4 clients' data absent is what a 3-copycat run loses, its victim
included); ``--merge ... --goals`` prints one row per rule variant against every goal.

v8 (``benchmarks/results/attack_suite_v8.md``): ``fltrust``'s ``support`` and ``mask`` options
(``--param support=4 --param mask=1``); ``--root K`` changes which coordinates the owner's
update leaves at 0, hence what they see.

v9 (``benchmarks/results/attack_suite_v9.md``): ``fltrust``'s ``quiet`` option
(``--param quiet=2``); ``--record`` also logs each update's share of squared length per tensor.

v10 (``benchmarks/results/attack_suite_v10.md``): ``fltrust``'s ``lean`` pay option
(``--param lean=2``); ``--record`` also logs each update's signed mass, which ``--merge ...
--leans`` prints against the round's median.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from typing import Any

import benchkit
import numpy as np
import torch
from flchain_node.cli.demo import FLTRUST_DEFAULT, rule_params

from flchain.errors import FLChainError
from flchain.learning.aggregation import (
    MEMORY_SLACK,
    RULES,
    ClientUpdate,
    FLTrust,
    Standing,
    aggregator_from_config,
    cosine_score,
    crowd_pay,
    remembered_pay,
    signed_mass,
)
from flchain.learning.attacks import COLLUDING
from flchain.learning.data import FederatedData, federate, load_mnist5k
from flchain.learning.models import ModelSpec, build_model
from flchain.learning.simulation import REFERENCE_ID, SimConfig, participant_id, run_federation
from flchain.learning.training import TrainConfig
from flchain.learning.validation import validation_slice

N_CLIENTS = 10
ATTACKS = ("sign_flip", "gaussian", "label_flip", "alie", "ipm")
ROBUST = ("median", "trimmed_mean", "multi_krum")  # the three
TOLERANCE = 0.05  # accuracy points a rule may lose and still hold
#: alie_shrink (ALIE's shift toward 0, which fltrust's lean does not see) since v10.
V2_ATTACKS = ("sign_flip", "gaussian", "label_flip", "alie", "alie_shrink", "ipm", "backdoor")
# Rejected before any rule runs. The free-rider run doubles as the "honest clients only" run:
# the same honest updates, the attackers' data simply missing.
V2_FREE = ("free_rider", "copycat")
V2_ATTACKERS = (1, 2, 3)  # 10%, 20%, 30%
V2_RULES = ("median", "trimmed_mean", "multi_krum", "centered_clip")
V2_SEEDS = (0, 1, 2)
V4_RULES = ("centered_clip", "fltrust")
RATIO_GOAL = 0.5  # attackers' per-capita reward at most this times the honest per-capita


@dataclass(frozen=True)
class Run:
    partition: str
    rule: str
    params: dict[str, float]
    attack: str | None
    attackers: int
    seed: int = 0
    omniscient: bool = False
    #: Local training: "fedavg" (plain SGD) or "scaffold" (control variates; every update is
    #: the joint Δw‖Δc, attackers craft from it and the rule weighs it whole).
    algorithm: str = "fedavg"
    #: ALIE/IPM colluders craft in every ``every``-th round, honest in the others.
    every: int = 1

    @property
    def label(self) -> str:
        p = ",".join(f"{k}={v:g}" for k, v in self.params.items())
        what = f"{self.attack} {self.attackers}/{N_CLIENTS}" if self.attack else "clean"
        if self.omniscient and self.attack in COLLUDING:
            what = "omniscient " + what
        if self.every > 1 and self.attack in COLLUDING:
            what += f" every {self.every} rounds"
        seed = f" seed {self.seed}" if self.seed else ""
        algorithm = f" {self.algorithm}" if self.algorithm != "fedavg" else ""
        return f"{self.partition} {self.rule}({p}){algorithm} {what}{seed}"


def _shown_rule(run: dict) -> str:
    """A saved run's rule as tables name it: with the parameters given on the command line
    (``--param``, ``--rescore``; so variants get rows of their own) and the algorithm when it
    is not plain FedAvg."""
    algorithm = run.get("algorithm", "fedavg")  # runs saved before the option were fedavg
    sized = sized_params(run["rule"], 1) if run["rule"] in RULES else {}
    extra = {k: v for k, v in run.get("params", {}).items() if k not in sized}
    rule = f"{run['rule']}({_params_text(extra)})" if extra else run["rule"]
    return rule if algorithm == "fedavg" else f"{rule} ({algorithm})"


def sized_params(rule: str, attackers: int) -> dict[str, float]:
    """``flchain demo``'s parameters, with f capped at what the rule can take from 10 inputs.
    ``fltrust`` stays the plain rule (v4-v8's recorded commands name it so): the demo's options
    (``FLTRUST_DEFAULT``) are run as ``--param support=2 --param mask=1 --param quiet=2`` (and
    ``--param lean=2`` since v10)."""
    params = rule_params(rule, attackers, N_CLIENTS)
    if rule == "fltrust":
        params = {k: v for k, v in params.items() if k not in FLTRUST_DEFAULT}
    cap = {"krum": (N_CLIENTS - 3) // 2, "multi_krum": (N_CLIENTS - 3) // 2}
    cap["bulyan"] = (N_CLIENTS - 3) // 4
    if rule in cap:
        params["f"] = min(params["f"], cap[rule])
    return params


def plan() -> list[Run]:
    """Every run, most wanted first: the issue's goal (robust three and FedAvg, IID, up to 20%
    attackers), then Dirichlet for the robust three, then the other rules, then 30%.
    Clean runs come once per (partition, rule, parameters), just before their attacked runs."""
    main = ("fedavg", *ROBUST)
    others = tuple(r for r in RULES if r not in main)
    tiers = [
        ("iid", main, (1, 2)),
        ("dirichlet", ROBUST, (1, 2)),
        ("iid", others, (1, 2)),
        ("iid", main, (3,)),
        ("dirichlet", ROBUST, (3,)),
        ("iid", others, (3,)),
        ("dirichlet", ("fedavg", *others), (1, 2, 3)),
    ]
    runs: list[Run] = []
    for partition, rules, fs in tiers:
        for rule in rules:
            for f in fs:
                params = sized_params(rule, f)
                clean = Run(partition, rule, params, None, 0)
                if clean not in runs:
                    runs.append(clean)
                runs += [Run(partition, rule, params, a, f) for a in ATTACKS]
    return runs


def plan_v2(
    rules: tuple[str, ...] = V2_RULES,
    seeds: Sequence[int] = V2_SEEDS,
    shares: Sequence[int] = V2_ATTACKERS,
) -> list[Run]:
    """Issue 14's grid: IID and Dirichlet(0.5), 1-3 attackers of 10, seeds 0-2 (seed-major,
    so a cut-short run has whole seeds), the v2 attacks x ``rules`` (the three robust rules
    and centered_clip; v4: centered_clip and fltrust), plus free-riders and copycats; each
    clean run just before its attacked runs."""
    runs: list[Run] = []
    for seed in seeds:
        for partition in ("iid", "dirichlet"):
            for f in shares:
                for rule in rules:
                    params = sized_params(rule, f)
                    clean = Run(partition, rule, params, None, 0, seed, True)
                    if clean not in runs:
                        runs.append(clean)
                    attacks = V2_ATTACKS + V2_FREE
                    runs += [Run(partition, rule, params, a, f, seed, True) for a in attacks]
    return runs


def selected(run: Run, only: dict[str, set[str]], match: str | None) -> bool:
    fields = {**asdict(run), "attack": run.attack or "clean"}
    for key, values in only.items():
        if str(fields[key]) not in values and not (key == "attackers" and run.attack is None):
            return False
    return match is None or match in run.label


def parse_only(items: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for item in items:
        key, _, values = item.partition("=")
        if key not in ("partition", "rule", "attack", "attackers", "seed") or not values:
            raise SystemExit(f"--only wants partition|rule|attack|attackers|seed=V1,V2; {item!r}")
        out.setdefault(key, set()).update(values.split(","))
    return out


class RecordingFLTrust(FLTrust):
    """``fltrust`` that also logs, each round, every client update's exact trust ``TSᵢ`` (0
    when rejected), its exact agreement with the round's aggregate ``Cᵢ``
    (:func:`cosine_score`), its cosine with ``g₀`` per tensor, its share of squared length per
    tensor and on the half of the coordinates where ``|g₀|`` is smallest (``quiet``), and its
    share of exact zeros and its signed mass ``Σx / Σ|x|`` (``lean``; floats), and its pay
    (the decision's exact score). Pay options that leave the aggregate alone (``cap``,
    ``crowd``, ``memory``; ``power`` unless ``weigh``) then give the same run, so ``--rescore``
    computes their rewards from the log exactly (``memory`` round after round; per-tensor
    trust: in floats). With ``lean`` (pay only) it also logs each update's exact pay without
    it (the rule's own computation, run again with ``lean=0``), so one training run gives
    both variants' rewards (:func:`execute`)."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.log: list[list[dict]] = []
        self.own_parts: dict[str, np.ndarray] = {}  # each client's, from its latest round

    def _combine(self, updates, spec):  # type: ignore[no-untyped-def]
        v, verdicts = super()._combine(updates, spec)
        plain = None
        if self.lean:  # the same round without lean: same aggregate (asserted), its pay
            self.lean, lean = 0, self.lean
            try:
                v0, plain = super()._combine(updates, spec)
            finally:
                self.lean = lean
            if not np.array_equal(v0, v):
                raise AssertionError("lean changed the aggregate")
        ref = [u for u in updates if self._is_reference(u.participant)]
        if not ref:
            self.log.append([])
            return v, verdicts
        g0 = ref[0].update.q
        g0f = g0.astype(np.float64)

        def accepted(u: ClientUpdate) -> bool:  # weigh: a zero weight, still in the pay round
            ok, _, why = verdicts[u.participant]
            return ok or why.startswith("trust ")

        cuts = np.cumsum([0] + [t.numel for t in spec.tensors])
        parts = list(itertools.pairwise(int(c) for c in cuts))

        def cos(a: np.ndarray, b: np.ndarray) -> float:
            d = float(np.linalg.norm(a) * np.linalg.norm(b))
            return float(a @ b) / d if d else 0.0

        a0 = np.abs(g0.astype(np.int64))
        quiet = a0 <= np.partition(a0, (a0.shape[0] - 1) // 2)[(a0.shape[0] - 1) // 2]
        # persistence (fltrust's persist, without its sketch): each update's own part, what is
        # left without its part along the aggregate, against the same client's previous one
        vf = v.astype(np.float64)
        vvf = float(vf @ vf) or 1.0
        own = {}
        for u in updates:
            xf = u.update.q.astype(np.float64)
            own[u.participant] = xf - (float(xf @ vf) / vvf) * vf
        entries = []
        for u in updates:
            if u is ref[0]:
                continue
            x = u.update.q
            xf = x.astype(np.float64)
            sq = float(xf @ xf)
            ok = accepted(u)
            entries.append(
                {
                    "p": u.participant,
                    "accepted": ok,
                    "trust": max(0, cosine_score(x, g0)) if ok else 0,
                    "agree": cosine_score(x, v),
                    "tensors": [round(cos(xf[a:b], g0f[a:b]), 6) for a, b in parts],
                    "mass": [round(float(xf[a:b] @ xf[a:b]) / sq, 6) for a, b in parts],
                    # quiet's share: on the half of the coordinates where |g₀| is smallest
                    "quiet": round(float(xf[quiet] @ xf[quiet]) / sq, 6),
                    "zeros": round(float(np.mean(x == 0)), 6),
                    # lean's signed mass Σx / Σ|x|
                    "lean": round(float(signed_mass(x)), 6),
                    "persist": (
                        round(cos(own[u.participant], self.own_parts[u.participant]), 6)
                        if u.participant in self.own_parts
                        else None
                    ),
                    "paid": verdicts[u.participant][1],
                    **({"paid_without_lean": plain[u.participant][1]} if plain else {}),
                }
            )
        self.log.append(entries)
        self.own_parts |= own
        return v, verdicts


def rescored_pay(
    log: list[dict], params: dict[str, float], standing: dict[str, Standing]
) -> tuple[list[int], dict[str, Standing]]:
    """One round's pay under the fltrust ``params`` (``cap``, ``power``, ``crowd``,
    ``memory``: the rule's own :meth:`FLTrust._pay`, :func:`crowd_pay` and
    :func:`remembered_pay` on the logged integers, ``memory`` from and to ``standing``, the
    clients' evidence over the run's earlier rounds; ``slack=s``: memory's slack other than
    the rule's 1.5, a tried variant; ``tensor=k``: trust from tensor ``k``'s cosine with
    ``g₀`` alone, a tried idea, in floats)."""
    kept = [e for e in log if e["accepted"] and e["trust"] > 0]
    if "tensor" in params:
        k = int(params["tensor"])
        by = {e["p"]: max(0, int(1e6 * e["tensors"][k])) for e in kept}
        return [by.get(e["p"], 0) for e in log], standing
    rule = FLTrust(cap=int(params.get("cap", 0)), power=int(params.get("power", 1)))
    trust = [e["trust"] for e in kept]
    pay = rule._pay(trust) if trust else []
    if params.get("crowd"):
        pay = crowd_pay(pay, trust, [e["agree"] for e in kept], int(params["crowd"]))
    if params.get("memory"):  # the rule weighs the accepted updates: with weigh, weight > 0
        weights = rule._pay(trust, cap=False) if params.get("weigh") and trust else trust
        mine = [k for k, w in enumerate(weights) if w]
        paid, standing = remembered_pay(
            [kept[k]["p"] for k in mine],
            [pay[k] for k in mine],
            [trust[k] for k in mine],
            [kept[k]["agree"] for k in mine],
            standing,
            int(params["memory"]),
            Fraction(str(params.get("slack", MEMORY_SLACK))),
        )
        for k, x in zip(mine, paid, strict=True):
            pay[k] = x
    by = {e["p"]: p for e, p in zip(kept, pay, strict=True)}
    return [by.get(e["p"], 0) for e in log], standing


def rescore(results: list[dict], variants: Sequence[dict[str, float]]) -> list[dict]:
    """The logged runs again under each pay ``variant``: same accuracy and aggregate, the
    clients' reward shares recomputed (every round pays the same pool, split by pay)."""
    out = []
    for r in results:
        if "trust_log" not in r:
            continue
        for variant in variants:
            params = {**r["params"], **variant}
            if r["params"].get("weigh") and params.get("power") != r["params"].get("power"):
                raise SystemExit(f"{r['label']}: with weigh, power sets the aggregate")
            shares = dict.fromkeys(r["client_shares"], 0.0)
            rounds = r["trust_log"]
            standing: dict[str, Standing] = {}
            for log in rounds:
                pay, standing = rescored_pay(log, params, standing)
                total = sum(pay)
                for e, p in zip(log, pay, strict=True):
                    if total:
                        shares[e["p"]] += p / total / len(rounds)
            bad = {participant_id(i) for i in range(r["attackers"])}
            label = r["label"].replace(
                f"fltrust({_params_text(r['params'])})", f"fltrust({_params_text(params)})"
            )
            out.append(
                {
                    **r,
                    "label": label,
                    "params": params,
                    "client_shares": shares,
                    "reward_share": sum(shares[p] for p in bad),
                }
            )
    return out


def _params_text(params: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in params.items())


def execute(run: Run, fed: FederatedData, args: argparse.Namespace, cfg: TrainConfig) -> list[dict]:
    """One run of the suite; ``args``: the command line's --model, --rounds, --jitter,
    --fixed-noise, --validation, --root and --record. Its result, and with ``--record`` and
    ``fltrust``'s ``lean`` or ``persist`` the same run's results without them
    (:func:`without`)."""
    model_name, rounds, jitter = args.model, args.rounds, args.jitter
    validation, root, record = args.validation, args.root, args.record
    cfg = replace(cfg, scaffold=run.algorithm == "scaffold")
    model = build_model(model_name, "mnist", seed=run.seed)
    spec = ModelSpec.from_model(model, model_name)
    sim = SimConfig(
        rounds,
        cfg,
        run.attack,
        run.attackers,
        seed=run.seed,
        omniscient=run.omniscient,
        collusion_jitter=jitter,
        backdoor_offset=args.trigger_offset,
        attack_every=run.every if run.attack in COLLUDING else 1,
        fixed_noise=args.fixed_noise and run.attack in COLLUDING,
    )
    bad = {participant_id(i) for i in range(run.attackers)}
    sizes = [len(c) for c in fed.clients]
    t = time.perf_counter()
    out = {"label": run.label, **asdict(run)}
    try:
        owned = run.rule == "fltrust"
        rule = aggregator_from_config(run.rule, run.params, REFERENCE_ID if owned else "")
        if record and owned:
            rule = RecordingFLTrust(reference=REFERENCE_ID, **run.params)
        val = validation_slice(fed.test, validation)
        ref = validation_slice(fed.test, root, validation) if owned else None
        res = run_federation(model, spec, fed, rule, sim, validation=val, root=ref)
    except FLChainError as exc:  # e.g. too few usable updates left for the rule: a result
        return [
            {
                **out,
                "error": f"{type(exc).__name__}: {exc}",
                "seconds": time.perf_counter() - t,
            }
        ]
    shares = dict.fromkeys([participant_id(i) for i in range(len(sizes))], 0.0)
    att_ok, honest_ok = [], []
    for r in res.rounds:  # every round pays the same reward pool, split by score
        total = sum(d.score for d in r.decisions)
        for d in r.decisions:  # the owner's reference update scores 0 (and is no client)
            if d.participant in shares and total:
                shares[d.participant] += d.score / total / len(res.rounds)
        att_ok += [d.accepted for d in r.decisions if d.participant in bad]
        # the owner's reference update is no honest client's (v4 counted it: its "~1 honest
        # update in 10 rejected" was the reference, never averaged in by design)
        honest_ok += [
            d.accepted for d in r.decisions if d.participant not in bad and d.participant in shares
        ]
    result = {
        **out,
        "model": model_name,
        "root_samples": len(ref) if ref is not None else 0,
        "accuracy": res.accuracies,
        "reward_share": sum(shares[p] for p in bad),
        "client_shares": shares,
        "work_share": sum(sizes[: run.attackers]) / sum(sizes),
        "attacker_accept_rate": sum(att_ok) / len(att_ok) if att_ok else None,
        "honest_accept_rate": sum(honest_ok) / len(honest_ok),
        "sample_shares": {participant_id(i): n / sum(sizes) for i, n in enumerate(sizes)},
        "backdoor_success": [r.backdoor_success for r in res.rounds]
        if run.attack == "backdoor"
        else None,
        "seconds": time.perf_counter() - t,
        **({"trust_log": rule.log} if isinstance(rule, RecordingFLTrust) else {}),
    }
    if not isinstance(rule, RecordingFLTrust) or rule.memory:
        return [result]  # memory also pays after _combine: the logged pay is not a variant's
    out = [result]
    if rule.persist:  # the recorder logs the pay before persist's
        out.append(without(result, run, ["persist"], "paid"))
    if rule.lean:
        out.append(without(result, run, ["persist", "lean"], "paid_without_lean"))
    return out


def without(result: dict, run: Run, drop: Sequence[str], paid: str) -> dict:
    """A recorded run as the same run without the pay-only options ``drop`` (``lean``,
    ``persist``): the model, accuracy and acceptances are the same (the recorder asserts the
    aggregate round by round for ``lean``; ``persist`` pays after the aggregate is made); the
    clients' shares from the logged pay ``paid`` (``"paid"``: the pay of the rule's
    ``_combine``, before ``persist``; ``"paid_without_lean"``: the same without ``lean``)."""
    params = {k: v for k, v in run.params.items() if k not in drop}
    plain = replace(run, params=params)
    shares = dict.fromkeys(result["client_shares"], 0.0)
    rounds = result["trust_log"]
    for log in rounds:
        total = sum(e[paid] for e in log)
        for e in log:
            if total:
                shares[e["p"]] += e[paid] / total / len(rounds)
    bad = {participant_id(i) for i in range(run.attackers)}
    return {
        **result,
        **asdict(plain),
        "label": plain.label,
        "client_shares": shares,
        "reward_share": sum(shares[p] for p in bad),
        "derived_from": run.label,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write results here after every run")
    ap.add_argument("--resume", action="store_true", help="keep and skip runs already in --json")
    ap.add_argument("--only", action="append", default=[], metavar="KEY=V1,V2")
    ap.add_argument("--match", metavar="TEXT", help="only runs whose label contains TEXT")
    ap.add_argument(
        "--shard", default="0/1", metavar="I/N", help="take every N-th selected run from the I-th"
    )
    ap.add_argument("--list", action="store_true", help="print the selected runs and exit")
    ap.add_argument(
        "--param", action="append", default=[], metavar="KEY=V", help="add a rule parameter"
    )
    ap.add_argument("--model", default="mlp", choices=("mlp", "cnn"))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument(
        "--algorithms",
        default="fedavg",
        help="local training, comma-separated (fedavg, scaffold): every selected run once each",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared box)")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="print the table of saved runs")
    ap.add_argument("--suite", default="v1", choices=("v1", "v2", "v4"), help="issue 6 or issue 14")
    ap.add_argument(
        "--seeds",
        default=",".join(map(str, V2_SEEDS)),
        help="v2/v4: the seeds, comma-separated (e.g. 3,4,5: held out from the 0-2 a variant "
        "was chosen on)",
    )
    ap.add_argument(
        "--attackers",
        default=",".join(map(str, V2_ATTACKERS)),
        help="v2/v4: attacker counts of the 10 clients, comma-separated (e.g. 4: a free-rider "
        "run with 4 clients' data absent, what a 3-copycat run loses with its victim)",
    )
    ap.add_argument(
        "--root",
        type=int,
        default=10,
        metavar="K",
        help="fltrust: the owner's root data set, K test samples of each class",
    )
    ap.add_argument(
        "--trigger-offset",
        type=int,
        default=1,
        metavar="PX",
        help="backdoor: the trigger square's distance from the bottom-right border (12: the "
        "centre of a 28x28 image, on pixels digits ink)",
    )
    ap.add_argument(
        "--jitter",
        type=float,
        default=0.01,
        help="ALIE/IPM colluders' noise, in benign stds (1.0: as noisy as an honest update)",
    )
    ap.add_argument(
        "--fixed-noise",
        action="store_true",
        help="ALIE/IPM colluders draw their noise the same way every round (against persist)",
    )
    ap.add_argument(
        "--attack-every",
        type=int,
        default=1,
        metavar="K",
        help="ALIE/IPM colluders craft only in every K-th round (honest in the others)",
    )
    ap.add_argument(
        "--validation",
        type=int,
        default=0,
        metavar="K",
        help="give the rules a public validation set: the first K test samples of each class",
    )
    ap.add_argument(
        "--record",
        action="store_true",
        help="fltrust: log each round's exact trust and agreement with the aggregate",
    )
    ap.add_argument(
        "--rescore",
        action="append",
        default=[],
        metavar="K=V,K=V",
        help="with --merge: the recorded runs' rewards under an fltrust pay variant "
        "(cap, power, crowd, memory; tensor=K: one tensor's trust), e.g. --rescore cap=1,crowd=2",
    )
    ap.add_argument(
        "--crafting-rounds",
        type=int,
        default=0,
        metavar="K",
        help="with --merge of logged --attack-every K runs: the colluders' pay ratio in the "
        "whole run and in the rounds they crafted, per --rescore variant",
    )
    ap.add_argument(
        "--summary",
        action="store_true",
        help="with --merge: one row per rule variant (issue 14's open cells: backdoor and "
        "ALIE at 20-30%%, the honest spread of the clean runs)",
    )
    ap.add_argument(
        "--goals",
        action="store_true",
        help="with --merge: one row per rule variant against every goal of issue 14 (worst "
        "ratio, worst Δ vs own clean, trigger success, clean accuracy, honest spread)",
    )
    ap.add_argument(
        "--shares",
        action="store_true",
        help="with --merge of --record runs: per run, the attackers' and honest updates' share "
        "of squared length on g₀'s quiet half (and over the round's median), and of exact zeros",
    )
    ap.add_argument(
        "--leans",
        action="store_true",
        help="with --merge of --record runs: per run, the attackers' and honest updates' signed "
        "mass Σx/Σ|x| and its distance below the round's median (lean's test)",
    )
    ap.add_argument(
        "--persistence",
        action="store_true",
        help="with --merge of --record runs: per run, the persistence of the attackers' and "
        "honest updates' own parts from round to round (fltrust's persist)",
    )
    ap.add_argument(
        "--before",
        metavar="JSON",
        help="with --merge: a before/after table against the same runs in this file",
    )
    args = ap.parse_args(argv)
    if args.merge:
        results = benchkit.saved_results(args.merge)
        # a run repeated in several files (e.g. a clean run shared by two subsets) counts once
        results = list({r["label"]: r for r in reversed(results)}.values())[::-1]
        variants = [
            {k: float(v) for k, _, v in (kv.partition("=") for kv in spec.split(","))}
            for spec in args.rescore
        ]
        if args.crafting_rounds:  # rescores the saved runs itself, round by round
            print_crafting_rounds(results, args.crafting_rounds, variants)
            return 0
        results = results + rescore(results, variants)
        if args.summary:
            print_summary(results)
            return 0
        if args.goals:
            print_goals(results)
            return 0
        if args.shares:
            print_shares(results)
            return 0
        if args.leans:
            print_leans(results)
        if args.persistence:
            print_persistence(results)
            return 0
        if args.before:
            with open(args.before) as fh:
                print_compare(json.load(fh)["results"], results)
            return 0
        (print_tables if args.suite == "v1" else print_v2)(results)
        return 0
    seeds = [int(x) for x in args.seeds.split(",")]
    shares = [int(x) for x in args.attackers.split(",")]
    suite = {
        "v1": plan,
        "v2": lambda: plan_v2(seeds=seeds, shares=shares),
        "v4": lambda: plan_v2(V4_RULES, seeds, shares),
    }[args.suite]
    runs = [
        replace(run, algorithm=algorithm)
        for run in suite()
        for algorithm in args.algorithms.split(",")
    ]
    if args.attack_every > 1:
        runs = [replace(r, every=args.attack_every) for r in runs]
    if args.param:  # e.g. fltrust's screens=0: the runs get it in their parameters and labels
        extra = {k: float(v) for k, _, v in (p.partition("=") for p in args.param)}
        runs = [replace(r, params={**r.params, **extra}) for r in runs]
    todo = [r for r in runs if selected(r, parse_only(args.only), args.match)]
    shard, shards = (int(x) for x in args.shard.split("/"))
    todo = todo[shard::shards]
    if args.list:
        print("\n".join(r.label for r in todo))
        return 0
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr)
    data = load_mnist5k()
    seeds = sorted({r.seed for r in todo})
    feds = {
        (p, s): federate(data, N_CLIENTS, p, alpha=0.5, seed=s)
        for p in ("iid", "dirichlet")
        for s in seeds
    }
    results = []
    if args.resume and args.json and os.path.exists(args.json):
        with open(args.json) as fh:
            results = json.load(fh)["results"]
    done = {r["label"] for r in results}
    todo = [r for r in todo if r.label not in done]
    print(
        f"MNIST-5k, {N_CLIENTS} clients, {args.model}, {args.rounds} rounds, E={cfg.epochs} "
        f"B={cfg.batch_size} lr={cfg.lr}: {len(todo)} runs",
        file=sys.stderr,
    )
    for i, run in enumerate(todo, 1):
        fed = feds[run.partition, run.seed]
        got = execute(run, fed, args, cfg)
        results += got
        r = got[0]
        acc = f"{r['accuracy'][-1]:.4f}" if "accuracy" in r else r["error"]
        print(f"[{i}/{len(todo)}] {run.label}: {acc} ({r['seconds']:.0f}s)", file=sys.stderr)
        if args.json:  # after every run, so a long benchmark never loses finished work
            with open(args.json + ".tmp", "w") as fh:
                json.dump({"config": vars(args), "results": results}, fh)
            os.replace(args.json + ".tmp", args.json)
    (print_tables if args.suite == "v1" else print_v2)(results)
    return 0


def verdicts(results: list[dict]) -> list[dict]:
    """Each attacked run with its clean run: Δ accuracy, ``honest_share`` (what the same
    clients earn under this rule by honest work: their share in the clean run) and whether the
    rule held (Δ ≥ −5 points and reward share ≤ honest share)."""
    clean = {
        (r["partition"], _shown_rule(r), json.dumps(r["params"])): r
        for r in results
        if r["attack"] is None and "accuracy" in r
    }
    out = []
    for r in results:
        if r["attack"] is None:
            continue
        base = clean.get((r["partition"], _shown_rule(r), json.dumps(r["params"])))
        acc = r["accuracy"][-1] if "accuracy" in r else None
        delta = acc - base["accuracy"][-1] if acc is not None and base is not None else None
        honest = None
        if base is not None and "client_shares" in base:
            honest = sum(base["client_shares"][participant_id(i)] for i in range(r["attackers"]))
        paid = r.get("reward_share")
        fair = honest if honest is not None else r.get("work_share")
        holds = delta is not None and delta >= -TOLERANCE and paid <= fair + 1e-9
        out.append(
            {
                **r,
                "clean": base["accuracy"][-1] if base else None,
                "final": acc,
                "delta": delta,
                "honest_share": honest,
                "holds": holds,
            }
        )
    return out


def print_tables(results: list[dict]) -> None:
    rows = verdicts(results)
    print(
        "| partition | rule (params) | attack | attackers | final acc | clean | Δ pts | "
        "attackers' reward share | same clients, clean run | their sample share | "
        "attackers accepted | holds |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        p = ",".join(f"{k}={v:g}" for k, v in r["params"].items())
        head = f"| {r['partition']} | {r['rule']}({p}) | {r['attack']} | {r['attackers']} |"
        if r["final"] is None:
            print(f"{head} {r.get('error', 'no clean run')} | | | | | | | NO |")
            continue
        clean = f"{r['clean']:.2%}" if r["clean"] is not None else "—"
        delta = f"{r['delta'] * 100:+.1f}" if r["delta"] is not None else "—"
        acc_rate = r["attacker_accept_rate"]
        honest = f"{r['honest_share']:.1%}" if r["honest_share"] is not None else "—"
        print(
            f"{head} {r['final']:.2%} | {clean} | {delta} | {r['reward_share']:.1%} | {honest} | "
            f"{r['work_share']:.1%} | {acc_rate:.0%} | {'yes' if r['holds'] else 'NO'} |"
        )
    print("\nSummary: attacks held (Δ ≥ −5 pts, reward share ≤ same clients' clean share)")
    print("| partition | rule | ≤ 20% attackers | 30% attackers | broken by (≤ 20%) |")
    print("|---|---|---:|---:|---|")
    keys = dict.fromkeys((r["partition"], _shown_rule(r)) for r in rows)
    for part, rule in keys:
        mine = [r for r in rows if r["partition"] == part and _shown_rule(r) == rule]
        low = [r for r in mine if r["attackers"] <= 2]
        high = [r for r in mine if r["attackers"] == 3]
        broken = sorted({f"{r['attack']}@{r['attackers']}" for r in low if not r["holds"]})
        print(
            f"| {part} | {rule} | {sum(r['holds'] for r in low)}/{len(low)} | "
            f"{sum(r['holds'] for r in high)}/{len(high)} | {', '.join(broken) or '—'} |"
        )


def gini(values: list[float]) -> float:
    """Gini coefficient of non-negative ``values`` (0 = equal, →1 = one takes all)."""
    v, n = sorted(values), len(values)
    total = sum(v)
    if n == 0 or total == 0:
        return 0.0
    return sum((2 * (i + 1) - n - 1) * x for i, x in enumerate(v)) / (n * total)


def rows_v2(results: list[dict]) -> list[dict]:
    """Each attacked v2 run with its clean run (same partition, rule, parameters, seed):
    Δ accuracy, the attackers' and honest clients' per-capita reward share and their ratio,
    the honest spread (min/median/max per-capita share over the honest mean, Gini) and the Gini
    of the honest clients' sample shares."""

    def key(r: dict) -> tuple:
        return r["partition"], _shown_rule(r), json.dumps(r["params"]), r.get("seed", 0)

    clean = {key(r): r for r in results if r["attack"] is None and "accuracy" in r}
    free = {
        (*key(r), r["attackers"]): r
        for r in results
        if r["attack"] == "free_rider" and "accuracy" in r
    }
    out = []
    for r in results:
        if "accuracy" not in r:
            out.append({**r, "final": None})
            continue
        f = r["attackers"]
        bad = {participant_id(i) for i in range(f)}
        honest = [v for p, v in r["client_shares"].items() if p not in bad]
        samples = [v for p, v in r["sample_shares"].items() if p not in bad]
        att = sum(r["client_shares"][p] for p in bad) / f if f else None
        hon = sum(honest) / len(honest)
        base = clean.get(key(r))
        alone = free.get((*key(r), f))
        rel = sorted(h / hon for h in honest) if hon else []
        bd = r.get("backdoor_success")
        out.append(
            {
                **r,
                "final": r["accuracy"][-1],
                "clean": base["accuracy"][-1] if base else None,
                "delta": r["accuracy"][-1] - base["accuracy"][-1] if base else None,
                "delta_alone": r["accuracy"][-1] - alone["accuracy"][-1] if alone else None,
                "att_pc": att,
                "hon_pc": hon,
                "ratio": att / hon if att is not None and hon else None,
                "hon_min": rel[0] if rel else None,
                "hon_med": rel[(len(rel) - 1) // 2] if rel else None,
                "hon_max": rel[-1] if rel else None,
                "gini": gini(honest),
                "gini_samples": gini(samples),
                "backdoor": bd[-1] if bd else None,
            }
        )
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def print_v2(results: list[dict]) -> None:
    """Tables of the v2 suite, averaged over seeds (worst seed in brackets where it matters)."""
    rows = [r for r in rows_v2(results) if r["final"] is not None]
    errors = [r for r in rows_v2(results) if r["final"] is None]
    groups: dict[tuple, list[dict]] = {}
    order = {a: i for i, a in enumerate(dict.fromkeys((*V2_ATTACKS, *V2_FREE, *ATTACKS)))}
    order |= {r: i for i, r in enumerate((*V2_RULES, "fltrust"))} | {"iid": 0, "dirichlet": 1}

    def rank(r: dict) -> tuple:
        return (
            order.get(r["partition"], 9),
            r["attackers"],
            order.get(r["attack"], 99),
            order.get(r["rule"], 99),
        )

    for r in sorted((r for r in rows if r["attack"] is not None), key=rank):
        k = (r["partition"], _shown_rule(r), r["attack"], r["attackers"])
        groups.setdefault(k, []).append(r)
    print(
        "| partition | rule | attack | attackers | seeds | acc (mean) | Δ vs own clean, mean "
        "[worst] | Δ vs honest-only run, mean [worst] | attacker/honest per-capita reward, "
        "mean [worst] | attackers accepted | backdoor success | ratio ≤ 0.5 | Δ ≥ −5 |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for (part, rule, attack, f), rs in groups.items():
        d = [r["delta"] for r in rs if r["delta"] is not None]
        q = [r["ratio"] for r in rs if r["ratio"] is not None]
        acc = [r["attacker_accept_rate"] for r in rs if r["attacker_accept_rate"] is not None]
        bd = [r["backdoor"] for r in rs if r["backdoor"] is not None]
        dtxt = f"{_mean(d) * 100:+.1f} [{min(d) * 100:+.1f}]" if d else "—"
        da = [r["delta_alone"] for r in rs if r["delta_alone"] is not None]
        atxt = f"{_mean(da) * 100:+.1f} [{min(da) * 100:+.1f}]" if da else "—"
        qtxt = f"{_mean(q):.2f} [{max(q):.2f}]" if q else "—"
        print(
            f"| {part} | {rule} | {attack} | {f}/{N_CLIENTS} | {len(rs)} | "
            f"{_mean([r['final'] for r in rs]):.2%} | {dtxt} | {atxt} | {qtxt} | "
            f"{_mean(acc):.0%} | {f'{_mean(bd):.0%}' if bd else '—'} | "
            f"{'yes' if q and max(q) <= RATIO_GOAL else 'NO'} | "
            f"{'yes' if d and min(d) >= -TOLERANCE else 'NO'} |"
        )
    print("\nGoal check per attack and attacker count (worst over partitions and seeds):")
    print(
        "| attack | attackers | rules with ratio ≤ 0.5 everywhere | rules within 5 pts "
        "everywhere | worst ratio per rule |"
    )
    print("|---|---:|---|---|---|")
    rules = list(dict.fromkeys(_shown_rule(r) for r in rows))
    for attack in dict.fromkeys(k[2] for k in groups):
        for f in sorted({k[3] for k in groups if k[2] == attack}):
            ok_ratio, ok_acc, worst = [], [], []
            for rule in rules:
                rs = [r for k, v in groups.items() if k[1:] == (rule, attack, f) for r in v]
                if not rs:
                    continue
                q = [r["ratio"] for r in rs if r["ratio"] is not None]
                d = [r["delta"] for r in rs if r["delta"] is not None]
                if q and max(q) <= RATIO_GOAL:
                    ok_ratio.append(rule)
                if d and min(d) >= -TOLERANCE:
                    ok_acc.append(rule)
                worst.append(f"{rule} {max(q):.2f}" if q else f"{rule} —")
            print(
                f"| {attack} | {f} | {', '.join(ok_ratio) or '**none**'} | "
                f"{', '.join(ok_acc) or '**none**'} | {'; '.join(worst)} |"
            )
    print("\nHonest reward spread in clean runs (per-capita share / honest mean; mean over seeds):")
    print(
        "| partition | rule | acc | honest min | median | max | Gini rewards | Gini samples | "
        "honest accepted |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    cg: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["attack"] is None:
            key = r["partition"], r["rule"], json.dumps(r["params"]), r.get("algorithm", "fedavg")
            cg.setdefault(key, []).append(r)
    for (part, rule, params, algorithm), rs in cg.items():
        shown = _shown_rule({"rule": rule, "params": json.loads(params), "algorithm": algorithm})
        print(
            f"| {part} | {shown} | {_mean([r['final'] for r in rs]):.2%} | "
            f"{_mean([r['hon_min'] for r in rs]):.2f} | {_mean([r['hon_med'] for r in rs]):.2f} | "
            f"{_mean([r['hon_max'] for r in rs]):.2f} | {_mean([r['gini'] for r in rs]):.3f} | "
            f"{max(0.0, _mean([r['gini_samples'] for r in rs])):.3f} | "
            f"{_mean([r['honest_accept_rate'] for r in rs]):.0%} |"
        )
    for r in errors:
        print(f"error: {r['label']}: {r.get('error')}")


def print_summary(results: list[dict]) -> None:
    """One row per rule variant: the attackers' per-capita ratio, mean [worst seed], for the
    backdoor at 30 %, ALIE at 20 and 30 % (Dirichlet / IID), and the clean runs' least-paid
    honest client (mean [worst seed]) and Gini. Seeds counted per cell."""
    rows = [r for r in rows_v2(results) if r["final"] is not None]
    variants = list(dict.fromkeys(_shown_rule(r) for r in rows))
    cells = [("backdoor", 3), ("alie", 2), ("alie", 3)]
    head = [f"{a} {10 * f} % Dir / IID" for a, f in cells]
    print(f"| rule | {' | '.join(head)} | clean: honest min [worst] / Gini, Dir | same, IID |")
    print("|---|" + "---|" * (len(cells) + 2))

    def stat(rs: list[dict], key: str, worst: Callable[[list[float]], float]) -> str:
        v = [r[key] for r in rs if r[key] is not None]
        return f"{_mean(v):.2f} [{worst(v):.2f}] ({len(v)})" if v else "—"

    for rule in variants:
        mine = [r for r in rows if _shown_rule(r) == rule]
        out = []
        for attack, f in cells:
            parts = []
            for part in ("dirichlet", "iid"):
                rs = [
                    r
                    for r in mine
                    if r["attack"] == attack and r["attackers"] == f and r["partition"] == part
                ]
                parts.append(stat(rs, "ratio", max))
            out.append(" / ".join(parts))
        for part in ("dirichlet", "iid"):
            rs = [r for r in mine if r["attack"] is None and r["partition"] == part]
            gini_text = f"{_mean([r['gini'] for r in rs]):.3f}" if rs else "—"
            out.append(f"{stat(rs, 'hon_min', min)} / {gini_text}")
        print(f"| {rule} | {' | '.join(out)} |")


def print_goals(results: list[dict]) -> None:
    """One row per rule variant against issue 14's three goals (v7): the worst attackers' /
    honest per-capita ratio over every attack, share and partition (and the cells above 0.5),
    the worst Δ vs own clean over every attack at 30 % Dirichlet (and at 10-20 % or IID), the
    backdoor's final trigger success at 20 and 30 %, mean [worst seed], clean accuracy and the
    clean runs' least-paid honest client and Gini. Seeds counted per variant."""
    rows = [r for r in rows_v2(results) if r["final"] is not None]
    print(
        "| rule | seeds | worst ratio (cell) | cells > 0.5 | worst Δ 30 % Dir (attack) | worst Δ "
        "elsewhere | trigger 20 % Dir / IID | trigger 30 % Dir / IID | clean acc Dir / IID | "
        "honest min [worst] / Gini, Dir | same, IID |"
    )
    print("|---|" + "---|" * 10)

    def trig(rs: list[dict]) -> str:
        v = [100 * r["backdoor"] for r in rs if r["backdoor"] is not None]
        return f"{_mean(v):.0f} [{max(v):.0f}] %" if v else "—"

    for rule in dict.fromkeys(_shown_rule(r) for r in rows):
        mine = [r for r in rows if _shown_rule(r) == rule]
        hit = [r for r in mine if r["ratio"] is not None]
        worst = max(hit, key=lambda r: r["ratio"])
        cell = f"{worst['attack']} {10 * worst['attackers']} % {worst['partition'][:3]}"
        over = sorted(
            {
                (r["attack"], r["attackers"], r["partition"][:3])
                for r in hit
                if r["ratio"] > RATIO_GOAL
            }
        )
        over_text = ", ".join(f"{a} {10 * f} % {p}" for a, f, p in over) or "none"
        dl = [r for r in hit if r["delta"] is not None]
        hard = [r for r in dl if r["attackers"] == 3 and r["partition"] == "dirichlet"]
        w30 = min(hard, key=lambda r: r["delta"]) if hard else None
        rest = min((r["delta"] for r in dl if r not in hard), default=None)
        parts = {}
        for part in ("dirichlet", "iid"):
            cl = [r for r in mine if r["attack"] is None and r["partition"] == part]
            acc = f"{100 * _mean([r['final'] for r in cl]):.2f}" if cl else "—"
            hm = [r["hon_min"] for r in cl]
            pay = f"{_mean(hm):.2f} [{min(hm):.2f}] / {_mean([r['gini'] for r in cl]):.3f}"
            parts[part] = (acc, pay if cl else "—")
        bd = {
            (f, p): [
                r
                for r in hit
                if r["attack"] == "backdoor" and r["attackers"] == f and r["partition"] == p
            ]
            for f in (2, 3)
            for p in ("dirichlet", "iid")
        }
        seeds = len({r.get("seed", 0) for r in mine})
        cols = [
            rule,
            str(seeds),
            f"{worst['ratio']:.2f} ({cell})",
            over_text,
            f"{100 * w30['delta']:+.1f} ({w30['attack']})" if w30 else "—",
            f"{100 * rest:+.1f}" if rest is not None else "—",
            f"{trig(bd[2, 'dirichlet'])} / {trig(bd[2, 'iid'])}",
            f"{trig(bd[3, 'dirichlet'])} / {trig(bd[3, 'iid'])}",
            f"{parts['dirichlet'][0]} / {parts['iid'][0]}",
            parts["dirichlet"][1],
            parts["iid"][1],
        ]
        print("| " + " | ".join(cols) + " |")


def print_shares(results: list[dict]) -> None:
    """Recorded runs: the range over every round of the attackers' and the honest updates'
    share of squared length on the half of the coordinates where ``|g₀|`` is smallest, of
    that share over the round's lower median share (``quiet``'s test, over the accepted
    updates), and of exact zeros (what a crafted update's noise fills in)."""
    print(
        "| run | quiet share: attackers | honest | ÷ round median: attackers | honest | "
        "zeros: attackers | honest |"
    )
    print("|---|" + "---|" * 6)

    def span(v: list[float], pct: bool = True) -> str:
        if not v:
            return "—"
        return f"{100 * min(v):.1f}–{100 * max(v):.1f} %" if pct else f"{min(v):.2f}–{max(v):.2f}"

    for r in results:
        if "trust_log" not in r or not r["trust_log"] or "quiet" not in r["trust_log"][0][0]:
            continue
        bad = {participant_id(i) for i in range(r["attackers"])}
        cols: dict[str, list[float]] = {k: [] for k in ("qa", "qh", "ra", "rh", "za", "zh")}
        for log in r["trust_log"]:
            kept = sorted(e["quiet"] for e in log if e["accepted"])
            m = kept[(len(kept) - 1) // 2] if kept else 0.0
            for e in log:
                side = "a" if e["p"] in bad else "h"
                cols["q" + side].append(e["quiet"])
                cols["z" + side].append(e["zeros"])
                if e["accepted"] and m:
                    cols["r" + side].append(e["quiet"] / m)
        print(
            f"| {r['label']} | {span(cols['qa'])} | {span(cols['qh'])} | "
            f"{span(cols['ra'], False)} | {span(cols['rh'], False)} | {span(cols['za'])} | "
            f"{span(cols['zh'])} |"
        )


def print_leans(results: list[dict]) -> None:
    """Recorded runs: the range over every round of the attackers' and the honest updates'
    signed mass ``r = Σx/Σ|x|``, of ``m − r`` (``m`` the round's lower median over the accepted
    updates; ``lean`` pays less above 1/10), and how many accepted updates are past 1/10."""
    print(
        "| run | r: attackers | honest | m − r: attackers | honest | past 1/10: attackers | "
        "honest |"
    )
    print("|---|" + "---|" * 6)

    def span(v: list[float]) -> str:
        return f"{min(v):+.3f} … {max(v):+.3f}" if v else "—"

    for r in results:
        if "trust_log" not in r or not r["trust_log"] or "lean" not in r["trust_log"][0][0]:
            continue
        bad = {participant_id(i) for i in range(r["attackers"])}
        cols: dict[str, list[float]] = {k: [] for k in ("ra", "rh", "ga", "gh")}
        for log in r["trust_log"]:
            kept = sorted(e["lean"] for e in log if e["accepted"])
            m = kept[(len(kept) - 1) // 2] if kept else 0.0
            for e in log:
                side = "a" if e["p"] in bad else "h"
                cols["r" + side].append(e["lean"])
                if e["accepted"]:
                    cols["g" + side].append(m - e["lean"])
        past = {k: sum(g > 0.1 for g in cols["g" + k]) for k in "ah"}
        print(
            f"| {r['label']} | {span(cols['ra'])} | {span(cols['rh'])} | {span(cols['ga'])} | "
            f"{span(cols['gh'])} | {past['a']} of {len(cols['ga'])} | "
            f"{past['h']} of {len(cols['gh'])} |"
        )


def print_persistence(results: list[dict]) -> None:
    """Recorded runs: the range and mean over every round of the attackers' and the honest
    updates' persistence (the cosine of each update's own part with the same client's in its
    previous round; ``fltrust``'s ``persist`` estimates it from sketches)."""
    print("| run | persistence: attackers | honest |")
    print("|---|---|---|")

    def span(v: list[float]) -> str:
        return f"{min(v):+.2f} … {max(v):+.2f} (mean {sum(v) / len(v):+.2f})" if v else "—"

    for r in results:
        if r.get("derived_from") or not r.get("trust_log"):
            continue
        bad = {participant_id(i) for i in range(r["attackers"])}
        vals: dict[str, list[float]] = {"a": [], "h": []}
        for log in r["trust_log"]:
            for e in log:
                if e.get("persist") is not None:
                    vals["a" if e["p"] in bad else "h"].append(e["persist"])
        if vals["a"] or vals["h"]:
            print(f"| {r['label']} | {span(vals['a'])} | {span(vals['h'])} |")


def crafting_ratios(run: dict, params: dict[str, float], every: int) -> tuple[float, float]:
    """A logged run's attackers' per-capita pay over the honest per-capita under the pay
    ``params``, over the whole run and over the rounds the colluders crafted (every
    ``every``-th; honest updates in the others)."""
    bad = {participant_id(i) for i in range(run["attackers"])}
    standing: dict[str, Standing] = {}
    whole, crafted = [0.0, 0.0], [0.0, 0.0]  # attackers', honest clients' per-capita shares
    for rnd, log in enumerate(run["trust_log"], 1):
        pay, standing = rescored_pay(log, {**run["params"], **params}, standing)
        total = sum(pay)
        for e, p in zip(log, pay, strict=True):
            k = 0 if e["p"] in bad else 1
            share = p / total / (len(bad) if k == 0 else len(log) - len(bad)) if total else 0.0
            whole[k] += share
            crafted[k] += share if rnd % every == 0 else 0.0
    return whole[0] / whole[1], crafted[0] / crafted[1]


def print_crafting_rounds(results: list[dict], every: int, variants: list[dict]) -> None:
    """The colluders' ratio, mean [worst seed], whole run / crafting rounds, per variant."""
    runs = [r for r in results if r["attack"] in COLLUDING and "trust_log" in r]
    cells = [(p, f) for p in ("dirichlet", "iid") for f in sorted({r["attackers"] for r in runs})]
    head = " | ".join(f"{p} {10 * f} %: whole run / crafting rounds" for p, f in cells)
    print(f"| pay | {head} |\n|---|" + "---|" * len(cells))
    for variant in [{}, *variants]:
        out = []
        for part, f in cells:
            xs = [
                crafting_ratios(r, variant, every)
                for r in runs
                if r["partition"] == part and r["attackers"] == f
            ]
            w, c = [a for a, _ in xs], [b for _, b in xs]
            out.append(f"{_mean(w):.2f} [{max(w):.2f}] / {_mean(c):.2f} [{max(c):.2f}]")
        print(f"| {_params_text(variant) or 'as run'} | {' | '.join(out)} |")


def print_compare(before: list[dict], after: list[dict]) -> None:
    """Before/after table of the runs in ``after``: each (partition, rule, attack, attackers)
    group next to the same runs (same labels, so the same seeds) in ``before``."""
    old = {r["label"]: r for r in rows_v2(before) if r["final"] is not None}
    new = [r for r in rows_v2(after) if r["final"] is not None and r["label"] in old]
    groups: dict[tuple, list[dict]] = {}
    for r in new:
        groups.setdefault((r["partition"], _shown_rule(r), r["attack"], r["attackers"]), []).append(
            r
        )

    def q(rs: list[dict], key: str, worst: Callable[[list[float]], float] = max) -> str:
        v = [r[key] for r in rs if r[key] is not None]
        return f"{_mean(v):.2f} [{worst(v):.2f}]" if v else "—"

    print(
        "| partition | rule | attack | attackers | seeds | acc (mean) | same acc as before | "
        "ratio before, mean [worst] | ratio after, mean [worst] | goal ≤ 0.5 after | "
        "honest min per-capita before → after, mean [worst] |"
    )
    print("|---|---|---|---:|---:|---:|---|---:|---:|---|---|")
    for (part, rule, attack, f), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0] != "iid", kv[0][3], str(kv[0][2]))
    ):
        was = [old[r["label"]] for r in rs]
        same = all(r["accuracy"] == w["accuracy"] for r, w in zip(rs, was, strict=True))
        ratios = [r["ratio"] for r in rs if r["ratio"] is not None]
        print(
            f"| {part} | {rule} | {attack or 'clean'} | {f}/{N_CLIENTS} | {len(rs)} | "
            f"{_mean([r['final'] for r in rs]):.2%} | {'yes' if same else 'NO'} | "
            f"{q(was, 'ratio')} | {q(rs, 'ratio')} | "
            f"{('yes' if max(ratios) <= RATIO_GOAL else 'NO') if ratios else '—'} | "
            f"{q(was, 'hon_min', min)} → {q(rs, 'hon_min', min)} |"
        )
    print("\nHonest reward spread in clean runs, before → after (mean over seeds):")
    print("| partition | rule | honest min | median | max | Gini rewards | Gini samples |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for part in ("iid", "dirichlet"):
        rs = [r for r in new if r["attack"] is None and r["partition"] == part]
        if not rs:
            continue
        was = [old[r["label"]] for r in rs]
        cells = [
            f"{_mean([w[k] for w in was]):.{d}f} → {_mean([r[k] for r in rs]):.{d}f}"
            for k, d in (("hon_min", 2), ("hon_med", 2), ("hon_max", 2), ("gini", 3))
        ]
        gs = max(0.0, _mean([r["gini_samples"] for r in rs]))
        print(f"| {part} | {rs[0]['rule']} | {' | '.join(cells)} | {gs:.3f} |")


if __name__ == "__main__":
    raise SystemExit(main())
