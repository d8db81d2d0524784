"""FLToken: every external function, its success and its failure paths (OpenZeppelin errors)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from flchain.ledger import contract_errors as E
from flchain.ledger.contracts import FLToken

if TYPE_CHECKING:
    from conftest import TaskKit

ZERO = "0x" + "00" * 20


@pytest.fixture
def token(kit: TaskKit) -> FLToken:
    return kit.token


def test_metadata_and_deploy_helper(kit: TaskKit) -> None:
    fresh = FLToken.deploy_token(kit.chain, kit.outsider, "Other", "OTH")
    assert (fresh.name(), fresh.symbol(), fresh.decimals()) == ("Other", "OTH", 18)
    assert fresh.owner() == kit.outsider.address
    assert fresh.total_supply() == 0
    assert kit.token.owner() == kit.admin.address


def test_mint_is_owner_only_and_moves_supply(kit: TaskKit, token: FLToken) -> None:
    alice = kit.participants[0]
    supply, balance = token.total_supply(), token.balance_of(alice.address)
    receipt = token.mint(kit.admin, alice.address, 5)
    assert (token.total_supply(), token.balance_of(alice.address)) == (supply + 5, balance + 5)
    transfer = token.logs(receipt, "Transfer")[0]
    assert (transfer["from"], transfer["to"], transfer["value"]) == (ZERO, alice.address, 5)

    with pytest.raises(E.OwnableUnauthorizedAccount) as info:
        token.mint(alice, alice.address, 1)
    assert info.value.error_args == {"account": alice.address}
    with pytest.raises(E.ERC20InvalidReceiver) as info:
        token.mint(kit.admin, ZERO, 1)
    assert info.value.error_args == {"receiver": ZERO}


def test_transfer_and_its_failures(kit: TaskKit, token: FLToken) -> None:
    alice, bob = kit.participants[0], kit.participants[1]
    held = token.balance_of(alice.address)
    receipt = token.transfer(alice, bob.address, 7)
    assert token.balance_of(alice.address) == held - 7
    assert token.logs(receipt, "Transfer")[0]["value"] == 7

    with pytest.raises(E.ERC20InsufficientBalance) as info:
        token.transfer(alice, bob.address, held)
    assert info.value.error_args == {"sender": alice.address, "balance": held - 7, "needed": held}
    with pytest.raises(E.ERC20InvalidReceiver) as info:
        token.transfer(alice, ZERO, 1)
    assert info.value.error_args == {"receiver": ZERO}


def test_approve_transfer_from_and_their_failures(kit: TaskKit, token: FLToken) -> None:
    alice, bob, carol = kit.participants[:3]
    receipt = token.approve(alice, bob.address, 10)
    approval = token.logs(receipt, "Approval")[0]
    assert (approval["owner"], approval["spender"], approval["value"]) == (
        alice.address,
        bob.address,
        10,
    )
    assert token.allowance(alice.address, bob.address) == 10

    before = token.balance_of(carol.address)
    token.transfer_from(bob, alice.address, carol.address, 4)
    assert token.balance_of(carol.address) == before + 4
    assert token.allowance(alice.address, bob.address) == 6

    with pytest.raises(E.ERC20InsufficientAllowance) as info:
        token.transfer_from(bob, alice.address, carol.address, 7)
    assert info.value.error_args == {"spender": bob.address, "allowance": 6, "needed": 7}
    with pytest.raises(E.ERC20InvalidSpender) as info:
        token.approve(alice, ZERO, 1)
    assert info.value.error_args == {"spender": ZERO}


def test_permit_lets_a_relayer_set_an_allowance(kit: TaskKit, token: FLToken) -> None:
    alice, spender, relayer = kit.participants[0], kit.participants[1], kit.outsider
    deadline = kit.chain.w3.eth.get_block("latest")["timestamp"] + 3600
    signature = token.sign_permit(alice, spender.address, 50, deadline)
    token.permit(relayer, alice.address, spender.address, 50, deadline, signature)
    assert token.allowance(alice.address, spender.address) == 50
    assert token.nonces(alice.address) == 1

    # The same signature again: the nonce moved on, so it recovers to another signer.
    with pytest.raises(E.ERC2612InvalidSigner) as info:
        token.permit(relayer, alice.address, spender.address, 50, deadline, signature)
    assert info.value.error_args["owner"] == alice.address
    assert info.value.error_args["signer"] != alice.address

    expired = kit.chain.w3.eth.get_block("latest")["timestamp"] - 1
    late = token.sign_permit(alice, spender.address, 50, expired)
    with pytest.raises(E.ERC2612ExpiredSignature) as info:
        token.permit(relayer, alice.address, spender.address, 50, expired, late)
    assert info.value.error_args == {"deadline": expired}


def test_ownership_transfer_and_its_failures(kit: TaskKit) -> None:
    token = FLToken.deploy_token(kit.chain, kit.outsider)
    alice = kit.participants[0]
    with pytest.raises(E.OwnableUnauthorizedAccount) as info:
        token.transfer_ownership(alice, alice.address)
    assert info.value.error_args == {"account": alice.address}
    with pytest.raises(E.OwnableInvalidOwner) as info:
        token.transfer_ownership(kit.outsider, ZERO)
    assert info.value.error_args == {"owner": ZERO}
    token.transfer_ownership(kit.outsider, alice.address)
    assert token.owner() == alice.address
    token.mint(alice, alice.address, 1)  # the new owner mints
    with pytest.raises(E.OwnableUnauthorizedAccount):
        token.mint(kit.outsider, kit.outsider.address, 1)
