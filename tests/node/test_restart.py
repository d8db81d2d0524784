"""A participant node killed mid-round resumes from its state file: it reveals what it
committed, never commits twice, and the round finalizes. Bad state files are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flchain_node import NodeState, ParticipantNode, StepReport
from flchain_node.federation import Federation
from support.fedkit import Driver, fresh_node

from flchain.errors import ProtocolError
from flchain.ledger.contracts import Committed, Phase, Revealed, RoundStatus
from flchain.protocol.commitment import commitment


def _restartable(fed: Federation, path: Path) -> ParticipantNode:
    """A new node object for participant 0, with only its state file to go on."""
    node = fresh_node(fed, 0, path.parent)
    assert node.state.path == path
    fed.nodes[0] = node
    return node


def _finish_round(fed: Federation) -> None:
    Driver(fed).finish_round(0, max_passes=20)


def _assert_round_used_the_saved_update(fed: Federation, path: Path) -> None:
    task, address = fed.deployment.task, fed.nodes[0].address
    saved = json.loads(path.read_text())["rounds"]["0"]
    assert [e.account for e in task.events(Committed, round=0)].count(address) == 1
    (revealed,) = [e for e in task.events(Revealed, round=0) if e.account == address]
    assert "0x" + revealed.digest.hex() == saved["digest"] and revealed.cid == saved["cid"]
    assert task.round_record(0).status == RoundStatus.FINALIZED
    report = fed.nodes[1].report_of(0)
    (mine,) = [o for o in report.outcomes if o.participant == address]
    assert mine.accepted and mine.reward > 0


def test_node_killed_after_commit_reveals_after_restart(fed: Federation, tmp_path: Path) -> None:
    path = tmp_path / "node0.json"
    node = _restartable(fed, path)
    assert node.step().actions == ["commit"]
    del node  # killed: nothing survives but the state file and the chain
    restarted = _restartable(fed, path)
    assert restarted.state.rounds[0].committed
    assert restarted.step().actions == []  # commit phase still open: nothing owed, no recommit
    _finish_round(fed)
    _assert_round_used_the_saved_update(fed, path)


def test_crash_after_saving_salt_before_commit_sends_the_commit_once(
    fed: Federation, tmp_path: Path
) -> None:
    path = tmp_path / "node0.json"
    node = _restartable(fed, path)
    # the exact crash point: update stored and salt saved, commit transaction never sent
    node._prepare_update(0, StepReport(0, Phase.COMMIT))
    assert fed.deployment.task.events(Committed, round=0) == []
    restarted = _restartable(fed, path)
    assert restarted.step().actions == ["commit"]
    assert restarted.step().actions == []
    saved = restarted.state.rounds[0]
    expected = commitment(
        chain_id=fed.chain.chain_id,
        task=fed.deployment.task.address,
        sender=restarted.address,
        round_id=0,
        digest=bytes.fromhex(saved.digest[2:]),
        num_samples=saved.num_samples,
        salt=bytes.fromhex(saved.salt[2:]),
    )
    (event,) = fed.deployment.task.events(Committed, round=0)
    assert event.commitment == expected
    assert fed.deployment.task.commitment_of(restarted.address).hash == expected[:24]  # bytes24
    _finish_round(fed)
    _assert_round_used_the_saved_update(fed, path)


def test_crash_after_commit_landed_before_state_saved_does_not_recommit(
    fed: Federation, tmp_path: Path
) -> None:
    path = tmp_path / "node0.json"
    _restartable(fed, path).step()
    raw = json.loads(path.read_text())
    raw["rounds"]["0"]["committed"] = False  # the save after the commit never happened
    path.write_text(json.dumps(raw))
    restarted = _restartable(fed, path)
    assert restarted.step().actions == []
    assert restarted.state.rounds[0].committed
    assert json.loads(path.read_text())["rounds"]["0"]["committed"] is True
    _finish_round(fed)
    _assert_round_used_the_saved_update(fed, path)


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"account": "0xA"}',
        '{"account": "0xA", "task": "0xB", "rounds": {"0": {"digest": "0x"}}}',
        '{"account": "0xA", "task": "0xB", "rounds": [3]}',  # a list, not a table
        '{"account": 1, "task": "0xB", "rounds": {}}',  # not an address
    ],
)
def test_corrupt_state_file_is_a_protocol_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(ProtocolError, match=r"node state file .* is corrupt"):
        NodeState.load(path, account="0xA", task="0xB")


def test_state_file_of_another_account_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    NodeState(path=path, account="0x" + "aa" * 20, task="0x" + "bb" * 20).save()
    loaded = NodeState.load(path, account="0x" + "AA" * 20, task="0x" + "BB" * 20)
    assert loaded.account == "0x" + "aa" * 20  # addresses compare case-insensitively
    with pytest.raises(ProtocolError, match="belongs to account"):
        NodeState.load(path, account="0x" + "cc" * 20, task="0x" + "bb" * 20)
    with pytest.raises(ProtocolError, match="belongs to account"):
        NodeState.load(path, account="0x" + "aa" * 20, task="0x" + "dd" * 20)
