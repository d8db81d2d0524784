"""CPU time of the protocol's EVM work with py-evm's opcode loop and with the lean one.

One embedded chain gets a stack, N registered participants (default 50) and a task taking N
commits a round; round 0's commits go into one block and its reveals into another (each a
``BlockPass``, as the one-process federation sends them). Then, side by side in one process
and alternating lean and stock run by run (so load hits both alike), ``time.process_time`` of:

    step_views   the packed ``stepViews`` read of all N participants (what a federation pass
                 reads), through the embedded backend's ``eth_call`` path (a cached state of
                 the block; the answer cache emptied before each call so py-evm runs it)
    commit_txs   the commit block's N transactions applied again on its parent's state (as
                 py-evm imports a block: one state, each transaction after the last)
    commit_block the same plus the state root computed afterwards (the same work in both)
    reveal_txs, reveal_block  the same for the reveal block
    whole_setup  building all of the above from an empty chain, once per interpreter (deploy,
                 register N, fund, the commit pass and the reveal pass through the library:
                 estimates, signing, web3 and mining included), after an untimed warm-up

With ``--federation R``, also the one-process federation (``DemoConfig.honest_fedavg(N, R)``,
what ``flchain demo`` and the Flower comparison run) once per interpreter, stock first, on an
embedded chain built with each: the mean wall time of its rounds after the first, the seconds
its nodes booked to the chain in them, and the process's CPU time for the whole run.

The last run of each also checks that the two interpreters agree: the same ``stepViews``
answer; for each block the same state root, and per transaction the same success, gas used,
refund, output and logs. Figures are medians in milliseconds of ``--reps`` runs per
interpreter.

    nice -n 5 python scripts/bench_lean_interpreter.py --json   # writes benchmarks/results/
    python scripts/bench_lean_interpreter.py --participants 10 --reps 5   # a quick look

A change to the loop or the backend against another checkout (e.g. main's worktree):

    --base-interpreter TREE/flchain/ledger/interpreter.py   that file's loop as a third mode,
        "base", in the same process and alternation (lean/base per row)
    --base-interpreter ... --opcodes   only what single opcodes cost each loop, per loop
    --against TREE [--runs R] [--round-of N]   R processes per side, alternating (TREE's
        library, this one), each: the commit and reveal passes as sent (signing, sending and
        executing, mining, reading the receipts), the block replays and the stepViews read
        (lean), and with --round-of the CPU per round after the first of a 3-round federation
        of N participants; medians of the processes' figures
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth.vm.forks.prague import PragueVM
from eth_utils import keccak

from flchain.ledger.chain import Chain
from flchain.ledger.contracts import TaskParameters
from flchain.ledger.deploy import deploy_another_task, deploy_stack, register_all
from flchain.ledger.devchain import BlockPass
from flchain.ledger.embedded import EmbeddedTester, make_tester
from flchain.ledger.interpreter import LeanPragueVM
from flchain.protocol.commitment import commitment

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results"
MODES: dict[str, type[PragueVM]] = {"stock": PragueVM, "lean": LeanPragueVM}


def add_base_interpreter(path: Path) -> None:
    """Time another version of ``interpreter.py`` too (e.g. main's, before a change to the
    loop), as the mode "base", alternating with the others in this process."""
    spec = importlib.util.spec_from_file_location("base_interpreter", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    MODES["base"] = module.LeanPragueVM


def task_config(participants: int) -> TaskParameters:
    return TaskParameters(
        manifest_cid="bafymanifest", manifest_digest=b"\x01" * 32,
        model_spec_digest=b"\x02" * 32, aggregation_rule=1, rule_params=b"\x03" * 32,
        committee_size=5, quorum=3, commit_blocks=20, reveal_blocks=20, attest_blocks=10,
        max_participants=participants, min_reveals=2, rounds=5, round_budget=10_000,
        committee_fee=100, non_reveal_slash=30, committee_slash=40, max_samples=1_000_000,
        initial_model_cid="bafyinitialmodel", initial_model_digest=b"\x04" * 32,
    )  # fmt: skip


class Round:
    """A chain with a task whose round 0 has a commit block and a reveal block of N each."""

    def __init__(self, participants: int, lean_interpreter: bool = True) -> None:
        self.tester: EmbeddedTester = make_tester(
            participants + 2, lean_interpreter=lean_interpreter
        )
        chain = self.chain = Chain.embedded(participants + 2, tester=self.tester)
        admin, accounts = chain.accounts[0], chain.accounts[1 : participants + 1]
        config = task_config(participants)
        stack = deploy_stack(
            chain, admin, config=config, min_stake=1_000, unbonding_blocks=61,
            mint_to=[a.address for a in accounts],
        )  # fmt: skip
        register_all(stack, accounts)
        task = deploy_another_task(stack, config)
        self.task, self.accounts = task, accounts
        salts = {a.address: keccak(text=f"salt {a.address}") for a in accounts}
        digests = {a.address: keccak(text=f"digest {a.address}") for a in accounts}

        def commit(account: Any) -> Any:
            value = commitment(
                chain_id=chain.chain_id, task=task.address, sender=account.address,
                round_id=0, digest=digests[account.address], num_samples=100,
                salt=salts[account.address],
            )  # fmt: skip
            return task.commit(account, value)

        def reveal(account: Any) -> Any:
            address = account.address
            return task.reveal(account, digests[address], 100, salts[address], "bafyupdate")

        provider = chain.w3.provider
        #: CPU seconds of each pass as the federation sends it (sign, send and execute, mine,
        #: read and check every receipt): what ``--against`` compares besides the replays.
        self.pass_cpu: dict[str, float] = {}
        started = time.process_time()
        BlockPass(provider).run([lambda a=a: commit(a) for a in accounts])  # type: ignore[arg-type]
        self.pass_cpu["commit_pass"] = time.process_time() - started
        self.commit_block = chain.block_number
        end = task.round_record(0).commit_end
        if chain.block_number < end:
            chain.mine(end - chain.block_number)
        started = time.process_time()
        BlockPass(provider).run([lambda a=a: reveal(a) for a in accounts])  # type: ignore[arg-type]
        self.pass_cpu["reveal_pass"] = time.process_time() - started
        self.reveal_block = chain.block_number
        self.seen: dict[int, dict[str, Any]] = {}
        self.view_call = {
            "from": chain.accounts[0].address,
            "to": task.address,
            "data": task.functions["stepViews"](
                [a.address for a in accounts]
            )._encode_transaction_data(),
        }

    def use(self, mode: str) -> None:
        """Run the chain's later blocks and calls on ``mode``'s VM class."""
        type(self.tester.backend.chain).vm_configuration = ((0, MODES[mode]),)
        self.tester.backend.__dict__.pop("_states", None)  # states are built by a VM class
        self.tester.backend._states_chain = None

    def step_views(self, mode: str) -> float:
        self.use(mode)
        tester = self.tester
        answer = tester.call(self.view_call, "latest")  # the state built and warmed: not timed
        tester.backend.__dict__.pop("_answers", None)
        started = time.process_time()
        again = tester.call(self.view_call, "latest")
        spent = time.process_time() - started
        self.seen.setdefault(-1, {})[mode] = (answer, again)
        return spent

    def replay(self, mode: str, number: int) -> tuple[float, float]:
        """Apply block ``number``'s transactions again on its parent's state (as py-evm imports
        a block) and compute the state root; what the run shows is kept for :meth:`agree`."""
        chain = self.tester.backend.chain
        block = chain.get_canonical_block_by_number(number)
        parent = chain.chaindb.get_block_header_by_hash(block.header.parent_hash)
        vm = MODES[mode](
            header=block.header, chaindb=chain.chaindb, chain_context=chain.get_vm().chain_context,
            consensus_context=chain.consensus_context,
        )  # fmt: skip
        pre = block.header.copy(state_root=parent.state_root)
        state = vm.build_state(chain.chaindb.db, pre, vm.chain_context, vm.previous_hashes)
        for tx in block.transactions:
            tx.sender  # noqa: B018  (recovered before the clock starts, in both modes)
        started = time.process_time()
        computations = []
        for tx in block.transactions:
            state.lock_changes()
            computations.append(state.apply_transaction(tx))
        applied = time.process_time()
        state.persist()
        root = state.state_root
        ended = time.process_time()
        seen = (
            root,
            [(c.is_success, c.get_gas_used(), c.get_gas_refund(), c.output) for c in computations],
            [c.get_log_entries() for c in computations],
        )
        self.seen.setdefault(number, {})[mode] = seen
        return applied - started, ended - started

    def agree(self) -> None:
        """Both interpreters left the same state root, gas, refunds, outputs and logs."""
        for number, by_mode in self.seen.items():
            for mode in MODES:
                assert by_mode[mode] == by_mode["stock"], f"block {number}: {mode} differs"
            if number >= 0:  # a block (-1: the stepViews answers)
                assert all(ok for ok, *_ in by_mode["lean"][1]), f"block {number}: a failure"


def measure(bench: Round, reps: int) -> dict[str, dict[str, list[float]]]:
    operations: dict[tuple[str, ...], Callable[[str], tuple[float, ...]]] = {
        ("step_views",): lambda mode: (bench.step_views(mode),),
        ("commit_txs", "commit_block"): lambda mode: bench.replay(mode, bench.commit_block),
        ("reveal_txs", "reveal_block"): lambda mode: bench.replay(mode, bench.reveal_block),
    }
    times: dict[str, dict[str, list[float]]] = {
        name: {m: [] for m in MODES} for names in operations for name in names
    }
    for rep in range(reps):
        order = list(MODES) if rep % 2 else list(reversed(MODES))
        for names, run in operations.items():
            for mode in order:
                for name, spent in zip(names, run(mode), strict=True):
                    times[name][mode].append(spent)
    bench.use("lean")
    bench.agree()
    return times


def federation(participants: int, rounds: int, lean: bool) -> dict[str, float]:
    """One federation run on a chain with (or without) the lean interpreter."""
    from flchain_node.federation import DemoConfig, Federation  # torch: only when asked

    accounts = participants + 1
    tester = make_tester(accounts, lean_interpreter=lean)
    chain = Chain.embedded(accounts, tester=tester)
    started = time.process_time()
    fed = Federation(DemoConfig.honest_fedavg(participants, rounds), chain=chain)
    result = fed.run()
    cpu = time.process_time() - started
    later = result.rounds[1:] or result.rounds
    return {
        "round_wall_s": statistics.mean(r.seconds["wall"] for r in later),
        "round_chain_s": statistics.mean(r.seconds.get("chain", 0.0) for r in later),
        "process_cpu_s": cpu,
        "finalized": sum(r.status == "finalized" for r in result.rounds),
    }


def opcode_costs(reps: int, loops: int = 2000) -> dict[str, dict[str, float]]:
    """CPU microseconds per loop of a program repeating one small body ``loops`` times, run as
    one message by each mode's computation class (alternating mode by mode, median of
    ``reps``): what one opcode costs the loop, with a POP (or the PUSHes) around it."""
    from eth.vm.forks.cancun.transaction_context import CancunTransactionContext
    from eth.vm.message import Message

    state = make_tester(2, lean_interpreter=False).backend.chain.get_vm().state
    # PUSH1 1, PUSH3 32*i, MSTORE: one more word of memory each time
    grow = b"".join(b"\x60\x01\x62" + (32 * i).to_bytes(3, "big") + b"\x52" for i in range(loops))
    bodies = {
        "SHA3 of a word (PUSH1 PUSH1 SHA3 POP)": bytes.fromhex("602060002050") * loops,
        "CALLER POP": bytes.fromhex("3350") * loops,
        "CALLDATASIZE POP": bytes.fromhex("3650") * loops,
        "MSTORE growing memory (PUSH1 PUSH3 MSTORE)": grow,
    }
    classes = {mode: vm._state_class.computation_class for mode, vm in MODES.items()}
    out: dict[str, dict[str, float]] = {}
    for name, code in bodies.items():
        times: dict[str, list[float]] = {mode: [] for mode in classes}
        for rep in range(reps):
            order = list(classes) if rep % 2 else list(reversed(classes))
            for mode in order:
                message = Message(
                    gas=10**9, to=b"\x11" * 20, sender=b"\x22" * 20, value=0,
                    data=b"\x01" * 68, code=code, code_address=b"\x11" * 20,
                )  # fmt: skip
                context = CancunTransactionContext(gas_price=1, origin=b"\x22" * 20)
                started = time.process_time()
                computation = classes[mode].apply_computation(state, message, context)
                times[mode].append(time.process_time() - started)
                assert computation.is_success, computation._error
        out[name] = {mode: statistics.median(t) / loops * 1e6 for mode, t in times.items()}
        print(f"{name:44} " + "  ".join(f"{m} {v:5.2f} us" for m, v in out[name].items()))
    return out


def one_side(participants: int, reps: int, federation_participants: int) -> dict[str, float]:
    """One process's figures for ``--against`` (CPU seconds, lean interpreter): medians of
    ``reps`` replays of the commit and reveal blocks (with their state roots) and of the
    ``stepViews`` read, the two passes as sent, and the CPU per round after the first of a
    3-round federation of ``federation_participants`` (0: none)."""
    Round(5)  # warm-up: imports, ABI and artifact caches
    bench = Round(participants)
    out = dict(bench.pass_cpu)
    runs: dict[str, list[float]] = {"commit_block": [], "reveal_block": [], "step_views": []}
    for _ in range(reps):
        runs["commit_block"].append(bench.replay("lean", bench.commit_block)[1])
        runs["reveal_block"].append(bench.replay("lean", bench.reveal_block)[1])
        runs["step_views"].append(bench.step_views("lean"))
    out |= {name: statistics.median(times) for name, times in runs.items()}
    if federation_participants:
        from flchain_node.federation import DemoConfig, Federation  # torch: only when asked

        n = federation_participants
        chain = Chain.embedded(n + 1, tester=make_tester(n + 1))
        marks: list[float] = []
        fed = Federation(DemoConfig.honest_fedavg(n, 3), chain=chain)
        fed.run(on_round=lambda _row: marks.append(time.process_time()))
        out["federation_round_cpu"] = statistics.mean(b - a for a, b in itertools.pairwise(marks))
    return out


def against(base: Path, runs: int, participants: int, reps: int, federation_n: int) -> None:
    """This tree against ``base`` (another checkout, e.g. main's): ``runs`` processes each,
    alternating (base, this, base, this, ...), each running :func:`one_side` on its own tree's
    library (this script, ``PYTHONPATH`` set to the tree and its ``node``)."""
    sides = {"base": base.resolve(), "this": ROOT}
    results: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    load_before = os.getloadavg()[0]
    for run in range(runs):
        for side, tree in sides.items():
            env = {**os.environ, "PYTHONPATH": f"{tree}:{tree / 'node'}"}
            command = [
                sys.executable, __file__, "--one-side", "--participants", str(participants),
                "--reps", str(reps), "--round-of", str(federation_n),
            ]  # fmt: skip
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            results[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"run {run} {side}: {results[side][-1]}", flush=True)
    rows = []
    for name in results["this"][0]:
        base_ms = statistics.median(r[name] for r in results["base"]) * 1000
        this_ms = statistics.median(r[name] for r in results["this"]) * 1000
        rows.append({"operation": name, "base_ms": base_ms, "this_ms": this_ms,
                     "ratio": this_ms / base_ms})  # fmt: skip
        print(f"{name:22} {base_ms:9.1f} {this_ms:9.1f} {this_ms / base_ms:6.2f}")
    out = {
        "base": str(sides["base"]), "runs": runs, "participants": participants,
        "reps_per_process": reps, "federation_participants": federation_n,
        "load_average": [load_before, os.getloadavg()[0]], "rows": rows,
        "runs_s": results,
    }  # fmt: skip
    name = "lean_interpreter_against_main" + ("_federation" if federation_n else "")
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="write benchmarks/results/")
    parser.add_argument(
        "--federation", type=int, default=0, metavar="R", help="also a federation of R rounds"
    )
    parser.add_argument(
        "--against", type=Path, metavar="TREE",
        help="compare with another checkout (e.g. main's worktree), process by process",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=5, help="processes per side (--against)")
    parser.add_argument(
        "--round-of", type=int, default=0, metavar="N",
        help="--against: also the CPU per round after the first of a 3-round federation of N",
    )  # fmt: skip
    parser.add_argument("--one-side", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--base-interpreter", type=Path, metavar="FILE",
        help="also time this interpreter.py (e.g. main's) as mode 'base', alternating",
    )  # fmt: skip
    parser.add_argument(
        "--opcodes", action="store_true", help="only the per-opcode loop costs (opcode_costs)"
    )
    args = parser.parse_args()
    if args.base_interpreter:
        add_base_interpreter(args.base_interpreter)
    if args.opcodes:
        costs = opcode_costs(args.reps)
        if args.json:
            path = RESULTS / "lean_interpreter_opcodes.json"
            path.write_text(json.dumps({"reps": args.reps, "us_per_loop": costs}, indent=2) + "\n")
            print(f"wrote {path}")
        return
    if args.one_side:
        print(json.dumps(one_side(args.participants, args.reps, args.round_of)))
        return
    if args.against:
        against(args.against, args.runs, args.participants, args.reps, args.round_of)
        return
    load_before = os.getloadavg()[0]
    Round(5)  # warm-up: imports, ABI and artifact caches
    whole: dict[str, list[float]] = {}
    for mode in ("stock", "lean"):
        started = time.process_time()
        bench = Round(args.participants, lean_interpreter=mode == "lean")
        whole[mode] = [time.process_time() - started]
    times = measure(bench, args.reps)  # on the lean-built chain (the blocks are the same)
    times["whole_setup"] = whole
    rows = []
    for op, by_mode in times.items():
        stock = statistics.median(by_mode["stock"]) * 1000
        lean = statistics.median(by_mode["lean"]) * 1000
        low = [min(by_mode[m]) * 1000 for m in ("stock", "lean")]
        row = {"operation": op, "stock_ms": stock, "lean_ms": lean, "ratio": lean / stock,
               "stock_min_ms": low[0], "lean_min_ms": low[1]}  # fmt: skip
        if "base" in by_mode:  # --base-interpreter: this loop against that one
            base = statistics.median(by_mode["base"]) * 1000
            row |= {"base_ms": base, "lean_vs_base": lean / base}
        rows.append(row)
    n = args.participants
    print(f"{n} participants, {args.reps} runs per interpreter (medians, CPU ms)")
    print(f"{'operation':14} {'stock':>9} {'lean':>9} {'lean/stock':>10}")
    for row in rows:
        base = (
            f"  base {row['base_ms']:9.2f} lean/base {row['lean_vs_base']:5.2f}"
            if "base_ms" in row
            else ""
        )
        print(
            f"{row['operation']:14} {row['stock_ms']:9.2f} {row['lean_ms']:9.2f} "
            f"{row['ratio']:10.2f}{base}"
        )
    federations: dict[str, dict[str, float]] = {}
    if args.federation:
        for mode in ("stock", "lean"):
            federations[mode] = federation(args.participants, args.federation, mode == "lean")
        print(f"federation, {args.federation} rounds: {json.dumps(federations)}")
    if args.json:
        out = {
            "federation": federations,
            "participants": n,
            "reps": args.reps,
            "python": platform.python_version(),
            "load_average": [load_before, os.getloadavg()[0]],
            "rows": rows,
            "runs_ms": {
                op: {m: [t * 1000 for t in ts] for m, ts in by.items()} for op, by in times.items()
            },
        }
        # With --base-interpreter: a file of its own (the plain lean-vs-stock run keeps its).
        path = RESULTS / (
            "lean_interpreter_vs_base.json" if "base" in MODES else "lean_interpreter.json"
        )
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
