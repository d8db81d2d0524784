"""ParticipantRegistry: every external function, success and every failure path."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from flchain.ledger import contract_errors as E
from flchain.ledger.contracts import (
    DEFAULT_ADMIN_ROLE,
    SLASHER_ROLE,
    VERIFIER_ROLE,
    Participant,
    ParticipantRegistry,
    Registered,
    Slashed,
)

if TYPE_CHECKING:
    from conftest import TaskKit

ZERO = "0x" + "00" * 20
STAKE = 1_000  # the suite's MIN_STAKE


def fresh_registry(kit: TaskKit, *, allowlist: bool = False) -> ParticipantRegistry:
    return ParticipantRegistry.deploy_registry(
        kit.chain,
        kit.admin,
        kit.token.address,
        min_stake=STAKE,
        unbonding_blocks=5,
        allowlist=allowlist,
    )


def test_settings_and_roles(kit: TaskKit) -> None:
    registry = fresh_registry(kit, allowlist=True)
    assert registry.stake_token() == kit.token.address
    assert (registry.min_stake(), registry.unbonding_blocks()) == (STAKE, 5)
    assert registry.allowlist_enabled()
    assert registry.has_role(DEFAULT_ADMIN_ROLE, kit.admin.address)
    assert registry.has_role(VERIFIER_ROLE, kit.admin.address)
    assert not registry.has_role(SLASHER_ROLE, kit.admin.address)
    assert kit.registry.has_role(SLASHER_ROLE, kit.task.address)


def test_constructor_refuses_zero_addresses(kit: TaskKit) -> None:
    with pytest.raises(E.ZeroAddress):
        ParticipantRegistry.deploy(kit.chain, kit.admin, ZERO, STAKE, 5, False, kit.admin.address)
    with pytest.raises(E.ZeroAddress):
        ParticipantRegistry.deploy(kit.chain, kit.admin, kit.token.address, STAKE, 5, False, ZERO)


def test_register_pulls_the_stake(kit: TaskKit) -> None:
    registry, account = fresh_registry(kit), kit.outsider
    held = kit.token.balance_of(account.address)
    kit.token.approve(account, registry.address, STAKE + 1)
    receipt = registry.register(account, STAKE + 1)
    assert registry.participant(account.address) == Participant(STAKE + 1, 0, True, False)
    assert registry.is_active(account.address)
    assert registry.stake_of(account.address) == STAKE + 1
    assert kit.token.balance_of(account.address) == held - STAKE - 1
    assert kit.token.balance_of(registry.address) == STAKE + 1
    event = registry.events(Registered, account=account.address)
    assert [(e.account, e.stake) for e in event] == [(account.address, STAKE + 1)]
    assert event[0].block_number == receipt["blockNumber"]

    with pytest.raises(E.AlreadyRegistered) as info:
        registry.register(account, STAKE)
    assert info.value.error_args == {"account": account.address}


def test_a_later_register_carries_the_gas_of_the_first(kit: TaskKit) -> None:
    """Two registers estimated in one pending block may land in either order; whichever lands
    first pays the empty registry's balance write, so each must carry the first one's gas."""
    registry = fresh_registry(kit)
    first, later = kit.outsider, kit.participants[0]
    for account in (first, later):
        kit.token.approve(account, registry.address, STAKE)
    calldata = registry.functions["register"](STAKE)._encode_transaction_data()
    probe = {"from": first.address, "to": registry.address, "data": calldata}
    needed = kit.chain.w3.eth.estimate_gas(probe)  # type: ignore[arg-type]
    registry.register(first, STAKE)
    receipt = registry.register(later, STAKE)
    limit = kit.chain.w3.eth.get_transaction(receipt["transactionHash"])["gas"]
    assert limit >= needed


def test_register_failures(kit: TaskKit) -> None:
    registry, account = fresh_registry(kit), kit.outsider
    with pytest.raises(E.StakeBelowMinimum) as info:
        registry.register(account, STAKE - 1)
    assert info.value.error_args == {"amount": STAKE - 1, "minimum": STAKE}
    with pytest.raises(E.ERC20InsufficientAllowance) as info:
        registry.register(account, STAKE)
    assert info.value.error_args == {"spender": registry.address, "allowance": 0, "needed": STAKE}
    # A stake beyond uint128 cannot be packed into the participant's slot.
    huge = 2**128
    kit.token.mint(kit.admin, account.address, huge)
    kit.token.approve(account, registry.address, huge)
    with pytest.raises(E.SafeCastOverflowedUintDowncast) as info:
        registry.register(account, huge)
    assert info.value.error_args == {"bits": 128, "value": huge}


def test_zero_min_stake_still_refuses_a_zero_stake(kit: TaskKit) -> None:
    registry = ParticipantRegistry.deploy_registry(
        kit.chain, kit.admin, kit.token.address, min_stake=0, unbonding_blocks=5
    )
    with pytest.raises(E.StakeBelowMinimum) as info:
        registry.register(kit.outsider, 0)
    assert info.value.error_args == {"amount": 0, "minimum": 0}


def test_allowlist_gate(kit: TaskKit) -> None:
    registry, account, admin = fresh_registry(kit, allowlist=True), kit.outsider, kit.admin
    kit.token.approve(account, registry.address, STAKE)
    with pytest.raises(E.NotAllowed) as info:
        registry.register(account, STAKE)
    assert info.value.error_args == {"account": account.address}

    with pytest.raises(E.AccessControlUnauthorizedAccount) as info:
        registry.set_allowed(account, account.address, True)
    assert info.value.error_args == {"account": account.address, "neededRole": VERIFIER_ROLE}
    with pytest.raises(E.ZeroAddress):
        registry.set_allowed(admin, ZERO, True)

    receipt = registry.set_allowed(admin, account.address, True)
    event = registry.logs(receipt, "AllowedSet")[0]
    assert (event["account"], event["allowed"]) == (account.address, True)
    registry.register(account, STAKE)
    assert registry.is_active(account.address)
    # Revoking the admission deactivates at once (tasks check isActive at every commit).
    registry.set_allowed(admin, account.address, False)
    assert not registry.is_active(account.address)


def test_add_stake_and_its_failures(kit: TaskKit) -> None:
    registry, account = fresh_registry(kit), kit.outsider
    with pytest.raises(E.NotRegistered) as info:
        registry.add_stake(account, 1)
    assert info.value.error_args == {"account": account.address}
    kit.token.approve(account, registry.address, STAKE + 5)
    registry.register(account, STAKE)
    with pytest.raises(E.ZeroAmount):
        registry.add_stake(account, 0)
    receipt = registry.add_stake(account, 5)
    event = registry.logs(receipt, "StakeAdded")[0]
    assert (event["amount"], event["stake"]) == (5, STAKE + 5)
    assert registry.stake_of(account.address) == STAKE + 5
    registry.request_withdrawal(account)
    with pytest.raises(E.AlreadyExiting) as info:
        registry.add_stake(account, 1)
    assert info.value.error_args == {"account": account.address}


def test_withdrawal_waits_for_unbonding(kit: TaskKit) -> None:
    registry, account = fresh_registry(kit), kit.outsider
    with pytest.raises(E.NotRegistered):
        registry.request_withdrawal(account)
    with pytest.raises(E.NotRegistered):
        registry.withdraw(account)
    kit.token.approve(account, registry.address, STAKE)
    registry.register(account, STAKE)
    with pytest.raises(E.NotExiting) as info:
        registry.withdraw(account)
    assert info.value.error_args == {"account": account.address}

    receipt = registry.request_withdrawal(account)
    unlock = receipt["blockNumber"] + 5
    event = registry.logs(receipt, "WithdrawalRequested")[0]
    assert event["unlockBlock"] == unlock
    assert not registry.is_active(account.address)
    with pytest.raises(E.AlreadyExiting):
        registry.request_withdrawal(account)
    with pytest.raises(E.StillBonded) as info:
        registry.withdraw(account)
    assert info.value.error_args == {"account": account.address, "unlockBlock": unlock}

    kit.mine_to(unlock - 1)  # the withdrawal lands in block `unlock`
    held = kit.token.balance_of(account.address)
    receipt = registry.withdraw(account)
    assert kit.token.balance_of(account.address) == held + STAKE
    assert registry.participant(account.address) == Participant(0, 0, False, False)
    event = registry.logs(receipt, "Withdrawn")[0]
    assert event["amount"] == STAKE
    # Registering again is allowed after leaving.
    kit.token.approve(account, registry.address, STAKE)
    registry.register(account, STAKE)
    assert registry.is_active(account.address)


def test_withdraw_keeps_the_verifier_admission(kit: TaskKit) -> None:
    registry, account = fresh_registry(kit, allowlist=True), kit.outsider
    registry.set_allowed(kit.admin, account.address, True)
    kit.token.approve(account, registry.address, 2 * STAKE)
    registry.register(account, STAKE)
    registry.request_withdrawal(account)
    kit.chain.mine(5)
    registry.withdraw(account)
    assert registry.participant(account.address).allowed
    registry.register(account, STAKE)  # no second admission needed


def test_slash_is_for_slashers_and_capped_at_the_stake(kit: TaskKit) -> None:
    registry, account, slasher = fresh_registry(kit), kit.outsider, kit.participants[0]
    kit.token.approve(account, registry.address, STAKE)
    registry.register(account, STAKE)
    with pytest.raises(E.AccessControlUnauthorizedAccount) as info:
        registry.slash(slasher, account.address, 1)
    assert info.value.error_args == {"account": slasher.address, "neededRole": SLASHER_ROLE}

    registry.grant_role(kit.admin, SLASHER_ROLE, slasher.address)
    held = kit.token.balance_of(slasher.address)
    registry.slash(slasher, account.address, 300)
    assert registry.stake_of(account.address) == STAKE - 300
    assert kit.token.balance_of(slasher.address) == held + 300
    # Below the minimum stake the participant is no longer active.
    assert not registry.is_active(account.address)
    registry.slash(slasher, account.address, 10 * STAKE)  # only what is left
    assert registry.stake_of(account.address) == 0
    assert kit.token.balance_of(slasher.address) == held + STAKE
    registry.slash(slasher, account.address, 5)  # nothing left: slashes 0, no transfer
    events = registry.events(Slashed, account=account.address)
    assert [(e.requested, e.amount) for e in events] == [(300, 300), (10 * STAKE, 700), (5, 0)]
    assert {e.slasher for e in events} == {slasher.address}

    registry.revoke_role(kit.admin, SLASHER_ROLE, slasher.address)
    with pytest.raises(E.AccessControlUnauthorizedAccount):
        registry.slash(slasher, account.address, 1)


def test_role_administration_failures(kit: TaskKit) -> None:
    registry, outsider = fresh_registry(kit), kit.outsider
    with pytest.raises(E.AccessControlUnauthorizedAccount) as info:
        registry.grant_role(outsider, SLASHER_ROLE, outsider.address)
    assert info.value.error_args == {"account": outsider.address, "neededRole": DEFAULT_ADMIN_ROLE}
    fn = registry.contract.functions.renounceRole(VERIFIER_ROLE, kit.admin.address)
    with pytest.raises(E.AccessControlBadConfirmation):
        kit.chain.transact(fn, outsider)
    kit.chain.transact(fn, kit.admin)
    assert not registry.has_role(VERIFIER_ROLE, kit.admin.address)


def test_active_bits_agree_with_is_active_across_words(kit: TaskKit) -> None:
    """``activeBits`` (what a task's ``stepViews`` reads) is ``isActive`` of each account, bit
    ``i % 256`` of word ``i / 256``: checked on both sides of a word boundary, for a registered,
    an exiting and never-registered accounts."""
    registry, admin = fresh_registry(kit), kit.admin
    staying, leaving = kit.outsider, kit.participants[0]
    for account in (staying, leaving):
        kit.token.approve(account, registry.address, STAKE)
        registry.register(account, STAKE)
    registry.request_withdrawal(leaving)
    strangers = [f"0x{i:040x}" for i in range(1, 300)]
    accounts = [*strangers[:255], staying.address, leaving.address, staying.address]
    accounts += strangers[255:]
    answers = registry.are_active(accounts)
    assert answers == [registry.is_active(a) for a in accounts]
    assert [i for i, active in enumerate(answers) if active] == [255, 257]
    assert registry.are_active([]) == [] and admin.address not in accounts
