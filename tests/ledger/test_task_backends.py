"""One representative behaviour suite — a full round with reverts — on every backend of the
``chain`` fixture: the embedded chain, ``flchain devchain`` over HTTP, and a real anvil."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from support.task import make_task_config

from flchain.ledger import contract_errors as E
from flchain.ledger.chain import Chain
from flchain.ledger.contracts import Result, Revealed, RoundFinalized, RoundStatus
from flchain.ledger.deploy import deploy_stack, register_all
from flchain.ledger.merkle import RewardTree
from flchain.protocol.commitment import commitment

CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def test_round_and_reverts_on_every_backend(chain: Chain) -> None:
    admin, people, outsider = chain.accounts[0], chain.accounts[1:5], chain.accounts[-1]
    config = make_task_config(commit_blocks=10, reveal_blocks=10, rounds=2)
    stack = deploy_stack(
        chain, admin, config=config, min_stake=100, mint_to=[p.address for p in people]
    )
    register_all(stack, people)
    task = stack.task
    # Round 0 opened at deployment; registering took blocks. Wait for a fresh round if needed.
    start = task.round_record(0)
    round_id = 0
    # one block per commit here, plus the outsider's and the duplicate's (mined, reverted)
    if chain.block_number + len(people) + 2 >= start.commit_end:
        chain.mine(max(1, start.commit_end - chain.block_number + 1))
        task.expire_round(outsider)
        round_id = 1

    with pytest.raises(E.NotActiveParticipant) as info:
        task.commit(outsider, b"\x01" * 32)
    assert info.value.error_args == {"account": outsider.address}

    secrets = {}
    for p in people:
        digest, salt = keccak(text=f"u {p.address}"), keccak(text=f"s {p.address}")
        secrets[p.address] = (digest, salt)
        value = commitment(
            chain_id=chain.chain_id,
            task=task.address,
            sender=p.address,
            round_id=round_id,
            digest=digest,
            num_samples=10,
            salt=salt,
        )
        task.commit(p, value)
    with pytest.raises(E.AlreadyCommitted):
        task.commit(people[0], b"\x02" * 32)
    record = task.round_record(round_id)
    # One block past the deadline: anvil estimates gas in the context of the latest block.
    chain.mine(record.commit_end - chain.block_number + 1)

    digest, salt = secrets[people[0].address]
    with pytest.raises(E.CommitmentMismatch) as info:
        task.reveal(people[0], digest, 11, salt, CID)
    assert info.value.error_args == {"account": people[0].address, "round": round_id}
    for p in people:
        digest, salt = secrets[p.address]
        task.reveal(p, digest, 10, salt, CID)
    assert [e.account for e in task.events(Revealed, round=round_id)] == [p.address for p in people]

    cumulative = {people[0].address: 700, people[1].address: 300}
    tree = RewardTree(cumulative)
    result = Result(b"\x05" * 32, "bafymodel", b"\x06" * 32, "bafyreport", tree.root, 1_000)
    chain.mine(1)  # the last reveal closed the phase in its own block
    members = [next(p for p in people if p.address == a) for a in task.committee(round_id)]
    assert len(members) == 3
    for member in members:
        task.attest(member, round_id, result)
    assert task.round_record(round_id).status == RoundStatus.FINALIZED
    assert task.events(RoundFinalized, round=round_id)[0].result_hash == result.hash()
    with pytest.raises(E.AlreadyAttested):
        task.attest(members[0], round_id, result)

    before = stack.token.balance_of(people[0].address)
    task.claim(people[0], round_id, 700, tree.proof(people[0].address))
    assert stack.token.balance_of(people[0].address) == before + 700
    with pytest.raises(E.NothingToClaim):
        task.claim(people[0], round_id, 700, tree.proof(people[0].address))
