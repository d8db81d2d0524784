"""``Chain.call`` on the embedded chain answers a view asked again at the same latest block
without another request (the nodes of a one-process federation ask the same facts of one block
many times a round), and only while that block is the latest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from flchain.ledger.contracts import Committed
from flchain.ledger.embedded import EmbeddedTester, _Backend

if TYPE_CHECKING:
    from conftest import TaskKit


@pytest.fixture
def eth_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ``eth_call`` requests that reach the embedded chain's backend (answered by py-evm
    or from the backend's own cache)."""
    seen: list[Any] = []
    original = _Backend.call

    def counted(self: _Backend, transaction: Any, block_number: Any = "latest") -> Any:
        seen.append(transaction)
        return original(self, transaction, block_number)

    monkeypatch.setattr(_Backend, "call", counted)
    return seen


def test_a_view_asked_again_at_the_same_block_is_one_request(
    kit: TaskKit, eth_calls: list[Any]
) -> None:
    task = kit.task
    kit.chain.mine(1)  # a block nobody asked anything of yet
    first = task.round_record(0)
    assert [task.round_record(0) for _ in range(4)] == [first] * 4
    assert task.current_round() == 0 and task.current_round() == 0
    assert len(eth_calls) == 2  # one roundRecord(0), one currentRound
    task.round_record(1)  # other arguments: another call
    assert len(eth_calls) == 3

    kit.commit_all(kit.participants[:3])  # new blocks: the answers are asked again
    asked = len(eth_calls)
    after = task.round_record(0)
    assert after.commits == first.commits + 3
    assert task.round_record(0) == after and len(eth_calls) == asked + 1


def test_each_ask_is_a_request_with_the_caches_off_and_lists_are_not_shared(
    kit: TaskKit, eth_calls: list[Any]
) -> None:
    tester = kit.chain.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    assert isinstance(tester, EmbeddedTester)
    kit.chain.mine(1)
    tester.caching = False
    try:
        for _ in range(3):
            kit.task.current_round()
    finally:
        tester.caching = True
    assert len(eth_calls) == 3
    # an answer holding a list is decoded for each caller: changing one changes no other
    updates = kit.commit_all(kit.participants[:5])
    kit.to_reveal_phase()
    kit.reveal_all(kit.participants[:5], updates)
    kit.to_attest_phase()
    indices = kit.task.committee_indices(0)
    assert len(indices) == 3
    indices.clear()
    assert len(kit.task.committee_indices(0)) == 3


def test_a_log_query_up_to_the_latest_block_asked_again_is_one_request(
    kit: TaskKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events of a range up to the latest block are kept like view answers (a committee's
    members each read the round's reveals); each caller gets its own list."""
    queries: list[Any] = []
    original = EmbeddedTester.get_logs

    def counted(self: EmbeddedTester, *args: Any, **kwargs: Any) -> Any:
        queries.append(args or kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EmbeddedTester, "get_logs", counted)
    kit.commit_all(kit.participants[:3])
    since = kit.chain.block_number - 5
    first = kit.task.events(Committed, since, round=0)
    assert len(first) == 3 and len(queries) == 1
    first.clear()
    again = kit.task.events(Committed, since, round=0)
    assert len(again) == 3 and len(queries) == 1
    assert len(kit.task.events(Committed, since, round=1)) == 0 and len(queries) == 2
    kit.chain.mine(1)  # a new latest block: asked again
    assert kit.task.events(Committed, since, round=0) == again and len(queries) == 3
