"""What a node's work costs, per round: seconds training, storing, fetching, aggregating and on the
chain, and bytes put into and fetched from the content store.

:class:`MeteredStore` wraps the node's store and tallies its puts and gets, so the same figures
come out whichever store it is (a directory, a Kubo daemon on another host). :class:`RoundWork`
is a round's sum over the node's steps; the runner keeps one per round in the node's metrics file
(``flchain status --local`` shows them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields

from flchain.storage import ContentStore
from flchain.storage.base import DelegatingStore
from flchain.types import CID


@dataclass
class StoreTally:
    """Running totals of a :class:`MeteredStore`: seconds of every put and get, bytes of the
    ones that succeeded."""

    store_seconds: float = 0.0
    fetch_seconds: float = 0.0
    store_bytes: int = 0
    fetch_bytes: int = 0

    def copy(self) -> StoreTally:
        return StoreTally(**{f.name: getattr(self, f.name) for f in fields(self)})

    def since(self, earlier: StoreTally) -> StoreTally:
        """What was tallied after ``earlier`` (a copy taken then)."""
        return StoreTally(
            **{f.name: getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)}
        )


class MeteredStore(DelegatingStore):
    """``inner`` with every ``put`` and ``get`` timed and its bytes counted in :attr:`tally`.

    Only the content the node asked for is counted (an update's bytes, once per get): what a
    Kubo daemon moved over the network for it is the daemon's own figure (``ipfs stats bw``).
    """

    def __init__(self, inner: ContentStore) -> None:
        super().__init__(inner)
        self.tally = StoreTally()

    def put(self, data: bytes, *, pin: bool = True) -> CID:
        return self._tallied(data, lambda: self.inner.put(data, pin=pin))

    def put_named(self, data: bytes, cid: CID | str, *, pin: bool = True) -> CID:
        return self._tallied(data, lambda: self.inner.put_named(data, cid, pin=pin))

    def _tallied(self, data: bytes, put: Callable[[], CID]) -> CID:
        started = time.perf_counter()
        try:
            cid = put()
        finally:  # a failed put took its time too
            self.tally.store_seconds += time.perf_counter() - started
        self.tally.store_bytes += len(data)
        return cid

    def get(self, cid: CID | str) -> bytes:
        started = time.perf_counter()
        try:
            data = self.inner.get(cid)
        finally:  # so did a fetch that found nothing (the daemon looked until its timeout)
            self.tally.fetch_seconds += time.perf_counter() - started
        self.tally.fetch_bytes += len(data)
        return data

    def flush(self, cid: CID | str | None = None) -> None:
        started = time.perf_counter()
        try:
            self.inner.flush(cid)
        finally:  # waiting for puts written behind is the store's share too
            self.tally.store_seconds += time.perf_counter() - started


#: The kinds of work a step's seconds are split into (:attr:`StepReport.seconds` keys).
WORK = ("train", "store", "fetch", "aggregate", "chain")


@dataclass
class RoundWork:
    """One node's work in one round, summed over its steps.

    ``train``: producing the update; ``store``: putting it in the store; ``fetch``: getting
    content (the global model, the committee's updates, reports); ``aggregate``: the committee's
    recomputation without its fetches; ``chain``: everything else the node spent time on, which
    is chain reads (views, polls) and transactions from send to receipt (a block away), plus
    small bookkeeping (state file writes, encoding). Bytes are the content put and fetched.
    """

    round: int
    train: float = 0.0
    store: float = 0.0
    fetch: float = 0.0
    aggregate: float = 0.0
    chain: float = 0.0
    store_bytes: int = 0
    fetch_bytes: int = 0

    def add(self, seconds: dict[str, float], moved: dict[str, int]) -> None:
        """Book one step's ``seconds`` (by :data:`WORK` kind) and ``moved`` bytes."""
        for kind in WORK:
            setattr(self, kind, getattr(self, kind) + seconds.get(kind, 0.0))
        self.store_bytes += moved.get("store", 0)
        self.fetch_bytes += moved.get("fetch", 0)
