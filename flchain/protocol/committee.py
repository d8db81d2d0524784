"""What a committee member recomputes for a round (DESIGN.md step 3), with no chain calls.

Given the round's reveals (read from the chain by the caller), the content store and the task's
model spec and rule, :func:`recompute_round` fetches and verifies every update, aggregates,
builds the new global model, splits the reward pool by score, extends the cumulative reward tree
and writes the round report. Every input is ordered by participant and all arithmetic is exact,
so honest members produce byte-identical models and reports, hence the same result hash.

With a server optimizer (``[training] server_optimizer``, :mod:`flchain.learning.server_opt`)
the rule's aggregate is the pseudo-gradient and the optimizer's step moves the model. Its state
(momentum, second moments) is a companion blob of the global model: a canonical int64
safetensors file stored beside it, whose CID the round report names (``server_state_cid``).
The next round's inputs therefore still follow from the chain alone: the latest finalized
round's on-chain result names its report (CID and digest, attested by the quorum), and the
report names both the global model and the optimizer state it was made with; before the first
finalized round the state is zero, and an expired round leaves both in place. The state is not
put inside the model file so participants, who only need the model, do not download two or
three times its size for the committee's benefit.

With SCAFFOLD (``[training] algorithm = "scaffold"``, :mod:`flchain.learning.scaffold`) an
update carries ``Δw`` and ``Δc`` in one file of the derived update spec; the rule aggregates the
joint vector, the ``Δw`` half moves the model (through the server optimizer, if the task has
one) and the ``Δc`` half moves the server control variate ``c``, which is the companion blob
then (with the optimizer's state beside it), found the same way (zero before the first
finalized round).

A participant's bad update (missing blob, digest mismatch, wrong format) is recorded as a
failure in the report and earns nothing; the round goes on. Problems of the member's own
infrastructure (store unreachable) raise, so a member never attests to a result it could not
compute.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from flchain.errors import AggregationError, ContentMismatch, ContentNotFound, UpdateFormatError
from flchain.learning.aggregation import Aggregator, ClientUpdate, Failure, Standing
from flchain.learning.codec import (
    Update,
    apply_update,
    decode_model,
    decode_update,
    encode_model,
)
from flchain.learning.models import ModelSpec
from flchain.learning.sampling import is_sampled
from flchain.learning.scaffold import (
    decode_control_state,
    encode_control,
    server_control_step,
    split,
    update_spec,
    zero_control,
)
from flchain.learning.server_opt import (
    ServerOptimizer,
    decode_state,
    encode_state,
    server_step,
)
from flchain.learning.validation import RoundValidation, ValidationSet, fixed_model
from flchain.ledger.merkle import RewardTree
from flchain.protocol.report import RoundReport, UpdateOutcome
from flchain.protocol.rewards import accumulate, split_budget
from flchain.storage import ContentStore
from flchain.types import CID, Address, to_address

ZERO_ROOT = b"\x00" * 32


@dataclass(frozen=True)
class Reveal:
    """One reveal as recorded on-chain."""

    participant: Address
    digest: bytes
    num_samples: int
    cid: CID


@dataclass(frozen=True)
class RoundInputs:
    """Everything a member needs besides the store; all of it is public on-chain or in the
    task manifest."""

    task: Address
    round_id: int
    spec: ModelSpec
    aggregator: Aggregator
    global_model_cid: CID
    reward_pool: int
    #: The cumulative credits this round extends: those of the latest finalized round, unless
    #: they were not a sound extension of their own base (see :meth:`TaskView.reward_base`).
    previous_cumulative: Mapping[Address, int]
    reveals: Sequence[Reveal]
    max_samples: int
    #: Client sampling (``training.client_fraction``): a reveal from a participant the
    #: round's draw did not pick is a failure, so it earns nothing.
    client_fraction: float = 1.0
    sampling_seed: bytes = b""
    #: The task's server optimizer (``None``: the aggregate is the step, FedAvg) and the CID of
    #: its state after the previous finalized round (``None``: zero, nothing finalized yet).
    server_optimizer: ServerOptimizer | None = None
    server_state_cid: CID | None = None
    #: The finalized round ``previous_cumulative`` comes from (``None``: no credits yet), and
    #: why a later finalized round's credits were left out ("" when none were); both go into
    #: the report.
    base_round: int | None = None
    base_note: str = ""
    #: The task's public validation set: given to the rule with the round's global model, so
    #: a rule that uses it (``centered_clip``) can weight rewards by held-out loss.
    validation: ValidationSet | None = None
    #: SCAFFOLD: updates are of ``update_spec(spec)`` and ``server_state_cid`` names the
    #: server control variate instead of an optimizer state.
    scaffold: bool = False
    #: DP tasks: the report counts each participant's revealed rounds (``dp_rounds``),
    #: extending the counts of the report ``previous_cumulative`` comes from.
    dp: bool = False
    previous_dp_rounds: Mapping[Address, int] = field(default_factory=dict)
    #: Rules with memory: the evidence per participant that the report
    #: ``previous_cumulative`` comes from keeps (``RoundReport.standing``).
    previous_standing: Mapping[Address, Standing] = field(default_factory=dict)

    @property
    def update_spec(self) -> ModelSpec:
        """The spec the round's update files are encoded with."""
        return update_spec(self.spec) if self.scaffold else self.spec


