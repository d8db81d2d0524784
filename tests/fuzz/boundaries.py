"""Every FLChain boundary that takes outside data, as fuzzable :class:`~fuzzlib.Boundary`s.

:func:`all_boundaries` builds them over a scratch directory; the pytest suite and
``scripts/fuzz_report.py`` run the same list, with different example counts.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import math
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
import tomli_w
from flchain_node.cli.app import app as cli_app
from flchain_node.state import NodeState, RoundState
from fuzzlib import Boundary, InvariantBroken, deep_nesting, json_values, mutated
from hypothesis import strategies as st
from rpcserver import Fault, FaultyNode, faults, faulty_node
from typer.testing import CliRunner

from flchain.config import TaskConfig, config_from_dict, load_config
from flchain.errors import FLChainError, UpdateFormatError
from flchain.learning import codec
from flchain.learning.models import CodecParams, ModelSpec, TensorSpec
from flchain.ledger.chain import Chain
from flchain.protocol.manifest import TaskManifest
from flchain.protocol.report import RoundReport, UpdateOutcome
from flchain.storage import LocalStore, export_car, import_car, parse_cid, unixfs
from flchain.storage import car as carlib

TENSORS = (TensorSpec("w", (3, 4)), TensorSpec("b", (3,)), TensorSpec("a.weight", (2, 2)))
SPECS = {
    "fixed": ModelSpec("toy", TENSORS, CodecParams(encoding="fixed", frac_bits=16, bound=8.0)),
    "float32": ModelSpec("toy", TENSORS, CodecParams(encoding="float32", frac_bits=16, bound=8.0)),
}


# --- JSON documents: mutate a valid one at a random path ------------------------------------


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def json_mutated(draw: st.DrawFn, doc: Any, values: st.SearchStrategy[Any] = json_values) -> Any:
    """``doc`` with a few values replaced, keys deleted or unknown keys added."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            return draw(values)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "replace":
            parent[path[-1]] = draw(values)
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(values)
        else:
            parent.append(draw(values))
    return doc


def json_documents(valid: Any) -> st.SearchStrategy[bytes]:
    """Bytes of ``valid`` mutated structurally or byte-wise, random bytes, and nesting bombs."""
    text = json.dumps(valid, sort_keys=True, separators=(",", ":")).encode()
    return st.one_of(
        json_mutated(valid).map(lambda d: json.dumps(d, sort_keys=True).encode()),
        json_mutated(valid).map(
            lambda d: json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
        ),
        mutated(text),
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.sampled_from([deep_nesting(100_000), deep_nesting(100_000, b'{"a":', b"}")]),
    )


# --- update / model decoding -----------------------------------------------------------------


def _valid_update(spec: ModelSpec) -> st.SearchStrategy[bytes]:
    n = spec.num_params
    floats = st.floats(-spec.codec.bound, spec.codec.bound, allow_nan=False, width=32)

    def encode(values: list[float]) -> bytes:
        flat = np.array(values, dtype=np.float32)
        tensors, i = {}, 0
        for t in spec.tensors:
            tensors[t.name] = flat[i : i + t.numel].reshape(t.shape)
            i += t.numel
        return codec.encode_update(tensors, spec)

    return st.lists(floats, min_size=n, max_size=n).map(encode)


@st.composite
def _crafted_header(draw: st.DrawFn, spec: ModelSpec, kind: str) -> bytes:
    """A safetensors-shaped file whose header entries take odd values."""
    names = [t.name for t in spec.tensors]
    keys = st.sampled_from(names) | st.text(max_size=8)
    entry = st.fixed_dictionaries(
        {},
        optional={
            "dtype": st.sampled_from(["F32", "I32", "F64", "U8", "BOOL"]) | json_values,
            "shape": st.lists(st.integers(-1, 5), max_size=3) | json_values,
            "data_offsets": st.tuples(st.integers(-10, 100), st.integers(-10, 100)) | json_values,
        },
    )
    header: dict[str, Any] = draw(st.dictionaries(keys, entry | json_values, max_size=5))
    if draw(st.booleans()):
        header["__metadata__"] = draw(
            st.just(codec._metadata(spec, kind))  # type: ignore[arg-type]
            | st.dictionaries(st.text(max_size=8), json_values, max_size=2)
        )
    raw = json.dumps(header).encode()
    raw += b" " * draw(st.integers(0, 8))
    body = draw(st.binary(max_size=4 * spec.num_params + 16))
    return len(raw).to_bytes(8, "little") + raw + body


