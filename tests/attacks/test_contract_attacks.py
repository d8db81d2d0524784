"""Attacks on FLChain's contracts, each a test that fails if the attack works (issue 6).

Every attack is played the way an adversary would on the embedded chain: with a malicious
re-entering ERC-20, copied on-chain data, replayed transactions, a colluding committee minority,
withheld reveals, and a reveal front-run from the mempool. Each test asserts both that the
attack is refused (custom error and arguments) and that nobody lost or gained tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import rlp
from eth_utils import keccak

from flchain.errors import ContractRevert
from flchain.ledger import contract_errors as E
from flchain.ledger.contracts import Committed, Phase, Result, Revealed, RoundStatus, Settlement
from flchain.ledger.merkle import RewardTree

if TYPE_CHECKING:
    from conftest import Arena
    from eth_account.signers.local import LocalAccount
    from support.rounds import ContractActor, Update

MIN_STAKE = 1_000  # conftest's stake, non-reveal slash 30, committee slash 40, fee 100
UNBONDING_BLOCKS = 61  # the minimum the suite task accepts: a round + 1 + an attest phase
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def _all_reveal(arena: Arena, actors: list, updates: dict[str, Update]) -> None:
    for actor in actors:
        arena.reveal(actor, updates[actor.address])


def _assert_reentry_refused(attacker: ContractActor) -> None:
    """The hook fired exactly once, called back in, and the guard refused it."""
    view = attacker.contract.functions
    assert view.reentries().call() == 1
    assert view.lastReentrySucceeded().call() is False
    assert view.lastReentryResult().call() == E.ReentrancyGuardReentrantCall.selector


# --- reentrancy through a malicious ERC-20 ------------------------------------------------------


def test_reentrant_withdraw_pays_the_stake_once(
    reentrant_arena: Arena, attacker: ContractActor
) -> None:
    arena, registry = reentrant_arena, reentrant_arena.registry
    arena.send(attacker, registry.contract, "requestWithdrawal")
    arena.mine_to(arena.chain.block_number + UNBONDING_BLOCKS)
    held, owned = arena.balance(registry.address), arena.balance(attacker.address)
    again = registry.contract.encode_abi("withdraw")
    arena.chain.transact(attacker.contract.functions.arm(registry.address, again), attacker.owner)

    receipt = arena.send(attacker, registry.contract, "withdraw")

    _assert_reentry_refused(attacker)
    assert registry.logs(receipt, "Withdrawn") == [
        {"account": attacker.address, "amount": MIN_STAKE}
    ]
    assert arena.balance(attacker.address) == owned + MIN_STAKE
    assert arena.balance(registry.address) == held - MIN_STAKE
    with pytest.raises(E.NotRegistered) as info:
        arena.send(attacker, registry.contract, "withdraw")
    assert info.value.error_args == {"account": attacker.address}


def test_reentrant_claim_pays_the_reward_once(
    reentrant_arena: Arena, attacker: ContractActor
) -> None:
    arena, task = reentrant_arena, reentrant_arena.task
    honest = arena.participants[0]
    credits = {attacker.address: 700, honest.address: 300}
    round_id, _, tree = arena.play_round(arena.participants, credits)
    proof = [bytes(p) for p in tree.proof(attacker.address)]
    held, owned = arena.balance(task.address), arena.balance(attacker.address)
    again = task.contract.encode_abi("claim", args=[round_id, 700, proof])
    arena.chain.transact(attacker.contract.functions.arm(task.address, again), attacker.owner)

    receipt = arena.send(attacker, task.contract, "claim", round_id, 700, proof)

    _assert_reentry_refused(attacker)
    assert [log["amount"] for log in task.logs(receipt, "RewardClaimed")] == [700]
    assert arena.balance(attacker.address) == owned + 700
    assert arena.balance(task.address) == held - 700
    assert (task.claimed(attacker.address), task.total_claimed()) == (700, 700)
    with pytest.raises(E.NothingToClaim) as info:
        arena.send(attacker, task.contract, "claim", round_id, 700, proof)
    assert info.value.error_args == {
        "account": attacker.address,
        "cumulativeAmount": 700,
        "claimed": 700,
    }


# --- commit / reveal -----------------------------------------------------------------------------


def test_copied_commitment_cannot_be_revealed_by_the_copier(arena: Arena) -> None:
    victim, copier = arena.participants[:2]
    upd = arena.commit(victim)
    (event,) = arena.task.events(Committed, round=0)
    arena.task.commit(copier, event.commitment)  # the victim's commitment, byte for byte
    arena.to_reveal_phase()
    arena.reveal(victim, upd)

    # Everything the victim committed to is public now; the copier reveals it as its own.
    with pytest.raises(E.CommitmentMismatch) as info:
        arena.reveal(copier, upd)
    assert info.value.error_args == {"account": copier.address, "round": 0}
    assert [e.account for e in arena.task.events(Revealed, round=0)] == [victim.address]

    # The copier can never reveal, so it pays for the commit it could not honour.
    arena.to_attest_phase()
    arena.task.slash_non_revealer(arena.outsider, 0, copier.address)
    assert arena.registry.stake_of(copier.address) == MIN_STAKE - 30


def test_reveal_replayed_from_an_earlier_round_is_refused(arena: Arena) -> None:
    people = arena.participants[:5]
    victim, copier, replayer = people[0], people[1], people[2]
    old = arena.update(victim, 0)
    arena.play_round(people, {victim.address: 10})
    (revealed,) = [e for e in arena.task.events(Revealed, round=0) if e.account == victim.address]
    assert revealed.digest == old.digest

    # Round 1: the victim's own old update under a fresh salt, a copy of it by another account
    # (a valid commitment of the copier's), and the old reveal transaction replayed verbatim.
    again = type(old)(old.digest, old.num_samples, keccak(text="fresh salt"))
    stolen = type(old)(revealed.digest, revealed.num_samples, keccak(text="copier salt"))
    arena.commit(victim, again)
    arena.commit(copier, stolen)
    arena.to_reveal_phase()
    for actor, upd in ((victim, again), (copier, stolen)):
        with pytest.raises(E.DigestReplayed) as info:
            arena.reveal(actor, upd)
        assert info.value.error_args == {"digest": old.digest}
    with pytest.raises(E.NoCommitment) as info:
        arena.reveal(replayer, old)
    assert info.value.error_args == {"account": replayer.address, "round": 1}
    assert arena.task.events(Revealed, round=1) == []


def test_front_run_reveal_fails_because_the_commitment_binds_the_sender(arena: Arena) -> None:
    chain, task = arena.chain, arena.task
    victim, runner = arena.participants[:2]
    upd = arena.commit(victim)
    arena.task.commit(runner, task.events(Committed, round=0)[0].commitment)
    arena.to_reveal_phase()
    # One block into the reveal phase: Chain explains a mined failure by replaying it on the
    # previous block, which must be in the reveal phase too.
    chain.mine(1)

    # The victim broadcasts its reveal; the front-runner lifts digest, salt and CID from the
    # pending transaction and gets its own copy mined first.
    raw = _signed_reveal(arena, victim, upd)
    _, lifted = task.contract.decode_function_input(rlp.decode(raw)[5])
    assert lifted["salt"] == upd.salt
    front_run = task.contract.functions.reveal(*lifted.values())
    with pytest.raises(E.CommitmentMismatch) as info:
        chain.transact(front_run, runner, gas=500_000)  # no estimate: really mined, status 0
    assert info.value.error_args == {"account": runner.address, "round": 0}

    receipt = chain.wait_for_receipt(chain.w3.eth.send_raw_transaction(raw))
    assert receipt["status"] == 1
    assert [(e.account, e.digest) for e in task.events(Revealed, round=0)] == [
        (victim.address, upd.digest)
    ]


def _signed_reveal(arena: Arena, account: LocalAccount, upd: Update) -> bytes:
    """A signed legacy reveal transaction, as it would sit in the mempool."""
    w3 = arena.chain.w3
    fn = arena.task.contract.functions.reveal(upd.digest, upd.num_samples, upd.salt, CID)
    tx = fn.build_transaction(
        {
            "from": account.address,
            "chainId": arena.chain.chain_id,
            "gas": 500_000,
            "gasPrice": 2 * w3.eth.gas_price,
            "nonce": w3.eth.get_transaction_count(account.address),
        }
    )
    return bytes(account.sign_transaction(tx).raw_transaction)


# --- committee -----------------------------------------------------------------------------------


def _revealed_round(arena: Arena) -> tuple[list, list]:
    """All ten commit and reveal round 0; (committee members, other committers)."""
    people = arena.participants
    updates = arena.commit_all(people)
    arena.to_reveal_phase()
    _all_reveal(arena, people, updates)
    arena.to_attest_phase()
    members = arena.members(0)
    return members, [p for p in people if p not in members]


def test_non_members_cannot_attest(arena: Arena) -> None:
    members, others = _revealed_round(arena)
    assert len(members) == 5 and len(others) == 5
    result = arena.result({others[0].address: 9_000})
    for intruder in (arena.outsider, others[0], others[1]):
        with pytest.raises(E.NotCommitteeMember) as info:
            arena.attest(intruder, 0, result)
        assert info.value.error_args == {"round": 0, "account": intruder.address}
    assert arena.task.vote_count(0, result.hash()) == 0


def test_a_member_cannot_attest_twice(arena: Arena) -> None:
    members, _ = _revealed_round(arena)
    member = members[0]
    result = arena.result({member.address: 9_000})
    arena.attest(member, 0, result)
    for repeat in (result, arena.result({member.address: 8_999})):
        with pytest.raises(E.AlreadyAttested) as info:
            arena.attest(member, 0, repeat)
        assert info.value.error_args == {"round": 0, "member": member.address}
    assert arena.task.vote_count(0, result.hash()) == 1
    assert arena.task.round_record(0).status == RoundStatus.OPEN


def test_colluding_minority_cannot_push_a_wrong_result(arena: Arena) -> None:
    task, registry = arena.task, arena.registry
    members, others = _revealed_round(arena)
    colluders, honest = members[:2], members[2:]
    wrong = arena.result({colluders[0].address: 5_000, colluders[1].address: 4_500}, tag="bad")
    right = arena.result({p.address: 1_000 for p in others}, tag="good")
    for member in colluders:
        arena.attest(member, 0, wrong)
    for member in honest:
        arena.attest(member, 0, right)

    record = task.round_record(0)
    assert (record.status, record.result_hash) == (RoundStatus.FINALIZED, right.hash())
    assert task.model_digest() == right.model_digest
    assert task.total_credited() == 5_000
    # The rewards the colluders voted themselves are not under the final root.
    theirs = RewardTree({colluders[0].address: 5_000, colluders[1].address: 4_500})
    with pytest.raises(E.InvalidProof) as info:
        task.claim(colluders[0], 0, 5_000, theirs.proof(colluders[0].address))
    assert info.value.error_args == {
        "round": 0,
        "account": colluders[0].address,
        "cumulativeAmount": 5_000,
    }

    arena.mine_to(task.attest_deadline(0))
    pool = task.pool()
    for member in colluders:
        receipt = task.settle_committee_member(arena.outsider, 0, member.address)
        (log,) = task.logs(receipt, "CommitteeMemberSettled")
        assert (log["outcome"], log["amount"]) == (Settlement.SLASHED_LOSING_VOTE, 40)
        assert registry.stake_of(member.address) == MIN_STAKE - 40
    for member in honest:
        task.settle_committee_member(arena.outsider, 0, member.address)
        assert task.fees_owed(member.address) == 100
    # Slashes and the colluders' unpaid fees went back to the pool.
    assert task.pool() == pool + 2 * 40 + 2 * 100
    assert task.fees_reserved() == 0


# --- rewards -------------------------------------------------------------------------------------


def test_rewards_cannot_be_claimed_twice_or_by_another(arena: Arena) -> None:
    task = arena.task
    alice, bob = arena.participants[:2]
    round_id, _, tree = arena.play_round(
        arena.participants[:5], {alice.address: 600, bob.address: 400}
    )
    alice_proof = tree.proof(alice.address)
    task.claim(alice, round_id, 600, alice_proof)

    with pytest.raises(E.NothingToClaim) as info:
        task.claim(alice, round_id, 600, alice_proof)
    assert info.value.error_args == {
        "account": alice.address,
        "cumulativeAmount": 600,
        "claimed": 600,
    }
    for thief, amount in ((bob, 600), (arena.outsider, 600), (alice, 601)):
        with pytest.raises(E.InvalidProof) as info:
            task.claim(thief, round_id, amount, alice_proof)
        assert info.value.error_args == {
            "round": round_id,
            "account": thief.address,
            "cumulativeAmount": amount,
        }
    task.claim(bob, round_id, 400, tree.proof(bob.address))
    assert (task.total_claimed(), task.claimed(alice.address), task.claimed(bob.address)) == (
        1_000,
        600,
        400,
    )
    assert task.total_claimed() <= task.total_credited()


# --- griefing ------------------------------------------------------------------------------------


def test_griefers_withholding_reveals_are_slashed_and_the_round_completes(arena: Arena) -> None:
    task, registry = arena.task, arena.registry
    people = arena.participants
    updates = arena.commit_all(people)
    arena.to_reveal_phase()
    task.close_commit_phase(arena.outsider)
    # The worst griefers: two committee members, who also never attest.
    members = arena.members(0)
    griefers, honest = members[:2], members[2:]
    _all_reveal(arena, [p for p in people if p not in griefers], updates)
    arena.to_attest_phase()
    result = arena.result({p.address: 100 for p in honest})
    for member in honest:
        arena.attest(member, 0, result)

    assert task.round_record(0).status == RoundStatus.FINALIZED
    assert (task.current_round(), task.phase()) == (1, Phase.COMMIT)
    arena.mine_to(task.attest_deadline(0))
    for griefer in griefers:
        task.slash_non_revealer(arena.outsider, 0, griefer.address)
        receipt = task.settle_committee_member(arena.outsider, 0, griefer.address)
        (log,) = task.logs(receipt, "CommitteeMemberSettled")
        assert (log["outcome"], log["amount"]) == (Settlement.SLASHED_SILENT, 40)
        assert registry.stake_of(griefer.address) == MIN_STAKE - 30 - 40
        with pytest.raises(E.AlreadySlashed):
            task.slash_non_revealer(arena.outsider, 0, griefer.address)


def test_a_round_starved_of_reveals_expires_cleanly_and_slashes_the_griefers(arena: Arena) -> None:
    task, registry = arena.task, arena.registry
    people = arena.participants
    updates = arena.commit_all(people)
    arena.to_reveal_phase()
    revealers, griefers = people[:2], people[2:]  # 2 reveals < minReveals (3)
    _all_reveal(arena, revealers, updates)
    with pytest.raises(E.RoundNotExpirable):
        task.expire_round(arena.outsider)
    arena.mine_to(task.round_record(0).reveal_end + 1)  # views see the latest block
    pool = task.pool()
    assert task.phase() == Phase.EXPIRABLE

    task.expire_round(arena.outsider)

    assert task.round_record(0).status == RoundStatus.EXPIRED
    assert (task.current_round(), task.finalized_rounds()) == (1, 0)
    assert task.model_digest() == b"\x04" * 32  # the global model stays
    for griefer in griefers:
        task.slash_non_revealer(arena.outsider, 0, griefer.address)
        assert registry.stake_of(griefer.address) == MIN_STAKE - 30
    assert task.pool() == pool + 30 * len(griefers)  # the budget rolls over, plus the slashes


# --- issue 13: holes found by a hostile review -----------------------------------------------


def test_a_zero_prefix_commitment_cannot_flood_the_round(arena: Arena) -> None:
    """A commitment whose first 24 bytes are zero used to read as "no commitment": one account
    could commit again and again, fill every slot, close the commit phase on everyone else and
    never be slashable. Each account commits once a round, and its commit is always slashable."""
    task = arena.task
    flooder, honest = arena.participants[:2]
    zero_prefix = b"\x00" * 24 + b"\x5a" * 8
    task.commit(flooder, zero_prefix)

    with pytest.raises(E.AlreadyCommitted) as info:
        task.commit(flooder, zero_prefix)
    assert info.value.error_args == {"account": flooder.address, "round": 0}
    assert task.round_record(0).commits == 1
    assert task.commitment_of(flooder.address).exists

    upd = arena.commit(honest)  # the slots are still open to everyone else
    assert [e.account for e in task.events(Committed, round=0)] == [flooder.address, honest.address]
    arena.to_reveal_phase()
    arena.reveal(honest, upd)
    arena.to_attest_phase()
    receipt = task.slash_non_revealer(arena.outsider, 0, flooder.address)
    assert [log["amount"] for log in task.logs(receipt, "NonRevealerSlashed")] == [30]
    assert arena.registry.stake_of(flooder.address) == MIN_STAKE - 30


def test_a_colluding_round_cannot_pull_credits_of_later_rounds(arena: Arena) -> None:
    """A colluding committee publishes a root crediting one account far above its round's
    budget. Claims used to be accepted against any finalized round's root, so once later rounds
    credited more, the account pulled their credits and honest claims failed. Only the latest
    finalized round's root pays now."""
    task = arena.task
    people = arena.participants[:5]
    thief, honest = people[0], people[1:]
    # Round 0: the whole committee colludes; the root credits the thief 9,000 but the round
    # reports (and the contract credits) 100.
    loot = RewardTree({thief.address: 9_000, honest[0].address: 100})
    updates = arena.commit_all(people)
    arena.to_reveal_phase()
    _all_reveal(arena, people, updates)
    arena.to_attest_phase()
    bad = Result(keccak(text="m0"), "bafym0", keccak(text="r0"), "bafyr0", bytes(loot.root), 100)
    for member in arena.members(0):
        arena.attest(member, 0, bad)
    assert task.total_credited() == 100
    # Round 1 is honest and credits 2,250 to each honest participant.
    credits = {honest[0].address: 100 + 2_250, **{p.address: 2_250 for p in honest[1:]}}
    updates = arena.commit_all(people)
    arena.to_reveal_phase()
    _all_reveal(arena, people, updates)
    arena.to_attest_phase()
    tree = RewardTree(credits)
    good = Result(keccak(text="m1"), "bafym1", keccak(text="r1"), "bafyr1", bytes(tree.root), 9_000)
    for member in arena.members(1):
        arena.attest(member, 1, good)
    assert task.total_credited() == 100 + 9_000

    with pytest.raises(ContractRevert) as info:
        task.claim(thief, 0, 9_000, loot.proof(thief.address))
    assert isinstance(info.value, E.StaleRewardRoot)
    assert info.value.error_args == {"round": 0, "latest": 1}
    assert task.total_claimed() == 0
    for p in honest:  # every honest credit is still there
        task.claim(p, 1, tree.amount(p.address), tree.proof(p.address))
    assert task.total_claimed() == task.total_credited() == 9_100
