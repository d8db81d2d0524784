"""A node's durable memory: salts, committed digests and what it already did, per round.

SCAFFOLD's client control variate and top-k's error-feedback residual live beside the JSON
state, one file per round (:class:`RoundVectors`).

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


class RoundVectors:
    """A per-round float64 vector the node carries from round to round: SCAFFOLD's client
    control variate ``c_i``, or top-k's error-feedback residual (what the node has not sent
    yet). One ``<round>.npy`` file (flat, the model spec's layout) per round this node trained,
    under ``directory`` (in memory when ``None``); ``what`` names the vector in errors.

    Round ``r`` trains from the vector the latest round before ``r`` left, never from ``r``'s
    own: a node that restarts after saving round ``r``'s vector but before committing trains
    ``r`` again from the same one, so it produces the same update and the same new vector.
    Each file is written atomically (write, fsync, rename); once round ``r``'s is written, the
    files of rounds before the one ``r`` trained from are deleted (nothing later reads them),
    so a node keeps two vectors, not one per round.

    ``key`` names what the vectors are valid for (the residual: the task's update spec,
    codec included): a directory written under another key is emptied on open, so a node
    whose task codec changed starts from zero instead of feeding back a stale residual."""

    KEY_FILE = "key"

    def __init__(
        self, directory: Path | None, what: str = "SCAFFOLD control variate", key: str = ""
    ) -> None:
        self.directory, self.what, self.key = directory, what, key
        self._memory: dict[int, np.ndarray] = {}
        if directory is not None and key and directory.is_dir():
            key_file = directory / self.KEY_FILE
            if not key_file.exists() or key_file.read_text() != key:
                for r in self.rounds():
                    (directory / f"{r}.npy").unlink()
                key_file.unlink(missing_ok=True)

    def rounds(self) -> list[int]:
        """The rounds with a stored vector, ascending."""
        if self.directory is None:
            return sorted(self._memory)
        if not self.directory.is_dir():
            return []
        return sorted(int(p.stem) for p in self.directory.glob("*.npy") if p.stem.isdigit())

    def latest(self, before: int, size: int) -> np.ndarray:
        """The vector as of the latest round before ``before`` (zero when there is none)."""
        earlier = [r for r in self.rounds() if r < before]
        if not earlier:
            return np.zeros(size)
        r = earlier[-1]
        if self.directory is None:
            return self._memory[r].copy()
        path = self.directory / f"{r}.npy"
        try:
            vector: np.ndarray = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ProtocolError(f"{self.what} {path} is unreadable: {exc}") from exc
        if vector.shape != (size,) or vector.dtype != np.float64:
            raise ProtocolError(
                f"{self.what} {path} holds {vector.dtype}{list(vector.shape)}, need float64[{size}]"
            )
        return vector

    def discard(self, round_id: int) -> None:
        """Forget round ``round_id``'s vector: its update never reached the committee (e.g.
        the node missed the commit deadline), so the next round trains from the one before."""
        self._memory.pop(round_id, None)
        if self.directory is not None:
            (self.directory / f"{round_id}.npy").unlink(missing_ok=True)

    def save(self, round_id: int, vector: np.ndarray) -> None:
        """Keep the vector round ``round_id`` left."""
        vector = np.asarray(vector, np.float64)
        if self.directory is None:
            self._memory[round_id] = vector.copy()
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.key:
            (self.directory / self.KEY_FILE).write_text(self.key)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".vector-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, vector, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.directory / f"{round_id}.npy")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        earlier = [r for r in self.rounds() if r < round_id]
        for r in earlier[:-1]:  # keep the one round_id trained from: a retrain reads it
            (self.directory / f"{r}.npy").unlink(missing_ok=True)
