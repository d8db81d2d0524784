"""A leaner opcode loop for the embedded chain's py-evm (Prague), with py-evm's observables.

py-evm runs every opcode through ``BaseComputation.apply_computation``: a generator step of the
code stream, a dict lookup, a call to the opcode object, a call to the gas meter, then the
logic function's calls to stack methods (``stack_pop_ints`` builds a tuple through a generator
expression). That is ~1 µs of Python per opcode before the opcode does anything, and the
protocol's views and transactions are mostly cheap opcodes: at 50 participants the packed
``stepViews`` read runs ~650 a participant, a commit ~1,000 and a reveal ~1,250, of which
PUSH, DUP, SWAP, POP, JUMPDEST, jumps, MLOAD/MSTORE and one-word arithmetic are ~97 %.

:class:`LeanComputation` runs its own loop over the code. The simplest and most frequent
opcodes (PUSH0..PUSH32, DUP, SWAP, POP, JUMPDEST, JUMP, JUMPI, one-word arithmetic, logic and
comparisons, CALLDATALOAD, MLOAD/MSTORE, SHA3 and the message and block facts ADDRESS, CALLER,
CALLVALUE, CALLDATASIZE and NUMBER) are executed inline, on the stack's own list, with their
fixed gas charged from a local counter. Memory growth (MLOAD, MSTORE or SHA3 beyond the memory
already paid for) is charged with py-evm's fee formula and error message and grown by py-evm's
own ``Memory.extend``; SHA3 hashes with the keccak py-evm's SHA3 calls. Every other opcode
(storage, calls, creates, logs, copies, other environment reads, returns...) is handed to
py-evm's own opcode object, with the program counter and the gas meter brought up to date
first and read back after, and precompiles run as py-evm runs them. So everything that has
state beyond the stack, the memory's bytes and the gas counter stays py-evm's. (Storage stays
py-evm's on purpose: an SLOAD's time is its read through the account and storage tries, not
the opcode's dispatch, and its EIP-2929 warm/cold accounting lives in the state's journal.)

The inline paths copy what py-evm does, in the same order: the gas is charged before the
stack is checked (an opcode short of gas fails with ``OutOfGas`` even when its stack is short
too), with the same exception classes and messages (``str(error)`` reaches eth-tester's
``TransactionFailed`` and the embedded chain's traces); a PUSH past the end of the code pads
with zeros; PUSH pushes the code bytes (py-evm keeps bytes on the stack until something reads
them as a number) and the arithmetic pushes ints, as py-evm's do; a jump to a JUMPDEST byte
inside PUSH data is ``InvalidInstruction``, to any other byte ``InvalidJumpDestination``.
An opcode is only inlined when the computation class's opcode table still holds py-evm's
stock opcode object for it (same logic function), and its gas cost and mnemonic are read from
that object; with py-evm's debug2 logging switched on the stock loop runs, so its per-opcode
log lines are the stock ones.

Valid jump destinations are found once per code (by keccak of the code) and shared between
threads through a lock-guarded cache; py-evm instead walks back up to 32 bytes per jump target
per computation (recursively, so a long run of PUSH-like bytes can even exhaust Python's
recursion limit there, a crash the forward analysis here does not have).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from eth import constants
from eth._utils.numeric import ceil32
from eth.abc import ComputationAPI, MessageAPI, StateAPI, TransactionContextAPI
from eth.exceptions import (
    FullStack,
    Halt,
    InsufficientStack,
    InvalidInstruction,
    InvalidJumpDestination,
    OutOfGas,
)
from eth.vm.code_stream import CodeStream
from eth.vm.computation import NO_RESULT, BaseComputation, memory_gas_cost
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.computation import PragueComputation
from eth.vm.forks.prague.state import PragueState
from eth.vm.gas_meter import GasMeter
from eth.vm.logic import (
    arithmetic,
    block,
    comparison,
    context,
    duplication,
    flow,
    memory,
    sha3,
    stack,
    swap,
)
from eth.vm.logic.invalid import InvalidOpcode
from eth.vm.memory import Memory
from eth.vm.opcode import _FastOpcode
from eth.vm.stack import Stack, to_bytes, to_int
from eth_hash.auto import keccak as keccak256  # what py-evm's SHA3 calls
from eth_utils import keccak

#: How many codes' jump destinations :func:`jump_destinations` keeps (a federation runs a
#: handful of contracts; creates add their init code).
JUMPDEST_CACHE_SIZE = 256

_JUMPDEST = 0x5B
_PUSH1, _PUSH32 = 0x60, 0x7F
_UINT_256_MAX = 2**256 - 1
_UINT_255_MAX = 2**255 - 1
_STACK_LIMIT = 1024
_SHA3_WORD = constants.GAS_SHA3WORD
_EXTEND_MEMORY = BaseComputation.extend_memory

# Kinds of inline opcode. 0: handed to py-evm. The loop tests them roughly in the order of how
# often the protocol's code runs them (PUSH, DUP, SWAP, arithmetic, JUMPDEST, POP, jumps...).
_STOCK = 0
_PUSH, _DUP, _SWAP, _POP, _JUMPDEST_K, _JUMP, _JUMPI = 1, 2, 3, 4, 5, 6, 7
_MLOAD, _MSTORE, _CALLDATALOAD, _ISZERO, _NOT = 8, 9, 10, 11, 12
# SHA3 (KECCAK256), and the opcodes that push one fact of the message or block (no operands)
_SHA3, _CALLER, _CALLVALUE, _CALLDATASIZE, _ADDRESS, _NUMBER = 13, 14, 15, 16, 17, 18
# The binary operations come last (from _ADD up): the loop tells them apart from the rest with
# one comparison, then in order of frequency in the protocol's code.
_ADD, _AND, _SHL, _SUB, _OR, _LT, _MUL, _DIV, _EQ, _GT = 20, 21, 22, 23, 24, 25, 26, 27, 28, 29
_SHR, _XOR, _MOD, _SLT, _SGT = 30, 31, 32, 33, 34


def _stock_logic() -> dict[int, tuple[int, Any]]:
    """Opcode byte -> (inline kind, the py-evm logic function it replaces)."""
    table: dict[int, tuple[int, Any]] = {
        0x01: (_ADD, arithmetic.add),
        0x02: (_MUL, arithmetic.mul),
        0x03: (_SUB, arithmetic.sub),
        0x04: (_DIV, arithmetic.div),
        0x06: (_MOD, arithmetic.mod),
        0x10: (_LT, comparison.lt),
        0x11: (_GT, comparison.gt),
        0x12: (_SLT, comparison.slt),
        0x13: (_SGT, comparison.sgt),
        0x14: (_EQ, comparison.eq),
        0x15: (_ISZERO, comparison.iszero),
        0x16: (_AND, comparison.and_op),
        0x17: (_OR, comparison.or_op),
        0x18: (_XOR, comparison.xor),
        0x19: (_NOT, comparison.not_op),
        0x1B: (_SHL, arithmetic.shl),
        0x1C: (_SHR, arithmetic.shr),
        0x20: (_SHA3, sha3.sha3),
        0x30: (_ADDRESS, context.address),
        0x33: (_CALLER, context.caller),
        0x34: (_CALLVALUE, context.callvalue),
        0x35: (_CALLDATALOAD, context.calldataload),
        0x36: (_CALLDATASIZE, context.calldatasize),
        0x43: (_NUMBER, block.number),
        0x50: (_POP, stack.pop),
        0x51: (_MLOAD, memory.mload),
        0x52: (_MSTORE, memory.mstore),
        0x56: (_JUMP, flow.jump),
        0x57: (_JUMPI, flow.jumpi),
        0x5B: (_JUMPDEST_K, flow.jumpdest),
    }
    for size in range(33):  # PUSH0 (0x5f) .. PUSH32 (0x7f)
        table[0x5F + size] = (_PUSH, getattr(stack, f"push{size}"))
    for depth in range(1, 17):
        table[0x7F + depth] = (_DUP, getattr(duplication, f"dup{depth}"))
        table[0x8F + depth] = (_SWAP, getattr(swap, f"swap{depth}"))
    return table


_STOCK_LOGIC = _stock_logic()


class _Tables:
    """Per-opcode inline kind, gas cost and mnemonic for one opcode table (lists indexed by
    the opcode byte: a list index is the cheapest lookup in the loop)."""

    def __init__(self, opcodes: dict[int, Any]) -> None:
        self.kinds = [_STOCK] * 256
        self.costs = [0] * 256
        self.names = [""] * 256
        for op, (kind, logic) in _STOCK_LOGIC.items():
            fn = opcodes.get(op)
            # Only py-evm's own fixed-cost opcode object for exactly this logic: a fork (or a
            # subclass) that redefines the opcode keeps its own definition.
            if type(fn) is _FastOpcode and fn.logic_fn is logic:
                self.kinds[op], self.costs[op], self.names[op] = kind, fn.gas_cost, fn.mnemonic


def _word(item: Any) -> int:
    """py-evm's ``to_int`` of a stack item that is not an int: ``int.from_bytes`` for bytes
    (what its ``big_endian_to_int`` does, without the type checks around it)."""
    return int.from_bytes(item, "big") if type(item) is bytes else to_int(item)


def valid_jump_destinations(code: bytes) -> frozenset[int]:
    """Positions of the JUMPDEST bytes of ``code`` that are opcodes, not PUSH data."""
    found = set()
    position, end = 0, len(code)
    while position < end:
        op = code[position]
        if op == _JUMPDEST:
            found.add(position)
        elif _PUSH1 <= op <= _PUSH32:
            position += op - _PUSH1 + 1
        position += 1
    return frozenset(found)


_jumpdests: OrderedDict[bytes, frozenset[int]] = OrderedDict()
_jumpdests_lock = threading.Lock()


def jump_destinations(code: bytes) -> frozenset[int]:
    """:func:`valid_jump_destinations` of ``code``, cached by the code's keccak hash."""
    key = keccak(code)
    with _jumpdests_lock:
        found = _jumpdests.get(key)
        if found is not None:
            _jumpdests.move_to_end(key)
            return found
    found = valid_jump_destinations(code)  # outside the lock: two threads may both compute it
    with _jumpdests_lock:
        _jumpdests[key] = found
        if len(_jumpdests) > JUMPDEST_CACHE_SIZE:
            _jumpdests.popitem(last=False)
    return found


