"""``RoundKit``: the moves of a task's rounds (commit, reveal, mine to a phase, attest, play a
whole round) that the contract suites drive, written once.

The ledger suite's ``TaskKit`` (tests/ledger/conftest.py) and the attack suite's ``Arena``
(tests/attacks/conftest.py) derive from it and add their own deployments: ``TaskKit`` sends
through the :class:`~flchain.ledger.contracts.TrainingTask` wrapper (its fixed commit/reveal gas
included), ``Arena`` through raw contract calls so a participant may be a contract
(:class:`ContractActor`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.contract import Contract
from web3.types import TxReceipt

from flchain.ledger.chain import Chain
from flchain.ledger.contracts import Result, RoundStatus, TrainingTask
from flchain.ledger.merkle import RewardTree
from flchain.protocol.commitment import commitment

#: A CIDv1 of the usual length (59 characters), as a real update would have.
UPDATE_CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


@dataclass(frozen=True)
class Update:
    """What a participant commits to and later reveals."""

    digest: bytes
    num_samples: int
    salt: bytes


@dataclass(frozen=True)
class ContractActor:
    """A participant that is a contract: ``owner`` drives it through ``execute``."""

    contract: Contract
    owner: LocalAccount

    @property
    def address(self) -> str:
        return str(self.contract.address)


Actor = LocalAccount | ContractActor


def send_as(chain: Chain, actor: Actor, target: Contract, fn: str, *args: Any) -> TxReceipt:
    """Call ``target.fn(*args)`` as ``actor`` (through ``execute`` for a contract actor)."""
    if isinstance(actor, ContractActor):
        data = target.encode_abi(fn, args=list(args))
        return chain.transact(actor.contract.functions.execute(target.address, data), actor.owner)
    return chain.transact(target.functions[fn](*args), actor)


def _account(actor: Actor) -> LocalAccount:
    if isinstance(actor, ContractActor):
        raise TypeError("the task wrapper sends as an account: drive contract actors in an Arena")
    return actor


class RoundKit:
    """A deployed task, its ``participants`` and the moves of a round; ``outsider`` is the
    chain's last account (funded, never registered). Commit, reveal and attest go through the
    task wrapper; a subclass overrides :meth:`send_commit`, :meth:`send_reveal` and
    :meth:`attest` to send otherwise."""

    update_cid = UPDATE_CID

    def __init__(self, chain: Chain, task: TrainingTask, participants: Sequence[Actor]) -> None:
        self.chain, self.task = chain, task
        self.participants: list[Actor] = list(participants)
        self.outsider: LocalAccount = chain.accounts[-1]

    # --- sending (overridable) ----------------------------------------------------------------

    def send_commit(self, actor: Actor, value: bytes) -> TxReceipt:
        return self.task.commit(_account(actor), value)

    def send_reveal(self, actor: Actor, upd: Update, cid: str) -> TxReceipt:
        return self.task.reveal(_account(actor), upd.digest, upd.num_samples, upd.salt, cid)

    def attest(self, actor: Actor, round_id: int, result: Result) -> TxReceipt:
        return self.task.attest(_account(actor), round_id, result)

    # --- commit / reveal ----------------------------------------------------------------------

    def update(self, actor: Actor, round_id: int, tag: str = "") -> Update:
        """A deterministic, distinct update for ``actor`` in ``round_id``."""
        seed = f"{actor.address}/{round_id}/{tag}"
        return Update(keccak(text="digest " + seed), 100 + round_id, keccak(text="salt " + seed))

    def commitment(self, actor: Actor, round_id: int, upd: Update) -> bytes:
        return commitment(
            chain_id=self.chain.chain_id,
            task=self.task.address,
            sender=actor.address,
            round_id=round_id,
            digest=upd.digest,
            num_samples=upd.num_samples,
            salt=upd.salt,
        )

    def commit(self, actor: Actor, upd: Update | None = None) -> Update:
        round_id = self.task.current_round()
        upd = upd or self.update(actor, round_id)
        self.send_commit(actor, self.commitment(actor, round_id, upd))
        return upd

    def reveal(self, actor: Actor, upd: Update, cid: str = UPDATE_CID) -> TxReceipt:
        return self.send_reveal(actor, upd, cid)

    def commit_all(self, actors: Sequence[Actor]) -> dict[str, Update]:
        return {a.address: self.commit(a) for a in actors}

    def reveal_all(self, actors: Sequence[Actor], updates: dict[str, Update]) -> None:
        for actor in actors:
            self.reveal(actor, updates[actor.address])

    # --- blocks and phases --------------------------------------------------------------------

    def mine_to(self, block: int) -> None:
        """Mine until the latest block is ``block`` (the next transaction lands in ``block+1``)."""
        gap = block - self.chain.block_number
        if gap > 0:
            self.chain.mine(gap)

    def to_reveal_phase(self) -> None:
        self.mine_to(self.task.round_record(self.task.current_round()).commit_end)

    def to_attest_phase(self) -> None:
        self.mine_to(self.task.round_record(self.task.current_round()).reveal_end)

    def past_attest_deadline(self, round_id: int) -> None:
        self.mine_to(self.task.attest_deadline(round_id))

    # --- committee ----------------------------------------------------------------------------

    def actor(self, address: str) -> Actor:
        """The participant, else the chain account, at ``address``."""
        return next(a for a in [*self.participants, *self.chain.accounts] if a.address == address)

    def members(self, round_id: int) -> list[Actor]:
        return [self.actor(a) for a in self.task.committee(round_id)]

    def result(
        self, cumulative: dict[str, int], reward_total: int | None = None, tag: str = ""
    ) -> Result:
        """A result crediting up to ``cumulative`` (``reward_total`` new this round, by
        default all of it)."""
        tree = RewardTree(cumulative)
        total = sum(cumulative.values()) if reward_total is None else reward_total
        return Result(
            keccak(text="model " + tag),
            "bafymodel" + tag,
            keccak(text="report " + tag),
            "bafyreport" + tag,
            bytes(tree.root),
            total,
        )

    def finalize(self, round_id: int, result: Result) -> list[Actor]:
        """Quorum of the committee attests ``result``; the members that voted."""
        record = self.task.round_record(round_id)
        quorum = self.task.effective_quorum(record.commits)
        voters = self.members(round_id)[:quorum]
        for member in voters:
            self.attest(member, round_id, result)
        return voters

    def play_round(
        self, actors: Sequence[Actor], cumulative: dict[str, int], reward_total: int | None = None
    ) -> tuple[int, Result, RewardTree]:
        """Commit, reveal, finalize one round crediting up to ``cumulative``; every member votes."""
        round_id = self.task.current_round()
        updates = self.commit_all(actors)
        self.to_reveal_phase()
        self.reveal_all(actors, updates)
        self.to_attest_phase()
        result = self.result(cumulative, reward_total, tag=str(round_id))
        voters = self.finalize(round_id, result)
        for member in self.members(round_id)[len(voters) :]:
            self.attest(member, round_id, result)  # late votes: nobody is left silent
        assert self.task.round_record(round_id).status == RoundStatus.FINALIZED
        return round_id, result, RewardTree(cumulative)
