"""The ledger's overhead per round: the one-process federation against plain in-memory FedAvg.

For each size and backend, one script run trains the same federation twice — as the
incentivized federation (``flchain_node.federation``: real contracts, store, commit/reveal,
committee recomputation) and as :func:`flchain.learning.simulation.run_federation` (same
model, data, train config, codec and aggregation rule; no chain, no store) — and reports

    overhead = (federation round time - in-memory round time) / federation round time

over the steady-state rounds (round 0 is skipped when there are at least two). Both sides
train every participant sequentially in this process, and neither side counts the evaluation
of the global model for the report. On a busy machine the two runs see different load, so
the table also shows ``own-train``: the same ratio with the federation's own training time and
one committee member's recomputation standing in for the in-memory round.

The federation's round time is split by timing, from outside, the outermost instrumented call
that each moment of the round is spent in (a call inside another instrumented call belongs to
the outer one, e.g. the committee's log queries count as aggregation):

    train      the participant's local training (UpdateSource.produce)
    store      encoding/decoding models and updates, content-store put/get
    tx         chain transactions: build, sign, send, wait for the receipt (nodes and keeper)
    aggregate  the committee's recomputation of the round (fetch, verify, aggregate, report)
    reads      contract view calls and block-number queries
    events     event-log queries
    clock      mining blocks up to the next phase deadline (a single process has no clock)
    python     the rest: the nodes' and keeper's own logic between those calls

A federation round runs from the first local training of that round to the first of the next
(the last round ends when its finalization is seen), i.e. the cycle time a user waits for.

    nice -n 5 python scripts/bench_overhead.py --sizes 10 --model cnn --backends embedded anvil
    nice -n 5 python scripts/bench_overhead.py --sizes 50 100 --model mlp --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import flchain_node.federation as federation_module
import flchain_node.participant as participant_module
import torch
from flchain_node.federation import DemoConfig, Federation, RoundRow

from flchain.errors import FLChainError
from flchain.learning.simulation import SimConfig, run_federation
from flchain.ledger.chain import Chain, Outbox
from flchain.ledger.devchain import BlockPass
from flchain.ledger.nodes import AnvilProcess, GethProcess, NodeProcess
from flchain.protocol.task import federated_data, initial_model_and_manifest, train_config

PARTS = ("train", "store", "tx", "aggregate", "reads", "events", "clock", "python")
_EXCLUDED = "report"  # the runner's per-round report and evaluation: not part of a round
_RPC_PARTS = {
    "eth_getLogs": "events",
    "evm_mine": "clock",
    "anvil_mine": "clock",
    "dev_addWithdrawal": "clock",  # geth --dev's way to mine an empty block
}
#: The JSON-RPC nodes a federation can run on (started and stopped by the script).
NODES: dict[str, type[NodeProcess]] = {"anvil": AnvilProcess, "geth": GethProcess}


class RoundClock:
    """Wall time per round, split by the outermost instrumented call it is spent in."""

    def __init__(
        self,
        now: Callable[[], float] = time.perf_counter,
        cpu: Mapping[str, Callable[[], float | None]] | None = None,
    ) -> None:
        self._now = now  # injectable, so the bookkeeping is tested without real time
        #: CPU clocks read at each round's start and end (e.g. this process's and the
        #: node's): CPU seconds per round do not grow when other load slows the round down.
        self._cpu = dict(cpu or {})
        self._cpu_started: dict[str, float | None] = {}
        self.rounds: list[dict[str, float]] = []
        self.calls: list[dict[str, int]] = []
        self.cpu: list[dict[str, float]] = []
        #: Seconds to deploy the task and register the participants (before any round).
        self.setup_s = 0.0
        self._parts: dict[str, float] = defaultdict(float)
        self._calls: dict[str, int] = defaultdict(int)
        self._round = -1
        self._started = 0.0
        # Per thread: the jobs of a BlockPass run in threads of their own, one at a time, and
        # a job parked in its receipt wait lets the next run; that job's calls are its own.
        self._open = threading.local()

    def wrap(self, fn: Callable[..., Any], part: str | Callable[..., str]) -> Callable[..., Any]:
        """``fn``, booking its time under ``part`` (or ``part(*args)``) unless an outer
        instrumented call is already running in this thread."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            open_ = self._open
            if getattr(open_, "part", None) is not None:
                return fn(*args, **kwargs)
            open_.part = part(*args) if callable(part) else part
            open_.started = self._now()
            try:
                return fn(*args, **kwargs)
            finally:
                name, open_.part = open_.part, None
                self._parts[name] += self._now() - open_.started
                self._calls[name] += 1

        return timed

    def parking(self, park: Callable[[], bool]) -> Callable[[], bool]:
        """``BlockPass.park``, not booking the time a job waits there (other jobs run and
        book their own calls meanwhile) to the call it waits in."""

        @functools.wraps(park)
        def parked() -> bool:
            open_ = self._open
            name = getattr(open_, "part", None)
            if name is not None:
                self._parts[name] += self._now() - open_.started
            try:
                return park()
            finally:
                if name is not None:
                    open_.started = self._now()

        return parked

    def training(self, round_id: int) -> None:
        """A participant starts training for ``round_id``: the first one opens that round."""
        if round_id > self._round:
            self.close()
            self._parts, self._calls = defaultdict(float), defaultdict(int)
            self._round, self._started = round_id, self._now()
            self._cpu_started = {name: read() for name, read in self._cpu.items()}

    def close(self) -> None:
        """End the open round (if any) now."""
        if self._round < 0:
            return
        parts = dict(self._parts)
        wall = self._now() - self._started - parts.pop(_EXCLUDED, 0.0)
        measured = {p: parts.get(p, 0.0) for p in PARTS if p != "python"}
        self.rounds.append({**measured, "python": wall - sum(measured.values()), "wall": wall})
        self.calls.append({p: self._calls.get(p, 0) for p in PARTS if p != "python"})
        cpu = {}
        for name, read in self._cpu.items():
            started, now = self._cpu_started.get(name), read()
            if started is not None and now is not None:
                cpu[name] = now - started
        self.cpu.append(cpu)
        self._round = -1


