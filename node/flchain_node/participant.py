"""The participant node's round logic: one idempotent :meth:`ParticipantNode.step` at a time.

Each call reads the task's phase from the chain and does whatever this participant still owes
in it — commit, reveal, attest (on the committee), expire a stuck round — and nothing it already
did. Because every decision is re-derived from the chain plus the persisted :class:`NodeState`,
a node can be killed between any two lines and simply run ``step()`` again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypedDict

import numpy as np
import torch
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3.exceptions import BlockNotFound
from web3.types import TxReceipt

from flchain.errors import (
    AggregationError,
    ConfigError,
    ContractRevert,
    PrivacyBudgetExhausted,
    ProtocolError,
    TransactionTimeout,
)
from flchain.learning.codec import Update, decode_model, encode_update, sparsify, update_digest
from flchain.learning.scaffold import Controls, update_spec
from flchain.ledger.chain import Outbox, TxRequest
from flchain.ledger.contract_errors import CommitPhaseOpen
from flchain.ledger.contracts import (
    CommitmentFlag,
    ParticipantRegistry,
    Phase,
    Result,
    RoundStatus,
    StepView,
    TrainingTask,
    Vote,
)
from flchain.protocol.commitment import commitment, derived_salt
from flchain.protocol.committee import RoundInputs, RoundOutcome, recompute_round
from flchain.protocol.manifest import TaskManifest
from flchain.protocol.report import RoundReport
from flchain.protocol.rounds import TaskView
from flchain.storage import ContentStore
from flchain.types import CID
from flchain_node.metering import MeteredStore
from flchain_node.state import NodeState, RoundState, RoundVectors


@dataclass(frozen=True)
class Encoded:
    """An update already encoded with the task's codec, with its digest: what a training
    pool's worker sends back (:mod:`flchain_node.pool`), so the node stores and commits
    these bytes without codec work of its own."""

    data: bytes
    #: :func:`~flchain.learning.codec.update_digest` of ``data``.
    digest: bytes
    #: Its CID in the node's store (of the store's CID version), if the sender computed it:
    #: the node then puts it under that name (:meth:`~flchain.storage.ContentStore.put_named`).
    cid: CID | None = None


@dataclass(frozen=True)
class Produced:
    """What a trainer made of one round."""

    #: The float delta from the global model (the node quantizes or sparsifies it), in a
    #: SCAFFOLD round the quantized update carrying ``Δw`` and ``Δc``, or (plain codecs
    #: only: not top-k, not SCAFFOLD) the update already :class:`Encoded`.
    update: Update | dict[str, torch.Tensor] | Encoded
    num_samples: int
    #: SCAFFOLD: this participant's new control variate ``c_i⁺``.
    control: np.ndarray | None = None


#: How a committee member computes a round's outcome from its inputs and the store:
#: :func:`recompute_round`, or a :class:`~flchain.protocol.committee.SharedRecomputation` for
#: members that share one process and store.
Recompute = Callable[[RoundInputs, ContentStore], RoundOutcome]


class NodeOptions(TypedDict, total=False):
    """The keyword options of :class:`ParticipantNode` that builders pass through unchanged
    (documented on the class)."""

    manifest: TaskManifest | None
    reveal: bool
    attest: bool
    confirmations: int
    recompute: Recompute
    outbox: Outbox | None


class UpdateSource(Protocol):
    """Produces this participant's update for a round from the global model."""

    def produce(
        self, global_state: dict[str, torch.Tensor], round_id: int, controls: Controls | None
    ) -> Produced:
        """The round's update and the number of samples it was trained on; with ``controls``
        (SCAFFOLD: ``c_i`` and the server's ``c``) also the new ``c_i`` (a source that cannot
        train with control variates returns none, and the node refuses the round)."""
        ...


@dataclass
class StepReport:
    """What one :meth:`ParticipantNode.step` did, with the seconds each kind of work took
    (:data:`~flchain_node.metering.WORK`: train, store, fetch, aggregate, and chain for the
    rest of the step) and the bytes it put in (``store``) and got from (``fetch``) the store."""

    round: int
    phase: Phase
    actions: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    gas: dict[str, int] = field(default_factory=dict)
    moved: dict[str, int] = field(default_factory=dict)