@dataclass(frozen=True)
class RoundOutcome:
    """The result a member attests to, plus what it is made of."""

    report: RoundReport
    report_cid: CID
    report_digest: bytes
    model_cid: CID
    model_digest: bytes
    reward_root: bytes
    reward_total: int
    tree: RewardTree | None

    def result_tuple(self) -> tuple[bytes, str, bytes, str, bytes, int]:
        """The ``Result`` struct of ``TrainingTask.attest``, field by field."""
        return (
            self.model_digest,
            self.model_cid,
            self.report_digest,
            self.report_cid,
            self.reward_root,
            self.reward_total,
        )


def recompute_round(inputs: RoundInputs, store: ContentStore) -> RoundOutcome:
    """Recompute a round's result; raises :class:`AggregationError` when too few valid updates
    remain for the rule (the round should then expire, not be attested)."""
    spec = inputs.spec
    global_state = decode_model(store.get(inputs.global_model_cid), spec)
    updates, failures, meta = _fetch_updates(inputs, store)
    if len(updates) < inputs.aggregator.min_inputs():
        raise AggregationError(
            f"round {inputs.round_id}: {len(updates)} valid update(s), "
            f"{inputs.aggregator.name} needs {inputs.aggregator.min_inputs()}"
        )
    checked = None
    if inputs.validation is not None:  # it scores model updates: no SCAFFOLD task has one
        checked = RoundValidation(inputs.validation, fixed_model(global_state, spec))
    if inputs.aggregator.remembers:  # pay reads the evidence the base report keeps
        standing = {str(p): s for p, s in inputs.previous_standing.items()}
        aggregate = inputs.aggregator.aggregate(
            updates, failures, validation=checked, standing=standing
        )
    elif checked is None:  # no keyword then: rules that override aggregate() still work
        aggregate = inputs.aggregator.aggregate(updates, failures)
    else:
        aggregate = inputs.aggregator.aggregate(updates, failures, validation=checked)
    if inputs.scaffold:
        step, state_cid = _scaffold_step(inputs, aggregate.update, store)
    else:
        step, state_cid = _server_step(inputs, aggregate.update, store)

    model_bytes = encode_model(apply_update(global_state, step), spec)
    model_cid = store.put(model_bytes)

    # decisions name the participants _fetch_updates gave the rule: checksummed addresses
    scores = {Address(d.participant): d.score for d in aggregate.decisions if d.accepted}
    credits = split_budget(inputs.reward_pool, scores)
    cumulative = accumulate(inputs.previous_cumulative, credits)
    tree = RewardTree(cumulative) if cumulative else None

    outcomes = tuple(
        UpdateOutcome(
            participant=d.participant,
            cid=meta[d.participant].cid,
            digest="0x" + meta[d.participant].digest.hex(),
            num_samples=meta[d.participant].num_samples,
            accepted=d.accepted,
            score=d.score if d.accepted else 0,
            reward=credits.get(Address(d.participant), 0),
            reason=d.reason,
        )
        for d in aggregate.decisions
    )
    reward_total = sum(credits.values())
    report = RoundReport(
        task=inputs.task,
        round=inputs.round_id,
        rule=inputs.aggregator.name,
        previous_model_cid=inputs.global_model_cid,
        model_cid=model_cid,
        model_digest="0x" + hashlib.sha256(model_bytes).hexdigest(),
        outcomes=outcomes,
        reward_total=reward_total,
        cumulative=cumulative,
        reward_root="0x" + (tree.root if tree else ZERO_ROOT).hex(),
        server_state_cid=state_cid,
        base_round=inputs.base_round,
        base_note=inputs.base_note,
        dp_rounds=_dp_rounds(inputs, outcomes),
        standing={Address(p): s for p, s in sorted(aggregate.standing.items())},
    )
    report_bytes = report.to_bytes()
    return RoundOutcome(
        report=report,
        report_cid=store.put(report_bytes),
        report_digest=report.digest(),
        model_cid=model_cid,
        model_digest=hashlib.sha256(model_bytes).digest(),
        reward_root=bytes(tree.root) if tree else ZERO_ROOT,
        reward_total=reward_total,
        tree=tree,
    )


