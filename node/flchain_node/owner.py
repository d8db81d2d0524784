"""The task owner's side: create a task from a config, and keep it moving.

:func:`create_task` stores the manifest and initial model, deploys token, registry and task,
funds the reward pool and (on local chains) mints stake tokens to the participants.
:class:`Keeper` does the upkeep the protocol leaves to anyone — slashing commit-without-reveal
and settling committees once their windows close — so rounds never depend on a volunteer.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from flchain.config import TaskConfig
from flchain.errors import ContractRevert, ProtocolError
from flchain.learning.codec import encode_model
from flchain.learning.models import parameter_state
from flchain.ledger.chain import Chain
from flchain.ledger.contracts import (
    Committed,
    Revealed,
    RoundRecord,
    RoundStatus,
    TaskParameters,
    TrainingTask,
)
from flchain.ledger.deploy import Deployment, deploy_stack, task_parameters
from flchain.protocol.manifest import TaskManifest
from flchain.protocol.rounds import round_start_bound
from flchain.protocol.task import initial_model_and_manifest
from flchain.storage import ContentStore


@dataclass(frozen=True)
class CreatedTask:
    """A deployed task with the manifest and initial model it was created from."""

    deployment: Deployment
    manifest: TaskManifest
    manifest_cid: str
    initial_model_cid: str


def create_task(
    chain: Chain,
    owner: LocalAccount,
    config: TaskConfig,
    store: ContentStore,
    *,
    mint_to: Iterable[str] = (),
) -> CreatedTask:
    """Store the manifest and initial model, deploy the stack and fund every round's budget.

    ``mint_to`` receives one minimum stake each of the task's own token (local chains and
    studies; in a consortium participants bring their own stake).
    """
    config.validate()
    model, manifest = initial_model_and_manifest(config)
    manifest.check_owner(owner.address)  # nodes would refuse the task: say so before deploying
    initial = encode_model(parameter_state(model), manifest.spec)
    manifest_cid = store.put(manifest.to_bytes())
    initial_cid = store.put(initial)
    lg = config.ledger
    params = task_parameters(
        lg,
        manifest_cid=manifest_cid,
        manifest_digest=manifest.digest(),
        model_spec_digest=manifest.spec.digest(),
        initial_model_cid=initial_cid,
        initial_model_digest=hashlib.sha256(initial).digest(),
        aggregation=config.aggregation,
    )
    store.flush()  # the task names both CIDs on the chain: readers elsewhere must find them
    deployment = deploy_stack(
        chain,
        owner,
        config=params,
        min_stake=lg.min_stake,
        mint_to=list(mint_to),
        mint_amount=lg.min_stake,
        # every round's budget, plus one spare so rounding never starves the last round
        fund=lg.round_budget * (lg.rounds + 1),
    )
    return CreatedTask(deployment, manifest, manifest_cid, initial_cid)


@dataclass
class Keeper:
    """Slashes non-revealers once a reveal phase closed and settles each committee once its
    attest window closed. Every action is open to anyone; a revert means someone did it first.

    ``confirmations``: how many blocks must follow the block where a round was swept or settled
    before the keeper stops looking at it. Until then every step repeats the round's actions
    (a revert means they still hold, and costs only a call), so a reorg that drops the
    keeper's slashes or settlements, or a chain reset below them, has them sent again.
    """

    task: TrainingTask
    account: LocalAccount
    confirmations: int = 0
    #: Round -> block at which its committee was settled (or found to have nothing to settle).
    settled: dict[int, int] = field(default_factory=dict)
    #: Round -> block at which its non-revealers were dealt with (its reveal phase closed).
    swept: dict[int, int] = field(default_factory=dict)
    #: Round -> its record and attest deadline, once the round closed (a later round started):
    #: they no longer change, so a step reads only the current round's (the keeper steps
    #: several times a round, each over every round not settled yet).
    _closed: dict[int, tuple[RoundRecord, int]] = field(default_factory=dict, repr=False)
    #: The highest block a step saw: a chain below it was reset, and what was read is forgotten.
    _seen: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.confirmations < 0:
            raise ProtocolError(f"confirmations must be 0 or more, got {self.confirmations}")

    def step(self) -> dict[str, int]:
        """Do what is due now; returns gas used per action (empty when nothing was due)."""
        task, block = self.task, self.task.chain.block_number
        params = task.config()
        gas: dict[str, int] = {}
        current = task.current_round()
        if block < self._seen:
            self._closed.clear()
        self._seen = block
        # Every round not yet settled for good, however long ago it closed (an expired round
        # may close before its reveal deadline and must still be looked at later).
        for r in [r for r in range(current + 1) if not self._final(self.settled, r, block)]:
            record = self._record(r, current)
            closed = record.status != RoundStatus.OPEN or r < current
            due = record.reveal_end and block > record.reveal_end
            if due and not self._final(self.swept, r, block):
                self._sweep(r, record, params, gas)
                self.swept.setdefault(r, block)
            if closed and r in self.swept and block > self._attest_deadline(r):
                for member in task.committee(r, round_start_bound(params, record)):
                    self._try(gas, "settle", lambda m=member, r=r: task.settle_committee_member(
                        self.account, r, m
                    ))  # fmt: skip
                self.settled.setdefault(r, block)
            elif closed and not record.reveal_end:
                self.settled.setdefault(r, block)  # never opened for reveals: nothing to do
        return gas

    def _record(self, r: int, current: int) -> RoundRecord:
        """Round ``r``'s record; a closed round's (``r < current``) is read once, with its
        attest deadline. Not on a chain that may reorg (``confirmations > 0``), where a closed
        round can be rewritten at the same height: there it is read every step."""
        known = self._closed.get(r)
        if known is not None:
            return known[0]
        record = self.task.round_record(r)
        if r < current and self.confirmations == 0:
            self._closed[r] = (record, self.task.attest_deadline(r))
        return record

    def _attest_deadline(self, r: int) -> int:
        known = self._closed.get(r)
        return known[1] if known is not None else self.task.attest_deadline(r)

    def _final(self, done: dict[int, int], r: int, block: int) -> bool:
        """Whether round ``r``'s action is ``confirmations`` deep; forgets it if the chain
        now ends before the block it was done in (a reorg or reset dropped it)."""
        if r not in done:
            return False
        if block < done[r]:
            del done[r]
            return False
        return block - done[r] >= self.confirmations

    def _sweep(
        self, r: int, record: RoundRecord, params: TaskParameters, gas: dict[str, int]
    ) -> None:
        """Slash everyone who committed in round ``r`` and did not reveal."""
        if record.reveals == record.commits:
            # Everyone revealed (once each), and past the reveal deadline the counts are
            # final: no need to read the round's commit and reveal logs to find nobody.
            return
        task = self.task
        since = round_start_bound(params, record)
        revealed = {e.account for e in task.events(Revealed, round=r, from_block=since)}
        for e in task.events(Committed, round=r, from_block=since):
            if e.account in revealed or task.commitment_of(e.account).round != r:
                continue
            self._try(gas, "slash", lambda a=e.account: task.slash_non_revealer(self.account, r, a))

    def done(self) -> bool:
        """Whether every closed round's committee has been settled for good."""
        block = self.task.chain.block_number
        return all(self._final(self.settled, r, block) for r in range(self.task.current_round()))

    @staticmethod
    def _try(gas: dict[str, int], action: str, send: Callable[[], TxReceipt]) -> None:
        with contextlib.suppress(ContractRevert):  # already done, or nothing owed
            receipt = send()
            gas[action] = gas.get(action, 0) + int(receipt["gasUsed"])
