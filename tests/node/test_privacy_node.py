"""A participant node on a DP task: ε per round in its metrics file, and past the target ε it
sits the round out (no commitment, so nothing is slashed) while the round goes on."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys
from pathlib import Path

import pytest
from eth_utils import to_checksum_address
from flchain_node.cli.app import main
from flchain_node.factory import build_participant, shard_trainer
from flchain_node.federation import Federation
from flchain_node.local import LocalMetric, LocalMetrics, PrivateTrainer, metrics_file
from support.fedkit import Driver

from flchain.learning.privacy import PrivacySpend
from flchain.learning.training import DPConfig, dp_epsilon
from flchain.ledger.accounts import DEV_MNEMONIC, account_from_mnemonic
from flchain.ledger.contracts import Committed, RoundStatus


def test_node_past_its_target_epsilon_skips_without_commit_or_slash(
    fed: Federation, tmp_path: Path
) -> None:
    honest = shard_trainer(fed.config, 0, fed.demo.participants, data=fed.fed)
    one = dp_epsilon(1.0, 1, 1e-5)
    dp = DPConfig(clip_norm=0.5, noise_multiplier=1.0, delta=1e-5, target_epsilon=one * 1.0001)
    path = metrics_file(tmp_path / "node0.json")
    lines: list[str] = []

    def trainer() -> PrivateTrainer:
        return PrivateTrainer(
            honest.model, honest.data, dataclasses.replace(honest.config, dp=dp), honest.seed,
            validation=None, max_samples=10**6, metrics=LocalMetrics(path), log=lines.append,
        )  # fmt: skip

    spent = trainer()
    state = {k: v.clone() for k, v in honest.model.state_dict().items()}
    spent.produce(state, 7, None)  # an earlier round: ε of one release, persisted
    saved = json.loads(path.read_text())["privacy"]
    assert [p["round"] for p in saved] == [7]
    assert saved[0]["epsilon_total"] == saved[0]["epsilon_round"] == one
    assert "ε" in lines[-1] and "cumulative" in lines[-1]

    # a restarted node resumes its budget from the metrics file: a second round is too much
    task, registry = fed.deployment.task, fed.deployment.registry
    node = build_participant(task, fed.store, fed.accounts[0], trainer(), manifest=fed.manifest)
    stake = registry.stake_of(node.address)
    assert node.step().actions == ["skipped-privacy"]
    assert node.step().actions == []  # said once per round
    assert sum("past the task's target" in line for line in lines) == 1  # said once
    others = fed.nodes[1:]
    Driver(fed, dict(enumerate([node, *others]))).finish_round(0)
    assert task.round_record(0).status == RoundStatus.FINALIZED
    assert node.address not in [e.account for e in task.events(Committed, round=0)]
    assert registry.stake_of(node.address) == stake
    assert 0 not in node.state.rounds


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["flchain", *args])
    out, code = io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue()


def test_status_local_shows_the_privacy_spent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = account_from_mnemonic(DEV_MNEMONIC, 3).address
    task = "0x" + "ab" * 20
    state = tmp_path / f"{to_checksum_address(task)}-{account}.json"
    metrics = LocalMetrics(metrics_file(state))
    metrics.record(LocalMetric(0, 1.5, 0.5, 10))
    one, two = dp_epsilon(1.0, 1, 1e-5), dp_epsilon(1.0, 2, 1e-5)
    metrics.record_privacy(PrivacySpend(0, one, one, 1e-5))
    metrics.record_privacy(PrivacySpend(1, one, two, 1e-5))
    code, out = run_cli(monkeypatch, "status", "--task", task, "--local", "--json",
                           "--state-dir", str(tmp_path), "--dev-account", "3")  # fmt: skip
    assert code == 0
    shown = json.loads(out)["privacy"]
    assert [(p["round"], p["epsilon_total"]) for p in shown] == [(0, one), (1, two)]
    code, out = run_cli(monkeypatch, "status", "--task", task, "--local",
                           "--state-dir", str(tmp_path), "--dev-account", "3")  # fmt: skip
    assert code == 0 and "Differential privacy spent" in out and f"{two:.3f}" in out
