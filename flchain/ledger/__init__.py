"""The ledger layer: chain connections, accounts, contract wrappers and deployment.

>>> from flchain.ledger import Chain, deploy_stack, register_all   # doctest: +SKIP
"""

from flchain.ledger.accounts import dev_accounts, load_account
from flchain.ledger.anvil import AnvilProcess
from flchain.ledger.chain import Chain
from flchain.ledger.contracts import (
    SLASHER_ROLE,
    VERIFIER_ROLE,
    Commitment,
    CommitmentFlag,
    FLToken,
    ParticipantRegistry,
    Phase,
    Result,
    RoundRecord,
    RoundStatus,
    Settlement,
    StepView,
    TaskParameters,
    TrainingTask,
    Vote,
)
from flchain.ledger.deploy import (
    Deployment,
    deploy_another_task,
    deploy_stack,
    register_all,
    task_parameters,
)
from flchain.ledger.devchain import DevChain
from flchain.ledger.merkle import RewardTree

__all__ = [
    "SLASHER_ROLE",
    "VERIFIER_ROLE",
    "AnvilProcess",
    "Chain",
    "Commitment",
    "CommitmentFlag",
    "Deployment",
    "DevChain",
    "FLToken",
    "ParticipantRegistry",
    "Phase",
    "Result",
    "RewardTree",
    "RoundRecord",
    "RoundStatus",
    "Settlement",
    "StepView",
    "TaskParameters",
    "TrainingTask",
    "Vote",
    "deploy_another_task",
    "deploy_stack",
    "dev_accounts",
    "load_account",
    "register_all",
    "task_parameters",
]
