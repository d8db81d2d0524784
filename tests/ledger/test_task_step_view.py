"""``stepView``: the one batched read behind a participant node's step agrees with the single
views it replaces, in every phase, for members and non-members, and for the previous round; and
``stepViews`` (many accounts' at once, for a one-process federation) agrees with it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from eth.vm.computation import BaseComputation
from eth_account.signers.local import LocalAccount
from eth_utils import function_signature_to_4byte_selector

from flchain.ledger.contracts import Phase, RoundStatus, StepView, Vote

if TYPE_CHECKING:
    from conftest import TaskKit


def single_views(kit: TaskKit, account: LocalAccount) -> StepView:
    """The same fields read one view at a time (the node's reads before ``stepView``)."""
    task, address = kit.task, account.address
    round_id = task.current_round()
    previous = round_id - 1
    return StepView(
        block_number=kit.chain.block_number,
        round=round_id,
        phase=task.phase(),
        active=kit.registry.is_active(address),
        commitment=task.commitment_of(address),
        member=task.is_committee_member(round_id, address),
        vote=task.vote_of(round_id, address),
        attest_deadline=task.attest_deadline(round_id),
        previous_status=task.round_record(previous).status if round_id else RoundStatus.OPEN,
        previous_member=round_id > 0 and task.is_committee_member(previous, address),
        previous_vote=task.vote_of(previous, address) if round_id else Vote(bytes(32), False),
        previous_attest_deadline=task.attest_deadline(previous) if round_id else 0,
    )


def check(kit: TaskKit, accounts: list[LocalAccount]) -> list[StepView]:
    """Each account's ``stepView`` is its single views; ``stepViews`` of all of them, and of
    them in reverse order with one repeated, is each one's ``stepView``."""
    views = [kit.task.step_view(a.address) for a in accounts]
    assert views == [single_views(kit, a) for a in accounts]
    addresses = [a.address for a in accounts]
    assert kit.task.step_views(addresses) == views
    again = [*reversed(addresses), addresses[0]]
    assert kit.task.step_views(again) == [*reversed(views), views[0]]
    return views


def test_step_view_matches_the_single_views_through_two_rounds(kit: TaskKit) -> None:
    people, outsider = kit.participants[:5], kit.outsider
    everyone = [*people, outsider]
    (fresh, out) = check(kit, [people[0], outsider])
    assert (fresh.round, fresh.phase, fresh.active, fresh.commitment.exists) == (
        0,
        Phase.COMMIT,
        True,
        False,
    )
    assert not out.active

    updates = kit.commit_all(people)
    assert all(v.commitment.exists and v.commitment.round == 0 for v in check(kit, people))
    kit.to_reveal_phase()
    kit.reveal_all(people, updates)
    views = check(kit, everyone)
    assert {v.phase for v in views} == {Phase.REVEAL}
    kit.to_attest_phase()
    views = check(kit, everyone)
    members = [a for a, v in zip(everyone, views, strict=True) if v.member]
    assert len(members) == 3 and outsider not in members  # committee of 3 out of 5

    result = kit.result({people[0].address: 10}, 10, tag="0")
    kit.task.attest(members[0], 0, result)
    (voted, *_) = check(kit, members)
    assert voted.vote.result_hash == result.hash()
    kit.task.attest(members[1], 0, result)  # reaches quorum: round 0 finalizes, round 1 opens

    views = check(kit, everyone)
    late = views[everyone.index(members[2])]
    assert (late.round, late.phase) == (1, Phase.COMMIT)
    assert late.previous_status == RoundStatus.FINALIZED
    assert late.previous_member and not any(late.previous_vote.result_hash)
    assert late.previous_attest_deadline == kit.task.attest_deadline(0) > late.block_number
    assert [v.previous_member for v in views].count(True) == 3

    # a settled vote (``stepViews`` packs its flag apart from its hash) on the previous round
    kit.chain.mine(kit.task.attest_deadline(0) - kit.chain.block_number + 1)
    kit.task.settle_committee_member(outsider, 0, members[0].address)
    (settled, *_) = check(kit, [members[0], members[1], outsider])
    assert settled.previous_vote == Vote(result.hash(), True)


def test_step_views_finds_a_vote_after_its_voter_committed_again(kit: TaskKit) -> None:
    """``stepViews`` reads a vote only where one can exist (an attested flag on the voter's
    commitment of that round, or a commitment of the round after it): a voter's next commit
    replaces that commitment and its flag, and its vote on the previous round is still read."""
    people = kit.participants[:5]
    updates = kit.commit_all(people)
    kit.to_reveal_phase()
    kit.reveal_all(people, updates)
    kit.to_attest_phase()
    voter, other, silent = kit.members(0)
    result = kit.result({people[0].address: 10}, 10, tag="0")
    kit.task.attest(voter, 0, result)
    kit.task.attest(other, 0, result)  # reaches quorum: round 1 opens
    assert (kit.task.current_round(), kit.task.phase()) == (1, Phase.COMMIT)
    kit.commit(voter)  # replaces its commitment of round 0, attested flag and all

    views = dict(zip(people, check(kit, people), strict=True))
    assert views[voter].commitment.round == 1 and not views[voter].previous_member
    assert views[voter].previous_vote == Vote(result.hash(), False)
    assert views[other].previous_member and views[other].previous_vote == Vote(result.hash(), False)
    assert views[silent].previous_member and not any(views[silent].previous_vote.result_hash)
    assert not any(any(v.vote.result_hash) for v in views.values())  # nobody voted in round 1


def test_step_views_is_one_registry_call_and_four_words_an_account(
    kit: TaskKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``stepViews`` of n accounts makes one call into the registry (``activeBits``), not one
    ``isActive`` per account (a message frame each in the EVM), and answers 4 words an account
    besides the shared ones (a 27-word ``StepView`` struct each before)."""
    accounts = [a.address for a in kit.participants[:5]]
    frames: list[bytes] = []
    original = BaseComputation.apply_child_computation

    def counted(self: BaseComputation, child_msg: Any) -> Any:
        frames.append(bytes(child_msg.data[:4]))
        return original(self, child_msg)

    monkeypatch.setattr(BaseComputation, "apply_child_computation", counted)
    fn = kit.task.functions["stepViews"](accounts)
    answer = kit.chain.w3.eth.call({"to": kit.task.address, "data": fn._encode_transaction_data()})
    assert frames == [function_signature_to_4byte_selector("activeBits(address[])")]
    # 6 shared words, the array's offset and length, 4 words an account
    assert len(answer) == 32 * (6 + 2 + 4 * len(accounts))
