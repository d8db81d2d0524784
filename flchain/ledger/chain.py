"""One connection type for every chain FLChain talks to.

:class:`Chain` wraps a web3 instance and a set of local accounts. ``Chain.embedded()`` runs an
in-process eth-tester/py-evm chain (the default: nothing to install or start);
``Chain.connect(url)`` talks JSON-RPC to anvil, ``flchain devchain``, geth or an L2. Both expose
the same methods, and both sign transactions locally
(:func:`~flchain.ledger.accounts.sign_transaction`: eth-account's bytes, coincurve-backed).

Sending is built to be safe under retries and threads: every transaction is signed before it is
sent, so its hash is known up front; a transient RPC failure re-sends the *same* bytes, and a
node answering "already known" (or "nonce too low" for a hash it holds) counts as success, so a
retry never sends a second transaction. Nonces come from :class:`NonceManager`.

Reverts, whether found while estimating gas, in ``eth_call``, or in a mined receipt with status
0, are raised as the :class:`~flchain.errors.ContractRevert` subclass named after the Solidity
custom error, or as :class:`~flchain.ledger.reverts.RevertedWithReason` /
:class:`~flchain.ledger.reverts.Panic` (see :mod:`flchain.ledger.reverts`).
The HTTP transport (retries, answer checks) is :mod:`flchain.ledger.transport`.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, cast

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.codec import ABICodec
from eth_abi.exceptions import DecodingError, EncodingError
from eth_abi.grammar import ABIType, TupleType
from eth_abi.grammar import parse as parse_abi_type
from eth_account.datastructures import SignedTransaction
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester
from eth_typing import HexStr
from eth_utils import function_abi_to_4byte_selector, keccak
from eth_utils.abi import get_abi_input_types, get_abi_output_types
from hexbytes import HexBytes
from web3 import Web3
from web3._utils.method_formatters import receipt_formatter  # as get_transaction_receipt's
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.datastructures import AttributeDict
from web3.exceptions import (
    BadFunctionCallOutput,
    ContractLogicError,
    TransactionNotFound,
    Web3RPCError,
)
from web3.middleware import AttributeDictMiddleware
from web3.types import BlockIdentifier, EventData, RPCEndpoint, TxParams, TxReceipt

from flchain.errors import (
    BadRPCResponse,
    ConfigError,
    ContractGone,
    FLChainError,
    LedgerError,
    RPCUnavailable,
    TransactionFailed,
    TransactionTimeout,
)
from flchain.ledger.accounts import dev_accounts, sign_transaction
from flchain.ledger.devchain import EmbeddedProvider, make_tester
from flchain.ledger.nonces import ALREADY_KNOWN, NONCE_MISMATCH, NonceManager
from flchain.ledger.reverts import (
    UndecodedRevert,
    decode_revert,
    revert_data,
    rpc_message,
    struct_log_output,
    trace_output,
)
from flchain.ledger.transport import RetryingHTTPProvider
from flchain.types import to_address

#: Where the contract helper's compiled artifacts live (``<Name>.json``).
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
#: Multiplier on the node's gas estimate: state can change between estimate and inclusion.
GAS_MARGIN = 1.2


#: Transactions per JSON-RPC batch of :meth:`Chain.transact_all` (geth refuses batches over
#: 1,000 requests by default).
SEND_BATCH = 500


#: Blocks per ``anvil_mine`` request. anvil's work per block grows with the chain's state: at
#: 1,000 participants one request for a 4,021-block window outlasted the HTTP timeout, was
#: retried (mining again), given up, and the rest went as 4,021 single ``evm_mine`` requests
#: (22 minutes under load).
MINE_CHUNK = 128
#: Decoded view answers :meth:`Chain.call` keeps on the embedded chain (see ``_answer``).
ANSWER_CACHE_SIZE = 4096

ContractCall = ContractFunction | ContractConstructor


@dataclass(frozen=True)
class TxRequest:
    """One transaction of :meth:`Chain.transact_all`: ``fn`` signed by ``sender``, with
    ``gas`` (None: estimated) and ``value`` as :meth:`Chain.transact` takes them."""

    fn: ContractCall
    sender: LocalAccount
    gas: int | None = None
    value: int = 0


ArtifactSource = str | Path | Mapping[str, Any] | Sequence[Mapping[str, Any]]


def load_artifact(source: ArtifactSource) -> Mapping[str, Any]:
    """A compiled artifact ``{contractName, abi, bytecode, ...}``.

    ``source`` is the artifact itself, a bare ABI list, a path to the artifact's JSON, or a
    contract name looked up in ``flchain/ledger/artifacts/``.
    """
    if isinstance(source, Mapping):
        artifact = source
    elif not isinstance(source, str | Path):
        artifact = {"abi": list(source)}
    else:
        path = Path(source)
        if not path.suffix and not path.exists():
            path = ARTIFACTS_DIR / f"{source}.json"
        try:
            artifact = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise LedgerError(f"cannot load contract artifact {path}: {exc}") from exc
    if "abi" not in artifact:
        raise LedgerError(f"artifact {artifact.get('contractName', '?')!r} has no 'abi'")
    return artifact


class Chain:
    """A chain connection with local accounts: deploy, transact, call, events, mining.

    Build one with :meth:`embedded` or :meth:`connect`; the constructor takes any ``Web3``.

    Args:
        w3: the web3 instance (its provider decides where requests go).
        accounts: local signing accounts, available as :attr:`accounts`.
        label: how messages name this chain (URL or "embedded chain").
        receipt_timeout: default seconds :meth:`transact` waits for a receipt.
    """

    def __init__(
        self,
        w3: Web3,
        accounts: Sequence[LocalAccount] = (),
        *,
        label: str = "chain",
        receipt_timeout: float = 120.0,
    ) -> None:
        self.w3 = w3
        self.accounts: list[LocalAccount] = list(accounts)
        self.label = label
        self.receipt_timeout = receipt_timeout
        self.nonces = NonceManager(
            lambda a: self.w3.eth.get_transaction_count(Web3.to_checksum_address(a), "pending")
        )
        self._fees: tuple[float | bytes, dict[str, int]] = (0.0, {})
        #: (latest block hash, from, to, calldata) -> decoded answer: see :meth:`_answer`.
        self._answers: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def embedded(cls, num_accounts: int = 20, *, tester: EthereumTester | None = None) -> Chain:
        """An in-process eth-tester/py-evm chain funding ``num_accounts`` dev accounts."""
        provider = EmbeddedProvider(tester or make_tester(num_accounts))
        return cls(_web3(provider), dev_accounts(num_accounts), label="embedded chain")

    @classmethod
    def connect(
        cls,
        rpc_url: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        num_accounts: int = 20,
        accounts: Sequence[LocalAccount] | None = None,
        receipt_timeout: float = 120.0,
    ) -> Chain:
        """A JSON-RPC node at ``rpc_url``; checks it answers (else :class:`RPCUnavailable`).

        ``accounts`` defaults to the first ``num_accounts`` dev-mnemonic accounts, which
        anvil and ``flchain devchain`` pre-fund.
        """
        if not rpc_url.startswith(("http://", "https://")):
            raise RPCUnavailable(f"unsupported RPC URL {rpc_url!r}: use http:// or https://")
        provider = RetryingHTTPProvider(rpc_url, timeout=timeout, retries=retries)
        chain = cls(
            _web3(provider),
            dev_accounts(num_accounts) if accounts is None else accounts,
            label=rpc_url,
            receipt_timeout=receipt_timeout,
        )
        _ = chain.chain_id  # fail now, with the URL, rather than at the first transaction
        return chain

    # --- reading --------------------------------------------------------------------------

    @cached_property
    def chain_id(self) -> int:
        """The chain id signed into every transaction (EIP-155)."""
        return self.w3.eth.chain_id

    @cached_property
    def genesis_hash(self) -> str:
        """The 0x-hex hash of block 0: with :attr:`chain_id`, what tells one dev chain from
        the next (fresh dev chains share chain id and contract addresses, but their genesis
        blocks carry the time they started)."""
        return "0x" + bytes(self.w3.eth.get_block(0)["hash"]).hex()

    @cached_property
    def prague_gas(self) -> bool:
        """Whether this chain prices gas as the Prague schedule the fixed gas limits in
        ``contracts.py`` were measured on: the embedded py-evm chain, anvil and Hardhat. Other
        clients may run a later fork that reprices storage (geth 1.17 --dev charges a mint
        ~250k gas), so there transactions are estimated instead."""
        client = self.w3.client_version.lower()
        return client.startswith(("ethereumtester/", "anvil/", "hardhatnetwork/"))

    @property
    def block_number(self) -> int:
        """The latest block's number."""
        return self.w3.eth.block_number

    def balance(self, address: str) -> int:
        """Ether balance of ``address`` in wei."""
        return self.w3.eth.get_balance(Web3.to_checksum_address(address))

    def contract(self, artifact: ArtifactSource, address: str) -> Contract:
        """The contract at ``address`` with ``artifact``'s ABI (or a bare ABI list); refuses an
        address without code, the usual sign of a wrong address or chain."""
        if not isinstance(address, str) or not Web3.is_address(address):
            raise ConfigError(f"not an Ethereum address: {address!r}")
        checksum = Web3.to_checksum_address(address)
        if not self.w3.eth.get_code(checksum):
            raise LedgerError(
                f"no contract at {checksum} on {self.label} "
                "(a wrong address or chain, or the chain was reset?)"
            )
        abi = load_artifact(artifact)["abi"]
        return self.w3.eth.contract(address=checksum, abi=abi)

    def call(
        self, fn: ContractFunction, *, sender: LocalAccount | None = None, block: Any = "latest"
    ) -> Any:
        """Run ``fn`` with ``eth_call`` and return its decoded result (reverts raise)."""
        params: TxParams = {"from": sender.address} if sender else {}
        codec = _CallCodec.of(fn) if not fn.kwargs else None
        try:
            if codec is None:
                return fn.call(params, block_identifier=block)
            data = codec.calldata(self.w3.codec, fn.args)
            if data is None:  # arguments web3 would first normalize (e.g. hex for bytes)
                return fn.call(params, block_identifier=block)
            call: TxParams = {**params, "to": fn.address, "data": data}
            return self._answer(codec, call, block)
        except (ContractLogicError, Web3RPCError) as exc:
            raise self._decoded(exc, fn) from exc
        except BadFunctionCallOutput as exc:
            # An empty return where the ABI promises a value: usually no code at the address
            # any more (a reset dev chain). Say so instead of web3's decoding traceback.
            if fn.address and not self.w3.eth.get_code(fn.address, block):
                raise ContractGone(
                    f"contract gone at {fn.address} on {self.label}: no code there any more "
                    "(the chain was reset?)"
                ) from exc
            raise

    def _answer(self, codec: _CallCodec, call: TxParams, block: Any) -> Any:
        """``call``'s decoded answer at ``block``, kept at "latest" (see :meth:`_kept`)."""

        def ask() -> Any:
            return codec.result(self.w3.codec, self.w3.eth.call(call, block))

        if block != "latest":
            return ask()
        return self._kept(("call", call.get("from"), call["to"], call["data"]), ask)

    def _kept(self, key: tuple[Any, ...], ask: Callable[[], Any]) -> Any:
        """``ask()``, a read of the latest block. On the embedded chain its answer is kept
        under the latest block's hash and ``key`` (the read: a call's sender, address and
        calldata, a log query's parameters) and given again for the same read while that block
        is still the latest: a hash commits to the block and its ancestors, so it is the
        chain's answer (what the provider's own caches would return, without web3's request
        pipeline, eth-tester's formatting and the decoding around them: ~0.4 of a cached
        call's ~0.5 ms; the nodes of a one-process federation ask the same facts of one block
        ~200 times a round at 50 participants). Kept only when no block was mined while it
        was computed, and only when immutable (no list inside)."""
        head = self._latest_hash()
        if head is None:
            return ask()
        full = (head, *key)
        known = self._answers.get(full, _UNKNOWN)  # one lookup: another thread may evict it
        if known is not _UNKNOWN:
            return known
        value = ask()
        if self._latest_hash() == head and _immutable(value):
            self._answers[full] = value
            while len(self._answers) > ANSWER_CACHE_SIZE:
                self._answers.popitem(last=False)
        return value

    def _latest_hash(self) -> bytes | None:
        """The latest block's hash on the embedded chain with its caches on (None elsewhere:
        a node's would cost a request)."""
        provider = self.w3.provider
        if not isinstance(provider, EmbeddedProvider):
            return None
        return provider.latest_block_hash()

    def events(
        self,
        contract: Contract,
        event_name: str,
        from_block: BlockIdentifier = 0,
        to_block: BlockIdentifier = "latest",
        argument_filters: Mapping[str, Any] | None = None,
    ) -> list[EventData]:
        """Decoded ``event_name`` logs of ``contract`` in the block range, oldest first.

        ``argument_filters`` matches indexed arguments by value (a list means "any of").
        """
        try:
            event = contract.events[event_name]
        except Exception as exc:
            raise LedgerError(f"{event_name!r} is not an event of this contract") from exc
        filters = dict(argument_filters or {})
        raw_rpc = isinstance(self.w3.provider, RetryingHTTPProvider)
        embedded = isinstance(self.w3.provider, EmbeddedProvider)
        codec = _EventCodec.of(event.abi) if raw_rpc or embedded else None
        if codec is None or not codec.filters_indexed(filters):
            logs = event.get_logs(
                argument_filters=filters, from_block=from_block, to_block=to_block
            )
            return list(logs)
        params = {
            "address": contract.address,
            "fromBlock": hex(from_block) if isinstance(from_block, int) else from_block,
            "toBlock": hex(to_block) if isinstance(to_block, int) else to_block,
            "topics": codec.topics(filters),
        }
        if embedded:
            # The embedded provider takes web3-formatted parameters: through the middleware
            # (which formats the answer as web3 does: quantities as ints), not web3's
            # per-log result formatting and decoding. A range up to the latest block is a
            # fact of that block: kept (see _kept), e.g. for each member of a committee.
            def ask() -> tuple[EventData, ...]:
                found = self.w3.manager.request_blocking(RPCEndpoint("eth_getLogs"), [params])
                return tuple(self._decoded_logs(codec, found, event_name))

            if to_block != "latest" or not isinstance(from_block, int):
                return list(ask())
            key = ("logs", contract.address, from_block, repr(params["topics"]))
            return list(self._kept(key, ask))
        response = self.w3.provider.make_request(RPCEndpoint("eth_getLogs"), [params])
        if "error" in response:
            raise LedgerError(f"eth_getLogs failed on {self.label}: {response['error']}")
        return self._decoded_logs(codec, response["result"], event_name)

    def _decoded_logs(self, codec: _EventCodec, found: Any, event_name: str) -> list[EventData]:
        try:
            return [codec.decode(raw) for raw in found if not raw.get("removed")]
        except (TypeError, ValueError, KeyError, DecodingError) as exc:
            raise BadRPCResponse(f"{self.label} sent a malformed {event_name} log: {exc}") from exc

    # --- writing --------------------------------------------------------------------------

    def deploy(
        self,
        artifact: ArtifactSource,
        sender: LocalAccount,
        *args: Any,
        gas: int | None = None,
        value: int = 0,
    ) -> Contract:
        """Deploy ``artifact`` with constructor ``args``; the contract at its new address."""
        loaded = load_artifact(artifact)
        if not loaded.get("bytecode") or loaded["bytecode"] in ("0x", ""):
            raise LedgerError(f"artifact {loaded.get('contractName', '?')!r} has no bytecode")
        factory = self.w3.eth.contract(abi=loaded["abi"], bytecode=loaded["bytecode"])
        receipt = self.transact(factory.constructor(*args), sender, gas=gas, value=value)
        deployed = self.w3.eth.contract(address=receipt["contractAddress"], abi=loaded["abi"])
        assert isinstance(deployed, Contract)  # with an address web3 returns an instance
        return deployed

    def transact(
        self,
        fn: ContractCall,
        sender: LocalAccount,
        *,
        gas: int | None = None,
        min_gas: int = 0,
        value: int = 0,
        timeout: float | None = None,
    ) -> TxReceipt:
        """Sign ``fn`` as ``sender``, send it, wait for its receipt; reverts raise decoded.

        ``gas`` skips estimation (then a revert shows up as a status-0 receipt, also raised).
        ``min_gas`` floors the estimate, for calls whose cost depends on transactions that may
        land first in the same block (e.g. the vote that reaches a quorum and finalizes).
        """
        tx = self._build(fn, sender, gas, value, min_gas)
        tx_hash = self._send(tx, sender, fn)
        receipt = self.wait_for_receipt(tx_hash, timeout)
        if receipt["status"] == 0:
            raise self._mined_failure(fn, tx, receipt)
        return receipt

    def send(
        self, fn: ContractCall, sender: LocalAccount, *, gas: int | None = None, value: int = 0
    ) -> HexBytes:
        """Sign and send ``fn`` without waiting; the transaction hash."""
        return self._send(self._build(fn, sender, gas, value), sender, fn)

    def transact_all(
        self, txs: Sequence[TxRequest], *, timeout: float | None = None
    ) -> list[TxReceipt]:
        """Sign and send every transaction of ``txs`` at once, then wait for all their
        receipts; each receipt is checked as :meth:`transact` checks one (the first failure is
        raised, decoded, once every receipt is in). One sender's transactions keep their order.

        Use it where the transactions do not depend on each other's outcome (mints to many
        accounts, one approval per account): on a JSON-RPC node they go out in one batch
        request and a node that mines each arrival (anvil, Hardhat) puts many into one block,
        instead of one block and one round trip per transaction; anvil's cost per block grows
        with the size of the chain's state. Estimates (``gas=None``) are taken before any is
        sent, so a transaction that needs another one of the batch mined first needs ``gas``.
        """
        batch = getattr(self.w3.provider, "batch", None)
        if batch is None:  # the embedded chain mines each send at once: nothing to gain
            built = [self._build(t.fn, t.sender, t.gas, t.value) for t in txs]
            hashes = [self._send(tx, t.sender, t.fn) for tx, t in zip(built, txs, strict=True)]
            refused: Exception | None = None
        else:
            built, hashes, refused = [], [], None
            for start in range(0, len(txs), SEND_BATCH):
                part = slice(start, start + SEND_BATCH)
                built += self._build_batch(batch, txs[part])
                for sent in self._send_batch(batch, built[part], txs[part]):
                    if isinstance(sent, Exception):
                        refused = refused or sent  # a sender's refusal comes before its held ones
                    else:
                        hashes.append(sent)
        receipts: list[TxReceipt] = []
        for receipt in self._receipts(batch, hashes, timeout):
            if isinstance(receipt, Exception):
                raise receipt  # e.g. a timeout: as waiting for each in turn raised it
            receipts.append(receipt)
        if refused is not None:
            refused.add_note(f"{len(hashes)} of the {len(txs)} transactions were mined")
            raise refused
        for t, tx, mined in zip(txs, built, receipts, strict=True):
            if mined["status"] == 0:
                raise self._mined_failure(t.fn, tx, mined)
        return receipts

    def transact_each(
        self, txs: Sequence[TxRequest], *, timeout: float | None = None
    ) -> list[TxReceipt | Exception]:
        """Like :meth:`transact_all`, but each transaction stands alone: its outcome is its
        receipt or what :meth:`transact` would have raised for it (a refused estimate or send,
        a mined revert, a timeout), and a failure does not hold back the others.

        For transactions of many senders that do not depend on one another, e.g. the commits
        of one round's participants in a one-process federation (see :class:`Outbox`). Only
        :class:`~flchain.errors.FLChainError` is an outcome; anything else is raised.
        """
        batch = getattr(self.w3.provider, "batch", None)
        if batch is None:  # the embedded chain mines each send at once: one by one
            one_by_one = functools.partial(self.transact, timeout=timeout)
            return [_outcome(one_by_one, t.fn, t.sender, gas=t.gas, value=t.value) for t in txs]
        outcomes: list[TxReceipt | Exception] = []
        for start in range(0, len(txs), SEND_BATCH):
            part = txs[start : start + SEND_BATCH]
            # Estimates one by one (a refused one is that transaction's outcome): batched
            # sends of the protocol's own transactions have fixed gas and take none.
            built: list[TxParams | Exception] = [
                _outcome(self._build, t.fn, t.sender, t.gas, t.value) for t in part
            ]
            ready = {i: b for i, b in enumerate(built) if not isinstance(b, Exception)}
            sent = self._send_batch(batch, list(ready.values()), [part[i] for i in ready])
            hashes = dict(zip(ready, sent, strict=True))
            awaited = {i: h for i, h in hashes.items() if not isinstance(h, Exception)}
            receipts = self._receipts(batch, list(awaited.values()), timeout)
            receipt_of = dict(zip(awaited, receipts, strict=True))
            for i, (t, tx) in enumerate(zip(part, built, strict=True)):
                one = tx if isinstance(tx, Exception) else hashes[i]
                if isinstance(one, Exception):
                    outcomes.append(one)
                    continue
                receipt = receipt_of[i]
                if not isinstance(receipt, Exception) and receipt["status"] == 0:
                    receipt = self._mined_failure(t.fn, tx, receipt)  # type: ignore[arg-type]
                outcomes.append(receipt)
        return outcomes

    def _build_batch(self, batch: Any, txs: Sequence[TxRequest]) -> list[TxParams]:
        """:meth:`_build` for each of ``txs``, their gas estimates taken in one batch."""
        built = [self._build(t.fn, t.sender, t.gas or 1, t.value) for t in txs]
        guess = [i for i, t in enumerate(txs) if t.gas is None]
        probes = [
            {k: built[i][k] for k in ("from", "to", "data") if k in built[i]}
            | {"value": hex(int(built[i]["value"]))}
            for i in guess
        ]
        answers = batch([("eth_estimateGas", [probe, "pending"]) for probe in probes])
        for i, answer in zip(guess, answers, strict=True):
            if "error" in answer:
                exc = Web3RPCError(str(answer["error"]), answer)
                raise self._decoded(exc, txs[i].fn) from exc
            built[i]["gas"] = int(int(answer["result"], 16) * GAS_MARGIN)
        return built

    def _send_batch(
        self, batch: Any, built: Sequence[TxParams], txs: Sequence[TxRequest]
    ) -> list[HexBytes | Exception]:
        """Sign ``built`` with consecutive nonces per sender and send them in one batch; per
        transaction the hash the node took, or why it did not take it (its refusal, or that
        an earlier one of its sender was refused)."""
        if not built:
            return []
        signed = []
        for tx, t in zip(built, txs, strict=True):
            with self.nonces.lease(t.sender.address) as lease:
                signed.append(sign_transaction(t.sender, {**tx, "nonce": lease.nonce}))
                lease.consume()
        raw = [("eth_sendRawTransaction", [s.raw_transaction.to_0x_hex()]) for s in signed]
        try:
            answers = batch(raw)
        except (RPCUnavailable, BadRPCResponse) as exc:
            # Some or all may have reached the node: re-read the nonces next time.
            for t in txs:
                self.nonces.forget(t.sender.address)
            exc.add_note(f"{len(signed)} transactions may have been sent")
            raise
        sent: list[HexBytes | Exception] = []
        broken: set[str] = set()  # senders with a refused transaction in this batch
        for answer, one, t in zip(answers, signed, txs, strict=True):
            problem: Exception | None = None
            if "error" in answer:
                problem = self._batch_refusal(answer, one, t)
            if problem is None and t.sender.address in broken:
                problem = TransactionFailed(
                    f"{_describe(t.fn)} not sent: an earlier transaction of {t.sender.address} "
                    "in its batch was refused"
                )
            if problem is not None:
                # Its nonce was not taken, so the node holds the sender's later ones of this
                # batch without mining them: they are not waited for; the nonce is re-read.
                broken.add(t.sender.address)
                self.nonces.forget(t.sender.address)
                sent.append(problem)
            else:
                sent.append(HexBytes(one.hash))
        return sent

    def _batch_refusal(
        self, answer: Mapping[str, Any], signed: SignedTransaction, t: TxRequest
    ) -> Exception | None:
        """What an error answer to one send of a batch means: None when the transaction is
        on the node after all (mined with a revert on Hardhat, already known, or taken when
        sent again alone), else the error to raise."""
        exc = Web3RPCError(str(answer["error"]), answer)  # type: ignore[arg-type]
        try:
            clash = self._refusal(exc, signed, t.fn)
            if clash is not None and "too high" in clash.lower():
                # Hardhat runs a batch's requests concurrently: a later nonce may arrive
                # before an earlier one of the same sender. Alone and in order it is taken.
                clash = self._send_raw(signed, t.fn)
        except FLChainError as error:
            # Hardhat mines a reverting transaction and reports the revert as the send's
            # error: then its receipt (status 0) is checked with the others.
            return None if self._receipt_if_mined(signed.hash) else error
        if clash is None:
            return None
        return TransactionFailed(f"{self.label} refused {_describe(t.fn)}: {clash}")

    def _receipts(
        self, batch: Any, hashes: Sequence[HexBytes], timeout: float | None
    ) -> list[TxReceipt | Exception]:
        """:meth:`wait_for_receipt` for many transactions at once: each poll asks for every
        receipt still missing in one batch request (at 1,000 participants a phase's receipts
        were 1,000 round trips); a receipt missing at the deadline is a
        :class:`TransactionTimeout`. ``batch`` is the provider's, or ``None`` (one by one)."""
        if batch is None:
            return [_outcome(self.wait_for_receipt, h, timeout) for h in hashes]
        timeout = self.receipt_timeout if timeout is None else timeout
        deadline, delay = time.monotonic() + timeout, 0.005
        found: dict[int, TxReceipt | Exception] = {}
        while True:
            missing = [i for i in range(len(hashes)) if i not in found]
            for start in range(0, len(missing), SEND_BATCH):
                part = missing[start : start + SEND_BATCH]
                calls = [("eth_getTransactionReceipt", [hashes[i].to_0x_hex()]) for i in part]
                for i, answer in zip(part, batch(calls), strict=True):
                    if answer.get("result") is not None:
                        found[i] = _outcome(self._receipt_from, answer["result"])
            missing = [i for i in missing if i not in found]
            if not missing:
                return [found[i] for i in range(len(hashes))]
            if time.monotonic() >= deadline:
                for i in missing:
                    found[i] = TransactionTimeout(
                        f"no receipt for transaction {hashes[i].to_0x_hex()} on {self.label} "
                        f"after {timeout:g}s (is the node mining?)"
                    )
                return [found[i] for i in range(len(hashes))]
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.25)

    def _receipt_from(self, raw: Mapping[str, Any]) -> TxReceipt:
        """A receipt from its JSON-RPC form, as web3's ``get_transaction_receipt`` formats it."""
        try:
            receipt = AttributeDict.recursive(receipt_formatter(dict(raw)))
        except (TypeError, ValueError) as exc:  # web3 could not format a field
            raise BadRPCResponse(f"{self.label} sent a malformed receipt: {exc}") from exc
        if not isinstance(receipt.get("status"), int):
            raise BadRPCResponse(f"{self.label} sent a receipt without a status")
        return cast(TxReceipt, receipt)

    def wait_for_receipt(self, tx_hash: HexBytes | str, timeout: float | None = None) -> TxReceipt:
        """Poll for ``tx_hash``'s receipt; :class:`TransactionTimeout` after ``timeout`` s."""
        timeout = self.receipt_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        delay = 0.005
        params = [HexBytes(tx_hash).to_0x_hex()]
        while True:
            # The request manager, not w3.eth: web3's per-method parameter formatting is a
            # quarter of an embedded receipt read (0.27 vs 0.36 ms; a round sends and waits
            # twice a participant); the receipt is formatted as w3.eth formats it.
            raw = self.w3.manager.request_blocking(RPCEndpoint("eth_getTransactionReceipt"), params)
            if raw is not None:
                return self._receipt_from(raw)
            if time.monotonic() >= deadline:
                raise TransactionTimeout(
                    f"no receipt for transaction {HexBytes(tx_hash).to_0x_hex()} on {self.label} "
                    f"after {timeout:g}s (is the node mining?)"
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.25)

    # --- test-chain controls (anvil, devchain, embedded) -----------------------------------

    def mine(self, n: int = 1) -> None:
        """Mine ``n`` empty blocks (``anvil_mine``; ``evm_mine`` n times where unsupported;
        on ``geth --dev``, zero beacon withdrawals)."""
        if n < 1:
            raise LedgerError(f"can only mine a positive number of blocks, got {n}")
        try:
            self._rpc("anvil_mine", [hex(min(n, MINE_CHUNK))])
        except RPCUnavailable:
            raise  # the node is there but slow or gone: n single blocks would not help
        except LedgerError:
            pass  # no anvil_mine on this node
        else:
            for done in range(MINE_CHUNK, n, MINE_CHUNK):
                self._rpc("anvil_mine", [hex(min(MINE_CHUNK, n - done))])
            return
        try:
            self._rpc("evm_mine", [])
        except LedgerError:
            self._mine_by_withdrawals(n)
            return
        for _ in range(n - 1):
            self._rpc("evm_mine", [])

    def _mine_by_withdrawals(self, n: int, timeout: float = 30.0) -> None:
        """``geth --dev`` has no ``evm_mine``, but its dev API seals a block for each queued
        beacon withdrawal: queue a zero one per block and wait for the block to appear."""
        for _ in range(n):
            target, deadline = self.block_number + 1, time.monotonic() + timeout
            withdrawal = {"index": "0x0", "validatorIndex": "0x0", "address": "0x" + "00" * 20}
            self._rpc("dev_addWithdrawal", [{**withdrawal, "amount": "0x0"}])
            while self.block_number < target:
                if time.monotonic() > deadline:
                    raise TransactionTimeout(f"{self.label} did not mine a block in {timeout:g}s")
                time.sleep(0.005)

    def snapshot(self) -> str:
        """Snapshot the chain state (``evm_snapshot``); an id for :meth:`revert`."""
        return str(self._rpc("evm_snapshot", []))

    def revert(self, snapshot_id: str) -> None:
        """Return to a :meth:`snapshot` (anvil forgets the snapshot after one revert)."""
        if self._rpc("evm_revert", [snapshot_id]) is False:
            raise LedgerError(f"{self.label} has no snapshot {snapshot_id}")
        # Accounts' nonces went back with the state.
        self.nonces.forget()
        self._fees = (0.0, {})

    def set_automine(self, enabled: bool) -> None:
        """Mine each transaction at once (the default) or only on :meth:`mine`."""
        self._rpc("evm_setAutomine", [enabled])

    # --- internals ------------------------------------------------------------------------

    def _rpc(self, method: str, params: list[Any]) -> Any:
        try:
            return self.w3.manager.request_blocking(method, params)  # type: ignore[arg-type]
        except Web3RPCError as exc:
            raise LedgerError(f"{method} failed on {self.label}: {rpc_message(exc)}") from exc

    def _fee_fields(self) -> dict[str, int]:
        """EIP-1559 fees where the chain has a base fee, else a legacy gas price: read once
        per latest block on the embedded chain (whose head costs nothing to ask; a wall-clock
        cache there would make the signed transactions, and so the blocks, depend on timing),
        cached 2 s on a node (two requests saved per transaction)."""
        fetched, fees = self._fees
        key: float | bytes | None = self._latest_hash()
        if key is None:
            key = time.monotonic()
            if isinstance(fetched, float) and key - fetched < 2.0:
                return fees
        elif key == fetched:
            return fees
        base_fee = self.w3.eth.get_block("latest").get("baseFeePerGas")
        if base_fee is None:
            fees = {"gasPrice": self.w3.eth.gas_price}
        else:
            tip = self.w3.eth.max_priority_fee
            # Twice the base fee stays valid through several full blocks of fee increases.
            fees = {"maxFeePerGas": 2 * base_fee + tip, "maxPriorityFeePerGas": tip}
        self._fees = (key, fees)
        return fees

    def _build(
        self, fn: ContractCall, sender: LocalAccount, gas: int | None, value: int, min_gas: int = 0
    ) -> TxParams:
        # Every field given, so web3 only encodes calldata and makes no RPC calls here.
        base: TxParams = {
            "from": sender.address,
            "value": value,
            "chainId": self.chain_id,
            "gas": gas or 0,
            "nonce": 0,
            **self._fee_fields(),  # type: ignore[typeddict-item]
        }
        tx = self._encoded_call(fn, base) or fn.build_transaction(base)
        tx.pop("nonce", None)
        if not tx.get("to"):
            tx.pop("to", None)  # contract creation
        if gas is None:
            probe = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
            try:
                # In the pending block: the one the transaction lands in (block.number + 1), so
                # deadline checks agree with inclusion (anvil estimates at "latest" otherwise).
                estimate = self.w3.eth.estimate_gas(probe, "pending")  # type: ignore[arg-type]
            except (ContractLogicError, Web3RPCError) as exc:
                raise self._decoded(exc, fn) from exc
            tx["gas"] = max(int(estimate * GAS_MARGIN), min_gas)
        return tx

    def _encoded_call(self, fn: ContractCall, base: TxParams) -> TxParams | None:
        """What ``fn.build_transaction(base)`` builds for a call of a deployed contract's
        function with every field in ``base``: ``base`` and the contract's address and
        calldata, encoded by the function's cached codec (web3 would search the ABI for the
        function, check the arguments against it and encode them through its normalizers:
        0.22 ms for a commit, 0.30 ms for a reveal; this takes 0.006-0.013 ms). None where
        web3 must build it: a constructor, keyword arguments, a value sent (web3 checks the
        function is payable), arguments web3 would first normalize."""
        if not isinstance(fn, ContractFunction) or fn.kwargs or not fn.address:
            return None
        if base.get("value") or "data" in base or "to" in base:
            return None
        codec = _CallCodec.of(fn)
        data = codec.calldata(self.w3.codec, fn.args) if codec is not None else None
        if data is None:
            return None
        return {**base, "to": fn.address, "data": data}

    def _send(self, tx: TxParams, sender: LocalAccount, fn: ContractCall | None = None) -> HexBytes:
        with self.nonces.lease(sender.address) as lease:
            for _ in range(5):
                signed = sign_transaction(sender, {**tx, "nonce": lease.nonce})
                try:
                    refused = self._send_raw(signed, fn)
                except RPCUnavailable as exc:
                    # It may or may not have reached the node: re-read the nonce next time.
                    self.nonces.forget(sender.address)
                    exc.add_note(f"transaction {signed.hash.to_0x_hex()} may have been sent")
                    raise
                except TransactionFailed as exc:
                    # Hardhat in auto-mine mode mines a reverting transaction and reports the
                    # revert as the send's error: its nonce is used up all the same.
                    receipt = self._receipt_if_mined(signed.hash)
                    if receipt is None:
                        raise
                    lease.consume()
                    error = _say_gas(exc, fn, receipt, tx["gas"]) if fn is not None else exc
                    error.add_note(
                        f"mined in transaction {signed.hash.to_0x_hex()}, block "
                        f"{receipt['blockNumber']}, with status {receipt['status']}"
                    )
                    if error is exc:
                        raise
                    raise error from exc
                if refused is None:
                    lease.consume()
                    return HexBytes(signed.hash)
                lease.resync()
            raise TransactionFailed(f"{self.label} kept refusing nonces of {sender.address}")

    def _send_raw(self, signed: SignedTransaction, fn: ContractCall | None = None) -> str | None:
        """Send; None when the node has the transaction, the refusal message on a nonce clash.

        A refusal that carries revert data (Hardhat executes on send) is raised decoded into
        the contract's custom error when ``fn`` says which contract it was for."""
        try:  # through the request manager: see wait_for_receipt
            raw = HexBytes(signed.raw_transaction).to_0x_hex()
            self.w3.manager.request_blocking(RPCEndpoint("eth_sendRawTransaction"), [raw])
            return None
        except Web3RPCError as exc:
            return self._refusal(exc, signed, fn)

    def _refusal(
        self, exc: Web3RPCError, signed: SignedTransaction, fn: ContractCall | None
    ) -> str | None:
        """What the node's error answer to sending ``signed`` means: None when the node has
        the transaction after all, the message on a nonce clash; anything else raises."""
        if fn is not None and revert_data(exc) is not None:
            raise self._decoded(exc, fn) from exc
        message = rpc_message(exc)
        if ALREADY_KNOWN.search(message):
            return None  # an earlier attempt of ours got through
        if NONCE_MISMATCH.search(message):
            if self._has_transaction(signed.hash):
                return None  # ours, already mined
            return message
        raise TransactionFailed(f"{self.label} refused the transaction: {message}") from exc

    def _receipt_if_mined(self, tx_hash: bytes) -> TxReceipt | None:
        try:
            return self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None

    def _has_transaction(self, tx_hash: bytes) -> bool:
        try:
            self.w3.eth.get_transaction(HexBytes(tx_hash))
            return True
        except TransactionNotFound:
            return False

    def _traced_revert(self, tx_hash: str) -> bytes | None:
        """Revert data of a mined transaction from the node's call tracer, else from its
        default (struct-log) tracer, which Hardhat 2 has though it refuses the call tracer;
        None if the node cannot trace or the transaction left no data."""
        for options, read in (
            ({"tracer": "callTracer"}, trace_output),
            # Only the return value is wanted: leave the per-opcode memory, stack and storage out.
            (
                {"disableMemory": True, "disableStack": True, "disableStorage": True},
                struct_log_output,
            ),
        ):
            try:
                response = self.w3.provider.make_request(
                    "debug_traceTransaction",  # type: ignore[arg-type]
                    [tx_hash, options],
                )
            except (FLChainError, Web3RPCError, ValueError, TypeError, NotImplementedError):
                continue
            result = response.get("result") if isinstance(response, Mapping) else None
            if (data := read(result)) is not None:
                return data
        return None

    def _decoded(self, exc: Exception, fn: ContractCall) -> Exception:
        data = revert_data(exc)
        if data is None:
            if isinstance(exc, Web3RPCError):
                return TransactionFailed(f"{_describe(fn)}: {rpc_message(exc)}")
            return TransactionFailed(f"{_describe(fn)}: {exc}")
        abi = fn.contract_abi if isinstance(fn, ContractFunction) else fn.abi
        return decode_revert(data, abi, context=f"{_describe(fn)}: ")

    def _mined_failure(self, fn: ContractCall, tx: TxParams, receipt: TxReceipt) -> Exception:
        """Why a mined transaction failed: the node's trace of it where the node can trace
        (anvil, geth), else a replay on its block's state (the block's number and every
        transaction in it: on an automining chain only this one), then on the state before."""
        tx_hash = receipt["transactionHash"].to_0x_hex()
        block = receipt["blockNumber"]
        error = _say_gas(self._mined_revert(fn, tx, receipt), fn, receipt, tx["gas"])
        error.add_note(f"mined in transaction {tx_hash}, block {block}, with status 0")
        return error

    def _mined_revert(self, fn: ContractCall, tx: TxParams, receipt: TxReceipt) -> Exception:
        """:meth:`_mined_failure`'s error, from the node's trace or a replay."""
        block = receipt["blockNumber"]
        traced = self._traced_revert(receipt["transactionHash"].to_0x_hex())
        if traced:
            abi = fn.contract_abi if isinstance(fn, ContractFunction) else fn.abi
            return decode_revert(traced, abi, context=f"{_describe(fn)}: ")
        replay = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}
        try:
            # First on the block's own state and number: a replay before it would see
            # block.number = block - 1, which misjudges deadline checks (a fixed-gas commit
            # sent just past a phase's end, or a reveal just after one).
            self.w3.eth.call(replay, block_identifier=block)  # type: ignore[arg-type]
            self.w3.eth.call(replay, block_identifier=block - 1)  # type: ignore[arg-type]
        except (ContractLogicError, Web3RPCError) as exc:
            error = self._decoded(exc, fn)
        else:
            used, limit = receipt["gasUsed"], tx["gas"]
            why = "out of gas" if used >= limit else "replaying it did not fail"
            message = f"{_describe(fn)}: failed on-chain ({why}, gas {used}/{limit})"
            error = TransactionFailed(message)
        return error


