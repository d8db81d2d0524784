"""TrainingTask deployment: the constructor's checks, the config view, funding and the deploy
helpers (``deploy_stack``, ``register_all``, ``task_parameters`` from a TOML ``LedgerConfig``)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from flchain.config import AggregationConfig, LedgerConfig
from flchain.errors import ConfigError, ContractRevert
from flchain.learning.aggregation import RULES
from flchain.ledger import contract_errors as E
from flchain.ledger.chain import Chain
from flchain.ledger.contracts import SLASHER_ROLE, Funded, Phase, RoundStarted, TrainingTask
from flchain.ledger.deploy import deploy_stack, register_all, task_parameters

if TYPE_CHECKING:
    from conftest import TaskKit

ZERO = "0x" + "00" * 20


def deploy(kit: TaskKit, **overrides: Any) -> TrainingTask:
    config = kit.make_config(**overrides)
    return TrainingTask.deploy_task(
        kit.chain, kit.admin, config, kit.registry.address, kit.token.address
    )


BAD_CONFIGS = [
    ({"committee_size": 0, "quorum": 0}, E.InvalidCommittee, {"committeeSize": 0, "quorum": 0}),
    ({"committee_size": 33, "quorum": 20}, E.InvalidCommittee, {"committeeSize": 33, "quorum": 20}),
    ({"committee_size": 3, "quorum": 4}, E.InvalidCommittee, {"committeeSize": 3, "quorum": 4}),
    ({"committee_size": 4, "quorum": 2}, E.InvalidCommittee, {"committeeSize": 4, "quorum": 2}),
    (
        {"commit_blocks": 0},
        E.InvalidPhaseLengths,
        {"commitBlocks": 0, "revealBlocks": 20, "attestBlocks": 10},
    ),
    (
        {"attest_blocks": 0},
        E.InvalidPhaseLengths,
        {"commitBlocks": 20, "revealBlocks": 20, "attestBlocks": 0},
    ),
    (
        {"reveal_blocks": 21},
        E.UnbondingTooShort,
        # the suite registry: 61 = 20 + 20 + 10 (a round) + 1 + 10 (an attest phase)
        {"unbondingBlocks": 61, "required": 62},
    ),
    ({"min_reveals": 0}, E.InvalidParticipantLimits, {"maxParticipants": 8, "minReveals": 0}),
    ({"min_reveals": 9}, E.InvalidParticipantLimits, {"maxParticipants": 8, "minReveals": 9}),
    (
        {"max_participants": 2**24},
        E.InvalidParticipantLimits,
        {"maxParticipants": 2**24, "minReveals": 2},
    ),
    ({"rounds": 0}, E.InvalidRoundsOrSamples, {"rounds": 0, "maxSamples": 1_000_000}),
    ({"max_samples": 0}, E.InvalidRoundsOrSamples, {"rounds": 5, "maxSamples": 0}),
    (
        {"committee_fee": 3_334},
        E.CommitteeFeesExceedBudget,
        {"fees": 10_002, "roundBudget": 10_000},
    ),
]


@pytest.mark.parametrize(("overrides", "error", "args"), BAD_CONFIGS)
def test_constructor_refuses_bad_configs(
    kit: TaskKit, overrides: dict[str, Any], error: type[ContractRevert], args: dict[str, Any]
) -> None:
    with pytest.raises(error) as info:
        deploy(kit, **overrides)
    assert info.value.error_args == args


def test_constructor_accepts_the_limits(kit: TaskKit) -> None:
    task = deploy(kit, committee_size=32, quorum=17, max_participants=2**24 - 1, min_reveals=1)
    assert (task.config().committee_size, task.config().quorum) == (32, 17)
    # Unbonding of exactly a round + 1 + an attest phase, and fees that use the whole budget.
    deploy(kit, reveal_blocks=20, committee_fee=3_333)
    deploy(kit, commit_blocks=10, reveal_blocks=10, attest_blocks=20)  # 10 + 10 + 20 + 1 + 20


def test_constructor_refuses_zero_addresses(kit: TaskKit) -> None:
    config = kit.make_config().as_tuple()
    for registry, token, owner in [
        (ZERO, kit.token.address, kit.admin.address),
        (kit.registry.address, ZERO, kit.admin.address),
    ]:
        with pytest.raises(E.ZeroAddress):
            TrainingTask.deploy(kit.chain, kit.admin, config, registry, token, owner)
    with pytest.raises(E.OwnableInvalidOwner) as info:
        TrainingTask.deploy(
            kit.chain, kit.admin, config, kit.registry.address, kit.token.address, ZERO
        )
    assert info.value.error_args == {"owner": ZERO}


def test_fresh_task_state(kit: TaskKit) -> None:
    task = deploy(kit)
    assert task.config() == kit.make_config()
    assert task.registry() == kit.registry.address
    assert task.reward_token() == kit.token.address
    assert task.owner() == kit.admin.address
    assert (task.current_round(), task.phase(), task.finalized_rounds()) == (0, Phase.COMMIT, 0)
    assert task.model_digest() == kit.defaults["initial_model_digest"]
    assert task.model_cid() == kit.defaults["initial_model_cid"]
    (started,) = task.events(RoundStarted)
    record = task.round_record(0)
    assert started.commit_end == record.commit_end == started.block_number + 20
    assert started.reveal_end == record.reveal_end == record.commit_end + 20
    assert task.attest_deadline(0) == record.reveal_end + 10


def test_fund_adds_to_the_pool(kit: TaskKit) -> None:
    task, funder = deploy(kit), kit.outsider
    with pytest.raises(E.ZeroAmount):
        task.fund(funder, 0)
    with pytest.raises(E.ERC20InsufficientAllowance) as info:
        task.fund(funder, 10)
    assert info.value.error_args == {"spender": task.address, "allowance": 0, "needed": 10}
    kit.token.approve(funder, task.address, 30)
    task.fund(funder, 10)
    task.fund(funder, 20)
    assert task.pool() == 30
    assert kit.token.balance_of(task.address) == 30
    assert [(e.funder, e.amount, e.pool) for e in task.events(Funded)] == [
        (funder.address, 10, 10),
        (funder.address, 20, 30),
    ]


def test_task_config_from_ledger_config() -> None:
    ledger = LedgerConfig(rounds=3, committee_size=5, quorum=3, max_participants=40)
    digests = {
        "manifest_digest": b"\x11" * 32,
        "model_spec_digest": b"\x22" * 32,
        "initial_model_digest": b"\x33" * 32,
    }
    config = task_parameters(
        ledger,
        manifest_cid="bafym",
        initial_model_cid="bafyi",
        aggregation=AggregationConfig("trimmed_mean", {"beta": 0.2}),
        **digests,
    )
    assert (config.rounds, config.committee_size, config.quorum) == (3, 5, 3)
    assert (config.max_participants, config.min_reveals) == (40, 2)
    assert config.round_budget == ledger.round_budget
    assert config.non_reveal_slash == ledger.non_reveal_slash
    assert config.aggregation_rule == RULES["trimmed_mean"].rule_id
    other = task_parameters(
        ledger,
        manifest_cid="bafym",
        initial_model_cid="bafyi",
        aggregation=AggregationConfig("trimmed_mean", {"beta": 0.3}),
        **digests,
    )
    assert other.rule_params != config.rule_params  # the parameters are bound on-chain

    with pytest.raises(ConfigError, match="manifest_digest must be 32 bytes"):
        task_parameters(
            ledger,
            manifest_cid="bafym",
            initial_model_cid="bafyi",
            **{**digests, "manifest_digest": b"\x11"},
        )
    with pytest.raises(ConfigError, match="initial_model_cid"):
        task_parameters(ledger, manifest_cid="bafym", initial_model_cid="", **digests)
    with pytest.raises(ConfigError, match="no on-chain id"):
        task_parameters(
            ledger,
            manifest_cid="m",
            initial_model_cid="i",
            aggregation=AggregationConfig("mystery"),
            **digests,
        )


def test_deploy_stack_wires_funds_and_registers(kit: TaskKit) -> None:
    chain = Chain.embedded(8)
    admin, people = chain.accounts[0], chain.accounts[1:4]
    config = kit.make_config(rounds=2)
    stack = deploy_stack(
        chain,
        admin,
        config=config,
        min_stake=50,
        allowlist=True,
        mint_to=[p.address for p in people],
    )
    assert stack.chain is chain
    assert set(stack.addresses()) == {"token", "registry", "task"}
    assert stack.registry.unbonding_blocks() == config.min_unbonding_blocks
    assert config.min_unbonding_blocks == config.round_blocks + 1 + config.attest_blocks
    assert stack.registry.has_role(SLASHER_ROLE, stack.task.address)
    assert stack.task.pool() == 2 * config.round_budget
    assert stack.token.balance_of(people[0].address) == 500

    register_all(stack, people)  # the allow-list gate is on: admits them first
    assert all(stack.registry.is_active(p.address) for p in people)
    assert stack.registry.stake_of(people[1].address) == 50

    with pytest.raises(ConfigError):
        deploy_stack(chain, admin, config=config, min_stake=0)
    # The task constructor's own checks surface as the custom error.
    bad = replace(config, quorum=1, committee_size=3)
    with pytest.raises(E.InvalidCommittee):
        deploy_stack(chain, admin, config=bad, min_stake=50)
