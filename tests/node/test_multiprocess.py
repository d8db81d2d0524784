"""The federation as separate OS processes against a real chain node — anvil, Hardhat Network
and geth --dev, one small run each: `flchain task create`, one `flchain node run` per
participant and `flchain task keep`, started by scripts/launch_federation.py. The assertions
read the chain afterwards."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.tools import require_tool

from flchain.ledger.chain import Chain
from flchain.ledger.contracts import (
    Committed,
    FLToken,
    ParticipantRegistry,
    Registered,
    Revealed,
    RewardClaimed,
    RoundFinalized,
    TrainingTask,
)
from flchain.ledger.nodes import AnvilProcess, GethProcess, HardhatProcess, NodeProcess

ROOT = Path(__file__).resolve().parents[2]
PARTICIPANTS, ROUNDS = 3, 2

#: backend: (process class, seconds per block, blocks per phase). geth --dev seals on a
#: whole-second period, so it gets fewer, longer blocks for about the same wall time.
BACKENDS: dict[str, tuple[type[NodeProcess], float, int]] = {
    "anvil": (AnvilProcess, 0.5, 16),
    "hardhat": (HardhatProcess, 0.5, 16),
    "geth": (GethProcess, 1.0, 10),
}


@pytest.fixture(
    scope="module",
    params=[pytest.param(name, marks=getattr(pytest.mark, name)) for name in BACKENDS],
)
def launched(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, Path, str]]:
    kind, block_time, phase_blocks = BACKENDS[request.param]
    binary = kind.find_binary()
    require_tool(
        binary is not None and binary.exists(), f"{kind.name} not found", kind.install_hint
    )
    work = tmp_path_factory.mktemp(f"launch-{request.param}")
    with kind(accounts=PARTICIPANTS + 1, block_time=block_time) as node:
        run = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "launch_federation.py"),
             "--rpc-url", node.url, "--participants", str(PARTICIPANTS),
             "--rounds", str(ROUNDS), "--rule", "median", "--phase-blocks", str(phase_blocks),
             "--work", str(work), "--timeout", "300"],
            capture_output=True, text=True, timeout=400, check=False,
        )  # fmt: skip
        logs = "\n".join(f"--- {p.name}\n{p.read_text()}" for p in (work / "logs").glob("*.log"))
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{logs}"
        task = re.search(r"task (0x[0-9a-fA-F]{40})", run.stdout)
        assert task, run.stdout
        yield node.url, task.group(1), work, logs


def test_every_round_finalized_with_a_new_model(launched: tuple[str, str, Path, str]) -> None:
    url, address, _, _ = launched
    task = TrainingTask(Chain.connect(url, accounts=[]), address)
    finalized = task.events(RoundFinalized)
    assert task.finalized_rounds() == ROUNDS == len(finalized)
    cids = [task.config().initial_model_cid] + [e.model_cid for e in finalized]
    assert len(set(cids)) == len(cids), cids  # the global model changed every round


def test_every_participant_claimed_its_credit(launched: tuple[str, str, Path, str]) -> None:
    url, address, _, logs = launched
    chain = Chain.connect(url, accounts=[])
    task = TrainingTask(chain, address)
    registry = ParticipantRegistry(chain, task.registry())
    token = FLToken(chain, task.reward_token())
    members = {e.account for e in registry.events(Registered)}
    assert len(members) == PARTICIPANTS
    claims = {e.account: e.amount for e in task.events(RewardClaimed)}
    assert set(claims) == members, logs  # honest nodes all earned and pulled their reward
    assert task.total_claimed() == task.total_credited() == sum(claims.values())
    for member in members:
        assert token.balance_of(member) >= claims[member]  # (plus any committee fees)
        assert registry.stake_of(member) == registry.min_stake()


def test_nodes_never_sent_a_transaction_twice(launched: tuple[str, str, Path, str]) -> None:
    url, address, _, _ = launched
    task = TrainingTask(Chain.connect(url, accounts=[]), address)
    seen = [(e.round, e.account) for e in task.events(Committed)]
    assert len(seen) == len(set(seen))
    revealed = [(e.round, e.account) for e in task.events(Revealed)]
    assert len(revealed) == len(set(revealed))
