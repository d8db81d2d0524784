"""Fixtures of the contract attack suite: an FLChain stack on the embedded chain, helpers that
drive a round, and a second stack paid in a malicious, re-entering ERC-20.

``arena`` starts every test from one session-wide deployment (snapshot/revert): ten registered
participants, an outsider with tokens but no registration, a task at the start of round 0.
``reentrant_arena`` is the same with ``ReentrantToken`` as stake and reward token and a
``ReentrantAttacker`` contract account registered as participant ``attacker``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from support.task import make_task_config
from web3.contract import Contract
from web3.types import TxReceipt

from flchain.ledger.chain import Chain
from flchain.ledger.contracts import (
    SLASHER_ROLE,
    ParticipantRegistry,
    Result,
    TrainingTask,
)
from flchain.ledger.deploy import deploy_stack, register_all
from flchain.ledger.merkle import RewardTree
from flchain.protocol.commitment import commitment

FIXTURES = Path(__file__).parent / "fixtures"
MIN_STAKE = 1_000
UNBONDING_BLOCKS = 61  # the minimum the suite task accepts: a round + 1 + an attest phase
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
#: Committee of 5 with quorum 3, so a colluding minority of 2 exists; slashes and fee are small
#: against the stake, so nobody drops below the minimum by accident.
TASK = make_task_config(
    aggregation_rule=2, committee_size=5, quorum=3, max_participants=10, min_reveals=3
)


def fixture_artifact(name: str) -> dict[str, Any]:
    """A test-only contract compiled by ``scripts/compile_contracts.py``."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


@dataclass(frozen=True)
class Update:
    """What a participant commits to and later reveals."""

    digest: bytes
    num_samples: int
    salt: bytes


@dataclass(frozen=True)
class ContractActor:
    """A participant that is a contract: ``owner`` drives it through ``execute``."""

    contract: Contract
    owner: LocalAccount

    @property
    def address(self) -> str:
        return str(self.contract.address)


Actor = LocalAccount | ContractActor


class Arena:
    """A deployed stack plus the moves of a round, for any mix of EOA and contract actors."""

    def __init__(
        self,
        chain: Chain,
        token: Contract,
        registry: ParticipantRegistry,
        task: TrainingTask,
        admin: LocalAccount,
        participants: list[Actor],
    ) -> None:
        self.chain, self.token, self.registry, self.task = chain, token, registry, task
        self.admin, self.participants = admin, participants
        self.outsider: LocalAccount = chain.accounts[-1]

    # --- sending ------------------------------------------------------------------------------

    @staticmethod
    def send_as(chain: Chain, actor: Actor, target: Contract, fn: str, *args: Any) -> TxReceipt:
        """Call ``target.fn(*args)`` as ``actor`` (through ``execute`` for a contract actor)."""
        if isinstance(actor, ContractActor):
            data = target.encode_abi(fn, args=list(args))
            call = actor.contract.functions.execute(target.address, data)
            return chain.transact(call, actor.owner)
        return chain.transact(target.functions[fn](*args), actor)

    def send(self, actor: Actor, target: Contract, fn: str, *args: Any) -> TxReceipt:
        """:meth:`send_as` on this arena's chain."""
        return self.send_as(self.chain, actor, target, fn, *args)

    def balance(self, address: str) -> int:
        return int(self.token.functions.balanceOf(address).call())

    # --- commit / reveal ----------------------------------------------------------------------

    def update(self, actor: Actor, round_id: int, tag: str = "") -> Update:
        seed = f"{actor.address}/{round_id}/{tag}"
        return Update(keccak(text="digest " + seed), 100 + round_id, keccak(text="salt " + seed))

    def commitment(self, actor: Actor, round_id: int, upd: Update) -> bytes:
        return commitment(
            chain_id=self.chain.chain_id,
            task=self.task.address,
            sender=actor.address,
            round_id=round_id,
            digest=upd.digest,
            num_samples=upd.num_samples,
            salt=upd.salt,
        )

    def commit(self, actor: Actor, upd: Update | None = None) -> Update:
        round_id = self.task.current_round()
        upd = upd or self.update(actor, round_id)
        self.send(actor, self.task.contract, "commit", self.commitment(actor, round_id, upd))
        return upd

    def reveal(self, actor: Actor, upd: Update) -> TxReceipt:
        args = (upd.digest, upd.num_samples, upd.salt, CID)
        return self.send(actor, self.task.contract, "reveal", *args)

    def commit_all(self, actors: list[Actor]) -> dict[str, Update]:
        return {a.address: self.commit(a) for a in actors}

    # --- phases and committee -----------------------------------------------------------------

    def mine_to(self, block: int) -> None:
        """Mine until the latest block is ``block`` (the next transaction lands after it)."""
        if block > self.chain.block_number:
            self.chain.mine(block - self.chain.block_number)

    def to_reveal_phase(self) -> None:
        self.mine_to(self.task.round_record(self.task.current_round()).commit_end)

    def to_attest_phase(self) -> None:
        self.mine_to(self.task.round_record(self.task.current_round()).reveal_end)

    def actor(self, address: str) -> Actor:
        return next(a for a in self.participants if a.address == address)

    def members(self, round_id: int) -> list[Actor]:
        return [self.actor(a) for a in self.task.committee(round_id)]

    def attest(self, actor: Actor, round_id: int, result: Result) -> TxReceipt:
        return self.send(actor, self.task.contract, "attest", round_id, result.as_tuple())

    def result(self, credits: dict[str, int], tag: str = "") -> Result:
        tree = RewardTree(credits)
        total = sum(credits.values())
        return Result(
            keccak(text="model " + tag),
            "bafymodel" + tag,
            keccak(text="report " + tag),
            "bafyreport" + tag,
            bytes(tree.root),
            total,
        )

    def play_round(self, actors: list[Actor], credits: dict[str, int]) -> tuple[int, RewardTree]:
        """Everyone commits and reveals; the whole committee attests ``credits``."""
        round_id = self.task.current_round()
        updates = self.commit_all(actors)
        self.to_reveal_phase()
        for a in actors:
            self.reveal(a, updates[a.address])
        self.to_attest_phase()
        result = self.result(credits, tag=str(round_id))
        for member in self.members(round_id):
            self.attest(member, round_id, result)
        assert self.task.finalized_rounds() >= 1
        return round_id, RewardTree(credits)


