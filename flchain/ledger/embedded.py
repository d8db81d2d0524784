"""The embedded chain: an eth-tester/py-evm chain whose reads cost the same at any height.

Stock eth-tester answers every read by rebuilding what it needs from the database:

* ``eth_call`` builds a fresh py-evm state from the block's state root *twice* (once to look up
  the caller's nonce, once to execute), so every account, code and storage slot the call
  touches is found again by walking the state trie and RLP-decoding its nodes;
* ``eth_getLogs`` serialises, validates and normalises every block in the range and the
  receipt of every transaction in them, so a query from block 0 costs O(chain length);
* ``eth_accounts``, which web3's eth-tester middleware calls three times for every
  ``eth_call`` without a ``from``, derives each funded account's public key from its private
  key (an elliptic-curve multiplication per account, per call).

:class:`EmbeddedTester` keeps what those reads rebuild, each piece keyed so that it can only
be reused while it is still true: a py-evm state per *block hash* (a block hash commits to its
state root, so a state cached for a hash stays right across new blocks and snapshot reverts),
a log index checked against the canonical hash of the last block it indexed (a hash commits to
every ancestor, so one comparison proves the whole index still describes the canonical chain),
and the account list per key tuple. Every answer is still computed by py-evm and eth-tester's
own matching and formatting code; ``caching=False`` switches all of it off, so tests and
``scripts/bench_chain_growth.py`` can compare both paths on one chain.

The chain is also a function of what is sent to it: stock eth-tester stamps blocks with the
wall clock and draws each block's ``mix_hash`` (``prevrandao``) from ``os.urandom``, so block
hashes (and whatever a contract derives from them, e.g. a committee seed from ``blockhash``)
differ between two runs of the same steps. Here genesis is stamped :data:`GENESIS_TIMESTAMP`,
each block one second after its parent (unless ``time_travel`` says otherwise), and each
block's ``mix_hash`` is the hash of its parent's.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from eth.abc import (
    BlockAPI,
    BlockHeaderAPI,
    ChainAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    StateAPI,
    VirtualMachineAPI,
)
from eth.constants import ZERO_ADDRESS
from eth.estimators.gas import _get_computation_error, binary_gas_search_1000_tolerance
from eth.exceptions import InvalidInstruction as EVMInvalidInstruction
from eth.exceptions import Revert as EVMRevert
from eth.vm.forks.cancun.state import get_total_blob_gas
from eth.vm.forks.paris import ParisVM
from eth.vm.forks.prague import PragueVM
from eth.vm.spoof import SpoofTransaction
from eth_keys import keys
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.backends.pyevm.main import (
    EVMSpoofTransaction,
    _execute_and_revert_transaction,
    _get_block_by_number,
    get_default_account_state,
    get_default_genesis_params,
)
from eth_tester.backends.pyevm.serializers import serialize_log, serialize_transaction_receipt
from eth_tester.constants import BLOB_TX_TYPE, ZERO_ADDRESS_HEX
from eth_tester.exceptions import BlockNotFound
from eth_tester.exceptions import TransactionFailed as TesterTransactionFailed
from eth_tester.utils.filters import check_if_log_matches
from eth_utils import keccak, to_wei

from flchain.ledger import index_trie, node_codec
from flchain.ledger.accounts import DEV_MNEMONIC, dev_accounts
from flchain.ledger.interpreter import LeanPragueVM

#: eth-tester's fixed chain id (its py-evm chain class hard-codes it).
EMBEDDED_CHAIN_ID = 131277322940537
#: Each dev account starts with this much ether, like anvil's default.
DEV_BALANCE_WEI = to_wei(10_000, "ether")
#: The embedded chain's genesis time (2025-01-01 00:00 UTC); each block is one second later
#: than its parent, so the same steps build the same blocks in every run.
GENESIS_TIMESTAMP = 1_735_689_600
#: How many block states :meth:`_Backend.call` keeps. A node reads "latest" almost always;
#: a few more cover calls pinned to a recent block (e.g. replaying a failed transaction).
STATE_CACHE_SIZE = 8
#: How many call answers :meth:`_Backend.call` keeps (each keyed by block hash and call).
CALL_CACHE_SIZE = 4096
#: How many senders of transactions sent but not yet asked for a receipt are kept.
SENDER_CACHE_SIZE = 4096


class _Reverted(TesterTransactionFailed):
    """A revert from eth-tester that keeps its raw data (stock eth-tester stringifies it)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.data = data


