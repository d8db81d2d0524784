"""The test suite's one on-chain task configuration, with overrides per test."""

from __future__ import annotations

from typing import Any

from flchain.ledger.contracts import TaskParameters

#: A small task: committee of 3 (quorum 2), phases of 20/20/10 blocks, 8 participants a round,
#: five rounds of 10 000 tokens; slashes and the fee are small against a 1 000-token stake.
TASK_DEFAULTS: dict[str, Any] = {
    "manifest_cid": "bafymanifest",
    "manifest_digest": b"\x01" * 32,
    "model_spec_digest": b"\x02" * 32,
    "aggregation_rule": 1,
    "rule_params": b"\x03" * 32,
    "committee_size": 3,
    "quorum": 2,
    "commit_blocks": 20,
    "reveal_blocks": 20,
    "attest_blocks": 10,
    "max_participants": 8,
    "min_reveals": 2,
    "rounds": 5,
    "round_budget": 10_000,
    "committee_fee": 100,
    "non_reveal_slash": 30,
    "committee_slash": 40,
    "max_samples": 1_000_000,
    "initial_model_cid": "bafyinitialmodel",
    "initial_model_digest": b"\x04" * 32,
}


def make_task_config(**overrides: Any) -> TaskParameters:
    """:data:`TASK_DEFAULTS` with ``overrides`` (snake_case field names of
    :class:`~flchain.ledger.contracts.TaskParameters`); an unknown name is a ``TypeError``."""
    return TaskParameters(**{**TASK_DEFAULTS, **overrides})
