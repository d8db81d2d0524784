"""The one-process federation's own store writes its puts behind the round (a process of their
own) and ends up holding the same files as a federation whose store writes them at once."""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from flchain_node.federation import Federation
from support.fedkit import DEMO, Driver, small_federation
from support.stores import files_of, writers_held

from flchain.ledger.contracts import CommitmentFlag, Phase
from flchain.storage import CachedStore, LocalStore, WriteBehindStore


def test_the_federation_s_puts_are_written_behind_into_the_same_files(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    at_once = Federation(
        DEMO, store=LocalStore(tmp_path / "at-once", durable=False), work_dir=tmp_path / "a"
    )
    try:
        expected = at_once.run()
    finally:
        at_once.close()
    federation = Federation(DEMO, work_dir=tmp_path / "behind")
    try:
        result = federation.run()
        assert isinstance(federation.store, CachedStore)
        writer = federation.store.inner
        assert isinstance(writer, WriteBehindStore)
        # the manifest, the initial model, each update, model and report, ...: every put of
        # the run was written by the writer process, and all of them before run() returned
        assert writer.written_behind == writer.puts >= 2 + DEMO.participants + 2
        stored = files_of(tmp_path / "behind" / "store")
    finally:
        federation.close()
    assert [r.model_cid for r in result.rounds] == [r.model_cid for r in expected.rounds]
    assert stored == files_of(tmp_path / "at-once")


def test_a_node_reveals_only_once_its_update_is_written() -> None:
    """A reveal names the update's CID on the chain, for any reader: the node's update, put
    behind the round at its commit, must be in the store's directory before it is sent."""
    with small_federation() as fed:
        assert isinstance(fed.store, CachedStore) and isinstance(fed.store.inner, WriteBehindStore)
        local = fed.store.inner.inner
        assert isinstance(local, LocalStore)
        task, node = fed.deployment.task, fed.nodes[0]
        with writers_held(local):
            Driver(fed).run_until(lambda: task.phase() == Phase.REVEAL)  # every node committed
            cid = node.state.rounds[0].cid
            assert not local.has(cid)  # its update is still in flight
            revealing = threading.Thread(target=node.step)
            revealing.start()
            revealing.join(0.3)
            assert revealing.is_alive()  # the reveal waits for the write
            assert not task.step_view(node.address).commitment.flags & CommitmentFlag.REVEALED
        revealing.join()
        assert local.has(cid)
        assert task.step_view(node.address).commitment.flags & CommitmentFlag.REVEALED
