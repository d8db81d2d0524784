"""TrainingTask rewards: pull claims against cumulative Merkle roots, one claim covering many
rounds, replays refused, and the contract never paying more than it credited."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from flchain.ledger import contract_errors as E
from flchain.ledger.contracts import RewardClaimed

if TYPE_CHECKING:
    from conftest import TaskKit


def test_one_claim_covers_several_rounds(kit: TaskKit) -> None:
    task, token = kit.task, kit.token
    people = kit.participants[:3]
    alice, bob = people[0].address, people[1].address
    cumulative: dict[str, int] = {}
    trees = []
    for round_id, (a, b) in enumerate([(100, 50), (200, 0), (300, 25)]):
        cumulative = {alice: cumulative.get(alice, 0) + a, bob: cumulative.get(bob, 0) + b}
        _, _, tree = kit.play_round(people, cumulative, a + b)
        trees.append(tree)
        assert task.round_record(round_id).reward_root == bytes(tree.root)
    assert task.total_credited() == 675

    held = token.balance_of(alice)
    receipt = task.claim(people[0], 2, 600, trees[2].proof(alice))
    assert task.logs(receipt, "RewardClaimed") == [
        {"account": alice, "round": 2, "amount": 600, "cumulativeAmount": 600}
    ]
    assert token.balance_of(alice) == held + 600
    assert task.claimed(alice) == 600
    # A replay pays nothing; an older root is refused outright (only the latest root pays).
    with pytest.raises(E.NothingToClaim) as info:
        task.claim(people[0], 2, 600, trees[2].proof(alice))
    assert info.value.error_args == {"account": alice, "cumulativeAmount": 600, "claimed": 600}
    for account, amount, tree in ((people[0], 100, trees[0]), (people[1], 50, trees[0])):
        with pytest.raises(E.StaleRewardRoot) as stale:
            task.claim(account, 0, amount, tree.proof(account.address))
        assert stale.value.error_args == {"round": 0, "latest": 2}
    assert task.reward_round() == 2

    task.claim(people[1], 2, 75, trees[2].proof(bob))
    assert task.claimed(bob) == 75
    assert task.total_claimed() == 675
    assert [(e.account, e.amount) for e in task.events(RewardClaimed)] == [(alice, 600), (bob, 75)]


def test_claims_follow_the_latest_root_round_by_round(kit: TaskKit) -> None:
    task, people = kit.task, kit.participants[:3]
    bob = people[1].address
    assert task.reward_round() is None
    for round_id, cumulative in enumerate((50, 75)):
        _, _, tree = kit.play_round(people, {bob: cumulative}, 50 if round_id == 0 else 25)
        assert task.reward_round() == round_id
        task.claim(people[1], round_id, cumulative, tree.proof(bob))
    assert [e.amount for e in task.events(RewardClaimed)] == [50, 25]


def test_claim_failures(kit: TaskKit) -> None:
    task = kit.task
    people = kit.participants[:3]
    alice = people[0].address
    _, _, tree = kit.play_round(people, {alice: 100, people[1].address: 10}, 110)
    with pytest.raises(E.RoundNotFinalized) as info:
        task.claim(people[0], 1, 100, tree.proof(alice))
    assert info.value.error_args == {"round": 1}
    with pytest.raises(E.InvalidProof) as info:
        task.claim(people[0], 0, 101, tree.proof(alice))
    assert info.value.error_args == {"round": 0, "account": alice, "cumulativeAmount": 101}
    # Another account cannot use alice's leaf: the leaf binds msg.sender.
    with pytest.raises(E.InvalidProof) as info:
        task.claim(people[2], 0, 100, tree.proof(alice))
    assert info.value.error_args["account"] == people[2].address
    with pytest.raises(E.InvalidProof):
        task.claim(people[2], 0, 0, [])  # a made-up zero leaf is not under the root


def test_a_colluding_committee_cannot_pay_out_more_than_was_credited(kit: TaskKit) -> None:
    task = kit.task
    people = kit.participants[:3]
    alice = people[0].address
    # The root promises alice 5_000 but the round credits only 100.
    _, _, tree = kit.play_round(people, {alice: 5_000}, 100)
    with pytest.raises(E.ClaimExceedsCredited) as info:
        task.claim(people[0], 0, 5_000, tree.proof(alice))
    assert info.value.error_args == {"amount": 5_000, "available": 100}
    assert task.total_claimed() == 0