@st.composite
def _foreign_safetensors(draw: st.DrawFn, spec: ModelSpec, kind: str) -> bytes:
    """Real safetensors files with wrong dtypes, shapes, extra or missing tensors."""
    tensors = {}
    for t in spec.tensors:
        if draw(st.integers(0, 9)) == 0:
            continue
        shape = (
            t.shape if draw(st.booleans()) else tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
        )
        dtype = draw(st.sampled_from(["float32", "int32", "float64", "float16", "int8", "uint8"]))
        tensors[t.name] = np.zeros(shape, dtype=dtype)
    if draw(st.integers(0, 4)) == 0:
        tensors[draw(st.text(min_size=1, max_size=6))] = np.zeros((2,), np.float32)
    metadata = codec._metadata(spec, kind) if draw(st.booleans()) else None  # type: ignore[arg-type]
    return safetensors.numpy.save(tensors, metadata=metadata)


@st.composite
def _nonfinite(draw: st.DrawFn, valid: bytes, spec: ModelSpec) -> bytes:
    """A canonical encoding with NaN/±Inf (or huge) float32 bit patterns in its body."""
    data = bytearray(valid)
    body = len(data) - 4 * spec.num_params
    special = [np.nan, np.inf, -np.inf, 3.0e38, -0.0, 1e-45]
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, spec.num_params - 1))
        value = np.float32(draw(st.sampled_from(special))).tobytes()
        data[body + 4 * i : body + 4 * i + 4] = value
    return bytes(data)


def update_bytes(spec: ModelSpec, kind: str) -> st.SearchStrategy[bytes]:
    """Hostile update (or model) bytes for ``spec``."""
    valid = _valid_update(spec)
    if kind == "model":
        valid = valid.map(
            lambda b: codec.encode_model(codec.decode_update(b, spec).to_tensors(), spec)
        )
    huge_prefix = st.integers(0, 2**64 - 1).map(lambda n: n.to_bytes(8, "little") + b"{}")
    return st.one_of(
        valid,
        st.binary(max_size=300),
        valid.flatmap(mutated),
        valid.flatmap(lambda b: _nonfinite(b, spec)),
        _crafted_header(spec, kind),
        _foreign_safetensors(spec, kind),
        huge_prefix,
        st.just(len(b"[" * 500).to_bytes(8, "little") + b"[" * 500),
    )


def _decode_update(spec: ModelSpec) -> Callable[[bytes], object]:
    def feed(data: bytes) -> None:
        update = codec.decode_update(data, spec)
        if codec.encode_update(update, spec) != data:  # one digest <-> one update
            raise InvariantBroken("an accepted update does not re-encode to its bytes")

    return feed


def _decode_model(spec: ModelSpec) -> Callable[[bytes], object]:
    def feed(data: bytes) -> None:
        state = codec.decode_model(data, spec)
        if codec.encode_model(state, spec) != data:
            raise InvariantBroken("an accepted model does not re-encode to its bytes")

    return feed


# --- CIDs and CAR files ------------------------------------------------------------------------

VALID_CIDS = [
    "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
    "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby",
    "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
]


def cid_texts() -> st.SearchStrategy[str]:
    mutated_cid = st.sampled_from(VALID_CIDS).flatmap(
        lambda c: mutated(c.encode()).map(lambda b: b.decode("latin-1"))
    )
    prefixes = st.sampled_from([*"bBfFkKmMuUzZ0Q19", "Qm", "baf", "\x00"])
    return st.one_of(
        st.text(max_size=80),
        mutated_cid,
        st.tuples(prefixes, st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567=", max_size=70)).map(
            "".join
        ),
        st.sampled_from(["", " ", "\n", "b", "Qm", "z", "f01", "bafy" * 200]),
    )


