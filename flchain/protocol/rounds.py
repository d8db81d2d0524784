"""A task's protocol state as every role reads it: the verified manifest, the finalized rounds and
their verified reports, where a round's logs start, its reward pool and a committee member's
inputs.

The participant node, the owner's keeper, the one-process federation and ``flchain status`` all
read a task through one :class:`TaskView`, so each protocol rule — which model a round trains
from, what the contributors' pool is, where a round's events can start — is written once.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

import numpy as np

from flchain.errors import ContentNotFound, ProtocolError
from flchain.learning.aggregation import Aggregator, Standing
from flchain.learning.sampling import is_sampled, sampling_seed
from flchain.learning.scaffold import decode_control, zero_control
from flchain.learning.validation import ValidationSet
from flchain.ledger.contracts import (
    Revealed,
    RoundExpired,
    RoundFinalized,
    RoundRecord,
    RoundStatus,
    TaskParameters,
    TrainingTask,
)
from flchain.ledger.merkle import MerkleTreeError, RewardTree
from flchain.protocol.committee import ZERO_ROOT, Reveal, RoundInputs
from flchain.protocol.manifest import TaskManifest
from flchain.protocol.report import RoundReport
from flchain.protocol.rewards import extension_error, standing_error
from flchain.protocol.task import server_optimizer, validation_set
from flchain.storage import ContentStore
from flchain.storage.retention import RoundContent
from flchain.types import CID, Address, to_address


def load_manifest(task: TrainingTask, store: ContentStore) -> TaskManifest:
    """Fetch the task manifest named on-chain and check it against the recorded digests and,
    under ``fltrust``, its reference account against the task's owner."""
    params = task.config()
    manifest = TaskManifest.from_bytes(
        store.get(params.manifest_cid), expected_digest=params.manifest_digest
    )
    if manifest.spec.digest() != params.model_spec_digest:
        raise ProtocolError("the manifest's model spec does not match the task's spec digest")
    if manifest.config.aggregation.reference_account:
        manifest.check_owner(task.owner())
    return manifest


def fetch_report(store: ContentStore, event: RoundFinalized) -> RoundReport:
    """The report a ``RoundFinalized`` event names, checked against its on-chain digest."""
    report = RoundReport.from_bytes(store.get(event.report_cid))  # canonical bytes or raises
    if report.digest() != event.report_digest:
        raise ProtocolError(f"report of round {event.round} does not match its digest")
    return report


class VerifiedReports:
    """Round reports this process has fetched and checked, by their sha-256 digest, each with
    its reward tree built on first use.

    In the one-process federation every node reads the previous round's report (the model it
    trains from) and, at the end, its reward tree (for its claim proof): 1,000 nodes fetched,
    parsed and checked the same 1,000-outcome report, and built the same 1,000-leaf tree, each
    on its own (O(n) apiece, O(n^2) a round). A digest names exactly one report (its canonical
    bytes hash to it; :meth:`put` computes it), so the report found here under the digest a
    round's on-chain record names is the one that round finalized, on any chain and from any
    store: each node still reads that digest, and the root it checks a tree against, from the
    chain itself. Only the fetch, the parse and the tree building are shared. Holds the
    ``capacity`` most recently used reports.
    """

    def __init__(self, capacity: int = 16) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._reports: OrderedDict[bytes, RoundReport] = OrderedDict()
        self._trees: dict[bytes, RewardTree] = {}

    def __len__(self) -> int:
        return len(self._reports)

    def get(self, digest: bytes) -> RoundReport | None:
        """The report whose digest is ``digest``, if this process has checked it."""
        report = self._reports.get(bytes(digest))
        if report is not None:
            self._reports.move_to_end(bytes(digest))
        return report

    def put(self, report: RoundReport) -> bytes:
        """Remember ``report`` under its own digest (returned)."""
        digest = report.digest()
        self._reports[digest] = report
        self._reports.move_to_end(digest)
        while len(self._reports) > self.capacity:
            old, _ = self._reports.popitem(last=False)
            self._trees.pop(old, None)
        return digest

    def tree(self, digest: bytes) -> RewardTree:
        """The reward tree of the cumulative credits of the report under ``digest`` (built
        once); raises :class:`MerkleTreeError` for credits that make no tree, and ``KeyError``
        for a digest not held here."""
        digest = bytes(digest)
        tree = self._trees.get(digest)
        if tree is None:
            report = self._reports[digest]
            tree = self._trees[digest] = RewardTree(report.cumulative)
        return tree