def _stamped_by_parent(vm_class: type[VirtualMachineAPI]) -> type[VirtualMachineAPI]:
    """``vm_class`` whose new headers are stamped one second after their parent unless a
    timestamp is given (py-evm stamps the wall clock when it is later than that). Every
    header py-evm and eth-tester build is built here: the pending block's, and the costless
    block an estimate or a call runs in."""
    create: Callable[..., BlockHeaderAPI] = vm_class.create_header_from_parent
    if getattr(create, "stamped_by_parent", False):
        return vm_class

    def create_header_from_parent(
        parent_header: BlockHeaderAPI | None, **header_params: Any
    ) -> BlockHeaderAPI:
        if parent_header is not None:  # genesis takes the genesis parameters' timestamp
            header_params.setdefault("timestamp", parent_header.timestamp + 1)
        return create(parent_header, **header_params)

    create_header_from_parent.stamped_by_parent = True  # type: ignore[attr-defined]
    return vm_class.configure(
        __name__=vm_class.__name__,
        create_header_from_parent=staticmethod(create_header_from_parent),
    )


class _Backend(PyEVMBackend):
    """py-evm backend whose ``eth_call`` keeps the raw revert data and reuses block states,
    and whose receipt lookup does not scan the chain.

    eth-tester finds a transaction by walking back from the head, so ``eth_getLogs`` (which
    fetches a receipt per transaction of every block in range) costs O(chain length) per
    transaction. Every block it reads is read through :meth:`get_block_by_number` first, so
    remembering there which block holds each transaction makes the lookup O(1).
    """

    #: False: every call builds its state from scratch, as stock eth-tester does.
    caching: bool = True
    #: True: the chain runs :class:`~flchain.ledger.interpreter.LeanPragueVM` (py-evm's
    #: Prague with a leaner opcode loop, same observables); False: py-evm's ``PragueVM``.
    lean_interpreter: bool = True
    #: True: sent transactions wait in the pending block for the next mined block.
    holding: bool = False
    _tx_blocks: dict[bytes, int]
    _states: OrderedDict[bytes, StateAPI]
    _states_chain: ChainAPI | None = None

    def __init__(self, *args: Any, lean_interpreter: bool = True, **kwargs: Any) -> None:
        self.lean_interpreter = lean_interpreter  # read by reset_to_genesis, which __init__ runs
        if kwargs.get("genesis_parameters") is None:
            kwargs["genesis_parameters"] = get_default_genesis_params(
                overrides={"timestamp": GENESIS_TIMESTAMP}
            )
        super().__init__(*args, **kwargs)

    def reset_to_genesis(self, *args: Any, **kwargs: Any) -> None:
        super().reset_to_genesis(*args, **kwargs)
        chain_class = type(self.chain)  # eth-tester defines a class per chain it sets up
        if self.lean_interpreter and chain_class.vm_configuration == ((0, PragueVM),):
            # The VM class is looked up on the chain class for every header, so the genesis
            # block (no code runs in it) stays as built and every later block runs lean.
            # Passing ``vm_configuration`` to eth-tester instead would also swap the VM's
            # consensus class (it amends any configuration it is given).
            chain_class.vm_configuration = ((0, LeanPragueVM),)
        chain_class.vm_configuration = tuple(
            (number, _stamped_by_parent(vm_class))
            for number, vm_class in chain_class.vm_configuration
        )
        # The chain object eth-tester just built has a pending header stamped by the wall
        # clock: built again.
        self.chain.header = self.chain.create_header_from_parent(self.chain.get_canonical_head())

    def get_block_by_number(self, block_number: Any, full_transaction: bool = True) -> Any:
        block = _get_block_by_number(self.chain, block_number)
        index = self.__dict__.setdefault("_tx_blocks", {})
        for tx in block.transactions:
            index[tx.hash] = block.number
        return super().get_block_by_number(block_number, full_transaction)

    def send_raw_transaction(self, raw_transaction: bytes) -> bytes:
        if not self.holding or raw_transaction[:1] == bytes([BLOB_TX_TYPE]):
            self._settle()
            self._fill_pending_block()  # stock path: it appends to the block's own list
            return bytes(super().send_raw_transaction(raw_transaction))
        # py-evm's MiningChain.apply_transaction, except that the pending block's transaction
        # and receipt tries are built once, when it is mined: py-evm rebuilds both (and
        # decodes every receipt from the database) for every transaction it adds, O(n^2) in
        # the block's size. And as py-evm imports a block (VM.apply_all_transactions), one VM
        # state runs all of the block's transactions and its state root is computed once, not
        # after each (a trie update of every account and slot touched, and a fresh state with
        # cold caches for the next transaction): the header's gas and bloom advance with each
        # transaction, its state root when something reads the pending state (_settle).
        chain = self.chain
        held = self.__dict__.setdefault("_held", [])
        open_block = self.__dict__.get("_open")
        if open_block is None or open_block[0] is not chain or open_block[1] is not chain.header:
            self._settle()
            open_block = (chain, chain.header, chain.get_vm(chain.header), chain.header, len(held))
        vm = open_block[2]
        transaction = vm.get_transaction_builder().decode(raw_transaction)
        # A refusal (nonce, balance, gas) is raised here, before the state is touched.
        vm.validate_transaction_against_header(chain.header, transaction)
        vm.state.validate_transaction(transaction)
        try:
            receipt, _ = vm.apply_transaction(chain.header, transaction)
        except BaseException:
            # Failed while running (not expected once validated): rebuild the pending block
            # without it, as a fresh VM per transaction would have left it.
            self.__dict__.pop("_open", None)
            self._replay(*open_block[3:])
            raise
        chain.header = vm.add_receipt_to_header(chain.header, receipt)
        self._open = (chain, chain.header, vm, *open_block[3:])
        held.append((transaction, receipt))
        self._remember_sender(transaction)
        return bytes(transaction.hash)

    def _remember_sender(self, transaction: SignedTransactionAPI) -> None:
        """Keep the sender recovered (and checked) while ``transaction`` was validated, for its
        receipt: the receipt's ``from`` is recovered again from the copy of the transaction
        decoded from the mined block (an elliptic-curve recovery and an RLP encoding of the
        transaction). The hash names the signed transaction, signature included, and the
        sender is a function of it, so a sender found under the hash is that copy's sender."""
        senders: OrderedDict[bytes, bytes] = self.__dict__.setdefault("_senders", OrderedDict())
        senders[transaction.hash] = transaction.sender
        if len(senders) > SENDER_CACHE_SIZE:
            senders.popitem(last=False)

    def _settle(self) -> None:
        """Give the pending header the state root of the transactions held so far (see
        :meth:`send_raw_transaction`); every read of the pending state and every change to
        the chain comes here first."""
        open_block = self.__dict__.pop("_open", None)
        if open_block is None:
            return
        chain, header, vm = open_block[:3]
        if chain is self.chain and chain.header is header:
            vm.state.persist()
            chain.header = header.copy(state_root=vm.state.state_root)

    def _replay(self, base: BlockHeaderAPI, first: int) -> None:
        """The pending block from ``base`` (its state root settled) with the transactions
        held from position ``first`` on, applied again and settled."""
        chain = self.chain
        vm, header = chain.get_vm(base), base
        for transaction, _ in self.held()[first:]:
            receipt, _ = vm.apply_transaction(header, transaction)
            header = vm.add_receipt_to_header(header, receipt)
        vm.state.persist()
        chain.header = header.copy(state_root=vm.state.state_root)

    def held(self) -> list[tuple[SignedTransactionAPI, ReceiptAPI]]:
        """The transactions held in the pending block and their receipts, in order."""
        return list(self.__dict__.get("_held", []))

    def mine_blocks(self, num_blocks: int = 1, coinbase: Any = ZERO_ADDRESS) -> tuple[bytes, ...]:
        number = self.chain.header.block_number  # the pending block's
        index = self.__dict__.setdefault("_tx_blocks", {})
        for tx, _ in self.held():
            index[tx.hash] = number  # its receipt is found without a scan
        filled = self._fill_pending_block()
        # eth-tester's loop, except that ``mix_hash`` (prevrandao) is derived from the parent
        # block, not drawn from os.urandom: same steps, same block hashes.
        mined = []
        for _ in range(num_blocks):
            chain = self.chain
            fields: dict[str, Any] = {"coinbase": coinbase}
            vm = chain.get_vm()
            if isinstance(vm, ParisVM):
                fields["mix_hash"] = keccak(chain.header.parent_hash)
            if isinstance(vm, PragueVM):
                # The pending block just filled has its transactions at hand; chain.get_block()
                # would decode every one of them again from the block's trie.
                pending = filled if filled is not None and filled.header is chain.header else None
                block = pending if pending is not None else chain.get_block()
                transactions = block.transactions
                fields["blob_gas_used"] = sum(get_total_blob_gas(tx) for tx in transactions)
            mined.append(chain.mine_block(**fields).hash)
        return tuple(mined)

    def _fill_pending_block(self) -> BlockAPI | None:
        """Put the held transactions and receipts into the pending block (its tries); that
        block, if any were held."""
        held = self.__dict__.pop("_held", [])
        if not held:
            return None
        chain = self.chain
        vm = chain.get_vm(chain.header)
        block = vm.set_block_transactions_and_withdrawals(
            vm.get_block(), chain.header, [t for t, _ in held], [r for _, r in held]
        )
        chain.header = block.header
        return block  # type: ignore[no-any-return]  # py-evm's copy() is untyped

    def get_transaction_receipt(self, transaction_hash: bytes) -> Any:
        number = self.__dict__.get("_tx_blocks", {}).get(transaction_hash)
        # The pending block's number, from its header: chain.get_block() would build the
        # pending block (decoding every transaction held in it) just to read it.
        head = self.chain.header.block_number
        if number is not None and number < head:  # the head (pending) block may change
            # after a snapshot revert the remembered block may hold something else: check
            block, receipts = self._block_and_receipts(number)
            for index, tx in enumerate(block.transactions):
                if tx.hash == transaction_hash:
                    return serialize_transaction_receipt(
                        block, receipts, tx, index, False, self.chain.get_vm()
                    )
        return super().get_transaction_receipt(transaction_hash)

    def _block_and_receipts(self, number: int) -> tuple[Any, tuple[ReceiptAPI, ...]]:
        """Canonical block ``number`` and its receipts, decoded once per block (its senders
        ask for their receipts one by one: decoding all of them each time is O(n^2))."""
        block_hash = self.chain.chaindb.get_canonical_block_hash(number)
        cached = self.__dict__.get("_last_block")
        if cached is None or cached[0] != block_hash:
            block = self.chain.get_block_by_hash(block_hash)
            senders = self.__dict__.get("_senders", {})
            for tx in block.transactions:
                if (sender := senders.pop(tx.hash, None)) is not None:
                    # see _remember_sender; ``sender`` is a cached property
                    tx.__dict__["sender"] = sender
            cached = (block_hash, block, tuple(block.get_receipts(self.chain.chaindb)))
            self._last_block = cached
        return cached[1], cached[2]

    def call(self, transaction: dict[str, Any], block_number: Any = "latest") -> bytes:
        # The pending block's header changes with every transaction: no stable key to cache.
        if not self.caching or block_number == "pending":
            tx = {"gas": self._max_available_gas(), **transaction}
            unsigned = self._get_normalized_and_unsigned_evm_transaction(tx, block_number)
            spoofed = EVMSpoofTransaction(unsigned, from_=transaction["from"])
            computation = _execute_and_revert_transaction(self.chain, spoofed, block_number)
        else:
            header = self._mined_header(block_number)
            # A call's answer is a function of the block's state and header (both fixed by
            # its hash) and of the call: an answer for the same call at the same block hash
            # is the answer. (Several nodes' steps read the same facts at one block.)
            answers: OrderedDict[Any, bytes] = self.__dict__.setdefault("_answers", OrderedDict())
            try:
                key: Any = (header.hash, frozenset(transaction.items()))
                answer = answers.get(key)
            except TypeError:  # an unhashable field (e.g. an access list): not remembered
                key, answer = None, None
            if answer is not None:
                return answer
            output = self._execute_call(transaction, block_number, header)
            if key is not None:
                answers[key] = output
                if len(answers) > CALL_CACHE_SIZE:
                    answers.popitem(last=False)
            return output
        return self._output(computation)

    def _execute_call(
        self, transaction: dict[str, Any], block_number: Any, header: BlockHeaderAPI
    ) -> bytes:
        """Run a call on the cached state of the mined block ``header``, with the block's gas
        limit unless the call gives its own (as anvil does; stock eth-tester gives what is
        left in the pending block, which changes with each transaction sent)."""
        tx = {"gas": header.gas_limit, **transaction}
        state = self._state_at(block_number)
        # eth-tester would build a second state just to read this nonce.
        tx.setdefault("nonce", state.get_nonce(transaction["from"]))
        unsigned = self._get_normalized_and_unsigned_evm_transaction(tx, block_number)
        spoofed = EVMSpoofTransaction(unsigned, from_=transaction["from"])
        # The same snapshot/apply/revert py-evm uses for a failed transaction inside a
        # block and for every step of its gas search: the state is as before afterwards
        # (journal, warm-access sets, transient storage), only its read caches are warm.
        snapshot = state.snapshot()
        try:
            computation = state.apply_transaction(spoofed)
        finally:
            state.revert(snapshot)
        return self._output(computation)

    @staticmethod
    def _output(computation: Any) -> bytes:
        """A call's output; its revert or failure raised as eth-tester raises them."""
        if computation.is_error:
            error = computation.error
            if isinstance(error, EVMRevert):
                raise _Reverted(bytes(error.args[0]) if error.args else b"")
            raise TesterTransactionFailed(str(error))
        output: bytes = computation.output
        return output

    def estimate_gas(self, transaction: dict[str, Any], block_number: Any = "latest") -> int:
        if self.caching and "nonce" not in transaction and block_number != "pending":
            # eth-tester builds a state only to read the sender's nonce; the cached state of
            # the same block holds the same nonce. (The estimate itself runs as before.)
            try:
                state = self._state_at(block_number)
            except BlockNotFound:
                pass  # eth-tester raises its own error below
            else:
                nonce = state.get_nonce(transaction["from"])
                transaction = {**transaction, "nonce": nonce}
                if block_number == "latest":
                    return self._estimate_on_latest(transaction)
        return int(super().estimate_gas(transaction, block_number))

    def _estimate_on_latest(self, transaction: dict[str, Any]) -> int:
        """eth-tester's estimate at "latest" (py-evm's ``Chain.estimate_gas``: on the latest
        block's state, in a costless block on top of it), on that state built once per latest
        block instead of once per estimate, so its read caches stay warm across estimates
        (a batch of transactions is estimated before any is sent). The estimator snapshots and
        reverts the state around every run, as py-evm's costless state does once."""
        header = self._mined_header("latest")
        cached = self.__dict__.get("_costless")
        if cached is None or cached[0] != header.hash or cached[1] is not self.chain:
            vm = self.chain.get_vm(at_header=header)
            block = vm.generate_block_from_parent_header_and_coinbase(header, header.coinbase)
            previous = itertools.chain((header.hash,), vm.previous_hashes)
            state = vm.build_state(vm.chaindb.db, block.header, vm.chain_context, previous)
            cached = self._costless = (header.hash, self.chain, state)
        unsigned = self._get_normalized_and_unsigned_evm_transaction(
            {**transaction, "gas": 21000}, "latest"
        )
        spoofed = EVMSpoofTransaction(unsigned, from_=transaction["from"])
        try:
            return int(self.chain.gas_estimator(cached[2], spoofed))
        except (EVMInvalidInstruction, EVMRevert) as exc:  # as eth-tester maps them
            raise TesterTransactionFailed(str(exc)) from exc

    def trace_transaction(self, transaction_hash: bytes) -> dict[str, Any]:
        """What ``debug_traceTransaction``'s call tracer answers about a mined transaction:
        its output (the revert data when it failed) and error, found by re-executing its
        block up to it on the parent's state, with the block's own number and timestamp.

        Replaying one transaction on the previous block (all a node without tracing allows)
        misses a cause earlier in the same block; this sees it, as geth's tracer does."""
        receipt = self.get_transaction_receipt(transaction_hash)  # BlockNotFound etc. if unknown
        block = self.chain.get_canonical_block_by_number(receipt["block_number"])
        parent = self.chain.chaindb.get_block_header_by_hash(block.header.parent_hash)
        vm = self.chain.get_vm(at_header=block.header)
        pre_state = block.header.copy(state_root=parent.state_root)
        state = vm.build_state(self.chain.chaindb.db, pre_state, vm.chain_context)
        for tx in block.transactions:
            state.lock_changes()  # each transaction starts from the last one's committed state
            computation = state.apply_transaction(tx)
            if tx.hash == transaction_hash:
                break
        out: dict[str, Any] = {"type": "CALL", "gasUsed": hex(receipt["gas_used"])}
        error = computation.error if computation.is_error else None
        if isinstance(error, EVMRevert):
            data = bytes(error.args[0]) if error.args else b""
            out |= {"output": "0x" + data.hex(), "error": "execution reverted"}
        elif error is not None:
            out["error"] = str(error) or type(error).__name__
        else:
            out["output"] = "0x" + bytes(computation.output).hex()
        return out

    def _max_available_gas(self) -> int:
        if not self.caching:
            return int(super()._max_available_gas())
        # The pending header, without building a VM and a block around it as get_block() does.
        header = self.chain.header
        return int(header.gas_limit - header.gas_used)

    def _state_at(self, block_number: Any) -> StateAPI:
        """The py-evm state after block ``block_number`` (not pending), reused across calls.

        Keyed by block hash: the hash commits to the state root, so an entry stays correct
        whatever happens to the chain later; a revert to the genesis snapshot builds a new
        chain object, which clears the cache (its database may be another one).
        """
        header = self._mined_header(block_number)
        if self._states_chain is not self.chain:
            self._states = OrderedDict()
            self._states_chain = self.chain
        state = self._states.get(header.hash)
        if state is None:
            state = self.chain.get_vm(at_header=header).state
            self._states[header.hash] = state
            if len(self._states) > STATE_CACHE_SIZE:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(header.hash)
        return state

    def _mined_header(self, block_number: Any) -> BlockHeaderAPI:
        """The header eth-tester's ``_get_block_by_number`` would pick, without loading (and
        RLP-decoding) the block's transactions; the same ``BlockNotFound`` otherwise."""
        head = self.chain.header.block_number  # the pending block
        if block_number in ("latest", "safe", "finalized"):
            number = max(0, head - 1)
        elif block_number == "earliest":
            number = 0
        elif isinstance(block_number, int) and not isinstance(block_number, bool):
            if block_number >= head:
                raise BlockNotFound(f"No block found for block number: {block_number}")
            number = block_number
        else:
            raise BlockNotFound(f"No block found for block number: {block_number}")
        header: BlockHeaderAPI = self.chain.chaindb.get_canonical_block_header_by_number(number)
        return header


