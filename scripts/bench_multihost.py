#!/usr/bin/env python
"""Per-round time split and bytes moved: a federation across hosts with Kubo vs one machine.

Each participant host is a Linux network namespace with its own Kubo daemon (swarm key, peered
with the others, no way out), running ``flchain node run --ipfs-api`` against only its daemon;
the chain host runs anvil. The baseline is the same federation (same task, model, rounds, the
same processes: anvil, one ``flchain node run`` per participant, the keeper) on this machine,
every node on one embedded store directory. The network is ``tests/support/multihost.py``, the
one ``tests/node/test_multihost.py`` tests. Needs root, iproute2, anvil and Kubo
(``FLCHAIN_IPFS_BIN``).

Per round: the wall time between round closes (round 0 includes the nodes' start-up), each
node's own split of its work (train, store = put, fetch = get, aggregate = the committee's
recomputation without its fetches, chain = reads and transactions; booked by the node in its
metrics file, ``flchain status --local``), the content bytes the nodes put and fetched, and for
Kubo the daemons' own counters (``stats/bw`` totals, ``stats/bitswap``) read at every round
close. Every participant runs on the same 2 cores, so the train and chain shares grow with the
number of hosts: figures are of this machine, measured side by side in one run.

    nice -n 10 .venv/bin/python scripts/bench_multihost.py --hosts 3 10 --rounds 3 \\
        --json benchmarks/results/multihost.json --md benchmarks/results/multihost.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the shared multi-host kit

from flchain_node.local import read_work  # noqa: E402
from flchain_node.metering import WORK  # noqa: E402
from support.kubo_daemon import in_netns  # noqa: E402
from support.multihost import Federation, launched, missing_tools  # noqa: E402

from flchain.ledger.contracts import RoundExpired, RoundFinalized, TrainingTask  # noqa: E402
from flchain.storage import ContentStore, KuboStore, LocalStore  # noqa: E402

#: Kubo's counters read at every round close, summed over the daemons: (endpoint, field).
COUNTERS = {
    "bw_in": ("stats/bw", "TotalIn"),
    "bw_out": ("stats/bw", "TotalOut"),
    "bitswap_received": ("stats/bitswap", "DataReceived"),
    "bitswap_sent": ("stats/bitswap", "DataSent"),
    "bitswap_dup_received": ("stats/bitswap", "DupDataReceived"),
    "bitswap_blocks_received": ("stats/bitswap", "BlocksReceived"),
}


class RoundMeter:
    """The federation's script: notes the time and the daemons' counters at the start and at
    every round close (finalized or expired), until ``rounds`` rounds finalized."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.started = time.monotonic()
        self.closes: list[dict[str, Any]] = []  # [0]: the start
        self._task: TrainingTask | None = None

    def snapshot(self, fed: Federation) -> dict[str, Any]:
        counters: dict[str, dict[str, int]] = {}
        for name, daemon in fed.daemons.items():
            answers = {e: daemon.rpc(e) for e in {e for e, _ in COUNTERS.values()}}
            counters[name] = {k: int(answers[e][f]) for k, (e, f) in COUNTERS.items()}
        return {"t": time.monotonic() - self.started, "daemons": counters}

    def __call__(self, fed: Federation) -> bool:
        if not self.closes:
            self.closes.append(self.snapshot(fed))
        with in_netns(fed.chain_netns):
            task = self._task = self._task or fed.chain()
            finalized = len(task.events(RoundFinalized))
            closed = finalized + len(task.events(RoundExpired))
        while len(self.closes) - 1 < closed:
            self.closes.append(self.snapshot(fed))
        return finalized >= self.rounds


