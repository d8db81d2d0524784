"""ε in the round report of a DP task: the report counts each participant's revealed rounds
(integers, so every committee member writes the same bytes), and ``flchain status`` derives ε
from those counts with the accountant the node itself logs from, so the two agree."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import pytest
import torch
from flchain_node.cli.app import main
from flchain_node.federation import Federation
from flchain_node.status import task_status
from support.fedkit import DEMO

from flchain.errors import ProtocolError
from flchain.learning.privacy import epsilon_of
from flchain.ledger.contracts import RoundFinalized
from flchain.ledger.devchain import DevChain
from flchain.protocol.committee import recompute_round
from flchain.protocol.report import RoundReport
from flchain.protocol.rounds import fetch_report
from flchain.protocol.task import dp_config
from flchain.types import Address

DP = replace(DEMO, rounds=2, dp={"clip": 1.0, "noise_multiplier": 1.0, "delta": 1e-5})


def test_the_report_counts_dp_rounds_and_status_shows_the_nodes_own_epsilon(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.set_num_threads(1)
    fed = Federation(DP)
    try:
        fed.run()
        task = fed.deployment.task
        dp = dp_config(fed.manifest.config)
        assert dp is not None
        reports = []
        for r in range(DP.rounds):
            (event,) = task.events(RoundFinalized, round=r)
            # two committee members, each with its own view of chain and store: same bytes
            a, b = (recompute_round(n.view.round_inputs(r), fed.store) for n in fed.nodes[:2])
            assert a.report.to_bytes() == b.report.to_bytes()
            assert a.report_digest == event.report_digest
            reports.append(fetch_report(fed.store, event))
        addresses = [n.address for n in fed.nodes]
        assert reports[0].dp_rounds == dict.fromkeys(addresses, 1)
        assert reports[1].dp_rounds == dict.fromkeys(addresses, 2)
        assert b'"dp_rounds"' in reports[1].to_bytes()

        info = task_status(fed.chain, task.address, fed.store)
        assert info["dp"] == {"delta": 1e-5, "round": 1}
        shown = {p["address"]: p for p in info["participants"]}
        for node in fed.nodes:
            accountant = node.source.privacy  # what the node logs and checks its target against
            assert accountant is not None and accountant.rounds == {0, 1}
            mine = shown[node.address]
            assert mine["dp_rounds"] == 2
            assert mine["epsilon"] == accountant.epsilon() == epsilon_of(dp, 2) > 0
            assert node.source.last_spend is not None
            assert mine["epsilon_round"] == node.source.last_spend.epsilon_round
        # the command line shows the same, served over JSON-RPC from the same chain
        monkeypatch.setenv("COLUMNS", "200")  # the table's columns, unabridged
        with DevChain(port=0, provider=fed.chain.w3.provider) as served:  # type: ignore[arg-type]
            monkeypatch.setattr(sys, "argv", ["flchain", "status", "--task", task.address,
                "--rpc-url", served.url, "--store", str(fed.work_dir / "store")])  # fmt: skip
            with pytest.raises(SystemExit) as done:
                main()
        out = capsys.readouterr().out
        assert done.value.code in (0, None), out
        assert "ε cumulative" in out and "as the report of round 1 records it" in out
        for node in fed.nodes:
            line = next(x for x in out.splitlines() if node.address in x)
            assert f"{epsilon_of(dp, 2):.3f}" in line and f"{epsilon_of(dp, 1):.3f}" in line
    finally:
        fed.close()


def test_reports_without_dp_keep_their_bytes_and_bad_counts_are_refused() -> None:
    base = RoundReport("0xt", 1, "fedavg", "a", "b", "0x00", (), 0)
    assert b"dp_rounds" not in base.to_bytes()
    counted = replace(base, dp_rounds={Address("0xp"): 3})
    assert RoundReport.from_bytes(counted.to_bytes()) == counted
    for bad in (-1, 1.5, True):
        raw = json.loads(counted.to_bytes())
        raw["dp_rounds"] = {"0xp": bad}
        text = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
        with pytest.raises(ProtocolError, match="dp_rounds must map addresses to integers >= 0"):
            RoundReport.from_bytes(text)