@contextlib.contextmanager
def _patched(module: ModuleType, name: str, value: Any) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def one_by_one(fed: Federation) -> None:
    """Let ``fed``'s nodes send each commit (reveal) alone and wait for its receipt, as before
    the federation sent a phase's together through its outbox."""
    fed.outbox = None
    for node in fed.nodes:
        node.outbox = None


def instrument(
    fed: Federation, clock: RoundClock, outbox: Outbox | None = None
) -> contextlib.ExitStack:
    """Wrap ``fed``'s chain, store, nodes and runner (and the ``outbox`` its nodes send
    through) so ``clock`` sees every part of a round.

    Instance attributes shadow methods, so only this federation is affected; the two
    module-level codec functions the node calls are patched until the returned stack closes.
    """
    chain, store = fed.chain, fed.store
    if outbox is not None:
        outbox.flush = clock.wrap(outbox.flush, "tx")  # type: ignore[method-assign]
    for node in fed.nodes:
        produce = node.source.produce

        def produce_round(
            global_state: Any, round_id: int, controls: Any, _produce: Any = produce
        ) -> Any:
            clock.training(round_id)
            return _produce(global_state, round_id, controls)

        node.source.produce = clock.wrap(produce_round, "train")  # type: ignore[method-assign]
        node.recompute = clock.wrap(node.recompute, "aggregate")  # type: ignore[method-assign]
    chain.transact = clock.wrap(chain.transact, "tx")  # type: ignore[method-assign]
    chain.call = clock.wrap(chain.call, "reads")  # type: ignore[method-assign]
    chain.events = clock.wrap(chain.events, "events")  # type: ignore[method-assign]
    chain.mine = clock.wrap(chain.mine, "clock")  # type: ignore[method-assign]
    provider = chain.w3.provider  # what is left: eth_blockNumber and friends
    provider.make_request = clock.wrap(  # type: ignore[method-assign]
        provider.make_request, lambda method, _params: _RPC_PARTS.get(method, "reads")
    )
    # web3 caches the request function it built around the provider's make_request at the
    # first request (the chain's connection check): drop it, or the wrapper above is never
    # called and raw reads (block numbers, transaction counts, blocks) count as "python".
    provider._request_func_cache = (None, None)  # type: ignore[attr-defined]
    # the embedded chain's block passes: their jobs' waits, and mining the jobs' transactions
    block_pass: BlockPass | None = getattr(fed, "block_pass", None)  # (tests' stand-ins: none)
    if block_pass is not None:
        block_pass.park = clock.parking(block_pass.park)  # type: ignore[method-assign]
        block_pass._mine = clock.wrap(block_pass._mine, "tx")  # type: ignore[method-assign]
    store.put = clock.wrap(store.put, "store")  # type: ignore[method-assign]
    store.get = clock.wrap(store.get, "store")  # type: ignore[method-assign]
    fed._row = clock.wrap(fed._row, _EXCLUDED)  # type: ignore[method-assign]
    stack = contextlib.ExitStack()
    for name in ("encode_update", "decode_model"):
        wrapped = clock.wrap(getattr(participant_module, name), "store")
        stack.enter_context(_patched(participant_module, name, wrapped))
    evaluate = clock.wrap(federation_module.evaluate, _EXCLUDED)
    stack.enter_context(_patched(federation_module, "evaluate", evaluate))
    return stack


