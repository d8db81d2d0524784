"""Content-store throughput as a ratio to plain hashlib.sha256 over the same bytes, same run.

sha256 of the content is the floor of content addressing, so ``ratio = t_sha256 / t_op`` says how
close put/get come to it (goal: >= 0.5). Each figure is the best of ``--repeat`` runs; every put
stores fresh random bytes in an empty store (so nothing is deduplicated) and every get reads
them back through the full path (file reads + re-hashing every block), from the page cache.

    python scripts/bench_store.py            # table
    python scripts/bench_store.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from flchain.storage import LocalStore


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench(size: int, repeat: int, durable: bool, workdir: Path) -> dict[str, float | int | bool]:
    """Seconds for sha256, put and get of ``size`` random bytes, and the two ratios."""
    t_sha = t_put = t_get = float("inf")
    for i in range(repeat):
        data = os.urandom(size)
        t_sha = min(t_sha, _best(lambda d=data: hashlib.sha256(d).digest(), 3))  # type: ignore[misc]
        root = workdir / f"store-{size}-{durable}-{i}"
        with LocalStore(root, durable=durable) as store:
            start = time.perf_counter()
            cid = store.put(data)
            t_put = min(t_put, time.perf_counter() - start)
            t_get = min(t_get, _best(lambda s=store, c=cid: s.get(c), 3))  # type: ignore[misc]
            assert store.get(cid) == data
        shutil.rmtree(root)
    return {
        "size": size,
        "durable": durable,
        "sha256_s": t_sha,
        "put_s": t_put,
        "get_s": t_get,
        "put_ratio": t_sha / t_put,
        "get_ratio": t_sha / t_get,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 50_000_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--dir", type=Path, default=None, help="where to create the stores")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="flchain-bench-", dir=args.dir))
    try:
        rows = [
            bench(size, args.repeat, durable, workdir)
            for size in args.sizes
            for durable in (True, False)
        ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(
        f"{'size':>11} {'fsync':>5} {'sha256 MB/s':>11} {'put MB/s':>9} {'put/sha':>7}"
        f" {'get MB/s':>9} {'get/sha':>7}"
    )
    for r in rows:
        mb = float(r["size"]) / 1e6
        print(
            f"{r['size']:>11,} {'yes' if r['durable'] else 'no':>5} {mb / r['sha256_s']:>11.0f}"
            f" {mb / r['put_s']:>9.0f} {r['put_ratio']:>7.2f}"
            f" {mb / r['get_s']:>9.0f} {r['get_ratio']:>7.2f}"
        )


if __name__ == "__main__":
    main()
