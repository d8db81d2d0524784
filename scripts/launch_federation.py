#!/usr/bin/env python
"""Launch a federation as separate OS processes on 127.0.0.1: a chain (anvil or
``flchain devchain``, unless ``--rpc-url`` names one), ``flchain task create``, one
``flchain node run`` per participant and the owner's ``flchain task keep``, all sharing one
embedded store directory. Waits for the task to complete and prints ``flchain status``.

    python scripts/launch_federation.py --chain anvil --participants 4 --rounds 2

With ``--config TASK.toml`` the task is that file (its ``[ledger]`` section sets rounds and
phases); with one ``--data PATH`` per participant each node trains only on its own file
(``flchain node run --data PATH``) instead of a shard of a built-in data set:

    PYTHONPATH=examples/tabular/model python scripts/launch_federation.py \
        --config examples/tabular/task.toml --data examples/tabular/hospital_a.csv \
        --data examples/tabular/hospital_b.csv --data examples/tabular/hospital_c.csv

Logs of every process land in ``--work DIR/logs``. Exits non-zero when any process fails or
the task does not complete within ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flchain.ledger.accounts import DEV_MNEMONIC, account_from_mnemonic
from flchain.ledger.anvil import AnvilProcess

CONFIG = """\
name = "launched-federation"
[data]
dataset = "{dataset}"
partition = "iid"
[training]
model = "mlp"
epochs = 1
batch_size = 16
lr = 0.1
[aggregation]
rule = "{rule}"
params = {params}
[ledger]
rounds = {rounds}
committee_size = 3
quorum = 2
commit_blocks = {commit_blocks}
reveal_blocks = {reveal_blocks}
attest_blocks = {attest_blocks}
max_participants = {participants}
min_reveals = {min_reveals}
"""


def task_config(
    *,
    dataset: str,
    rule: str,
    rounds: int,
    participants: int,
    phase_blocks: tuple[int, int, int],
    min_reveals: int,
) -> str:
    """The task TOML: MLP, IID, a committee of 3 with a quorum of 2; ``phase_blocks`` are the
    commit, reveal and attest phases' lengths."""
    params = "{ f = 1 }" if rule in ("krum", "multi_krum", "bulyan") else "{}"
    commit, reveal, attest = phase_blocks
    return CONFIG.format(
        dataset=dataset,
        rule=rule,
        params=params,
        rounds=rounds,
        participants=participants,
        commit_blocks=commit,
        reveal_blocks=reveal,
        attest_blocks=attest,
        min_reveals=min_reveals,
    )


def flchain(*args: str) -> list[str]:
    """The ``flchain`` command of this interpreter's environment."""
    return [sys.executable, "-m", "flchain_node.cli.app", *args]


def start_chain(kind: str, accounts: int, block_time: float, logs: Path) -> tuple[str, object]:
    """Start anvil or a devchain with interval mining; returns its URL and a handle to stop."""
    if kind == "anvil":
        anvil = AnvilProcess(accounts=accounts, block_time=block_time).start()
        return anvil.url, anvil
    port = 18545 + os.getpid() % 1000
    log = (logs / "devchain.log").open("w")
    proc = subprocess.Popen(
        flchain("devchain", "--port", str(port), "--accounts", str(accounts),
                "--block-time", str(block_time)),
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        time.sleep(0.2)
        if "Listening" in (logs / "devchain.log").read_text():
            return url, proc
        if proc.poll() is not None:
            break
    raise SystemExit(f"devchain did not start; see {logs / 'devchain.log'}")


def stop(handle: object) -> None:
    if isinstance(handle, AnvilProcess):
        handle.stop()
    elif isinstance(handle, subprocess.Popen):
        handle.terminate()
        handle.wait(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chain", choices=("anvil", "devchain"), default="anvil")
    ap.add_argument("--rpc-url", help="use this running chain (dev-mnemonic accounts funded)")
    ap.add_argument("--participants", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rule", default="median")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--phase-blocks", type=int, default=8, help="blocks per protocol phase")
    ap.add_argument("--block-time", type=float, default=1.0, help="seconds per block")
    ap.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--config", type=Path, help="task config to create (default: generated)")
    ap.add_argument(
        "--data",
        type=Path,
        action="append",
        default=[],
        help="one per participant, in order: the node's own data file (sets --participants)",
    )
    args = ap.parse_args(argv)
    if args.data:
        args.participants = len(args.data)

    work = args.work or Path(tempfile.mkdtemp(prefix="flchain-launch-"))
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    n = args.participants
    owner, *participants = [account_from_mnemonic(DEV_MNEMONIC, i) for i in range(n + 1)]
    handle: object = None
    url = args.rpc_url
    if url is None:
        url, handle = start_chain(args.chain, n + 1, args.block_time, logs)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        env = os.environ | {
            "FLCHAIN_RPC_URL": url,
            "FLCHAIN_STORE": str(work / "store"),
            "PYTHONUNBUFFERED": "1",  # logs stay complete when a process is killed
        }
        config = work / "task.toml"
        if args.config is not None:
            if args.config.resolve() != config.resolve():
                shutil.copyfile(args.config, config)
        else:
            config.write_text(task_config(
                dataset=args.dataset, rule=args.rule, rounds=args.rounds, participants=n,
                phase_blocks=(args.phase_blocks,) * 3, min_reveals=max(2, n // 2),
            ))  # fmt: skip
        owner_key = {"FLCHAIN_KEY": owner.key.to_0x_hex()}
        mint = [x for p in participants for x in ("--mint-to", p.address)]
        created = subprocess.run(
            flchain("task", "create", str(config), "--json", *mint),
            env=env | owner_key, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if created.returncode:
            print(created.stderr, file=sys.stderr)
            return 1
        task = json.loads(created.stdout)["task"]
        print(f"chain {url}; task {task}; work dir {work}")
        env["FLCHAIN_TASK"] = task
        for i, account in enumerate(participants):
            source = (["--data", str(args.data[i].resolve())] if args.data
                      else ["--shard", str(i), "--shards", str(n)])  # fmt: skip
            procs[f"node-{i}"] = subprocess.Popen(
                flchain("node", "run", *source,
                        "--state-dir", str(work / "nodes"), "--timeout", str(args.timeout)),
                env=env | {"FLCHAIN_KEY": account.key.to_0x_hex()},
                stdout=(logs / f"node-{i}.log").open("w"), stderr=subprocess.STDOUT,
            )  # fmt: skip
        procs["keeper"] = subprocess.Popen(
            flchain("task", "keep", "--timeout", str(args.timeout)),
            env=env | owner_key, stdout=(logs / "keeper.log").open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + args.timeout
        failed = []
        for name, proc in procs.items():
            try:
                code = proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                code = -1
            if code:
                failed.append(name)
                print(
                    f"{name} failed (exit {code}); log: {logs / (name + '.log')}", file=sys.stderr
                )
        status = subprocess.run(
            flchain("status", "--json"), env=env, capture_output=True, text=True
        )
        print(status.stdout or status.stderr)
        return 1 if failed or status.returncode else 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        stop(handle)
        if args.work is None and not os.environ.get("FLCHAIN_KEEP_WORK"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
