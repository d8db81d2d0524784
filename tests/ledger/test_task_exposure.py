"""Issue 13, hole 2: a stake must not leave before the slashes it is exposed to can be taken.

With the deployment's default unbonding delay, a committee member that committed and asked to
leave in the very block its round started could withdraw its whole stake at the attest deadline,
one block before its silence became slashable. The attack needs two transactions of one account
in the block that starts a round, which eth-tester cannot mine (it keeps one pending transaction
per sender), so it runs on a real anvil with automine off for that block.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from support.task import make_task_config

from flchain.ledger import contract_errors as E
from flchain.ledger.chain import Chain
from flchain.ledger.contracts import SLASHER_ROLE, Result, Settlement, TrainingTask
from flchain.ledger.deploy import deploy_stack, register_all
from flchain.protocol.commitment import commitment

CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
STAKE = 1_000
CONFIG = make_task_config(committee_size=5, quorum=3, max_participants=10, min_reveals=3)


@pytest.fixture
def anvil(anvil_url: str) -> Iterator[Chain]:
    chain = Chain.connect(anvil_url, num_accounts=20, receipt_timeout=30)
    snapshot = chain.snapshot()
    yield chain
    chain.set_automine(True)
    chain.revert(snapshot)


class Round:
    """Commit/reveal bookkeeping for one task."""

    def __init__(self, chain: Chain, task: TrainingTask) -> None:
        self.chain, self.task = chain, task

    def secret(self, account: LocalAccount, round_id: int) -> tuple[bytes, bytes, bytes]:
        digest = keccak(text=f"u {account.address} {round_id}")
        salt = keccak(text=f"s {account.address} {round_id}")
        value = commitment(
            chain_id=self.chain.chain_id,
            task=self.task.address,
            sender=account.address,
            round_id=round_id,
            digest=digest,
            num_samples=10,
            salt=salt,
        )
        return value, digest, salt

    def reveal(self, account: LocalAccount, round_id: int) -> None:
        _, digest, salt = self.secret(account, round_id)
        self.task.reveal(account, digest, 10, salt, CID)

    def mine_to(self, block: int) -> None:
        if block > self.chain.block_number:
            self.chain.mine(block - self.chain.block_number)


def result(tag: str) -> Result:
    return Result(keccak(text=f"m{tag}"), "bafym", keccak(text=f"r{tag}"), "bafyr", b"\x07" * 32, 0)


def test_a_member_cannot_withdraw_before_its_silence_is_slashable(anvil: Chain) -> None:
    chain = anvil
    admin, people, keeper = chain.accounts[0], chain.accounts[1:6], chain.accounts[-1]
    attacker, honest, dropout = people[0], people[1:4], people[4]
    # The deployment's defaults: unbonding delay and a round 0 whose commit phase is all ahead.
    stack = deploy_stack(chain, admin, config=CONFIG, fund=0, min_stake=STAKE,
                         mint_to=[p.address for p in people])  # fmt: skip
    register_all(stack, people)
    task = TrainingTask.deploy_task(
        chain, admin, CONFIG, stack.registry.address, stack.token.address
    )
    stack.registry.grant_role(admin, SLASHER_ROLE, task.address)
    stack.token.mint(admin, admin.address, 50_000)
    stack.token.approve(admin, task.address, 50_000)
    task.fund(admin, 50_000)
    registry, r = stack.registry, Round(chain, task)

    # Round 0: everyone takes part; two members attest normally.
    for p in people:
        task.commit(p, r.secret(p, 0)[0])
    r.mine_to(task.round_record(0).commit_end + 1)
    for p in people:
        r.reveal(p, 0)
    r.mine_to(task.round_record(0).reveal_end + 1)
    first = result("0")
    for member in honest[:2]:
        task.attest(member, 0, first)

    # One block: the attacker's vote finalizes round 0 (starting round 1); it commits to round
    # 1 and asks to leave, so its unbonding clock starts with the round.
    fns = [
        task.contract.functions.attest(0, first.as_tuple()),
        task.contract.functions.commit(r.secret(attacker, 1)[0]),
        registry.contract.functions.requestWithdrawal(),
    ]
    chain.set_automine(False)
    hashes = [chain.send(fn, attacker, gas=600_000) for fn in fns]
    chain.mine()
    chain.set_automine(True)
    receipts = [chain.wait_for_receipt(h) for h in hashes]
    assert [x["status"] for x in receipts] == [1, 1, 1]
    start = receipts[0]["blockNumber"]
    assert {x["blockNumber"] for x in receipts} == {start}
    assert task.current_round() == 1

    for member in (honest[2], dropout):  # late votes: nobody owes round 0 anything
        task.attest(member, 0, first)

    # Round 1 runs its full length: a dropout keeps the reveal phase open to its deadline.
    for p in [*honest, dropout]:
        task.commit(p, r.secret(p, 1)[0])
    r.mine_to(task.round_record(1).commit_end + 1)
    for p in [attacker, *honest]:
        r.reveal(p, 1)
    r.mine_to(task.round_record(1).reveal_end + 1)
    for member in honest:
        task.attest(member, 1, result("1"))
    attest_end = task.attest_deadline(1)
    assert attest_end == start + CONFIG.round_blocks  # the latest a round's slashes open

    r.mine_to(attest_end - 1)  # the withdrawal lands at the attest deadline
    with pytest.raises(E.StillBonded) as info:
        registry.withdraw(attacker)
    unlock = info.value.error_args["unlockBlock"]
    assert info.value.error_args["account"] == attacker.address
    # Bonded for a whole attest phase after the slash became provable, and not a block longer.
    assert unlock == start + CONFIG.min_unbonding_blocks == attest_end + CONFIG.attest_blocks + 1
    r.mine_to(attest_end)  # the refused withdrawal mined nothing: slashable from the next block
    receipt = task.settle_committee_member(keeper, 1, attacker.address)
    (log,) = task.logs(receipt, "CommitteeMemberSettled")
    assert (log["outcome"], log["amount"]) == (Settlement.SLASHED_SILENT, 40)
    assert registry.stake_of(attacker.address) == STAKE - 40
    r.mine_to(unlock - 1)
    receipt = registry.withdraw(attacker)
    assert registry.logs(receipt, "Withdrawn") == [{"account": attacker.address, "amount": 960}]