def _say_gas(error: Exception, fn: ContractCall, receipt: TxReceipt, limit: Any) -> Exception:
    """``error`` of a mined transaction; a revert without data (which is also what an inner
    call that ran out of gas leaves) re-made to say the gas it used of its limit."""
    if isinstance(error, UndecodedRevert) and not error.data:
        return UndecodedRevert(
            b"", context=f"{_describe(fn)} (gas {receipt['gasUsed']} of {limit}): "
        )
    return error


#: What a queued transaction's sender does with its outcome (see :class:`Outbox`).
Outcome = Callable[[TxReceipt | Exception], None]


class Outbox:
    """Transactions of many senders held back and sent together (:meth:`Chain.transact_each`).

    In the one-process federation each node's step sent its commit (or reveal) alone and
    waited for its receipt: on anvil one block per transaction, and its cost per block grows
    with the chain's state (1.2 ms of anvil CPU per commit at 100 participants, 7.6 at 1,000;
    sent together, 1.3). A node given an outbox queues the transaction with what to do with
    its outcome; the driver :meth:`flush`-es once it has stepped every node of a phase, before
    it reads the chain again (a queued transaction is not on the chain until then).
    """

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._queued: list[tuple[TxRequest, Outcome]] = []

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, tx: TxRequest, done: Outcome) -> None:
        """Queue ``tx``; ``done`` gets its receipt (or failure) at the next :meth:`flush`."""
        self._queued.append((tx, done))

    def flush(self) -> int:
        """Send everything queued and hand each outcome to its ``done``; returns how many were
        sent. The first exception a ``done`` raises is raised once every ``done`` has run."""
        queued, self._queued = self._queued, []
        if not queued:
            return 0
        outcomes = self.chain.transact_each([tx for tx, _ in queued])
        first: Exception | None = None
        for (_, done), outcome in zip(queued, outcomes, strict=True):
            try:
                done(outcome)
            except Exception as exc:  # every sender hears its outcome before one is raised
                first = first or exc
        if first is not None:
            raise first
        return len(queued)


