"""A task's state as ``flchain status`` shows it, read from the chain (and the store, for the
rewards credited and, on a DP task, the privacy spent, both from the latest round report)."""

from __future__ import annotations

from typing import Any

from flchain.ledger.chain import Chain
from flchain.ledger.contracts import ParticipantRegistry, Registered, TrainingTask
from flchain.protocol.rounds import TaskView
from flchain.protocol.task import dp_config
from flchain.storage import ContentStore


def task_status(chain: Chain, task_address: str, store: ContentStore) -> dict[str, Any]:
    """Round, phase, pool and every registered participant's stake, credit and claims; on a DP
    task also its ε as the latest report records it (``epsilon``: cumulative, ``epsilon_round``:
    of that round's release; ``dp_rounds``: the rounds it revealed, which ε follows from)."""
    task = TrainingTask(chain, task_address)
    registry = ParticipantRegistry(chain, task.registry())
    view = TaskView(task, store)
    latest = view.last_report()
    credited = dict(latest.cumulative) if latest else {}
    accounts = dict.fromkeys(e.account for e in registry.events(Registered))
    participants: list[dict[str, Any]] = [
        {
            "address": a,
            "stake": registry.stake_of(a),
            "active": registry.is_active(a),
            "credited": credited.get(a, 0),
            "claimed": task.claimed(a),
        }
        for a in accounts
    ]
    dp = dp_config(view.manifest.config)
    if dp is not None:
        spent = latest.privacy(dp) if latest else {}
        counts = latest.dp_rounds if latest else {}
        for p in participants:
            mine = spent.get(p["address"])
            p["dp_rounds"] = counts.get(p["address"], 0)
            p["epsilon"] = mine.epsilon_total if mine else 0.0
            p["epsilon_round"] = mine.epsilon_round if mine else 0.0
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
        **(
            {}
            if dp is None
            else {"dp": {"delta": dp.delta, "round": latest.round if latest else None}}
        ),
    }
