"""CPU time of a one-process federation's rounds after the first, and what they computed.

Runs ``Federation(DemoConfig.honest_fedavg(n, rounds))`` (as ``scripts/profile_rounds.py``
builds it) and prints one JSON line: the process's CPU time (``time.process_time``: every
thread, so a loaded shared machine inflates it less than wall time) from the end of round 0 to
the end of the last round, per round, and what the federation computed (each round's
accuracy, rewards, accepted updates and model CID, and the claims: ``--computed`` writes
them, the line has their SHA-256), so two code versions can be compared on both. Gas is left
out: the random salts make it vary from run to run on any version.

``--split`` also books the CPU time (``time.thread_time``: the calling thread's only, so
other processes' load hardly moves it) spent signing (``flchain.ledger.chain.sign_transaction``
where it exists, else eth-account's ``LocalAccount.sign_transaction``) and building
transactions (``Chain._build``, without its gas estimates) in the same rounds.

``--profile out.prof`` also runs cProfile in every thread (a ``BlockPass``'s job threads
included) over the whole run, round 0 too, and writes their merged stats (cProfile's overhead
inflates the CPU figure: use it for the split, not the time).

    PYTHONPATH=$PWD:$PWD/node python scripts/bench_client_side.py 100 3
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pstats
import threading
import time
from pathlib import Path
from typing import Any

import torch
from flchain_node.federation import DemoConfig, Federation, RoundRow


class AllThreads:
    """cProfile in the calling thread and in every thread started after :meth:`start`."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.setprofile(self._begin)  # a new thread calls it on its first event
        self._begin(None, "call", None)

    def _begin(self, frame: Any, event: str, arg: Any) -> None:
        profile = cProfile.Profile()
        with self._lock:
            self.profiles.append(profile)
        profile.enable()  # replaces this thread's profile function

    def dump(self, path: Path) -> None:
        threading.setprofile(None)
        for profile in self.profiles:
            profile.disable()  # the calling thread's; the others' threads have ended
        stats = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            try:
                stats.add(profile)
            except TypeError:  # a thread that never made a call
                continue
        stats.dump_stats(path)


class Split:
    """Thread CPU time inside the wrapped functions while :attr:`on` (see ``--split``)."""

    def __init__(self) -> None:
        self.on = False
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def wrap(self, owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                if self.on:
                    with self._lock:
                        self.seconds[label] = self.seconds.get(label, 0.0) + (
                            time.thread_time() - started
                        )
                        self.calls[label] = self.calls.get(label, 0) + 1

        setattr(owner, name, timed)

    def install(self) -> None:
        from eth_account.signers.local import LocalAccount

        from flchain.ledger import chain

        if hasattr(chain, "sign_transaction"):
            self.wrap(chain, "sign_transaction", "signing")
        else:
            self.wrap(LocalAccount, "sign_transaction", "signing")
        # _build with gas=None also estimates (executes the call): no protocol transaction
        # of a round does (fixed gas), so this is encoding only.
        self.wrap(chain.Chain, "_build", "building")


def run(
    participants: int,
    rounds: int,
    profiler: AllThreads | None,
    computed_to: Path | None = None,
    split: Split | None = None,
) -> dict[str, Any]:
    torch.set_num_threads(1)
    if split is not None:
        split.install()
    fed = Federation(DemoConfig.honest_fedavg(participants, rounds))
    cpus: list[float] = []
    walls: list[float] = []

    def on_round(row: RoundRow) -> None:
        cpus.append(time.process_time())
        walls.append(time.perf_counter())
        if split is not None:
            split.on = 1 <= len(cpus) < rounds

    if profiler is not None:
        profiler.start()  # the whole run: round 0 is in the split too
    try:
        result = fed.run(on_round=on_round)
    finally:
        fed.close()
    # Gas is left out: the random salts' zero bytes change the calldata's cost run to run.
    computed = {
        "accuracy": [r.accuracy for r in result.rounds],
        "rewards": [r.rewards for r in result.rounds],
        "accepted": [r.accepted for r in result.rounds],
        "model_cids": [r.model_cid for r in result.rounds],
        "claimed": result.claimed,
    }
    text = json.dumps(computed, sort_keys=True, indent=1)
    if computed_to is not None:
        computed_to.write_text(text + "\n")
    digest = hashlib.sha256(text.encode()).hexdigest()
    per_round = (
        {
            label: {"seconds": seconds / (rounds - 1), "calls": split.calls[label] / (rounds - 1)}
            for label, seconds in split.seconds.items()
        }
        if split is not None
        else None
    )
    return {
        "participants": participants,
        "rounds": rounds,
        "cpu_per_round": (cpus[-1] - cpus[0]) / (rounds - 1),
        "wall_per_round": (walls[-1] - walls[0]) / (rounds - 1),
        "accuracy": computed["accuracy"],
        "computed_sha256": digest,
        **({"split_per_round": per_round} if per_round is not None else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("participants", type=int)
    parser.add_argument("rounds", type=int)
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--computed", type=Path, help="write what the run computed here")
    parser.add_argument("--split", action="store_true", help="CPU time signing and building")
    args = parser.parse_args()
    if args.rounds < 2:
        raise SystemExit("need 2 rounds or more: the first is left out")
    profiler = AllThreads() if args.profile else None
    split = Split() if args.split else None
    print(json.dumps(run(args.participants, args.rounds, profiler, args.computed, split)))
    if profiler is not None:
        profiler.dump(args.profile)


if __name__ == "__main__":
    main()
