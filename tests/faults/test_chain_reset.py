"""anvil's ``anvil_reset`` empties the chain under a running keeper: it stops with one clear
:class:`~flchain.errors.ContractGone` naming the task, not web3's decoding traceback, and
``flchain``'s entry point turns that into one line and exit status 1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from flchain_node.federation import Federation
from flchain_node.runner import run_keeper
from support.fedkit import DEMO
from support.tools import require_tool

from flchain.errors import ContractGone
from flchain.ledger.chain import Chain
from flchain.ledger.nodes import AnvilProcess

pytestmark = pytest.mark.anvil


@pytest.fixture
def on_anvil() -> Iterator[tuple[Federation, AnvilProcess]]:
    binary = AnvilProcess.find_binary()
    found = binary is not None and binary.exists()
    require_tool(found, "anvil not found", AnvilProcess.install_hint)
    with AnvilProcess(accounts=DEMO.participants + 1) as anvil:
        chain = Chain.connect(anvil.url, num_accounts=DEMO.participants + 1, receipt_timeout=30)
        federation = Federation(DEMO, chain=chain)
        try:
            yield federation, anvil
        finally:
            federation.close()


def test_keeper_on_a_reset_anvil_stops_with_one_clear_error(
    on_anvil: tuple[Federation, AnvilProcess],
) -> None:
    fed, anvil = on_anvil
    keeper, address = fed.keeper, fed.deployment.task.address
    assert keeper.step() == {}  # a working keeper on a live task: nothing due yet
    anvil.rpc("anvil_reset", [])  # the chain starts over, empty
    with pytest.raises(ContractGone) as info:
        run_keeper(keeper, poll=0.05, timeout=30, log=lambda line: None)
    assert str(info.value).startswith(f"TrainingTask contract gone at {address} on {anvil.url}")
    assert "reset" in str(info.value)

    # `flchain task keep` started on the reset chain: one line, exit status 1
    run = subprocess.run(
        [sys.executable, "-m", "flchain_node.cli.app", "task", "keep", "--task", address,
         "--rpc-url", anvil.url, "--dev-account", "0", "--timeout", "30"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith(f"error: no contract at {address}"), run.stderr
    assert "reset" in run.stderr and run.stderr.strip().count("\n") == 0, run.stderr
