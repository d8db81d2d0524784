"""The lean opcode loop (``flchain.ledger.interpreter``) is observably py-evm's own.

Three layers: (1) the same federation-like sequence (deployments, registrations, a round of
commits and reveals, one of them in a held block, views, a revert) on a lean and a stock
tester gives byte-identical blocks, receipts and answers (the embedded chain's clock and
``mix_hash`` follow from its blocks, not the wall clock); (2) hand-built
programs at the edges (every inline opcode out of gas at each gas boundary, stack underflow and
the 1024 limit, jumps into PUSH data and past the end, PUSH past the end of the code, SHA3 in
and beyond paid-for memory, the message facts at the top level and in a CALL with value) and (3)
random programs (hypothesis) run through :class:`LeanComputation` and py-evm's
``PragueComputation`` directly give the same gas, output, error (class and message), stack and
logs.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth.vm.computation import BaseComputation
from eth.vm.forks.cancun.transaction_context import CancunTransactionContext
from eth.vm.forks.prague.computation import PragueComputation
from eth.vm.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.rounds import RoundKit
from support.task import make_task_config

from flchain.ledger.chain import Chain
from flchain.ledger.deploy import deploy_another_task, deploy_stack, register_all
from flchain.ledger.devchain import BlockPass
from flchain.ledger.embedded import make_tester
from flchain.ledger.interpreter import (
    LeanComputation,
    LeanPragueVM,
    _Tables,
    valid_jump_destinations,
)

ADDRESS = b"\x11" * 20
SENDER = b"\x22" * 20
OTHER = b"\x33" * 20  # holds a small contract the programs may CALL


# --- (1) a federation-like sequence on both chains ------------------------------------------


def _federation_sequence(chain: Chain) -> list[Any]:
    """Deploy a stack and a task, register participants, play a round (its commits in one
    held block, as a ``BlockPass`` sends them) and read views; returns the answers seen."""
    admin, participants = chain.accounts[0], chain.accounts[1:9]
    config = make_task_config(max_participants=8)
    stack = deploy_stack(
        chain, admin, config=config, min_stake=1_000, unbonding_blocks=61,
        mint_to=[a.address for a in participants],
    )  # fmt: skip
    register_all(stack, participants)
    task = deploy_another_task(stack, config)
    kit = RoundKit(chain, task, participants)
    answers: list[Any] = [task.step_views([a.address for a in participants])]
    round_id = task.current_round()
    updates = {a.address: kit.update(a, round_id) for a in participants}
    commits = [
        (lambda a=a: kit.send_commit(a, kit.commitment(a, round_id, updates[a.address])))
        for a in participants
    ]
    BlockPass(chain.w3.provider).run(commits)  # type: ignore[arg-type]
    answers.append(task.step_views([a.address for a in participants]))
    kit.to_reveal_phase()
    kit.reveal_all(participants, updates)
    answers.append(task.step_views([a.address for a in participants]))
    try:  # a revert: a second reveal of the same update
        kit.reveal(participants[0], updates[participants[0].address])
    except Exception as exc:
        answers.append(repr(exc))
    kit.to_attest_phase()
    result = kit.result({a.address: 10 for a in participants}, tag="0")
    kit.finalize(round_id, result)
    answers.append(task.step_views([a.address for a in participants]))
    answers.append(task.round_record(round_id))
    return answers


def _chain_record(chain: Chain) -> list[Any]:
    """Every block (full transactions) and every transaction's receipt, as the node sees them."""
    eth = chain.w3.eth
    record: list[Any] = []
    for number in range(chain.block_number + 1):
        block = eth.get_block(number, full_transactions=True)
        record.append(dict(block))
        record += [dict(eth.get_transaction_receipt(tx["hash"])) for tx in block["transactions"]]
    return record