def _dp_rounds(inputs: RoundInputs, outcomes: Sequence[UpdateOutcome]) -> dict[Address, int]:
    """A DP task's count of revealed rounds per participant: the base report's, plus one for
    every participant that revealed an update this round (accepted or not: once its CID is
    on-chain the update is public, so it spent privacy)."""
    if not inputs.dp:
        return {}
    counts = dict(inputs.previous_dp_rounds)
    for o in outcomes:
        who = Address(o.participant)
        counts[who] = counts.get(who, 0) + 1
    return counts


class SharedRecomputation:
    """:func:`recompute_round` for committee members that share one process and one store:
    members whose inputs are equal get the one outcome computed for the first of them.

    Each member still reads its own inputs from the chain (:meth:`TaskView.round_inputs`), and
    the outcome is the pure function of those inputs and the content they name, so equal
    inputs give the same outcome whoever computes it; only a repeat of the arithmetic in the
    same process is saved. Members in separate processes (``flchain node run``, the multi-host
    federation) never share one of these: each recomputes on its own. Keyed by all of the
    inputs; so only for members that all read one store.
    """

    def __init__(self) -> None:
        self._outcomes: dict[bytes, RoundOutcome] = {}

    def __call__(self, inputs: RoundInputs, store: ContentStore) -> RoundOutcome:
        key = _inputs_key(inputs)
        outcome = self._outcomes.get(key)
        if outcome is None:
            outcome = self._outcomes[key] = recompute_round(inputs, store)
        return outcome


def _inputs_key(inputs: RoundInputs) -> bytes:
    """All of ``inputs`` as one value (fields added to :class:`RoundInputs` later are in it
    too). Equal pickles mean equal inputs; unequal ones only cost a recomputation."""
    return hashlib.sha256(pickle.dumps(inputs, protocol=5)).digest()


def _server_step(inputs: RoundInputs, aggregate: Update, store: ContentStore) -> tuple[Update, str]:
    """The global step and the CID of the optimizer's new state ("" without an optimizer)."""
    optimizer, spec = inputs.server_optimizer, inputs.spec
    if optimizer is None or not optimizer.slots:
        return aggregate, ""
    if inputs.server_state_cid is None:
        state = optimizer.zero_state(spec.num_params)
    else:  # named by an attested report: a missing or bad blob is this member's problem
        state = decode_state(store.get(inputs.server_state_cid), optimizer, spec)
    step, new_state = server_step(optimizer, aggregate, state)
    return step, store.put(encode_state(new_state, optimizer, spec))


