"""Privacy accounting for client-level DP: ε per participant, per round and cumulative.

A participant that trains in round ``r`` releases one Gaussian mechanism (see
:class:`~flchain.learning.training.DPConfig`); ``k`` releases compose, and Opacus' RDP
accountant turns ``k`` compositions of noise multiplier σ at sampling rate 1 into ε at the
task's δ. The ledger counts *rounds*, not training calls: training is seeded by the round, so
training the same round again (a restarted node) reproduces the same noisy update, which
releases nothing new.

:func:`epsilon_of` is the one place a count of rounds becomes ε: the node's accountant (its
log, ``flchain status --local``, the target-ε check) and the round report's reader
(:meth:`~flchain.protocol.report.RoundReport.privacy`, ``flchain status``) both call it, so
the committee's report holds integer counts only (identical bytes on every member) and ε is
derived from them wherever it is shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flchain.errors import PrivacyBudgetExhausted
from flchain.learning.training import DPConfig, dp_epsilon


def epsilon_of(dp: DPConfig, rounds: int) -> float:
    """Cumulative ε after ``rounds`` releases under ``dp`` (0 for none): Opacus' RDP
    accountant, ``rounds`` compositions of the Gaussian mechanism at sampling rate 1."""
    return dp_epsilon(dp.noise_multiplier, rounds, dp.delta) if rounds else 0.0


@dataclass(frozen=True)
class PrivacySpend:
    """The ε of round ``round``'s release and the cumulative ε after it, at ``delta``."""

    round: int
    epsilon_round: float
    epsilon_total: float
    delta: float


class PrivacyAccountant:
    """One participant's DP budget on one task."""

    def __init__(self, dp: DPConfig, rounds: Iterable[int] = ()) -> None:
        self.dp = dp
        self.rounds: set[int] = set(rounds)

    def epsilon(self, releases: int | None = None) -> float:
        """Cumulative ε after ``releases`` rounds (default: the rounds spent so far)."""
        return epsilon_of(self.dp, len(self.rounds) if releases is None else releases)

    def check(self, round_id: int) -> None:
        """Raise :class:`PrivacyBudgetExhausted` if training ``round_id`` would take the
        cumulative ε past the target (a round already spent costs nothing more)."""
        target = self.dp.target_epsilon
        if target is None or round_id in self.rounds:
            return
        after = self.epsilon(len(self.rounds) + 1)
        if after > target:
            raise PrivacyBudgetExhausted(
                f"round {round_id}: skipped, training would take ε from "
                f"{self.epsilon():.3f} to {after:.3f}, past the task's target ε {target:g} "
                f"(δ={self.dp.delta:g}, {len(self.rounds)} round(s) spent)"
            )

    def spend(self, round_id: int) -> PrivacySpend:
        """Record that this participant released an update for ``round_id``."""
        self.rounds.add(round_id)
        return PrivacySpend(round_id, self.epsilon(1), self.epsilon(), self.dp.delta)