def measure(hosts: int, rounds: int, kubo: bool, timeout: float, work: Path) -> dict[str, Any]:
    meter = RoundMeter(rounds)
    started = time.monotonic()
    with launched(work, rounds, meter, participants=hosts, kubo=kubo, timeout=timeout) as fed:
        wall = time.monotonic() - started
        end = meter.snapshot(fed)  # every node has exited (the daemons still run): all settled
        with in_netns(fed.chain_netns):
            task = fed.chain()
            finalized = {e.round: e for e in task.events(RoundFinalized)}
            expired = {e.round for e in task.events(RoundExpired)}
            store: ContentStore = (
                KuboStore(fed.daemons["chain"].api) if kubo else LocalStore(work / "store")
            )
            with store:
                accepted = {
                    r: sum(o["accepted"] for o in json.loads(store.get(e.report_cid))["outcomes"])
                    for r, e in finalized.items()
                }
        works = {n: read_work(p) for n in fed.accounts
                 for p in fed.state_dir(n).glob("*.metrics.json")}  # fmt: skip
        codes = dict(fed.codes)
    per_round = []
    for r in range(max([*finalized, *expired], default=-1) + 1):  # expired rounds too
        booked = [w[r] for w in works.values() if r in w]
        row: dict[str, Any] = {
            "round": r,
            "status": "finalized" if r in finalized else "expired" if r in expired else "open",
            "accepted": accepted.get(r, 0),
            "nodes_booked": len(booked),
            # each kind of work, mean over the nodes (seconds)
            "split_s": {k: _mean([getattr(b, k) for b in booked]) for k in WORK},
            "train_max_s": max((b.train for b in booked), default=None),
            "node_store_bytes": sum(b.store_bytes for b in booked),
            "node_fetch_bytes": sum(b.fetch_bytes for b in booked),
        }
        if r + 1 < len(meter.closes):
            before, after = meter.closes[r], meter.closes[r + 1]
            row["wall_s"] = after["t"] - before["t"]
            if kubo:
                row["kubo"] = {
                    k: sum(after["daemons"][d][k] - before["daemons"][d][k] for d in fed.daemons)
                    for k in COUNTERS
                }
        per_round.append(row)
    first = meter.closes[0]
    return {
        "hosts": hosts,
        "store": "kubo" if kubo else "embedded",
        # start to the end of the run: nothing split across a boundary, every meter settled
        "kubo_total": {
            k: sum(end["daemons"][d][k] - first["daemons"][d][k] for d in first["daemons"])
            for k in COUNTERS
        },
        "node_store_bytes": sum(r["node_store_bytes"] for r in per_round),
        "node_fetch_bytes": sum(r["node_fetch_bytes"] for r in per_round),
        "rounds": rounds,
        "wall_s": wall,
        "exit_codes": codes,
        "finalized": len(finalized),
        "per_round": per_round,
    }


