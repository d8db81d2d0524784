"""``ContractWrapper.functions``: each function bound to a one-function ABI encodes exactly what
web3's whole-ABI contract encodes, and its reverts still decode into the contract's errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from web3.exceptions import ABIFunctionNotFound

from flchain.ledger import contract_errors as E
from flchain.ledger.contracts import Result

if TYPE_CHECKING:
    from conftest import TaskKit


def test_narrow_functions_encode_what_the_whole_abi_encodes(kit: TaskKit) -> None:
    task, alice = kit.task, kit.participants[0]
    result = Result(b"\x01" * 32, "bafy-model", b"\x02" * 32, "bafy-report", b"\x03" * 32, 7)
    calls = [
        ("commit", (b"\x05" * 32,)),
        ("reveal", (b"\x06" * 32, 120, b"\x07" * 32, "bafy-update")),
        ("attest", (2, result.as_tuple())),
        ("roundRecord", (4,)),
        ("stepView", (alice.address,)),
        ("slashNonRevealer", (1, alice.address)),
    ]
    for name, args in calls:
        narrow = task.functions[name](*args)
        whole = task.contract.functions[name](*args)
        assert len(narrow.contract_abi) < len(whole.contract_abi)
        assert narrow._encode_transaction_data() == whole._encode_transaction_data(), name
        assert narrow.address == whole.address
    assert task.functions["commit"] is task.functions["commit"]  # looked up once
    with pytest.raises(ABIFunctionNotFound):
        task.functions["noSuchFunction"]


def test_a_narrow_function_revert_decodes_into_the_contract_error(kit: TaskKit) -> None:
    task = kit.task
    with pytest.raises(E.NoCommitment) as info:
        task.slash_non_revealer(kit.outsider, 0, kit.outsider.address)
    assert info.value.error_args == {"account": kit.outsider.address, "round": 0}
    assert {e["type"] for e in task.functions["slashNonRevealer"].contract_abi} >= {
        "function",
        "error",
        "event",
    }