def test_federation_sequence_is_byte_identical() -> None:
    lean_tester = make_tester(20)
    stock_tester = make_tester(20, lean_interpreter=False)
    assert isinstance(lean_tester.backend.chain.get_vm(), LeanPragueVM)
    assert not isinstance(stock_tester.backend.chain.get_vm(), LeanPragueVM)
    lean, stock = Chain.embedded(20, tester=lean_tester), Chain.embedded(20, tester=stock_tester)
    lean_answers, stock_answers = _federation_sequence(lean), _federation_sequence(stock)
    assert lean_answers == stock_answers
    assert any(isinstance(a, str) for a in lean_answers), "the duplicate reveal failed"
    lean_record, stock_record = _chain_record(lean), _chain_record(stock)
    assert len(lean_record) > 60
    assert lean_record == stock_record
    held = [b for b in lean_record if "transactions" in b and len(b["transactions"]) == 8]
    assert held, "the commits were mined into one block"


# --- (2) and (3): programs run through both computations ------------------------------------


@pytest.fixture(scope="module")
def state() -> Any:
    """A Prague state with a contract at ``OTHER`` (returns CALLVALUE+CALLDATASIZE as a word,
    logs once) for programs that CALL it."""
    tester = make_tester(2, lean_interpreter=False)
    vm_state = tester.backend.chain.get_vm().state
    # CALLDATASIZE CALLVALUE ADD PUSH1 0 MSTORE PUSH1 0 PUSH1 0 LOG0 PUSH1 32 PUSH1 0 RETURN
    vm_state.set_code(OTHER, bytes.fromhex("343601600052600060 00a0602060 00f3".replace(" ", "")))
    vm_state.set_balance(ADDRESS, 10**18)  # so that the programs' CALLs can send value
    return vm_state


def run(
    state: Any, computation_class: Any, code: bytes, gas: int, data: bytes = b"", value: int = 0
) -> Any:
    """What a message running ``code`` shows afterwards (the state reverted)."""
    snapshot = state.snapshot()
    try:
        message = Message(
            gas=gas, to=ADDRESS, sender=SENDER, value=value, data=data, code=code,
            code_address=ADDRESS,
        )  # fmt: skip
        context = CancunTransactionContext(gas_price=1, origin=SENDER)
        c = computation_class.apply_computation(state, message, context)
        error = c._error
        return {
            "gas_remaining": c.get_gas_remaining(),
            "gas_meter": c._gas_meter.gas_remaining,
            "gas_used": c.get_gas_used(),
            "refund": c.get_gas_refund(),
            "output": c.output,
            "return_data": c.return_data,
            "error": (type(error), str(error)) if error is not None else None,
            "stack": list(c._stack.values),  # types too: bytes stay bytes, as in py-evm
            "logs": c.get_log_entries(),
            "memory": bytes(c._memory._bytes),
            "children": [(ch.is_error, ch.get_gas_used(), ch.output) for ch in c.children],
        }
    finally:
        state.revert(snapshot)


def same(
    state: Any, code: bytes, gas: int = 1_000_000, data: bytes = b"", value: int = 0
) -> dict[str, Any]:
    stock = run(state, PragueComputation, code, gas, data, value)
    lean = run(state, LeanComputation, code, gas, data, value)
    assert lean == stock, f"code {code.hex()} gas {gas}"
    return stock


_TABLES = _Tables(PragueComputation.opcodes)
INLINE = [op for op in range(256) if _TABLES.kinds[op]]
#: ADDRESS, CALLER, CALLVALUE, CALLDATASIZE, NUMBER: no operands, one fact pushed.
ENVIRONMENT = {0x30, 0x33, 0x34, 0x36, 0x43}


def test_every_hot_opcode_is_inlined() -> None:
    expected = {0x01, 0x02, 0x03, 0x04, 0x06, *range(0x10, 0x1A), 0x1B, 0x1C, 0x20, 0x35}
    expected |= ENVIRONMENT
    # Memory growth is charged inline only for py-evm's own extend_memory (else it is called).
    assert LeanComputation.extend_memory is BaseComputation.extend_memory
    expected |= {0x50, 0x51, 0x52, 0x56, 0x57, 0x5B}
    expected |= set(range(0x5F, 0xA0))
    assert set(INLINE) == expected


