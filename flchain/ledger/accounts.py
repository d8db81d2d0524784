"""Local accounts: the deterministic dev accounts and keys loaded from hex, files or mnemonics.

The dev accounts come from the well-known test mnemonic that anvil and hardhat also use, so
the embedded chain, ``flchain devchain`` and anvil all fund the same addresses. Keys are derived
with eth-account's BIP-32 code along ``m/44'/60'/0'/0/<index>``; the seed and the parent node
are cached, so deriving hundreds of accounts costs one HMAC and one public key each.

:func:`sign_transaction` is how the chain signs: the same bytes as eth-account's
``LocalAccount.sign_transaction``, for the EIP-1559 transactions it sends, in a quarter of
the time (see its docstring).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import coincurve
import rlp
from eth_account import Account
from eth_account.datastructures import SignedTransaction
from eth_account.hdaccount import seed_from_mnemonic
from eth_account.hdaccount.deterministic import HDPath, derive_child_key, hmac_sha512
from eth_account.hdaccount.mnemonic import Mnemonic
from eth_account.signers.local import LocalAccount
from eth_utils import is_checksum_address, is_hex, keccak
from hexbytes import HexBytes

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


#: The fields of an EIP-1559 transaction :func:`sign_transaction` encodes itself ("from" is
#: checked against the signer and left out, as eth-account does; "to" is absent for a
#: contract creation).
_DYNAMIC_FEE_FIELDS = frozenset(
    {"from", "to", "value", "chainId", "gas", "nonce", "maxFeePerGas", "maxPriorityFeePerGas"}
    | {"data", "type"}
)
_DYNAMIC_FEE_TYPE = 2
_INT_FIELDS = ("chainId", "nonce", "maxPriorityFeePerGas", "maxFeePerGas", "gas", "value")


@lru_cache(maxsize=4096)
def _signing_key(private_key: bytes) -> coincurve.PrivateKey:
    """The parsed key (cached: eth-account parses it, derives its public key and checksums
    its address again on every signature, and eth-keys' coincurve backend parses it again
    with its public key for each signature it makes)."""
    return coincurve.PrivateKey(private_key)


def sign_transaction(account: LocalAccount, tx: Mapping[str, Any]) -> SignedTransaction:
    """``account.sign_transaction(tx)``: the same raw bytes, hash and signature.

    eth-account spends ~0.4 ms a transaction, ~80 % of it not signing: it parses the key
    again, then validates and normalises the dict through its formatter pipeline into an RLP
    object, twice. An EIP-1559 transaction whose fields are the plain ints and hex (or bytes)
    the chain builds is RLP-encoded here directly (EIP-1559: ``0x02 || rlp([chainId, nonce,
    maxPriorityFeePerGas, maxFeePerGas, gas, to, value, data, accessList])`` is signed, the
    signature's ``yParity, r, s`` appended), with the key parsed once per account. Anything
    else (a legacy or access-list transaction, an access list, a "from" not the signer's,
    a value eth-account would first convert or reject) goes to eth-account unchanged.
    """
    fields = _dynamic_fee_fields(account, tx)
    if fields is None:
        signed: SignedTransaction = account.sign_transaction(tx)  # type: ignore[arg-type]
        return signed
    unsigned = [*fields, []]  # the access list: always empty here
    digest = keccak(b"\x02" + rlp.encode(unsigned, sedes=rlp.sedes.raw))
    # libsecp256k1's RFC 6979 signature, as eth-keys' coincurve backend makes it: r, s, y-parity
    signature = _signing_key(bytes(account.key)).sign_recoverable(digest, hasher=None)
    r, s, v = (
        int.from_bytes(part, "big") for part in (signature[:32], signature[32:64], signature[64:])
    )
    raw = b"\x02" + rlp.encode([*unsigned, *map(_rlp_int, (v, r, s))], sedes=rlp.sedes.raw)
    return SignedTransaction(
        raw_transaction=HexBytes(raw), hash=HexBytes(keccak(raw)), r=r, s=s, v=v
    )


def _rlp_int(n: int) -> bytes:
    """``n`` as RLP encodes an integer: big-endian, no leading zero bytes (0 is empty)."""
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def _dynamic_fee_fields(account: LocalAccount, tx: Mapping[str, Any]) -> list[Any] | None:
    """The unsigned fields of ``tx`` in EIP-1559 order, or None where eth-account must judge
    (see :func:`sign_transaction`)."""
    if (
        not tx.keys() <= _DYNAMIC_FEE_FIELDS
        or tx.get("type", _DYNAMIC_FEE_TYPE) != _DYNAMIC_FEE_TYPE
        or tx.get("from", account.address) != account.address
    ):
        return None
    numbers: list[Any] = [tx.get(name) for name in _INT_FIELDS]
    if any(type(n) is not int or not 0 <= n < 2**256 for n in numbers):
        return None  # bool, hex text, missing, out of range: eth-account's to judge
    chain_id, nonce, tip, max_fee, gas, value = numbers
    to = _as_bytes(tx["to"]) if "to" in tx else b""  # absent: a contract creation
    data = _as_bytes(tx.get("data", b""))
    if to is None or len(to) != (20 if "to" in tx else 0) or data is None:
        return None
    if to and isinstance(tx["to"], str) and not is_checksum_address(tx["to"]):
        return None  # eth-account refuses a mixed-case address whose checksum is wrong
    return [*map(_rlp_int, (chain_id, nonce, tip, max_fee, gas)), to, _rlp_int(value), data]


def _as_bytes(value: Any) -> bytes | None:
    """``value`` (bytes or ``0x`` hex text of whole bytes) as bytes; None for anything else,
    which eth-account converts or refuses (e.g. an ENS name, odd-length hex)."""
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, str) and value.startswith("0x") and len(value) % 2 == 0:
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            return None
    return None
