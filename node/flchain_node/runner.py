"""The long-running loops behind ``flchain node run`` and ``flchain task keep``.

On a shared JSON-RPC chain blocks arrive on their own (interval mining, other participants'
transactions), so a loop only polls: it steps the node whenever a new block arrived, and never in
the last block of a phase — a transaction sent then lands in the next block, after the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from eth_account.signers.local import LocalAccount

from flchain.errors import (
    ProtocolError,
    RPCUnavailable,
    StoreUnavailable,
    TransactionFailed,
    TransactionTimeout,
)
from flchain.learning.scaffold import Controls
from flchain.ledger.contracts import FLToken, ParticipantRegistry, Phase, TrainingTask
from flchain_node.local import LocalMetrics
from flchain_node.metering import RoundWork
from flchain_node.owner import Keeper
from flchain_node.participant import ParticipantNode, Produced, StepReport

Log = Callable[[str], None]

#: Failures worth retrying at the next poll: the node's step is idempotent.
TRANSIENT = (RPCUnavailable, TransactionTimeout, StoreUnavailable)


class Outage:
    """Retry bookkeeping of a polling loop: backs off while the chain (or store) is away and
    logs each change of state once — "chain unreachable, retrying" when trouble starts,
    "chain back" when a poll succeeds again — rather than one line per failed poll, which
    floods the log of a node left running through a long outage.

    The back-off doubles from ``poll`` up to ``max_wait`` seconds.
    """

    def __init__(self, log: Log, poll: float, max_wait: float = 5.0) -> None:
        self.log, self.poll, self.max_wait = log, poll, max(max_wait, poll)
        self.failures = 0

    def failed(self, exc: Exception) -> float:
        """Record one failed poll; returns the seconds to wait before the next."""
        if self.failures == 0:
            what = "chain unreachable" if isinstance(exc, RPCUnavailable) else "unavailable"
            self.log(f"{what}, retrying: {exc}")
        self.failures += 1
        return min(self.poll * 2 ** (self.failures - 1), self.max_wait)

    def succeeded(self) -> None:
        """Record a successful poll (logs "chain back" after an outage)."""
        if self.failures:
            self.log(f"chain back after {self.failures} failed poll(s)")
        self.failures = 0


class NoTraining:
    """The update source of a node that only follows, attests or claims (``flchain claim``)."""

    def produce(
        self, global_state: dict[str, torch.Tensor], round_id: int, controls: Controls | None
    ) -> Produced:
        raise ProtocolError("this node has no training data and cannot produce updates")


def ensure_registered(
    registry: ParticipantRegistry, account: LocalAccount, stake: int | None = None
) -> bool:
    """Approve and register ``account`` with ``stake`` (default: the minimum) unless it is
    already active; returns whether it registered now."""
    if registry.is_active(account.address):
        return False
    amount = registry.min_stake() if stake is None else stake
    token = FLToken(registry.chain, registry.stake_token())
    token.approve(account, registry.address, amount)
    registry.register(account, amount)
    return True


def phase_end(task: TrainingTask, phase: Phase) -> int | None:
    """The last block of ``phase`` in the current round; ``None`` when acting has no deadline
    (a task its owner has not started yet, a round waiting to be expired, or the task
    completed)."""
    if phase in (Phase.NOT_STARTED, Phase.COMPLETED, Phase.EXPIRABLE):
        return None
    round_id = task.current_round()
    record = task.round_record(round_id)
    if phase == Phase.COMMIT:
        return record.commit_end
    if phase == Phase.REVEAL:
        return record.reveal_end
    return task.attest_deadline(round_id)


@dataclass
class RunSummary:
    """What a node run did: how often it took each action, gas used, the reward it claimed,
    how many steps failed (and were retried) and its work per round."""

    actions: dict[str, int]
    gas: int
    claimed: int
    errors: int
    work: dict[int, RoundWork]


def run_node(
    node: ParticipantNode,
    *,
    poll: float = 0.5,
    timeout: float | None = None,
    claim: bool = True,
    log: Log = print,
    metrics: LocalMetrics | None = None,
) -> RunSummary:
    """Step ``node`` until the task completes and its last attest window closed, then claim.

    Transient trouble (RPC or store unavailable, receipt timeouts) and refused transactions
    are logged and retried at the next block: :meth:`ParticipantNode.step` is idempotent, so
    nothing is sent twice. Raises :class:`ProtocolError` when ``timeout`` seconds pass first.
    The node's work per round goes into ``metrics`` (when given) as the rounds go.
    """
    task, chain = node.task, node.chain
    deadline = None if timeout is None else time.monotonic() + timeout
    actions: dict[str, int] = {}
    work: dict[int, RoundWork] = {}
    gas = errors = 0
    last_block = -1
    polled = 0.0  # seconds of chain reads by the loop itself, booked with the next step
    outage = Outage(log, poll)
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise ProtocolError(f"node {node.address} timed out after {timeout:g}s")
        try:
            started = time.perf_counter()
            block, phase = chain.block_number, task.phase()
            outage.succeeded()
            end = phase_end(task, phase)
            if phase == Phase.COMPLETED:
                rounds = task.current_round()
                if rounds == 0 or block > task.attest_deadline(rounds - 1):
                    break  # completed, and late votes on the last round are no longer possible
            polled += time.perf_counter() - started
            if block == last_block or (end is not None and block >= end):
                time.sleep(poll)  # wait for a new block / don't act in a phase's last block
                continue
            last_block = block
            report = node.step()
        except TransactionFailed as exc:  # e.g. someone else did it first, or the phase moved on
            errors += 1
            log(f"refused: {exc}")
            continue
        except TRANSIENT as exc:
            errors += 1
            time.sleep(outage.failed(exc))
            continue
        _log_step(report, log)
        for action in report.actions:
            actions[action] = actions.get(action, 0) + 1
        gas += sum(report.gas.values())
        report.seconds["chain"] = report.seconds.get("chain", 0.0) + polled
        polled = 0.0
        booked = work.setdefault(report.round, RoundWork(report.round))
        booked.add(report.seconds, report.moved)
        if metrics is not None and report.actions:  # not every block: when work was done
            metrics.record_work(booked)
    if metrics is not None:
        for booked in work.values():
            metrics.record_work(booked)
    claimed = node.claim() if claim else 0
    if claimed:
        log(f"claimed {claimed} (token base units)")
    return RunSummary(actions, gas, claimed, errors, work)


def run_keeper(
    keeper: Keeper,
    *,
    poll: float = 0.5,
    timeout: float | None = None,
    log: Log = print,
) -> dict[str, int]:
    """Run ``keeper`` until the task completed and every committee is settled; returns the
    gas used per action.

    Like :func:`run_node` it rides out an unreachable chain (the end-of-task check is chain
    reads too, so it sits inside the retry), backing off and logging once per state change.
    """
    task = keeper.task
    deadline = None if timeout is None else time.monotonic() + timeout
    total: dict[str, int] = {}
    outage = Outage(log, poll)
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise ProtocolError(f"keeper timed out after {timeout:g}s")
        try:
            completed = task.phase() == Phase.COMPLETED
            outage.succeeded()
            if completed and keeper.done():
                break
            gas = keeper.step()
            round_id = task.current_round() if gas else 0  # read here: inside the retry
        except TRANSIENT as exc:
            time.sleep(outage.failed(exc))
            continue
        outage.succeeded()
        for action, used in gas.items():
            total[action] = total.get(action, 0) + used
            log(f"round {round_id}: {action} ({used} gas)")
        if not gas:
            time.sleep(poll)
    return total


def _log_step(report: StepReport, log: Log) -> None:
    if report.actions:
        timing = ", ".join(f"{k} {v:.2f}s" for k, v in report.seconds.items() if v >= 0.005)
        log(f"round {report.round} {report.phase.name.lower()}: {', '.join(report.actions)}"
            + (f" ({timing})" if timing else ""))  # fmt: skip
