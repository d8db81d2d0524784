"""Compile FLChain's Solidity contracts and regenerate the committed artifacts.

Runs the pinned solcjs (``node_modules/solc``) through ``scripts/solc_compile.js`` on a
standard-JSON input, then writes, deterministically:

- ``flchain/ledger/artifacts/<Contract>.json`` for every contract and interface with an ABI
  under ``contracts/`` (abi, bytecode, deployedBytecode, compiler version and settings, and a
  sha-256 over every source file the contract was built from, OpenZeppelin's included);
- ``flchain/ledger/contract_errors.py``: one :class:`flchain.errors.ContractRevert` subclass per
  distinct custom error in those ABIs, documented from the error's NatSpec;
- ``flchain/ledger/contract_types.py``: the ABI mirror, one enum per Solidity enum and one frozen
  dataclass per struct and per event in those ABIs (bases and extra behaviour in
  ``flchain/ledger/abi.py``), documented from the NatSpec;
- ``tests/ledger/fixtures/merkle/<Contract>.json`` for the test-only Merkle harness.
- ``tests/attacks/fixtures/<Contract>.json`` for the test-only attack contracts.

Nothing under ``contracts/test/`` ships: forge tests (``*.t.sol``) are never compiled here, and
only ``contracts/test/attacks/`` feeds the pytest attack fixtures.

Usage::

    python scripts/compile_contracts.py          # regenerate
    python scripts/compile_contracts.py --check  # exit 1 if anything committed is stale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import keccak

from flchain.ledger.abi import field_name

ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / "scripts" / "solc_compile.js"
ERRORS_MODULE = "flchain/ledger/contract_errors.py"
TYPES_MODULE = "flchain/ledger/contract_types.py"
#: Source directory -> artifact directory; only the first feeds ``contract_errors.py``.
OUTPUTS = {
    "contracts": "flchain/ledger/artifacts",
    "tests/ledger/fixtures/merkle": "tests/ledger/fixtures/merkle",
    "contracts/test/attacks": "tests/attacks/fixtures",
}
#: Test-only Solidity inside ``contracts/``: never part of the shipped artifacts.
TEST_SOURCES = "contracts/test/"
#: Prague is the newest EVM both py-evm 0.12 (eth-tester's default VM) and anvil 1.7 run.
SETTINGS: dict[str, Any] = {
    "evmVersion": "prague",
    "optimizer": {"enabled": True, "runs": 200},
    "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"],
}
OUTPUT_SELECTION = ["abi", "devdoc", "userdoc", "metadata", "evm.bytecode.object"]
OUTPUT_SELECTION.append("evm.deployedBytecode.object")

#: Solidity type -> Python class name where they differ: ``flchain.config.TaskConfig`` is the
#: TOML section, so the on-chain struct is ``TaskParameters`` in Python.
RENAMES = {"TaskConfig": "TaskParameters"}
#: Generated structs that derive from a hand-written base in ``flchain/ledger/abi.py`` (which
#: derives from ``Struct``) for behaviour beyond their fields.
METHODS = {
    "TaskParameters": "TaskParametersMethods",
    "Result": "ResultMethods",
    "Commitment": "CommitmentMethods",
}
#: (Solidity struct, field) -> Python type, for a field whose meaning the ABI does not carry.
FIELD_TYPES = {("Commitment", "flags"): "CommitmentFlag"}
#: Names from ``flchain/ledger/abi.py`` that generated fields may use.
ABI_TYPES = ("CommitmentFlag",)
#: Fields every event has already (``abi.Event``): an event argument may not take them.
EVENT_RESERVED = ("block_number", "transaction_hash", "name")


class CompileError(Exception):
    """solc reported errors, or the toolchain is missing."""


@dataclass(frozen=True)
class Compiled:
    """One contract from solc's output."""

    source: str
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    devdoc: dict[str, Any]
    userdoc: dict[str, Any]
    source_files: tuple[str, ...]