def demo_config(
    participants: int, rounds: int, model: str, seed: int, dataset: str = "mnist"
) -> DemoConfig:
    """All honest, FedAvg, IID ``dataset`` (MNIST-5k by default), the demo's training
    defaults."""
    return DemoConfig.honest_fedavg(
        participants,
        rounds,
        dataset=dataset,
        model=model,
        seed=seed,
    )


def in_memory(demo: DemoConfig) -> list[float]:
    """Seconds per round (training + encoding, decoding + aggregation) of the same federation
    as plain in-memory FedAvg; evaluation excluded."""
    config = demo.task_config()
    model, manifest = initial_model_and_manifest(config)
    fed = federated_data(config.data, demo.participants)
    sim = SimConfig(rounds=demo.rounds, train=train_config(config), seed=demo.seed)
    result = run_federation(model, manifest.spec, fed, manifest.aggregator(), sim)
    return [r.train_seconds + r.aggregate_seconds for r in result.rounds]


def on_chain(
    demo: DemoConfig, chain: Chain, node: NodeProcess | None = None, *, together: bool = True
) -> tuple[RoundClock, list[RoundRow]]:
    """The per-round split and the runner's rows of one federation on ``chain`` (served by
    ``node``, whose CPU time is then measured per round beside this process's); with
    ``together`` (the federation's way), a phase's commits (reveals) go out together."""
    cpu: dict[str, Callable[[], float | None]] = {"process": time.process_time}
    if node is not None:
        cpu["node"] = node.cpu_seconds
    clock = RoundClock(cpu=cpu)
    rows: list[RoundRow] = []

    def seen(row: RoundRow) -> None:
        rows.append(row)
        if len(rows) == demo.rounds:
            clock.close()

    with tempfile.TemporaryDirectory(prefix="flchain-bench-") as work:
        started = time.perf_counter()
        fed = Federation(demo, chain=chain, work_dir=Path(work))
        clock.setup_s = time.perf_counter() - started
        try:
            if not together:
                one_by_one(fed)
            with instrument(fed, clock, fed.outbox):
                fed.run(on_round=seen)
        finally:
            fed.close()
    clock.close()
    return clock, rows


def _steady(values: list[float]) -> float:
    return statistics.fmean(values[1:] if len(values) > 1 else values)


def bench(
    participants: int,
    backend: str,
    rounds: int,
    model: str,
    seed: int,
    dataset: str = "mnist",
    *,
    together: bool = True,
) -> dict[str, Any]:
    """One size on one backend: in-memory baseline, then the federation; steady-state means
    (per round), the overhead and every round's figures."""
    demo = demo_config(participants, rounds, model, seed, dataset)
    baseline = in_memory(demo)
    if backend == "embedded":
        chain = Chain.embedded(num_accounts=participants + 1)
        clock, rows = on_chain(demo, chain, together=together)
    else:
        with NODES[backend](accounts=participants + 1) as node:
            chain = Chain.connect(node.url, num_accounts=participants + 1)
            clock, rows = on_chain(demo, chain, node, together=together)
    split = clock.rounds
    steady = {k: _steady([r[k] for r in split]) for k in (*PARTS, "wall")}
    memory = _steady(baseline)
    recomputations = _steady([c["aggregate"] for c in clock.calls])
    one_member = steady["aggregate"] / max(recomputations, 1)
    return {
        "participants": participants,
        "backend": backend,
        "model": model,
        "dataset": dataset,
        "rounds": rounds,
        "sends": "together" if together else "one by one",
        "steady_rounds": max(1, rounds - 1),
        "federation_s": steady["wall"],
        "in_memory_s": memory,
        "overhead": (steady["wall"] - memory) / steady["wall"],
        # The same ratio with the federation's own training (and one committee member's
        # recomputation) standing in for the in-memory round: both measured in the same
        # stretch of time, so it holds up when other load on the machine changes between runs.
        "overhead_own_train": (steady["wall"] - steady["train"] - one_member) / steady["wall"],
        "split_s": {k: steady[k] for k in PARTS},
        "setup_s": clock.setup_s,
        "cpu_s": {k: _steady([c.get(k, 0.0) for c in clock.cpu]) for k in clock.cpu[0]},
        "calls": {k: _steady([c[k] for c in clock.calls]) for k in PARTS if k != "python"},
        "per_round": [
            {
                "round": row.round,
                "status": row.status,
                "accuracy": row.accuracy,
                "in_memory_s": base,
                "federation_s": part,
                "calls": calls,
                "cpu_s": cpu,
                "runner_seconds": row.seconds,  # as the nodes booked them, for cross-checks
                "gas": sum(row.gas.values()),
                "gas_by_action": dict(row.gas),
            }
            for row, part, calls, cpu, base in zip(
                rows, split, clock.calls, clock.cpu, baseline, strict=False
            )
        ],
    }


