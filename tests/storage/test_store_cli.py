"""`flchain store` sub-commands, through typer's CliRunner and a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from flchain_node.cli.store import app
from typer.testing import CliRunner

runner = CliRunner()
HELLO_V0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
HELLO_V1 = "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello world\n")
    return path


def test_add_prints_only_the_cid(tmp_path: Path, hello: Path) -> None:
    result = runner.invoke(app, ["add", str(hello), "--store", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert result.stdout == HELLO_V0 + "\n"
    result = runner.invoke(
        app, ["add", "--cid-version", "1", str(hello), "--store", str(tmp_path / "s")]
    )
    assert result.stdout == HELLO_V1 + "\n"


def test_cat_export_import(tmp_path: Path, hello: Path) -> None:
    store, other = str(tmp_path / "s"), str(tmp_path / "o")
    runner.invoke(app, ["add", str(hello), "--store", store])
    result = runner.invoke(app, ["cat", HELLO_V1, "--store", store])
    assert result.exit_code == 0 and result.stdout_bytes == b"hello world\n"
    car = tmp_path / "hello.car"
    assert runner.invoke(app, ["export", HELLO_V0, str(car), "--store", store]).exit_code == 0
    result = runner.invoke(app, ["import", str(car), "--store", other])
    assert result.exit_code == 0 and result.stdout == HELLO_V0 + "\n"
    assert runner.invoke(app, ["cat", HELLO_V0, "--store", other]).stdout_bytes == b"hello world\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cat", "Qmnope"], "not a CID"),
        (["cat", "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"], "not in the store"),
        (["add", "/no/such/file"], "cannot read"),
        (["import", "/no/such.car"], "cannot read"),
        (["export", "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH", "x.car"], "not in the store"),
        (["cat", HELLO_V0, "--ipfs-api", "/ip4/127.0.0.1/tcp/9"], "unreachable"),
        (["cat", HELLO_V0, "--ipfs-api", "not-a-multiaddr"], "invalid IPFS API address"),
    ],
)
def test_bad_input_one_line_no_traceback(
    tmp_path: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*args, "--store", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_subprocess_stdin_and_binary_stdout(tmp_path: Path) -> None:
    """Real pipes: `add -` reads stdin, `cat` writes raw bytes."""
    data = bytes(range(256)) * 3000
    cmd = [sys.executable, "-c", "from flchain_node.cli.store import app; app()"]
    store = ["--store", str(tmp_path / "s")]
    added = subprocess.run([*cmd, "add", "-", *store], input=data, capture_output=True, check=True)
    cid = added.stdout.decode().strip()
    catted = subprocess.run([*cmd, "cat", cid, *store], capture_output=True, check=True)
    assert catted.stdout == data