def _settling(method: Callable[..., Any], block_at: int | None) -> Callable[..., Any]:
    """``method`` of :class:`_Backend`, run after :meth:`_Backend._settle` (with ``block_at``:
    only when its ``block_number`` argument, the ``block_at``-th, names the pending block)."""

    @functools.wraps(method)
    def settled(self: _Backend, *args: Any, **kwargs: Any) -> Any:
        if block_at is None:
            self._settle()
        else:
            given = args[block_at] if len(args) > block_at else kwargs.get("block_number")
            if given == "pending":
                self._settle()
        return method(self, *args, **kwargs)

    return settled


#: Backend methods that read the state at a block number (the position of their
#: ``block_number`` argument): the pending block's needs its state root.
_READS_AT = {
    "call": 1, "estimate_gas": 1, "get_balance": 1, "get_base_fee": 0, "get_block_by_number": 0,
    "get_code": 1, "get_nonce": 1, "get_storage": 2, "send_signed_transaction": 1,
}  # fmt: skip
#: Backend methods that change or reset the chain (or mine): the held state is settled first.
_CHANGES = (
    "add_account", "apply_withdrawals", "mine_blocks", "reset_to_genesis",
    "revert_to_snapshot", "send_transaction", "take_snapshot", "time_travel",
)  # fmt: skip
for _name in (*_READS_AT, *_CHANGES):
    setattr(_Backend, _name, _settling(getattr(_Backend, _name), _READS_AT.get(_name)))

