"""Robust aggregation rules with bit-for-bit deterministic output.

Every rule implements :class:`Aggregator` (modelled on Flower's ``Strategy.aggregate_fit``):
it takes the round's decoded updates and its failures (as data), and returns the aggregate
update plus one :class:`Decision` per participant — accepted or not, a non-negative integer
score that splits the round's rewards, and a reason.

Determinism: all arithmetic is on the fixed-point integers of :class:`~.codec.Update`, so sums
are exact and order-free; the inputs are put in participant-id order first; selections are
exact sorts of integers with ties broken by participant id; Krum's distances come from one
Gram matrix computed exactly (16-bit limbs in float64 blocks whose partial sums stay below
2^53, so BLAS returns exact integers whatever its blocking or thread count). Means are rounded
to the nearest fixed-point value, ties upward.

Copies are worth nothing: every update whose fixed-point values equal another's in the same
round is paid nothing — *all* copies, the original included, because with commit-reveal nobody
can see an update before the reveal, so identical updates mean collusion, and "first" would
reward whoever picks the smallest id. The group's update still enters the rule once (as its
first member's, with the group's smallest sample count), so a copied honest client's data is
not lost from the model and copying buys no more weight than one update. A zero update (the
global model sent back) is rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flchain.errors import ConfigError
from flchain.learning.aggregation.base import (
    MAX_SAMPLES,
    AggregateResult,
    Aggregator,
    ClientUpdate,
    Decision,
    Failure,
    Standing,
    Standings,
    Verdicts,
)
from flchain.learning.aggregation.clipping import CenteredClip, centered_clip
from flchain.learning.aggregation.fltrust import (
    LEAN_SLACK,
    MEMORY_SLACK,
    QUIET_SLACK,
    FLTrust,
    cosine_score,
    crowd_pay,
    lean_discount,
    persisted_pay,
    persistence_weights,
    quiet_discount,
    remembered_pay,
    signed_mass,
    support_discount,
    sybil_discount,
    winsorize,
)
from flchain.learning.aggregation.rules import (
    Bulyan,
    CoordinateMedian,
    FedAvg,
    Krum,
    MultiKrum,
    NormBoundedMean,
    TrimmedMean,
)
from flchain.learning.aggregation.sketch import SKETCH_BOUND, SKETCH_SIZE

RULES: dict[str, type[Aggregator]] = {
    cls.name: cls
    for cls in (
        FedAvg,
        CoordinateMedian,
        TrimmedMean,
        Krum,
        MultiKrum,
        Bulyan,
        NormBoundedMean,
        CenteredClip,
        FLTrust,
    )
}


def aggregator_from_config(
    name: str, params: Mapping[str, Any] | None = None, reference: str = ""
) -> Aggregator:
    """Build a rule from its configuration name (see :data:`RULES`) and parameters;
    ``reference`` is the task's ``aggregation.reference_account`` (only ``fltrust`` takes
    one)."""
    if name not in RULES:
        raise ConfigError(f"unknown aggregation rule {name!r}; known: {sorted(RULES)}")
    if reference and not issubclass(RULES[name], FLTrust):
        raise ConfigError(f"aggregation.reference_account is for fltrust, not {name}")
    extra = {"reference": reference} if reference else {}
    try:
        return RULES[name](**dict(params or {}), **extra)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for {name}: {exc}") from exc


__all__ = [
    "LEAN_SLACK",
    "MAX_SAMPLES",
    "MEMORY_SLACK",
    "QUIET_SLACK",
    "RULES",
    "SKETCH_BOUND",
    "SKETCH_SIZE",
    "AggregateResult",
    "Aggregator",
    "Bulyan",
    "CenteredClip",
    "ClientUpdate",
    "CoordinateMedian",
    "Decision",
    "FLTrust",
    "Failure",
    "FedAvg",
    "Krum",
    "MultiKrum",
    "NormBoundedMean",
    "Standing",
    "Standings",
    "TrimmedMean",
    "Verdicts",
    "aggregator_from_config",
    "centered_clip",
    "cosine_score",
    "crowd_pay",
    "lean_discount",
    "persisted_pay",
    "persistence_weights",
    "quiet_discount",
    "remembered_pay",
    "signed_mass",
    "support_discount",
    "sybil_discount",
    "winsorize",
]