def _outcome(run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``run(*args, **kwargs)``, or the :class:`FLChainError` it raised (as a value)."""
    try:
        return run(*args, **kwargs)
    except FLChainError as exc:
        return exc


class _EventCodec:
    """Topics and decoding of one event's logs with eth-abi directly, for :meth:`Chain.events`
    on a JSON-RPC node and the embedded chain: web3's decoding costs ~1.5 ms a log and its log
    formatting ~0.5 ms, the node's answer ~0.02 ms a log (a committee member's query of 1,000
    reveals: ~2 s against ~0.1 s; on the embedded chain 20 logs took 5.7 ms, now 2.6 ms).
    Events with dynamic or composite indexed arguments (none of FLChain's) are left to web3
    (:meth:`of` is None for them)."""

    _cache: ClassVar[dict[str, _EventCodec | None]] = {}

    def __init__(self, abi: Mapping[str, Any]) -> None:
        inputs = abi["inputs"]
        self.name: str = abi["name"]
        signature = f"{self.name}({','.join(i['type'] for i in inputs)})"
        self.topic0 = "0x" + keccak(text=signature).hex()
        self.names = [i["name"] for i in inputs]
        self.indexed = [(i["name"], i["type"]) for i in inputs if i["indexed"]]
        self.data = [(i["name"], i["type"]) for i in inputs if not i["indexed"]]

    @classmethod
    def of(cls, abi: Mapping[str, Any]) -> _EventCodec | None:
        key = json.dumps(abi, sort_keys=True)
        if key not in cls._cache:
            inputs = abi["inputs"]
            plain = all(_STATIC_TOPIC.fullmatch(i["type"]) for i in inputs if i["indexed"])
            flat = not any(i["type"].startswith("tuple") for i in inputs)
            cls._cache[key] = cls(abi) if plain and flat and not abi.get("anonymous") else None
        return cls._cache[key]

    def filters_indexed(self, filters: Mapping[str, Any]) -> bool:
        """Whether every filter names an indexed argument (others are web3's to match)."""
        return set(filters) <= {name for name, _ in self.indexed}

    def topics(self, filters: Mapping[str, Any]) -> list[Any]:
        """The ``eth_getLogs`` topics: the event's, then each indexed argument's value (a
        list: any of them; absent or None: any)."""
        out: list[Any] = [self.topic0]
        for name, kind in self.indexed:
            wanted = filters.get(name)
            if wanted is None:
                out.append(None)
            elif isinstance(wanted, list | tuple):
                out.append(["0x" + abi_encode([kind], [v]).hex() for v in wanted])
            else:
                out.append("0x" + abi_encode([kind], [wanted]).hex())
        while out[-1] is None:
            out.pop()
        return out

    def decode(self, raw: Mapping[str, Any]) -> EventData:
        """One log as web3's ``get_logs`` gives it (addresses checksummed)."""
        topics, values = raw["topics"][1:], {}
        if len(topics) != len(self.indexed):
            raise ValueError(f"{len(topics)} topics for {len(self.indexed)} indexed arguments")
        for (name, kind), topic in zip(self.indexed, topics, strict=True):
            values[name] = _plain_abi(kind, abi_decode([kind], HexBytes(topic))[0])
        decoded = abi_decode([kind for _, kind in self.data], HexBytes(raw["data"]))
        for (name, kind), value in zip(self.data, decoded, strict=True):
            values[name] = _plain_abi(kind, value)
        return AttributeDict(  # type: ignore[return-value]
            {
                "args": AttributeDict({name: values[name] for name in self.names}),
                "event": self.name,
                "logIndex": _quantity(raw["logIndex"]),
                "transactionIndex": _quantity(raw["transactionIndex"]),
                "transactionHash": HexBytes(raw["transactionHash"]),
                "address": to_address(raw["address"]),
                "blockHash": HexBytes(raw["blockHash"]),
                "blockNumber": _quantity(raw["blockNumber"]),
            }
        )


class _CallCodec:
    """One contract function's calldata and return value with eth-abi directly, for
    :meth:`Chain.call` and :meth:`Chain._encoded_call`: what web3's ``fn.call()`` sends and
    returns and ``fn.build_transaction()`` encodes (arguments in the ABI's
    order, addresses checksummed, arrays as lists, structs as tuples, one output unwrapped),
    without its per-call ABI search and its normalizer passes over every argument and output
    value (~0.3 ms of a view call's ~0.7 ms on the embedded chain, most of it for a value the
    backend answers from its cache; a one-process federation makes ~370 calls a round at 50
    participants)."""

    #: id of an ABI element -> (the element, kept alive so the id is not reused; its codec),
    #: least recently used first: each wrapper of a contract loads its own ABI's elements.
    _cache: ClassVar[OrderedDict[int, tuple[Mapping[str, Any], _CallCodec]]] = OrderedDict()
    _CACHE_SIZE: ClassVar[int] = 1024

    def __init__(self, abi: Mapping[str, Any]) -> None:
        self.selector = function_abi_to_4byte_selector(abi)  # type: ignore[arg-type]
        self.inputs = get_abi_input_types(abi)  # type: ignore[arg-type]
        self.outputs = get_abi_output_types(abi)  # type: ignore[arg-type]
        self._kinds = [parse_abi_type(kind) for kind in self.outputs]

    @classmethod
    def of(cls, fn: ContractFunction) -> _CallCodec | None:
        """The codec of ``fn``'s ABI element (None for anything but a function: web3's)."""
        abi = fn.abi
        known = cls._cache.get(id(abi))
        if known is not None and known[0] is abi:
            cls._cache.move_to_end(id(abi))
            return known[1]
        if abi.get("type") != "function":
            return None
        codec = cls(abi)
        cls._cache[id(abi)] = (abi, codec)
        while len(cls._cache) > cls._CACHE_SIZE:
            cls._cache.popitem(last=False)
        return codec

    def calldata(self, codec: ABICodec, args: Sequence[Any]) -> HexStr | None:
        """``args`` encoded after the selector; None when ``codec`` refuses them as given."""
        try:
            return HexStr("0x" + (self.selector + codec.encode(self.inputs, args)).hex())
        except (EncodingError, TypeError, ValueError):
            return None

    def result(self, codec: ABICodec, raw: bytes) -> Any:
        """The decoded return value; an undecodable one raises as web3's call does."""
        try:
            values = codec.decode(self.outputs, raw)
        except DecodingError as exc:
            raise BadFunctionCallOutput(f"could not decode {raw!r} as {self.outputs}") from exc
        plain = [_as_web3(kind, v) for kind, v in zip(self._kinds, values, strict=True)]
        return plain[0] if len(plain) == 1 else plain


#: No answer kept (``None`` is a possible answer).
_UNKNOWN = object()


def _immutable(value: Any) -> bool:
    """Whether a decoded answer holds no list (arrays decode as lists), so that callers can
    share it."""
    if isinstance(value, list):
        return False
    return not isinstance(value, tuple) or all(map(_immutable, value))


def _as_web3(kind: ABIType, value: Any) -> Any:
    """An eth-abi value of ``kind`` as web3's return normalizers leave it."""
    if kind.is_array:
        return [_as_web3(kind.item_type, v) for v in value]
    if isinstance(kind, TupleType):
        return tuple(_as_web3(k, v) for k, v in zip(kind.components, value, strict=True))
    return to_address(value) if getattr(kind, "base", "") == "address" else value


#: Indexed argument types whose topic is their ABI encoding (dynamic ones are hashed).
_STATIC_TOPIC = re.compile(r"address|bool|u?int\d*|bytes\d+")


def _quantity(value: str | int) -> int:
    """A JSON-RPC quantity: ``0x`` hex from a node, already an int from the embedded chain."""
    return value if isinstance(value, int) else int(value, 16)


def _plain_abi(kind: str, value: Any) -> Any:
    """eth-abi's value as web3 gives it: addresses checksummed."""
    return to_address(value) if kind == "address" else value


def _web3(provider: Any) -> Web3:
    # Only the attribute-dict formatting: we fill every transaction field ourselves, so the
    # default gas/ENS/validation middleware would only add round trips.
    return Web3(provider, middleware=[AttributeDictMiddleware])


def _describe(fn: ContractCall) -> str:
    if isinstance(fn, ContractConstructor):
        return "constructor"
    args = ", ".join(map(repr, fn.args))
    return f"{fn.fn_name}({args})"
