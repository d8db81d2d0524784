"""The interface every aggregation rule implements, and the data it takes and gives.

Modelled on Flower's ``Strategy.aggregate_fit``: a rule takes the round's decoded updates
and its failures (as data) and returns the aggregate update plus one :class:`Decision` per
participant. :meth:`Aggregator.aggregate` does what every rule shares: order, validity,
copies; a rule implements :meth:`Aggregator._combine`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, NamedTuple

import numpy as np

from flchain.errors import AggregationError
from flchain.learning.codec import Update
from flchain.learning.models import ModelSpec
from flchain.learning.validation import RoundValidation

#: Sample counts outside ``[1, MAX_SAMPLES]`` make an input invalid (keeps sums exact).
MAX_SAMPLES = 2**24


@dataclass(frozen=True)
class ClientUpdate:
    """One decoded update as the rule sees it."""

    participant: str
    update: Update
    num_samples: int

    def __post_init__(self) -> None:
        # numpy integers would leak into the JSON report; normalise to int
        object.__setattr__(self, "num_samples", int(self.num_samples))


@dataclass(frozen=True)
class Failure:
    """A participant whose update is missing or invalid, with the reason."""

    participant: str
    reason: str


@dataclass(frozen=True)
class Decision:
    """The rule's verdict on one participant; ``score`` splits the round's rewards."""

    participant: str
    accepted: bool
    score: int
    reason: str


class Standing(NamedTuple):
    """A participant's evidence from earlier rounds, as a rule with memory (``fltrust``'s
    ``memory`` and ``persist``) keeps it in the round report: in how many rounds its update
    was weighed, how many of those it was above minus below the round's median (``memory``),
    and the sketch of its latest update's own part (``persist``; empty without it)."""

    rounds: int
    balance: int
    sketch: tuple[int, ...] = ()


#: A rule's verdicts: participant -> (accepted, score, reason).
Verdicts = dict[str, tuple[bool, int, str]]


#: Every participant's evidence from earlier rounds (see :class:`Standing`).
Standings = Mapping[str, Standing]


@dataclass(frozen=True)
class AggregateResult:
    """The aggregate update and one decision per participant, sorted by participant id;
    ``standing``: every participant's evidence after this round, for a rule with memory
    (empty for rules without)."""

    update: Update
    decisions: tuple[Decision, ...]
    standing: Mapping[str, Standing] = field(default_factory=dict)

    def report(self) -> list[dict[str, Any]]:
        """The decisions as JSON-ready dicts (for the round report)."""
        return [
            {
                "participant": d.participant,
                "accepted": d.accepted,
                "score": d.score,
                "reason": d.reason,
            }
            for d in self.decisions
        ]


