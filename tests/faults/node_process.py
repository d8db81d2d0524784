"""One participant node as its own OS process, for the SIGKILL test.

    python node_process.py RPC_URL TASK STORE_DIR STATE_FILE INDEX

Builds participant ``INDEX`` of :data:`support.fedkit.DEMO` (its key from the dev mnemonic, its data
shard from the demo's seeded partition) against a JSON-RPC chain and a shared store directory,
then steps until round 0 is finalized and its vote is in (or its window closed), claims, and
exits 0. Every step's actions go to stdout as one JSON line, so the parent knows where it is.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from flchain_node.factory import build_participant, shard_trainer

from flchain.ledger.chain import Chain
from flchain.ledger.contracts import RoundStatus, TrainingTask
from flchain.storage import LocalStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared kit
from support.fedkit import DEMO


def main(rpc_url: str, task_address: str, store_dir: str, state_file: str, index: int) -> int:
    torch.set_num_threads(1)
    config = DEMO.task_config()
    chain = Chain.connect(rpc_url, num_accounts=DEMO.participants + 1)
    account = chain.accounts[index + 1]  # account 0 is the task owner
    task = TrainingTask(chain, task_address)
    trainer = shard_trainer(config, index, DEMO.participants)
    with LocalStore(Path(store_dir), durable=False) as store:
        node = build_participant(task, store, account, trainer, state_path=Path(state_file))
        print(json.dumps({"started": True}), flush=True)
        while True:
            actions = node.step().actions
            print(json.dumps({"actions": actions}), flush=True)
            record = task.round_record(0)
            voted = any(task.vote_of(0, node.address).result_hash)
            window_closed = chain.block_number > task.attest_deadline(0)
            if record.status != RoundStatus.OPEN and (voted or window_closed):
                break
            time.sleep(0.2)  # polling; the devchain shares a process with the test
        print(json.dumps({"claimed": node.claim()}), flush=True)
    return 0


if __name__ == "__main__":
    url, task_address, store_dir, state_file, index = sys.argv[1:]
    sys.exit(main(url, task_address, store_dir, state_file, int(index)))