#: A posting-list key: ("address", address) or (topic position, topic).
_Key = tuple[Any, bytes]


@dataclass
class _LogIndex:
    """Every log of the canonical chain's mined blocks, in chain order, as eth-tester's raw
    (inbound-normalized) log entries, with the positions of the logs of each address and of
    each topic value at each topic position.

    ``hashes[n]`` is the hash block ``n`` had when indexed; ``starts[n]`` is the position of its
    first log in ``entries`` (``starts`` has one more item: the end).
    """

    chain: Any = None
    hashes: list[bytes] = field(default_factory=list)
    starts: list[int] = field(default_factory=lambda: [0])
    entries: list[dict[str, Any]] = field(default_factory=list)
    postings: dict[_Key, list[int]] = field(default_factory=dict)

    def truncate(self, blocks: int) -> None:
        """Forget blocks ``blocks`` and above."""
        if blocks >= len(self.hashes):
            return
        end = self.starts[blocks]
        del self.hashes[blocks:]
        del self.starts[blocks + 1 :]
        del self.entries[end:]
        for positions in self.postings.values():
            del positions[bisect.bisect_left(positions, end) :]

    def add_block(self, block_hash: bytes, logs: list[dict[str, Any]]) -> None:
        for entry in logs:
            position = len(self.entries)
            keys: list[_Key] = [("address", entry["address"])]
            keys += list(enumerate(entry["topics"]))
            for key in keys:
                self.postings.setdefault(key, []).append(position)
            self.entries.append(entry)
        self.hashes.append(block_hash)
        self.starts.append(len(self.entries))

    def candidates(self, lower: int, upper: int, address: Any, topics: Any) -> list[dict[str, Any]]:
        """The logs of blocks ``lower..upper`` that *may* match: all of them, or those listed
        under the most selective filter constraint. The caller still applies eth-tester's
        matcher to each, so an unrecognised filter shape only costs speed."""
        start, end = self.starts[lower], self.starts[upper + 1]
        constraints: list[list[_Key]] = []
        if address is not None:
            addresses = address if isinstance(address, tuple) else (address,)
            constraints.append([("address", a) for a in addresses])
        if isinstance(topics, tuple):
            for i, wanted in enumerate(topics):
                if wanted is None:
                    continue
                options = wanted if isinstance(wanted, tuple) else (wanted,)
                constraints.append([(i, t) for t in options])
        best: list[int] | None = None
        for alternatives in constraints:
            if not all(isinstance(k[1], bytes) for k in alternatives):
                continue  # e.g. a nested "any" inside an OR list: leave it to the matcher
            found: set[int] = set()
            for key in alternatives:
                positions = self.postings.get(key, [])
                first, last = (
                    bisect.bisect_left(positions, start),
                    bisect.bisect_left(positions, end),
                )
                found.update(positions[first:last])
            if best is None or len(found) < len(best):
                best = sorted(found)
        if best is None:
            return self.entries[start:end]
        return [self.entries[p] for p in best]


