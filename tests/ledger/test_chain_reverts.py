"""Revert-data decoding, without a chain."""

from __future__ import annotations

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector as selector

from flchain.errors import ContractRevert, TransactionFailed
from flchain.ledger.reverts import (
    Panic,
    RevertedWithReason,
    UndecodedRevert,
    decode_revert,
    error_class_from_abi,
)

ABI = [
    {
        "type": "error",
        "name": "Slashed",
        "inputs": [
            {"name": "who", "type": "address"},
            {"name": "amounts", "type": "uint256[]"},
            {"name": "", "type": "bytes32"},
        ],
    },
    {"type": "function", "name": "f", "inputs": [], "outputs": []},
]
WHO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_custom_error_from_abi_with_all_kinds_of_arguments() -> None:
    data = selector("Slashed(address,uint256[],bytes32)") + encode(
        ["address", "uint256[]", "bytes32"], [WHO, [1, 2], b"\x07" * 32]
    )
    error = decode_revert(data, ABI)
    assert type(error).__name__ == "Slashed" and isinstance(error, ContractRevert)
    assert error.error_args == {"who": WHO, "amounts": (1, 2), "arg2": b"\x07" * 32}
    assert error.solidity_signature == "Slashed(address,uint256[],bytes32)"
    assert str(error) == f"Slashed(who='{WHO}', amounts=(1, 2), arg2=0x{'07' * 32})"
    # Classes built from an ABI are cached but never registered globally.
    assert error_class_from_abi(ABI[0]) is type(error)
    assert ContractRevert.class_for_selector(error.selector) is None


def test_registered_class_wins_over_abi() -> None:
    class Slashed(ContractRevert):
        solidity_signature = "Slashed(address,uint256[],bytes32)"
        selector = selector(solidity_signature)
        arg_names = ("account", "amounts", "digest")
        arg_types = ("address", "uint256[]", "bytes32")

    data = Slashed.selector + encode(list(Slashed.arg_types), [WHO, [], b"\x00" * 32])
    try:
        error = decode_revert(data, ABI)
        assert type(error) is Slashed
        assert error.error_args["account"] == WHO
    finally:
        ContractRevert._by_selector.pop(Slashed.selector)


def test_reason_panic_and_unknown() -> None:
    reason = decode_revert(selector("Error(string)") + encode(["string"], ["no"]), context="f(): ")
    assert isinstance(reason, RevertedWithReason) and reason.reason == "no"
    assert str(reason) == "f(): reverted: no"
    panic = decode_revert(selector("Panic(uint256)") + encode(["uint256"], [0x11]))
    assert isinstance(panic, Panic) and panic.meaning == "arithmetic overflow or underflow"
    odd = decode_revert(selector("Panic(uint256)") + encode(["uint256"], [0x99]))
    assert isinstance(odd, Panic) and odd.meaning == "unknown panic code"
    unknown = selector("Other(uint256)") + encode(["uint256"], [7])
    error = decode_revert(unknown, ABI)
    assert type(error) is UndecodedRevert and error.data == unknown
    assert unknown.hex() in str(error)


def test_malformed_payload_keeps_raw_bytes() -> None:
    truncated = selector("Slashed(address,uint256[],bytes32)") + b"\x01\x02"
    error = decode_revert(truncated, ABI)
    assert type(error) is UndecodedRevert and error.data == truncated
    assert isinstance(decode_revert(b"\x08\xc3"), TransactionFailed)
