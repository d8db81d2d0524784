"""`flchain store` sub-commands, through typer's CliRunner and a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from flchain_node.cli.store import app
from typer.testing import CliRunner

from flchain.ledger.devchain import DevChain
from flchain.storage import KuboStore, LocalStore, cid_for

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
        (["gc", "--task", "0x" + "11" * 20], "no chain: pass --rpc-url"),
    ],
)
def test_bad_input_one_line_no_traceback(
    tmp_path: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLCHAIN_RPC_URL", raising=False)
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


def test_gc_removes_unpinned_blocks_of_the_embedded_store(tmp_path: Path, hello: Path) -> None:
    store = tmp_path / "s"
    runner.invoke(app, ["add", str(hello), "--store", str(store)])
    with LocalStore(store) as s:
        loose = s.put(b"nobody pins this", pin=False)
    result = runner.invoke(app, ["gc", "--store", str(store)])
    assert (result.exit_code, result.stdout) == (0, "removed 1 unpinned blocks\n"), result.output
    with LocalStore(store) as s:
        assert not s.has(loose) and s.get(HELLO_V0) == b"hello world\n"


@pytest.mark.kubo
def test_gc_on_a_kubo_daemon(kubo_api: str) -> None:
    with KuboStore(kubo_api) as s:
        kept = s.put(b"gc cli: pinned")
        loose = s.put(b"gc cli: not pinned", pin=False)
    result = runner.invoke(app, ["gc", "--ipfs-api", kubo_api])
    assert result.exit_code == 0 and result.stdout.startswith("removed "), result.output
    with KuboStore(kubo_api) as s:
        assert s.has(kept) and not s.has(loose)


def test_gc_for_a_task_keeps_what_the_task_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from flchain_node.cli.app import main

    example = Path(__file__).resolve().parents[2] / "examples" / "task.toml"
    store = tmp_path / "s"
    monkeypatch.setenv("FLCHAIN_STORE", str(store))
    with DevChain(port=0, num_accounts=2) as chain:
        monkeypatch.setenv("FLCHAIN_RPC_URL", chain.url)
        monkeypatch.setattr(sys, "argv", ["flchain", "task", "create", str(example),
                                          "--dev-account", "0", "--json"])  # fmt: skip
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code in (0, None)
        created = json.loads(capsys.readouterr().out)
        with LocalStore(store) as s:
            mine = s.put(b"a file of my own, pinned")
            loose = s.put(b"not pinned", pin=False)
        result = runner.invoke(app, ["gc", "--task", created["task"], "--retention", "0"])
    assert result.exit_code == 0, result.output
    assert "unpinned 0, kept 2 pins the task still needs" in result.stdout
    with LocalStore(store) as s:
        assert {created["manifest_cid"], created["initial_model_cid"], mine} <= set(s.pins())
        assert not s.has(loose)
        assert s.get(mine) == b"a file of my own, pinned"
    assert cid_for(b"not pinned") == loose