def _scaffold_step(
    inputs: RoundInputs, aggregate: Update, store: ContentStore
) -> tuple[Update, str]:
    """SCAFFOLD: the ``Δw`` half of the aggregate is the step (or, with a server optimizer,
    its pseudo-gradient); the ``Δc`` half moves the server control variate, stored with the
    optimizer's state as the round's companion blob (its CID)."""
    spec, optimizer = inputs.spec, inputs.server_optimizer
    if inputs.server_state_cid is None:
        control = zero_control(spec)
        state = optimizer.zero_state(spec.num_params) if optimizer is not None else {}
    else:  # named by an attested report: a missing or bad blob is this member's problem
        blob = store.get(inputs.server_state_cid)
        control, state = decode_control_state(blob, spec, optimizer)
    step, delta_c = split(aggregate, spec)
    control = server_control_step(control, delta_c, inputs.client_fraction, spec.codec.bound_q)
    if optimizer is not None and optimizer.slots:
        step, state = server_step(optimizer, step, state)
    return step, store.put(encode_control(control, spec, optimizer, state))


#: Threads hashing a round's updates (hashlib lets go of the GIL on large inputs), and how many
#: updates are fetched and hashed at a time (only those are held as bytes at once).
DIGEST_THREADS = min(4, os.cpu_count() or 1)
FETCH_CHUNK = 16


def _fetch_updates(
    inputs: RoundInputs, store: ContentStore
) -> tuple[list[ClientUpdate], list[Failure], dict[str, Reveal]]:
    reveals = sorted(inputs.reveals, key=lambda r: to_address(r.participant))
    with ThreadPoolExecutor(DIGEST_THREADS) as hashing:
        return _check_updates(inputs, store, reveals, hashing)


def _check_updates(
    inputs: RoundInputs,
    store: ContentStore,
    reveals: list[Reveal],
    hashing: ThreadPoolExecutor,
) -> tuple[list[ClientUpdate], list[Failure], dict[str, Reveal]]:
    updates: list[ClientUpdate] = []
    failures: list[Failure] = []
    meta: dict[str, Reveal] = {}
    for start in range(0, len(reveals), FETCH_CHUNK):
        chunk = reveals[start : start + FETCH_CHUNK]
        fetched = [_fetch(store, reveal.cid) for reveal in chunk]
        blobs = [data for data in fetched if isinstance(data, bytes)]
        digests = iter(list(hashing.map(_sha256, blobs)))
        for reveal, data in zip(chunk, fetched, strict=True):
            who = to_address(reveal.participant)
            meta[who] = reveal
            if isinstance(data, str):  # why it could not be read
                reason = data
            elif next(digests) != bytes(reveal.digest):
                reason = "update bytes do not match the revealed digest"
            elif inputs.client_fraction < 1 and not is_sampled(
                inputs.client_fraction, inputs.sampling_seed, who
            ):
                reason = "not sampled for this round"
            elif not 1 <= reveal.num_samples <= inputs.max_samples:
                reason = f"sample count {reveal.num_samples} out of range"
            else:
                try:
                    update = decode_update(data, inputs.update_spec)
                except UpdateFormatError as exc:
                    reason = f"invalid update: {exc}"
                else:
                    updates.append(ClientUpdate(who, update, reveal.num_samples))
                    continue
            failures.append(Failure(who, reason))
    return updates, failures, meta


def _fetch(store: ContentStore, cid: CID) -> bytes | str:
    """The bytes named ``cid``, or why they cannot be read. Reasons go into the report every
    member hashes: they must not depend on the member (store paths, daemon messages), only
    on what is wrong with the update."""
    try:
        return store.get(cid)
    except ContentNotFound:
        return "update unavailable: not in the store"
    except ContentMismatch:
        return "update unavailable: stored bytes do not match the CID (corrupted)"


def _sha256(blob: bytes) -> bytes:
    return hashlib.sha256(blob).digest()
