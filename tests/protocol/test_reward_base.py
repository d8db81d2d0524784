"""Which cumulative credits a committee builds on (issue 13, hole 3): the latest finalized
round's, unless they are not a sound extension of what that round should have built on. A
colluding round's credits are then left out (it misassigned its own budget and no more), and
the next report says so; claims prove their baseline under the previous finalized root."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from support.task import make_task_config

from flchain.learning.aggregation import Standing
from flchain.ledger import Chain, Result, RewardTree, TaskParameters, deploy_stack, register_all
from flchain.ledger import contract_errors as E
from flchain.ledger.contracts import TrainingTask
from flchain.protocol.commitment import commitment
from flchain.protocol.report import RoundReport, UpdateOutcome
from flchain.protocol.rewards import extension_error, standing_error
from flchain.protocol.rounds import RewardBase, TaskView
from flchain.storage import LocalStore
from flchain.types import Address

CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def _config() -> TaskParameters:
    """The kit's task with real CIDs (the store reads them), 8-block phases, 3 participants,
    ten rounds and no slashing."""
    return make_task_config(
        manifest_cid=CID, initial_model_cid=CID, aggregation_rule=3, commit_blocks=8,
        reveal_blocks=8, attest_blocks=8, max_participants=3, rounds=10, committee_fee=10,
        non_reveal_slash=0, committee_slash=0, max_samples=1_000,
    )  # fmt: skip


class Rounds:
    """A task on the embedded chain whose three participants form every committee, finalizing
    whatever report a test hands it (honest or not)."""

    def __init__(self, store: LocalStore) -> None:
        self.chain = Chain.embedded(4)
        admin, self.people = self.chain.accounts[0], self.chain.accounts[1:4]
        stack = deploy_stack(
            self.chain,
            admin,
            config=_config(),
            min_stake=100,
            mint_to=[p.address for p in self.people],
            start=False,
        )
        register_all(stack, self.people)
        self.task: TrainingTask = stack.task
        self.task.start(admin)
        self.store = store

    def finalize(
        self,
        cumulative: dict[Address, int],
        reward_total: int,
        base_round: int | None,
        standing: dict[Address, Standing] | None = None,
    ) -> int:
        """Finalize a report with these credits and (a rule with memory) this standing, every
        participant of the credits accepted."""
        round_id = self.task.current_round()
        outcomes = tuple(UpdateOutcome(p, CID, "0x00", 10, True, 1, 0) for p in sorted(cumulative))
        report = RoundReport(
            task=self.task.address,
            round=round_id,
            rule="fedavg",
            previous_model_cid=CID,
            model_cid=CID,
            model_digest="0x" + "00" * 32,
            outcomes=outcomes,
            reward_total=reward_total,
            cumulative=cumulative,
            reward_root="0x" + RewardTree(cumulative).root.hex(),
            base_round=base_round,
            standing=standing or {},
        )
        secrets = {}
        for p in self.people:
            digest, salt = keccak(text=f"{p.address}/{round_id}"), b"\x07" * 32
            self.task.commit(p, self._commitment(p, round_id, digest, salt))
            secrets[p.address] = (digest, salt)
        for p in self.people:
            digest, salt = secrets[p.address]
            self.task.reveal(p, digest, 10, salt, CID)
        self.chain.mine(1)  # the last reveal closed the phase in its own block
        result = Result(
            b"\x05" * 32,
            CID,
            report.digest(),
            self.store.put(report.to_bytes()),
            bytes(RewardTree(cumulative).root),
            reward_total,
        )
        for p in self.people:  # the third vote is a late one: nobody is left silent
            self.task.attest(p, round_id, result)
        assert self.task.reward_round() == round_id
        return round_id

    def _commitment(self, p: LocalAccount, round_id: int, digest: bytes, salt: bytes) -> bytes:
        return commitment(
            chain_id=self.chain.chain_id,
            task=Address(self.task.address),
            sender=Address(p.address),
            round_id=round_id,
            digest=digest,  # type: ignore[arg-type]
            num_samples=10,
            salt=salt,
        )


@pytest.fixture
def rounds(tmp_path: Path) -> Rounds:
    return Rounds(LocalStore(tmp_path / "store", durable=False))


def test_extension_error_names_what_breaks_an_extension() -> None:
    a, b = Address("0x" + "aa" * 20), Address("0x" + "bb" * 20)
    assert extension_error({a: 5}, {a: 7, b: 3}, 5) is None
    assert "less than 5" in (extension_error({a: 5}, {a: 4, b: 6}, 5) or "")
    assert "dropped" in (extension_error({a: 5, b: 1}, {a: 9}, 3) or "")
    assert "grew by 10, not by the reward total 1" in (extension_error({a: 5}, {a: 15}, 1) or "")


def test_a_colluding_rounds_credits_are_left_out_and_later_rounds_build_on(
    rounds: Rounds,
) -> None:
    alice, bob, carol = (Address(p.address) for p in rounds.people)
    view = TaskView(rounds.task, rounds.store)
    assert view.reward_base(0) == RewardBase(None)

    first = {alice: 100, bob: 100}
    r0 = rounds.finalize(first, 200, None)
    assert view.reward_base(1) == RewardBase(r0, first)
    # Round 1's committee colludes: carol gets everyone's unclaimed credit, 50 reported.
    r1 = rounds.finalize({alice: 100, bob: 100, carol: 250}, 50, r0)
    base = view.reward_base(2)
    assert (base.round, base.cumulative) == (r0, first)
    assert base.note == f"round {r1} left out: credits grew by 250, not by the reward total 50"
    # Honest round 2 builds on round 0 and says so; round 3 builds on round 2 (whose base,
    # round 0, is what it should have been).
    second = {alice: 150, bob: 150}
    r2 = rounds.finalize(second, 100, r0)
    assert TaskView(rounds.task, rounds.store).reward_base(3) == RewardBase(r2, second)
    # A round that skips a sound one (dropping its credits) is left out too.
    r3 = rounds.finalize({alice: 120, bob: 120}, 40, r0)
    base = view.reward_base(4)
    assert (base.round, base.cumulative) == (r2, second)
    assert base.note == f"round {r3} left out: it built on round {r0}, not on round {r2}"


def test_standing_error_allows_one_round_of_evidence_for_the_accepted_only() -> None:
    a, b, c = (Address("0x" + x * 20) for x in ("aa", "bb", "cc"))
    base = {a: Standing(2, -2), b: Standing(1, 1)}
    assert standing_error(base, {a: Standing(3, -3), b: Standing(1, 1)}, {a, b}) is None
    assert standing_error(base, base | {c: Standing(1, 0)}, {c}) is None
    assert "dropped" in (standing_error(base, {a: Standing(3, -1)}, {a}) or "")
    assert "more than one round" in (standing_error(base, base | {a: Standing(4, -4)}, {a}) or "")
    assert "more than one round" in (standing_error(base, base | {b: Standing(2, 3)}, {b}) or "")
    assert "more than one round" in (standing_error(base, base | {b: Standing(1, 0)}, {b}) or "")
    assert "not accepted" in (standing_error(base, base | {c: Standing(1, -1)}, {a, b}) or "")


def test_a_round_that_rewrites_the_standing_is_left_out(rounds: Rounds) -> None:
    """A colluding committee that marks honest participants down in the evidence later rounds
    pay by has its round left out, as one that rewrites credits has."""
    alice, bob, _ = (Address(p.address) for p in rounds.people)
    view = TaskView(rounds.task, rounds.store)
    first = {alice: Standing(1, 1), bob: Standing(1, -1)}
    r0 = rounds.finalize({alice: 100, bob: 100}, 200, None, first)
    assert view.reward_base(1).standing == first
    r1 = rounds.finalize({alice: 150, bob: 150}, 100, r0, {alice: Standing(9, -9), bob: first[bob]})
    base = view.reward_base(2)
    assert (base.round, base.standing) == (r0, first)
    assert base.note == (
        f"round {r1} left out: {alice}'s standing went from [1, 1] to [9, -9]: more than one round"
    )
    second = {alice: Standing(2, 0), bob: Standing(2, -2)}
    r2 = rounds.finalize({alice: 150, bob: 150}, 100, r0, second)
    assert TaskView(rounds.task, rounds.store).reward_base(3) == RewardBase(
        r2, {alice: 150, bob: 150}, standing=second
    )


def test_a_claim_proves_the_previous_roots_credit_when_above_what_was_claimed(
    rounds: Rounds,
) -> None:
    alice, bob, _ = rounds.people
    first = {Address(alice.address): 100, Address(bob.address): 40}
    rounds.finalize(first, 140, None)
    view = TaskView(rounds.task, rounds.store)
    second = {Address(alice.address): 130, Address(bob.address): 50}
    r1 = rounds.finalize(second, 40, 0)

    baseline = view.claim_baseline(r1, alice.address, claimed=0)
    assert baseline.amount == 100
    root = rounds.task.round_record(0).reward_root
    assert RewardTree.verify(root, alice.address, 100, baseline.proof)
    assert view.claim_baseline(r1, alice.address, claimed=100).amount == 0  # nothing to prove
    tree = RewardTree(second)
    rounds.task.claim(alice, r1, 130, tree.proof(alice.address), baseline.amount, baseline.proof)
    # alice drew 30 of the round's 40; bob, without his baseline, would draw all his 50
    with pytest.raises(E.RoundCreditExceeded) as info:
        rounds.task.claim(bob, r1, 50, tree.proof(bob.address))
    assert info.value.error_args == {"round": r1, "amount": 50, "available": 10}
    bob_baseline = view.claim_baseline(r1, bob.address, claimed=0)
    rounds.task.claim(bob, r1, 50, tree.proof(bob.address), bob_baseline.amount, bob_baseline.proof)
    assert rounds.task.total_claimed() == 180