@dataclass(frozen=True)
class Definition:
    """A struct, enum or event declaration from solc's AST (for the parts the ABI leaves out:
    enum member names, the declaring contract and struct NatSpec)."""

    contract: str
    node: dict[str, Any]

    @property
    def doc(self) -> str:
        documentation = self.node.get("documentation") or {}
        return str(documentation.get("text", ""))


def run_solc() -> tuple[str, list[Compiled], dict[str, Definition]]:
    """Compile every ``.sol`` file under the source directories; return (version, contracts,
    definitions), the last keyed by canonical name (``ITrainingTask.Phase``) for structs and
    enums and by event selector (hex) for events."""
    sources = {
        path.relative_to(ROOT).as_posix(): {"content": path.read_text()}
        for directory in OUTPUTS
        for path in sorted((ROOT / directory).rglob("*.sol"))
        if _compiled_here(path.relative_to(ROOT).as_posix())
    }
    if not (ROOT / "node_modules" / "solc").is_dir():
        raise CompileError("node_modules/solc is missing: run `npm ci` in the project root")
    selection = {"*": {"*": OUTPUT_SELECTION, "": ["ast"]}}
    settings = {**SETTINGS, "outputSelection": selection}
    request = {"language": "Solidity", "sources": sources, "settings": settings}
    with tempfile.TemporaryDirectory() as tmp:
        request_path, response_path = Path(tmp, "in.json"), Path(tmp, "out.json")
        request_path.write_text(json.dumps(request))
        try:
            subprocess.run(
                ["node", str(HELPER), str(request_path), str(response_path), str(ROOT)],
                check=True,
                capture_output=True,
                text=True,
            )
        except FileNotFoundError as exc:
            raise CompileError("node is not installed (Node 20 runs the pinned solcjs)") from exc
        except subprocess.CalledProcessError as exc:
            raise CompileError(f"solcjs failed:\n{exc.stderr}") from exc
        response = json.loads(response_path.read_text())
    output = response["output"]
    problems = output.get("errors", [])
    for problem in problems:
        # Warnings inside OpenZeppelin (e.g. its transient-storage notice) are not ours to fix.
        in_dependency = problem.get("sourceLocation", {}).get("file", "").startswith("node_")
        if problem["severity"] != "error" and not in_dependency:
            print(problem["formattedMessage"], file=sys.stderr)
    fatal = [p["formattedMessage"] for p in problems if p["severity"] == "error"]
    if fatal:
        raise CompileError("solc reported errors:\n" + "\n".join(fatal))

    contracts = []
    for source, by_name in sorted(output["contracts"].items()):
        for name, out in sorted(by_name.items()):
            metadata = json.loads(out["metadata"])
            contracts.append(
                Compiled(
                    source=source,
                    name=name,
                    abi=out["abi"],
                    bytecode=out["evm"]["bytecode"]["object"],
                    deployed_bytecode=out["evm"]["deployedBytecode"]["object"],
                    devdoc=out["devdoc"],
                    userdoc=out["userdoc"],
                    source_files=tuple(sorted(metadata["sources"])),
                )
            )
    definitions: dict[str, Definition] = {}
    for source in output["sources"].values():
        _collect_definitions(source["ast"], "", definitions)
    return response["version"], contracts, definitions


def _collect_definitions(node: Any, contract: str, found: dict[str, Definition]) -> None:
    if isinstance(node, list):
        for child in node:
            _collect_definitions(child, contract, found)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("nodeType")
    if kind == "ContractDefinition":
        contract = node["name"]
    elif kind in ("StructDefinition", "EnumDefinition"):
        found[node["canonicalName"]] = Definition(contract, node)
    elif kind == "EventDefinition":
        found[node["eventSelector"]] = Definition(contract, node)
    for child in node.values():
        _collect_definitions(child, contract, found)


