"""Smoke test of ``scripts/bench_overhead.py``: its round clock books time where it should, and
a tiny federation (2 participants, digits, MLP, 2 rounds) yields a consistent split."""

from __future__ import annotations

import time
from types import ModuleType, SimpleNamespace

import pytest
import torch
from flchain_node.federation import Federation
from support.fedkit import DEMO
from support.scripts import load_script
from support.tools import require_tool

from flchain.ledger.anvil import AnvilProcess, find_anvil
from flchain.ledger.chain import Chain


@pytest.fixture(scope="module")
def bench_overhead() -> ModuleType:
    return load_script("bench_overhead")


class FakeClock:
    """A clock that moves only when the test says so, so the bookkeeping is exact."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_outer_call_absorbs_inner_and_training_opens_rounds(bench_overhead: ModuleType) -> None:
    now = FakeClock()
    clock = bench_overhead.RoundClock(now)
    inner = clock.wrap(lambda: now.sleep(2.0), "reads")
    outer = clock.wrap(lambda: (now.sleep(3.0), inner()), "aggregate")
    before = clock.wrap(lambda: now.sleep(7.0), "reads")

    before()  # before any round: not booked anywhere
    clock.training(0)
    outer()
    inner()
    clock.training(0)  # another participant of the same round
    now.sleep(0.5)
    clock.training(1)
    now.sleep(1.0)
    clock.close()

    first, second = clock.rounds
    assert first["aggregate"] == pytest.approx(5.0)  # its own time and the nested read
    assert first["reads"] == pytest.approx(2.0)  # only the top-level read
    assert first["python"] == pytest.approx(0.5)  # the rest of the round
    assert clock.calls[0]["aggregate"] == 1 and clock.calls[0]["reads"] == 1
    assert first["wall"] == pytest.approx(7.5)
    assert first["wall"] == pytest.approx(sum(first[p] for p in bench_overhead.PARTS))
    assert second["python"] == pytest.approx(1.0) and second["reads"] == 0.0


def test_raw_provider_requests_are_booked_as_reads(bench_overhead: ModuleType) -> None:
    chain = Chain.embedded(2)
    assert chain.block_number == 0  # web3 built and cached its request function here
    store = SimpleNamespace(put=lambda data: "", get=lambda cid: b"")
    fed = SimpleNamespace(chain=chain, store=store, nodes=[], _row=lambda *a: None)
    clock = bench_overhead.RoundClock(cpu={"process": time.process_time})
    with bench_overhead.instrument(fed, clock):
        clock.training(0)
        for _ in range(3):
            assert chain.block_number == 0  # eth_blockNumber, below every chain-level wrapper
        clock.close()
    assert clock.calls[0]["reads"] == 3
    assert clock.rounds[0]["reads"] > 0
    assert clock.cpu[0]["process"] >= 0


def test_tiny_federation_split_is_consistent(bench_overhead: ModuleType) -> None:
    torch.set_num_threads(1)
    result = bench_overhead.bench(2, "embedded", 2, "mlp", 0, "digits")

    assert [r["status"] for r in result["per_round"]] == ["finalized", "finalized"]
    split, calls = result["split_s"], result["calls"]
    assert sum(split.values()) == pytest.approx(result["federation_s"])
    assert min(split["train"], split["tx"], split["aggregate"], split["store"]) > 0
    assert split["python"] > -0.05  # the remainder: never much below zero
    # each participant's commit and reveal and each member's vote is booked as its own call,
    # though they share block passes (a job parked in its receipt wait books nothing while
    # the next job runs)
    assert calls["tx"] >= 2 + 2 + 2
    assert calls["aggregate"] >= 2  # the quorum recomputed the round
    fed, mem = result["federation_s"], result["in_memory_s"]
    assert result["overhead"] == pytest.approx((fed - mem) / fed)
    assert 0 < mem < fed
    assert 0 < result["overhead_own_train"] < 1
    assert result["setup_s"] > 0
    assert all(r["cpu_s"]["process"] > 0 for r in result["per_round"])


@pytest.mark.anvil
def test_on_a_json_rpc_chain_a_phase_goes_out_in_one_flush_with_its_gas_booked() -> None:
    require_tool(find_anvil() is not None, "anvil binary not found", "npm ci")
    accounts = DEMO.participants + 1
    flushed: list[int] = []
    with AnvilProcess(accounts=accounts) as anvil:
        fed = Federation(DEMO, chain=Chain.connect(anvil.url, num_accounts=accounts))
        try:
            outbox = fed.outbox
            assert outbox is not None and all(n.outbox is outbox for n in fed.nodes)
            flush = outbox.flush

            def counted() -> int:
                flushed.append(len(outbox))
                return flush()

            outbox.flush = counted  # type: ignore[method-assign]
            result = fed.run()
        finally:
            fed.close()
    assert [r.status for r in result.rounds] == ["finalized"] * DEMO.rounds
    # per round the commits, then the reveals (the dropout commits but does not reveal)
    n = DEMO.participants
    assert [k for k in flushed if k] == [n, n - DEMO.dropouts] * DEMO.rounds
    for row in result.rounds:
        assert row.gas["commit"] > 0 and row.gas["reveal"] > 0  # booked by the flush
    assert any(result.claimed.values())  # paid from the shared reward tree