class LeanComputation(PragueComputation):
    """py-evm's Prague computation with the inline opcode loop of this module."""

    _lean_tables: _Tables | None = None

    @classmethod
    def apply_computation(
        cls,
        state: StateAPI,
        message: MessageAPI,
        transaction_context: TransactionContextAPI,
        parent_computation: ComputationAPI | None = None,
    ) -> ComputationAPI:
        if cls.logger.show_debug2 or GasMeter.logger.show_debug2:
            # py-evm logs every opcode and gas charge at this level: let it.
            return super().apply_computation(
                state, message, transaction_context, parent_computation
            )
        tables = cls.__dict__.get("_lean_tables")
        if tables is None:  # once per class (its own opcode table); a race builds it twice
            tables = _Tables(cls.opcodes)
            cls._lean_tables = tables
        # From here to the loop: py-evm's BaseComputation.apply_computation, unchanged.
        with cls(state, message, transaction_context) as computation:
            if computation.is_origin_computation:
                computation.contracts_created = []
                if message.is_create:
                    cls.consume_initcode_gas_cost(computation)
            if parent_computation is not None:
                computation.contracts_created = parent_computation.contracts_created
            if message.is_create:
                computation.contracts_created.append(message.storage_address)
            precompile = computation.precompiles.get(message.code_address, NO_RESULT)
            if precompile is not NO_RESULT:
                if not message.is_delegation:
                    precompile(computation)
                return computation
            _run(computation, tables)
        return computation