def _operands(op: int) -> int:
    """Stack items ``op`` reads."""
    if 0x80 <= op <= 0x8F:
        return op - 0x7F
    if 0x90 <= op <= 0x9F:
        return op - 0x8F + 1
    if op in (0x15, 0x19, 0x35, 0x50, 0x51, 0x56):
        return 1
    if 0x5F <= op <= 0x7F or op == 0x5B or op in ENVIRONMENT:
        return 0
    return 2


#: Operand words that reach every branch: zero, one, 255/256 (shifts), the sign boundary, max.
WORDS = [0, 1, 2, 255, 256, 2**255 - 1, 2**255, 2**256 - 1]


def _push32(value: int) -> bytes:
    return bytes([0x7F]) + value.to_bytes(32, "big")


@pytest.mark.parametrize("op", INLINE, ids=lambda op: _TABLES.names[op] or hex(op))
def test_out_of_gas_at_every_boundary_and_short_stack(state: Any, op: int) -> None:
    """Each inline opcode after its operands, at every gas amount from 0 to enough; and with
    each too-short stack (py-evm charges the gas first: short of both, it is out of gas)."""
    needed = _operands(op)
    setup = b"".join(_push32(WORDS[(op + i) % len(WORDS)]) for i in range(needed))
    tail = b"\x00" if op not in (0x56, 0x57) else b""
    if op == 0x56:  # JUMP to the JUMPDEST right after it
        setup = bytes([0x60, 3])
    if op == 0x57:  # JUMPI taken, to the JUMPDEST after it
        setup = bytes([0x60, 1, 0x60, 5])
    body = bytes([op]) + (b"\x5b\x00" if op in (0x56, 0x57) else b"")
    program = setup + body + tail
    enough = same(state, program)
    assert enough["error"] is None
    used = enough["gas_used"]
    for gas in range(used + 2):
        same(state, program, gas)
    for short in range(needed):
        same(state, setup[: 33 * short] + body, 100)
        same(state, setup[: 33 * short] + body, 1)  # short of gas and of stack


@pytest.mark.parametrize("op", INLINE, ids=lambda op: _TABLES.names[op] or hex(op))
def test_operands_from_calldata_and_every_word(state: Any, op: int) -> None:
    """Operands that are bytes on py-evm's stack (CALLDATALOAD pushes bytes, PUSH short
    bytes) and every interesting word in each operand position."""
    needed = _operands(op)
    if op in (0x56, 0x57):
        return  # jumps: test_jumps
    for first in WORDS:
        for second in WORDS if needed == 2 else [0]:
            data = first.to_bytes(32, "big") + second.to_bytes(32, "big")
            loads = bytes([0x60, 32, 0x35, 0x60, 0, 0x35])  # second, then first on top
            same(state, loads + bytes([op, 0x00]), data=data)
            same(
                state,
                _push32(second) + bytes([0x61]) + first.to_bytes(32, "big")[-2:] + bytes([op]),
            )


def test_stack_limit(state: Any) -> None:
    """1024 items fit; the 1025th (a PUSH, PUSH0 or DUP) is ``FullStack``; SWAP16 at 1024."""
    full = b"\x5f" * 1024
    assert same(state, full)["error"] is None
    for extra in (b"\x5f", b"\x60\x01", b"\x7f" + b"\x01" * 32, b"\x80", b"\x8f"):
        result = same(state, full + extra)
        assert result["error"] is not None and result["error"][0].__name__ == "FullStack"
    assert same(state, full + b"\x9f\x50\x01")["error"] is None
    same(state, b"\x5f" * 1023 + b"\x80\x80")  # the second DUP overflows
    same(state, b"\x5f" * 1023 + b"\x80\x80", gas=1023 * 2 + 3 + 2)  # ... or is out of gas


