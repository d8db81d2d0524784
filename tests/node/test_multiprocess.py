"""The federation as separate OS processes against a real anvil node: `flchain task create`,
one `flchain node run` per participant and `flchain task keep`, started by
scripts/launch_federation.py. Runs once in CI; the assertions read the chain afterwards."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flchain.ledger.anvil import AnvilProcess, find_anvil
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

ROOT = Path(__file__).resolve().parents[2]
PARTICIPANTS, ROUNDS = 3, 2

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path, str]]:
    if find_anvil() is None:
        pytest.fail("anvil binary missing: run `npm ci`")
    work = tmp_path_factory.mktemp("launch")
    with AnvilProcess(accounts=PARTICIPANTS + 1, block_time=0.5) as anvil:
        run = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "launch_federation.py"),
             "--rpc-url", anvil.url, "--participants", str(PARTICIPANTS),
             "--rounds", str(ROUNDS), "--rule", "median", "--phase-blocks", "16",
             "--work", str(work), "--timeout", "300"],
            capture_output=True, text=True, timeout=400, check=False,
        )  # fmt: skip
        logs = "\n".join(f"--- {p.name}\n{p.read_text()}" for p in (work / "logs").glob("*.log"))
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{logs}"
        task = re.search(r"task (0x[0-9a-fA-F]{40})", run.stdout)
        assert task, run.stdout
        yield anvil.url, task.group(1), work, logs


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
