"""A real node process on a devchain, SIGKILLed mid-round (after its commit, before its reveal)
and started again: the new process reveals the update the dead one committed, and is paid."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import torch
from flchain_node.federation import Federation
from support.fedkit import DEMO, Driver

from flchain.ledger.contracts import CommitmentFlag, Committed, FLToken, Revealed, RoundStatus
from flchain.ledger.devchain import DevChain

SCRIPT = Path(__file__).with_name("node_process.py")
VICTIM = 0
WAIT = 120.0  # seconds; generous, the machine may be busy


def _spawn(url: str, fed: Federation, state: Path) -> subprocess.Popen[str]:
    args = [url, fed.deployment.task.address, str(fed.work_dir / "store"), str(state), "0"]
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=SCRIPT.parent,
    )


def _read_until(stream: IO[str], wanted: str) -> list[dict[str, Any]]:
    """Lines from the node until one mentions ``wanted`` (the process must not end first)."""
    seen = []
    for line in stream:
        seen.append(json.loads(line))
        if wanted in line:
            return seen
    raise AssertionError(f"node process ended before {wanted!r}: {seen}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Federation, str]]:
    torch.set_num_threads(1)
    fed = Federation(DEMO, work_dir=tmp_path / "work")
    try:
        with DevChain(port=0, provider=fed.chain.w3.provider) as devchain:  # type: ignore[arg-type]
            yield fed, devchain.url
    finally:
        fed.close()


def test_sigkilled_node_process_restarts_and_finishes_the_round(
    served: tuple[Federation, str], tmp_path: Path
) -> None:
    fed, url = served
    task = fed.deployment.task
    state = tmp_path / "node0.json"
    address = fed.accounts[VICTIM].address
    balance_before = FLToken(fed.chain, task.reward_token()).balance_of(address)
    others = Driver.restartable(fed, tmp_path, (1, 2))

    first = _spawn(url, fed, state)
    try:
        assert first.stdout is not None
        _read_until(first.stdout, '"commit"')
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=WAIT) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    saved = json.loads(state.read_text())["rounds"]["0"]
    assert task.commitment_of(address).round == 0 and task.commitment_of(address).exists

    # the others commit (closing the commit phase) and reveal while the victim is dead
    revealed = CommitmentFlag.REVEALED
    others.run_until(
        lambda: all(task.commitment_of(n.address).flags & revealed for n in others.nodes.values())
    )
    assert not task.commitment_of(address).flags & revealed

    second = _spawn(url, fed, state)
    try:
        assert second.stdout is not None
        lines = _read_until(second.stdout, '"reveal"')
        assert not any("commit" in line.get("actions", []) for line in lines)
        # block time stands still until the victim revealed; now the round may close
        others.run_until(lambda: task.round_record(0).status == RoundStatus.FINALIZED)
        tail = [json.loads(line) for line in second.stdout]
        assert second.wait(timeout=WAIT) == 0
    finally:
        if second.poll() is None:
            second.kill()

    assert [e.account for e in task.events(Committed, round=0)].count(address) == 1
    (revealed,) = [e for e in task.events(Revealed, round=0) if e.account == address]
    assert "0x" + revealed.digest.hex() == saved["digest"] and revealed.cid == saved["cid"]
    report = others.nodes[1].report_of(0)
    (mine,) = [o for o in report.outcomes if o.participant == address]
    assert mine.accepted and mine.reward > 0
    assert tail[-1] == {"claimed": mine.reward}
    token = FLToken(fed.chain, task.reward_token())
    assert token.balance_of(address) - balance_before == mine.reward
