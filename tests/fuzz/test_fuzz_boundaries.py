"""Property: hostile input at any boundary gives an FLChainError with a message (or is
accepted and round-trips), never another exception, a hang or a half-done write."""

from __future__ import annotations

import pytest
from fuzzlib import Boundary, check
from hypothesis import given, settings
from hypothesis import strategies as st

FAST = [
    "codec.decode_update[fixed]",
    "codec.decode_update[float32]",
    "codec.decode_model",
    "storage.cid",
    "storage.import_car",
    "config.load_config",
    "config.config_from_dict",
    "protocol.manifest",
    "protocol.report",
    "node.state_load",
]
# a server round trip / a CLI run per example
SLOW = ["ledger.rpc_response", "cli.args", "cli.devchain_args"]


def test_every_boundary_is_fuzzed(boundaries: dict[str, Boundary]) -> None:
    assert sorted(boundaries) == sorted(FAST + SLOW)


@pytest.mark.parametrize("name", FAST)
@settings(settings.get_profile("fuzz"))
@given(data=st.data())
def test_boundary(boundaries: dict[str, Boundary], name: str, data: st.DataObject) -> None:
    boundary = boundaries[name]
    check(boundary, data.draw(boundary.strategy, label=name))


@pytest.mark.parametrize("name", SLOW)
@settings(settings.get_profile("fuzz"), max_examples=25)
@given(data=st.data())
def test_slow_boundary(boundaries: dict[str, Boundary], name: str, data: st.DataObject) -> None:
    boundary = boundaries[name]
    check(boundary, data.draw(boundary.strategy, label=name))
