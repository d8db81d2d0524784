"""Smoke test of ``scripts/bench_vs_flower.py``: per-round figures leave start-up and the first
round out, and (with the bench extra installed) its Flower side trains the same federation as
the in-memory simulation, to within Flower's float averaging."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from support.scripts import load_script
from support.tools import require_tool


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("bench_vs_flower")


def test_per_round_time_skips_start_up_and_the_first_round(bench: ModuleType) -> None:
    # evaluated global models at t=5 (initial), 8, 9.5, 11.5: rounds of 3, 1.5 and 2 s
    s = bench.summarise(20.0, {"round_ends": [5.0, 8.0, 9.5, 11.5], "accuracies": [0.1, 0.2, 0.3]})
    assert s["first_round_seconds"] == 3.0
    assert s["per_round_after_first"] == pytest.approx(1.75)
    assert s["whole_seconds"] == 20.0
    demo = bench.summarise(9.0, {"round_seconds": [4.0, 1.0, 2.0], "accuracies": [0.1, 0.2, 0.3]})
    assert demo["per_round_after_first"] == pytest.approx(1.5)


def test_the_demo_command_runs_the_honest_fedavg_federation(bench: ModuleType) -> None:
    cmd = bench.demo_command(50, 2, 0, Path("out"))
    flags = dict(zip(cmd[2::2], cmd[3::2], strict=True))
    assert cmd[1] == "demo"
    assert flags["--participants"] == "50" and flags["--rounds"] == "2"
    assert flags["--rule"] == "fedavg"
    assert flags["--attackers"] == flags["--free-riders"] == flags["--dropouts"] == "0"


@pytest.mark.bench
def test_flower_side_trains_like_the_in_memory_simulation(bench: ModuleType) -> None:
    require_tool(
        importlib.util.find_spec("ray") is not None,
        "ray (Flower's simulation engine) is not installed",
        "pip install -e '.[bench]'",
    )
    flower = bench.run_flower(2, 2, 0, 2.0)
    memory = bench.run_in_memory(2, 2, 0)
    # Flower averages float32 arrays, FLChain the exactly quantised updates: a few test images
    assert flower["accuracies"] == pytest.approx(memory["accuracies"], abs=0.005)
    assert len(flower["round_ends"]) == 3  # the initial model's evaluation and two rounds
