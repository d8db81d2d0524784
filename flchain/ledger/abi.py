"""The hand-written half of the ABI mirror: the bases of the generated struct and event classes
in :mod:`flchain.ledger.contract_types`, and the behaviour a few of them add to their fields.

``scripts/compile_contracts.py`` writes one frozen dataclass per Solidity struct and event from
the contract ABIs; they inherit :class:`Struct` or :class:`Event` from here, which turn the
values web3 hands out (``HexBytes``, plain ``int`` for an enum, nested tuples for a nested
struct) into the declared field types. A generated struct named ``X`` derives from ``XMethods``
here instead of :class:`Struct` when it has behaviour beyond its fields (the generator's
``METHODS`` table lists them).
"""

from __future__ import annotations

import enum
import keyword
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, fields
from typing import Any, ClassVar, Self

from eth_abi import encode
from eth_utils import keccak
from web3.types import EventData


def field_name(solidity_name: str) -> str:
    """The Python field of a Solidity parameter: ``resultHash`` -> ``result_hash``, and a
    trailing underscore on a Python keyword (``from`` -> ``from_``)."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", solidity_name).lower()
    return f"{name}_" if keyword.iskeyword(name) else name


def plain(value: Any) -> Any:
    """``value`` with web3's ``HexBytes`` as plain ``bytes``, so it compares equal to bytes."""
    return bytes(value) if isinstance(value, bytes) else value


class AbiRecord:
    """Base of the generated dataclasses: after ``__init__``, each field holding an enum, bytes
    or a nested struct is converted to its declared type (so ``Commitment(flags=3)`` holds a
    :class:`CommitmentFlag`, and a nested tuple becomes its struct)."""

    def __post_init__(self) -> None:
        for name, convert in _converters(type(self)):
            object.__setattr__(self, name, convert(getattr(self, name)))


_Converters = tuple[tuple[str, Callable[[Any], Any]], ...]
_CONVERTERS: dict[type[AbiRecord], _Converters] = {}


def _converters(cls: type[AbiRecord]) -> _Converters:
    # Resolved once per class: the generated module's annotations are strings until then.
    if cls not in _CONVERTERS:
        _CONVERTERS[cls] = _resolve_converters(cls)
    return _CONVERTERS[cls]


def _resolve_converters(cls: type[AbiRecord]) -> _Converters:
    hints = typing.get_type_hints(cls)
    found: list[tuple[str, Callable[[Any], Any]]] = []
    for f in fields(cls):  # type: ignore[arg-type]
        kind = hints[f.name]
        if kind is bytes:
            found.append((f.name, bytes))
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            found.append((f.name, kind))
        elif isinstance(kind, type) and issubclass(kind, Struct):
            found.append((f.name, _struct_converter(kind)))
    return tuple(found)


def _struct_converter(kind: type[Struct]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        return value if isinstance(value, kind) else kind.from_tuple(value)

    return convert


class Struct(AbiRecord):
    """A Solidity struct: converts to and from the tuple web3 uses for it."""

    #: The struct's canonical ABI type, e.g. ``(bytes32,string,uint256)``.
    abi_type: ClassVar[str] = "()"

    def as_tuple(self) -> tuple[Any, ...]:
        """The value as web3 expects the Solidity struct: a tuple in declaration order (nested
        structs as tuples)."""
        values: tuple[Any, ...] = astuple(self)  # type: ignore[call-overload]
        return values

    @classmethod
    def from_tuple(cls, values: Sequence[Any]) -> Self:
        """Build from a decoded ABI tuple (bytes normalized, enums and nested structs typed)."""
        return cls(*values)

    def abi_encode(self) -> bytes:
        """``abi.encode(value)`` of the struct, as Solidity computes it."""
        return encode([self.abi_type], [self.as_tuple()])


@dataclass(frozen=True)
class Event(AbiRecord):
    """Where an event was logged; the generated subclasses add its arguments in snake_case."""

    block_number: int
    transaction_hash: bytes
    #: The Solidity event name.
    name: ClassVar[str] = ""

    @classmethod
    def from_log(cls, log: EventData) -> Self:
        """Decode one web3 log of this event."""
        args = {field_name(k): v for k, v in log["args"].items()}
        return cls(block_number=log["blockNumber"], transaction_hash=log["transactionHash"], **args)


# --- behaviour of generated classes (see METHODS in scripts/compile_contracts.py) --------------


class CommitmentFlag(enum.IntFlag):
    """Bits of :attr:`Commitment.flags` (the ``_REVEALED`` ... ``_COMMITTED`` constants of
    ``TrainingTask.sol``, which the ABI does not carry)."""

    REVEALED = 1
    MEMBER = 2
    ATTESTED = 4
    NONREVEAL_SLASHED = 8
    SILENCE_SLASHED = 16
    COMMITTED = 32


class TaskParametersMethods(Struct):
    """Phase arithmetic of ``ITrainingTask.TaskConfig`` (fields declared by the generated class).

    Build one from a TOML ``LedgerConfig`` with :func:`flchain.ledger.deploy.task_parameters`.
    """

    commit_blocks: int
    reveal_blocks: int
    attest_blocks: int

    @property
    def round_blocks(self) -> int:
        """Blocks from a round's start to its attest deadline, when no phase closes early."""
        return self.commit_blocks + self.reveal_blocks + self.attest_blocks

    @property
    def min_unbonding_blocks(self) -> int:
        """The shortest registry unbonding delay the task accepts: a round, one block, and one
        attest phase, so a stake stays bonded that long after every slash became provable."""
        return self.round_blocks + 1 + self.attest_blocks


class ResultMethods(Struct):
    """The vote key of ``ITrainingTask.Result``."""

    def hash(self) -> bytes:
        """The vote key ``keccak256(abi.encode(result))``, as ``hashResult`` computes it."""
        return keccak(self.abi_encode())


class CommitmentMethods(Struct):
    """Existence of an ``ITrainingTask.Commitment``."""

    flags: CommitmentFlag

    @property
    def exists(self) -> bool:
        """Whether the account ever committed (the contract's ``COMMITTED`` flag, never the
        hash: a commitment may begin with zero bytes)."""
        return bool(self.flags & CommitmentFlag.COMMITTED)
