"""TrainingTask penalties, fees and expiry: non-revealers, silent and losing committee members,
stale commitments, fee withdrawal, and every way a round can (or cannot) expire."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from flchain.ledger import contract_errors as E
from flchain.ledger.contracts import (
    CommitteeMemberSettled,
    NonRevealerSlashed,
    Phase,
    RoundStatus,
    Settlement,
)

if TYPE_CHECKING:
    from conftest import TaskKit

STAKE = 1_000  # the suite's MIN_STAKE; non-reveal slash 30, committee slash 40, fee 100


def _round_with_reveals(kit: TaskKit, count: int, revealers: int) -> list:
    people = kit.participants[:count]
    updates = kit.commit_all(people)
    kit.to_reveal_phase()
    kit.reveal_all(people[:revealers], updates)
    return people


def test_non_revealer_is_slashed_once(kit: TaskKit) -> None:
    task, registry = kit.task, kit.registry
    people = _round_with_reveals(kit, 4, 3)
    dropout = people[3]
    with pytest.raises(E.RevealPhaseOpen) as info:
        task.slash_non_revealer(kit.outsider, 0, dropout.address)
    assert info.value.error_args == {"round": 0}
    kit.to_attest_phase()
    pool = task.pool()
    receipt = task.slash_non_revealer(kit.outsider, 0, dropout.address)
    assert task.logs(receipt, "NonRevealerSlashed") == [
        {"round": 0, "account": dropout.address, "amount": 30}
    ]
    assert registry.stake_of(dropout.address) == STAKE - 30
    assert task.pool() == pool + 30
    assert kit.token.balance_of(task.address) == task.pool() + task.fees_reserved()
    with pytest.raises(E.AlreadySlashed) as info:
        task.slash_non_revealer(kit.outsider, 0, dropout.address)
    assert info.value.error_args == {"account": dropout.address, "round": 0}
    with pytest.raises(E.AlreadyRevealed) as info:
        task.slash_non_revealer(kit.outsider, 0, people[0].address)
    assert info.value.error_args == {"account": people[0].address, "round": 0}
    with pytest.raises(E.NoCommitment) as info:
        task.slash_non_revealer(kit.outsider, 0, kit.outsider.address)
    assert info.value.error_args == {"account": kit.outsider.address, "round": 0}
    with pytest.raises(E.NoCommitment):
        task.slash_non_revealer(kit.outsider, 1, dropout.address)
    # Below the minimum stake it must top up; its next commit does not charge it again.
    kit.finalize(0, kit.result({people[0].address: 1}, 1))
    with pytest.raises(E.NotActiveParticipant):
        kit.commit(dropout)
    kit.token.approve(dropout, registry.address, 30)
    registry.add_stake(dropout, 30)
    kit.commit(dropout)
    assert registry.stake_of(dropout.address) == STAKE


def test_a_new_commit_settles_a_missing_reveal(kit: TaskKit) -> None:
    people = _round_with_reveals(kit, 4, 3)
    dropout = people[3]
    kit.to_attest_phase()
    kit.finalize(0, kit.result({people[0].address: 1}, 1))
    receipt = kit.task.commit(dropout, b"\x01" * 32)
    assert kit.task.logs(receipt, "NonRevealerSlashed") == [
        {"round": 0, "account": dropout.address, "amount": 30}
    ]
    assert kit.registry.stake_of(dropout.address) == STAKE - 30
    # The replaced commitment is gone: the explicit slash now has nothing to point at.
    with pytest.raises(E.NoCommitment):
        kit.task.slash_non_revealer(kit.outsider, 0, dropout.address)


def test_slashing_never_exceeds_the_stake(kit: TaskKit) -> None:
    kit = kit.with_task(non_reveal_slash=10 * STAKE)
    people = _round_with_reveals(kit, 3, 2)
    kit.to_attest_phase()
    kit.task.slash_non_revealer(kit.outsider, 0, people[2].address)
    assert kit.registry.stake_of(people[2].address) == 0
    (event,) = kit.task.events(NonRevealerSlashed, round=0)
    assert event.amount == STAKE
    assert not kit.registry.is_active(people[2].address)


def test_committee_settlement_fee_losing_vote_and_silence(kit: TaskKit) -> None:
    kit = kit.with_task(committee_size=5, quorum=3)
    task, registry = kit.task, kit.registry
    people = _round_with_reveals(kit, 6, 6)
    kit.chain.mine(1)
    members = kit.members(0)
    honest = kit.result({people[0].address: 50}, 50, tag="honest")
    forged = kit.result({people[0].address: 60}, 60, tag="forged")
    task.attest(members[0], 0, forged)
    for member in members[1:4]:
        task.attest(member, 0, honest)  # the third honest vote finalizes
    silent = members[4]
    with pytest.raises(E.RoundNotClosed) as info:
        task.settle_committee_member(kit.outsider, 1, members[1].address)
    assert info.value.error_args == {"round": 1}

    receipt = task.settle_committee_member(kit.outsider, 0, members[1].address)
    assert task.logs(receipt, "CommitteeMemberSettled") == [
        {"round": 0, "member": members[1].address, "outcome": 0, "amount": 100}
    ]
    assert task.fees_owed(members[1].address) == 100
    with pytest.raises(E.AlreadySettled) as info:
        task.settle_committee_member(kit.outsider, 0, members[1].address)
    assert info.value.error_args == {"round": 0, "member": members[1].address}

    pool = task.pool()
    task.settle_committee_member(kit.outsider, 0, members[0].address)
    assert registry.stake_of(members[0].address) == STAKE - 40
    assert task.pool() == pool + 40 + 100  # the slash and the unpaid fee

    with pytest.raises(E.AttestPhaseOpen) as info:
        task.settle_committee_member(kit.outsider, 0, silent.address)
    assert info.value.error_args == {"round": 0, "attestEnd": task.attest_deadline(0)}
    kit.past_attest_deadline(0)
    task.settle_committee_member(kit.outsider, 0, silent.address)
    assert registry.stake_of(silent.address) == STAKE - 40
    with pytest.raises(E.AlreadySettled):
        task.settle_committee_member(kit.outsider, 0, silent.address)
    non_member = next(a for a in people if a not in members)
    with pytest.raises(E.NotCommitteeMember) as info:
        task.settle_committee_member(kit.outsider, 0, non_member.address)
    assert info.value.error_args == {"round": 0, "account": non_member.address}

    outcomes = {(e.member, e.outcome) for e in task.events(CommitteeMemberSettled, round=0)}
    assert outcomes == {
        (members[1].address, Settlement.FEE_CREDITED),
        (members[0].address, Settlement.SLASHED_LOSING_VOTE),
        (silent.address, Settlement.SLASHED_SILENT),
    }
    for member in members[2:4]:
        task.settle_committee_member(kit.outsider, 0, member.address)
    assert task.fees_reserved() == 0  # 3 paid, 2 released
    owed = sum(task.fees_owed(m.address) for m in members)
    unclaimed = task.total_credited() - task.total_claimed()
    assert kit.token.balance_of(task.address) == task.pool() + owed + unclaimed

    held = kit.token.balance_of(members[1].address)
    receipt = task.withdraw_fees(members[1])
    assert task.logs(receipt, "FeesWithdrawn") == [{"member": members[1].address, "amount": 100}]
    assert kit.token.balance_of(members[1].address) == held + 100
    with pytest.raises(E.NoFees) as info:
        task.withdraw_fees(members[1])
    assert info.value.error_args == {"account": members[1].address}


def test_a_silent_member_must_attest_before_committing_again(kit: TaskKit) -> None:
    people = _round_with_reveals(kit, 4, 4)
    kit.chain.mine(1)
    members = kit.members(0)
    kit.finalize(0, kit.result({people[0].address: 1}, 1))  # members[0..1] vote
    silent = members[2]
    deadline = kit.task.attest_deadline(0)
    with pytest.raises(E.CommitteeDutyPending) as info:
        kit.task.commit(silent, b"\x01" * 32)
    assert info.value.error_args == {
        "account": silent.address,
        "round": 0,
        "attestEnd": deadline,
    }
    kit.mine_to(deadline)
    receipt = kit.task.commit(silent, b"\x01" * 32)  # settles the silence: slashed
    (event,) = kit.task.logs(receipt, "CommitteeMemberSettled")
    assert (event["member"], event["outcome"], event["amount"]) == (
        silent.address,
        Settlement.SLASHED_SILENT,
        40,
    )
    with pytest.raises(E.NotCommitteeMember):
        kit.task.settle_committee_member(kit.outsider, 0, silent.address)


def test_votes_in_an_expired_round_are_neither_paid_nor_slashed(kit: TaskKit) -> None:
    people = _round_with_reveals(kit, 4, 4)
    kit.chain.mine(1)
    members = kit.members(0)
    kit.task.attest(members[0], 0, kit.result({people[0].address: 1}, 1, tag="a"))
    kit.task.attest(members[1], 0, kit.result({people[0].address: 2}, 2, tag="b"))
    kit.past_attest_deadline(0)
    kit.chain.mine(1)
    assert kit.task.phase() == Phase.EXPIRABLE
    kit.task.expire_round(kit.outsider)
    for member in members[:2]:
        with pytest.raises(E.NothingToSettle) as info:
            kit.task.settle_committee_member(kit.outsider, 0, member.address)
        assert info.value.error_args == {"round": 0, "member": member.address}
    # The silent third member of a round that had an attest phase is still slashed.
    kit.task.settle_committee_member(kit.outsider, 0, members[2].address)
    assert kit.registry.stake_of(members[2].address) == STAKE - 40


# --- expiry -------------------------------------------------------------------------------


def test_expire_without_commits(kit: TaskKit) -> None:
    with pytest.raises(E.RoundNotExpirable) as info:
        kit.task.expire_round(kit.outsider)
    assert info.value.error_args == {"round": 0}
    kit.to_reveal_phase()
    kit.chain.mine(1)
    assert kit.task.phase() == Phase.EXPIRABLE
    receipt = kit.task.expire_round(kit.outsider)
    assert kit.task.logs(receipt, "RoundExpired") == [{"round": 0}]
    assert kit.task.round_record(0).status == RoundStatus.EXPIRED
    assert (kit.task.current_round(), kit.task.finalized_rounds()) == (1, 0)


def test_expire_with_too_few_reveals_keeps_model_and_budget(kit: TaskKit) -> None:
    people = _round_with_reveals(kit, 3, 1)
    with pytest.raises(E.RoundNotExpirable):
        kit.task.expire_round(kit.outsider)  # reveals may still come
    kit.to_attest_phase()
    pool = kit.task.pool()
    kit.task.expire_round(kit.outsider)
    assert kit.task.model_digest() == kit.defaults["initial_model_digest"]
    assert kit.task.pool() == pool
    with pytest.raises(E.RoundNotClosed):
        kit.task.settle_committee_member(kit.outsider, 1, people[0].address)
    with pytest.raises(E.NothingToSettle):  # no attest phase: members owed nothing
        kit.task.settle_committee_member(kit.outsider, 0, people[0].address)


def test_expire_without_quorum_after_the_attest_deadline(kit: TaskKit) -> None:
    _round_with_reveals(kit, 4, 4)
    kit.to_attest_phase()
    kit.chain.mine(5)
    with pytest.raises(E.RoundNotExpirable):
        kit.task.expire_round(kit.outsider)
    kit.past_attest_deadline(0)
    kit.task.expire_round(kit.outsider)
    assert kit.task.round_record(0).status == RoundStatus.EXPIRED


def test_seed_unavailable_after_256_blocks(kit: TaskKit) -> None:
    kit.commit_all(kit.participants[:2])
    record = kit.task.round_record(0)
    kit.mine_to(record.commit_end + 257)
    with pytest.raises(E.SeedUnavailable) as info:
        kit.task.close_commit_phase(kit.outsider)
    assert info.value.error_args == {"round": 0}
    kit.task.expire_round(kit.outsider)
    assert kit.task.round_record(0).status == RoundStatus.EXPIRED


def test_expired_rounds_do_not_count_and_the_owner_takes_the_surplus(kit: TaskKit) -> None:
    kit = kit.with_task(rounds=1)
    kit.to_reveal_phase()
    kit.task.expire_round(kit.outsider)  # round 0: nobody committed
    with pytest.raises(E.TaskNotCompleted):
        kit.task.withdraw_surplus(kit.admin, kit.admin.address)
    people = _round_with_reveals(kit, 3, 3)
    kit.chain.mine(1)
    kit.finalize(1, kit.result({people[0].address: 1_000}, 1_000))
    assert kit.task.phase() == Phase.COMPLETED
    (finished,) = kit.task.contract.events.TaskFinished().get_logs(from_block=0)
    assert finished["args"]["rounds"] == 1
    with pytest.raises(E.OwnableUnauthorizedAccount):
        kit.task.withdraw_surplus(kit.outsider, kit.outsider.address)
    with pytest.raises(E.ZeroAddress):
        kit.task.withdraw_surplus(kit.admin, "0x" + "00" * 20)
    surplus = kit.task.pool()
    assert surplus == 10_000 - 1_000 - 3 * 100
    held = kit.token.balance_of(kit.admin.address)
    kit.task.withdraw_surplus(kit.admin, kit.admin.address)
    assert kit.token.balance_of(kit.admin.address) == held + surplus
    with pytest.raises(E.ZeroAmount):
        kit.task.withdraw_surplus(kit.admin, kit.admin.address)
    with pytest.raises(E.TaskCompleted):
        kit.task.close_commit_phase(kit.outsider)


def test_keeper_with_confirmations_resends_a_slash_a_reorg_dropped(kit: TaskKit) -> None:
    from flchain_node.owner import Keeper

    task, chain = kit.task, kit.chain
    dropout = _round_with_reveals(kit, 4, 3)[3]
    kit.to_attest_phase()
    chain.mine(1)  # the keeper acts on a closed phase: past the last reveal block
    keeper = Keeper(task, kit.outsider, confirmations=2)
    before = chain.snapshot()
    assert keeper.step().get("slash", 0) > 0  # the non-revealer is slashed
    assert 0 in keeper.swept
    chain.revert(before)  # a reorg drops the block with the slash
    chain.mine(1)  # the new branch grows past where the slash was, without it
    assert task.events(NonRevealerSlashed, round=0) == []
    assert keeper.step().get("slash", 0) > 0  # not yet confirmed: looked at again, re-sent
    chain.mine(3)
    assert keeper.step() == {}  # confirmed: nothing sent twice
    slashed = task.events(NonRevealerSlashed, round=0)
    assert [e.account for e in slashed] == [dropout.address]
    assert keeper.step() == {}


def test_keeper_without_confirmations_trusts_its_first_slash(kit: TaskKit) -> None:
    from flchain_node.owner import Keeper

    task, chain = kit.task, kit.chain
    _round_with_reveals(kit, 4, 3)
    kit.to_attest_phase()
    chain.mine(1)  # the keeper acts on a closed phase: past the last reveal block
    keeper = Keeper(task, kit.outsider)
    before = chain.snapshot()
    assert keeper.step().get("slash", 0) > 0
    chain.revert(before)
    chain.mine(1)
    assert keeper.step() == {}  # the dropped slash is not looked for again
    assert task.events(NonRevealerSlashed, round=0) == []


def test_keeper_reads_no_logs_to_sweep_a_round_everyone_revealed(
    kit: TaskKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flchain_node.owner import Keeper

    task, chain = kit.task, kit.chain
    _round_with_reveals(kit, 4, 4)
    kit.to_attest_phase()
    chain.mine(1)  # past the reveal deadline: the keeper sweeps
    queries: list[str] = []
    events = task.events
    monkeypatch.setattr(
        task, "events", lambda kind, *a, **k: queries.append(kind.name) or events(kind, *a, **k)
    )
    keeper = Keeper(task, kit.outsider)
    assert keeper.step() == {}
    assert 0 in keeper.swept and queries == []


def test_keeper_reads_a_closed_round_once_and_again_after_a_reset(
    kit: TaskKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flchain_node.owner import Keeper

    task, chain = kit.task, kit.chain
    people = _round_with_reveals(kit, 4, 4)
    kit.to_attest_phase()
    voters = kit.finalize(0, kit.result({people[0].address: 1}, 1))  # round 1 opens
    reads: list[int] = []
    read = task.round_record
    monkeypatch.setattr(task, "round_record", lambda r: reads.append(r) or read(r))
    keeper = Keeper(task, kit.outsider)
    for _ in range(3):
        keeper.step()
        chain.mine(1)
    assert reads.count(0) == 1  # closed: its record no longer changes
    assert reads.count(1) == 3  # the open round is read every step
    kit.past_attest_deadline(0)
    before = chain.snapshot()
    chain.mine(1)
    assert keeper.step().get("settle", 0) > 0  # the cached record still settles round 0
    settled = {e.member for e in task.events(CommitteeMemberSettled, round=0)}
    assert settled == {v.address for v in kit.members(0)}
    assert {v.address for v in voters} <= settled
    chain.revert(before)  # the chain now ends below the block the keeper last saw
    assert task.events(CommitteeMemberSettled, round=0) == []
    assert keeper.step() == {}  # at the deadline: not yet due
    assert reads.count(0) == 2  # what it read is forgotten and read again
    chain.mine(1)
    assert keeper.step().get("settle", 0) > 0
    assert {e.member for e in task.events(CommitteeMemberSettled, round=0)} == settled


def test_a_member_that_never_revealed_does_not_lock_its_fee(kit: TaskKit) -> None:
    """Every committer is on the committee here, so one that never revealed is a member too;
    finalization reserves its fee. When its next commit replaces the commitment before anyone
    settled it, it pays the non-reveal penalty only and the fee goes back to the pool (it used
    to stay reserved for good: nothing could settle it once the commitment was gone)."""
    kit = kit.with_task(committee_size=4, quorum=3)
    task, registry = kit.task, kit.registry
    people = _round_with_reveals(kit, 4, 3)
    dropout = people[3]
    kit.to_attest_phase()
    assert set(kit.members(0)) == set(people)
    voters = [m for m in kit.members(0) if m != dropout]
    result = kit.result({people[0].address: 1}, 1)
    for member in voters:
        kit.attest(member, 0, result)
    assert task.round_record(0).status == RoundStatus.FINALIZED
    assert task.fees_reserved() == 4 * 100
    kit.mine_to(task.attest_deadline(0))
    kit.token.approve(dropout, registry.address, 30)
    registry.add_stake(dropout, 30)  # back to the minimum after its coming non-reveal slash
    pool = task.pool()
    receipt = task.commit(dropout, b"\x01" * 32)
    assert [e["amount"] for e in task.logs(receipt, "NonRevealerSlashed")] == [30]
    assert task.logs(receipt, "CommitteeMemberSettled") == []  # no silence slash on top
    assert task.pool() == pool + 30 + 100  # the penalty, and its fee back
    for member in voters:
        task.settle_committee_member(kit.outsider, 0, member.address)
    assert task.fees_reserved() == 0
    with pytest.raises(E.NotCommitteeMember):
        task.settle_committee_member(kit.outsider, 0, dropout.address)
