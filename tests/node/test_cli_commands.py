"""The task owner's and participant's commands against a devchain served over HTTP:
``task create`` → ``status`` → ``claim``, and one clear error line for bad input."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flchain_node.cli.app import main

from flchain.ledger.accounts import DEV_MNEMONIC, account_from_mnemonic
from flchain.ledger.devchain import DevChain

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "task.toml"


@pytest.fixture(scope="module")
def devchain() -> Iterator[str]:
    with DevChain(port=0, num_accounts=4) as server:
        yield server.url


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["flchain", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_create_then_status_then_claim(
    devchain: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FLCHAIN_RPC_URL", devchain)
    monkeypatch.setenv("FLCHAIN_STORE", str(tmp_path / "store"))
    member = account_from_mnemonic(DEV_MNEMONIC, 1)
    code, out, err = run_cli(
        monkeypatch, capsys, "task", "create", str(EXAMPLE), "--dev-account", "0",
        "--mint-to", member.address, "--json",
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    assert set(created) >= {"token", "registry", "task", "manifest_cid", "initial_model_cid"}
    monkeypatch.setenv("FLCHAIN_TASK", created["task"])

    code, out, err = run_cli(monkeypatch, capsys, "status", "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["task"] == created["task"]
    assert (status["round"], status["phase"], status["finalized_rounds"]) == (0, "commit", 0)
    assert status["rounds"] == 3 and status["pool"] == 4 * 1000 * 10**18  # budget × (rounds+1)
    assert status["model_cid"] == created["initial_model_cid"]
    assert status["participants"] == []  # minted stake, but nobody registered yet

    code, out, err = run_cli(monkeypatch, capsys, "claim", "--dev-account", "1")
    assert (code, out.strip()) == (0, "nothing owed"), err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "--task", "0x" + "11" * 20], "no contract at"),
        (["status", "--task", "not-an-address"], "not an Ethereum address"),
        (["task", "create", "/nonexistent.toml", "--dev-account", "0"], "config file not found"),
        (["node", "run", "--task", "0x" + "11" * 20, "--dev-account", "1"], "--shard"),
        (["claim", "--task", "0x" + "11" * 20], "no account"),
    ],
)
def test_bad_input_is_one_clear_line(
    devchain: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("FLCHAIN_RPC_URL", devchain)
    code, _, err = run_cli(monkeypatch, capsys, *args)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and message in lines[0], err


def test_without_a_chain_the_error_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FLCHAIN_RPC_URL", raising=False)
    code, _, err = run_cli(monkeypatch, capsys, "status", "--task", "0x" + "11" * 20)
    assert code == 1 and "--rpc-url" in err and "flchain devchain" in err


def test_unreachable_chain_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        monkeypatch, capsys, "status", "--task", "0x" + "11" * 20,
        "--rpc-url", "http://127.0.0.1:9",
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "127.0.0.1:9" in lines[0], err
