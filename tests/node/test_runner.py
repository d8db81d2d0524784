"""The run loop behind ``flchain node run``: phase deadlines and a clear timeout."""

from __future__ import annotations

import pytest
from flchain_node.federation import Federation
from flchain_node.runner import phase_end, run_node

from flchain.errors import ProtocolError
from flchain.ledger.contracts import Phase


def test_phase_end_is_the_last_block_of_each_phase(fed: Federation) -> None:
    task, chain = fed.deployment.task, fed.chain
    record = task.round_record(0)
    assert phase_end(task, task.phase()) == record.commit_end
    for node in fed.nodes[:2]:  # enough commits that the round goes on to reveals
        node.step()
    chain.mine(record.commit_end - chain.block_number + 1)
    assert task.phase() == Phase.REVEAL and phase_end(task, Phase.REVEAL) == record.reveal_end
    chain.mine(record.reveal_end - chain.block_number + 1)  # nobody revealed
    assert task.phase() == Phase.EXPIRABLE and phase_end(task, Phase.EXPIRABLE) is None
    # a task its owner has not started has no deadline to race (not the attest deadline of 0)
    assert phase_end(task, Phase.NOT_STARTED) is None


def test_a_stalled_chain_is_a_clear_timeout_after_the_node_did_its_part(
    fed: Federation,
) -> None:
    node, logs = fed.nodes[0], []
    with pytest.raises(ProtocolError, match="timed out after 1s"):
        run_node(node, poll=0.05, timeout=1, log=logs.append)  # nobody mines: no new blocks
    assert node.task.commitment_of(node.address).exists  # it committed before waiting
    assert any("commit" in line for line in logs)


def test_the_node_does_not_act_in_the_last_block_of_a_phase(fed: Federation) -> None:
    task, chain, node = fed.deployment.task, fed.chain, fed.nodes[0]
    end = task.round_record(0).commit_end
    chain.mine(end - chain.block_number)  # now at the commit phase's last block
    logs: list[str] = []
    with pytest.raises(ProtocolError, match="timed out"):
        run_node(node, poll=0.05, timeout=0.5, log=logs.append)
    assert not task.commitment_of(node.address).exists  # its commit would land too late
    assert logs == []  # it did not even try (and get refused): it waits for the next phase
