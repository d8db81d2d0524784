"""Deploy a whole FLChain stack — token, registry, task — wired and funded, in one call.

>>> chain = Chain.embedded()                                   # doctest: +SKIP
>>> stack = deploy_stack(chain, chain.accounts[0], config=cfg, min_stake=100,
...                      mint_to=[a.address for a in chain.accounts[1:6]])  # doctest: +SKIP
>>> register_all(stack, chain.accounts[1:6])                   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from flchain.config import AggregationConfig, LedgerConfig
from flchain.errors import ConfigError
from flchain.ledger.chain import Chain, TxRequest
from flchain.ledger.contracts import (
    APPROVE_GAS,
    MINT_GAS,
    REGISTER_GAS,
    SLASHER_ROLE,
    ZERO_BYTES32,
    FLToken,
    ParticipantRegistry,
    TaskParameters,
    TrainingTask,
)
from flchain.types import to_address


@dataclass(frozen=True)
class Deployment:
    """The three contracts of one task, and the admin that deployed them."""

    token: FLToken
    registry: ParticipantRegistry
    task: TrainingTask
    admin: LocalAccount

    @property
    def chain(self) -> Chain:
        return self.task.chain

    def addresses(self) -> dict[str, str]:
        """``{"token": ..., "registry": ..., "task": ...}`` for config files and logs."""
        return {
            "token": self.token.address,
            "registry": self.registry.address,
            "task": self.task.address,
        }


def task_parameters(
    ledger: LedgerConfig,
    *,
    manifest_cid: str,
    manifest_digest: bytes,
    model_spec_digest: bytes,
    initial_model_cid: str,
    initial_model_digest: bytes,
    aggregation: AggregationConfig | None = None,
) -> TaskParameters:
    """The contract's :class:`TaskParameters` from a TOML ``[ledger]`` section and the digests and
    CIDs of the manifest and initial model (known only once they are stored).

    ``aggregation`` sets the rule id (the rule's ``rule_id`` in :data:`RULES`) and
    ``rule_params`` (sha-256 of the rule's canonical JSON parameters); without it both are zero.
    """
    for name, digest in (
        ("manifest_digest", manifest_digest),
        ("model_spec_digest", model_spec_digest),
        ("initial_model_digest", initial_model_digest),
    ):
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise ConfigError(f"{name} must be 32 bytes, got {digest!r}")
    for name, cid in (("manifest_cid", manifest_cid), ("initial_model_cid", initial_model_cid)):
        if not cid:
            raise ConfigError(f"{name} must be a non-empty CID")
    rule_id, rule_params = 0, ZERO_BYTES32
    if aggregation is not None:
        # imported here: the rules pull in torch, which chain-only users (the CLI's start-up,
        # ledger scripts) should not pay for
        from flchain.learning.aggregation import RULES

        if aggregation.rule not in RULES:
            raise ConfigError(
                f"aggregation.rule {aggregation.rule!r} has no on-chain id; "
                f"known: {', '.join(RULES)}"
            )
        rule_id = RULES[aggregation.rule].rule_id
        canonical = json.dumps(dict(aggregation.params), sort_keys=True, separators=(",", ":"))
        rule_params = hashlib.sha256(canonical.encode()).digest()
    return TaskParameters(
        manifest_cid=manifest_cid,
        manifest_digest=manifest_digest,
        model_spec_digest=model_spec_digest,
        aggregation_rule=rule_id,
        rule_params=rule_params,
        committee_size=ledger.committee_size,
        quorum=ledger.quorum,
        commit_blocks=ledger.commit_blocks,
        reveal_blocks=ledger.reveal_blocks,
        attest_blocks=ledger.attest_blocks,
        max_participants=ledger.max_participants,
        min_reveals=ledger.min_reveals,
        rounds=ledger.rounds,
        round_budget=ledger.round_budget,
        committee_fee=ledger.committee_fee,
        non_reveal_slash=ledger.non_reveal_slash,
        committee_slash=ledger.committee_slash,
        max_samples=ledger.max_samples,
        initial_model_cid=initial_model_cid,
        initial_model_digest=initial_model_digest,
    )


def deploy_stack(
    chain: Chain,
    admin: LocalAccount,
    *,
    config: TaskParameters,
    min_stake: int,
    unbonding_blocks: int | None = None,
    allowlist: bool = False,
    mint_to: Iterable[str] = (),
    mint_amount: int | None = None,
    fund: int | None = None,
    start: bool = True,
) -> Deployment:
    """Deploy FLToken, ParticipantRegistry and TrainingTask, all administered by ``admin``.

    Grants the task ``SLASHER_ROLE``, mints ``fund`` tokens (default: every round's budget) to
    ``admin`` and funds the task's pool with them, mints ``mint_amount`` (default ten minimum
    stakes) to each address of ``mint_to``, and then starts the task, so round 0's commit phase
    is all ahead (``start=False`` leaves that to :meth:`TrainingTask.start`).
    ``unbonding_blocks`` defaults to the shortest the task accepts
    (:attr:`TaskParameters.min_unbonding_blocks`).
    """
    if min_stake <= 0:
        raise ConfigError(f"min_stake must be positive, got {min_stake}")
    unbonding = config.min_unbonding_blocks if unbonding_blocks is None else unbonding_blocks
    funding = config.round_budget * config.rounds if fund is None else fund
    token = FLToken.deploy_token(chain, admin)
    registry = ParticipantRegistry.deploy_registry(
        chain,
        admin,
        token.address,
        min_stake=min_stake,
        unbonding_blocks=unbonding,
        allowlist=allowlist,
    )
    task = TrainingTask.deploy_task(
        chain, admin, config, registry.address, token.address, start=False
    )
    _grant_and_fund(token, registry, task, admin, funding)
    each = 10 * min_stake if mint_amount is None else mint_amount
    mint, gas = token.functions["mint"], MINT_GAS if chain.prague_gas else None
    chain.transact_all([TxRequest(mint(to_address(a), each), admin, gas) for a in mint_to])
    if start:
        task.start(admin)
    return Deployment(token, registry, task, admin)


def deploy_another_task(
    stack: Deployment, config: TaskParameters, *, fund: int | None = None
) -> TrainingTask:
    """A further task on ``stack``'s registry and token, wired and funded as
    :func:`deploy_stack` wires its own (``SLASHER_ROLE``; ``fund`` tokens, default every
    round's budget, minted to the admin and put in its pool) and started. Deployed after the
    participants registered, its round 0's commit phase is all ahead of them."""
    admin = stack.admin
    task = TrainingTask.deploy_task(
        stack.chain, admin, config, stack.registry.address, stack.token.address
    )
    funding = config.round_budget * config.rounds if fund is None else fund
    _grant_and_fund(stack.token, stack.registry, task, admin, funding)
    return task


def _grant_and_fund(
    token: FLToken,
    registry: ParticipantRegistry,
    task: TrainingTask,
    admin: LocalAccount,
    funding: int,
) -> None:
    registry.grant_role(admin, SLASHER_ROLE, task.address)
    if funding:
        token.mint(admin, admin.address, funding)
        token.approve(admin, task.address, funding)
        task.fund(admin, funding)


def register_all(
    deployment: Deployment, accounts: Sequence[LocalAccount], stake: int | None = None
) -> None:
    """Approve and register each account with ``stake`` (default: the registry's minimum);
    admits them first when the allow-list gate is on."""
    registry, token, chain = deployment.registry, deployment.token, deployment.chain
    amount = registry.min_stake() if stake is None else stake
    # Three batches, each sent once the one before it is mined (and, on chains without fixed
    # limits, estimated then): a registration needs its account admitted and its approval in
    # place.
    if registry.allowlist_enabled():
        allow = registry.functions["setAllowed"]
        chain.transact_all([TxRequest(allow(a.address, True), deployment.admin) for a in accounts])
    # FLChain's own token and registry: known ceilings, no estimate per account (Prague gas)
    fixed = chain.prague_gas
    approve = token.functions["approve"](registry.address, amount)
    chain.transact_all([TxRequest(approve, a, APPROVE_GAS if fixed else None) for a in accounts])
    register = registry.functions["register"](amount)
    chain.transact_all([TxRequest(register, a, REGISTER_GAS if fixed else None) for a in accounts])
