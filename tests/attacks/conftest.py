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
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from support.rounds import Actor, ContractActor, RoundKit, Update, send_as
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
from flchain.ledger.deploy import deploy_another_task, deploy_stack, register_all

FIXTURES = Path(__file__).parent / "fixtures"
MIN_STAKE = 1_000
UNBONDING_BLOCKS = 61  # the minimum the suite task accepts: a round + 1 + an attest phase
#: Committee of 5 with quorum 3, so a colluding minority of 2 exists; slashes and fee are small
#: against the stake, so nobody drops below the minimum by accident.
TASK = make_task_config(
    aggregation_rule=2, committee_size=5, quorum=3, max_participants=10, min_reveals=3
)


def fixture_artifact(name: str) -> dict[str, Any]:
    """A test-only contract compiled by ``scripts/compile_contracts.py``."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


class Arena(RoundKit):
    """A deployed stack plus the round moves of :class:`~support.rounds.RoundKit`, sent as raw
    contract calls so any mix of EOA and contract actors can play."""

    def __init__(
        self,
        chain: Chain,
        token: Contract,
        registry: ParticipantRegistry,
        task: TrainingTask,
        admin: LocalAccount,
        participants: list[Actor],
    ) -> None:
        super().__init__(chain, task, participants)
        self.token, self.registry, self.admin = token, registry, admin

    def send(self, actor: Actor, target: Contract, fn: str, *args: Any) -> TxReceipt:
        """:func:`~support.rounds.send_as` on this arena's chain."""
        return send_as(self.chain, actor, target, fn, *args)

    def balance(self, address: str) -> int:
        return int(self.token.functions.balanceOf(address).call())

    def send_commit(self, actor: Actor, value: bytes) -> TxReceipt:
        return self.send(actor, self.task.contract, "commit", value)

    def send_reveal(self, actor: Actor, upd: Update, cid: str) -> TxReceipt:
        args = (upd.digest, upd.num_samples, upd.salt, cid)
        return self.send(actor, self.task.contract, "reveal", *args)

    def attest(self, actor: Actor, round_id: int, result: Result) -> TxReceipt:
        return self.send(actor, self.task.contract, "attest", round_id, result.as_tuple())


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
    task = deploy_another_task(stack, TASK)
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
        send_as(chain, actor, token, "approve", registry.address, MIN_STAKE)
        send_as(chain, actor, registry.contract, "register", MIN_STAKE)
    send_as(chain, attacker, token, "setHooked", True)
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