def _cid_feed(store: LocalStore) -> Callable[[str], object]:
    def feed(text: str) -> None:
        parse_cid(text)
        store.has(text)
        store.unpin(text)
        store.pin(text)
        store.get(text)

    return feed


def store_snapshot(store: LocalStore) -> tuple[frozenset[str], frozenset[str]]:
    """The names of every block and pin file: what a failed import must not change."""
    blocks = frozenset(p.name for p in (store.root / "blocks").rglob("*") if p.is_file())
    pins = frozenset(p.name for p in (store.root / "pins").iterdir())
    return blocks, pins


def _car_section(cid: bytes, block: bytes) -> bytes:
    from multiformats import varint

    return varint.encode(len(cid) + len(block)) + cid + block


def _dag_pb(links: list[bytes], data: bytes | None) -> bytes:
    out = b"".join(unixfs._bytes_field(2, unixfs._bytes_field(1, c)) for c in links)
    return out + (unixfs._bytes_field(1, data) if data is not None else b"")


@st.composite
def _crafted_car(draw: st.DrawFn) -> bytes:
    """A CAR whose blocks hash correctly but hold odd dag-pb/UnixFS content and links."""
    import hashlib

    from multiformats import varint

    cids: list[bytes] = []
    sections = b""
    for _ in range(draw(st.integers(0, 4))):
        links = draw(st.lists(st.sampled_from(cids), max_size=3)) if cids else []
        if draw(st.booleans()):
            links.append(b"\x12\x20" + draw(st.binary(min_size=32, max_size=32)))
        kind = draw(st.sampled_from([0, 1, 2, 3, 5, 99]))
        data = unixfs._uint_field(1, kind) + unixfs._bytes_field(2, draw(st.binary(max_size=8)))
        if draw(st.booleans()):
            data += unixfs._uint_field(3, draw(st.integers(0, 2**40)))
        block = draw(st.just(_dag_pb(links, data)) | st.binary(max_size=40))
        raw = draw(st.booleans())
        mh = b"\x12\x20" + hashlib.sha256(block).digest()
        cid = b"\x01\x55" + mh if raw else mh
        cids.append(cid)
        sections += _car_section(cid, block)
    roots = draw(st.lists(st.sampled_from(cids), min_size=1, max_size=2)) if cids else []
    if draw(st.integers(0, 3)) == 0:
        roots.append(b"\x01\x71\x12\x20" + b"\x01" * 32)  # a dag-cbor root: unsupported
    header = carlib.encode_header([unixfs.from_bytes(r) for r in roots])
    return varint.encode(len(header)) + header + sections


def _cbor_header_car(item: bytes) -> bytes:
    from multiformats import varint

    return varint.encode(len(item)) + item


def car_bytes(valid: bytes) -> st.SearchStrategy[bytes]:
    bombs = [
        _cbor_header_car(b"\x81" * 60_000 + b"\x80"),  # arrays nested 60k deep
        _cbor_header_car(b"\xa1\x80\x00"),  # a map keyed by an array
        _cbor_header_car(b"\xa1\xa0\x00"),  # a map keyed by a map
        _cbor_header_car(b"\x7b" + b"\xff" * 8),  # a text string of 2^64-1 bytes
        b"\xff" * 10 + b"\x01",
    ]
    return st.one_of(
        mutated(valid),
        st.binary(max_size=300),
        _crafted_car(),
        st.binary(max_size=120).map(_cbor_header_car),
        st.sampled_from(bombs),
    )


def _car_feed(store: LocalStore) -> Callable[[bytes], object]:
    def feed(data: bytes) -> None:
        before = store_snapshot(store)
        try:
            roots = import_car(store, io.BytesIO(data))
        except BaseException as exc:
            if store_snapshot(store) != before:
                raise InvariantBroken(
                    "a failed CAR import changed the store's blocks/pins"
                ) from exc
            raise
        pinned = set(store.pins())
        for root in roots:
            if root not in pinned:
                raise InvariantBroken(f"imported root {root} is not pinned")
            store.get(root)  # a pinned root must read back or fail with a store error

    return feed


