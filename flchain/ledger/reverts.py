"""Turn EVM revert data into exceptions from FLChain's tree.

A revert carries ABI-encoded data whose first four bytes say what it is:

* a Solidity custom error → the :class:`~flchain.errors.ContractRevert` subclass registered for
  its selector (the generated ``flchain.ledger.contract_errors``), or else one built from the
  ABI of the contract being called, named after the error, with ``error_args`` filled in;
* ``Error(string)`` (``require``/``revert("...")``) → :class:`RevertedWithReason`;
* ``Panic(uint256)`` (``assert``, overflow, division by zero, ...) → :class:`Panic`;
* anything else, including empty data → :class:`~flchain.errors.TransactionFailed`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector
from web3.exceptions import Web3RPCError

from flchain.errors import ContractRevert, TransactionFailed
from flchain.types import to_address

ERROR_SELECTOR = function_signature_to_4byte_selector("Error(string)")
PANIC_SELECTOR = function_signature_to_4byte_selector("Panic(uint256)")

#: What each Solidity panic code means (Solidity docs, "Panic via assert and Error via require").
PANIC_CODES: dict[int, str] = {
    0x00: "generic compiler-inserted panic",
    0x01: "assert(false)",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "conversion to an invalid enum value",
    0x22: "incorrectly encoded storage byte array",
    0x31: "pop() on an empty array",
    0x32: "array index out of bounds",
    0x41: "too much memory allocated",
    0x51: "call to a zero-initialized internal function",
}


class RevertedWithReason(TransactionFailed):
    """The call reverted with ``Error(string)``, e.g. a failing ``require(cond, "reason")``."""

    def __init__(self, reason: str, context: str = "") -> None:
        self.reason = reason
        super().__init__(f"{context}reverted: {reason}")


class Panic(TransactionFailed):
    """The call hit a Solidity ``Panic(uint256)``; ``code`` and its ``meaning``."""

    def __init__(self, code: int, context: str = "") -> None:
        self.code = code
        self.meaning = PANIC_CODES.get(code, "unknown panic code")
        super().__init__(f"{context}panic 0x{code:02x}: {self.meaning}")


class UndecodedRevert(TransactionFailed):
    """A revert whose data matches no known error; ``data`` holds the raw bytes."""

    def __init__(self, data: bytes, context: str = "") -> None:
        self.data = data
        shown = "0x" + data.hex() if data else "no revert data"
        super().__init__(f"{context}reverted ({shown})")


# Classes built from ABIs are kept here, NOT in ContractRevert's registry, so generated
# classes always take precedence and an ABI never shadows them.
_from_abi: dict[tuple[bytes, str], type[ContractRevert]] = {}
_generated_loaded = False


def _load_generated() -> None:
    """Import the generated error classes once, so their selectors are registered."""
    global _generated_loaded
    if not _generated_loaded:
        _generated_loaded = True
        try:
            importlib.import_module("flchain.ledger.contract_errors")
        except ModuleNotFoundError as exc:
            if exc.name != "flchain.ledger.contract_errors":
                raise


def _abi_type(param: Mapping[str, Any]) -> str:
    """The canonical ABI type of a parameter, expanding tuples (structs)."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def error_class_from_abi(entry: Mapping[str, Any]) -> type[ContractRevert]:
    """A ContractRevert subclass for one ABI ``error`` entry (cached, not registered)."""
    types = tuple(_abi_type(p) for p in entry.get("inputs", []))
    signature = f"{entry['name']}({','.join(types)})"
    selector = function_signature_to_4byte_selector(signature)
    key = (selector, signature)
    if key not in _from_abi:
        names = tuple(p.get("name") or f"arg{i}" for i, p in enumerate(entry.get("inputs", [])))
        cls: type[ContractRevert] = type(
            str(entry["name"]), (ContractRevert,), {"__module__": __name__}
        )
        # Set after creation: ContractRevert.__init_subclass__ registers classes whose body
        # defines a selector, and these must stay out of the registry.
        cls.selector, cls.solidity_signature = selector, signature
        cls.arg_names, cls.arg_types = names, types
        _from_abi[key] = cls
    return _from_abi[key]


def _abi_errors(abi: Iterable[Mapping[str, Any]]) -> dict[bytes, type[ContractRevert]]:
    classes = (error_class_from_abi(e) for e in abi if e.get("type") == "error")
    return {cls.selector: cls for cls in classes}


def decode_revert(
    data: bytes, abi: Sequence[Mapping[str, Any]] = (), context: str = ""
) -> TransactionFailed:
    """The exception for revert ``data``; ``abi`` is the called contract's ABI (for fallback).

    ``context`` prefixes the message of non-custom errors (e.g. ``"increment(5): "``).
    """
    _load_generated()
    selector, payload = bytes(data[:4]), bytes(data[4:])
    try:
        if selector == ERROR_SELECTOR:
            return RevertedWithReason(abi_decode(["string"], payload)[0], context)
        if selector == PANIC_SELECTOR:
            return Panic(abi_decode(["uint256"], payload)[0], context)
        cls = ContractRevert.class_for_selector(selector) or _abi_errors(abi).get(selector)
        if cls is not None and len(data) >= 4:
            decoded = abi_decode(list(cls.arg_types), payload)
            values = [
                to_address(v) if t == "address" else v
                for t, v in zip(cls.arg_types, decoded, strict=True)
            ]
            return cls(**dict(zip(cls.arg_names, values, strict=True)))
    except (DecodingError, OverflowError, ValueError):
        pass  # malformed payload for a known selector: report the raw bytes below
    return UndecodedRevert(bytes(data), context)


# --- revert data in node answers -------------------------------------------------------


def trace_output(result: Any) -> bytes | None:
    """The revert data in a ``debug_traceTransaction`` call-tracer result, if any."""
    output = result.get("output") if isinstance(result, Mapping) else None
    if isinstance(output, str) and output.startswith("0x") and len(output) > 2:
        try:
            return bytes.fromhex(output[2:])
        except ValueError:
            return None
    return None


def struct_log_output(result: Any) -> bytes | None:
    """The revert data in a default-tracer ``debug_traceTransaction`` result, if it failed."""
    if not (isinstance(result, Mapping) and result.get("failed")):
        return None
    value = result.get("returnValue")
    if isinstance(value, str) and value:
        return trace_output({"output": value if value.startswith("0x") else "0x" + value})
    return None


def rpc_message(exc: Web3RPCError) -> str:
    error = (exc.rpc_response or {}).get("error")
    if isinstance(error, Mapping):
        return str(error.get("message", error))
    return str(error or exc.message)


def revert_data(exc: Exception) -> bytes | None:
    """The raw revert data in a web3 exception, if the node sent any."""
    data: Any = getattr(exc, "data", None)
    if data is None and isinstance(exc, Web3RPCError):
        error = (exc.rpc_response or {}).get("error")
        data = error.get("data") if isinstance(error, Mapping) else None
    if isinstance(data, Mapping):  # some nodes nest it: {"data": "0x..."}
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None
