"""The FLChain participant node: one process per participant key.

It follows the task contract and, each round, trains, stores and commits its update, reveals it,
recomputes and attests the round when drawn onto the committee, and claims its rewards. Its
local state is persisted atomically after every step so a killed node resumes where it was.
The ``flchain`` command lives in :mod:`flchain_node.cli`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flchain_node.participant import ParticipantNode, StepReport
    from flchain_node.state import NodeState, RoundState

__all__ = ["NodeState", "ParticipantNode", "RoundState", "StepReport"]

_HOMES = {
    "ParticipantNode": "flchain_node.participant",
    "StepReport": "flchain_node.participant",
    "NodeState": "flchain_node.state",
    "RoundState": "flchain_node.state",
}


def __getattr__(name: str) -> Any:
    # Exported lazily: the node's modules import torch (seconds), and ``flchain --help`` (this
    # package's CLI) must not pay for that.
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'flchain_node' has no attribute {name!r}")
