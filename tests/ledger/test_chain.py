"""The chain-layer behaviour suite: every test runs on embedded, devchain and anvil."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from eth_utils import function_signature_to_4byte_selector
from web3.contract import Contract

from flchain.errors import (
    ContractRevert,
    LedgerError,
    RPCUnavailable,
    TransactionFailed,
    TransactionTimeout,
)
from flchain.ledger.chain import MINE_CHUNK, Chain, Outbox, TxRequest
from flchain.ledger.reverts import Panic, RevertedWithReason, UndecodedRevert


class ValueTooLarge(ContractRevert):
    """As the generated module would declare it: registered by selector."""

    solidity_signature = "ValueTooLarge(uint256,uint256)"
    selector = function_signature_to_4byte_selector(solidity_signature)
    arg_names = ("value", "limit")
    arg_types = ("uint256", "uint256")


def skip_without_test_controls(chain: Chain) -> None:
    """geth --dev has no snapshots and cannot stop mining on each transaction."""
    if chain.w3.client_version.startswith("Geth/"):
        pytest.skip("geth --dev has no evm_snapshot / evm_setAutomine")


ANVIL_ACCOUNT_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def test_accounts_are_the_funded_dev_accounts(chain: Chain) -> None:
    assert len(chain.accounts) == 20
    assert chain.accounts[0].address == ANVIL_ACCOUNT_0
    assert all(chain.balance(a.address) >= 10**21 for a in chain.accounts)
    assert chain.chain_id in (31337, 131277322940537, 1337)  # anvil/hardhat, eth-tester, geth


def test_deploy_and_call(chain: Chain, fixture_contract: Contract) -> None:
    assert chain.call(fixture_contract.functions.counter()) == 5
    assert chain.call(fixture_contract.functions.owner()) == chain.accounts[0].address
    again = chain.contract(fixture_contract.abi, fixture_contract.address)
    assert chain.call(again.functions.counter()) == 5


def test_deploy_without_bytecode_is_refused(chain: Chain, fixture_artifact: dict) -> None:
    with pytest.raises(LedgerError, match="no bytecode"):
        chain.deploy({**fixture_artifact, "bytecode": "0x"}, chain.accounts[0])


def test_transact_changes_state_and_emits_event(chain: Chain, fixture_contract: Contract) -> None:
    sender = chain.accounts[1]
    receipt = chain.transact(fixture_contract.functions.increment(7), sender)
    assert receipt["status"] == 1
    assert chain.call(fixture_contract.functions.counter()) == 12
    (event,) = chain.events(fixture_contract, "Incremented", from_block=receipt["blockNumber"])
    assert event["args"] == {"by": sender.address, "newValue": 12, "amount": 7}
    assert event["transactionHash"] == receipt["transactionHash"]


def test_events_filter_by_argument_and_block_range(
    chain: Chain, fixture_contract: Contract
) -> None:
    alice, bob = chain.accounts[1], chain.accounts[2]
    first = chain.transact(fixture_contract.functions.increment(1), alice)
    chain.transact(fixture_contract.functions.increment(2), bob)
    chain.transact(fixture_contract.functions.increment(3), alice)
    start = first["blockNumber"]
    by_alice = chain.events(
        fixture_contract, "Incremented", start, argument_filters={"by": alice.address}
    )
    assert [e["args"]["amount"] for e in by_alice] == [1, 3]
    later = chain.events(fixture_contract, "Incremented", from_block=start + 1)
    assert [e["args"]["amount"] for e in later] == [2, 3]
    with pytest.raises(LedgerError, match="not an event"):
        chain.events(fixture_contract, "NoSuchEvent")


def test_events_decode_as_web3_does(chain: Chain, fixture_contract: Contract) -> None:
    # The chain decodes logs itself (web3's decoding was ~75x slower on a JSON-RPC node).
    alice, bob = chain.accounts[1], chain.accounts[2]
    first = chain.transact(fixture_contract.functions.increment(7), alice)
    chain.transact(fixture_contract.functions.mint(50), bob)
    chain.transact(fixture_contract.functions.transfer(alice.address, 20), bob)
    chain.transact(fixture_contract.functions.increment(9), bob)
    start = first["blockNumber"]
    for name, filters in [
        ("Incremented", {}),
        ("Incremented", {"by": [alice.address, bob.address], "newValue": 21}),
        ("Transferred", {"to": alice.address}),
        ("Transferred", {"from": alice.address}),  # matches nothing
    ]:
        ours = chain.events(fixture_contract, name, start, argument_filters=filters)
        web3s = fixture_contract.events[name].get_logs(argument_filters=filters, from_block=start)
        keys = ("event", "address", "blockNumber", "blockHash", "transactionHash", "logIndex")
        assert [({k: e[k] for k in keys}, dict(e["args"])) for e in ours] == [
            ({k: e[k] for k in keys}, dict(e["args"])) for e in web3s
        ]
    assert len(chain.events(fixture_contract, "Incremented", start)) == 2


def test_value_transfer_with_transact(chain: Chain, fixture_artifact: dict) -> None:
    contract = chain.deploy(fixture_artifact, chain.accounts[3], 0, value=12345)
    assert chain.balance(contract.address) == 12345


def test_mine(chain: Chain) -> None:
    before = chain.block_number
    chain.mine()
    chain.mine(3)
    assert chain.block_number == before + 4
    chain.mine(2 * MINE_CHUNK + 3)  # in several requests, exactly as many blocks
    assert chain.block_number == before + 4 + 2 * MINE_CHUNK + 3
    with pytest.raises(LedgerError):
        chain.mine(0)


def test_snapshot_and_revert_restore_state_and_nonces(
    chain: Chain, fixture_contract: Contract
) -> None:
    skip_without_test_controls(chain)
    sender = chain.accounts[4]
    snapshot = chain.snapshot()
    chain.transact(fixture_contract.functions.increment(10), sender)
    chain.transact(fixture_contract.functions.increment(10), sender)
    assert chain.call(fixture_contract.functions.counter()) == 25
    chain.revert(snapshot)
    assert chain.call(fixture_contract.functions.counter()) == 5
    # The nonce manager forgot its counters, so the account sends again from the old nonce.
    receipt = chain.transact(fixture_contract.functions.increment(1), sender)
    tx = chain.w3.eth.get_transaction(receipt["transactionHash"])
    assert tx["nonce"] == chain.w3.eth.get_transaction_count(sender.address) - 1
    assert chain.call(fixture_contract.functions.counter()) == 6


def test_revert_to_unknown_snapshot_is_a_ledger_error(chain: Chain) -> None:
    with pytest.raises(LedgerError):
        chain.revert("0x7fffffff")


# --- reverts ------------------------------------------------------------------------------


def test_registered_custom_error_with_args(chain: Chain, fixture_contract: Contract) -> None:
    fn = fixture_contract.functions.increment(5000)
    for attempt in (lambda: chain.call(fn), lambda: chain.transact(fn, chain.accounts[1])):
        with pytest.raises(ValueTooLarge) as info:
            attempt()
        assert info.value.error_args == {"value": 5000, "limit": 1000}
        assert str(info.value) == "ValueTooLarge(value=5000, limit=1000)"


def test_custom_error_from_abi_when_not_registered(
    chain: Chain, fixture_contract: Contract
) -> None:
    stranger = chain.accounts[2]
    with pytest.raises(ContractRevert) as info:
        chain.transact(fixture_contract.functions.onlyOwner(), stranger)
    assert type(info.value).__name__ == "NotOwner"
    assert isinstance(info.value, TransactionFailed)
    assert info.value.error_args == {"caller": stranger.address, "owner": chain.accounts[0].address}
    with pytest.raises(ContractRevert) as no_args:
        chain.call(fixture_contract.functions.unlucky())
    assert type(no_args.value).__name__ == "Unlucky"
    assert no_args.value.error_args == {}


def test_require_string_and_panic_and_bare_revert(chain: Chain, fixture_contract: Contract) -> None:
    sender = chain.accounts[1]
    with pytest.raises(RevertedWithReason) as reason:
        chain.transact(fixture_contract.functions.requireSmall(20), sender)
    assert reason.value.reason == "value must be below 10"
    with pytest.raises(Panic) as panic:
        chain.call(fixture_contract.functions.divide(1, 0))
    assert (panic.value.code, panic.value.meaning) == (0x12, "division or modulo by zero")
    with pytest.raises(UndecodedRevert) as bare:
        chain.transact(fixture_contract.functions.bareRevert(), sender)
    assert bare.value.data == b""
    with pytest.raises(UndecodedRevert) as mined:  # fixed gas: mined, status 0
        chain.transact(fixture_contract.functions.bareRevert(), sender, gas=100_000)
    # no revert data, as an inner call out of gas leaves: a mined one's message says the gas
    # (Hardhat's automine reports the revert on send instead)
    assert mined.value.data == b""
    if any("with status 0" in note for note in getattr(mined.value, "__notes__", [])):
        assert "of 100000): reverted" in str(mined.value), mined.value
    assert chain.call(fixture_contract.functions.requireSmall(3)) == 3


def test_mined_revert_is_decoded(chain: Chain, fixture_contract: Contract) -> None:
    sender = chain.accounts[5]
    nonce = chain.w3.eth.get_transaction_count(sender.address)
    # An explicit gas limit skips estimation, so the revert happens on-chain (status 0).
    with pytest.raises(ValueTooLarge) as info:
        chain.transact(fixture_contract.functions.increment(2000), sender, gas=200_000)
    assert info.value.error_args == {"value": 2000, "limit": 1000}
    assert "status 0" in info.value.__notes__[0]
    assert chain.w3.eth.get_transaction_count(sender.address) == nonce + 1  # it was mined


def test_mined_revert_caused_by_an_earlier_transaction_of_its_block_is_decoded(
    chain: Chain, fixture_contract: Contract
) -> None:
    # Replaying on the previous block cannot see the first transfer, so only a node that
    # traces the mined transaction can name this revert (Hardhat: its default tracer).
    if "EthereumTester" in chain.w3.client_version:
        pytest.skip("eth-tester takes one transaction per sender into a pending block")
    skip_without_test_controls(chain)
    sender, to = chain.accounts[8], chain.accounts[9]
    chain.transact(fixture_contract.functions.mint(10), sender)
    transfer = fixture_contract.functions.transfer(to.address, 10)
    nonce = chain.w3.eth.get_transaction_count(sender.address)
    chain.set_automine(False)
    with ThreadPoolExecutor(1) as pool:
        chain.send(transfer, sender, gas=200_000)
        second = pool.submit(chain.transact, transfer, sender, gas=200_000)
        while chain.w3.eth.get_transaction_count(sender.address, "pending") < nonce + 2:
            time.sleep(0.01)  # until the second transfer is in the pool too
        chain.mine()
        with pytest.raises(ContractRevert) as info:
            second.result(timeout=30)
    assert type(info.value).__name__ == "InsufficientBalance"
    assert info.value.error_args == {"account": sender.address, "balance": 0, "needed": 10}
    assert "status 0" in info.value.__notes__[0]


def test_mined_revert_caused_by_another_senders_transaction_of_its_block_is_decoded(
    chain: Chain, deploy: Callable[..., Contract], fixture_artifact: dict[str, Any]
) -> None:
    # Each increment alone fits; the first one in the block makes the second overflow. A
    # replay on the previous block succeeds, so only a trace of the block names the panic
    # (the embedded chain and devchain re-execute the block up to it).
    skip_without_test_controls(chain)
    fixture = deploy(fixture_artifact, 2**256 - 1001)
    first, second = chain.accounts[10], chain.accounts[11]
    start = chain.w3.eth.get_transaction_count(second.address)
    chain.set_automine(False)
    with ThreadPoolExecutor(1) as pool:
        chain.send(fixture.functions.increment(1000), first, gas=200_000)
        late = pool.submit(chain.transact, fixture.functions.increment(1000), second, gas=200_000)
        while (chain.nonces.peek(second.address) or 0) <= start:
            time.sleep(0.01)  # until the node took the second increment (its nonce is used)
        chain.mine()
        with pytest.raises(Panic) as info:
            late.result(timeout=30)
    assert info.value.code == 0x11  # arithmetic overflow
    assert "status 0" in info.value.__notes__[0]
    assert chain.call(fixture.functions.counter()) == 2**256 - 1
    if "EthereumTester" in chain.w3.client_version:  # its trace re-executes the block
        tx_hash = info.value.__notes__[0].split()[3].rstrip(",")
        trace = chain.w3.provider.make_request(
            "debug_traceTransaction",  # type: ignore[arg-type]
            [tx_hash, {"tracer": "callTracer"}],
        )["result"]
        panic = function_signature_to_4byte_selector("Panic(uint256)") + (0x11).to_bytes(32)
        assert trace["output"] == "0x" + panic.hex()
        assert trace["error"] == "execution reverted"


def test_failed_estimation_does_not_consume_a_nonce(
    chain: Chain, fixture_contract: Contract
) -> None:
    sender = chain.accounts[6]
    chain.transact(fixture_contract.functions.increment(1), sender)
    with pytest.raises(ValueTooLarge):
        chain.transact(fixture_contract.functions.increment(5000), sender)
    receipt = chain.transact(fixture_contract.functions.increment(1), sender)
    tx = chain.w3.eth.get_transaction(receipt["transactionHash"])
    assert tx["nonce"] == chain.w3.eth.get_transaction_count(sender.address) - 1


def test_nonce_resync_after_another_client_used_the_account(
    chain: Chain, fixture_contract: Contract
) -> None:
    sender = chain.accounts[7]
    chain.transact(fixture_contract.functions.increment(1), sender)
    # A second client (another process, say) sends with the same key behind our back. Its
    # calls differ from ours: with equal fees, the same call at the same nonce would be the
    # very same signed transaction, already mined, and rightly not sent twice.
    other = Chain(chain.w3, chain.accounts, label="other client")
    other.transact(fixture_contract.functions.increment(2), sender)
    other.transact(fixture_contract.functions.increment(2), sender)
    chain.transact(fixture_contract.functions.increment(1), sender)  # "nonce too low" → resync
    assert chain.call(fixture_contract.functions.counter()) == 11
    assert chain.nonces.peek(sender.address) == chain.w3.eth.get_transaction_count(sender.address)


def test_transact_all_sends_together_and_checks_every_receipt(
    chain: Chain, fixture_contract: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[list[str]] = []  # the methods of each JSON-RPC batch request sent
    provider = chain.w3.provider
    if (real_batch := getattr(provider, "batch", None)) is not None:

        def counted(calls: Sequence[tuple[str, Any]]) -> Any:
            batches.append([method for method, _ in calls])
            return real_batch(calls)

        monkeypatch.setattr(provider, "batch", counted)
    senders = chain.accounts[12:16]
    nonces = {a.address: chain.w3.eth.get_transaction_count(a.address) for a in senders}
    amounts = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]  # three per sender, estimated together
    txs = [
        TxRequest(fixture_contract.functions.increment(x), senders[i % 4])
        for i, x in enumerate(amounts)
    ]
    receipts = chain.transact_all(txs)
    assert [r["status"] for r in receipts] == [1] * len(txs)
    assert chain.call(fixture_contract.functions.counter()) == 5 + sum(amounts)
    for i, receipt in enumerate(receipts):  # in order, with each sender's next nonce
        tx = chain.w3.eth.get_transaction(receipt["transactionHash"])
        assert (tx["from"], tx["nonce"]) == (senders[i % 4].address, nonces[tx["from"]] + i // 4)
    if real_batch is not None:  # a JSON-RPC node: all twelve went out in one request
        # (how many blocks the node then mines them in is its own affair: anvil under load
        # mines some arrivals of one batch alone)
        assert batches.count(["eth_sendRawTransaction"] * len(txs)) == 1
    follow = chain.transact(fixture_contract.functions.increment(1), senders[0])  # nonces kept
    assert follow["status"] == 1


def test_transact_all_raises_a_mined_failure_decoded_after_the_rest_landed(
    chain: Chain, fixture_contract: Contract
) -> None:
    a, b = chain.accounts[16], chain.accounts[17]
    txs = [
        TxRequest(fixture_contract.functions.increment(1), a),
        TxRequest(fixture_contract.functions.increment(2000), b, gas=200_000),  # reverts mined
        TxRequest(fixture_contract.functions.increment(2), a),
    ]
    with pytest.raises(ValueTooLarge) as info:
        chain.transact_all(txs)
    assert info.value.error_args == {"value": 2000, "limit": 1000}
    assert "status 0" in info.value.__notes__[0]
    assert chain.call(fixture_contract.functions.counter()) == 5 + 1 + 2


def test_transact_all_refuses_before_sending_when_an_estimate_reverts(
    chain: Chain, fixture_contract: Contract
) -> None:
    sender = chain.accounts[18]
    nonce = chain.w3.eth.get_transaction_count(sender.address)
    txs = [
        TxRequest(fixture_contract.functions.increment(1), sender),
        TxRequest(fixture_contract.functions.increment(5000), sender),
    ]
    with pytest.raises(ValueTooLarge):
        chain.transact_all(txs)
    assert chain.w3.eth.get_transaction_count(sender.address) == nonce  # nothing was sent
    assert chain.transact(fixture_contract.functions.increment(1), sender)["status"] == 1


def test_transact_each_gives_every_transaction_its_own_outcome(
    chain: Chain, fixture_contract: Contract
) -> None:
    a, b, c = chain.accounts[12], chain.accounts[13], chain.accounts[14]
    nonce = chain.w3.eth.get_transaction_count(c.address)
    txs = [
        TxRequest(fixture_contract.functions.increment(1), a),
        TxRequest(fixture_contract.functions.increment(2000), b, gas=200_000),  # reverts mined
        TxRequest(fixture_contract.functions.increment(5000), c),  # its estimate reverts
        TxRequest(fixture_contract.functions.increment(2), a),
    ]
    outcomes = chain.transact_each(txs)
    assert [type(o).__name__ for o in outcomes] == [
        "AttributeDict", "ValueTooLarge", "ValueTooLarge", "AttributeDict"
    ]  # fmt: skip
    assert outcomes[0]["status"] == outcomes[3]["status"] == 1  # type: ignore[index]
    mined, refused = outcomes[1], outcomes[2]
    assert isinstance(mined, ValueTooLarge) and mined.error_args["value"] == 2000
    assert "status 0" in mined.__notes__[0]  # sent and mined: its nonce is used
    assert isinstance(refused, ValueTooLarge) and refused.error_args["value"] == 5000
    assert chain.w3.eth.get_transaction_count(c.address) == nonce  # never sent
    assert chain.call(fixture_contract.functions.counter()) == 5 + 1 + 2
    assert chain.transact(fixture_contract.functions.increment(1), b)["status"] == 1  # nonces kept
    # receipts polled together read as web3 reads each one
    for receipt in (outcomes[0], outcomes[3]):
        assert receipt == chain.w3.eth.get_transaction_receipt(receipt["transactionHash"])  # type: ignore[index]


def test_transact_each_times_out_a_transaction_that_is_never_mined(
    chain: Chain, fixture_contract: Contract
) -> None:
    skip_without_test_controls(chain)
    chain.set_automine(False)
    txs = [TxRequest(fixture_contract.functions.increment(1), chain.accounts[12], gas=100_000)]
    (outcome,) = chain.transact_each(txs, timeout=0.3)
    assert isinstance(outcome, TransactionTimeout) and "no receipt" in str(outcome)
    chain.mine()
    assert chain.call(fixture_contract.functions.counter()) == 5 + 1  # sent all the same


def test_an_outbox_sends_on_flush_and_every_sender_hears_before_a_failure_is_raised(
    chain: Chain, fixture_contract: Contract
) -> None:
    a, b, c = chain.accounts[15], chain.accounts[16], chain.accounts[17]
    outbox, heard = Outbox(chain), {}

    def hear(name: str) -> Callable[[Any], None]:
        return lambda outcome: heard.__setitem__(name, outcome)

    def refuse(outcome: Any) -> None:  # a sender that cannot live with its failure
        heard["b"] = outcome
        raise outcome

    outbox.add(TxRequest(fixture_contract.functions.increment(1), a, gas=100_000), hear("a"))
    outbox.add(TxRequest(fixture_contract.functions.increment(2000), b, gas=200_000), refuse)
    outbox.add(TxRequest(fixture_contract.functions.increment(2), c, gas=100_000), hear("c"))
    assert len(outbox) == 3 and chain.call(fixture_contract.functions.counter()) == 5  # held
    with pytest.raises(ValueTooLarge):
        outbox.flush()
    assert heard["a"]["status"] == heard["c"]["status"] == 1  # both heard, though b raised
    assert isinstance(heard["b"], ValueTooLarge)
    assert chain.call(fixture_contract.functions.counter()) == 5 + 1 + 2
    assert len(outbox) == 0 and outbox.flush() == 0


# --- concurrency, timeouts, unreachable nodes ----------------------------------------------


def test_concurrent_senders(
    chain: Chain, fixture_contract: Contract, send_concurrently: Any, assert_exactly_once: Any
) -> None:
    senders = chain.accounts[8:11]
    start = {a.address: chain.w3.eth.get_transaction_count(a.address) for a in senders}
    receipts = send_concurrently(chain, fixture_contract, senders, threads_per_sender=2, each=4)
    assert len(receipts) == 24
    assert all(r["status"] == 1 for r in receipts)
    assert chain.call(fixture_contract.functions.counter()) == 5 + 24
    assert_exactly_once(chain, receipts, start)


def test_receipt_timeout(chain: Chain, fixture_contract: Contract) -> None:
    with pytest.raises(TransactionTimeout, match="no receipt"):
        chain.wait_for_receipt(os.urandom(32), timeout=0.2)
    skip_without_test_controls(chain)
    chain.set_automine(False)
    tx_hash = chain.send(fixture_contract.functions.increment(1), chain.accounts[11], gas=100_000)
    with pytest.raises(TransactionTimeout):
        chain.wait_for_receipt(tx_hash, timeout=0.3)
    chain.mine()
    assert chain.wait_for_receipt(tx_hash, timeout=5)["status"] == 1


def test_unreachable_rpc_names_the_url() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(RPCUnavailable, match=url) as info:
        Chain.connect(url, retries=1, timeout=0.5)
    assert isinstance(info.value, ConnectionError)
    assert "flchain devchain" in str(info.value)
    with pytest.raises(RPCUnavailable, match="http"):
        Chain.connect("ws://127.0.0.1:1")
