"""A participant killed at every protocol step and restarted from its state file finishes the
round: one commitment, its saved update revealed, its vote cast once, its reward paid once.

The kill is a :class:`~support.fedkit.Killed` raised from the victim's own trainer, store or chain
connection just before or just after the action, so nothing after that point runs; the restart
builds a brand-new node (new chain connection and nonce manager, new trainer) from the state
file alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flchain_node import ParticipantNode
from flchain_node.federation import Federation
from support.fedkit import Driver, Killed, fresh_node

from flchain.ledger.contracts import (
    Attested,
    Committed,
    FLToken,
    Revealed,
    RewardClaimed,
    RoundStatus,
)
from flchain.storage import ContentStore
from flchain.types import CID

VICTIM = 0
TX_ACTIONS = ("commit", "reveal", "attest", "claim")
POINTS = [
    "train:before",
    "store:before",  # trained, update not stored
    "store:after",  # stored, salt and digest not saved
    *(f"{action}:{when}" for action in TX_ACTIONS for when in ("before", "sent", "mined")),
]


class CrashingStore:
    """Delegates to ``inner``; kills the process around the first ``put`` after training
    (the update's), once."""

    def __init__(self, inner: ContentStore, when: str | None) -> None:
        self.inner, self.when = inner, when
        self.armed = False
        self.fired = False

    def put(self, data: bytes, **kwargs: Any) -> CID:
        if self.armed and self.when == "before":
            self.fired = True
            raise Killed("before storing the update")
        cid = self.inner.put(data, **kwargs)
        if self.armed and self.when == "after":
            self.fired = True
            raise Killed("after storing the update")
        return cid

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Injector:
    """Installs one crash point on a node: ``component:when`` as in :data:`POINTS`."""

    def __init__(self, point: str) -> None:
        self.component, self.when = point.split(":")
        self.fired = False

    def install(self, node: ParticipantNode, store: CrashingStore) -> None:
        produce = node.source.produce

        def crashing_produce(*args: Any) -> Any:
            if self.component == "train" and not self.fired:
                self.fired = True
                raise Killed("before training")
            result = produce(*args)
            store.armed = self.component == "store"
            return result

        node.source.produce = crashing_produce  # type: ignore[method-assign]
        if self.component in TX_ACTIONS:
            self._wrap_chain(node)

    def _wrap_chain(self, node: ParticipantNode) -> None:
        chain = node.chain
        transact = chain.transact

        def crashing_transact(fn: Any, sender: Any, **kwargs: Any) -> Any:
            mine = fn.fn_name == self.component and not self.fired
            if mine and self.when == "before":
                self.fired = True
                raise Killed(f"before sending {fn.fn_name}")
            if mine and self.when == "sent":
                chain.wait_for_receipt = crashing_wait  # type: ignore[method-assign]
            receipt = transact(fn, sender, **kwargs)
            if mine and self.when == "mined":
                self.fired = True
                raise Killed(f"after {fn.fn_name} was mined")
            return receipt

        def crashing_wait(*args: Any, **kwargs: Any) -> Any:
            self.fired = True
            raise Killed("after sending, before the receipt")

        chain.transact = crashing_transact  # type: ignore[method-assign]


def _claim_surviving(driver: Driver, index: int) -> int:
    """Claim for ``index``, restarting it when the claim kills it; total paid by the calls."""
    paid = 0
    for _ in range(3):
        try:
            return paid + driver.nodes[index].claim()
        except Killed:
            driver.nodes[index] = driver.restart(index)
            driver.restarts.append(index)
    raise AssertionError("claim kept crashing")


@pytest.mark.parametrize("point", POINTS)
def test_node_killed_at_step_resumes_and_is_paid_once(
    rewound: Federation, tmp_path: Path, point: str
) -> None:
    fed = rewound
    task = fed.deployment.task
    token = FLToken(fed.chain, task.reward_token())
    injector = Injector(point)
    store = CrashingStore(fed.store, injector.when if injector.component == "store" else None)
    victim = fresh_node(fed, VICTIM, tmp_path, store=store)  # type: ignore[arg-type]
    injector.install(victim, store)
    address = victim.address
    restart: Callable[[int], ParticipantNode] = lambda i: fresh_node(fed, i, tmp_path)  # noqa: E731
    nodes = {0: victim, **{i: fresh_node(fed, i, tmp_path) for i in (1, 2)}}
    driver = Driver(fed, nodes, restart)
    nonce_before = fed.chain.w3.eth.get_transaction_count(address)
    balance_before = token.balance_of(address)

    def everyone_voted() -> bool:
        votes = [task.vote_of(0, n.address).result_hash for n in driver.nodes.values()]
        return task.round_record(0).status == RoundStatus.FINALIZED and all(map(any, votes))

    driver.run_until(everyone_voted)
    paid = {i: _claim_surviving(driver, i) for i in driver.nodes}

    assert injector.fired or store.fired, f"the crash at {point} never happened"
    assert driver.restarts == [VICTIM]
    # never committed twice, and revealed exactly the update it saved
    saved = json.loads((tmp_path / f"node{VICTIM}.json").read_text())["rounds"]["0"]
    assert [e.account for e in task.events(Committed, round=0)].count(address) == 1
    (revealed,) = [e for e in task.events(Revealed, round=0) if e.account == address]
    assert "0x" + revealed.digest.hex() == saved["digest"] and revealed.cid == saved["cid"]
    assert [e.member for e in task.events(Attested, round=0)].count(address) == 1
    # rewarded once, and every transaction it signed did something (no duplicate, no revert)
    report = driver.nodes[1].report_of(0)
    (mine,) = [o for o in report.outcomes if o.participant == address]
    assert mine.accepted and mine.reward > 0
    assert task.claimed(address) == mine.reward == token.balance_of(address) - balance_before
    assert [e.account for e in task.events(RewardClaimed)].count(address) == 1
    # a claim killed after sending paid; the restarted node finds nothing left to claim
    expected_paid = 0 if point in ("claim:sent", "claim:mined") else mine.reward
    assert paid[VICTIM] == expected_paid
    assert fed.chain.w3.eth.get_transaction_count(address) == nonce_before + 4
