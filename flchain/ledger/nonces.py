"""A nonce manager for many local accounts and concurrent senders.

Each account has a lock and a local counter, seeded from the node's pending transaction count
the first time (or after :meth:`NonceManager.forget`). A sender takes a :class:`NonceLease`:
while it holds the lease no other thread can use that account, and the nonce is consumed only
if the sender calls :meth:`NonceLease.consume` — so a transaction that fails to sign, estimate
or send never leaves a gap. The chain layer calls :meth:`NonceLease.resync` when the node says
the nonce is too low (another process used it), and ``forget`` when it cannot tell whether a
transaction reached the node.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: How nodes (geth, anvil, reth, our embedded chain) refuse a nonce that is not the next one.
NONCE_MISMATCH = re.compile(
    r"nonce too (low|high)|nonce has already been used|invalid (transaction )?nonce",
    re.IGNORECASE,
)
#: How nodes say they already hold exactly this transaction.
ALREADY_KNOWN = re.compile(
    r"already known|known transaction|already imported|already exists|already in the mempool",
    re.IGNORECASE,
)


class NonceLease:
    """The right to send the next transaction of one account (see :meth:`NonceManager.lease`)."""

    def __init__(self, manager: NonceManager, address: str, nonce: int) -> None:
        self._manager = manager
        self.address = address
        self.nonce = nonce
        self.consumed = False

    def consume(self) -> None:
        """The transaction with :attr:`nonce` reached the node: later leases get the next one."""
        self._manager._next[self.address] = self.nonce + 1
        self.consumed = True

    def resync(self) -> int:
        """Take the node's pending count after it refused :attr:`nonce`; the new nonce.

        If the node's count still equals the refused nonce (its pending view lags behind its
        mempool), step past it.
        """
        chain_nonce = self._manager._fetch(self.address)
        self.nonce = chain_nonce if chain_nonce != self.nonce else self.nonce + 1
        return self.nonce


class NonceManager:
    """Hands out consecutive nonces per account, safely across threads.

    Args:
        fetch_pending: returns the node's pending transaction count for an address.
    """

    def __init__(self, fetch_pending: Callable[[str], int]) -> None:
        self._fetch = fetch_pending
        self._next: dict[str, int] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, address: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(address, threading.Lock())

    @contextmanager
    def lease(self, address: str) -> Iterator[NonceLease]:
        """Lock ``address`` and lend its next nonce; unconsumed on exit means unused."""
        with self._lock(address):
            nonce = self._next.get(address)
            if nonce is None:
                nonce = self._fetch(address)
                self._next[address] = nonce
            yield NonceLease(self, address, nonce)

    def forget(self, address: str | None = None) -> None:
        """Drop the local counter(s): the next lease re-reads the node (after a chain revert,
        or when a send's outcome is unknown)."""
        with self._guard:
            if address is None:
                self._next.clear()
            else:
                self._next.pop(address, None)

    def peek(self, address: str) -> int | None:
        """The next nonce this manager would hand out, if it has one cached."""
        return self._next.get(address)