def _run(computation: Any, tables: _Tables) -> None:
    """Execute ``computation``'s code until it halts or raises (the caller's ``with`` block
    turns a ``VMError`` into the computation's error, as py-evm's loop does).

    The gas remaining and the program counter live in locals; both are written back to the
    gas meter and the code stream before any py-evm code runs (a stock opcode, or the
    computation's ``__exit__`` after an inline error) and read back after a stock opcode.
    """
    code = computation.code
    meter = computation._gas_meter
    if type(code) is not CodeStream or type(meter) is not GasMeter:
        # Not the objects this loop knows the insides of: py-evm's loop.
        _run_stock(computation)
        return
    if type(computation._stack) is not Stack:
        _run_stock(computation)
        return
    raw: bytes = code._raw_code_bytes
    end = len(raw)
    values: list[Any] = computation._stack.values
    push = values.append
    pop = values.pop
    opcodes = computation.opcodes
    kinds, costs, names = tables.kinds, tables.costs, tables.names
    jumpdests: frozenset[int] | None = None
    calldata: bytes | None = None  # the message's data as bytes, made on first use
    gas: int = meter.gas_remaining
    pc: int = code.program_counter

    while pc < end:
        op = raw[pc]
        pc += 1
        kind = kinds[op]
        if kind == _STOCK:
            code.program_counter = pc
            meter.gas_remaining = gas
            opcode_fn = opcodes.get(op)
            if opcode_fn is None:
                opcode_fn = InvalidOpcode(op)
            try:
                opcode_fn(computation=computation)
            except Halt:
                return
            pc = code.program_counter
            gas = meter.gas_remaining
            continue

        cost = costs[op]
        if gas < cost:  # GasMeter.consume_gas's check and message
            meter.gas_remaining = gas
            code.program_counter = pc
            raise OutOfGas(f"Out of gas: Needed {cost} - Remaining {gas} - Reason: {names[op]}")
        gas -= cost

        if kind == _PUSH:
            size = op - 0x5F
            if len(values) >= _STACK_LIMIT:
                meter.gas_remaining = gas
                code.program_counter = pc + size
                raise FullStack("Stack limit reached")
            value = raw[pc : pc + size]
            pc += size
            if len(value) != size:  # past the end of the code: zeros, as py-evm pads
                value = value.ljust(size, b"\x00")
            push(value)
        elif kind == _DUP:
            depth = op - 0x7F
            if len(values) >= _STACK_LIMIT:
                meter.gas_remaining = gas
                code.program_counter = pc
                raise FullStack("Stack limit reached")
            if len(values) < depth:
                raise _stack_short(meter, gas, code, pc, f"Insufficient stack items for DUP{depth}")
            push(values[-depth])
        elif kind == _SWAP:
            depth = op - 0x8F
            if len(values) <= depth:
                raise _stack_short(
                    meter, gas, code, pc, f"Insufficient stack items for SWAP{depth}"
                )
            values[-1], values[-depth - 1] = values[-depth - 1], values[-1]
        elif kind >= _ADD:  # a binary operation: ``a`` is the top of the stack, ``b`` below it
            if len(values) < 2:
                raise _stack_short(
                    meter, gas, code, pc, f"Wanted 2 stack items, only had {len(values)}"
                )
            a = pop()
            b = values[-1]
            if type(a) is not int:  # bytes from a PUSH: py-evm's to_int, inline
                a = int.from_bytes(a, "big") if type(a) is bytes else to_int(a)
            if type(b) is not int:  # bytes from a PUSH: py-evm's to_int, inline
                b = int.from_bytes(b, "big") if type(b) is bytes else to_int(b)
            if kind == _ADD:
                values[-1] = (a + b) & _UINT_256_MAX
            elif kind == _AND:
                values[-1] = a & b
            elif kind == _SHL:
                values[-1] = 0 if a >= 256 else (b << a) & _UINT_256_MAX
            elif kind == _SUB:
                values[-1] = (a - b) & _UINT_256_MAX
            elif kind == _OR:
                values[-1] = a | b
            elif kind == _LT:
                values[-1] = 1 if a < b else 0
            elif kind == _MUL:
                values[-1] = (a * b) & _UINT_256_MAX
            elif kind == _DIV:
                values[-1] = 0 if b == 0 else a // b
            elif kind == _EQ:
                values[-1] = 1 if a == b else 0
            elif kind == _GT:
                values[-1] = 1 if a > b else 0
            elif kind == _SHR:
                values[-1] = 0 if a >= 256 else b >> a
            elif kind == _XOR:
                values[-1] = a ^ b
            elif kind == _MOD:
                values[-1] = 0 if b == 0 else a % b
            else:  # _SLT, _SGT: compared as two's-complement signed words
                if a > _UINT_255_MAX:
                    a -= 2**256
                if b > _UINT_255_MAX:
                    b -= 2**256
                values[-1] = (1 if a < b else 0) if kind == _SLT else (1 if a > b else 0)
        elif kind == _JUMPDEST_K:
            pass
        elif kind == _POP:
            if not values:
                raise _stack_short(meter, gas, code, pc, "Wanted 1 stack item, had none")
            pop()
        elif kind in (_JUMP, _JUMPI):
            if kind == _JUMP:
                if not values:
                    raise _stack_short(meter, gas, code, pc, "Wanted 1 stack item, had none")
                dest = pop()
                taken = True
            else:
                if len(values) < 2:
                    raise _stack_short(
                        meter, gas, code, pc, f"Wanted 2 stack items, only had {len(values)}"
                    )
                dest = pop()
                condition = pop()
                if type(condition) is not int:
                    condition = _word(condition)
                taken = condition != 0
            if taken:
                if type(dest) is not int:
                    dest = _word(dest)
                if jumpdests is None:
                    jumpdests = jump_destinations(raw)
                if dest not in jumpdests:
                    meter.gas_remaining = gas
                    code.program_counter = dest
                    if dest < end and raw[dest] == _JUMPDEST:  # a JUMPDEST byte in PUSH data
                        raise InvalidInstruction("Jump resulted in invalid instruction")
                    raise InvalidJumpDestination("Invalid Jump Destination")
                pc = dest  # the JUMPDEST itself runs next, as in py-evm
        elif kind in (_MLOAD, _MSTORE):
            # Memory within its current size costs nothing more and is written in place;
            # beyond it, py-evm's own extend_memory charges (or fails) and grows it.
            if not values:
                raise _stack_short(meter, gas, code, pc, "Wanted 1 stack item, had none")
            start = pop()
            if type(start) is not int:
                start = _word(start)
            if kind == _MSTORE:
                if not values:  # py-evm pops the two items one by one: the first is gone
                    raise _stack_short(meter, gas, code, pc, "Wanted 1 stack item, had none")
                word = pop()
                word = word.to_bytes(32, "big") if type(word) is int else to_bytes(word)
                word = word.rjust(32, b"\x00")[-32:]
            if start + 32 > len(computation._memory._bytes):
                gas = _extend_memory(computation, meter, code, pc, gas, start, 32)
            # read afresh: extending may replace the bytearray
            buffer = computation._memory._bytes
            if kind == _MSTORE:
                buffer[start : start + 32] = word
            else:
                push(bytes(buffer[start : start + 32]))
        elif kind in (_ISZERO, _NOT):
            if not values:
                raise _stack_short(meter, gas, code, pc, "Wanted 1 stack item, had none")
            a = values[-1]
            if type(a) is not int:  # bytes from a PUSH: py-evm's to_int, inline
                a = int.from_bytes(a, "big") if type(a) is bytes else to_int(a)
            values[-1] = (1 if a == 0 else 0) if kind == _ISZERO else _UINT_256_MAX - a
        elif kind == _CALLDATALOAD:
            if not values:
                raise _stack_short(meter, gas, code, pc, "Wanted 1 stack item, had none")
            start = pop()
            if type(start) is not int:
                start = _word(start)
            if calldata is None:
                calldata = computation.msg.data_as_bytes
            push(calldata[start : start + 32].ljust(32, b"\x00").lstrip(b"\x00"))
        elif kind == _SHA3:
            # py-evm's sha3: pop start and size, extend memory (charged), read, charge the
            # per-word gas, hash. Within the memory already paid for the extension is free.
            if len(values) < 2:
                raise _stack_short(
                    meter, gas, code, pc, f"Wanted 2 stack items, only had {len(values)}"
                )
            start = pop()
            size = pop()
            if type(start) is not int:
                start = _word(start)
            if type(size) is not int:
                size = _word(size)
            if size and start + size > len(computation._memory._bytes):
                gas = _extend_memory(computation, meter, code, pc, gas, start, size)
            data = bytes(computation._memory._bytes[start : start + size])
            cost = _SHA3_WORD * ((len(data) + 31) // 32)
            if gas < cost:  # GasMeter.consume_gas's check and message
                meter.gas_remaining = gas
                code.program_counter = pc
                raise OutOfGas(
                    f"Out of gas: Needed {cost} - Remaining {gas} - Reason: SHA3: word gas cost"
                )
            gas -= cost
            push(keccak256(data))
        elif _CALLER <= kind <= _NUMBER:  # a fact of the message or block, pushed
            if len(values) >= _STACK_LIMIT:
                meter.gas_remaining = gas
                code.program_counter = pc
                raise FullStack("Stack limit reached")
            msg = computation.msg
            if kind == _CALLER:
                push(msg.sender)  # bytes, as py-evm's push_bytes keeps them
            elif kind == _CALLVALUE:
                push(msg.value)
            elif kind == _CALLDATASIZE:
                push(len(msg.data))
            elif kind == _ADDRESS:
                push(msg.storage_address)
            else:
                push(computation.state.block_number)

    # Past the end of the code: py-evm's code stream yields STOP (no gas, halts).
    code.program_counter = pc
    meter.gas_remaining = gas


def _extend_memory(
    computation: Any, meter: GasMeter, code: CodeStream, pc: int, gas: int, start: int, size: int
) -> int:
    """py-evm's ``extend_memory(start, size)`` (``size`` > 0) for the loop: the gas left after
    charging the expansion. The fee and its out-of-gas error are py-evm's, computed here
    without its argument checks (stack words are always uint256) and string building; the
    memory grows through py-evm's own ``Memory.extend``. A computation class or memory that
    is not py-evm's own gets its own ``extend_memory``, with the meter up to date."""
    memory = computation._memory
    if type(memory) is not Memory or type(computation).extend_memory is not _EXTEND_MEMORY:
        meter.gas_remaining = gas
        code.program_counter = pc
        computation.extend_memory(start, size)
        return meter.gas_remaining
    before = ceil32(len(memory._bytes))
    after = ceil32(start + size)
    fee = memory_gas_cost(after) - memory_gas_cost(before)
    if fee > 0:
        if fee > gas:  # GasMeter.consume_gas's check and message
            meter.gas_remaining = gas
            code.program_counter = pc
            raise OutOfGas(
                f"Out of gas: Needed {fee} - Remaining {gas} - "
                f"Reason: Expanding memory {before} -> {after}"
            )
        gas -= fee
    memory.extend(start, size)
    return gas


def _stack_short(
    meter: GasMeter, gas: int, code: CodeStream, pc: int, message: str
) -> InsufficientStack:
    """The error of an inline opcode whose stack is short, once the gas meter and the program
    counter hold the loop's values (as py-evm's would at that point); only the error path
    calls it, so the loop pays no call for it."""
    meter.gas_remaining = gas
    code.program_counter = pc
    return InsufficientStack(message)


def _run_stock(computation: Any) -> None:
    """py-evm's own opcode loop (BaseComputation.apply_computation's, without debug logs)."""
    opcode_lookup = computation.opcodes
    for opcode in computation.code:
        try:
            opcode_fn = opcode_lookup[opcode]
        except KeyError:
            opcode_fn = InvalidOpcode(opcode)
        try:
            opcode_fn(computation=computation)
        except Halt:
            break


class LeanPragueState(PragueState):
    """Prague's state, running messages through :class:`LeanComputation`."""

    computation_class = LeanComputation


class LeanPragueVM(PragueVM):
    """Prague's VM on :class:`LeanPragueState`: what :func:`~flchain.ledger.embedded.make_tester`
    runs by default (``lean_interpreter=False`` keeps py-evm's ``PragueVM``)."""

    _state_class = LeanPragueState
