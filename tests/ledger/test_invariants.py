"""Hypothesis stateful tests: random sequences of commits, reveals, attestations (honest and
forged), expiries, slashes, settlements, claims and mining on the embedded chain, with the
ledger's invariants checked after every step.

Each example starts from one snapshot of a deployed stack and reverts to it afterwards.
``EXAMPLES`` sequences of up to ``STEPS`` actions run (4 x 20 = at most 80 steps).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from flchain.errors import ContractRevert
from flchain.ledger import contract_errors as E
from flchain.ledger.contracts import RoundStatus
from flchain.ledger.merkle import RewardTree

if TYPE_CHECKING:
    from conftest import TaskKit

EXAMPLES = 4
STEPS = 20
PLAYERS = 5


def build_machine(kit: TaskKit) -> type[RuleBasedStateMachine]:
    people = kit.participants[:PLAYERS]
    outsider = kit.outsider
    config = kit.task.config()
    # Only the players, the registry and the task can gain or lose tokens in these actions.
    holders = [p.address for p in people]
    supply = kit.token.total_supply()

    def tracked() -> int:
        """Tokens held by the players, the registry and the task under test."""
        token = kit.token
        held = token.balance_of(kit.registry.address) + token.balance_of(kit.task.address)
        return held + sum(token.balance_of(a) for a in holders)

    total = tracked()
    stake0 = sum(kit.registry.stake_of(p.address) for p in people)

    class Ledger(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.snapshot = kit.chain.snapshot()
            self.updates: dict[tuple[str, int], object] = {}
            self.credited: dict[str, int] = {}  # cumulative credits of the latest finalized root
            self.trees: dict[int, RewardTree] = {}
            self.slashed = 0
            self.tag = 0
            self.revealers: dict[int, list[str]] = {}
            self.finalized: list[int] = []
            self.claims: list[tuple[str, int]] = []
            self.commits: dict[tuple[str, int], int] = {}  # successful commits per round

        def teardown(self) -> None:
            kit.chain.revert(self.snapshot)

        # --- actions ----------------------------------------------------------------------

        @rule(who=st.integers(0, PLAYERS - 1))
        def commit(self, who: int) -> None:
            account = people[who]
            round_id = kit.task.current_round()
            upd = kit.update(account, round_id, str(self.tag))
            try:
                receipt = kit.task.commit(account, kit.commitment(account, round_id, upd))
            except ContractRevert:
                return
            self.tag += 1
            self.updates[(account.address, round_id)] = upd
            self._count_commit(account.address, round_id)
            self._count_slashes(receipt)

        @rule(who=st.integers(0, PLAYERS - 1), low=st.binary(min_size=8, max_size=8))
        def commit_zero_prefix(self, who: int, low: bytes) -> None:
            """Issue 13: a commitment whose first 24 bytes are zero (it can never be revealed)."""
            account = people[who]
            round_id = kit.task.current_round()
            try:
                receipt = kit.task.commit(account, b"\x00" * 24 + low)
            except ContractRevert:
                return
            self.updates.pop((account.address, round_id), None)
            self._count_commit(account.address, round_id)
            self._count_slashes(receipt)

        @rule(who=st.integers(0, PLAYERS - 1))
        def reveal(self, who: int) -> None:
            account = people[who]
            upd = self.updates.get((account.address, kit.task.current_round()))
            if upd is None:
                return
            with contextlib.suppress(ContractRevert):
                kit.reveal(account, upd)  # type: ignore[arg-type]
                self.revealers.setdefault(kit.task.current_round(), []).append(account.address)

        @rule(blocks=st.integers(1, 25))
        def mine(self, blocks: int) -> None:
            kit.chain.mine(blocks)

        @rule(who=st.integers(0, PLAYERS - 1), forged=st.booleans(), share=st.integers(0, 4_000))
        def attest(self, who: int, forged: bool, share: int) -> None:
            round_id = kit.task.current_round()
            revealers = self.revealers.get(round_id, [])
            if not revealers:
                return
            credits = dict(self.credited)
            target = people[who].address if forged else revealers[0]
            credits[target] = credits.get(target, 0) + share
            result = kit.result(credits, share, tag=f"{round_id}/{forged}")
            try:
                kit.task.attest(people[who], round_id, result)
            except ContractRevert:
                return
            if kit.task.current_round() != round_id:  # this vote finalized the round
                self.credited = credits
                self.trees[round_id] = RewardTree(credits)
                self.finalized.append(round_id)

        @rule()
        def expire(self) -> None:
            with contextlib.suppress(E.RoundNotExpirable, E.TaskCompleted):
                kit.task.expire_round(outsider)

        @rule(who=st.integers(0, PLAYERS - 1), back=st.integers(0, 2))
        def slash_or_settle(self, who: int, back: int) -> None:
            round_id = max(0, kit.task.current_round() - back)
            for call in (kit.task.slash_non_revealer, kit.task.settle_committee_member):
                try:
                    self._count_slashes(call(outsider, round_id, people[who].address))
                except ContractRevert:
                    continue

        @rule(who=st.integers(0, PLAYERS - 1), back=st.integers(0, 2))
        def claim(self, who: int, back: int) -> None:
            """Claim against the latest finalized tree, or (issue 13) an older one."""
            account = people[who].address
            if not self.trees:
                return
            rounds = sorted(self.trees)
            round_id = rounds[max(0, len(rounds) - 1 - back)]
            tree = self.trees[round_id]
            if account not in tree.credits:
                return
            amount = tree.amount(account)
            try:
                receipt = kit.task.claim(people[who], round_id, amount, tree.proof(account))
            except (E.NothingToClaim, E.ClaimExceedsCredited, E.StaleRewardRoot):
                return
            # Only the latest root pays, and exactly what it credits.
            assert round_id == max(self.trees)
            assert kit.task.claimed(account) == self.credited[account]
            (event,) = kit.task.logs(receipt, "RewardClaimed")
            self.claims.append((account, event["cumulativeAmount"]))

        @rule(who=st.integers(0, PLAYERS - 1))
        def withdraw_fees(self, who: int) -> None:
            with contextlib.suppress(E.NoFees):
                kit.task.withdraw_fees(people[who])

        @rule()
        def outsider_cannot_take_part(self) -> None:
            round_id = kit.task.current_round()
            try:
                kit.task.commit(outsider, b"\x01" * 32)
                raise AssertionError("a non-participant committed")
            except (E.NotActiveParticipant, E.CommitPhaseClosed, E.TaskCompleted):
                pass
            try:
                kit.task.attest(outsider, round_id, kit.result({outsider.address: 1}, 1))
                raise AssertionError("a non-participant attested")
            except (E.NotCommitteeMember, E.NotInAttestPhase):
                pass

        def _count_commit(self, account: str, round_id: int) -> None:
            key = (account, round_id)
            self.commits[key] = self.commits.get(key, 0) + 1

        def _count_slashes(self, receipt: object) -> None:
            for event in kit.registry.logs(receipt, "Slashed"):  # type: ignore[arg-type]
                assert event["amount"] <= event["requested"]
                self.slashed += event["amount"]

        # --- invariants -------------------------------------------------------------------

        @invariant()
        def tokens_are_conserved(self) -> None:
            token, task = kit.token, kit.task
            assert tracked() == total and token.total_supply() == supply
            owed = sum(task.fees_owed(p.address) for p in people)
            unclaimed = task.total_credited() - task.total_claimed()
            assert token.balance_of(task.address) == (
                task.pool() + task.fees_reserved() + owed + unclaimed
            )

        @invariant()
        def slashes_only_move_stake_and_never_exceed_it(self) -> None:
            stakes = [kit.registry.stake_of(p.address) for p in people]
            assert all(s >= 0 for s in stakes)
            assert sum(stakes) + self.slashed == stake0

        @invariant()
        def claims_never_exceed_credits(self) -> None:
            task = kit.task
            assert task.total_claimed() <= task.total_credited()
            for p in people:
                assert task.claimed(p.address) <= self.credited.get(p.address, 0)
            # Nobody is paid the same cumulative amount twice.
            assert len(set(self.claims)) == len(self.claims)

        @invariant()
        def every_commit_is_counted_once_and_visible(self) -> None:
            """Issue 13: one commit per account and round, and the latest one is on record (so
            it can be slashed until revealed), whatever bytes it starts with."""
            assert all(n == 1 for n in self.commits.values())
            round_id = kit.task.current_round()
            mine = [a for (a, r) in self.commits if r == round_id]
            assert kit.task.round_record(round_id).commits == len(mine)
            for account in mine:
                c = kit.task.commitment_of(account)
                assert c.exists and c.round == round_id

        @invariant()
        def rounds_stay_within_budget(self) -> None:
            cap = config.round_budget - config.committee_fee * config.committee_size
            if self.finalized:
                record = kit.task.round_record(self.finalized[-1])
                assert record.status == RoundStatus.FINALIZED
                assert record.reward_total <= cap

    return Ledger


def test_ledger_invariants_hold_under_random_actions(kit: TaskKit) -> None:
    kit = kit.with_task(commit_blocks=15, reveal_blocks=15, attest_blocks=10, max_participants=5)
    run_state_machine_as_test(
        build_machine(kit),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
