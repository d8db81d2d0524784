"""Reward arithmetic of DESIGN.md step 4, in integers so every committee member agrees."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from flchain.learning.aggregation import Standing
from flchain.types import Address


def split_budget(pool: int, scores: Mapping[Address, int]) -> dict[Address, int]:
    """Share ``pool`` token units among accounts in proportion to their integer scores.

    Each share is floored; the remainder (at most one unit per account) is not paid and rolls
    over with the rest of the budget. Accounts with score 0 get nothing and are left out.
    """
    if pool < 0:
        raise ValueError(f"pool must be non-negative, got {pool}")
    if any(s < 0 for s in scores.values()):
        raise ValueError("scores must be non-negative integers")
    total = sum(scores.values())
    if total == 0:
        return {}
    return {a: pool * s // total for a, s in sorted(scores.items()) if s > 0}


def accumulate(
    previous: Mapping[Address, int], credits: Mapping[Address, int]
) -> dict[Address, int]:
    """Cumulative credit per account after adding one round's credits to the previous totals."""
    out = dict(previous)
    for account, amount in credits.items():
        if amount < 0:
            raise ValueError(f"negative credit for {account}")
        out[account] = out.get(account, 0) + amount
    return dict(sorted(out.items()))


def extension_error(
    base: Mapping[Address, int], cumulative: Mapping[Address, int], reward_total: int
) -> str | None:
    """Why ``cumulative`` is not ``base`` plus ``reward_total`` of new credit, or ``None`` when it
    is: no account of ``base`` may lose credit or vanish, and the credits must grow by exactly
    ``reward_total`` in sum. Every honest round's tree extends the one it builds on like this."""
    for account, amount in sorted(base.items()):
        now = cumulative.get(account)
        if now is None:
            return f"{account} dropped from the credits"
        if now < amount:
            return f"{account} credited {now}, less than {amount} before"
    grown = sum(cumulative.values()) - sum(base.values())
    if grown != reward_total:
        return f"credits grew by {grown}, not by the reward total {reward_total}"
    return None


def standing_error(
    base: Mapping[Address, Standing],
    standing: Mapping[Address, Standing],
    weighed: Collection[Address],
) -> str | None:
    """Why ``standing`` is not ``base`` plus at most one round of evidence for each of
    ``weighed`` (the round's accepted participants), or ``None`` when it is: nobody of ``base``
    vanishes, and a participant's standing either stays or gains one round with its balance
    moved by at most one (and its sketch, ``persist``'s, replaced). So a colluding committee can
    bend the evidence of its own round, as an honest one could have recorded it, and no more:
    the pay of later rounds, which reads the evidence, stays within what one round can change
    (a forged sketch decides one later round's persistence for that participant)."""
    for who in sorted(base):
        if who not in standing:
            return f"{who}'s standing dropped"
    for who, new in sorted(standing.items()):
        old = base.get(who, Standing(0, 0))
        if new == old:
            continue
        if new.rounds != old.rounds + 1 or abs(new.balance - old.balance) > 1:
            was, now = [old.rounds, old.balance], [new.rounds, new.balance]
            return f"{who}'s standing went from {was} to {now}: more than one round"
        if who not in weighed:
            return f"{who}'s standing moved, but its update was not accepted"
    return None
