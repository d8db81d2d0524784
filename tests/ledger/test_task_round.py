"""TrainingTask rounds: commit, reveal, committee, attest, finalize — success, events, early
phase closes, and every failure path of those calls (embedded chain)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from eth_utils import keccak

from flchain.ledger import contract_errors as E
from flchain.ledger.contracts import (
    CommitmentFlag,
    Committed,
    Phase,
    PhaseClosedEarly,
    Result,
    Revealed,
    RoundFinalized,
    RoundStarted,
    RoundStatus,
)
from flchain.protocol.commitment import commitment

if TYPE_CHECKING:
    from conftest import TaskKit


# --- the committee sampler recomputed in Python (CommitteeSampler.sol) -------------------------


def _f(seed: int, i: int, half: int) -> int:
    return int.from_bytes(keccak(seed.to_bytes(32, "big") + ((i << 32) | half).to_bytes(32, "big")))


def _position(seed: int, n: int, index: int) -> int:
    h = 1
    while (1 << (2 * h)) < n:
        h += 1
    mask = (1 << h) - 1

    def encrypt(x: int) -> int:
        left, right = x >> h, x & mask
        for i in range(4):
            left, right = right, left ^ (_f(seed, i, right) & mask)
        return (left << h) | right

    pos = encrypt(index)
    while pos >= n:
        pos = encrypt(pos)
    return pos


def python_committee(seed: int, commits: int, size: int) -> list[int]:
    """Commit indices of the committee, in permuted order, as ``committeeIndices`` returns."""
    if commits <= size:
        positions = {_position(seed, commits, i): i for i in range(commits)}
        return [positions[p] for p in range(commits)]
    positions = {_position(seed, commits, i): i for i in range(commits)}
    return [positions[p] for p in range(size)]


# --- the happy path -------------------------------------------------------------------------


def test_full_round_with_events(kit: TaskKit) -> None:
    task, people = kit.task, kit.participants[:5]
    updates = {}
    for index, account in enumerate(people):
        upd = kit.update(account, 0)
        value = kit.commitment(account, 0, upd)
        assert task.commitment_hash(account.address, 0, upd.digest, upd.num_samples, upd.salt) == (
            value
        )
        receipt = task.commit(account, value)
        (event,) = task.logs(receipt, "Committed")
        assert event == {
            "round": 0,
            "account": account.address,
            "index": index,
            "commitment": value,
        }
        stored = task.commitment_of(account.address)
        assert (stored.hash, stored.round, stored.index) == (value[:24], 0, index)
        updates[account.address] = upd
    assert task.phase() == Phase.COMMIT
    assert task.round_record(0).commits == 5
    assert task.committee_indices(0) == []  # no seed yet
    assert not task.is_committee_member(0, people[0].address)

    kit.to_reveal_phase()
    kit.chain.mine(1)  # views run on the latest block; the next transaction lands one later
    assert task.phase() == Phase.REVEAL
    first = kit.reveal(people[0], updates[people[0].address])
    (seed_event,) = task.logs(first, "CommitteeSeedFixed")
    record = task.round_record(0)
    assert seed_event == {"round": 0, "seed": record.seed, "commits": 5}
    assert record.seed % 2 == 1  # low bit forced: 0 means "not fixed"
    for account in people[1:]:
        kit.reveal(account, updates[account.address])
    revealed = task.events(Revealed, round=0)
    assert [(e.account, e.index, e.digest, e.num_samples, e.cid) for e in revealed] == [
        (a.address, i, updates[a.address].digest, 100, kit.update_cid) for i, a in enumerate(people)
    ]
    assert all(task.is_digest_revealed(u.digest) for u in updates.values())

    # Everyone revealed: the reveal phase closed in the last reveal's block.
    kit.chain.mine(1)
    record = task.round_record(0)
    assert (record.reveals, record.reveal_end) == (5, revealed[-1].block_number)
    assert task.phase() == Phase.ATTEST

    indices = task.committee_indices(0)
    assert indices == python_committee(record.seed, 5, 3)
    members = kit.members(0)
    for i, account in enumerate(people):
        member = task.is_committee_member(0, account.address)
        assert member == (i in indices)
        flags = task.commitment_of(account.address).flags
        expected = CommitmentFlag.COMMITTED | CommitmentFlag.REVEALED
        assert flags == expected | (CommitmentFlag.MEMBER if member else 0)

    cumulative = {people[0].address: 600, people[1].address: 300}
    result = kit.result(cumulative, 900, tag="0")
    assert task.hash_result(result) == result.hash()
    receipt = task.attest(members[0], 0, result)
    assert task.logs(receipt, "Attested") == [
        {"round": 0, "member": members[0].address, "resultHash": result.hash(), "votes": 1}
    ]
    assert task.vote_of(0, members[0].address).result_hash == result.hash()
    assert task.current_round() == 0
    receipt = task.attest(members[1], 0, result)  # quorum 2 of 3
    (final,) = task.events(RoundFinalized, round=0)
    assert (final.result_hash, final.model_digest, final.model_cid) == (
        result.hash(),
        result.model_digest,
        result.model_cid,
    )
    assert (final.report_cid, final.reward_root, final.reward_total) == (
        result.report_cid,
        result.reward_root,
        900,
    )
    (started,) = task.events(RoundStarted, round=1)
    assert started.block_number == receipt["blockNumber"]

    record = task.round_record(0)
    assert record.status == RoundStatus.FINALIZED
    assert (record.result_hash, record.reward_root, record.reward_total) == (
        result.hash(),
        result.reward_root,
        900,
    )
    assert (task.current_round(), task.finalized_rounds(), task.phase()) == (1, 1, Phase.COMMIT)
    assert (task.model_digest(), task.model_cid()) == (result.model_digest, result.model_cid)
    assert task.total_credited() == 900
    assert task.fees_reserved() == 3 * 100
    assert task.pool() == 5 * 10_000 - 900 - 300
    assert task.vote_count(0, result.hash()) == 2

    # A late member still votes for the finalized round until its attest deadline.
    task.attest(members[2], 0, result)
    assert task.vote_count(0, result.hash()) == 3
    assert task.current_round() == 1  # no second finalization


def test_committee_of_a_larger_round_matches_the_python_sampler(kit: TaskKit) -> None:
    kit = kit.with_task(max_participants=10, committee_size=5, quorum=3)
    updates = kit.commit_all(kit.participants)
    assert kit.task.phase() == Phase.REVEAL  # max participants reached
    kit.task.close_commit_phase(kit.outsider)
    record = kit.task.round_record(0)
    expected = python_committee(record.seed, 10, 5)
    assert kit.task.committee_indices(0) == expected
    assert len(set(expected)) == 5
    addresses = [e.account for e in kit.task.events(Committed, round=0)]
    assert kit.task.committee(0) == [addresses[i] for i in expected]
    kit.reveal_all(kit.participants, updates)
    members = {addresses[i] for i in expected}
    for account in kit.participants:
        flags = kit.task.commitment_of(account.address).flags
        assert bool(flags & CommitmentFlag.MEMBER) == (account.address in members)


def test_small_rounds_use_every_committer_and_a_scaled_quorum(kit: TaskKit) -> None:
    kit = kit.with_task(committee_size=5, quorum=4)
    assert [kit.task.effective_quorum(n) for n in (1, 2, 3, 4, 5, 9)] == [1, 2, 3, 4, 4, 4]
    people = kit.participants[:2]
    updates = kit.commit_all(people)
    kit.to_reveal_phase()
    kit.reveal_all(people, updates)
    assert sorted(kit.task.committee_indices(0)) == [0, 1]
    result = kit.result({people[0].address: 1}, 1)
    kit.task.attest(people[0], 0, result)
    assert kit.task.current_round() == 0
    kit.task.attest(people[1], 0, result)  # ceil(4 * 2 / 5) = 2
    assert kit.task.current_round() == 1


def test_commit_phase_closes_early_at_max_participants(kit: TaskKit) -> None:
    kit = kit.with_task(max_participants=3)
    kit.commit_all(kit.participants[:2])
    assert kit.task.phase() == Phase.COMMIT
    receipt = kit.task.commit(kit.participants[2], b"\x01" * 32)
    record = kit.task.round_record(0)
    assert record.commit_end == receipt["blockNumber"]
    assert record.reveal_end == receipt["blockNumber"] + 20
    assert kit.task.phase() == Phase.REVEAL
    (closed,) = kit.task.events(PhaseClosedEarly, round=0)
    assert (closed.phase, closed.commit_end, closed.reveal_end) == (
        Phase.COMMIT,
        record.commit_end,
        record.reveal_end,
    )
    assert closed.block_number == receipt["blockNumber"]
    with pytest.raises(E.CommitPhaseClosed) as info:
        kit.task.commit(kit.participants[3], b"\x01" * 32)
    assert info.value.error_args == {"round": 0}


def test_reveal_phase_closes_early_when_every_committer_revealed(kit: TaskKit) -> None:
    people = kit.participants[:3]
    updates = kit.commit_all(people)
    kit.to_reveal_phase()
    kit.reveal_all(people[:2], updates)
    assert kit.task.events(PhaseClosedEarly, round=0) == []  # one reveal still to come
    receipt = kit.reveal(people[2], updates[people[2].address])
    record = kit.task.round_record(0)
    assert record.reveal_end == receipt["blockNumber"]
    (closed,) = kit.task.events(PhaseClosedEarly, round=0)
    assert (closed.phase, closed.reveal_end) == (Phase.REVEAL, receipt["blockNumber"])


# --- commit failures ------------------------------------------------------------------------


def test_commit_failures(kit: TaskKit) -> None:
    task, alice, bob = kit.task, kit.participants[0], kit.participants[1]
    with pytest.raises(E.NotActiveParticipant) as info:
        task.commit(kit.outsider, b"\x01" * 32)
    assert info.value.error_args == {"account": kit.outsider.address}
    kit.registry.request_withdrawal(bob)  # exiting participants are inactive at once
    with pytest.raises(E.NotActiveParticipant) as info:
        task.commit(bob, b"\x01" * 32)
    assert info.value.error_args == {"account": bob.address}

    task.commit(alice, b"\x01" * 32)
    with pytest.raises(E.AlreadyCommitted) as info:
        task.commit(alice, b"\x02" * 32)
    assert info.value.error_args == {"account": alice.address, "round": 0}

    kit.to_reveal_phase()
    with pytest.raises(E.CommitPhaseClosed) as info:
        task.commit(kit.participants[2], b"\x01" * 32)
    assert info.value.error_args == {"round": 0}


def test_close_commit_phase(kit: TaskKit) -> None:
    task = kit.task
    kit.commit(kit.participants[0])
    with pytest.raises(E.CommitPhaseOpen) as info:
        task.close_commit_phase(kit.outsider)
    assert info.value.error_args == {"round": 0}
    kit.to_reveal_phase()
    kit.chain.mine(1)
    receipt = task.close_commit_phase(kit.outsider)
    (event,) = task.logs(receipt, "CommitteeSeedFixed")
    assert event["commits"] == 1 and event["seed"] == task.round_record(0).seed
    with pytest.raises(E.SeedAlreadyFixed) as info:
        task.close_commit_phase(kit.outsider)
    assert info.value.error_args == {"round": 0}


# --- reveal failures ------------------------------------------------------------------------


def test_reveal_timing_failures(kit: TaskKit) -> None:
    alice = kit.participants[0]
    upd = kit.commit(alice)
    with pytest.raises(E.CommitPhaseOpen) as info:
        kit.reveal(alice, upd)
    assert info.value.error_args == {"round": 0}
    kit.to_attest_phase()
    with pytest.raises(E.RevealPhaseClosed) as info:
        kit.reveal(alice, upd)
    assert info.value.error_args == {"round": 0}


def test_reveal_argument_and_commitment_failures(kit: TaskKit) -> None:
    task, alice, bob = kit.task, kit.participants[0], kit.participants[1]
    upd = kit.commit(alice)
    kit.commit(kit.participants[2])  # a second committer keeps the reveal phase open
    kit.to_reveal_phase()
    with pytest.raises(E.InvalidSampleCount) as info:
        task.reveal(alice, upd.digest, 0, upd.salt, kit.update_cid)
    assert info.value.error_args == {"numSamples": 0, "maxSamples": 1_000_000}
    with pytest.raises(E.InvalidSampleCount) as info:
        task.reveal(alice, upd.digest, 1_000_001, upd.salt, kit.update_cid)
    assert info.value.error_args == {"numSamples": 1_000_001, "maxSamples": 1_000_000}
    with pytest.raises(E.EmptyCid):
        kit.reveal(alice, upd, cid="")
    with pytest.raises(E.NoCommitment) as info:
        kit.reveal(bob, upd)
    assert info.value.error_args == {"account": bob.address, "round": 0}
    for digest, samples, salt in [
        (keccak(text="other"), upd.num_samples, upd.salt),
        (upd.digest, upd.num_samples + 1, upd.salt),
        (upd.digest, upd.num_samples, keccak(text="guess")),
    ]:
        with pytest.raises(E.CommitmentMismatch) as info:
            task.reveal(alice, digest, samples, salt, kit.update_cid)
        assert info.value.error_args == {"account": alice.address, "round": 0}
    kit.reveal(alice, upd)
    with pytest.raises(E.AlreadyRevealed) as info:
        kit.reveal(alice, upd)
    assert info.value.error_args == {"account": alice.address, "round": 0}


def test_a_copied_commitment_cannot_be_revealed_by_the_copier(kit: TaskKit) -> None:
    task, victim, copier = kit.task, kit.participants[0], kit.participants[1]
    upd = kit.commit(victim)
    (event,) = task.events(Committed, round=0)
    task.commit(copier, event.commitment)  # the copier sees the commitment in the mempool/logs
    kit.to_reveal_phase()
    kit.reveal(victim, upd)
    # Even knowing everything the victim revealed, the copier's commitment binds the victim.
    with pytest.raises(E.CommitmentMismatch) as info:
        kit.reveal(copier, upd)
    assert info.value.error_args == {"account": copier.address, "round": 0}


def test_a_replayed_digest_is_refused_in_the_same_and_later_rounds(kit: TaskKit) -> None:
    alice, bob = kit.participants[0], kit.participants[1]
    upd = kit.commit(alice)
    copy = kit.update(bob, 0)
    copy = type(copy)(upd.digest, copy.num_samples, copy.salt)  # bob's own salt, alice's digest
    kit.commit(bob, copy)
    kit.to_reveal_phase()
    kit.reveal(alice, upd)
    with pytest.raises(E.DigestReplayed) as info:
        kit.reveal(bob, copy)
    assert info.value.error_args == {"digest": upd.digest}

    kit.to_attest_phase()
    kit.task.expire_round(kit.outsider)  # 1 reveal < minReveals
    # Round 1: alice re-submits her own earlier update with a fresh, valid commitment.
    again = type(upd)(upd.digest, upd.num_samples, keccak(text="fresh salt"))
    kit.commit(alice, again)
    kit.to_reveal_phase()
    with pytest.raises(E.DigestReplayed):
        kit.reveal(alice, again)


def test_commitments_are_bound_to_the_round_task_and_chain(kit: TaskKit) -> None:
    alice = kit.participants[0]
    upd = kit.update(alice, 0)
    good = kit.commitment(alice, 0, upd)
    kwargs = {
        "chain_id": kit.chain.chain_id,
        "task": kit.task.address,
        "sender": alice.address,
        "round_id": 0,
        "digest": upd.digest,
        "num_samples": upd.num_samples,
        "salt": upd.salt,
    }
    wrong = [
        commitment(**{**kwargs, "round_id": 1}),
        commitment(**{**kwargs, "task": kit.token.address}),
        commitment(**{**kwargs, "chain_id": kit.chain.chain_id + 1}),
    ]
    assert good == commitment(**kwargs) and good not in wrong
    for value in wrong:
        snapshot = kit.chain.snapshot()
        kit.task.commit(alice, value)
        kit.to_reveal_phase()
        with pytest.raises(E.CommitmentMismatch):
            kit.reveal(alice, upd)
        kit.chain.revert(snapshot)


# --- attest failures ------------------------------------------------------------------------


def _revealed_round(kit: TaskKit, count: int = 4) -> list:
    people = kit.participants[:count]
    updates = kit.commit_all(people)
    kit.to_reveal_phase()
    kit.reveal_all(people, updates)
    return people


def test_attest_timing_failures(kit: TaskKit) -> None:
    task = kit.task
    people = kit.participants[:4]
    updates = kit.commit_all(people)
    result = kit.result({people[0].address: 1}, 1)
    with pytest.raises(E.NotInAttestPhase) as info:
        task.attest(people[0], 0, result)  # commit phase
    assert info.value.error_args == {"round": 0}
    kit.to_reveal_phase()
    kit.reveal_all(people[:3], updates)
    with pytest.raises(E.NotInAttestPhase):
        task.attest(people[0], 0, result)  # reveal phase still open for the fourth
    with pytest.raises(E.NotInAttestPhase):
        task.attest(people[0], 1, result)  # a future round
    kit.past_attest_deadline(0)
    with pytest.raises(E.NotInAttestPhase):
        task.attest(kit.members(0)[0], 0, result)  # deadline passed


def test_attest_needs_min_reveals(kit: TaskKit) -> None:
    alice = kit.participants[0]
    kit.commit_all(kit.participants[:2])
    kit.to_reveal_phase()
    kit.reveal(alice, kit.update(alice, 0))
    kit.to_attest_phase()
    with pytest.raises(E.NotInAttestPhase) as info:
        kit.task.attest(alice, 0, kit.result({alice.address: 1}, 1))
    assert info.value.error_args == {"round": 0}


def test_attest_membership_duplicates_and_caps(kit: TaskKit) -> None:
    task = kit.task
    people = _revealed_round(kit)
    members = kit.members(0)
    outsider_of_committee = next(a for a in people if a not in members)
    result = kit.result({people[0].address: 10}, 10)
    with pytest.raises(E.NotCommitteeMember) as info:
        task.attest(outsider_of_committee, 0, result)
    assert info.value.error_args == {"round": 0, "account": outsider_of_committee.address}
    with pytest.raises(E.NotCommitteeMember):
        task.attest(kit.outsider, 0, result)
    cap = 10_000 - 3 * 100
    too_much = kit.result({people[0].address: cap + 1}, cap + 1)
    with pytest.raises(E.RewardTotalTooHigh) as info:
        task.attest(members[0], 0, too_much)
    assert info.value.error_args == {"rewardTotal": cap + 1, "cap": cap}
    task.attest(members[0], 0, result)
    with pytest.raises(E.AlreadyAttested) as info:
        task.attest(members[0], 0, result)
    assert info.value.error_args == {"round": 0, "member": members[0].address}


def test_split_votes_do_not_finalize_and_the_quorum_result_wins(kit: TaskKit) -> None:
    people = _revealed_round(kit)
    members = kit.members(0)
    honest = kit.result({people[0].address: 10}, 10, tag="honest")
    forged = kit.result({members[0].address: 9_000}, 9_000, tag="forged")
    kit.task.attest(members[0], 0, forged)
    kit.task.attest(members[1], 0, honest)
    assert kit.task.current_round() == 0
    kit.task.attest(members[2], 0, honest)
    assert kit.task.round_record(0).result_hash == honest.hash()
    assert kit.task.total_credited() == 10


def test_finalizing_needs_a_funded_pool(kit: TaskKit) -> None:
    kit = kit.with_task(fund=500)
    people = _revealed_round(kit, 3)
    members = kit.members(0)
    result = kit.result({people[0].address: 400}, 400)
    kit.task.attest(members[0], 0, result)
    with pytest.raises(E.InsufficientPool) as info:
        kit.task.attest(members[1], 0, result)
    assert info.value.error_args == {"needed": 400 + 3 * 100, "available": 500}


def test_attest_refuses_an_expired_round_and_a_completed_task(kit: TaskKit) -> None:
    kit = kit.with_task(rounds=1)
    alice = kit.participants[0]
    kit.commit(alice)
    kit.to_attest_phase()
    kit.task.expire_round(kit.outsider)  # round 0: one commit, no reveal
    result = kit.result({alice.address: 1}, 1)
    with pytest.raises(E.NotInAttestPhase):
        kit.task.attest(alice, 0, result)
    people = _revealed_round(kit, 3)
    kit.to_attest_phase()
    kit.finalize(1, kit.result({people[0].address: 1}, 1))
    assert kit.task.phase() == Phase.COMPLETED
    with pytest.raises(E.NotInAttestPhase):
        kit.task.attest(people[0], 2, result)
    with pytest.raises(E.TaskCompleted):
        kit.task.commit(people[0], b"\x01" * 32)
    with pytest.raises(E.TaskCompleted):
        kit.task.expire_round(kit.outsider)


def test_result_struct_round_trips(kit: TaskKit) -> None:
    result = Result(b"\x01" * 32, "m", b"\x02" * 32, "r", b"\x03" * 32, 7)
    assert Result.from_tuple(result.as_tuple()) == result
    assert kit.task.hash_result(result) == result.hash()