def source_hash(files: tuple[str, ...]) -> str:
    """sha-256 over the (sorted) path and content of every source file."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes() + b"\0")
    return digest.hexdigest()


def artifact_text(contract: Compiled, version: str) -> str:
    """The JSON artifact of one contract, formatted deterministically."""
    artifact = {
        "contractName": contract.name,
        "sourceName": contract.source,
        "abi": contract.abi,
        "bytecode": "0x" + contract.bytecode,
        "deployedBytecode": "0x" + contract.deployed_bytecode,
        "compiler": {"version": version, "settings": SETTINGS},
        "sourceHash": source_hash(contract.source_files),
    }
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def canonical_type(param: dict[str, Any]) -> str:
    """The ABI type of a parameter as it appears in a signature (tuples expanded)."""
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def error_doc(contract: Compiled, signature: str) -> str:
    """The NatSpec of an error as a docstring body: @notice, @dev, then one line per @param."""
    notice = contract.userdoc.get("errors", {}).get(signature, [{}])[0].get("notice", "")
    dev = contract.devdoc.get("errors", {}).get(signature, [{}])[0]
    paragraphs = [_wrap(text) for text in (notice, dev.get("details", "")) if text.strip()]
    params = dev.get("params", {})
    if params:
        lines = [_wrap(f"{name}: {text}", indent="        ") for name, text in params.items()]
        paragraphs.append("    Args:\n" + "\n".join(lines))
    return "\n\n".join(paragraphs).replace('"""', "'''")


def _wrap(text: str, indent: str = "    ") -> str:
    return textwrap.fill(
        " ".join(text.split()), width=96, initial_indent=indent, subsequent_indent=indent
    )


def errors_module_text(contracts: list[Compiled]) -> str:
    """Source of ``contract_errors.py``: one ContractRevert subclass per distinct custom error."""
    found: dict[str, tuple[str, list[dict[str, Any]], str]] = {}
    for contract in contracts:
        for item in contract.abi:
            if item["type"] != "error":
                continue
            types = [canonical_type(p) for p in item["inputs"]]
            signature = f"{item['name']}({','.join(types)})"
            doc = error_doc(contract, signature)
            known = found.get(item["name"])
            if known and known[0] != signature:
                raise CompileError(f"two errors named {item['name']}: {known[0]}, {signature}")
            if not known or (doc and not known[2]):
                found[item["name"]] = (signature, item["inputs"], doc)

    blocks = []
    for name, (signature, inputs, doc) in sorted(found.items()):
        selector = "".join(f"\\x{b:02x}" for b in keccak(text=signature)[:4])
        names = "".join(f'"{p["name"]}", ' for p in inputs)
        types = "".join(f'"{canonical_type(p)}", ' for p in inputs)
        if len(inputs) == 1:
            names, types = names.rstrip(" "), types.rstrip(" ")
        else:
            names, types = names.rstrip(", "), types.rstrip(", ")
        blocks.append(
            f"class {name}(ContractRevert):\n"
            f"{_docstring(doc or _wrap(f'Solidity error ``{signature}``.'))}\n"
            f"    solidity_signature = {json.dumps(signature)}\n"
            f'    selector = b"{selector}"\n'
            f"    arg_names: tuple[str, ...] = ({names})\n"
            f"    arg_types: tuple[str, ...] = ({types})\n"
        )
    names_list = "".join(f"    {name},\n" for name in sorted(found))
    return (
        "# Generated by scripts/compile_contracts.py from the contract ABIs -- do not edit.\n"
        '"""Python exceptions for the Solidity custom errors of FLChain\'s contracts.\n\n'
        "Each class is named after a custom error (ours and OpenZeppelin's) and registers its\n"
        "4-byte selector with :class:`flchain.errors.ContractRevert`, so a revert can be decoded\n"
        "into the matching exception with its arguments.\n"
        '"""\n\n'
        "from __future__ import annotations\n\n"
        "from flchain.errors import ContractRevert\n\n\n"
        + "\n\n".join(blocks)
        + "\n\n#: Every generated error class, sorted by name.\n"
        + f"ALL_ERRORS: tuple[type[ContractRevert], ...] = (\n{names_list})\n"
    )


