"""Local accounts: the deterministic dev accounts and keys loaded from hex, files or mnemonics.

The dev accounts come from the well-known test mnemonic that anvil and hardhat also use, so
the embedded chain, ``flchain devchain`` and anvil all fund the same addresses. Keys are derived
with eth-account's BIP-32 code along ``m/44'/60'/0'/0/<index>``; the seed and the parent node
are cached, so deriving hundreds of accounts costs one HMAC and one public key each.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from eth_account import Account
from eth_account.hdaccount import seed_from_mnemonic
from eth_account.hdaccount.deterministic import HDPath, derive_child_key, hmac_sha512
from eth_account.hdaccount.mnemonic import Mnemonic
from eth_account.signers.local import LocalAccount
from eth_utils import is_hex

from flchain.errors import ConfigError

#: The mnemonic anvil, hardhat and ganache pre-fund; never use it for real money.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
#: The BIP-44 Ethereum account branch; account ``i`` is ``<DEV_HD_PATH>/i``.
DEV_HD_PATH = "m/44'/60'/0'/0"


@lru_cache(maxsize=8)
def _branch_node(mnemonic: str, hd_path: str) -> tuple[bytes, bytes]:
    """Private key and chain code of the node above the account indices (cached)."""
    if not Mnemonic().is_mnemonic_valid(mnemonic):
        raise ConfigError("mnemonic is not a valid BIP-39 English phrase (checksum or words)")
    try:
        path = HDPath(hd_path)
    except Exception as exc:  # eth-account raises its own ValidationError
        raise ConfigError(f"invalid HD path {hd_path!r}: {exc}") from exc
    master = hmac_sha512(b"Bitcoin seed", seed_from_mnemonic(mnemonic, ""))
    key, chain_code = master[:32], master[32:]
    for node in path._path:
        key, chain_code = derive_child_key(key, chain_code, node)
    return key, chain_code


@lru_cache(maxsize=4096)
def account_from_mnemonic(
    mnemonic: str = DEV_MNEMONIC, index: int = 0, hd_path: str = DEV_HD_PATH
) -> LocalAccount:
    """The account at ``<hd_path>/<index>`` of ``mnemonic`` (non-hardened index, cached)."""
    if not 0 <= index < 2**31:
        raise ConfigError(f"account index must be in [0, 2**31), got {index}")
    parent_key, parent_chain_code = _branch_node(mnemonic, hd_path)
    key, _ = derive_child_key(parent_key, parent_chain_code, HDPath(f"m/{index}")._path[0])
    account: LocalAccount = Account.from_key(key)
    return account


def dev_accounts(count: int, mnemonic: str = DEV_MNEMONIC) -> list[LocalAccount]:
    """The first ``count`` accounts of ``mnemonic``: the ones every dev chain pre-funds."""
    if count < 0:
        raise ConfigError(f"account count must be >= 0, got {count}")
    return [account_from_mnemonic(mnemonic, i) for i in range(count)]


def account_from_key(private_key: str | bytes) -> LocalAccount:
    """An account from a 32-byte private key, as bytes or hex (``0x`` optional)."""
    if isinstance(private_key, str):
        text = private_key.strip()
        if not is_hex(text) or len(text.removeprefix("0x")) != 64:
            raise ConfigError("private key must be 32 bytes of hex (64 hex digits)")
        private_key = bytes.fromhex(text.removeprefix("0x"))
    if len(private_key) != 32:
        raise ConfigError(f"private key must be 32 bytes, got {len(private_key)}")
    try:
        account: LocalAccount = Account.from_key(private_key)
        return account
    except Exception as exc:  # zero or >= curve order
        raise ConfigError(f"invalid private key: {exc}") from exc


def account_from_file(path: str | Path, password: str | None = None) -> LocalAccount:
    """An account from a key file: a hex private key, or an encrypted keystore JSON (password)."""
    path = Path(path)
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from exc
    if not text.startswith("{"):
        return account_from_key(text)
    if password is None:
        raise ConfigError(f"key file {path} is an encrypted keystore: a password is needed")
    try:
        decrypted: LocalAccount = Account.from_key(Account.decrypt(json.loads(text), password))
        return decrypted
    except ValueError as exc:
        raise ConfigError(f"cannot decrypt keystore {path}: {exc}") from exc


def load_account(
    *,
    key: str | bytes | None = None,
    key_file: str | Path | None = None,
    password: str | None = None,
    mnemonic: str | None = None,
    index: int = 0,
) -> LocalAccount:
    """An account from exactly one source: a hex ``key``, a ``key_file``, or a ``mnemonic``."""
    sources = {"key": key, "key_file": key_file, "mnemonic": mnemonic}
    given = [name for name, value in sources.items() if value]
    if len(given) != 1:
        raise ConfigError(f"give exactly one of key, key_file, mnemonic (got {given or 'none'})")
    if key is not None:
        return account_from_key(key)
    if key_file is not None:
        return account_from_file(key_file, password)
    assert mnemonic is not None
    return account_from_mnemonic(mnemonic, index)
