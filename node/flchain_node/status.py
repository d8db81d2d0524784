"""A task's state as ``flchain status`` shows it, read from the chain (and the store, for the
rewards credited in the latest round report)."""

from __future__ import annotations

from typing import Any

from flchain.ledger.chain import Chain
from flchain.ledger.contracts import ParticipantRegistry, Registered, TrainingTask
from flchain.protocol.rounds import TaskView
from flchain.storage import ContentStore


def task_status(chain: Chain, task_address: str, store: ContentStore) -> dict[str, Any]:
    """Round, phase, pool and every registered participant's stake, credit and claims."""
    task = TrainingTask(chain, task_address)
    registry = ParticipantRegistry(chain, task.registry())
    view = TaskView(task, store)
    latest = view.last_report()
    credited = dict(latest.cumulative) if latest else {}
    accounts = dict.fromkeys(e.account for e in registry.events(Registered))
    participants = [
        {
            "address": a,
            "stake": registry.stake_of(a),
            "active": registry.is_active(a),
            "credited": credited.get(a, 0),
            "claimed": task.claimed(a),
        }
        for a in accounts
    ]
    return {
        "task": task.address,
        "registry": registry.address,
        "round": task.current_round(),
        "phase": task.phase().name.lower(),
        "rounds": view.params.rounds,
        "finalized_rounds": task.finalized_rounds(),
        "model_cid": task.model_cid(),
        "pool": task.pool(),
        "total_credited": task.total_credited(),
        "total_claimed": task.total_claimed(),
        "participants": participants,
    }
