"""Fixtures every test folder shares; the helpers behind them live in ``tests/support``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flchain_node.federation import Federation
from support.fedkit import small_federation


@pytest.fixture
def fed() -> Iterator[Federation]:
    """A fresh one-round, three-participant federation (:data:`support.fedkit.DEMO`)."""
    with small_federation() as federation:
        yield federation
