"""Every crash the fuzzers found, as a fixed example, plus the no-half-done-write checks."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from boundaries import SPECS, _report, store_snapshot, valid_car
from flchain_node.cli.app import app
from flchain_node.state import NodeState, RoundState
from fuzzlib import deep_nesting, json_values
from hypothesis import given, settings
from multiformats import varint
from rpcserver import Fault, faulty_node
from typer.testing import CliRunner

from flchain import safejson
from flchain.config import TaskConfig, config_from_dict, load_config
from flchain.errors import (
    ConfigError,
    ContentMismatch,
    InvalidCAR,
    InvalidCID,
    LedgerError,
    ProtocolError,
    RPCUnavailable,
)
from flchain.ledger import transport
from flchain.ledger.chain import Chain
from flchain.protocol.manifest import TaskManifest
from flchain.protocol.report import RoundReport
from flchain.storage import LocalStore, import_car, parse_cid, unixfs
from flchain.storage import car as carlib

# --- CIDs and CAR files -----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["b", "B", "z", "f0"])
def test_short_multibase_text_is_an_invalid_cid(text: str) -> None:
    # multiformats raised IndexError on a lone multibase prefix
    with pytest.raises(InvalidCID, match="not a CID"):
        parse_cid(text)


def _car(header: bytes, *sections: tuple[bytes, bytes]) -> bytes:
    out = varint.encode(len(header)) + header
    for cid, block in sections:
        out += varint.encode(len(cid) + len(block)) + cid + block
    return out


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (b"\x81" * 60_000 + b"\x80", "nested deeper"),  # was RecursionError
        (b"\xa1\x80\x00", "not a string"),  # a map keyed by an array: was TypeError
        (b"\xa1\xa0\x00", "not a string"),
    ],
)
def test_hostile_car_headers(tmp_path: Path, header: bytes, match: str) -> None:
    with pytest.raises(InvalidCAR, match=match):
        import_car(LocalStore(tmp_path, durable=False), io.BytesIO(_car(header)))


def _dag_pb(links: list[bytes], data: bytes = unixfs._uint_field(1, unixfs.UNIXFS_FILE)) -> bytes:
    body = b"".join(unixfs._bytes_field(2, unixfs._bytes_field(1, c)) for c in links)
    return body + unixfs._bytes_field(1, data)


def _mh(block: bytes) -> bytes:
    return b"\x12\x20" + hashlib.sha256(block).digest()


def test_unsupported_root_codec_is_invalid_car_and_writes_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, durable=False)
    leaf = _dag_pb([])
    cbor_root = unixfs.from_bytes(b"\x01\x71" + _mh(leaf))  # dag-cbor: was ValueError
    data = _car(carlib.encode_header([cbor_root]), (_mh(leaf), leaf))
    before = store_snapshot(store)
    with pytest.raises(InvalidCAR, match="unsupported CID"):
        import_car(store, io.BytesIO(data))
    assert store_snapshot(store) == before


@pytest.mark.parametrize("cut", [1, 100, 200_000])
def test_failed_import_leaves_blocks_and_pins_unchanged(tmp_path: Path, cut: int) -> None:
    # blocks used to be written as they were read, so a CAR truncated after its first blocks
    # left them behind
    car = valid_car(LocalStore(tmp_path / "src", durable=False))
    store = LocalStore(tmp_path / "dst", durable=False)
    store.put(b"already here")
    before = store_snapshot(store)
    with pytest.raises(InvalidCAR):
        import_car(store, io.BytesIO(car[: len(car) - cut]))
    assert store_snapshot(store) == before
    assert import_car(store, io.BytesIO(car))  # the whole CAR still imports afterwards
    assert store_snapshot(store) != before


def test_cli_import_of_a_bad_car_changes_nothing(tmp_path: Path) -> None:
    car = valid_car(LocalStore(tmp_path / "src", durable=False))
    bad = tmp_path / "bad.car"
    bad.write_bytes(car[:-10])
    store = LocalStore(tmp_path / "dst")
    before = store_snapshot(store)
    result = CliRunner().invoke(app, ["store", "import", str(bad), "--store", str(store.root)])
    assert result.exit_code == 1 and "truncated" in result.output
    assert store_snapshot(store) == before


def test_dag_bomb_is_refused_quickly(tmp_path: Path) -> None:
    # an empty leaf linked 174 times, that node linked 174 times, ... six levels: the read
    # visited 174^6 blocks yielding nothing (a hang)
    leaf = _dag_pb([])
    blocks, cid = [(_mh(leaf), leaf)], _mh(leaf)
    for _ in range(6):
        node = _dag_pb([cid] * 174)
        cid = _mh(node)
        blocks.append((cid, node))
    store = LocalStore(tmp_path, durable=False)
    (root,) = import_car(
        store, io.BytesIO(_car(carlib.encode_header([unixfs.from_bytes(cid)]), *blocks))
    )
    start = time.monotonic()
    with pytest.raises(ContentMismatch, match="far more blocks"):
        store.get(root)
    assert time.monotonic() - start < 5


def test_deep_dag_is_refused(tmp_path: Path) -> None:
    # a chain of 200 nodes: the recursive reader hit RecursionError at ~1000
    leaf = _dag_pb([])
    blocks, cid = [(_mh(leaf), leaf)], _mh(leaf)
    for _ in range(200):
        node = _dag_pb([cid])
        cid = _mh(node)
        blocks.append((cid, node))
    store = LocalStore(tmp_path, durable=False)
    (root,) = import_car(
        store, io.BytesIO(_car(carlib.encode_header([unixfs.from_bytes(cid)]), *blocks))
    )
    with pytest.raises(ContentMismatch, match="levels deep"):
        store.get(root)


# --- configs, manifests, reports, node state ----------------------------------------------------


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"name = '\xa4'", "not UTF-8"),  # was UnicodeDecodeError
        (b"a = " + deep_nesting(50_000), "nested too deeply|invalid TOML"),  # was RecursionError
        (b"a = " + b"{b = " * 20_000, "nested too deeply|invalid TOML"),
    ],
)
def test_hostile_toml(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "task.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_config_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):  # was IsADirectoryError
        load_config(tmp_path)


@pytest.mark.parametrize("raw", [[], None, "x", {None: 1}, {1: {}, "data": {}}])
def test_config_from_non_tables(raw: object) -> None:
    # a list had no .get, None was not iterable, non-string keys broke the message
    with pytest.raises(ConfigError):
        config_from_dict(raw)  # type: ignore[arg-type]


def _manifest_doc() -> dict:
    return json.loads(TaskManifest(TaskConfig().validate(), SPECS["fixed"]).to_bytes())


@pytest.mark.parametrize("shape", [[-1, 2], [[1], 2], [2**20, 2**20], ["a"], [True]])
def test_manifest_with_bad_shapes(shape: list) -> None:
    # negative dims: numpy ValueError; nested lists: unhashable spec (TypeError); huge: memory
    doc = _manifest_doc()
    doc["model_spec"]["tensors"][0]["shape"] = shape
    with pytest.raises(ConfigError, match="model spec"):
        TaskManifest.from_bytes(json.dumps(doc).encode())


@pytest.mark.parametrize("data", [b"null", b"[]", b"7", deep_nesting(100_000)])
def test_manifest_report_state_from_non_objects(tmp_path: Path, data: bytes) -> None:
    # was AttributeError (null.get / null.pop) or RecursionError
    with pytest.raises(ConfigError):
        TaskManifest.from_bytes(data)
    with pytest.raises(ProtocolError):
        RoundReport.from_bytes(data)
    path = tmp_path / "state.json"
    path.write_bytes(data)
    with pytest.raises(ProtocolError, match="corrupt"):
        NodeState.load(path, account="0xa", task="0xb")


@pytest.mark.parametrize(
    ("key", "value"), [("rule", []), ("round", "1"), ("reward_total", True), ("cumulative", [])]
)
def test_report_fields_of_the_wrong_type(key: str, value: object) -> None:
    doc = json.loads(_report().to_bytes())
    doc[key] = value
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(ProtocolError, match="malformed round report"):
        RoundReport.from_bytes(data)


def test_report_outcome_with_nan_score() -> None:
    doc = json.loads(_report().to_bytes())
    doc["outcomes"][0]["score"] = float("nan")
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(ProtocolError, match="score"):
        RoundReport.from_bytes(data)


@pytest.mark.parametrize(("key", "value"), [("cid", None), ("num_samples", "3"), ("salt", False)])
def test_state_round_fields_of_the_wrong_type(tmp_path: Path, key: str, value: object) -> None:
    state = NodeState(tmp_path / "s.json", "0xa", "0xb", {1: RoundState("0x00", "0x01", 3, "Qm")})
    state.save()
    doc = json.loads(state.path.read_text())  # type: ignore[union-attr]
    doc["rounds"]["1"][key] = value
    state.path.write_text(json.dumps(doc))  # type: ignore[union-attr]
    with pytest.raises(ProtocolError, match=key):
        NodeState.load(tmp_path / "s.json", account="0xa", task="0xb")


def test_state_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="cannot read"):  # was IsADirectoryError
        NodeState.load(tmp_path, account="0xa", task="0xb")


def test_failed_state_save_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    state = NodeState(path, "0xa", "0xb", {1: RoundState("0x00", "0x01", 3, "Qm")})
    state.save()
    old = path.read_bytes()
    state.rounds[2] = RoundState("0x02", "0x03", object(), "Qm")  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # not JSON-serializable, half-way through the dump
        state.save()
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]  # no temp file left


# --- RPC responses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"\x00\xffgarbage", "not JSON"),  # UnicodeDecodeError
        (b'{"jsonrpc":"2.0","id":', "not JSON"),  # JSONDecodeError
        (b"[]", "not an object"),  # AttributeError
        (b"null", "not an object"),  # TypeError
        (b'{"jsonrpc":"2.0","id":12345,"result":"0x1"}', "id 12345"),  # was accepted
        (b'{"jsonrpc":"2.0","id":"ID","error":{"code":-1,"message":"boom"}}', "boom"),
        (b'{"jsonrpc":"2.0","id":"ID","error":"boom"}', "malformed error"),  # BadResponseFormat
        (b'{"jsonrpc":"2.0","id":"ID","result":"zz"}', "hex quantity"),  # ValueError
        (b'{"jsonrpc":"2.0","id":"ID","result":{"a":1}}', "hex quantity"),  # was accepted
        (b'{"jsonrpc":"2.0","id":"ID","result":null}', "hex quantity"),  # was accepted
        (b'{"jsonrpc":"2.0","id":"ID"}', "neither or both"),
        (b'{"id":"ID","result":{"":null}}', "jsonrpc"),  # web3's BadResponseFormat
    ],
)
def test_malformed_chain_id_answers(body: bytes, match: str) -> None:
    with faulty_node() as node:
        node.fault = Fault("eth_chainId", body=body)
        with pytest.raises(LedgerError, match=match):
            Chain.connect(node.url, timeout=0.5, retries=0, num_accounts=1)


def test_malformed_receipt_is_a_ledger_error() -> None:
    receipt = b'{"jsonrpc":"2.0","id":"ID","result":{"status":"0x1","from":[1,{}]}}'
    with faulty_node() as node:
        node.fault = Fault("eth_getTransactionReceipt", body=receipt)
        chain = Chain.connect(node.url, timeout=0.5, retries=0, num_accounts=1)
        with pytest.raises(LedgerError, match="malformed receipt"):  # was TypeError
            chain.wait_for_receipt("0x" + "ab" * 32, timeout=1)


@pytest.mark.parametrize(
    "fault", [Fault("eth_chainId", trickle=True), Fault("eth_chainId", delay=1)]
)
def test_slow_node_times_out(fault: Fault) -> None:
    # a node trickling one byte every 0.1 s kept requests' per-read timeout from firing
    with faulty_node() as node:
        node.fault = fault
        start = time.monotonic()
        with pytest.raises(RPCUnavailable, match="unreachable after 2 attempts"):
            Chain.connect(node.url, timeout=0.3, retries=1, num_accounts=1)
        assert time.monotonic() - start < 2 * 0.3 + 0.5


def test_huge_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "MAX_RESPONSE_BYTES", 1 << 20)
    body = b'{"jsonrpc":"2.0","id":"ID","result":"0x' + b"f" * (2 << 20) + b'"}'
    with faulty_node() as node:
        node.fault = Fault("eth_chainId", body=body)
        with pytest.raises(LedgerError, match="over 1048576 bytes"):
            Chain.connect(node.url, timeout=2, retries=0, num_accounts=1)


# --- CLI arguments (real processes) -------------------------------------------------------------

FLCHAIN = [sys.executable, "-m", "flchain_node.cli.app"]


# Two real processes (each takes seconds to import torch); CliRunner covers the rest.
@pytest.mark.parametrize("args", [["store", "cat", "b"], ["store", "import", "garbage"]])
def test_cli_process_refuses_bad_operands(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "garbage").write_bytes(b"\xff" * 10 + b"\x01")  # an endless varint
    env = {**os.environ, "FLCHAIN_STORE": str(tmp_path / "store")}
    proc = subprocess.run(
        FLCHAIN + args, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_devchain_bad_port(port: str) -> None:
    # only ports no one can bind, so a fixed devchain refuses them rather than serving forever
    result = CliRunner().invoke(app, ["devchain", "--port", port])
    assert result.exit_code in (1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# --- JSON nesting bombs (a segfault once py-evm raised the recursion limit) ----------------------


def test_deep_json_cannot_crash_the_process(tmp_path: Path) -> None:
    # importing the ledger (py-evm) sets the recursion limit to 100,000; json.loads of 100,000
    # nested brackets then overflowed the C stack: the whole process died with SIGSEGV
    code = (
        "import sys, flchain.ledger.chain\n"
        "assert sys.getrecursionlimit() >= 100_000\n"
        "from flchain.protocol.report import RoundReport\n"
        "from flchain.errors import ProtocolError\n"
        "try:\n"
        "    RoundReport.from_bytes(b'[' * 200_000)\n"
        "except ProtocolError as exc:\n"
        "    print('refused:', exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "nested" in proc.stdout


def test_deeply_nested_update_header_is_malformed() -> None:
    # an update as long as the spec's encoding may carry a header of almost all its bytes:
    # 400,000 '[' reached json.loads (a segfault with py-evm's recursion limit)
    from flchain.learning.codec import MalformedEncoding, decode_update
    from flchain.learning.models import ModelSpec, TensorSpec

    spec = ModelSpec("big", (TensorSpec("w", (100_000,)),))
    n = 400_000
    data = n.to_bytes(8, "little") + b"[" * n
    with pytest.raises(MalformedEncoding, match="nested"):
        decode_update(data, spec)


@pytest.mark.parametrize(
    "raw",
    [
        {"training": {"mu": float("nan")}},  # `mu < 0` is False for NaN: was accepted
        {"training": {"lr": float("inf")}},  # `lr > 0`: was accepted
        {"data": {"alpha": float("inf")}},
        {"aggregation": {"rule": "norm_bounded_mean", "params": {"bound": float("nan")}}},
        {"aggregation": {"rule": "krum", "params": {"f": "1"}}},
        {"ledger": {"round_budget": 2**256}},  # does not fit the contract's uint256
    ],
)
def test_non_finite_or_oversized_config_values(raw: dict) -> None:
    with pytest.raises(ConfigError):
        config_from_dict(raw)


def test_nan_in_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "task.toml"
    path.write_text("[training]\nmu = nan\n")
    with pytest.raises(ConfigError, match=r"training\.mu must be a finite number"):
        load_config(path)


def test_cli_export_failure_keeps_an_existing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `store export BADCID FILE` unlinked FILE; with a directory as FILE it crashed
    keep = tmp_path / "important.txt"
    keep.write_text("precious")
    runner = CliRunner()
    store = ["--store", str(tmp_path / "s")]
    result = runner.invoke(app, ["store", "export", "not-a-cid", str(keep), *store])
    assert result.exit_code == 1 and "not a CID" in result.output
    assert keep.read_text() == "precious"
    missing = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"  # valid, not in the store
    result = runner.invoke(app, ["store", "export", missing, str(keep), *store])
    assert result.exit_code == 1 and keep.read_text() == "precious"
    monkeypatch.chdir(tmp_path)
    hello = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    assert runner.invoke(app, ["store", "add", "-", *store], input=b"hello world\n").exit_code == 0
    for out in (str(tmp_path), ""):  # a directory; "" is Path(".") (with_name crashed)
        result = runner.invoke(app, ["store", "export", hello, out, *store])
        assert result.exit_code == 1 and result.output.startswith("error: "), result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["important.txt", "s"]


def test_megabyte_rpc_string_is_refused_fast() -> None:
    # the JSON nesting check used a backtracking-heavy pattern: 5 MB took seconds per answer
    body = b'{"jsonrpc":"2.0","id":"ID","result":"0x' + b"f" * 5_000_000 + b'"}'
    with faulty_node() as node:
        node.fault = Fault("eth_chainId", body=body)
        start = time.monotonic()
        with pytest.raises(LedgerError, match="hex quantity"):
            Chain.connect(node.url, timeout=5, retries=0, num_accounts=1)
        assert time.monotonic() - start < 3


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


@settings(settings.get_profile("fuzz"), max_examples=200)
@given(json_values)
def test_safejson_measures_nesting_like_the_parser(value: object) -> None:
    # brackets inside strings (escaped quotes included) must not count
    text = json.dumps(value).encode()
    assert safejson.nesting_depth(text) == _depth(value)
    assert json.dumps(safejson.loads(text)) == json.dumps(value)