JUMP_PROGRAMS = [
    "6003565b00",  # JUMP to a JUMPDEST
    "6005565b00",  # past the end
    "600456605b00",  # into PUSH data (a JUMPDEST byte there)
    "60035600",  # to a non-JUMPDEST
    "7f" + "ff" * 32 + "56",  # to 2**256-1
    "60016005575b00",  # JUMPI taken
    "60006005575b00",  # JUMPI not taken (zero is the byte string 00 on py-evm's stack)
    "5f6005575b00",  # JUMPI with PUSH0 (the empty byte string) as condition
    "61000160055700fe",  # JUMPI taken to a non-JUMPDEST
    "600160045700605b00",  # JUMPI taken into PUSH data
    "6001600a575b00",  # JUMPI taken past the end
    "56",  # JUMP on an empty stack
    "600157",  # JUMPI with one item
    "6000600035565b00",  # destination from calldata (bytes)
    "5b600056",  # JUMP back to the start: loops until out of gas
    "61000756" + "5b" * 3 + "5b00",  # to one of several JUMPDESTs
    "7f" + "5b" * 32 + "602156" + "5b00",  # a PUSH32 of JUMPDEST bytes, then a jump past it
    "7f" + "5b" * 32 + "601056",  # a jump into that PUSH32's data
    "60ff5856",  # PC (a stock opcode) after inline ones, then a bad jump
    "6003565b5800",  # PC after a jump: the counter py-evm sees is right
]


@pytest.mark.parametrize("program", JUMP_PROGRAMS)
def test_jumps(state: Any, program: str) -> None:
    code = bytes.fromhex(program)
    enough = same(state, code, gas=10_000)
    for gas in range(min(enough["gas_used"] + 2, 60)):
        same(state, code, gas)


@pytest.mark.parametrize(
    "program",
    [
        "61",
        "60",
        "7f01",
        "7f" + "01" * 31,
        "60017f0102",  # PUSHes past the end
        "",
        "00",
        "fe",
        "0c",
        "ef",  # empty, STOP, INVALID, undefined opcodes
        "600160005560005400",  # SSTORE then SLOAD (stock, with refunds)
        "60016000556000600055",  # set then clear (a refund)
        "60206000f3",
        "60206000fd",  # RETURN / REVERT of memory (revert keeps its data)
        "7f" + "ab" * 32 + "60005260206000a0",  # MSTORE and LOG0
        "5a5a03",  # GAS twice: the meter is up to date for stock opcodes
        "6000600060006000600073" + OTHER.hex() + "61fffff13d600060003e00",
        # CALL a contract (its computation is lean too), RETURNDATASIZE, RETURNDATACOPY
        "600060006000600060047f" + "00" * 31 + "01" + "5af1",  # CALL the identity precompile
        "6005600020",  # KECCAK256
        "600160026003600460059f8f50505050",  # SWAP16/DUP16 with short stacks
        "600160020b",  # SIGNEXTEND (stock) between inline ones
        "600152",  # MSTORE with one item: py-evm pops it, then finds the stack short
        "60016002016040526020516040516000515901",  # MSTORE of an int; MLOADs
        "61abcd600352600051",  # MSTORE of short bytes at an odd offset, MLOAD
        "7f" + "ff" * 32 + "51",  # MLOAD at 2**256-1 (out of gas expanding)
        "60017f" + "ff" * 32 + "52",  # MSTORE there
        "60016201000052",  # MSTORE at 64 KiB: a large but affordable expansion
        "6000356020356040355f35",  # CALLDATALOADs in and past the data (leading zeros dropped)
        "7f" + "ff" * 32 + "35",  # CALLDATALOAD at 2**256-1
        "6000600a04600a60000460076003066000600706",  # DIV and MOD, by zero too
    ],
)
def test_edges_and_stock_opcodes(state: Any, program: str) -> None:
    code = bytes.fromhex(program)
    data = bytes(range(1, 40))
    enough = same(state, code, data=data)
    for gas in range(min(enough["gas_used"] + 2, 120)):
        same(state, code, gas, data)