#: The reports and reward trees every :class:`TaskView` of this process shares by default.
SHARED_REPORTS = VerifiedReports()


def round_start_bound(params: TaskParameters, record: RoundRecord) -> int:
    """A block at or before the start of the round of ``record``: a round starts at most
    commit + reveal blocks before its reveal phase ends. Bounds per-round log queries."""
    return max(0, record.reveal_end - params.commit_blocks - params.reveal_blocks - 1)


def finalized_bound(record: RoundRecord) -> int:
    """The first block that can hold the ``RoundFinalized`` event of the round of ``record``:
    votes are accepted only after the reveal phase ends, and ``revealEnd`` never moves once
    the reveal phase is over. Unlike :func:`round_start_bound` it does not depend on how long
    the phases are configured, so it stays tight when phases close early (a full round)."""
    return record.reveal_end + 1


def reward_pool(params: TaskParameters, record: RoundRecord) -> int:
    """What a round's contributors share: the budget less the fees of the committee the
    contract draws (``committee_size`` members, or every committer when fewer committed)."""
    return params.round_budget - params.committee_fee * min(params.committee_size, record.commits)


def named_content(
    task: TrainingTask, store: ContentStore | None = None
) -> tuple[list[RoundContent], list[str]]:
    """Every round's CIDs as the task's events name them (updates, then the result of a
    finalized round), and the CIDs the task always needs (manifest, initial model).

    With ``store``, a task with a server optimizer (or SCAFFOLD) also gets each finalized
    round's optimizer state (or server control variate), which only its report names (a report
    no longer in the store names nothing: its state's pin, if any, is then left alone)."""
    params = task.config()
    rounds: dict[int, RoundContent] = {}
    for e in task.events(Revealed):
        r = rounds.get(e.round, RoundContent(e.round))
        rounds[e.round] = RoundContent(e.round, (*r.updates, e.cid))
    with_state = False
    if store is not None:
        with suppress(ContentNotFound):  # no manifest here: no states to name either
            config = load_manifest(task, store).config
            with_state = (
                server_optimizer(config) is not None or config.training.algorithm == "scaffold"
            )
    for f in task.events(RoundFinalized):
        r = rounds.get(f.round, RoundContent(f.round))
        state = None
        if with_state and store is not None:
            with suppress(ContentNotFound):
                state = fetch_report(store, f).server_state_cid or None
        rounds[f.round] = RoundContent(
            f.round, r.updates, f.model_cid, f.report_cid, closed=True, state=state
        )
    for x in task.events(RoundExpired):
        r = rounds.get(x.round, RoundContent(x.round))
        rounds[x.round] = RoundContent(x.round, r.updates, closed=True)
    return list(rounds.values()), [params.manifest_cid, params.initial_model_cid]


@dataclass(frozen=True)
class RewardBase:
    """The cumulative credits a round extends (DESIGN.md trust model: a colluding round may
    misassign its own budget, nothing more, so honest rounds never build on its credits)."""

    #: The finalized round the credits are those of (``None``: no credits yet).
    round: int | None
    cumulative: Mapping[Address, int] = field(default_factory=dict)
    #: Why the latest finalized round's credits were left out ("" when they were not).
    note: str = ""
    #: DP tasks: the revealed-round counts of the same report (see ``RoundReport.dp_rounds``).
    dp_rounds: Mapping[Address, int] = field(default_factory=dict)
    #: Rules with memory: the evidence per participant of the same report
    #: (``RoundReport.standing``).
    standing: Mapping[Address, Standing] = field(default_factory=dict)