def _snapshotted(arena: Arena) -> Iterator[Arena]:
    snapshot = arena.chain.snapshot()
    yield arena
    arena.chain.revert(snapshot)


@pytest.fixture(scope="session")
def arena_session() -> Arena:
    chain = Chain.embedded(20)
    admin, people = chain.accounts[0], chain.accounts[1:11]
    stack = deploy_stack(
        chain,
        admin,
        config=TASK,
        fund=0,
        min_stake=MIN_STAKE,
        unbonding_blocks=UNBONDING_BLOCKS,
        mint_to=[a.address for a in [*people, chain.accounts[-1]]],
    )
    register_all(stack, people)
    # A task deployed after the registrations has its whole commit phase ahead.
    task = TrainingTask.deploy_task(chain, admin, TASK, stack.registry.address, stack.token.address)
    stack.registry.grant_role(admin, SLASHER_ROLE, task.address)
    funding = TASK.round_budget * TASK.rounds
    stack.token.mint(admin, admin.address, funding)
    stack.token.approve(admin, task.address, funding)
    task.fund(admin, funding)
    return Arena(chain, stack.token.contract, stack.registry, task, admin, list(people))


@pytest.fixture
def arena(arena_session: Arena) -> Iterator[Arena]:
    """The session's stack with FLToken, reverted after the test."""
    yield from _snapshotted(arena_session)


@pytest.fixture(scope="session")
def reentrant_session() -> tuple[Arena, ContractActor]:
    chain = Chain.embedded(20)
    admin, people = chain.accounts[0], chain.accounts[1:6]
    token = chain.deploy(fixture_artifact("ReentrantToken"), admin)
    attacker = ContractActor(chain.deploy(fixture_artifact("ReentrantAttacker"), admin), admin)
    registry = ParticipantRegistry.deploy_registry(
        chain, admin, token.address, min_stake=MIN_STAKE, unbonding_blocks=UNBONDING_BLOCKS
    )
    actors: list[Actor] = [*people, attacker]
    for actor in actors:
        chain.transact(token.functions.mint(actor.address, 10 * MIN_STAKE), admin)
        Arena.send_as(chain, actor, token, "approve", registry.address, MIN_STAKE)
        Arena.send_as(chain, actor, registry.contract, "register", MIN_STAKE)
    Arena.send_as(chain, attacker, token, "setHooked", True)
    task = TrainingTask.deploy_task(chain, admin, TASK, registry.address, token.address)
    registry.grant_role(admin, SLASHER_ROLE, task.address)
    funding = TASK.round_budget * TASK.rounds
    chain.transact(token.functions.mint(admin.address, funding), admin)
    chain.transact(token.functions.approve(task.address, funding), admin)
    chain.transact(task.contract.functions.fund(funding), admin)
    return Arena(chain, token, registry, task, admin, actors), attacker


@pytest.fixture
def reentrant_arena(reentrant_session: tuple[Arena, ContractActor]) -> Iterator[Arena]:
    """A stack paid in ``ReentrantToken``; ``reentrant_arena.participants[-1]`` is the attacker
    contract (hooked: every payment to it calls back into it). Reverted after the test."""
    yield from _snapshotted(reentrant_session[0])


@pytest.fixture
def attacker(reentrant_session: tuple[Arena, ContractActor]) -> ContractActor:
    return reentrant_session[1]