#: SHA3 (KECCAK256) of (start, size), after 0, 32 or 96 bytes of memory were paid for
#: (``60ab604052``: MSTORE of 0xab at 0x40).
SHA3_PROGRAMS = [
    "60206000" + "20",  # a word of fresh memory (expansion charged first)
    "6000600020",  # nothing: no expansion, no word gas
    "7f" + "ff" * 32 + "600020",  # size 0 at 2**256-1: nothing charged
    "600160ff20",  # one byte past what is paid for
    "60ab6000526020600020",  # a word within memory of 32 bytes
    "60ab60405260406000206000600020",  # within memory of 96 bytes, twice
    "60ab604052602160402000",  # 33 bytes from 64: two words, one more of memory
    "60ab6040527f" + "ff" * 32 + "600020",  # size 2**256-1: out of gas expanding
    "60ab60405260017f" + "ff" * 32 + "20",  # start 2**256-1, size 1
    "6020" + "35" + "600020",  # size from calldata (bytes on py-evm's stack)
    "602020",  # one operand only
    "20",  # none
]


@pytest.mark.parametrize("program", SHA3_PROGRAMS)
def test_sha3(state: Any, program: str) -> None:
    """SHA3 in and beyond paid-for memory, of nothing, with huge operands, out of gas at the
    fixed cost, the expansion and the word cost (every gas amount up to enough)."""
    code = bytes.fromhex(program)
    data = (64).to_bytes(32, "big") * 2
    enough = same(state, code, data=data)
    for gas in range(min(enough["gas_used"] + 2, 400)):
        same(state, code, gas, data)


def test_environment_opcodes(state: Any) -> None:
    """ADDRESS, CALLER, CALLVALUE, CALLDATASIZE and NUMBER push what py-evm pushes (bytes for
    the addresses, ints for the rest), at the top level and inside a CALL with value, and
    fail at the stack limit as py-evm does."""
    program = bytes([0x30, 0x33, 0x34, 0x36, 0x43, 0x00])
    for value, data in ((0, b""), (7, b"\x01" * 33), (2**200, bytes(range(200)))):
        same(state, program, data=data, value=value)
        for gas in range(12):
            same(state, program, gas, data, value)
    # CALL OTHER (CALLVALUE+CALLDATASIZE, from a lean child computation) with value 5, 3 bytes
    call = "6000600060036000600573" + OTHER.hex() + "61fffff1" + "3d600060003e00"
    assert same(state, bytes.fromhex(call), value=10)["children"][0][0] is False
    for op in sorted(ENVIRONMENT):
        result = same(state, b"\x5f" * 1024 + bytes([op]))
        assert result["error"] is not None and result["error"][0].__name__ == "FullStack"


def test_jump_destinations_agree_with_py_evm() -> None:
    """The forward analysis finds what py-evm's backwards check accepts, on awkward code."""
    from eth.vm.code_stream import CodeStream

    samples = [
        bytes.fromhex("5b605b5b7f" + "5b" * 40 + "615b5b5b"),
        bytes(range(256)) * 2,
        bytes([0x60, 0x5B] * 30 + [0x5B]),
        bytes([0x7F] * 40 + [0x5B] * 40),
    ]
    for code in samples:
        stream = CodeStream(code)
        expected = {i for i in range(len(code)) if code[i] == 0x5B and stream.is_valid_opcode(i)}
        assert valid_jump_destinations(code) == expected


# --- (3) random programs ----------------------------------------------------------------------

#: Stock opcodes the random programs mix in (memory, environment, calldata, storage, shifts...).
STOCK = [0x05, 0x07, 0x0A, 0x1A, 0x1D, 0x32, 0x38, 0x3A, 0x42, 0x53, 0x54, 0x58, 0x59, 0x5A,
         0x5C, 0x5D, 0x5E]  # fmt: skip
#: Inline opcodes for the random mix: DUP and SWAP only 1..4 deep (deeper ones mostly find a
#: short stack and end the program; the edge tests cover them).
INLINE_OPS = [
    op
    for op in INLINE
    if not 0x60 <= op <= 0x7F and op not in (0x56, 0x57) and not 0x84 <= op <= 0x8F
    and not 0x94 <= op <= 0x9F
]  # fmt: skip
ARITHMETIC = [op for op in INLINE if op < 0x50 and op not in ENVIRONMENT]