HEAD = ("n", "backend", "model", "in-mem s", "fed s", "overhead", "own-train", *PARTS)


def row_line(r: dict[str, Any]) -> str:
    """One table row: seconds per steady-state round, the overhead and the federation's
    split."""
    cells = [str(r["participants"]), r["backend"], r["model"]]
    if "error" in r:
        return "  ".join(f"{c:>9}" for c in cells) + f"  failed: {r['error']}"
    cells += [
        f"{r['in_memory_s']:.2f}",
        f"{r['federation_s']:.2f}",
        f"{100 * r['overhead']:.0f}%",
        f"{100 * r['overhead_own_train']:.0f}%",
    ] + [f"{r['split_s'][p]:.2f}" for p in PARTS]
    return "  ".join(f"{c:>9}" for c in cells)


def print_calls(results: list[dict[str, Any]]) -> None:
    calls = [p for p in PARTS if p != "python"]
    print("\ncalls per steady-state round x ms per call")
    print("  ".join(f"{h:>14}" for h in ["n", "backend", *calls]))
    for r in results:
        if "error" in r:
            continue
        cells = [str(r["participants"]), r["backend"]] + [
            f"{r['calls'][p]:.0f} x {1000 * r['split_s'][p] / max(r['calls'][p], 1):.1f}"
            for p in calls
        ]
        print("  ".join(f"{c:>14}" for c in cells))


def print_cpu(results: list[dict[str, Any]]) -> None:
    print("\nset-up s, and CPU seconds per steady-state round (this process; the node)")
    for r in results:
        if "error" not in r:
            cpu = "  ".join(f"{k} {v:.2f}" for k, v in r["cpu_s"].items())
            print(f"{r['participants']:>6} {r['backend']:>9}  set-up {r['setup_s']:.1f}  {cpu}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument(
        "--backends", nargs="+", choices=("embedded", *NODES), default=["embedded", "anvil"]
    )
    parser.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    parser.add_argument("--dataset", choices=("mnist", "digits"), default="mnist")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest)")
    parser.add_argument(
        "--one-by-one",
        action="store_true",
        help="each node sends its commit and reveal alone and waits for the receipt "
        "(as before the outbox); default: a phase's go out together",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write every result here (after each run)"
    )
    args = parser.parse_args()
    if args.rounds < 1 or min(args.sizes) < 2:
        parser.error("need --rounds >= 1 and sizes >= 2")

    torch.set_num_threads(args.threads)
    print("  ".join(f"{h:>9}" for h in HEAD), flush=True)
    results: list[dict[str, Any]] = []
    for n in args.sizes:
        for backend in args.backends:
            try:
                result = bench(
                    n, backend, args.rounds, args.model, args.seed, args.dataset,
                    together=not args.one_by_one,
                )  # fmt: skip
            except FLChainError as exc:  # one failed configuration should not lose the others
                result = {"participants": n, "backend": backend, "model": args.model}
                result["error"] = f"{type(exc).__name__}: {exc}"
            results.append(result)
            print(row_line(result), flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    print_calls(results)
    print_cpu(results)
    print(
        "\nseconds per steady-state round (mean of rounds 1..R-1); overhead = (fed - in-mem) / "
        "fed; own-train = (fed - fed train - one committee recomputation) / fed; goal <= 25% at "
        "10 participants with the CNN"
    )


if __name__ == "__main__":
    main()
