"""A node killed after sending its commit, restarted while that transaction still waits in a
real node's mempool (anvil with automine off, like any chain with a block time): the new
process must wait for it, not send a second commit that would revert and waste gas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from flchain_node.federation import Federation
from support.fedkit import DEMO, Killed, fresh_node
from support.tools import require_tool

from flchain.errors import LedgerError
from flchain.ledger.anvil import AnvilProcess, find_anvil
from flchain.ledger.chain import Chain
from flchain.ledger.contracts import Committed

pytestmark = pytest.mark.anvil
ACCOUNTS = DEMO.participants + 1


@pytest.fixture
def on_anvil() -> Iterator[tuple[Federation, str]]:
    binary = find_anvil()
    require_tool(binary is not None and binary.exists(), "anvil binary not found",
                 "run `npm ci`, or set FLCHAIN_ANVIL")  # fmt: skip
    torch.set_num_threads(1)
    try:
        with AnvilProcess(accounts=ACCOUNTS) as anvil:
            fed = Federation(DEMO, chain=Chain.connect(anvil.url, num_accounts=ACCOUNTS))
            try:
                yield fed, anvil.url
            finally:
                fed.close()
    except LedgerError as exc:
        pytest.fail(f"anvil did not start: {exc}")


def test_restart_waits_for_its_commit_still_in_the_mempool(
    on_anvil: tuple[Federation, str], tmp_path: Path
) -> None:
    """Regression: the restarted node sent a second commit with the next nonce; once mined it
    reverted with AlreadyCommitted (step() raised, gas was lost)."""
    fed, url = on_anvil
    task, eth = fed.deployment.task, fed.chain.w3.eth
    victim = fresh_node(fed, 0, tmp_path, chain=Chain.connect(url, num_accounts=ACCOUNTS))
    address = victim.address
    nonce_before = eth.get_transaction_count(address)
    fed.chain.set_automine(False)

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise Killed("after sending the commit")

    victim.chain.wait_for_receipt = killed  # type: ignore[method-assign]
    with pytest.raises(Killed):
        victim.step()
    assert eth.get_transaction_count(address, "pending") == nonce_before + 1
    assert task.events(Committed, round=0) == []  # not mined yet

    # a short receipt timeout: a wrongly re-sent commit fails fast instead of hanging
    chain = Chain.connect(url, num_accounts=ACCOUNTS, receipt_timeout=5)
    restarted = fresh_node(fed, 0, tmp_path, chain=chain)
    assert restarted.step().actions == ["waiting"]
    assert eth.get_transaction_count(address, "pending") == nonce_before + 1  # nothing new sent
    fed.chain.mine(1)
    assert restarted.step().actions == []  # its commit landed: nothing owed
    fed.chain.set_automine(True)

    assert restarted.state.rounds[0].committed
    assert [e.account for e in task.events(Committed, round=0)] == [address]
    assert eth.get_transaction_count(address) == nonce_before + 1