@st.composite
def programs(draw: st.DrawFn) -> tuple[bytes, int, bytes]:
    """Segments: PUSHes (any size, any bytes), inline and stock opcodes, JUMPDESTs, and
    PUSH2-targeted forward jumps (to a later JUMPDEST, or anywhere forward, or past the end);
    an amount of gas; calldata."""
    kinds = st.sampled_from(
        ["push", "push", "push", "inline", "inline", "operation", "operation", "stock", "dest",
         "jump"]
    )  # fmt: skip
    segments: list[Any] = []
    # Enough operands first, so most programs run on instead of stopping at an empty stack.
    prelude = ["push"] * draw(st.integers(0, 16))
    for kind in prelude + [draw(kinds) for _ in range(draw(st.integers(1, 40)))]:
        if kind == "push":
            size = draw(st.integers(0, 32))
            # Small numbers, sign boundaries and all-ones as often as random bytes: equal and
            # near-equal operands are where comparisons and shifts go wrong.
            word = draw(st.sampled_from(WORDS) | st.integers(0, 300) | st.integers(0, 2**256 - 1))
            segments.append(bytes([0x5F + size]) + (word % 256**size).to_bytes(size, "big"))
        elif kind == "inline":
            segments.append(bytes([draw(st.sampled_from(INLINE_OPS))]))
        elif kind == "operation":  # an inline opcode right after its (pushed) operands
            below = draw(st.sampled_from(WORDS) | st.integers(0, 2**256 - 1))
            mode = draw(st.sampled_from(["equal", "small", "word"]))
            if mode == "equal":  # where < and <= (and > and >=) differ
                top = below
            elif mode == "small":  # a shift amount, a small operand
                top = draw(st.integers(0, 300))
            else:
                top = draw(st.sampled_from(WORDS) | st.integers(0, 2**256 - 1))
            op = draw(st.sampled_from(ARITHMETIC))
            segments.append(_push32(below) + _push32(top) + bytes([op]))
        elif kind == "stock":
            segments.append(bytes([draw(st.sampled_from(STOCK))]))
        elif kind == "dest":
            segments.append(b"\x5b")
        else:
            segments.append(("jump", draw(st.sampled_from([0x56, 0x57])), draw(st.integers(0, 99))))
    truncated = bytes([0x5F + draw(st.integers(1, 32))]) + b"\x01" if draw(st.booleans()) else b""
    # Lay out: each jump is PUSH2 <target> JUMP/JUMPI (4 bytes), targets resolved afterwards.
    offsets, at = [], 0
    for segment in segments:
        offsets.append(at)
        at += 4 if isinstance(segment, tuple) else len(segment)
    code = bytearray()
    for index, segment in enumerate(segments):
        if isinstance(segment, tuple):
            _, op, choice = segment
            later = [o for o, s in zip(offsets, segments, strict=True) if s == b"\x5b"]
            later = [o for o in later if o > offsets[index]]
            if choice < 50:  # the next JUMPDEST (the one ending the code if none)
                target = later[0] if later else at
            elif choice < 85:  # a later one
                target = later[choice % len(later)] if later else at
            else:  # anywhere forward (into PUSH data, or past the end)
                target = offsets[index] + 4 + choice
            code += bytes([0x61]) + target.to_bytes(2, "big") + bytes([op])
        else:
            code += segment
    code += b"\x5b" + truncated  # at ``at``: where jumps with no later JUMPDEST go; a PUSH
    # cut short by the end of the code
    gas = draw(st.one_of(st.integers(0, 200), st.integers(0, 3000)))
    data = draw(st.binary(max_size=64))
    return bytes(code), gas, data


@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(program=programs())
def test_random_programs(state: Any, program: tuple[bytes, int, bytes]) -> None:
    code, gas, data = program
    same(state, code, gas, data)
    same(state, code, 100_000, data)
