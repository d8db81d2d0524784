"""A task's protocol state as every role reads it: the verified manifest, the finalized rounds and
their verified reports, where a round's logs start, its reward pool and a committee member's
inputs.

The participant node, the owner's keeper, the one-process federation and ``flchain status`` all
read a task through one :class:`TaskView`, so each protocol rule — which model a round trains
from, what the contributors' pool is, where a round's events can start — is written once.
"""

from __future__ import annotations

from contextlib import suppress

import numpy as np

from flchain.errors import ContentNotFound, ProtocolError
from flchain.learning.sampling import is_sampled, sampling_seed
from flchain.learning.scaffold import decode_control, zero_control
from flchain.ledger.contracts import (
    Revealed,
    RoundExpired,
    RoundFinalized,
    RoundRecord,
    RoundStatus,
    TaskParameters,
    TrainingTask,
)
from flchain.protocol.committee import Reveal, RoundInputs
from flchain.protocol.manifest import TaskManifest
from flchain.protocol.report import RoundReport
from flchain.protocol.task import server_optimizer
from flchain.storage import ContentStore
from flchain.storage.retention import RoundContent
from flchain.types import CID, to_address


def load_manifest(task: TrainingTask, store: ContentStore) -> TaskManifest:
    """Fetch the task manifest named on-chain and check it against the recorded digests."""
    params = task.config()
    manifest = TaskManifest.from_bytes(
        store.get(params.manifest_cid), expected_digest=params.manifest_digest
    )
    if manifest.spec.digest() != params.model_spec_digest:
        raise ProtocolError("the manifest's model spec does not match the task's spec digest")
    return manifest


def fetch_report(store: ContentStore, event: RoundFinalized) -> RoundReport:
    """The report a ``RoundFinalized`` event names, checked against its on-chain digest."""
    report = RoundReport.from_bytes(store.get(event.report_cid))  # canonical bytes or raises
    if report.digest() != event.report_digest:
        raise ProtocolError(f"report of round {event.round} does not match its digest")
    return report


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


class TaskView:
    """Reads one task's protocol state from the chain and the store, remembering what cannot
    change: the task parameters and verified reports.

    Finalized rounds are found in contract state, never by scanning the chain's logs from
    block 0: the contract keeps the latest finalized round (``rewardRound``) and every closed
    round's record; only the one ``RoundFinalized`` event that names a report's CID is read,
    from the block after that round's reveal phase ended (:func:`finalized_bound`). So claims,
    ``flchain status`` and node steps cost the same at any chain height.
    """

    def __init__(
        self, task: TrainingTask, store: ContentStore, manifest: TaskManifest | None = None
    ) -> None:
        self.task, self.store = task, store
        self.params = task.config()  # immutable once deployed
        self._manifest = manifest
        self._reports: dict[int, RoundReport] = {}

    @property
    def manifest(self) -> TaskManifest:
        """The task's manifest, fetched and verified on first use."""
        if self._manifest is None:
            self._manifest = load_manifest(self.task, self.store)
        return self._manifest

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
            if round_id in self._reports:
                return self._reports[round_id]
            record = self.task.round_record(round_id)
            if record.status == RoundStatus.FINALIZED:
                return self._fetch(round_id, record)
        return None

    def report_of(self, round_id: int) -> RoundReport:
        """The report of finalized round ``round_id``."""
        if round_id not in self._reports:
            record = self.task.round_record(round_id)
            if record.status != RoundStatus.FINALIZED:
                raise ProtocolError(f"round {round_id} has not been finalized")
            self._fetch(round_id, record)
        return self._reports[round_id]

    def _fetch(self, round_id: int, record: RoundRecord) -> RoundReport:
        """Fetch and verify the report of finalized round ``round_id``: its CID is only in the
        round's ``RoundFinalized`` event, searched for from where the round's votes began."""
        since = finalized_bound(record)
        events = self.task.events(RoundFinalized, round=round_id, from_block=since)
        if not events:
            raise ProtocolError(f"no RoundFinalized event of round {round_id} since block {since}")
        self._reports[round_id] = fetch_report(self.store, events[-1])
        return self._reports[round_id]

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
        previous = self.last_report(before=round_id)
        return RoundInputs(
            task=to_address(self.task.address),
            round_id=round_id,
            spec=self.manifest.spec,
            aggregator=self.manifest.aggregator(),
            global_model_cid=self.global_model_cid(round_id),
            reward_pool=reward_pool(self.params, record),
            previous_cumulative=previous.cumulative if previous else {},
            reveals=self.reveals(round_id, record),
            max_samples=self.params.max_samples,
            client_fraction=self.manifest.config.training.client_fraction,
            sampling_seed=self.sampling_seed(round_id),
            server_optimizer=server_optimizer(self.manifest.config),
            server_state_cid=CID(previous.server_state_cid)
            if previous and previous.server_state_cid
            else None,
            scaffold=self.manifest.config.training.algorithm == "scaffold",
        )

    def server_control(self, round_id: int) -> np.ndarray:
        """SCAFFOLD's server control variate ``c`` that round ``round_id`` trains with (fixed
        point, flat): the one the latest round finalized before it stored, zero before any."""
        previous = self.last_report(before=round_id)
        spec = self.manifest.spec
        if previous is None or not previous.server_state_cid:
            return zero_control(spec)
        return decode_control(self.store.get(CID(previous.server_state_cid)), spec)
