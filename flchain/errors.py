"""One exception tree for everything FLChain raises.

Every error the library raises on purpose derives from :class:`FLChainError`, so callers can
catch the whole family at once. Like web3.py, subclasses also inherit the matching builtin
(``ValueError``, ``ConnectionError``, ``TimeoutError``, ``LookupError``) so generic handlers
keep working. Subtrees: configuration, ledger (chain), storage (content store), learning
(update format and aggregation), protocol (the round as a participant node runs it).

Contract reverts are raised as subclasses of :class:`ContractRevert` named after the Solidity
custom error (``NotRegistered``, ``CommitPhaseClosed``, ...); they are generated from the
contract ABIs into :mod:`flchain.ledger.contract_errors` by ``scripts/compile_contracts.py`` and
decoded by :mod:`flchain.ledger.reverts`.
"""

from __future__ import annotations

from typing import ClassVar


class FLChainError(Exception):
    """Root of every error FLChain raises on purpose."""


# --- configuration ------------------------------------------------------------------------


class ConfigError(FLChainError, ValueError):
    """A configuration file or option is invalid; the message names the bad field."""


class ModelMismatch(ConfigError):
    """The model a node builds from the task's factory does not have the manifest's parameter
    layout (the message names the first differing parameter)."""


# --- ledger -------------------------------------------------------------------------------


class LedgerError(FLChainError):
    """Something went wrong talking to the chain."""


class RPCUnavailable(LedgerError, ConnectionError):
    """The JSON-RPC endpoint cannot be reached (after retries)."""


class BadRPCResponse(LedgerError):
    """The node answered, but not with a valid JSON-RPC response to our request."""


class ContractGone(LedgerError, LookupError):
    """A contract we were using has no code any more: a dev chain was reset (or restarted
    empty) under a running node. Retrying cannot help; the node must stop."""


class TransactionTimeout(LedgerError, TimeoutError):
    """A transaction was sent but no receipt arrived in time."""


class TransactionFailed(LedgerError):
    """A transaction reverted or could not be sent, with no decodable custom error."""


class ContractRevert(TransactionFailed):
    """A call reverted with a Solidity custom error.

    Subclasses are named after the Solidity error; ``error_args`` maps the error's parameter
    names to their decoded values, in declaration order.
    """

    #: e.g. ``"NotRegistered(address)"``; set on generated subclasses.
    solidity_signature: str = ""
    #: The 4-byte error selector; subclasses that set it are registered for decoding.
    selector: bytes = b""
    #: Parameter names and ABI types, in declaration order.
    arg_names: tuple[str, ...] = ()
    arg_types: tuple[str, ...] = ()

    _by_selector: ClassVar[dict[bytes, type[ContractRevert]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.selector:
            ContractRevert._by_selector[cls.selector] = cls

    @staticmethod
    def class_for_selector(selector: bytes) -> type[ContractRevert] | None:
        """The registered subclass for a 4-byte error selector, if any."""
        return ContractRevert._by_selector.get(bytes(selector))

    def __init__(self, message: str = "", **error_args: object) -> None:
        self.error_args: dict[str, object] = error_args
        super().__init__(message or self._default_message())

    def _default_message(self) -> str:
        inner = ", ".join(f"{k}={_short(v)}" for k, v in self.error_args.items())
        return f"{type(self).__name__}({inner})"


def _short(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return repr(value) if isinstance(value, str) else str(value)


# --- storage ------------------------------------------------------------------------------


class StorageError(FLChainError):
    """Something went wrong with the content store."""


class ContentNotFound(StorageError, LookupError):
    """No content with that CID is in the store."""


class ContentMismatch(StorageError):
    """Bytes read back do not hash to the CID they were stored under (corruption)."""


class ContentTooLarge(StorageError, ValueError):
    """Content exceeds the store's configured size limit."""


class InvalidCID(StorageError, ValueError):
    """A string or bytes value is not a valid CID of a supported kind."""


class InvalidCAR(StorageError, ValueError):
    """A CAR file is malformed, truncated, or its blocks do not match their CIDs."""


class StoreUnavailable(StorageError, ConnectionError):
    """The store (an IPFS daemon) cannot be reached or is an unsupported version."""


# --- learning -----------------------------------------------------------------------------


class LearningError(FLChainError):
    """Something went wrong in training, encoding or aggregation."""


class DataError(LearningError, ValueError):
    """A data set or partition request is invalid."""


class UpdateFormatError(LearningError, ValueError):
    """Encoded update bytes do not match the task's model spec (the message names what)."""


class AggregationError(LearningError):
    """An aggregation rule cannot produce a result (e.g. too few valid updates)."""


class PrivacyBudgetExhausted(LearningError):
    """Training one more round would take this participant past the task's target ε: the
    node sits the round out (no commitment, so nothing to slash)."""


# --- protocol -----------------------------------------------------------------------------


class ProtocolError(FLChainError, ValueError):
    """A participant node cannot carry out a protocol step."""