class EmbeddedTester(EthereumTester):
    """An ``EthereumTester`` with an incremental log index and a cached account list.

    ``caching`` (default True) switches this and the backend's state cache on or off
    together; off, every method is eth-tester's own.
    """

    def __init__(self, backend: _Backend, *args: Any, **kwargs: Any) -> None:
        super().__init__(backend, *args, **kwargs)
        self._logs = _LogIndex()
        self._accounts: tuple[Any, tuple[str, ...]] = ((), ())

    @property
    def holding(self) -> bool:
        """True: a sent transaction is executed into the pending block and waits there for
        :meth:`mine_blocks`, like on a node that mines at intervals (see ``BlockPass``);
        False (the default): each is mined into a block of its own at once."""
        return bool(self.backend.holding)

    @holding.setter
    def holding(self, enabled: bool) -> None:
        self.backend.holding = enabled

    def send_raw_transaction(self, raw_transaction_hex: str) -> Any:
        if not self.holding:
            return super().send_raw_transaction(raw_transaction_hex)
        # eth-tester's own body without its auto-mining wrapper. (Its non-mining mode runs
        # every transaction twice: once to check it, then reverted, and again when the block
        # is mined; the backend applies it once, to the pending block.)
        send = EthereumTester.send_raw_transaction.__wrapped__
        return send(self, raw_transaction_hex)

    def mine_blocks(self, num_blocks: int = 1, coinbase: Any = ZERO_ADDRESS_HEX) -> list[Any]:
        if not self.caching or self._block_filters or self._log_filters:
            return list(super().mine_blocks(num_blocks, coinbase))
        # eth-tester's own steps, less its read of every mined block: it builds, validates and
        # normalises the whole block (every transaction's hash) only to feed block and log
        # filters, and there are none (~10 ms a block of 100 transactions).
        self.validator.validate_inbound_account(coinbase)
        normalized_coinbase = self.normalizer.normalize_inbound_account(coinbase)
        if not self.auto_mine_transactions:
            self._pop_pending_transactions_to_pending_block()
        raw_block_hashes = self.backend.mine_blocks(num_blocks, normalized_coinbase)
        for raw_block_hash in raw_block_hashes:
            self.validator.validate_outbound_block_hash(raw_block_hash)
        return [self.normalizer.normalize_outbound_block_hash(h) for h in raw_block_hashes]

    def latest_block_number(self) -> int:
        """The latest mined block's number: what ``get_block_by_number("latest")["number"]``
        answers (the pending block's number less one), without building and serialising that
        block and every transaction in it (stock ``eth_blockNumber`` does, each time)."""
        if not self.caching:
            return int(self.get_block_by_number("latest")["number"])
        return max(0, int(self.backend.chain.header.block_number) - 1)

    def pending_transaction(self, transaction_hash: bytes) -> bool:
        """Whether ``transaction_hash`` is held in the pending (not yet mined) block."""
        return any(tx.hash == transaction_hash for tx, _ in self.backend.held())

    @property
    def caching(self) -> bool:
        return bool(getattr(self.backend, "caching", False))

    @caching.setter
    def caching(self, enabled: bool) -> None:
        self.backend.caching = enabled

    def get_accounts(self) -> tuple[str, ...]:
        if not self.caching:
            return tuple(super().get_accounts())
        account_keys = self.backend.account_keys
        # The tuple is replaced (never mutated) when an account is added or the chain reset;
        # holding it keeps its identity from being reused.
        if self._accounts[0] is not account_keys:
            self._accounts = (account_keys, tuple(super().get_accounts()))
        return self._accounts[1]

    def get_logs(
        self, from_block: Any = None, to_block: Any = None, address: Any = None, topics: Any = None
    ) -> tuple[dict[str, Any], ...]:
        if not self.caching:
            return tuple(super().get_logs(from_block, to_block, address, topics))
        self.validator.validate_inbound_filter_params(
            from_block=from_block, to_block=to_block, address=address, topics=topics
        )
        raw_from, raw_to, raw_address, raw_topics = self.normalizer.normalize_inbound_filter_params(
            from_block=from_block, to_block=to_block, address=address, topics=topics
        )
        head = self.backend.chain.header.block_number  # the pending block
        lower = _bound(raw_from, head)
        upper = _bound(raw_to, head)
        if lower is None or upper is None or upper >= head or lower < 0:
            # The pending block, or a range eth-tester answers with an error: its own path.
            return tuple(super().get_logs(from_block, to_block, address, topics))
        if lower > upper:
            return ()
        index = self._synced_log_index(head)
        candidates = index.candidates(lower, upper, raw_address, raw_topics)
        # eth-tester's own matcher and formatter: the index only narrows what they look at.
        matches = partial(
            check_if_log_matches,
            from_block=raw_from,
            to_block=raw_to,
            addresses=raw_address,
            topics=raw_topics,
        )
        normalize = self.normalizer.normalize_outbound_log_entry
        return tuple(normalize(entry) for entry in candidates if matches(entry))

    def _synced_log_index(self, head: int) -> _LogIndex:
        """The index, first cut back to the part still canonical, then extended to the last
        mined block (``head - 1``)."""
        index = self._logs
        chain = self.backend.chain
        if index.chain is not chain:
            index = self._logs = _LogIndex(chain=chain)
        chaindb = chain.chaindb
        # Cut back to the highest indexed block that is still canonical: a block hash commits
        # to all its ancestors, so every block below it is unchanged too.
        top = min(len(index.hashes), head) - 1
        while top >= 0 and chaindb.get_canonical_block_hash(top) != index.hashes[top]:
            top -= 1
        index.truncate(top + 1)
        outbound = self.normalizer.normalize_outbound_log_entry
        inbound = self.normalizer.normalize_inbound_log_entry
        for number in range(len(index.hashes), head):
            # The entries eth-tester's get_logs reads (each transaction's receipt serialised,
            # its logs normalised out, then in again), once per block instead of per query,
            # and from the block and its receipts decoded once: not through a lookup,
            # serialisation and validation of each whole receipt (~0.4 ms a transaction).
            block, receipts = self.backend._block_and_receipts(number)
            logs = [
                inbound(outbound(serialize_log(block, tx, i, log, j, False)))
                for i, (tx, receipt) in enumerate(zip(block.transactions, receipts, strict=True))
                for j, log in enumerate(receipt.logs)
            ]
            index.add_block(block.hash, logs)
        return index


