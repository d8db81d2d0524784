"""A node's durable memory: salts, committed digests and what it already did, per round.

SCAFFOLD's client control variate lives beside the JSON state, one file per round
(:class:`ControlStore`).

The salt and digest of a round are written *before* the commit transaction is sent, and the
update bytes are already in the content store by then, so a node killed at any point can still
reveal what it committed (or recognise that its commit never landed and send it again).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from flchain import safejson
from flchain.errors import ProtocolError


@dataclass
class RoundState:
    digest: str  # 0x-hex sha-256 of the update bytes
    salt: str  # 0x-hex, secret until the reveal
    num_samples: int
    cid: str
    committed: bool = False
    revealed: bool = False
    attested: bool = False
    error: str = ""
    # Blocks the commit and reveal landed in (0: unknown, e.g. seen on-chain after a restart):
    # until they are ``confirmations`` deep the node re-checks them, in case a reorg dropped them.
    commit_block: int = 0
    reveal_block: int = 0


@dataclass
class NodeState:
    """Persisted as JSON at ``path``; every :meth:`save` is atomic (write, fsync, rename).

    A state belongs to one account on one task on one chain: ``chain_id`` and ``genesis`` (the
    genesis block hash) are part of its identity, because fresh dev chains reuse chain ids and
    contract addresses, and salts of a reset chain must never be revealed on the next one.
    """

    path: Path | None = None
    account: str = ""
    task: str = ""
    rounds: dict[int, RoundState] = field(default_factory=dict)
    chain_id: int = 0
    genesis: str = ""

    @classmethod
    def load(
        cls, path: Path, *, account: str, task: str, chain_id: int = 0, genesis: str = ""
    ) -> NodeState:
        if not path.exists():
            return cls(path=path, account=account, task=task, chain_id=chain_id, genesis=genesis)
        try:
            raw = safejson.loads(path.read_bytes())
            if not (isinstance(raw["account"], str) and isinstance(raw["task"], str)):
                raise TypeError("account and task must be strings")
            if not isinstance(raw["rounds"], dict):
                raise TypeError("rounds must be a mapping")
            state = cls(
                path=path,
                account=raw["account"],
                task=raw["task"],
                rounds={int(r): RoundState(**s) for r, s in raw["rounds"].items()},
            )
            wrong = next(filter(None, map(safejson.wrong_field, state.rounds.values())), None)
            if wrong:
                raise TypeError(wrong)
            if "chain_id" not in raw and "genesis" not in raw:
                # Written before states were keyed by chain: nothing says which chain its salts
                # belong to, so it is refused rather than migrated (a guess could reveal a
                # reset chain's salts).
                raise ProtocolError(
                    f"node state file {path} has no chain id or genesis hash (an old format): "
                    "it may belong to a reset chain; move it aside to start afresh"
                )
            if not (isinstance(raw["chain_id"], int) and isinstance(raw["genesis"], str)):
                raise TypeError("chain_id must be an integer and genesis a string")
            state.chain_id, state.genesis = raw["chain_id"], raw["genesis"]
        except ProtocolError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProtocolError(f"node state file {path} is corrupt: {exc}") from exc
        except OSError as exc:
            raise ProtocolError(f"cannot read node state file {path}: {exc}") from exc
        if (state.account.lower(), state.task.lower()) != (account.lower(), task.lower()):
            raise ProtocolError(
                f"node state file {path} belongs to account {state.account} on task "
                f"{state.task}, not {account} on {task}"
            )
        if (state.chain_id, state.genesis.lower()) != (chain_id, genesis.lower()):
            raise ProtocolError(
                f"node state file {path} belongs to chain {state.chain_id} with genesis "
                f"{state.genesis or '?'}, not chain {chain_id} with genesis {genesis or '?'} "
                "(the chain was reset?): move it aside to start afresh"
            )
        return state

    def save(self) -> None:
        if self.path is None:
            return
        data = {
            "account": self.account,
            "task": self.task,
            "chain_id": self.chain_id,
            "genesis": self.genesis,
            "rounds": {str(r): asdict(s) for r, s in sorted(self.rounds.items())},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class ControlStore:
    """SCAFFOLD's client control variate ``c_i``, one ``<round>.npy`` file (float64, flat, the
    model spec's layout) per round this node trained, under ``directory`` (in memory when
    ``None``).

    Round ``r`` trains from the variate the latest round before ``r`` left, never from ``r``'s
    own: a node that restarts after saving round ``r``'s variate but before committing trains
    ``r`` again from the same ``c_i``, so it produces the same update and the same ``c_i⁺``.
    Each file is written atomically (write, fsync, rename); once round ``r``'s is written, the
    files of rounds before the one ``r`` trained from are deleted (nothing later reads them),
    so a node keeps two variates, not one per round."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._memory: dict[int, np.ndarray] = {}

    def rounds(self) -> list[int]:
        """The rounds with a stored variate, ascending."""
        if self.directory is None:
            return sorted(self._memory)
        if not self.directory.is_dir():
            return []
        return sorted(int(p.stem) for p in self.directory.glob("*.npy") if p.stem.isdigit())

    def latest(self, before: int, size: int) -> np.ndarray:
        """``c_i`` as of the latest round before ``before`` (zero when there is none)."""
        earlier = [r for r in self.rounds() if r < before]
        if not earlier:
            return np.zeros(size)
        r = earlier[-1]
        if self.directory is None:
            return self._memory[r].copy()
        path = self.directory / f"{r}.npy"
        try:
            control: np.ndarray = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ProtocolError(f"SCAFFOLD control variate {path} is unreadable: {exc}") from exc
        if control.shape != (size,) or control.dtype != np.float64:
            raise ProtocolError(
                f"SCAFFOLD control variate {path} holds {control.dtype}{list(control.shape)}, "
                f"need float64[{size}]"
            )
        return control

    def discard(self, round_id: int) -> None:
        """Forget round ``round_id``'s variate: its ``Δc`` never reached the committee (e.g. the
        node missed the commit deadline), so the next round trains from the one before."""
        self._memory.pop(round_id, None)
        if self.directory is not None:
            (self.directory / f"{round_id}.npy").unlink(missing_ok=True)

    def save(self, round_id: int, control: np.ndarray) -> None:
        """Keep ``c_i⁺`` of round ``round_id``."""
        control = np.asarray(control, np.float64)
        if self.directory is None:
            self._memory[round_id] = control.copy()
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".control-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, control, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.directory / f"{round_id}.npy")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        earlier = [r for r in self.rounds() if r < round_id]
        for r in earlier[:-1]:  # keep the one round_id trained from: a retrain reads it
            (self.directory / f"{r}.npy").unlink(missing_ok=True)