class ParticipantNode:
    """One participant key on one task.

    ``reveal=False`` makes a dropout (commits, never reveals) and ``attest=False`` a silent
    committee member: both exist for attack studies and are slashed by the protocol.

    ``confirmations``: how many blocks must follow its commit or reveal before the node takes
    it as done. Until then every step re-checks the chain and sends it again (same salt, same
    update) if a reorg dropped it; the reveal also waits for the commit to be that deep. With
    0 (embedded and dev chains, which do not reorg) a receipt is final at once.

    ``recompute``: how it computes a round's outcome on the committee (default
    :func:`recompute_round`).

    ``outbox``: where its commit and reveal go when nodes of one process send them together
    (:class:`~flchain.ledger.chain.Outbox`); the step then reports ``commit`` (``reveal``) as
    sent and the driver flushes the outbox before it reads the chain again, which books the
    gas and records the transaction's block (or its failure) in this node. ``None``: each is
    sent at once and its receipt awaited in the step.
    """

    def __init__(
        self,
        task: TrainingTask,
        store: ContentStore,
        account: LocalAccount,
        source: UpdateSource,
        *,
        state: NodeState | None = None,
        manifest: TaskManifest | None = None,
        reveal: bool = True,
        attest: bool = True,
        confirmations: int = 0,
        recompute: Recompute = recompute_round,
        outbox: Outbox | None = None,
    ) -> None:
        if confirmations < 0:
            raise ProtocolError(f"confirmations must be 0 or more, got {confirmations}")
        self.task, self.account, self.source = task, account, source
        # every get and put is timed and counted: the store and fetch shares of the step
        self.store = MeteredStore(store)
        self.confirmations = confirmations
        self._recompute = recompute
        self.outbox = outbox
        # (number, hash) of the block our last transaction landed in: when the chain no longer
        # has that block, a reorg happened under us.
        self._anchor: tuple[int, bytes] | None = None
        self.chain = task.chain
        self.address = to_checksum_address(account.address)
        self.state = state or NodeState(account=self.address, task=task.address)
        self.view = TaskView(task, self.store, manifest)
        self.manifest = self.view.manifest
        # SCAFFOLD: c_i is kept beside the state file (in memory for a node without one)
        self.scaffold = self.manifest.config.training.algorithm == "scaffold"
        path = self.state.path
        self.controls = RoundVectors(path.with_suffix(".controls") if path else None)
        # top-k: the error-feedback residual, kept the same way, valid for this codec only
        self.topk = self.manifest.spec.codec.encoding == "topk"
        self.residuals = RoundVectors(
            path.with_suffix(".residuals") if path else None,
            "top-k error-feedback residual",
            key=self.manifest.spec.digest().hex(),
        )
        self.will_reveal, self.will_attest = reveal, attest
        self.registry = ParticipantRegistry(self.chain, task.registry())
        # Only a predecessor's (or a timed-out) transaction can be in flight: a running node
        # waits for every receipt. Checking costs two calls, so check only when it may be.
        self._maybe_in_flight = True
        self._late_done: set[int] = set()  # rounds whose late vote is settled one way or another
        self._skipped: set[int] = set()  # rounds this node sat out (sampling, privacy budget)

    def _send(self, report: StepReport, action: str, send: Callable[[], TxReceipt]) -> int:
        """Run one transaction, booking its gas under ``action`` (its time is the step's chain
        share); returns the number of the block it landed in."""
        try:
            receipt = send()
        except TransactionTimeout:
            self._maybe_in_flight = True  # sent, maybe still pending: look before acting again
            raise
        report.actions.append(action)
        return self._landed(report, action, receipt)

    def _landed(self, report: StepReport, action: str, receipt: TxReceipt) -> int:
        """Book a mined transaction's gas under ``action``; the number of its block."""
        report.gas[action] = report.gas.get(action, 0) + int(receipt["gasUsed"])
        block = int(receipt["blockNumber"])
        self._anchor = (block, bytes(receipt["blockHash"]))
        return block

    def _queue(
        self,
        report: StepReport,
        action: str,
        request: TxRequest,
        landed: Callable[[int], None],
        failed: Callable[[Exception], None],
    ) -> None:
        """Hand ``request`` to the outbox: ``landed`` gets its block, ``failed`` its failure
        (raising what the step would have raised had it been sent at once)."""

        def done(outcome: TxReceipt | Exception) -> None:
            if isinstance(outcome, TransactionTimeout):
                self._maybe_in_flight = True  # sent, maybe still pending
            if isinstance(outcome, Exception):
                failed(outcome)
            else:
                landed(self._landed(report, action, outcome))

        assert self.outbox is not None
        report.actions.append(action)
        self.outbox.add(request, done)

    def _reorged(self) -> bool:
        """Whether the block of our last transaction left the canonical chain. Then the
        nonces we counted may be gone and a dropped transaction may be back in the pool.
        Not looked for with ``confirmations = 0``, which takes a receipt as final (a chain that
        does not reorg): the look is a block read every step (a fifth of a one-process
        federation's reads at 1,000 participants)."""
        if self._anchor is None or self.confirmations == 0:
            return False
        number, block_hash = self._anchor
        try:
            current = self.chain.w3.eth.get_block(number)["hash"]
        except BlockNotFound:
            current = None
        if current is not None and bytes(current) == block_hash:
            return False
        self._anchor = None
        self.chain.nonces.forget(self.address)
        self._maybe_in_flight = True
        return True

    def _deep(self, block: int) -> bool:
        """Whether a transaction mined in ``block`` has ``confirmations`` blocks on top
        (0: a block we never saw, e.g. before a restart, counts as deep)."""
        if self.confirmations == 0 or block == 0:
            return True
        return self.chain.block_number - block >= self.confirmations

    # --- the round ------------------------------------------------------------------------

    def step(self, view: StepView | None = None) -> StepReport:
        """Do whatever this participant owes the task right now; safe to call any time.

        ``view``: this node's ``stepView`` at the chain's latest block, read by a driver that
        reads the views of the many nodes it runs in one call
        (:meth:`~flchain.ledger.contracts.TrainingTask.step_views`); ``None`` (the default):
        the node reads its own. A view of an earlier block is refused (ProtocolError).
        """
        started, tally = time.perf_counter(), self.store.tally.copy()
        if view is not None and view.block_number != self.chain.block_number:
            raise ProtocolError(
                f"step view of block {view.block_number} handed to a node at block "
                f"{self.chain.block_number}: a node acts only on the latest block"
            )
        report = self._step(view)
        spent = self.store.tally.since(tally)
        seconds = report.seconds
        if spent.store_seconds:
            seconds["store"], report.moved["store"] = spent.store_seconds, spent.store_bytes
        if spent.fetch_seconds:
            seconds["fetch"], report.moved["fetch"] = spent.fetch_seconds, spent.fetch_bytes
        # the rest: chain reads and transactions (plus small bookkeeping between them)
        rest = time.perf_counter() - started - sum(seconds.values())
        seconds["chain"] = max(rest, 0.0)
        return report

    def _step(self, given: StepView | None) -> StepReport:
        reorged = self._reorged()  # checked first: what was not deep enough is re-checked below
        # One call for every on-chain fact this step decides on, read at one block (was ~6-8
        # view calls a step; each costs a round trip on a JSON-RPC node).
        view = self.task.step_view(self.address) if given is None else given
        round_id = view.round
        report = StepReport(round_id, view.phase)
        if reorged:
            report.actions.append("reorg")
        if self._maybe_in_flight:
            if self._transaction_in_flight():
                report.actions.append("waiting")
                return report
            self._maybe_in_flight = False
        if round_id > 0:
            self._late_attest(view, report)
        if report.phase == Phase.COMMIT:
            self._commit(view, report)
        elif report.phase == Phase.REVEAL:
            self._reveal(view, report)
        elif report.phase == Phase.ATTEST:
            self._attest(round_id, view.member, view.vote, report)
        elif report.phase == Phase.EXPIRABLE:
            with contextlib.suppress(ContractRevert):  # someone else expired it first
                self._send(report, "expire", lambda: self.task.expire_round(self.account))
        return report

    def _transaction_in_flight(self) -> bool:
        """Whether a transaction of this account is sent but not mined. It may be one a killed
        predecessor sent (the chain does not show its effect yet): acting now could repeat it,
        and the copy would revert and waste gas."""
        eth, address = self.chain.w3.eth, self.address
        return eth.get_transaction_count(address, "pending") > eth.get_transaction_count(address)

    def _commit(self, view: StepView, report: StepReport) -> None:
        round_id = view.round
        mine = self.state.rounds.get(round_id)
        if self._commit_landed(view, mine):
            return
        if mine is None:
            if not view.active:
                report.actions.append("inactive")  # unregistered, exiting or slashed below minimum
                return
            if not self.view.sampled(round_id, self.address):
                if round_id not in self._skipped:  # the round's draw left this node out
                    self._skipped.add(round_id)
                    report.actions.append("not-sampled")
                return
            try:
                mine = self._prepare_update(round_id, report)
            except PrivacyBudgetExhausted:
                # past the task's target ε: no commitment, so no reveal is owed, nothing slashed;
                # reported once per round, so drivers do not take it for work every block
                if round_id not in self._skipped:
                    self._skipped.add(round_id)
                    report.actions.append("skipped-privacy")
                return
        if self.chain.block_number >= self.task.round_record(round_id).commit_end:
            # a straggler: training outlasted the commit phase, so a commit (mined in a later
            # block) would only revert; no commitment means nothing to slash
            if round_id not in self._skipped:
                self._skipped.add(round_id)
                report.actions.append("missed-commit-deadline")
                if self.scaffold:  # c_i must not move by a Δc the committee never sees
                    self.controls.discard(round_id)
                if self.topk:  # nothing was sent: the next round feeds back the older residual
                    self.residuals.discard(round_id)
            return
        value = commitment(
            chain_id=self.chain.chain_id,
            task=self.task.address,
            sender=self.address,
            round_id=round_id,
            digest=bytes.fromhex(mine.digest[2:]),
            num_samples=mine.num_samples,
            salt=bytes.fromhex(mine.salt[2:]),
        )
        if self.outbox is not None:
            request = self.task.commit_request(self.account, value)
            self._queue(report, "commit", request, partial(self._committed, mine), _reraise)
            return
        self._committed(
            mine, self._send(report, "commit", lambda: self.task.commit(self.account, value))
        )

    def _committed(self, mine: RoundState, block: int) -> None:
        mine.commit_block, mine.committed = block, True
        self.state.save()

    def _commit_landed(self, view: StepView, mine: RoundState | None) -> bool:
        """Whether this account's commitment of the current round is on-chain; records it when
        the commit landed but the node died before saving that (it may restart in a later
        phase)."""
        on_chain = view.commitment
        if not (on_chain.exists and on_chain.round == view.round):
            return False
        if mine is not None and not mine.committed:
            mine.committed = True
            self.state.save()
        return True

    def _prepare_update(self, round_id: int, report: StepReport) -> RoundState:
        spec = self.manifest.spec
        global_state = decode_model(self.store.get(self.view.global_model_cid(round_id)), spec)
        started = time.perf_counter()
        controls = self._controls(round_id) if self.scaffold else None
        produced = self.source.produce(global_state, round_id, controls)
        report.seconds["train"] = time.perf_counter() - started
        digest, named = None, None
        if isinstance(produced.update, Encoded):
            if self.scaffold or self.topk:  # their bytes need the node's own state
                raise ProtocolError(
                    "an already encoded update needs a plain codec (not top-k or SCAFFOLD)"
                )
            data, digest, named = produced.update.data, produced.update.digest, produced.update.cid
        elif self.scaffold:
            if produced.control is None:  # a source that knows nothing of control variates
                raise ConfigError(
                    f'training.algorithm = "scaffold": this node\'s trainer '
                    f"({type(self.source).__name__}) cannot train with control variates"
                )
            self.controls.save(round_id, produced.control)  # before anything is committed
            data = encode_update(produced.update, update_spec(spec))
        elif self.topk:
            data = self._sparse_update(produced.update, round_id)
        else:
            data = encode_update(produced.update, spec)
        # stored before committing: a restart can always reveal
        cid = self.store.put(data) if named is None else self.store.put_named(data, named)
        digest = digest or update_digest(data)
        salt = derived_salt(
            self.account.key,
            chain_id=self.chain.chain_id,
            task=self.task.address,
            round_id=round_id,
            digest=digest,
        )
        mine = RoundState(
            digest="0x" + digest.hex(),
            salt="0x" + salt.hex(),
            num_samples=produced.num_samples,
            cid=cid,
        )
        self.state.rounds[round_id] = mine
        self.state.save()
        return mine

    def _sparse_update(self, delta: Update | dict[str, torch.Tensor], round_id: int) -> bytes:
        """Top-k with error feedback: the residual the rounds before left is added to ``delta``
        before selecting; what is not sent now is saved under ``round_id`` before anything is
        committed (a restart retrains ``round_id`` from the same residual)."""
        if isinstance(delta, Update):
            raise ProtocolError("top-k sparsifies the float delta; the trainer sent an Update")
        spec = self.manifest.spec
        residual = self.residuals.latest(before=round_id, size=spec.num_params)
        update, residual = sparsify(delta, residual, spec)
        self.residuals.save(round_id, residual)
        return encode_update(update, spec)

    def _controls(self, round_id: int) -> Controls:
        """SCAFFOLD: this node's ``c_i`` (as the rounds before ``round_id`` left it) and the
        server's ``c`` (named by the latest finalized report)."""
        spec = self.manifest.spec
        # c_i moves only by a Δc_i the server's c took in: the vector of a round that expired,
        # or whose report did not accept this node's update, is dropped and the one that
        # round trained from is used (the paper's unsampled client keeps its c_i)
        for earlier in reversed([r for r in self.controls.rounds() if r < round_id]):
            if self._accepted(earlier):
                break
            self.controls.discard(earlier)
        return Controls(
            spec,
            self.controls.latest(before=round_id, size=spec.num_params),
            self.view.server_control(round_id),
        )

    def _accepted(self, round_id: int) -> bool:
        """Whether closed round ``round_id`` finalized with this node's update accepted."""
        if self.task.round_record(round_id).status != RoundStatus.FINALIZED:
            return False
        outcomes = self.view.report_of(round_id).outcomes
        return any(o.participant == self.address and o.accepted for o in outcomes)

    def _reveal(self, view: StepView, report: StepReport) -> None:
        mine = self.state.rounds.get(view.round)
        if mine is None or not self.will_reveal:
            return
        if mine.revealed and (mine.error or self._deep(mine.reveal_block)):
            return  # done for good (or refused for good)
        if not mine.committed and not self._commit_landed(view, mine):
            return
        if not self._deep(mine.commit_block):
            return  # reveal only what a reorg can no longer take back
        if view.commitment.flags & CommitmentFlag.REVEALED:
            self._revealed(mine, mine.reveal_block)  # (it was, before a restart)
            return
        digest, salt = bytes.fromhex(mine.digest[2:]), bytes.fromhex(mine.salt[2:])
        args = (self.account, digest, mine.num_samples, salt, mine.cid)
        # the reveal names the CID on the chain, for any reader: its bytes must be in the
        # store by then (a store that writes behind its puts writes them now)
        self.store.flush(mine.cid)
        if self.outbox is not None:
            failed = partial(self._reveal_failed, mine, report)
            request = self.task.reveal_request(*args)
            self._queue(report, "reveal", request, partial(self._revealed, mine), failed)
            return
        try:
            block = self._send(report, "reveal", lambda: self.task.reveal(*args))
        except ContractRevert as exc:
            self._reveal_failed(mine, report, exc)
        else:
            self._revealed(mine, block)

    def _revealed(self, mine: RoundState, block: int) -> None:
        mine.reveal_block, mine.revealed = block, True
        self.state.save()

    def _reveal_failed(self, mine: RoundState, report: StepReport, exc: Exception) -> None:
        if isinstance(exc, CommitPhaseOpen):
            return  # the commit phase closes with this block: reveal from the next one
        if not isinstance(exc, ContractRevert):
            raise exc
        # Refused for good (e.g. DigestReplayed): retrying cannot help; the round goes on
        # without this update and the missing reveal is slashed.
        mine.error = f"reveal refused: {exc}"
        report.actions.append("reveal-refused")
        self._revealed(mine, mine.reveal_block)

    def _attest(self, round_id: int, member: bool, vote: Vote, report: StepReport) -> None:
        if not self.will_attest or not member or any(vote.result_hash):
            return
        started, fetching = time.perf_counter(), self.store.tally.fetch_seconds
        try:
            outcome = self.recompute(round_id)
        except AggregationError:
            return  # too few valid updates: the round will expire
        fetched = self.store.tally.fetch_seconds - fetching  # booked as the step's fetch share
        report.seconds["aggregate"] = (
            report.seconds.get("aggregate", 0.0) + time.perf_counter() - started - fetched
        )
        result = Result(*outcome.result_tuple())
        self.store.flush()  # the vote names the model's and report's CIDs (see _reveal)
        # The wrapper floors the gas at a finalizing vote's cost: members vote concurrently,
        # so any vote may become the one that reaches quorum after its estimate was taken.
        self._send(report, "attest", lambda: self.task.attest(self.account, round_id, result))
        if round_id in self.state.rounds:
            self.state.rounds[round_id].attested = True
            self.state.save()

    def _late_attest(self, view: StepView, report: StepReport) -> None:
        """Back the previous round if it finalized before this member voted, while its window
        is open: the member is paid instead of slashed, and its next commit is not blocked."""
        round_id = view.round - 1
        if round_id in self._late_done:
            return
        # The round is closed (a later one started), so its status no longer changes.
        finalized = view.previous_status == RoundStatus.FINALIZED
        if finalized and view.block_number < view.previous_attest_deadline:
            # raises if the vote failed: retried next step
            self._attest(round_id, view.previous_member, view.previous_vote, report)
        self._late_done.add(round_id)

    # --- committee ------------------------------------------------------------------------

    def recompute(self, round_id: int) -> RoundOutcome:
        """Recompute ``round_id``'s result from its on-chain reveals and the store."""
        return self._recompute(self.view.round_inputs(round_id), self.store)

    def report_of(self, round_id: int) -> RoundReport:
        """The report of finalized round ``round_id``."""
        return self.view.report_of(round_id)

    # --- rewards --------------------------------------------------------------------------

    def claimable(self) -> tuple[int, int, int]:
        """``(round, cumulative, unclaimed)`` against the latest finalized round's tree."""
        report = self.view.last_report()
        if report is None or self.address not in report.cumulative:
            return (-1, 0, 0)
        cumulative = report.cumulative[self.address]
        return (report.round, cumulative, cumulative - self.task.claimed(self.address))

    def claim(self) -> int:
        """Pull every reward credited so far in one transaction; returns the amount paid."""
        round_id, cumulative, unclaimed = self.claimable()
        if unclaimed <= 0:
            return 0
        proof = self.view.reward_tree(round_id).proof(self.address)
        # Credit above the previous root's is drawn from this round's own budget: a claimer that
        # skipped rounds proves its previous credit, so older credits are not counted as new.
        claimed = cumulative - unclaimed
        baseline = self.view.claim_baseline(round_id, self.address, claimed)
        self.task.claim(self.account, round_id, cumulative, proof, baseline.amount, baseline.proof)
        return unclaimed


def _reraise(exc: Exception) -> None:
    """A queued commit's failure: raised from the flush, as a direct send raises it."""
    raise exc