# --- configs, manifests, reports, node state ---------------------------------------------


def toml_texts() -> st.SearchStrategy[bytes]:
    valid = TaskConfig().to_dict()
    toml_values = st.recursive(
        st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=12),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
        max_leaves=8,
    )

    def dumps(doc: Any) -> bytes:
        try:
            return tomli_w.dumps(doc).encode() if isinstance(doc, dict) else str(doc).encode()
        except (TypeError, ValueError):
            return repr(doc).encode()

    text = tomli_w.dumps(valid).encode()
    return st.one_of(
        json_mutated(valid, toml_values).map(dumps),
        _hostile_field(valid).map(dumps),
        mutated(text),
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
        st.sampled_from([b"a = " + deep_nesting(50_000), b"a = " + b"{b = " * 20_000]),
    )


def _check_config(config: TaskConfig) -> None:
    """An accepted config holds only finite numbers of the declared types."""
    for section in (config.data, config.training, config.ledger):
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if type(value) is not type(getattr(type(section)(), f.name)):
                raise InvariantBroken(f"{f.name} = {value!r} has the wrong type")
            if isinstance(value, float) and not math.isfinite(value):
                raise InvariantBroken(f"{f.name} = {value!r} accepted")
    for key, value in config.aggregation.params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InvariantBroken(f"aggregation.params.{key} = {value!r} accepted")


def _toml_feed(path: Path) -> Callable[[bytes], object]:
    def feed(data: bytes) -> None:
        path.write_bytes(data)
        _check_config(load_config(path))

    return feed


def _dict_feed(raw: Any) -> None:
    _check_config(config_from_dict(raw))


#: Values that break naive range checks: NaN, infinities, extremes, wrong types.
HOSTILE_SCALARS = st.sampled_from(
    [math.nan, math.inf, -math.inf, -0.0, 0, -1, 2**256, 2**63, 1e308, True, "", "1", None, [], {}]
)


