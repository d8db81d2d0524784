"""``devchain`` as a JSON-RPC server, ``flchain devchain``, and ``AnvilProcess``."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from support.tools import require_tool

from flchain.errors import LedgerError, RPCUnavailable
from flchain.ledger.anvil import AnvilProcess
from flchain.ledger.chain import Chain
from flchain.ledger.devchain import EMBEDDED_CHAIN_ID, DevChain

FIXTURES = Path(__file__).parent / "fixtures"


def _post(url: str, body: object) -> object:
    return requests.post(url, data=json.dumps(body), timeout=5).json()


def test_single_batch_and_malformed_requests(devchain_url: str) -> None:
    one = _post(devchain_url, {"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": []})
    assert one == {"jsonrpc": "2.0", "id": 7, "result": hex(EMBEDDED_CHAIN_ID)}
    batch = _post(
        devchain_url,
        [
            {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
            {"jsonrpc": "2.0", "id": 2, "method": "no_such_method", "params": []},
            {"jsonrpc": "2.0", "id": 3, "method": "eth_getBlockByNumber", "params": ["0x0", False]},
        ],
    )
    assert isinstance(batch, list) and [r["id"] for r in batch] == [1, 2, 3]
    assert batch[0]["result"].startswith("0x")
    assert batch[1]["error"]["code"] == -32601
    block = batch[2]["result"]
    assert block["number"] == "0x0" and len(block["logsBloom"]) == 2 + 512
    garbage = requests.post(devchain_url, data=b"{not json", timeout=5).json()
    assert garbage["error"]["code"] == -32700
    invalid = _post(devchain_url, {"id": 4, "params": []})
    assert invalid["error"]["code"] == -32600


def test_block_time_mines_empty_blocks_and_stop_is_clean() -> None:
    server = DevChain(port=0, num_accounts=2, block_time=0.1).start()
    chain = Chain.connect(server.url, num_accounts=2)
    first = chain.block_number
    deadline = time.monotonic() + 5
    while chain.block_number < first + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert chain.block_number >= first + 2
    server.stop()
    assert not any(t.is_alive() for t in server._threads)
    with pytest.raises(RPCUnavailable):
        Chain.connect(server.url, retries=0, timeout=1)


def test_bad_options_are_refused() -> None:
    with pytest.raises(LedgerError, match="block_time"):
        DevChain(port=0, block_time=0)
    with DevChain(port=0, num_accounts=1) as busy:
        port = int(busy.url.rsplit(":", 1)[1])
        with pytest.raises(LedgerError, match="cannot listen"):
            DevChain(port=port)


def test_cli_prints_accounts_and_serves_until_interrupted() -> None:
    code = (
        "import typer; from flchain_node.cli.devchain import devchain; "
        "app = typer.Typer(); app.command()(devchain); app()"
    )
    # Started as `flchain devchain &` starts in a script: with SIGINT ignored (what a
    # non-interactive shell does to background jobs); the CLI must still stop on it.
    process = subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--accounts", "3"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not (lines and lines[-1].startswith("Listening on ")):
            line = process.stdout.readline()
            assert line, f"devchain exited early: {''.join(lines)}"
            lines.append(line)
        output = "".join(lines)
        assert "(2) 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC" in output
        assert "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80" in output
        chain = Chain.connect(lines[-1].split()[-1], num_accounts=3)
        assert chain.chain_id == EMBEDDED_CHAIN_ID
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_anvil_process_without_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="anvil binary not found"):
        AnvilProcess(binary=tmp_path / "no-anvil").start()


def test_fixture_artifact_is_fresh() -> None:
    solc = FIXTURES.parents[2] / "node_modules" / "solc"
    require_tool(shutil.which("node") is not None and solc.exists(),
                 "node or node_modules/solc missing", "run `npm ci`")  # fmt: skip
    sys.path.insert(0, str(FIXTURES))
    try:
        from compile import compile_fixture
    finally:
        sys.path.remove(str(FIXTURES))
    committed = json.loads((FIXTURES / "ChainFixture.json").read_text())
    assert compile_fixture() == committed, "run tests/ledger/fixtures/compile.py"
