"""Dev accounts and key loading."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_utils import to_checksum_address

from flchain.errors import ConfigError
from flchain.ledger import accounts as accounts_module
from flchain.ledger.accounts import (
    DEV_MNEMONIC,
    account_from_mnemonic,
    dev_accounts,
    load_account,
    sign_transaction,
)

# The addresses anvil and hardhat print for this mnemonic (independent published values).
KNOWN = {
    0: ("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
    1: ("0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"),
    19: ("0x8626f6940E2eb28930eFb4CeF49B2d1F2C9C1199",
         "0xdf57089febbacf7ba0bc227dafbffa9fc08a93fdc68e1e42411a14efcf23656e"),
}  # fmt: skip


@pytest.mark.parametrize("index", sorted(KNOWN))
def test_dev_accounts_match_anvil(index: int) -> None:
    address, key = KNOWN[index]
    account = dev_accounts(20)[index]
    assert account.address == address
    assert account.key.to_0x_hex() == key


def test_many_accounts_agree_with_eth_account_and_are_cached() -> None:
    accounts = dev_accounts(150)
    Account.enable_unaudited_hdwallet_features()
    reference = Account.from_mnemonic(DEV_MNEMONIC, account_path="m/44'/60'/0'/0/149")
    assert accounts[149].address == reference.address
    assert len({a.address for a in accounts}) == 150
    assert account_from_mnemonic(DEV_MNEMONIC, 149) is accounts[149]


def test_load_account_from_each_source(tmp_path: Path) -> None:
    address, key = KNOWN[1]
    assert load_account(key=key).address == address
    assert load_account(key=key[2:]).address == address
    assert load_account(mnemonic=DEV_MNEMONIC, index=1).address == address
    plain = tmp_path / "key.txt"
    plain.write_text(key + "\n")
    assert load_account(key_file=plain).address == address
    keystore = tmp_path / "keystore.json"
    keystore.write_text(json.dumps(Account.encrypt(key, "pw", iterations=2)))
    assert load_account(key_file=keystore, password="pw").address == address


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"key": KNOWN[0][1], "mnemonic": DEV_MNEMONIC}, "exactly one"),
        ({"key": "0x1234"}, "64 hex digits"),
        ({"key": "zz" * 32}, "64 hex digits"),
        ({"key": "00" * 32}, "invalid private key"),
        ({"mnemonic": "test " * 11 + "test"}, "not a valid BIP-39"),
        ({"mnemonic": DEV_MNEMONIC, "index": -1}, "index"),
        ({"key_file": "/nonexistent/key"}, "cannot read key file"),
    ],
)
def test_bad_sources_raise_config_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_account(**kwargs)


def test_keystore_needs_the_right_password(tmp_path: Path) -> None:
    keystore = tmp_path / "keystore.json"
    keystore.write_text(json.dumps(Account.encrypt(KNOWN[0][1], "pw", iterations=2)))
    with pytest.raises(ConfigError, match="password is needed"):
        load_account(key_file=keystore)
    with pytest.raises(ConfigError, match="cannot decrypt"):
        load_account(key_file=keystore, password="wrong")


def test_signing_uses_coincurve() -> None:
    # eth-keys silently falls back to pure Python (several times slower) without coincurve.
    from eth_keys.backends import CoinCurveECCBackend, get_backend

    assert isinstance(get_backend(), CoinCurveECCBackend)


def _random_dynamic_fee_tx(rng: random.Random, sender: str) -> dict[str, Any]:
    """An EIP-1559 transaction as :meth:`Chain._build` makes them, with random field sizes
    (zeros, one byte, 32 bytes) and calldata of random length (none, a selector, kilobytes)."""

    def number() -> int:
        return rng.choice([0, 1, rng.randrange(256), rng.randrange(2**64), rng.randrange(2**256)])

    tx: dict[str, Any] = {
        "value": number(),
        "chainId": rng.choice([1, 31337, 131277322940537]),
        "gas": rng.choice([21_000, 300_000, rng.randrange(2**40)]),
        "nonce": rng.choice([0, 1, rng.randrange(2**32)]),
        "maxFeePerGas": number(),
        "maxPriorityFeePerGas": number(),
        "data": "0x" + rng.randbytes(rng.choice([0, 4, 36, 68, rng.randrange(3000)])).hex(),
    }
    if rng.random() < 0.9:  # else a contract creation: no "to"
        tx["to"] = to_checksum_address(rng.randbytes(20))
    if rng.random() < 0.7:
        tx["from"] = sender
    if rng.random() < 0.3:
        tx["type"] = 2
    if rng.random() < 0.2:
        tx["data"] = bytes.fromhex(tx["data"][2:])
    return tx


def test_sign_transaction_gives_eth_accounts_bytes() -> None:
    """The chain's signer encodes EIP-1559 transactions itself: over 600 random ones of 30
    accounts, the same raw bytes, hash and v, r, s as eth-account, each by the fast path."""
    rng = random.Random(15)
    accounts = dev_accounts(30)
    for n in range(600):
        account = accounts[n % 30]
        tx = _random_dynamic_fee_tx(rng, account.address)
        assert accounts_module._dynamic_fee_fields(account, tx) is not None, tx
        assert sign_transaction(account, tx) == account.sign_transaction(tx), tx  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"gasPrice": 10**9, "maxFeePerGas": None, "maxPriorityFeePerGas": None},  # legacy
        {"type": 1, "gasPrice": 10**9, "maxFeePerGas": None, "maxPriorityFeePerGas": None},
        {"accessList": [{"address": KNOWN[0][0], "storageKeys": ["0x" + "00" * 32]}]},
        {"value": "0x10"},  # hex text: eth-account converts it
        {"to": KNOWN[0][0].lower()},  # not checksummed: eth-account refuses it
    ],
)
def test_sign_transaction_leaves_other_transactions_to_eth_account(change: dict) -> None:
    account = dev_accounts(2)[1]
    tx = {
        "to": KNOWN[0][0],
        "value": 5,
        "chainId": 31337,
        "gas": 50_000,
        "nonce": 3,
        "maxFeePerGas": 2 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "data": "0x1234",
    }
    tx = {k: v for k, v in {**tx, **change}.items() if v is not None}
    assert accounts_module._dynamic_fee_fields(account, tx) is None
    assert _outcome(sign_transaction, account, tx) == _outcome(
        Account.sign_transaction, tx, account.key
    )


def _outcome(sign: Any, *args: Any) -> Any:
    """What ``sign(*args)`` returns, or the type and text of what it raises."""
    try:
        return sign(*args)
    except Exception as exc:
        return type(exc), str(exc)


def test_sign_transaction_refuses_another_senders_from_as_eth_account_does() -> None:
    alice, bob = dev_accounts(2)
    tx = {
        "from": bob.address,
        "to": KNOWN[0][0],
        "value": 0,
        "chainId": 31337,
        "gas": 50_000,
        "nonce": 0,
        "maxFeePerGas": 2,
        "maxPriorityFeePerGas": 1,
        "data": "0x",
    }
    with pytest.raises(TypeError, match="from field must match"):
        sign_transaction(alice, tx)
