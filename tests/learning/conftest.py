"""Shared fixture for the learning tests: a tiny model spec."""

from __future__ import annotations

import pytest
import torch

from flchain.learning.models import CodecParams, ModelSpec, TensorSpec

# Small models on a shared 2-core box: a second intra-op thread only adds contention
# (measured 10x slower under load). Determinism across thread counts is tested in subprocesses.
torch.set_num_threads(1)


@pytest.fixture
def spec() -> ModelSpec:
    return ModelSpec(
        "toy",
        (TensorSpec("w", (3, 4)), TensorSpec("b", (3,)), TensorSpec("a.weight", (2, 2))),
        CodecParams(encoding="fixed", frac_bits=16, bound=8.0),
    )