def _docstring(body: str) -> str:
    body = body.lstrip()
    if "\n" not in body and len(body) <= 90:
        return f'    """{body}"""\n'
    return f'    """{body}\n    """\n'


# --- the ABI mirror (contract_types.py) ---------------------------------------------------------


def natspec(text: str) -> tuple[list[str], dict[str, str]]:
    """The prose (@notice, then @dev) and the @param texts of a NatSpec comment; untagged
    leading text counts as @notice, other tags are dropped."""
    sections: list[list[str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("@") or not sections:
            sections.append([stripped])
        else:
            sections[-1].append(stripped)
    prose: dict[str, list[str]] = {"@notice": [], "@dev": []}
    params: dict[str, str] = {}
    for section in sections:
        body = " ".join(section).strip()
        tag, _, rest = body.partition(" ")
        if tag == "@param":
            name, _, what = rest.partition(" ")
            params[name] = what
        elif tag in prose:
            prose[tag].append(rest)
        elif body and not tag.startswith("@"):
            prose["@notice"].append(body)
    return [" ".join(prose["@notice"]), " ".join(prose["@dev"])], params


def class_name(canonical: str) -> str:
    """The Python class of a Solidity struct or enum (``ITrainingTask.Phase`` -> ``Phase``)."""
    short = canonical.rsplit(".", 1)[-1]
    return RENAMES.get(short, short)


def python_type(param: dict[str, Any], owner: str) -> str:
    """The annotation of a generated field for an ABI parameter of ``owner`` (a struct or event
    name, for :data:`FIELD_TYPES`)."""
    override = FIELD_TYPES.get((owner, param["name"]))
    if override:
        return override
    kind, internal = param["type"], param.get("internalType", "")
    if kind.endswith("]"):
        raise CompileError(f"{owner}.{param['name']}: array parameters ({kind}) are not mirrored")
    if internal.startswith(("struct ", "enum ")):
        return class_name(internal.split(" ", 1)[1])
    simple = {"address": "Address", "bool": "bool", "string": "str", "bytes": "bytes"}
    if kind in simple:
        return simple[kind]
    if re.fullmatch(r"bytes\d+", kind):
        return "bytes"
    if re.fullmatch(r"u?int\d*", kind):
        return "int"
    raise CompileError(f"{owner}.{param['name']}: no Python type for ABI type {kind}")


def _abi_types(
    contracts: list[Compiled],
) -> tuple[dict[str, list[dict[str, Any]]], set[str], dict[str, dict[str, Any]]]:
    """(structs by canonical name -> components, enum canonical names, events by selector)."""
    structs: dict[str, list[dict[str, Any]]] = {}
    enums: set[str] = set()
    events: dict[str, dict[str, Any]] = {}

    def walk(params: list[dict[str, Any]]) -> None:
        for param in params:
            internal = param.get("internalType", "")
            if param["type"].startswith("tuple") and internal.startswith("struct "):
                structs.setdefault(internal.split(" ", 1)[1].split("[")[0], param["components"])
                walk(param["components"])
            elif internal.startswith("enum "):
                enums.add(internal.split(" ", 1)[1])

    for contract in contracts:
        for item in contract.abi:
            walk(item.get("inputs", []))
            walk(item.get("outputs", []))
            if item["type"] == "event":
                types = ",".join(canonical_type(p) for p in item["inputs"])
                events.setdefault(keccak(text=f"{item['name']}({types})").hex(), item)
    return structs, enums, events


def _type_doc(doc: str, mirrors: str) -> str:
    """A generated class's docstring: the NatSpec prose, its @params as Attributes (named as the
    Python fields), then which Solidity declaration it mirrors."""
    prose, params = natspec(doc)
    paragraphs = [_wrap(text) for text in prose if text.strip()]
    if params:
        lines = [_wrap_attribute(field_name(n), t) for n, t in params.items()]
        paragraphs.append("    Attributes:\n" + "\n".join(lines))
    paragraphs.append(_wrap(mirrors))
    body = "\n\n".join(paragraphs).replace("\\", "\\\\").replace('"""', "'''")
    return _docstring(body)


def _wrap_attribute(name: str, text: str) -> str:
    return textwrap.fill(
        f"{name}: {' '.join(text.split())}",
        width=96,
        initial_indent="        ",
        subsequent_indent="            ",
    )


def _string_assignment(target: str, value: str) -> str:
    """``target = "value"`` in a class body, split at commas to stay under 100 characters."""
    line = f"    {target} = {json.dumps(value)}\n"
    if len(line) <= 101:
        return line
    chunks, current = [], ""
    for piece in re.findall(r"[^,]+,?", value):
        if current and len(current) + len(piece) > 86:
            chunks.append(current)
            current = ""
        current += piece
    chunks.append(current)
    body = "".join(f"        {json.dumps(chunk)}\n" for chunk in chunks)
    return f"    {target} = (\n{body}    )\n"


def _import_line(module: str, names: list[str]) -> str:
    line = f"from {module} import {', '.join(sorted(names))}\n"
    if len(line) <= 101:
        return line
    return f"from {module} import (\n" + "".join(f"    {n},\n" for n in sorted(names)) + ")\n"


def types_module_text(contracts: list[Compiled], definitions: dict[str, Definition]) -> str:
    """Source of ``contract_types.py``: one enum per Solidity enum and one frozen dataclass per
    struct and per event of the ``contracts`` ABIs."""
    structs, enums, events = _abi_types(contracts)
    blocks: dict[str, str] = {}  # Python class name -> its code, checked unique

    def add(name: str, code: str, what: str) -> None:
        if name in blocks:
            raise CompileError(f"two ABI types would be the Python class {name} ({what})")
        blocks[name] = code

    for canonical in sorted(enums):
        definition = definitions[canonical]
        members = "".join(
            f"    {field_name(m['name']).upper()} = {i}\n"
            for i, m in enumerate(definition.node["members"])
        )
        doc = _type_doc(definition.doc, f"Mirrors ``{canonical}``.")
        add(
            class_name(canonical),
            f"class {class_name(canonical)}(enum.IntEnum):\n{doc}\n{members}",
            canonical,
        )

    for canonical, components in sorted(structs.items()):
        name, short = class_name(canonical), canonical.rsplit(".", 1)[-1]
        lines = "".join(
            f"    {field_name(c['name'])}: {python_type(c, short)}\n" for c in components
        )
        abi_type = canonical_type({"type": "tuple", "components": components})
        doc = _type_doc(definitions[canonical].doc, f"Mirrors ``{canonical}``.")
        code = (
            f"@dataclass(frozen=True)\nclass {name}({METHODS.get(name, 'Struct')}):\n{doc}\n"
            f"{lines}\n{_string_assignment('abi_type: ClassVar[str]', abi_type)}"
        )
        add(name, code, canonical)

    for selector, item in sorted(events.items(), key=lambda kv: kv[1]["name"]):
        definition = definitions[selector]
        inputs = item["inputs"]
        if any(field_name(p["name"]) in EVENT_RESERVED for p in inputs):
            raise CompileError(
                f"event {item['name']}: an argument takes a name in {EVENT_RESERVED}"
            )
        lines = "".join(
            f"    {field_name(p['name'])}: {python_type(p, item['name'])}\n" for p in inputs
        )
        indexed = [f"``{field_name(p['name'])}``" for p in inputs if p["indexed"]]
        mirrors = f"Mirrors ``{definition.contract}.{item['name']}``"
        mirrors += f"; indexed: {', '.join(indexed)}." if indexed else "."
        doc = _type_doc(definition.doc, mirrors)
        gap = "\n" if lines else ""
        code = (
            f"@dataclass(frozen=True)\nclass {item['name']}(Event):\n{doc}\n{lines}{gap}"
            f"    name: ClassVar[str] = {json.dumps(item['name'])}\n"
        )
        add(item["name"], code, f"event {item['name']}")

    source = "\n\n".join(blocks.values())
    bases = {"Event", "Struct", *METHODS.values(), *ABI_TYPES}
    used = [b for b in bases if re.search(rf"\b{b}\b", source)]
    names_list = "".join(f'    "{name}",\n' for name in sorted(blocks))
    return (
        "# Generated by scripts/compile_contracts.py from the contract ABIs -- do not edit.\n"
        '"""The ABI mirror of FLChain\'s contracts: one enum per Solidity enum, one frozen\n'
        "dataclass per struct and per event (every event of every contract, OpenZeppelin's\n"
        "included), fields in snake_case typed from the ABI.\n\n"
        "Structs convert to and from web3 tuples (``as_tuple``, ``from_tuple``); events decode\n"
        "from web3 logs (``from_log``) and are queried with\n"
        ":meth:`flchain.ledger.contracts.ContractWrapper.events`. Bases and extra behaviour live\n"
        "in :mod:`flchain.ledger.abi`.\n"
        '"""\n\n'
        "from __future__ import annotations\n\n"
        + ("import enum\n" if enums else "")
        + "from dataclasses import dataclass\n"
        "from typing import ClassVar\n\n"
        + _import_line("flchain.ledger.abi", used)
        + ("from flchain.types import Address\n" if "Address" in source else "")
        + "\n\n"
        + source
        + f"\n\n__all__ = [\n{names_list}]\n"
    )


def render() -> dict[str, str]:
    """Every generated file, as {path relative to the project root: content}."""
    version, contracts, definitions = run_solc()
    files: dict[str, str] = {}
    for contract in contracts:
        source_dir = _source_dir(contract.source)
        if source_dir is not None and contract.abi:
            files[f"{OUTPUTS[source_dir]}/{contract.name}.json"] = artifact_text(contract, version)
    ours = [
        c
        for c in contracts
        if c.source.startswith("contracts/") and not c.source.startswith(TEST_SOURCES)
    ]
    files[ERRORS_MODULE] = errors_module_text(ours)
    files[TYPES_MODULE] = types_module_text(ours, definitions)
    return files


def _source_dir(source: str) -> str | None:
    """The most specific directory of :data:`OUTPUTS` holding ``source``, if any."""
    holders = [d for d in OUTPUTS if source.startswith(d + "/")]
    return max(holders, key=len) if holders else None


def _compiled_here(source: str) -> bool:
    """Forge tests and test-only Solidity outside a test output directory are left to forge."""
    holder = _source_dir(source)
    if holder is None or source.endswith(".t.sol"):
        return False
    return not source.startswith(TEST_SOURCES) or holder.startswith(TEST_SOURCES)


def stale_files(files: dict[str, str]) -> list[str]:
    """Paths whose committed content differs from ``files``, plus artifacts nobody generates."""
    stale = [path for path, text in files.items() if _read(ROOT / path) != text]
    for artifact_dir in OUTPUTS.values():
        for path in sorted((ROOT / artifact_dir).glob("*.json")):
            if path.relative_to(ROOT).as_posix() not in files:
                stale.append(path.relative_to(ROOT).as_posix())
    return stale


def _read(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if committed files are stale")
    args = parser.parse_args(argv)
    try:
        files = render()
    except CompileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = stale_files(files)
    if args.check:
        if stale:
            print("stale generated files (run scripts/compile_contracts.py):", file=sys.stderr)
            for path in stale:
                print(f"  {path}", file=sys.stderr)
            return 1
        print(f"{len(files)} generated files are up to date")
        return 0
    for path in stale:
        target = ROOT / path
        if path in files:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(files[path])
        else:
            target.unlink()
    print(f"wrote {len(stale)} of {len(files)} generated files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
