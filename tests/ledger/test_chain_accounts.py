"""Dev accounts and key loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from flchain.errors import ConfigError
from flchain.ledger.accounts import (
    DEV_MNEMONIC,
    account_from_mnemonic,
    dev_accounts,
    load_account,
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
