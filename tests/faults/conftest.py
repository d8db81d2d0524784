"""Fixtures of the fault-injection tests (helpers live in ``support.fedkit``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flchain_node.federation import Federation
from support.fedkit import small_federation


@pytest.fixture(scope="module")
def deployed() -> Iterator[Federation]:
    """One deployed federation per module, for tests that leave the store intact."""
    with small_federation() as federation:
        yield federation


@pytest.fixture
def rewound(deployed: Federation) -> Iterator[Federation]:
    """``deployed`` with the chain rewound to just after deployment when the test ends."""
    snapshot = deployed.chain.snapshot()
    try:
        yield deployed
    finally:
        deployed.chain.revert(snapshot)
