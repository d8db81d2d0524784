"""The round report: what the committee decided, stored off-chain and named on-chain by digest.

Every committee member builds this report independently and must get identical bytes, so the
encoding is canonical JSON (sorted keys, no insignificant white space, integers for amounts) and
holds nothing that depends on timing or floating-point evaluation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from flchain import safejson
from flchain.errors import ProtocolError
from flchain.learning.aggregation import SKETCH_BOUND, SKETCH_SIZE, Standing
from flchain.learning.privacy import PrivacySpend, epsilon_of
from flchain.learning.training import DPConfig
from flchain.types import Address


@dataclass(frozen=True)
class UpdateOutcome:
    """What happened to one revealed (or missing) update in a round."""

    participant: str
    cid: str
    digest: str  # 0x-hex
    num_samples: int
    accepted: bool
    score: int
    reward: int
    reason: str = ""


@dataclass(frozen=True)
class RoundReport:
    task: str
    round: int
    rule: str
    previous_model_cid: str
    model_cid: str
    model_digest: str
    outcomes: tuple[UpdateOutcome, ...]
    reward_total: int
    cumulative: dict[Address, int] = field(default_factory=dict)
    reward_root: str = "0x" + "00" * 32
    #: The server optimizer's state after this round, or SCAFFOLD's server control variate (see
    #: :mod:`flchain.protocol.committee`); empty, and then left out of the bytes, for tasks
    #: with neither.
    server_state_cid: str = ""
    #: The finalized round whose cumulative credits ``cumulative`` extends (``None``: none).
    base_round: int | None = None
    #: Why the latest finalized round's credits were not built on ("" when they were).
    base_note: str = ""
    #: DP tasks: per participant, how many rounds' updates it has revealed so far (those of
    #: the finalized rounds this report's credits build on, and this one). Integers, so every
    #: member writes the same bytes; ε follows from them and the manifest's DP parameters
    #: (:meth:`privacy`). Empty, and then left out of the bytes, for tasks without DP.
    dp_rounds: dict[Address, int] = field(default_factory=dict)
    #: Rules with memory (``fltrust``'s ``memory``): per participant, its evidence over the
    #: finalized rounds this report's credits build on and this one (rounds weighed, balance
    #: above minus below the median), which the next round's pay reads. Integers, so every
    #: member writes the same bytes; empty, and then left out of the bytes, for other rules.
    standing: dict[Address, Standing] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes (the report digest is the sha-256 of these)."""
        data = asdict(self)
        data["outcomes"] = [asdict(o) for o in self.outcomes]
        if not self.server_state_cid:  # reports of tasks without one keep their exact bytes
            del data["server_state_cid"]
        if not self.dp_rounds:  # the same for tasks without DP
            del data["dp_rounds"]
        if not self.standing:  # and for rules without memory
            del data["standing"]
        else:  # [rounds, balance], and the sketch only where a rule keeps one
            data["standing"] = {
                who: [s.rounds, s.balance, *([list(s.sketch)] if s.sketch else [])]
                for who, s in self.standing.items()
            }
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    def digest(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> RoundReport:
        try:
            raw: dict[str, Any] = safejson.loads(data)
            if not isinstance(raw, dict):
                raise TypeError(f"expected a JSON object, got {type(raw).__name__}")
            outcomes = tuple(UpdateOutcome(**o) for o in raw.pop("outcomes"))
            standing = raw.pop("standing", {})
            wrong_standing = _standing_error(standing)
            if wrong_standing:
                raise ValueError(wrong_standing)
            standing = {
                k: Standing(v[0], v[1], tuple(v[2]) if len(v) == 3 else ())
                for k, v in standing.items()
            }
            report = cls(outcomes=outcomes, standing=standing, **raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise ProtocolError(f"malformed round report: {exc}") from exc
        wrong = next(filter(None, map(safejson.wrong_field, (report, *report.outcomes))), None)
        if wrong is None and not (
            report.base_round is None
            or (type(report.base_round) is int and 0 <= report.base_round < report.round)
        ):
            wrong = "base_round must be an earlier round or null"
        if wrong is None:
            wrong = _counts_error("cumulative", report.cumulative, negative=True)
        if wrong is None:
            wrong = _counts_error("dp_rounds", report.dp_rounds, negative=False)
        if wrong:
            raise ProtocolError(f"malformed round report: {wrong}")
        if report.to_bytes() != data:
            raise ProtocolError("round report is not in canonical form")
        return report

    def privacy(self, dp: DPConfig) -> dict[str, PrivacySpend]:
        """ε per participant as of this round, under the task's DP parameters ``dp``: the ε of
        its release in this round (0 if it revealed nothing) and cumulative over the rounds
        :attr:`dp_rounds` counts (with the accountant the node uses, :func:`epsilon_of`)."""
        revealed = {o.participant for o in self.outcomes}
        return {
            who: PrivacySpend(
                self.round,
                epsilon_of(dp, 1) if who in revealed else 0.0,
                epsilon_of(dp, rounds),
                dp.delta,
            )
            for who, rounds in sorted(self.dp_rounds.items())
        }


def _standing_error(standing: object) -> str | None:
    """Why ``standing`` is not a map of addresses to ``[rounds, balance]`` or
    ``[rounds, balance, sketch]`` with ``rounds >= 1``, ``|balance| <= rounds`` and a
    sketch of :data:`SKETCH_SIZE` integers within ``±SKETCH_BOUND``, or ``None``."""
    if isinstance(standing, dict) and all(
        isinstance(k, str)
        and isinstance(v, list)
        and len(v) in (2, 3)
        and all(type(x) is int for x in v[:2])
        and abs(v[1]) <= v[0]
        and v[0] >= 1
        and (len(v) == 2 or _is_sketch(v[2]))
        for k, v in standing.items()
    ):
        return None
    return (
        "standing must map addresses to [rounds >= 1, balance within ±rounds] or to "
        f"[rounds, balance, {SKETCH_SIZE} integers within ±{SKETCH_BOUND}]"
    )


def _is_sketch(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == SKETCH_SIZE
        and all(type(x) is int and abs(x) <= SKETCH_BOUND for x in value)
    )


def _counts_error(name: str, counts: object, *, negative: bool) -> str | None:
    """Why ``counts`` is not a map of addresses to integers (``negative``: any sign)."""
    if isinstance(counts, dict) and all(
        isinstance(k, str) and type(v) is int and (negative or v >= 0) for k, v in counts.items()
    ):
        return None
    return f"{name} must map addresses to integers" + ("" if negative else " >= 0")
