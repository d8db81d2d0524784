"""The same federation twice on the embedded chain builds the same chain, block hash for block
hash: the same committee draws (seeded from block hashes), the same slashes and the same pay.

A run depends on nothing but its configuration: the chain stamps its own blocks, derives
``mix_hash`` from the parent, prices transactions from the latest block, and each node derives
its commit salt from its key and what it commits (``derived_salt``) instead of drawing it."""

from __future__ import annotations

from typing import Any

import torch
from flchain_node.federation import DemoConfig, Federation

from flchain.ledger.contracts import CommitteeMemberSettled, Slashed

DEMO = DemoConfig(
    participants=6,
    rounds=2,
    attackers=1,
    attack="sign_flip",
    free_riders=1,
    dropouts=1,
    committee_size=3,
    dataset="digits",
    model="mlp",
    epochs=1,
)


def _run() -> dict[str, Any]:
    fed = Federation(DEMO)
    try:
        result = fed.run()
        chain, task, registry = fed.chain, fed.deployment.task, fed.deployment.registry
        heights = range(chain.block_number + 1)
        return {
            "blocks": [bytes(chain.w3.eth.get_block(n)["hash"]) for n in heights],
            "committees": [(e.round, e.member) for e in task.events(CommitteeMemberSettled)],
            "slashes": [(e.account, e.amount) for e in registry.events(Slashed)],
            "accuracy": [row.accuracy for row in result.rounds],
            "claimed": result.claimed,
        }
    finally:
        fed.close()


def test_the_same_federation_twice_builds_the_same_chain() -> None:
    torch.set_num_threads(1)
    first, second = _run(), _run()
    assert len(first["blocks"]) > 20 and first["committees"] and first["slashes"]
    assert second == first
