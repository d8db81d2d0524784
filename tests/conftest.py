"""Fixtures every test folder shares; the helpers behind them live in ``tests/support``."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from flchain_node.federation import Federation
from support.fedkit import small_federation

# No test dials out: Flower's telemetry and Ray's usage stats are on unless these say otherwise
# (both are read when flwr / ray are first imported, so before any test imports them).
os.environ.update({"FLWR_TELEMETRY_ENABLED": "0", "RAY_USAGE_STATS_ENABLED": "0"})


@pytest.fixture
def fed() -> Iterator[Federation]:
    """A fresh one-round, three-participant federation (:data:`support.fedkit.DEMO`)."""
    with small_federation() as federation:
        yield federation