def markdown(setup: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    out = [
        "# A federation across hosts with Kubo vs one machine with the embedded store (issue 12)",
        "",
        f"digits, MLP, median, committee 3 (quorum 2), {setup['rounds']} rounds, anvil with "
        "1 s blocks. **Kubo**: every participant a network namespace with its own Kubo 0.43.1 "
        "daemon (private swarm, peered with all others), the chain host running anvil and the "
        "owner's daemon. **Embedded**: the same processes on this machine, one store directory. "
        "All on one 2-core machine shared with other work, every process at `nice -n 10`, one "
        "torch thread per node.",
        "",
        "Time split: each node's own booking of its work in the round (mean over the nodes, "
        "seconds): train; store = put of its update (committee members: also the new model and "
        "report); fetch = get (the global model; committee members: every update); aggregate = "
        "the recomputation without its fetches; chain = chain reads and transactions (send to "
        "receipt, about a block) plus small bookkeeping. Wall = time between round closes "
        "(round 0 includes start-up: imports, registration). Bytes: content the nodes put and "
        "fetched (summed over nodes) and, for Kubo, the daemons' own counters summed over all "
        "daemons (`stats/bw` TotalIn; `stats/bitswap` DataReceived and DupDataReceived), read "
        "within half a second of each round close. Bitswap's counters move with every block; "
        "`stats/bw` is a libp2p flow meter that updates about once a second, so its per-round "
        "figures lag (traffic can land in the next round) and only its whole-run totals (below) "
        "add up.",
        "",
        "| hosts | store | round | status | accepted | wall s | train | store | fetch "
        "| aggregate | chain | put B | got B | Kubo in B | bitswap B | dup B |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for row in run["per_round"]:
            split, kubo = row["split_s"], row.get("kubo", {})
            cells = [
                run["hosts"], run["store"], row["round"], row["status"], row["accepted"],
                _f(row.get("wall_s"), 1), *(_f(split[k], 3) for k in WORK),
                row["node_store_bytes"], row["node_fetch_bytes"], kubo.get("bw_in", "–"),
                kubo.get("bitswap_received", "–"), kubo.get("bitswap_dup_received", "–"),
            ]  # fmt: skip
            out.append("| " + " | ".join(str(c) for c in cells) + " |")
    out += ["", "Whole runs:", ""]
    for run in runs:
        if "error" in run:
            out.append(f"- {run['hosts']} hosts, {run['store']}: failed: {run['error'][:300]}")
            continue
        total = run["kubo_total"] if run["store"] == "kubo" else None
        kubo = (f"; Kubo, all daemons, whole run: {total['bw_in']:,} B in and "
                f"{total['bw_out']:,} B out (stats/bw), {total['bitswap_received']:,} B by bitswap "
                f"({total['bitswap_dup_received']:,} B duplicate)" if total else "")  # fmt: skip
        out.append(f"- {run['hosts']} hosts, {run['store']}: {run['finalized']}/{run['rounds']} "
                   f"rounds finalized, {run['wall_s']:.0f} s, exit codes "
                   f"{sorted(set(run['exit_codes'].values()))}; nodes put "
                   f"{run['node_store_bytes']:,} B and got {run['node_fetch_bytes']:,} B"
                   + kubo)  # fmt: skip
    out += [
        "",
        "Reproduce (root, iproute2, anvil, Kubo): `FLCHAIN_IPFS_BIN=.tools/bin/ipfs nice -n 10 "
        f".venv/bin/python scripts/bench_multihost.py --hosts {' '.join(map(str, setup['hosts']))}"
        f" --rounds {setup['rounds']} --json benchmarks/results/multihost.json "
        "--md benchmarks/results/multihost.md`",
        "",
    ]
    return "\n".join(out)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _f(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, nargs="+", default=[3, 10])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--stores", nargs="+", choices=["embedded", "kubo"],
                   default=["embedded", "kubo"])  # fmt: skip
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds per federation")
    p.add_argument("--json", type=Path)
    p.add_argument("--md", type=Path)
    p.add_argument("--from-json", type=Path, help="only rewrite --md from an earlier --json")
    args = p.parse_args()
    if args.from_json:
        done = json.loads(args.from_json.read_text())
        args.md.write_text(markdown(done["setup"], done["runs"]))
        return
    if missing := missing_tools():
        sys.exit(f"{missing[0]} ({missing[1]})")
    setup = {"hosts": args.hosts, "rounds": args.rounds, "stores": args.stores}
    runs: list[dict[str, Any]] = []
    base = Path(tempfile.mkdtemp(prefix="bench-multihost-"))
    print(f"work and logs in {base}", flush=True)
    for hosts in args.hosts:
        for kind in args.stores:  # side by side: each size's two runs back to back
            work = base / f"{hosts}-{kind}"
            work.mkdir()
            print(f"{hosts} hosts, {kind} store ...", flush=True)
            try:
                run = measure(hosts, args.rounds, kind == "kubo", args.timeout, work)
            except Exception as exc:  # a federation that cannot finish here is a result too
                run = {"hosts": hosts, "store": kind, "rounds": args.rounds,
                       "error": f"{type(exc).__name__}: {exc}"[:2000], "per_round": []}  # fmt: skip
            print(json.dumps(run, indent=1), flush=True)
            runs.append(run)
            if args.json:  # after every run: a later run that fails keeps the earlier ones
                args.json.write_text(json.dumps({"setup": setup, "runs": runs}, indent=1) + "\n")
            if args.md:
                args.md.write_text(markdown(setup, runs))


if __name__ == "__main__":
    main()
