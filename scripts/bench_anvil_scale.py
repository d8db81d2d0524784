"""What a transaction costs anvil as a federation grows, one at a time and in a batch.

For each participant count, a fresh anvil gets the demo's task (all honest, FedAvg), every
participant minted, approved and registered (:meth:`Chain.transact_all` batches), and then round
0's commits: half of them one at a time (:meth:`Chain.transact`, each waiting for its receipt,
as a node's step sends it) and the other half in one :meth:`Chain.transact_all`. Reported per
commit: wall milliseconds, anvil's own CPU milliseconds (``NodeProcess.cpu_seconds``, which do
not grow when other load slows the run down) and blocks mined. anvil mines a block for each
arrival and its work per block grows with the chain's state, so what a batch saves is blocks.

    nice -n 10 python scripts/bench_anvil_scale.py --sizes 100 1000 --json out.json --md out.md
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import benchkit
from flchain_node.federation import DemoConfig
from flchain_node.owner import create_task

from flchain.ledger.chain import Chain, TxRequest
from flchain.ledger.contracts import COMMIT_GAS
from flchain.ledger.deploy import register_all
from flchain.ledger.nodes import AnvilProcess
from flchain.protocol.commitment import commitment, new_salt
from flchain.storage import LocalStore


def measure(n: int) -> dict[str, Any]:
    """Set-up and round 0's commits of ``n`` participants on a fresh anvil."""
    config = DemoConfig.honest_fedavg(n, 1).task_config()
    with AnvilProcess(accounts=n + 1) as anvil, tempfile.TemporaryDirectory() as work:
        chain = Chain.connect(anvil.url, num_accounts=n + 1)
        owner, accounts = chain.accounts[0], chain.accounts[1:]
        started = time.perf_counter()
        store = LocalStore(Path(work) / "store", durable=False)
        created = create_task(chain, owner, config, store, mint_to=[a.address for a in accounts])
        register_all(created.deployment, accounts)
        row: dict[str, Any] = {
            "participants": n,
            "setup_s": round(time.perf_counter() - started, 1),
            "setup_blocks": chain.block_number,
        }
        task = created.deployment.task

        def commit(account: Any) -> TxRequest:
            value = commitment(
                chain_id=chain.chain_id, task=task.address, sender=account.address,
                round_id=0, digest=os.urandom(32), num_samples=1, salt=new_salt(),
            )  # fmt: skip
            return TxRequest(task.contract.functions.commit(value), account, gas=COMMIT_GAS)

        def one_by_one(txs: list[TxRequest]) -> list[Any]:
            return [chain.transact(t.fn, t.sender, gas=t.gas) for t in txs]

        half = n // 2
        for label, group, send in (
            ("one_by_one", accounts[:half], one_by_one),
            ("batched", accounts[half:], chain.transact_all),
        ):
            txs = [commit(a) for a in group]
            block, cpu, wall = chain.block_number, anvil.cpu_seconds() or 0.0, time.perf_counter()
            receipts = send(txs)
            assert all(r["status"] == 1 for r in receipts)
            row[label] = {
                "wall_ms": round(1000 * (time.perf_counter() - wall) / len(txs), 2),
                "anvil_cpu_ms": round(1000 * ((anvil.cpu_seconds() or 0.0) - cpu) / len(txs), 2),
                "blocks": chain.block_number - block,
                "commits": len(txs),
            }
        assert task.round_record(0).commits == n
        return row


def markdown(out: dict[str, Any]) -> str:
    lines = [
        "| participants | set-up s (blocks) | commit one at a time: wall ms / anvil CPU ms / "
        "blocks | in one batch: wall ms / anvil CPU ms / blocks |",
        "|---:|---:|---:|---:|",
    ]
    for r in out["runs"]:
        cells = [f"{r['participants']:,}", f"{r['setup_s']} ({r['setup_blocks']:,})"]
        for label in ("one_by_one", "batched"):
            m = r[label]
            cells.append(f"{m['wall_ms']} / {m['anvil_cpu_ms']} / {m['blocks']} of {m['commits']}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = benchkit.bench_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    args = benchkit.parse(parser)
    runs = []
    for n in args.sizes:
        runs.append(measure(n))
        benchkit.progress(runs[-1])
    out = {"setup": benchkit.setup_of(args, load_average=os.getloadavg()), "runs": runs}
    benchkit.write_results(args, out, markdown)


if __name__ == "__main__":
    main()
