"""The embedded chain is a function of what is sent to it: the same steps build the same
blocks (hashes included) whatever the wall clock, the randomness source or the pauses between
steps — so a committee seed drawn from a block hash is the same in every run.

Stock eth-tester stamps blocks with the wall clock, draws ``mix_hash`` from ``os.urandom``, and
the chain used to price transactions from a block up to 2 s old: the second run below is made
with a wall clock 1000 s later, a different ``os.urandom`` and a pause longer than that cache,
so each of the three sources would change its block hashes.
"""

from __future__ import annotations

import itertools
import time
import types
from typing import Any

import eth._utils.headers as eth_headers
import eth_tester.backends.pyevm.main as tester_main
import pytest
from eth_utils import keccak

from flchain.ledger.chain import Chain
from flchain.ledger.devchain import BlockPass
from flchain.ledger.embedded import GENESIS_TIMESTAMP, make_tester


def _steps(chain: Chain, artifact: dict[str, Any], pause: float) -> list[bytes]:
    """Deploy, transact, pause, transact again, a held block of three, a snapshot revert and
    new blocks at the reverted heights; every block hash of the chain at the end."""
    admin, other = chain.accounts[0], chain.accounts[1]
    contract = chain.deploy(artifact, admin, 5)
    chain.transact(contract.functions.increment(1), admin)
    time.sleep(pause)
    chain.transact(contract.functions.increment(2), other)
    BlockPass(chain.w3.provider).run(  # type: ignore[arg-type]
        [
            lambda: chain.transact(contract.functions.increment(3), admin),
            lambda: chain.transact(contract.functions.increment(4), other),
            lambda: chain.transact(contract.functions.increment(5), chain.accounts[2]),
        ]
    )
    snapshot = chain.snapshot()
    chain.transact(contract.functions.increment(6), admin)
    chain.revert(snapshot)
    chain.transact(contract.functions.increment(7), other)
    chain.mine(2)
    return [bytes(chain.w3.eth.get_block(n)["hash"]) for n in range(chain.block_number + 1)]


def test_same_steps_build_the_same_blocks_whatever_the_clock_and_randomness(
    fixture_artifact: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _steps(Chain.embedded(4, tester=make_tester(4)), fixture_artifact, pause=0.0)
    later = time.time() + 1000
    monkeypatch.setattr(eth_headers, "eth_now", lambda: int(later))
    monkeypatch.setattr(tester_main, "time", types.SimpleNamespace(time=lambda: later))
    monkeypatch.setattr(tester_main, "os", types.SimpleNamespace(urandom=lambda n: b"\x5a" * n))
    second = _steps(Chain.embedded(4, tester=make_tester(4)), fixture_artifact, pause=2.1)
    assert len(first) >= 8
    assert second == first


def test_blocks_are_one_second_apart_from_a_fixed_genesis_with_mix_hash_from_the_parent(
    fixture_artifact: dict[str, Any],
) -> None:
    chain = Chain.embedded(2, tester=make_tester(2))
    contract = chain.deploy(fixture_artifact, chain.accounts[0], 5)
    snapshot = chain.snapshot()
    chain.transact(contract.functions.increment(1), chain.accounts[0])
    chain.revert(snapshot)  # the pending header is rebuilt after a revert: same clock
    chain.mine(3)
    blocks = [chain.w3.eth.get_block(n) for n in range(chain.block_number + 1)]
    assert blocks[0]["timestamp"] == GENESIS_TIMESTAMP
    assert [b["timestamp"] for b in blocks] == [GENESIS_TIMESTAMP + n for n in range(len(blocks))]
    for parent, block in itertools.pairwise(blocks):
        assert bytes(block["mixHash"]) == keccak(bytes(parent["hash"]))