class Aggregator(ABC):
    """An aggregation rule. Subclasses implement :meth:`_combine` on the valid, distinct,
    non-zero updates in participant-id order; this base class does the rest."""

    #: The rule's name in task configurations.
    name: ClassVar[str]
    #: The rule's id on-chain (``TaskParameters.aggregation_rule``; 0 there means "see the
    #: manifest", which stays authoritative: the id only lets explorers show the rule).
    rule_id: ClassVar[int]

    def params(self) -> dict[str, int | float]:
        """The rule's parameters, as they appear in the task configuration."""
        return {}

    def min_inputs(self) -> int:
        """The fewest valid updates the rule can aggregate."""
        return 1

    @property
    def remembers(self) -> bool:
        """Whether the rule's pay depends on earlier rounds (then give :meth:`aggregate` the
        ``standing`` of the round report it builds on)."""
        return False

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        failures: Sequence[Failure] = (),
        validation: RoundValidation | None = None,
        standing: Mapping[str, Standing] | None = None,
    ) -> AggregateResult:
        """Aggregate one round. ``validation`` (the task's public validation set and the
        round's global model) lets a rule that uses it score updates on held-out data; rules
        that do not ignore it. ``standing`` (the previous round report's, for a rule that
        :attr:`remembers`) is each participant's evidence from earlier rounds; the result
        carries it forward.

        Raises :class:`~flchain.errors.AggregationError` when fewer than :meth:`min_inputs`
        usable updates remain, when the updates use different specs, or when a participant
        id appears twice (a caller bug, not a client failure).
        """
        ids = [u.participant for u in updates] + [f.participant for f in failures]
        if len(set(ids)) != len(ids):
            raise AggregationError("a participant id appears more than once in the round")
        rejected: dict[str, str] = {f.participant: f"invalid: {f.reason}" for f in failures}
        ordered = sorted(updates, key=lambda u: u.participant)
        if len({u.update.spec for u in ordered}) > 1:
            raise AggregationError("updates were decoded with different model specs")
        for u in ordered:
            if not 1 <= u.num_samples <= MAX_SAMPLES:
                rejected[u.participant] = f"invalid: num_samples={u.num_samples}"
            elif u.update.is_zero():
                rejected[u.participant] = "empty update (global model sent back)"
        usable = [u for u in ordered if u.participant not in rejected]
        # A group of identical updates is paid nothing, and its update enters the rule once,
        # as its first member's with the group's smallest sample count: no more weight than
        # one update of a member (so copying buys an attacker nothing), and the data of an
        # honest client whose update was copied is not lost from the model.
        copies: dict[str, str] = {}
        for group in identical_groups([u.update.q for u in usable]):
            members = [usable[i] for i in group]
            reason = f"identical to {len(group) - 1} other update(s)"
            for u in members[1:]:
                rejected[u.participant] = reason
            copies[members[0].participant] = f"{reason}; counted once in the aggregate"
            least = min(u.num_samples for u in members)
            usable[group[0]] = replace(members[0], num_samples=least)
        usable = [u for u in usable if u.participant not in rejected]
        if len(usable) < self.min_inputs():
            raise AggregationError(
                f"{self.name} needs at least {self.min_inputs()} usable updates, got {len(usable)}"
            )
        spec = usable[0].update.spec
        q, verdicts = self._combine(usable, spec)
        if validation is not None:
            self._rescore(q, usable, verdicts, spec, validation)
        q = q.astype(np.int32)
        q.flags.writeable = False
        for p, reason in copies.items():  # before the memory: a copy adds no evidence
            verdicts[p] = (False, 0, reason)
        after: dict[str, Standing] = {}
        if self.remembers:
            q, verdicts, after = self._remember(usable, q, verdicts, standing or {})
        decisions = [Decision(p, False, 0, r) for p, r in rejected.items()]
        decisions += [Decision(u.participant, *verdicts[u.participant]) for u in usable]
        return AggregateResult(
            Update(spec, q), tuple(sorted(decisions, key=lambda d: d.participant)), after
        )

    def _remember(
        self, *args: Any, **kwargs: Any
    ) -> tuple[np.ndarray, Verdicts, dict[str, Standing]]:
        """Rules that :attr:`remember <remembers>`: given the usable updates, the aggregate,
        the verdicts and the earlier standing, the aggregate (the one given, or one weighed by
        the evidence too: int32, read-only), the verdicts with pay adjusted by the
        participants' evidence over rounds, and the evidence after this round."""
        raise NotImplementedError

    def _rescore(
        self,
        aggregate: np.ndarray,
        updates: Sequence[ClientUpdate],
        verdicts: Verdicts,
        spec: ModelSpec,
        validation: RoundValidation,
    ) -> None:
        """Adjust :meth:`_combine`'s ``verdicts`` (in place) with the round's validation data;
        rules that score on it override. Scores only: the aggregate is already fixed."""
        return None  # most rules do not use validation data

    @abstractmethod
    def _combine(
        self, updates: Sequence[ClientUpdate], spec: ModelSpec
    ) -> tuple[np.ndarray, dict[str, tuple[bool, int, str]]]:
        """The aggregate (int64 fixed-point) and ``participant -> (accepted, score, reason)``."""


def identical_groups(vectors: Sequence[np.ndarray]) -> list[list[int]]:
    """Indices of vectors equal to at least one other. A cheap sampled fingerprint finds
    candidates; a sha-256 of the whole vector confirms them (only candidates are hashed)."""
    by_fp: dict[bytes, list[int]] = defaultdict(list)
    for i, v in enumerate(vectors):
        by_fp[v[:: max(1, v.size // 4096)].tobytes()].append(i)
    groups = []
    for cand in by_fp.values():
        if len(cand) < 2:
            continue
        by_hash: dict[bytes, list[int]] = defaultdict(list)
        for i in cand:
            by_hash[hashlib.sha256(vectors[i].tobytes()).digest()].append(i)
        groups += [g for g in by_hash.values() if len(g) > 1]
    return groups


def accept_all(
    updates: Sequence[ClientUpdate], reason: str = ""
) -> dict[str, tuple[bool, int, str]]:
    return {u.participant: (True, u.num_samples, reason) for u in updates}


def update_vectors(updates: Sequence[ClientUpdate]) -> list[np.ndarray]:
    return [u.update.q for u in updates]
