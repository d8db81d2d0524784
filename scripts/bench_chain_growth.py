"""Read and transaction costs on the embedded chain as it grows, with and without its caches.

One embedded chain grows to each height in turn (default 10, 1,000 and 10,000 blocks), one real
signed transaction per block (alternately an FLToken transfer to one of 50 holders and a
``ChainFixture.increment``, so blocks carry logs of two contracts). At each height the same
operations are timed with the chain's read caches on ("cached", :mod:`flchain.ledger.embedded`)
and off ("stock": eth-tester's own code paths, as before issue 15), alternating one operation
of each, so both see the same chain and the same machine load:

    view          ``FLToken.balanceOf`` through :meth:`Chain.call` (ABI encode, eth_call, decode)
    view_new      the same, first call after a new block (the cached state is built afresh)
    eth_call      the raw ``eth_call`` of the same calldata (no ABI work in web3)
    logs_recent   ``Incremented`` logs of the last 100 blocks, decoded
    logs_from_0   ``Transfer`` logs to one holder from block 0 (what a reward claim searches),
                  decoded by web3 (this grows with the number of matches, ~1 per 100 blocks)
    logs_from_0_raw  the same ``eth_getLogs`` without web3's event decoding
    logs_from_0_one  raw ``eth_getLogs`` from block 0 whose answer stays one log (the mint's
                  ``Transfer`` from address zero): the search cost alone
    tx            ``FLToken.transfer`` through :meth:`Chain.transact` (estimate, sign, send,
                  receipt)

Figures are medians in milliseconds; compare ratios, as absolute times move with load.

    nice -n 10 python scripts/bench_chain_growth.py            # print the table
    nice -n 10 python scripts/bench_chain_growth.py --json     # also write benchmarks/results/
    python scripts/bench_chain_growth.py --heights 10 200 --reps 20   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from web3 import Web3

from flchain.ledger.chain import Chain
from flchain.ledger.contracts import FLToken
from flchain.ledger.embedded import EmbeddedTester, make_tester

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = json.loads((ROOT / "tests/ledger/fixtures/ChainFixture.json").read_text())
RESULTS = ROOT / "benchmarks/results"
MODES = ("stock", "cached")
METRICS = (
    "view",
    "view_new",
    "eth_call",
    "logs_recent",
    "logs_from_0",
    "logs_from_0_raw",
    "logs_from_0_one",
    "tx",
)
#: Log queries, whose answer sizes the results record.
LOG_METRICS = ("logs_recent", "logs_from_0", "logs_from_0_raw", "logs_from_0_one")
#: Gas for the growth transactions, so growing the chain skips estimation (measured ``tx``
#: does estimate, as nodes do).
GROWTH_GAS = 120_000
HOLDERS = 50


class Bench:
    """One growing chain and the operations timed on it."""

    def __init__(self, accounts: int = 4) -> None:
        self.tester: EmbeddedTester = make_tester(accounts)
        self.chain = Chain.embedded(accounts, tester=self.tester)
        admin = self.chain.accounts[0]
        self.admin = admin
        self.token = FLToken.deploy_token(self.chain, admin)
        self.token.mint(admin, admin.address, 10**30)
        self.fixture = self.chain.deploy(FIXTURE, admin, 5)
        self.holders = [Web3.to_checksum_address(f"0x{i + 1:040x}") for i in range(HOLDERS)]
        self.sent = 0
        self.call_data = self.token.contract.functions.balanceOf(
            self.holders[0]
        )._encode_transaction_data()

    def grow(self, height: int) -> None:
        """One transaction a block until the chain is ``height`` blocks high."""
        contract = self.token.contract
        while self.chain.block_number < height:
            if self.sent % 2:
                fn = self.fixture.functions.increment(1)
            else:
                fn = contract.functions.transfer(self.holders[self.sent % HOLDERS], 1)
            self.chain.transact(fn, self.admin, gas=GROWTH_GAS)
            self.sent += 1

    def operations(self) -> dict[str, Callable[[], Any]]:
        chain, token, holder = self.chain, self.token, self.holders[0]
        raw_call = {"to": token.address, "data": self.call_data}
        transfer = token.contract.events.Transfer
        mint_logs = {
            "fromBlock": 0,
            "toBlock": "latest",
            "topics": [transfer.topic, "0x" + "00" * 32],
        }
        raw_logs = {
            "fromBlock": 0,
            "toBlock": "latest",
            "address": token.address,
            "topics": [
                transfer.topic,
                None,
                "0x" + bytes.fromhex(holder[2:]).rjust(32, b"\0").hex(),
            ],
        }

        def view_new() -> None:
            chain.mine(1)
            started = time.perf_counter()
            token.balance_of(holder)
            return time.perf_counter() - started

        return {
            "view": lambda: token.balance_of(holder),
            "view_new": view_new,
            "eth_call": lambda: chain.w3.eth.call(raw_call),  # type: ignore[arg-type]
            "logs_recent": lambda: chain.events(
                self.fixture, "Incremented", from_block=max(0, chain.block_number - 100)
            ),
            "logs_from_0": lambda: chain.events(
                token.contract, "Transfer", from_block=0, argument_filters={"to": holder}
            ),
            "logs_from_0_raw": lambda: chain.w3.eth.get_logs(raw_logs),  # type: ignore[arg-type]
            "logs_from_0_one": lambda: chain.w3.eth.get_logs(mint_logs),  # type: ignore[arg-type]
            "tx": lambda: token.transfer(self.admin, holder, 1),
        }


def measure(bench: Bench, height: int, reps: dict[str, int], passes: int) -> list[dict[str, Any]]:
    """Each operation ``reps[op]`` times per mode, the modes alternating op by op, spread over
    ``passes`` passes through all operations so a burst of load hits every row alike."""
    ops = bench.operations()
    samples = {(name, m): [] for name in ops for m in MODES}
    for op in ops.values():
        for mode in MODES:  # warm-up: the first call of a mode may build its cache
            bench.tester.caching = mode == "cached"
            op()
    for _ in range(passes):
        for name, op in ops.items():
            for _ in range(max(1, reps[name] // passes)):
                for mode in MODES:
                    bench.tester.caching = mode == "cached"
                    started = time.perf_counter()
                    inner = op()
                    elapsed = time.perf_counter() - started
                    samples[name, mode].append(inner if isinstance(inner, float) else elapsed)
    bench.tester.caching = True
    matches = {name: len(ops[name]()) for name in LOG_METRICS}
    rows = []
    for name in ops:
        for mode in MODES:
            values = sorted(samples[name, mode])
            rows.append(
                {
                    "height": height,
                    "metric": name,
                    "mode": mode,
                    "median_ms": statistics.median(values) * 1e3,
                    "p10_ms": values[len(values) // 10] * 1e3,
                    "p90_ms": values[(len(values) * 9) // 10] * 1e3,
                    "n": len(values),
                    "matches": matches.get(name),
                }
            )
        line = "  ".join(f"{r['mode']} {r['median_ms']:8.2f} ms" for r in rows[-2:])
        print(f"  {name:16s} {line}", flush=True)
    return rows


def table(results: list[dict[str, Any]], heights: list[int]) -> str:
    by = {(r["height"], r["metric"], r["mode"]): r["median_ms"] for r in results}
    p10 = {(r["height"], r["metric"], r["mode"]): r["p10_ms"] for r in results}
    answers = {(r["height"], r["metric"]): r.get("matches") for r in results}
    lines = [
        "| metric | height | stock ms | cached ms | stock / cached | cached p10 ms | logs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for metric in METRICS:
        for h in heights:
            stock, cached = by.get((h, metric, "stock")), by.get((h, metric, "cached"))
            if stock is None or cached is None:
                continue
            best = p10[h, metric, "cached"]
            lines.append(
                f"| {metric} | {h:,} | {stock:.2f} | {cached:.2f} | {stock / cached:.1f}× "
                f"| {best:.2f} | {answers[h, metric] if answers[h, metric] is not None else ''} |"
            )
    lo, hi = heights[0], heights[-1]
    lines += ["", f"Growth, height {hi:,} / height {lo:,} (1.0 = flat):", ""]
    lines += ["| metric | stock | cached |", "|---|---:|---:|"]
    for metric in METRICS:
        cells = []
        for mode in MODES:
            a, b = by.get((lo, metric, mode)), by.get((hi, metric, mode))
            cells.append(f"{b / a:.2f}" if a and b else "-")
        lines.append(f"| {metric} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heights", type=int, nargs="+", default=[10, 1_000, 10_000])
    parser.add_argument("--reps", type=int, default=120, help="view and eth_call repetitions")
    parser.add_argument("--passes", type=int, default=3, help="passes the repetitions spread over")
    parser.add_argument(
        "--json",
        nargs="?",
        const=str(RESULTS / "chain_growth.json"),
        help="write the results here (default benchmarks/results/chain_growth.json) and a "
        "Markdown table beside it",
    )
    args = parser.parse_args()
    heights = sorted(args.heights)
    # The slow stock operations get fewer repetitions: at 10,000 blocks one stock log query
    # from block 0 reads every block.
    reps = {
        "view": args.reps,
        "view_new": max(5, args.reps // 5),
        "eth_call": args.reps,
        "logs_recent": max(5, args.reps // 10),
        "logs_from_0": 6,
        "logs_from_0_raw": 6,
        "logs_from_0_one": 6,
        "tx": max(5, args.reps // 10),
    }
    load_before = os.getloadavg()
    started = time.perf_counter()
    bench = Bench()
    results: list[dict[str, Any]] = []
    grow_seconds: dict[int, float] = {}
    for h in heights:
        t = time.perf_counter()
        bench.grow(h)
        grow_seconds[h] = time.perf_counter() - t
        print(f"height {bench.chain.block_number:,} (grown in {grow_seconds[h]:.0f} s)", flush=True)
        results += measure(bench, h, reps, args.passes)
    report = {
        "heights": heights,
        "reps": reps,
        "passes": args.passes,
        "growth_tx_per_block": 1,
        "grow_seconds": grow_seconds,
        "total_seconds": time.perf_counter() - started,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "results": results,
    }
    text = table(results, heights)
    print()
    print(text)
    if args.json:
        path = Path(args.json)
        path.write_text(json.dumps(report, indent=1) + "\n")
        md = (
            "# Embedded chain: cost per operation as the chain grows (issue 15)\n\n"
            f"One transaction per block; medians of alternating stock/cached runs on one chain. "
            f"Load average {load_before[0]:.1f} before, {report['loadavg_after'][0]:.1f} after, "
            f"on {os.cpu_count()} cores (shared): compare ratios, not absolute times.\n\n"
            "Reproduce: `nice -n 10 python scripts/bench_chain_growth.py --json`\n\n"
            f"{text}\n"
        )
        path.with_suffix(".md").write_text(md)
        print(f"\nwrote {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