@dataclass(frozen=True)
class ClaimBaseline:
    """What an account's claim proves as its baseline under the previous finalized root."""

    amount: int = 0
    proof: Sequence[bytes] = ()


def soundness_error(
    report: RoundReport,
    record: RoundRecord,
    base: RewardBase,
    tree: Callable[[], RewardTree] | None = None,
) -> str | None:
    """Why a finalized round's credits are not a sound extension of ``base`` (what an honest
    committee would have built on), or ``None``: the report must match the chain's reward root
    and total, name ``base`` as its base, lose no one's credit and add exactly its total, and
    (rules with memory) move each accepted participant's standing by at most one round.
    ``tree``: where to get the tree of the report's credits (default: build it)."""
    if report.reward_total != record.reward_total:
        return f"its report credits {report.reward_total}, the chain {record.reward_total}"
    try:
        if not report.cumulative:
            root = ZERO_ROOT
        else:
            root = (tree or (lambda: RewardTree(report.cumulative)))().root
    except MerkleTreeError as exc:
        return f"its credits make no reward tree: {exc}"
    if bytes(root) != bytes(record.reward_root):
        return "its reward root is not the tree of its report's credits"
    if report.base_round != base.round:
        return f"it built on round {report.base_round}, not on round {base.round}"
    error = extension_error(base.cumulative, report.cumulative, report.reward_total)
    if error is None:  # rules with memory: the evidence later rounds pay by
        accepted = {to_address(o.participant) for o in report.outcomes if o.accepted}
        error = standing_error(base.standing, report.standing, accepted)
    return error


