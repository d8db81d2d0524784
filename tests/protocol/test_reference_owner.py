"""``fltrust``'s reference update comes from the task's owner as the chain records it: a manifest
naming anyone else is refused when the task is created, when a node loads it and when a
committee member builds a round's inputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from flchain_node.federation import Federation
from flchain_node.owner import create_task
from support.fedkit import DEMO

from flchain.errors import ConfigError
from flchain.ledger.chain import Chain
from flchain.protocol.rounds import TaskView, load_manifest
from flchain.storage import LocalStore

FLTRUST = dataclasses.replace(DEMO, rule="fltrust", rule_params={})


def test_the_fltrust_federation_sends_the_reference_from_the_owner_account() -> None:
    torch.set_num_threads(1)
    fed = Federation(FLTRUST)
    try:
        task = fed.deployment.task
        owner = task.owner()
        assert fed.config.aggregation.reference_account == owner == fed.owner.address
        assert fed.role_of[owner] == "reference"  # the owner's own node, registered
        assert load_manifest(task, fed.store) == fed.manifest
        inputs = TaskView(task, fed.store).round_inputs(0)
        assert inputs.aggregator.reference == owner  # type: ignore[attr-defined]
    finally:
        fed.close()


def test_a_task_whose_reference_is_not_its_owner_is_refused_before_deploying(
    tmp_path: Path,
) -> None:
    chain = Chain.embedded(num_accounts=3)
    owner, other = chain.accounts[0], chain.accounts[1]
    config = FLTRUST.task_config(other.address)
    store = LocalStore(tmp_path / "store", durable=False)
    blocks = chain.block_number
    with pytest.raises(ConfigError, match="is not the task's owner"):
        create_task(chain, owner, config, store)
    assert chain.block_number == blocks  # nothing was deployed


def test_after_the_owner_changes_nodes_and_members_refuse_the_old_reference() -> None:
    torch.set_num_threads(1)
    fed = Federation(FLTRUST)
    try:
        task = fed.deployment.task
        manifest = fed.manifest
        view = TaskView(task, fed.store, manifest)  # handed in, as a node does
        assert view.round_inputs(0).aggregator.name == "fltrust"
        newcomer = fed.accounts[0].address
        # the contract is Ownable: its owner may hand the task on
        fed.chain.transact(task.contract.functions.transferOwnership(newcomer), fed.owner)
        assert task.owner() == newcomer
        with pytest.raises(ConfigError, match="is not the task's owner"):
            load_manifest(task, fed.store)
        with pytest.raises(ConfigError, match="is not the task's owner"):
            view.round_inputs(0)
    finally:
        fed.close()