def _bound(raw_block: Any, head: int) -> int | None:
    """The block number eth-tester's get_logs resolves a normalized bound to (None: leave
    the query to eth-tester)."""
    if raw_block is None or raw_block in ("latest", "safe", "finalized"):
        return max(0, head - 1)
    if raw_block == "earliest":
        return 0
    if raw_block == "pending":
        return head
    if isinstance(raw_block, int) and not isinstance(raw_block, bool):
        return raw_block
    return None


def estimate_gas_like_geth(state: StateAPI, transaction: SignedTransactionAPI) -> int:
    """Gas estimate from one run at the block gas limit, checked by a second run.

    py-evm's default binary search executes the transaction ~14 times; like geth, try the gas
    the full run used (plus the call stipend and the 63/64 reserve of EIP-150) first, and
    search only if that is not enough.
    """
    full = SpoofTransaction(transaction, gas=state.gas_limit, gas_price=0)
    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(full)  # type: ignore[arg-type]  # as py-evm does
    finally:
        state.revert(snapshot)
    if computation.is_error:
        raise computation.error
    used = max(full.gas - computation.get_gas_remaining(), computation.data_floor_gas)
    guess = min(state.gas_limit, (used + 2300) * 64 // 63)
    spoofed = SpoofTransaction(transaction, gas=guess, gas_price=0)
    if _get_computation_error(state, spoofed):  # type: ignore[arg-type]  # as py-evm does
        return int(binary_gas_search_1000_tolerance(state, transaction))
    return int(guess)


def make_tester(
    num_accounts: int = 20,
    mnemonic: str = DEV_MNEMONIC,
    balance: int = DEV_BALANCE_WEI,
    *,
    caching: bool = True,
    lean_interpreter: bool = True,
) -> EmbeddedTester:
    """A fresh eth-tester chain whose genesis funds the first ``num_accounts`` of ``mnemonic``.

    Gas limit ~30M per block (eth-tester's London-era default); every transaction is mined
    into its own block at once (auto-mining), like anvil's default, except while the tester
    is ``holding`` (a ``BlockPass`` runs): then they share the next mined block.
    ``caching=False`` gives stock eth-tester read costs (for comparisons; answers are the
    same). ``lean_interpreter=False`` runs py-evm's own opcode loop instead of
    :class:`~flchain.ledger.interpreter.LeanComputation`'s (same blocks, receipts and answers;
    ~half the CPU for the protocol's EVM work, ``benchmarks/results/lean_interpreter.md``).
    The process's tries then encode and decode their nodes with :mod:`.node_codec`, and its
    blocks' transaction and receipt tries are built by :mod:`.index_trie` (the same bytes,
    faster).
    """
    node_codec.install()
    index_trie.install()
    accounts = dev_accounts(num_accounts, mnemonic)
    state_overrides = {"balance": balance}
    genesis_state = {
        bytes.fromhex(a.address[2:]): get_default_account_state(state_overrides) for a in accounts
    }
    backend = _Backend(genesis_state=genesis_state, lean_interpreter=lean_interpreter)
    # The backend derived placeholder keys for eth_accounts; use the mnemonic's instead so
    # unlocked-account calls (eth_sendTransaction) agree with anvil.
    backend.account_keys = tuple(keys.PrivateKey(a.key) for a in accounts)
    # On the class too: reverting to the genesis snapshot builds a new chain object.
    type(backend.chain).gas_estimator = staticmethod(estimate_gas_like_geth)
    backend.chain.gas_estimator = estimate_gas_like_geth
    tester = EmbeddedTester(backend)
    tester.caching = caching
    return tester
