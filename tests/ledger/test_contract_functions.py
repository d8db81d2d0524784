"""``ContractWrapper.functions``: each function bound to a one-function ABI encodes exactly what
web3's whole-ABI contract encodes, and its reverts still decode into the contract's errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from web3.exceptions import ABIFunctionNotFound

from flchain.ledger import contract_errors as E
from flchain.ledger.accounts import _dynamic_fee_fields
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


def test_chain_call_returns_what_web3_returns(kit: TaskKit) -> None:
    """Every argument-free view of the three contracts, and the task's views a node reads
    with arguments, mid-round: the same values and containers as web3's ``fn.call()``
    (addresses checksummed, arrays as lists, structs as tuples, several outputs as a list)."""
    people = kit.participants[:4]
    updates = kit.commit_all(people)
    kit.to_reveal_phase()
    kit.reveal_all(people, updates)
    alice = people[0].address
    calls = [
        (wrapper, e["name"], ())
        for wrapper in (kit.task, kit.registry, kit.token)
        for e in wrapper.contract.abi
        if e["type"] == "function" and e["stateMutability"] in ("view", "pure") and not e["inputs"]
    ]
    calls += [
        (kit.task, "roundRecord", (0,)),
        (kit.task, "committeeIndices", (0,)),
        (kit.task, "stepView", (alice,)),
        (kit.task, "commitmentOf", (alice,)),
        (kit.registry, "participant", (alice,)),
        (kit.token, "balanceOf", (alice,)),
    ]
    shapes = set()
    for wrapper, name, args in calls:
        fn = wrapper.functions[name](*args)
        ours, web3s = kit.chain.call(fn), fn.call()
        assert ours == web3s and type(ours) is type(web3s), name
        shapes.add(type(ours).__name__)
    assert {"list", "tuple", "str", "int", "bytes", "bool"} <= shapes
    assert kit.chain.call(kit.task.functions["committeeIndices"](0))  # the round's committee
    domain = kit.chain.call(kit.token.functions["eip712Domain"]())
    assert domain[4] == kit.token.address  # a checksummed address inside several outputs


def test_call_codecs_are_kept_for_the_latest_abis_only(
    kit: TaskKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every wrapper loads its own copy of its contract's ABI: the codecs of many wrappers'
    functions do not pile up (a 1,000-participant federation makes a registry wrapper per
    node), and a wrapper whose codec was dropped builds it again."""
    from flchain.ledger.chain import _CallCodec
    from flchain.ledger.contracts import ParticipantRegistry

    monkeypatch.setattr(_CallCodec, "_CACHE_SIZE", 8)
    wrappers = [ParticipantRegistry(kit.chain, kit.registry.address) for _ in range(12)]
    for wrapper in wrappers:
        assert wrapper.min_stake() == kit.min_stake
    assert len(_CallCodec._cache) <= 8
    assert wrappers[0].min_stake() == kit.min_stake  # dropped first, built again


def test_chain_builds_the_transactions_web3_builds(kit: TaskKit) -> None:
    """The protocol's transactions are encoded by the chain's cached codecs, not web3's
    ``build_transaction``: the same fields and calldata; web3 still builds what it must
    check first (a value sent: is the function payable?) or match by name (keywords)."""
    task, alice = kit.task, kit.participants[0]
    result = Result(b"\x01" * 32, "bafy-model", b"\x02" * 32, "bafy-report", b"\x03" * 32, 7)
    calls = [
        ("commit", (b"\x05" * 32,)),
        ("reveal", (b"\x06" * 32, 120, b"\x07" * 32, "bafy-update")),
        ("attest", (2, result.as_tuple())),
        ("slashNonRevealer", (1, alice.address)),
        ("closeCommitPhase", ()),
        ("commit", ("0x" + "05" * 32,)),  # hex text for bytes32: eth-abi takes it as web3 does
    ]
    base = {
        "from": alice.address,
        "value": 0,
        "chainId": kit.chain.chain_id,
        "gas": 90_000,
        "nonce": 0,
        "maxFeePerGas": 2 * 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    for name, args in calls:
        fn = task.functions[name](*args)
        ours = kit.chain._encoded_call(fn, base)  # type: ignore[arg-type]
        assert ours == fn.build_transaction(base), name  # type: ignore[arg-type]
        # and the chain's signer encodes it itself (no fall-back to eth-account)
        assert _dynamic_fee_fields(alice, ours) is not None, name  # type: ignore[arg-type]
    commit = task.functions["commit"]
    left_to_web3 = [
        (commit(b"\x05" * 32), {**base, "value": 1}),
        (commit(commitment=b"\x05" * 32), base),
    ]
    for fn, fields in left_to_web3:
        assert kit.chain._encoded_call(fn, fields) is None  # type: ignore[arg-type]