@st.composite
def _hostile_field(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with one field of one section (or an aggregation parameter) made hostile."""
    doc = copy.deepcopy(doc)
    section = draw(st.sampled_from(["data", "training", "ledger", "aggregation"]))
    if section == "aggregation":
        key = draw(st.sampled_from(["beta", "f", "bound", "m"]))
        doc["aggregation"]["params"] = {key: draw(HOSTILE_SCALARS | st.floats())}
    else:
        key = draw(st.sampled_from(sorted(doc[section])))
        doc[section][key] = draw(HOSTILE_SCALARS | st.floats() | st.integers())
    return doc


def config_dicts() -> st.SearchStrategy[Any]:
    valid = TaskConfig().to_dict()
    return json_mutated(valid) | _hostile_field(valid)


def _manifest() -> TaskManifest:
    return TaskManifest(TaskConfig().validate(), SPECS["fixed"])


def _report() -> RoundReport:
    outcome = UpdateOutcome("0x" + "11" * 20, VALID_CIDS[0], "0x" + "22" * 32, 10, True, 5, 7)
    return RoundReport(
        "0x" + "33" * 20,
        1,
        "median",
        VALID_CIDS[0],
        VALID_CIDS[1],
        "0x" + "44" * 32,
        (outcome,),
        7,
        {"0x" + "11" * 20: 7},
    )


def _manifest_feed(data: bytes) -> None:
    manifest = TaskManifest.from_bytes(data)
    _check_config(manifest.config)
    manifest.aggregator()
    # a node decodes updates with the manifest's spec: its layout must build
    with contextlib.suppress(UpdateFormatError):
        codec.decode_update(b"", manifest.spec)


def _check_types(obj: Any) -> None:
    """Every field of a dataclass holds its annotated type (str, int, bool; bool is no int)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        expected = {"str": str, "int": int, "bool": bool}.get(str(f.type))
        if expected is not None and (
            not isinstance(value, expected) or (expected is int and isinstance(value, bool))
        ):
            raise InvariantBroken(f"{type(obj).__name__}.{f.name} = {value!r:.40} accepted")


def _report_feed(data: bytes) -> None:
    report = RoundReport.from_bytes(data)
    _check_types(report)
    for outcome in report.outcomes:
        _check_types(outcome)
    if RoundReport.from_bytes(report.to_bytes()) != report:
        raise InvariantBroken("an accepted report does not round-trip")


def _state_doc() -> dict[str, Any]:
    return {
        "account": "0xabc",
        "task": "0xdef",
        "rounds": {
            "1": {
                "digest": "0x00",
                "salt": "0x01",
                "num_samples": 3,
                "cid": "Qm",
                "committed": True,
                "revealed": False,
                "attested": False,
                "error": "",
            }
        },
    }


def _state_feed(path: Path) -> Callable[[bytes], object]:
    def feed(data: bytes) -> None:
        path.write_bytes(data)
        state = NodeState.load(path, account="0xabc", task="0xdef")
        for round_state in state.rounds.values():
            _check_types(round_state)
        state.save()  # whatever loaded must save and load back the same
        if NodeState.load(path, account="0xabc", task="0xdef") != state:
            raise InvariantBroken("a loaded state does not round-trip through save")

    return feed


# --- RPC responses ---------------------------------------------------------------------------

#: The client's per-request timeout and retries in the RPC fuzz: a call must end within
#: (retries + 1) * timeout plus back-off, whatever the node does.
RPC_TIMEOUT, RPC_RETRIES = 0.3, 1


def _rpc_feed(node: FaultyNode) -> Callable[[Fault], object]:
    def feed(fault: Fault) -> None:
        node.fault = fault
        chain = Chain.connect(node.url, timeout=RPC_TIMEOUT, retries=RPC_RETRIES, num_accounts=1)
        if not isinstance(chain.block_number, int):
            raise InvariantBroken(f"block_number is {chain.block_number!r}")
        if not isinstance(chain.balance(chain.accounts[0].address), int):
            raise InvariantBroken("balance is not an int")
        receipt = chain.wait_for_receipt("0x" + "ab" * 32, timeout=0.5)
        if not isinstance(receipt["status"], int):
            raise InvariantBroken(f"receipt status is {receipt['status']!r}")

    return feed


# --- CLI arguments ------------------------------------------------------------------------------


class CliRefusal(FLChainError):
    """The command refused its arguments with a message and exit status 1 or 2 (counts as
    rejected, like an FLChainError that ``flchain``'s main() prints)."""


def _not_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return True
    return False


def cli_args(workdir: Path) -> st.SearchStrategy[list[str]]:
    """Argument lists for ``flchain``: store commands with odd operands, and invalid options
    to the long-running commands (so they are refused before they start)."""
    garbage = workdir / "garbage.bin"
    garbage.write_bytes(b"\x00\xffnot a CAR")
    token = st.text(max_size=20).filter(lambda t: "\x00" not in t)
    operand = st.one_of(
        token,
        st.sampled_from([*VALID_CIDS, str(garbage), str(workdir), "-", "/nonexistent/x"]),
        st.just(str(workdir / "out.car")),
    )
    store_opts = st.lists(
        st.sampled_from(
            [
                ["--store", str(workdir / "cli-store")],
                ["--store", str(garbage)],
                ["--cid-version", "7"],
                ["--cid-version", "x"],
                ["--ipfs-api", "/ip4/127.0.0.1/tcp/1"],
                ["--ipfs-api", "not a multiaddr"],
                ["--bogus"],
            ]
        ),
        max_size=2,
    ).map(lambda opts: [a for o in opts for a in o])
    store_cmd = st.tuples(
        st.sampled_from(["add", "cat", "export", "import", "bogus"]),
        st.lists(operand, max_size=3),
        store_opts,
    ).map(lambda t: ["store", t[0], *t[1], *t[2]])
    bad_int = token.filter(_not_int)
    demo = st.tuples(
        st.sampled_from(["--participants", "--rounds", "--attackers", "--seed", "--threads"]),
        bad_int,
        st.lists(st.sampled_from(["--rule", "--attack", "--dataset", "--model"]), max_size=2),
        token,
    ).map(lambda t: ["demo", t[0], t[1], *(a for o in t[2] for a in (o, t[3]))])
    return st.one_of(store_cmd, demo, st.lists(token, max_size=4))


def devchain_args() -> st.SearchStrategy[list[str]]:
    """``flchain devchain`` with a port that cannot be bound (so it never starts serving)."""
    port = st.integers(-(10**6), -1) | st.integers(65536, 10**12)
    host = st.text(min_size=1, max_size=20).filter(lambda t: "\x00" not in t)
    return st.tuples(port, host).map(lambda t: ["devchain", "--port", str(t[0]), "--host", t[1]])


def _cli_feed(workdir: Path) -> Callable[[list[str]], object]:
    runner = CliRunner(env={"FLCHAIN_STORE": str(workdir / "cli-store")})

    def feed(args: list[str]) -> None:
        result = runner.invoke(cli_app, args, input=b"")
        exc = result.exception
        if exc is not None and not isinstance(exc, SystemExit):
            raise exc  # FLChainError: `flchain`'s main() prints it and exits 1
        if result.exit_code not in (0, 1, 2):
            raise InvariantBroken(f"exit status {result.exit_code}")
        if result.exit_code and not result.output.strip():
            raise InvariantBroken(f"exit status {result.exit_code} without a message")
        if result.exit_code:
            raise CliRefusal(result.output.strip().splitlines()[-1])

    return feed


# --- the list ---------------------------------------------------------------------------------


def valid_car(store: LocalStore) -> bytes:
    """A real CAR: a three-block file (two 256 KiB leaves and a root) exported from ``store``."""
    data = bytes(range(256)) * 1100  # 281,600 bytes: two chunks
    cid = store.put(data)
    out = io.BytesIO()
    export_car(store, cid, out)
    return out.getvalue()


def all_boundaries(workdir: Path, stack: ExitStack) -> list[Boundary]:
    """Every boundary, with its state (stores, files) under ``workdir``; servers and stores
    close when ``stack`` does."""
    workdir.mkdir(parents=True, exist_ok=True)
    store = stack.enter_context(LocalStore(workdir / "store", durable=False))
    store.put(b"hello world\n")
    car_store = stack.enter_context(LocalStore(workdir / "car-store", durable=False))
    car = valid_car(stack.enter_context(LocalStore(workdir / "car-source", durable=False)))
    node = stack.enter_context(faulty_node())
    out = [
        Boundary(f"codec.decode_update[{name}]", update_bytes(spec, "update"), _decode_update(spec))
        for name, spec in SPECS.items()
    ]
    out += [
        Boundary(
            "codec.decode_model",
            update_bytes(SPECS["fixed"], "model"),
            _decode_model(SPECS["fixed"]),
        ),
        Boundary("storage.cid", cid_texts(), _cid_feed(store)),
        Boundary("storage.import_car", car_bytes(car), _car_feed(car_store)),
        Boundary("config.load_config", toml_texts(), _toml_feed(workdir / "task.toml")),
        Boundary("config.config_from_dict", config_dicts(), _dict_feed),
        Boundary(
            "protocol.manifest", json_documents(json.loads(_manifest().to_bytes())), _manifest_feed
        ),
        Boundary("protocol.report", json_documents(json.loads(_report().to_bytes())), _report_feed),
        Boundary(
            "node.state_load", json_documents(_state_doc()), _state_feed(workdir / "state.json")
        ),
        Boundary("ledger.rpc_response", faults(), _rpc_feed(node), timeout=8.0),
        Boundary("cli.args", cli_args(workdir), _cli_feed(workdir), timeout=20.0),
        Boundary("cli.devchain_args", devchain_args(), _cli_feed(workdir), timeout=20.0),
    ]
    return out


__all__ = ["SPECS", "RoundState", "all_boundaries", "store_snapshot", "valid_car"]
