"""A participant's update that disappears from the store, or rots there, after it was revealed:
the committee records a failed reveal for that participant (no reward, the reason says why)
and the round finalizes for the others."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from flchain_node.federation import Federation
from support.fedkit import Driver, fresh_node

from flchain.ledger.contracts import Revealed, RoundStatus
from flchain.storage import CachedStore, ContentStore, LocalStore, WriteBehindStore, unixfs

VICTIM = 0


def _gc_away(store: LocalStore, cid: str) -> str:
    """The blob is garbage-collected (unpinned by mistake, disk cleaned up)."""
    store.unpin(cid)
    assert store.gc() > 0
    assert not store.has(cid)
    return "update unavailable: not in the store"


def _flip_a_byte(store: LocalStore, cid: str) -> str:
    """One byte of the stored blob's root block flips on disk."""
    path = store._block_path(unixfs.parse_cid(cid).digest)
    os.chmod(path, 0o644)  # blocks are written read-only
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return "update unavailable: stored bytes do not match the CID (corrupted)"


def _disk(fed: Federation) -> LocalStore:
    """The store on disk behind the federation's in-memory cache (and, where it has one, its
    write-behind), every put written. The nodes of these tests read it directly, as members
    in processes of their own would: in the one process the cache still holds the bytes it
    verified, so damage on disk would not reach them."""
    fed.store.flush()
    store: ContentStore = fed.store
    while isinstance(store, CachedStore | WriteBehindStore):
        store = store.inner
    assert isinstance(store, LocalStore)
    return store


def _everyone_revealed(fed: Federation, tmp_path: Path) -> tuple[Driver, str, Revealed]:
    """Round 0 with all three updates revealed; the driver, the victim and its reveal."""
    store = _disk(fed)
    nodes = {i: fresh_node(fed, i, tmp_path, store=store) for i in range(3)}
    driver = Driver(fed, nodes, lambda i: fresh_node(fed, i, tmp_path, store=store))
    driver.run_until(lambda: fed.deployment.task.round_record(0).reveals == 3)
    victim = driver.nodes[VICTIM].address
    events = fed.deployment.task.events(Revealed, round=0)
    (revealed,) = [e for e in events if e.account == victim]
    return driver, victim, revealed


@pytest.mark.parametrize("damage", [_gc_away, _flip_a_byte], ids=["missing", "corrupted"])
def test_lost_or_corrupted_update_is_a_failed_reveal_and_the_round_goes_on(
    fed: Federation, tmp_path: Path, damage: Callable[[LocalStore, str], str]
) -> None:
    task = fed.deployment.task
    driver, victim, revealed = _everyone_revealed(fed, tmp_path)
    expected_reason = damage(_disk(fed), revealed.cid)

    driver.run_until(driver.round_closed(0))

    assert task.round_record(0).status == RoundStatus.FINALIZED
    report = driver.nodes[1].report_of(0)
    outcomes = {o.participant: o for o in report.outcomes}
    failed = outcomes[victim]
    assert not failed.accepted and failed.reward == 0 and failed.score == 0
    assert failed.reason.endswith(expected_reason)
    assert victim not in report.cumulative
    others = [o for who, o in outcomes.items() if who != victim]
    assert len(others) == 2 and all(o.accepted and o.reward > 0 for o in others)
    assert report.reward_total == sum(o.reward for o in others)
    assert driver.nodes[VICTIM].claim() == 0  # nothing to claim, and no error either
    assert driver.restarts == []


@pytest.mark.parametrize("damage", [_gc_away, _flip_a_byte], ids=["missing", "corrupted"])
def test_members_with_their_own_stores_agree_on_a_damaged_update(
    fed: Federation, tmp_path: Path, damage: Callable[[LocalStore, str], str]
) -> None:
    """Regression: the failure reason used to quote the member's own store path, so members
    with different stores hashed different reports and could never reach a quorum."""
    _, victim, revealed = _everyone_revealed(fed, tmp_path)
    damage(_disk(fed), revealed.cid)
    copy = tmp_path / "elsewhere"
    shutil.copytree(_disk(fed).root, copy)  # the same blobs (and damage) at another path
    with LocalStore(copy, durable=False) as other:
        mine = fresh_node(fed, 1, tmp_path, store=other).recompute(0)
        theirs = fresh_node(fed, 2, tmp_path, store=_disk(fed)).recompute(0)
    assert mine.result_tuple() == theirs.result_tuple()
    (failed,) = [o for o in mine.report.outcomes if not o.accepted]
    assert failed.participant == victim
