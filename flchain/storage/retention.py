"""Who pins what, and for how long: the retention policy behind ``flchain store gc --task``.

Every piece of content a task names on-chain has an owner that keeps it pinned:

* a participant keeps its own update pinned until its round is closed (finalized or expired),
  plus ``retention`` more closed rounds: long enough for the committee to fetch and recompute
  it, and for anyone auditing a recent round;
* committee members pin the new global model and the round report they attest (and, for a
  task with a server optimizer, the optimizer state the report names); the newest model,
  report and state are kept for good (the next round trains from them), older ones for
  ``retention`` closed rounds;
* the task's manifest and initial model are kept for as long as the task exists.

Everything else a task named can be unpinned, and then garbage-collected. Pins the task never
named (other tasks, a user's own files, a committee result that lost the vote) are left alone:
this policy only releases what it can prove is no longer needed. Pure: no chain, no store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flchain.errors import ConfigError
from flchain.storage import unixfs

#: Closed rounds whose content is kept beyond the newest, unless told otherwise.
DEFAULT_RETENTION = 2


@dataclass(frozen=True)
class RoundContent:
    """What the chain says one round stored: revealed updates, and its result if finalized."""

    round: int
    updates: tuple[str, ...] = ()
    model: str | None = None
    report: str | None = None
    closed: bool = False  # finalized or expired
    state: str | None = None  # the server optimizer's state the report names, if any


@dataclass(frozen=True)
class Plan:
    """The outcome of :func:`plan`: pins to drop, and pins kept because the task needs them."""

    unpin: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)


def _key(cid: str) -> bytes:
    """CIDv0 and CIDv1 of the same DAG name the same pin."""
    return bytes(unixfs.parse_cid(cid).digest)


def plan(
    pinned: Iterable[str],
    rounds: Iterable[RoundContent],
    permanent: Iterable[str],
    retention: int = DEFAULT_RETENTION,
) -> Plan:
    """Which of ``pinned`` to unpin under the policy above, keeping ``retention`` closed rounds.

    ``permanent`` are kept regardless (the manifest and initial model). A CID named by two
    rounds is kept if either keeps it.
    """
    if retention < 0:
        raise ConfigError(f"retention must be >= 0 rounds, not {retention}")
    rounds = sorted(rounds, key=lambda r: r.round)
    closed = [r.round for r in rounds if r.closed]
    # Rounds up to and including `cutoff` are past retention; open rounds are never past it.
    cutoff = closed[-1 - retention] if len(closed) > retention else None
    newest_model = next((r for r in reversed(rounds) if r.model), None)

    keep = {_key(c) for c in permanent}
    named: set[bytes] = set()
    for r in rounds:
        cids = [*r.updates, *(c for c in (r.model, r.report, r.state) if c)]
        named.update(_key(c) for c in cids)
        past = r.closed and cutoff is not None and r.round <= cutoff
        if not past:
            keep.update(_key(c) for c in cids)
    if newest_model is not None:  # the next round trains from it, whatever the retention
        keep.update(
            _key(c) for c in (newest_model.model, newest_model.report, newest_model.state) if c
        )

    result = Plan()
    for cid in pinned:
        key = _key(cid)
        if key in named and key not in keep:
            result.unpin.append(cid)
        elif key in named or key in keep:
            result.keep.append(cid)
    return result
