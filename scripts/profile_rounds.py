"""Where a one-process federation's rounds after the first spend their time: a sampling split.

Runs ``Federation(DemoConfig.honest_fedavg(n, rounds))`` (what ``flchain demo`` and
``scripts/bench_vs_flower.py`` run) and, from the end of round 0 to the end of the last round,
looks at every thread's stack every 2 ms (the job threads of a ``BlockPass`` included, which
cProfile does not see). A thread blocked on a lock or queue is idle; each running sample is
booked twice, to the step of the round it is in (the first of ``STEPS`` on its stack) and to
the kind of work (the innermost frame that names one of ``KINDS``). Shares times the mean wall
time per round give the seconds. The interpreter's switch interval is cut to 0.2 ms, so a
sample lands near where the running thread is rather than where it next releases the GIL;
the sampling still costs ~10-20 % of the round (the table's rounds are slower than unsampled).

    nice -n 10 python scripts/profile_rounds.py 50 3 --json split-50.json
    nice -n 10 python scripts/profile_rounds.py 10 3 --model cnn --json split-cnn-10.json
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from flchain_node.federation import DemoConfig, Federation, RoundRow

INTERVAL = 0.002
#: Frames a waiting thread sits in (its sample is not booked).
IDLE = {"_worker", "acquire", "wait", "_hand_to", "park", "join", "select", "poll", "sleep"}
#: (function on the stack, step of the round): the first that is on the stack wins.
STEPS = [
    ("_row", "report row: decode + evaluate"),
    ("_keeper", "keeper"),
    ("advance_clock", "clock (mining to a deadline)"),
    ("_may_attest", "committee lookup"),
    ("_prefetch", "prefetch"),
    ("recompute", "committee recomputation"),
    ("_late_attest", "attest"),
    ("_attest", "attest"),
    ("_commit", "commit"),
    ("_reveal", "reveal"),
    ("step", "node step: its stepView read"),
]
#: (function[@file part], kind of work): the innermost frame that matches wins.
KINDS = [
    ("train_local", "training (torch)"),
    ("evaluate", "evaluation (torch)"),
    ("_mine", "mining (block, state root)"),
    ("mine_blocks", "mining (block, state root)"),
    ("mine", "mining (block, state root)"),
    ("send_raw_transaction", "py-evm: transactions (executed on send)"),
    ("estimate_gas", "py-evm: gas estimates"),
    ("sign_transaction", "signing"),
    ("_execute_call", "py-evm: view calls (executed)"),
    ("get_logs", "event-log queries"),
    ("events", "event-log queries"),
    ("call", "web3: view plumbing (encode, format, decode)"),
    ("encode_transaction_data", "web3: transaction ABI encoding"),
    ("get_abi_element", "web3: ABI lookup"),
    ("decode_model", "update codec"),
    ("encode_update", "update codec"),
    ("decode_update", "update codec"),
    ("aggregate", "aggregation maths"),
    ("put@storage/", "store reads/writes"),
    ("get@storage/", "store reads/writes"),
    ("get_block@storage/", "store reads/writes"),
    ("_read_block@storage/", "store reads/writes"),  # also in the store's reader threads
    ("update_digest", "update digest (sha-256)"),
    ("extract_transaction_sender", "sender recovery (signature check on send)"),
]


def _matches(pattern: str, name: str, filename: str) -> bool:
    function, _, where = pattern.partition("@")
    return name == function and where in filename


class Sampler:
    def __init__(self) -> None:
        self.steps: collections.Counter[str] = collections.Counter()
        self.kinds: collections.Counter[str] = collections.Counter()
        self.active = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._thread.join()

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop:
            time.sleep(INTERVAL)
            if self.active:
                for ident, frame in list(sys._current_frames().items()):
                    if ident != me:
                        try:
                            self._book(frame)
                        except AttributeError:  # a thread's frames torn down mid-walk
                            continue

    def _book(self, frame: FrameType | None) -> None:
        stack: list[tuple[str, str]] = []
        while frame is not None:
            stack.append((frame.f_code.co_name, frame.f_code.co_filename))
            frame = frame.f_back
        if not stack or stack[0][0] in IDLE:
            return
        names = {name for name, _ in stack}
        step = next((label for name, label in STEPS if name in names), "other")
        kind = next(
            (label for name, file in stack for p, label in KINDS if _matches(p, name, file)),
            "other Python",
        )
        self.steps[step] += 1
        self.kinds[kind] += 1


def profile(participants: int, rounds: int, model: str = "mlp") -> dict[str, Any]:
    if rounds < 2:
        raise SystemExit("need 2 rounds or more: the first is left out")
    torch.set_num_threads(1)
    sys.setswitchinterval(0.0002)
    sampler = Sampler()
    fed = Federation(DemoConfig.honest_fedavg(participants, rounds, model=model))
    walls: list[float] = []
    cpus: list[float] = []

    def on_round(row: RoundRow) -> None:
        walls.append(time.perf_counter())
        cpus.append(time.process_time())
        sampler.active = 1 <= len(walls) < rounds

    sampler.start()
    try:
        fed.run(on_round=on_round)
    finally:
        fed.close()
        sampler.stop()
    per_round = (walls[-1] - walls[0]) / (rounds - 1)
    samples = sum(sampler.kinds.values())

    def seconds(counts: collections.Counter[str]) -> dict[str, float]:
        return {k: round(v / samples * per_round, 4) for k, v in counts.most_common()}

    return {
        "participants": participants,
        "rounds": rounds,
        "model": model,
        "per_round_wall": per_round,
        "per_round_cpu": (cpus[-1] - cpus[0]) / (rounds - 1),
        "samples": samples,
        "steps": seconds(sampler.steps),
        "kinds": seconds(sampler.kinds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("participants", type=int)
    parser.add_argument("rounds", type=int)
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = profile(args.participants, args.rounds, args.model)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"per round after the first: {result['per_round_wall']:.3f} s wall, "
          f"{result['per_round_cpu']:.3f} s CPU ({result['samples']} samples)")  # fmt: skip
    for title in ("steps", "kinds"):
        print(f"by {title[:-1]}:")
        for label, value in result[title].items():
            print(f"  {label:48s} {value:6.3f} s {100 * value / result['per_round_wall']:5.1f} %")


if __name__ == "__main__":
    main()
