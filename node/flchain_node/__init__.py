"""The FLChain participant node: one process per participant key.

It follows the task contract and, each round, trains, stores and commits its update, reveals it,
recomputes and attests the round when drawn onto the committee, and claims its rewards. Its
local state is persisted atomically after every step so a killed node resumes where it was.
"""

from flchain_node.participant import ParticipantNode, StepReport
from flchain_node.state import NodeState, RoundState

__all__ = ["NodeState", "ParticipantNode", "RoundState", "StepReport"]
