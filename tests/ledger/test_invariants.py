"""Hypothesis stateful tests: random sequences of commits, reveals, attestations (honest and
forged), whole rounds (honest, or finalized by a colluding committee), expiries, slashes,
settlements, claims and mining on the embedded chain, with the ledger's invariants checked after
every step.

Each example starts from one snapshot of a deployed stack and reverts to it afterwards.
``EXAMPLES`` sequences of up to ``STEPS`` actions run (4 x 20 = at most 80 steps).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

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
            # Credits of the sound rounds only: what honest committees build on (a colluding
            # round's credits are left out), and what each account is owed.
            self.honest: dict[str, int] = {}
            self.most: dict[str, int] = {}  # the largest credit any finalized root gave
            self.trees: dict[int, RewardTree] = {}
            self.colluding: list[int] = []  # rounds a colluding committee finalized
            self.drawn: dict[int, int] = {}  # RoundCreditDrawn per round
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
            credits = dict(self.honest)
            target = people[who].address if forged else revealers[0]
            credits[target] = credits.get(target, 0) + share
            result = kit.result(credits, share, tag=f"{round_id}/{forged}")
            try:
                kit.task.attest(people[who], round_id, result)
            except ContractRevert:
                return
            if kit.task.current_round() != round_id:  # this vote finalized the round
                self._finalized_with(round_id, credits, sound=True)

        @initialize(share=st.integers(1, 4_000))
        def an_honest_round_first(self, share: int) -> None:
            """Credits left unclaimed from the start, for colluding rounds to go after."""
            self.whole_round(colluding=False, thief=0, share=share, keep=True)

        @rule(
            colluding=st.booleans(),
            thief=st.integers(0, PLAYERS - 1),
            share=st.integers(0, 4_000),
            keep=st.booleans(),
        )
        def whole_round(self, colluding: bool, thief: int, share: int, keep: bool) -> None:
            """Every player commits and reveals; the whole committee attests. An honest committee
            credits ``share`` to the first revealer on top of the sound credits; a colluding
            one (issue 13, hole 3) lists ``thief`` with every unclaimed credit besides its own
            and reports ``share``, keeping the others' credits (``keep``) or dropping them.
            Colluding rounds never follow one another here: two in a row are beyond the trust
            limit (the second builds on the first's unchecked root)."""
            if colluding and self.colluding and self.colluding[-1] == max(self.trees, default=-1):
                return
            round_id = kit.task.current_round()
            updates = {}
            for p in people:
                upd = kit.update(p, round_id, str(self.tag))
                try:
                    receipt = kit.task.commit(p, kit.commitment(p, round_id, upd))
                except ContractRevert:
                    continue
                self._count_commit(p.address, round_id)
                self._count_slashes(receipt)
                updates[p] = upd
            self.tag += 1
            if len(updates) < config.min_reveals:
                return
            kit.to_reveal_phase()
            for p, upd in updates.items():
                with contextlib.suppress(ContractRevert):
                    kit.reveal(p, upd)
                    self.revealers.setdefault(round_id, []).append(p.address)
            if round_id not in self.revealers:
                return
            kit.to_attest_phase()
            credits = dict(self.honest)
            if colluding:
                address = people[thief].address
                unclaimed = sum(v - kit.task.claimed(a) for a, v in credits.items())
                credits = credits if keep else {}
                credits[address] = credits.get(address, 0) + max(unclaimed, 0) + share
            else:
                target = self.revealers[round_id][0]
                credits[target] = credits.get(target, 0) + share
            result = kit.result(credits, share, tag=f"{round_id}/whole/{colluding}")
            for member in kit.members(round_id):
                with contextlib.suppress(ContractRevert):
                    kit.task.attest(member, round_id, result)
            if kit.task.current_round() != round_id:
                self._finalized_with(round_id, credits, sound=not colluding)
                if colluding:  # the thief tries at once, with and without its baseline
                    listed = sorted(credits)
                    for with_baseline in (False, True):
                        self.claim(listed.index(people[thief].address), 0, with_baseline)

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

        @rule(who=st.integers(0, PLAYERS - 1), back=st.integers(0, 2), baseline=st.booleans())
        def claim(self, who: int, back: int, baseline: bool) -> None:
            """Claim against the latest finalized tree, or (issue 13) an older one, proving the
            previous finalized root's credit as the baseline or not."""
            if not self.trees:
                return
            rounds = sorted(self.trees)
            index = max(0, len(rounds) - 1 - back)
            round_id = rounds[index]
            tree = self.trees[round_id]
            listed = sorted(tree.credits)  # someone the tree credits, thieves included
            account = listed[who % len(listed)]
            claimant = next(p for p in people if p.address == account)
            amount = tree.amount(account)
            before = self.trees[rounds[index - 1]] if index > 0 else None
            previous, proof = 0, []
            if baseline and before is not None and account in before.credits:
                previous, proof = before.amount(account), before.proof(account)
            try:
                receipt = kit.task.claim(
                    claimant, round_id, amount, tree.proof(account), previous, proof
                )
            except (
                E.NothingToClaim,
                E.ClaimExceedsCredited,
                E.StaleRewardRoot,
                E.RoundCreditExceeded,
            ):
                return
            # Only the latest root pays, and exactly what it credits.
            assert round_id == max(self.trees)
            assert kit.task.claimed(account) == self.credited[account]
            (event,) = kit.task.logs(receipt, "RewardClaimed")
            self.claims.append((account, event["cumulativeAmount"]))
            for drawn in kit.task.logs(receipt, "RoundCreditDrawn"):
                self.drawn[round_id] = self.drawn.get(round_id, 0) + drawn["amount"]

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

        def _finalized_with(self, round_id: int, credits: dict[str, int], *, sound: bool) -> None:
            self.credited = credits
            if sound:
                self.honest = credits
            else:
                self.colluding.append(round_id)
            for account, amount in credits.items():
                self.most[account] = max(self.most.get(account, 0), amount)
            self.trees[round_id] = RewardTree(credits)
            self.finalized.append(round_id)

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
                assert task.claimed(p.address) <= self.most.get(p.address, 0)
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
        def colluding_rounds_misassign_only_their_own_budget(self) -> None:
            """Issue 13, hole 3: what accounts were paid beyond the sound rounds' credits is at
            most what the colluding rounds reported (their own budgets), and no round's root
            paid more above claimants' baselines than its reward total."""
            task = kit.task
            beyond = sum(
                max(0, task.claimed(p.address) - self.honest.get(p.address, 0)) for p in people
            )
            assert beyond <= sum(task.round_record(r).reward_total for r in self.colluding)
            for round_id, drawn in self.drawn.items():
                assert drawn <= task.round_record(round_id).reward_total

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
