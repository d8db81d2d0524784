"""Transactions per second through :class:`flchain.ledger.chain.Chain`, side by side.

The same client code (sign locally, estimate gas, send, wait for the receipt) runs against the
embedded eth-tester chain, ``flchain devchain`` (its own process, over HTTP) and anvil. The
workload is ERC-20-like ``transfer`` calls of the test fixture contract, first from one sender
waiting for each receipt, then from several threads with one account each.

    python scripts/bench_chain_tps.py [--count 200] [--threads 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flchain.ledger.anvil import AnvilProcess, find_anvil
from flchain.ledger.chain import Chain

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT = json.loads((ROOT / "tests/ledger/fixtures/ChainFixture.json").read_text())
_SERVE = (
    "import typer; from flchain_node.cli.devchain import devchain; "
    "app = typer.Typer(); app.command()(devchain); app()"
)


@contextmanager
def embedded() -> Iterator[Chain]:
    yield Chain.embedded(20)


@contextmanager
def devchain() -> Iterator[Chain]:
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, "--port", "0", "--accounts", "20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("Listening on "):
                yield Chain.connect(line.split()[-1])
                break
        else:
            raise SystemExit("devchain did not start")
    finally:
        process.terminate()
        process.wait()


@contextmanager
def anvil() -> Iterator[Chain]:
    with AnvilProcess(accounts=20) as node:
        yield Chain.connect(node.url)


def measure(chain: Chain, count: int, threads: int) -> dict[str, float]:
    """tx/s for ``count`` transfers sequentially, then across ``threads`` senders."""
    senders = chain.accounts[1 : 1 + threads]
    token = chain.deploy(ARTIFACT, chain.accounts[0], 0)
    for sender in senders:
        chain.transact(token.functions.mint(10**9), sender)
    sink = chain.accounts[-1].address

    def transfer(sender: Any, n: int) -> None:
        for _ in range(n):
            chain.transact(token.functions.transfer(sink, 1), sender)

    def timed(run: Callable[[], None]) -> float:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    sequential = timed(lambda: transfer(senders[0], count))

    def parallel() -> None:
        workers = [threading.Thread(target=transfer, args=(s, count // threads)) for s in senders]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    concurrent = timed(parallel)
    sent = count + (count // threads) * threads
    assert chain.call(token.functions.balanceOf(sink)) == sent, "a transfer went missing"
    return {
        "sequential_tps": count / sequential,
        "concurrent_tps": (count // threads) * threads / concurrent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="transfers per mode")
    parser.add_argument("--threads", type=int, default=4, help="concurrent senders")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    backends: dict[str, Callable[[], Any]] = {"embedded": embedded, "devchain": devchain}
    if find_anvil() is not None:
        backends["anvil"] = anvil
    else:
        print("anvil not found: skipping it (run `npm ci`)", file=sys.stderr)

    results: dict[str, dict[str, float]] = {}
    for name, open_chain in backends.items():
        with open_chain() as chain:
            results[name] = measure(chain, args.count, args.threads)

    base = results["embedded"]
    for figures in results.values():
        figures["sequential_vs_embedded"] = figures["sequential_tps"] / base["sequential_tps"]
        figures["concurrent_vs_embedded"] = figures["concurrent_tps"] / base["concurrent_tps"]
    if args.json:
        print(json.dumps({"count": args.count, "threads": args.threads, "results": results}))
        return
    print(f"{args.count} transfers per mode; concurrent = {args.threads} threads, 1 account each")
    print(f"{'backend':<10}{'sequential tx/s':>17}{'ratio':>8}{'concurrent tx/s':>17}{'ratio':>8}")
    for name, f in results.items():
        print(
            f"{name:<10}{f['sequential_tps']:>17.1f}{f['sequential_vs_embedded']:>8.2f}"
            f"{f['concurrent_tps']:>17.1f}{f['concurrent_vs_embedded']:>8.2f}"
        )


if __name__ == "__main__":
    main()
