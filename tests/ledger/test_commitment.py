"""The Python commitment and result hash agree with the contract's ``commitmentHash`` and
``hashResult`` views for arbitrary values (hypothesis)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flchain.ledger.contracts import Result
from flchain.protocol.commitment import commitment

if TYPE_CHECKING:
    from conftest import TaskKit

b32 = st.binary(min_size=32, max_size=32)
uint256 = st.integers(0, 2**256 - 1)
FAST = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FAST
@given(round_id=uint256, digest=b32, num_samples=uint256, salt=b32, who=st.integers(0, 19))
def test_commitment_matches_the_contract(
    kit: TaskKit, round_id: int, digest: bytes, num_samples: int, salt: bytes, who: int
) -> None:
    sender = kit.chain.accounts[who].address
    ours = commitment(
        chain_id=kit.chain.chain_id,
        task=kit.task.address,
        sender=sender,
        round_id=round_id,
        digest=digest,
        num_samples=num_samples,
        salt=salt,
    )
    assert kit.task.commitment_hash(sender, round_id, digest, num_samples, salt) == ours


@FAST
@given(
    digests=st.tuples(b32, b32, b32),
    cids=st.tuples(st.text(max_size=80), st.text(max_size=80)),
    total=uint256,
)
def test_result_hash_matches_the_contract(
    kit: TaskKit, digests: tuple[bytes, bytes, bytes], cids: tuple[str, str], total: int
) -> None:
    result = Result(digests[0], cids[0], digests[1], cids[1], digests[2], total)
    assert kit.task.hash_result(result) == result.hash()