class TaskView:
    """Reads one task's protocol state from the chain and the store, remembering what cannot
    change: the task parameters and verified reports.

    Finalized rounds are found in contract state, never by scanning the chain's logs from
    block 0: the contract keeps the latest finalized round (``rewardRound``) and every closed
    round's record; only the one ``RoundFinalized`` event that names a report's CID is read,
    from the block after that round's reveal phase ended (:func:`finalized_bound`). So claims,
    ``flchain status`` and node steps cost the same at any chain height.

    Reports and reward trees come from ``reports`` (default: the process's
    :data:`SHARED_REPORTS`) when it holds the digest the round's on-chain record names, and go
    there once fetched and checked: views of one process fetch each report and build each tree
    once. Every use of a report reads that record again, so a view follows the chain (a reset
    chain, a round finalized anew) rather than what it saw before.
    """

    def __init__(
        self,
        task: TrainingTask,
        store: ContentStore,
        manifest: TaskManifest | None = None,
        reports: VerifiedReports | None = None,
    ) -> None:
        self.task, self.store = task, store
        self.params = task.config()  # immutable once deployed
        self._manifest = manifest
        self.reports = SHARED_REPORTS if reports is None else reports
        # Closed rounds never change: the finalized ones below `_scanned`, and the base each
        # finalized round leaves to the rounds after it.
        self._finalized: list[int] = []
        self._scanned = 0
        self._base_after: dict[int, RewardBase] = {}
        self._validation: tuple[ValidationSet | None] | None = None

    @property
    def manifest(self) -> TaskManifest:
        """The task's manifest, fetched and verified on first use."""
        if self._manifest is None:
            self._manifest = load_manifest(self.task, self.store)
        return self._manifest

    @property
    def validation(self) -> ValidationSet | None:
        """The task's public validation set (``aggregation.validation_per_class``), built once."""
        if self._validation is None:
            self._validation = (validation_set(self.manifest.config),)
        return self._validation[0]

    # --- finalized rounds -----------------------------------------------------------------

    def last_report(self, before: int = 2**63) -> RoundReport | None:
        """The report of the latest round finalized before round ``before`` (fetched once and
        checked against its on-chain digest); ``None`` when no such round finalized."""
        latest = self.task.reward_round()  # the latest finalized round, from state
        if latest is None:
            return None
        if latest < before:
            return self.report_of(latest)
        # Asked about an earlier round (rare): walk back over the closed rounds' records.
        for round_id in range(before - 1, -1, -1):
            record = self.task.round_record(round_id)
            if record.status == RoundStatus.FINALIZED:
                return self._report(round_id, record)
        return None

    def report_of(self, round_id: int) -> RoundReport:
        """The report of finalized round ``round_id``."""
        return self._report(round_id, self._finalized_record(round_id))

    def reward_tree(self, round_id: int) -> RewardTree:
        """The reward tree of finalized round ``round_id``'s report (built once per process;
        :class:`MerkleTreeError` when its credits make none). Whether it is the tree of the
        on-chain root is the caller's check (a claim's proof is checked by the contract)."""
        record = self._finalized_record(round_id)
        self._report(round_id, record)
        return self.reports.tree(record.report_digest)

    def _finalized_record(self, round_id: int) -> RoundRecord:
        record = self.task.round_record(round_id)
        if record.status != RoundStatus.FINALIZED:
            raise ProtocolError(f"round {round_id} has not been finalized")
        return record

    def _report(self, round_id: int, record: RoundRecord) -> RoundReport:
        """The report the record of finalized round ``round_id`` names by digest: from
        :attr:`reports`, else fetched and verified (its CID is only in the round's
        ``RoundFinalized`` event, searched for from where the round's votes began)."""
        known = self.reports.get(record.report_digest)
        if known is not None:
            return known
        since = finalized_bound(record)
        events = self.task.events(RoundFinalized, round=round_id, from_block=since)
        if not events:
            raise ProtocolError(f"no RoundFinalized event of round {round_id} since block {since}")
        report = fetch_report(self.store, events[-1])
        # the event and the record of one finalization name one digest; checked all the same,
        # as the cache is keyed by the record's
        if self.reports.put(report) != bytes(record.report_digest):
            raise ProtocolError(f"report of round {round_id} does not match its record's digest")
        return report

    def finalized_before(self, round_id: int) -> list[int]:
        """The finalized rounds before ``round_id`` (all closed), oldest first."""
        for r in range(self._scanned, round_id):
            if self.task.round_record(r).status == RoundStatus.FINALIZED:
                self._finalized.append(r)
        self._scanned = max(self._scanned, round_id)
        return [r for r in self._finalized if r < round_id]

    def reward_base(self, round_id: int) -> RewardBase:
        """The cumulative credits round ``round_id`` extends: those of the latest finalized round,
        unless they are not a sound extension of what that round should have built on (see
        :func:`soundness_error`); then that round's credits are left out — a colluding committee
        misassigned its own budget and no more — and the note says so. Deterministic: every
        honest member walks the same finalized rounds (once per view; later calls reuse it)."""
        base = RewardBase(None)
        for r in self.finalized_before(round_id):
            if r in self._base_after:
                base = self._base_after[r]
                continue
            record = self.task.round_record(r)
            report = self._report(r, record)
            tree = functools.partial(self.reports.tree, record.report_digest)
            error = soundness_error(report, record, base, tree)
            if error is None:
                base = RewardBase(r, report.cumulative, dp_rounds=report.dp_rounds,
                                  standing=report.standing)  # fmt: skip
            else:
                note = f"round {r} left out: {error}"
                base = RewardBase(base.round, base.cumulative, note, base.dp_rounds, base.standing)
            self._base_after[r] = base
        return base

    def claim_baseline(self, round_id: int, account: str, claimed: int) -> ClaimBaseline:
        """The baseline a claim against finalized round ``round_id`` proves: ``account``'s credit
        under the finalized root before it, when above what it ``claimed`` (else nothing to
        prove) and when that round's report is the tree of its on-chain root."""
        previous = self.last_report(before=round_id)
        amount = previous.cumulative.get(to_address(account), 0) if previous else 0
        if previous is None or amount <= claimed:
            return ClaimBaseline()
        try:
            tree = self.reward_tree(previous.round)
        except MerkleTreeError:
            return ClaimBaseline()  # a malformed report proves nothing
        if bytes(tree.root) != bytes(self.task.round_record(previous.round).reward_root):
            return ClaimBaseline()  # a report that is not its root's tree proves nothing
        return ClaimBaseline(amount, tree.proof(account))

    def global_model_cid(self, round_id: int) -> CID:
        """The model round ``round_id`` trains from: the latest result finalized before it,
        or the task's initial model (expired rounds keep the model they started from)."""
        previous = self.last_report(before=round_id)
        return CID(previous.model_cid) if previous else CID(self.params.initial_model_cid)

    # --- one round --------------------------------------------------------------------------

    def reveals(self, round_id: int, record: RoundRecord | None = None) -> list[Reveal]:
        """Round ``round_id``'s reveals as recorded on-chain."""
        record = record or self.task.round_record(round_id)
        since = round_start_bound(self.params, record)
        return [
            Reveal(to_address(e.account), e.digest, e.num_samples, CID(e.cid))
            for e in self.task.events(Revealed, round=round_id, from_block=since)
        ]

    def sampling_seed(self, round_id: int) -> bytes:
        """The seed of round ``round_id``'s client sample (see :mod:`flchain.learning.sampling`)."""
        previous = self.task.round_record(round_id - 1).seed if round_id > 0 else 0
        return sampling_seed(self.task.address, round_id, previous)

    def sampled(self, round_id: int, participant: str) -> bool:
        """Whether ``participant`` is drawn to train in round ``round_id`` (always, unless the
        task sets ``training.client_fraction`` below 1)."""
        fraction = self.manifest.config.training.client_fraction
        if fraction >= 1:
            return True
        return is_sampled(fraction, self.sampling_seed(round_id), participant)

    def round_inputs(self, round_id: int) -> RoundInputs:
        """Everything a committee member needs to recompute round ``round_id``."""
        record = self.task.round_record(round_id)
        base = self.reward_base(round_id)
        previous = self.last_report(before=round_id)  # the model's and optimizer state's round
        return RoundInputs(
            task=to_address(self.task.address),
            round_id=round_id,
            spec=self.manifest.spec,
            aggregator=self._aggregator(),
            global_model_cid=self.global_model_cid(round_id),
            reward_pool=reward_pool(self.params, record),
            previous_cumulative=base.cumulative,
            reveals=self.reveals(round_id, record),
            max_samples=self.params.max_samples,
            client_fraction=self.manifest.config.training.client_fraction,
            sampling_seed=self.sampling_seed(round_id),
            server_optimizer=server_optimizer(self.manifest.config),
            server_state_cid=CID(previous.server_state_cid)
            if previous and previous.server_state_cid
            else None,
            base_round=base.round,
            base_note=base.note,
            scaffold=self.manifest.config.training.algorithm == "scaffold",
            validation=self.validation,
            dp=bool(self.manifest.config.training.dp),
            previous_dp_rounds=base.dp_rounds,
            previous_standing=base.standing,
        )

    def _aggregator(self) -> Aggregator:
        """The task's rule; a reference account (``fltrust``) is checked against the owner
        the chain records now, so a manifest handed in rather than loaded is checked too, and
        a member refuses to recompute rather than follow a reference the owner never was."""
        if self.manifest.config.aggregation.reference_account:
            return self.manifest.aggregator(owner=self.task.owner())
        return self.manifest.aggregator()

    def server_control(self, round_id: int) -> np.ndarray:
        """SCAFFOLD's server control variate ``c`` that round ``round_id`` trains with (fixed
        point, flat): the one the latest round finalized before it stored, zero before any."""
        previous = self.last_report(before=round_id)
        spec = self.manifest.spec
        if previous is None or not previous.server_state_cid:
            return zero_control(spec)
        optimizer = server_optimizer(self.manifest.config)
        return decode_control(self.store.get(CID(previous.server_state_cid)), spec, optimizer)
