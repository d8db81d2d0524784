"""Typed Python wrappers for FLChain's contracts: ``FLToken``, ``ParticipantRegistry``,
``TrainingTask``.

Each wrapper holds a :class:`~flchain.ledger.chain.Chain` and the web3 contract. Methods are
named after the Solidity functions in snake_case; transactions take the signing account first
and return the receipt, views return Python values or the frozen dataclasses of the ABI mirror
(:mod:`flchain.ledger.contract_types`, generated from the ABIs and re-exported here), and event
queries return its typed event records. Reverts surface from the chain layer as the exception named
after the Solidity custom error (``exc.error_args`` holds its arguments); the wrappers add none.

>>> task = TrainingTask(chain, address)                       # doctest: +SKIP
>>> task.commit(alice, task.commitment_hash(alice.address, 0, digest, 100, salt))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self, TypeVar

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD
from web3.types import TxReceipt

from flchain.errors import ContractGone
from flchain.ledger.abi import CommitmentFlag as CommitmentFlag
from flchain.ledger.abi import Event as Event
from flchain.ledger.abi import plain
from flchain.ledger.chain import Chain, TxRequest

# The generated ABI mirror (every enum, struct and event) is part of this module's API.
from flchain.ledger.contract_types import *  # noqa: F403
from flchain.ledger.contract_types import (
    Commitment,
    Committed,
    Participant,
    Phase,
    Result,
    RoundRecord,
    StepView,
    TaskParameters,
    Vote,
)
from flchain.types import Address, to_address

ZERO_BYTES32 = b"\x00" * 32
#: ``keccak256`` role ids of ``ParticipantRegistry`` (OpenZeppelin ``AccessControl``).
DEFAULT_ADMIN_ROLE = ZERO_BYTES32
VERIFIER_ROLE = keccak(text="VERIFIER_ROLE")
SLASHER_ROLE = keccak(text="SLASHER_ROLE")

_E = TypeVar("_E", bound=Event)


# --- wrappers -------------------------------------------------------------------------------------


#: Gas floor of an attestation sent with an estimate (a CID longer than
#: :data:`FIXED_GAS_MAX_CID`, or a chain with another gas schedule): a finalizing vote costs
#: ~285k whatever the participant count.
ATTEST_MIN_GAS = 400_000
#: Fixed gas limit of an attestation, sent without an estimate: any vote may turn out to be
#: the finalizing one, whose cost has a ceiling (O(1) storage: the round record and the model
#: CID, at most five slots for a CID of :data:`FIXED_GAS_MAX_CID` bytes).
#: tests/ledger/test_task_fixed_gas.py checks the worst case fits.
ATTEST_GAS = 600_000
#: Fixed gas limits of commit and reveal, sent without an ``eth_estimateGas`` round trip: both
#: touch O(1) storage, so their cost has a ceiling. Commit's worst case is one that settles the
#: account's previous commitment (a non-reveal or committee-silence slash through the
#: registry, 82k measured); reveal's is the round's first, which fixes the committee seed (68k
#: with a 128-byte CID), plus the committee sampler's cycle walk (~0.5k gas a step, geometric
#: with p >= 1/4). tests/ledger/test_task_fixed_gas.py checks the worst cases fit. Unused gas
#: is refunded, so the margin costs nothing but block space.
COMMIT_GAS = 150_000
REVEAL_GAS = 120_000
#: Fixed gas limit of a claim with proofs of at most :data:`FIXED_GAS_MAX_PROOF` hashes each
#: (a tree of up to 2^32 accounts): ~101k, plus ~740 a proof hash per proof, plus a transfer
#: to an account holding no tokens yet; the worst case is ~170k.
#: tests/ledger/test_task_fixed_gas.py measures the cost per hash and checks the worst case fits.
CLAIM_GAS = 250_000
FIXED_GAS_MAX_PROOF = 32
#: Gas limits of setting a federation up on a Prague-priced chain (``deploy_stack``'s mints,
#: ``register_all``'s approvals and registrations: FLChain's own token and registry, so their
#: ceilings are known): a first mint writes the total supply and a balance from zero (70.6k
#: measured), a fresh allowance 46.3k, the first stake into an empty registry its token
#: balance from zero (88.5k). ``REGISTER_GAS`` also floors a single ``register``'s estimate:
#: a register estimated while another was pending (a chain mining on a timer) sees that write
#: already paid and gets 85k, short if it lands first. Unused gas is refunded.
#: tests/ledger/test_task_fixed_gas.py checks the worst cases fit.
MINT_GAS = 100_000
APPROVE_GAS = 70_000
REGISTER_GAS = 120_000
#: Reveals and attestations naming longer CIDs (not produced by FLChain's stores) fall back
#: to an estimate.
FIXED_GAS_MAX_CID = 128


class FunctionTable:
    """A contract's functions by name, each bound to a web3 contract whose ABI holds only that
    function's entries and every non-function entry (errors, events, constructor).

    web3 checks the whole ABI for colliding selectors and searches it for the function on every
    call it encodes, twice a call: a selector hash per function of the contract (~60 for
    ``TrainingTask``), a tenth of a one-process federation round. With one function in the ABI
    that is one hash; the function found, its encoding, and the custom errors a revert decodes
    into (``fn.contract_abi`` still lists them) are the same.
    """

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self._by_name: dict[str, ContractFunction] = {}

    def __getitem__(self, name: str) -> ContractFunction:
        fn = self._by_name.get(name)
        if fn is None:
            abi = self.contract.abi
            entries = [e for e in abi if e["type"] != "function" or e.get("name") == name]
            if len(entries) == sum(e["type"] != "function" for e in abi):
                return self.contract.functions[name]  # web3's error naming what exists
            narrow = self.contract.w3.eth.contract(address=self.contract.address, abi=entries)
            fn = self._by_name[name] = narrow.functions[name]
        return fn


class ContractWrapper:
    """Shared plumbing: a :class:`Chain`, the web3 contract and its artifact name."""

    artifact: ClassVar[str] = ""

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.contract: Contract = chain.contract(self.artifact, address)
        #: The contract's functions, as ``contract.functions`` but looked up in one step.
        self.functions = FunctionTable(self.contract)

    @classmethod
    def deploy(cls, chain: Chain, sender: LocalAccount, *args: Any) -> Self:
        """Deploy the contract from ``sender`` with constructor ``args``."""
        contract = chain.deploy(cls.artifact, sender, *args)
        return cls(chain, contract.address)

    @property
    def address(self) -> Address:
        """The contract's checksummed address."""
        return Address(self.contract.address)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address} on {self.chain.label})"

    def logs(self, receipt: TxReceipt, event: str) -> list[dict[str, Any]]:
        """The decoded arguments of this contract's ``event`` logs in ``receipt``."""
        decoded = self.contract.events[event]().process_receipt(receipt, errors=DISCARD)
        return [{k: plain(v) for k, v in log["args"].items()} for log in decoded]

    def _call(self, fn: str, *args: Any) -> Any:
        try:
            return self.chain.call(self.functions[fn](*args))
        except ContractGone as exc:  # name the contract: "TrainingTask contract gone at 0x…"
            raise ContractGone(f"{type(self).__name__} {exc}") from exc.__cause__

    def _send(self, sender: LocalAccount, fn: str, *args: Any) -> TxReceipt:
        return self.chain.transact(self.functions[fn](*args), sender)

    def events(
        self, kind: type[_E], from_block: int = 0, to_block: int | str = "latest", **filters: Any
    ) -> list[_E]:
        """This contract's ``kind`` events in ``[from_block, to_block]``, oldest first;
        ``filters`` match indexed fields (``round=3``, ``account=...``; ``None`` matches all),
        e.g. ``task.events(RoundFinalized, round=3)``."""
        wanted = {
            k: to_address(v) if isinstance(v, str) else v
            for k, v in filters.items()
            if v is not None
        }
        logs = self.chain.events(self.contract, kind.name, from_block, to_block, wanted)  # type: ignore[arg-type]
        return [kind.from_log(log) for log in logs]


class FLToken(ContractWrapper):
    """The ERC-20 (+ ERC-2612 permit) stake and reward token of local chains."""

    artifact = "FLToken"

    @classmethod
    def deploy_token(
        cls, chain: Chain, owner: LocalAccount, name: str = "FLChain Token", symbol: str = "FLC"
    ) -> FLToken:
        """Deploy a token whose ``owner`` may mint."""
        return cls.deploy(chain, owner, name, symbol, owner.address)

    def name(self) -> str:
        return str(self._call("name"))

    def symbol(self) -> str:
        return str(self._call("symbol"))

    def decimals(self) -> int:
        return int(self._call("decimals"))

    def total_supply(self) -> int:
        return int(self._call("totalSupply"))

    def balance_of(self, account: str) -> int:
        return int(self._call("balanceOf", to_address(account)))

    def allowance(self, owner: str, spender: str) -> int:
        return int(self._call("allowance", to_address(owner), spender))

    def owner(self) -> Address:
        return Address(self._call("owner"))

    def nonces(self, owner: str) -> int:
        """The ERC-2612 permit nonce of ``owner``."""
        return int(self._call("nonces", to_address(owner)))

    def mint(self, sender: LocalAccount, to: str, amount: int) -> TxReceipt:
        """Create ``amount`` tokens for ``to`` (token owner only)."""
        return self._send(sender, "mint", to_address(to), amount)

    def transfer(self, sender: LocalAccount, to: str, amount: int) -> TxReceipt:
        return self._send(sender, "transfer", to_address(to), amount)

    def approve(self, sender: LocalAccount, spender: str, amount: int) -> TxReceipt:
        return self._send(sender, "approve", to_address(spender), amount)

    def transfer_from(self, sender: LocalAccount, owner: str, to: str, amount: int) -> TxReceipt:
        return self._send(sender, "transferFrom", to_address(owner), to_address(to), amount)

    def transfer_ownership(self, sender: LocalAccount, new_owner: str) -> TxReceipt:
        return self._send(sender, "transferOwnership", to_address(new_owner))

    def sign_permit(
        self, owner: LocalAccount, spender: str, value: int, deadline: int, nonce: int | None = None
    ) -> tuple[int, bytes, bytes]:
        """``owner``'s EIP-2612 signature ``(v, r, s)`` letting ``spender`` spend ``value``."""
        domain = {
            "name": self.name(),
            "version": "1",
            "chainId": self.chain.chain_id,
            "verifyingContract": self.address,
        }
        types = {
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ]
        }
        message = {
            "owner": owner.address,
            "spender": to_address(spender),
            "value": value,
            "nonce": self.nonces(owner.address) if nonce is None else nonce,
            "deadline": deadline,
        }
        signed = owner.sign_typed_data(domain, types, message)
        return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")

    def permit(
        self,
        sender: LocalAccount,
        owner: str,
        spender: str,
        value: int,
        deadline: int,
        signature: tuple[int, bytes, bytes],
    ) -> TxReceipt:
        """Submit a :meth:`sign_permit` signature (any ``sender`` may relay it)."""
        v, r, s = signature
        args = (to_address(owner), to_address(spender), value, deadline, v, r, s)
        return self._send(sender, "permit", *args)


class ParticipantRegistry(ContractWrapper):
    """Stakes, the optional allow-list gate, unbonding and slashing by task contracts."""

    artifact = "ParticipantRegistry"

    @classmethod
    def deploy_registry(
        cls,
        chain: Chain,
        admin: LocalAccount,
        token: str,
        *,
        min_stake: int,
        unbonding_blocks: int,
        allowlist: bool = False,
    ) -> ParticipantRegistry:
        """Deploy a registry staking ``token``; ``admin`` also gets ``VERIFIER_ROLE``."""
        args = (to_address(token), min_stake, unbonding_blocks, allowlist, admin.address)
        return cls.deploy(chain, admin, *args)

    def stake_token(self) -> Address:
        return Address(self._call("stakeToken"))

    def min_stake(self) -> int:
        return int(self._call("minStake"))

    def unbonding_blocks(self) -> int:
        return int(self._call("unbondingBlocks"))

    def allowlist_enabled(self) -> bool:
        return bool(self._call("allowlistEnabled"))

    def is_active(self, account: str) -> bool:
        """Whether ``account`` may commit now (registered, admitted, staked, not exiting)."""
        return bool(self._call("isActive", to_address(account)))

    def are_active(self, accounts: Sequence[str]) -> list[bool]:
        """:meth:`is_active` of each of ``accounts``, in one call (``activeBits``)."""
        words = self._call("activeBits", [to_address(a) for a in accounts])
        return [bool(words[i >> 8] >> (i & 255) & 1) for i in range(len(accounts))]

    def stake_of(self, account: str) -> int:
        return int(self._call("stakeOf", to_address(account)))

    def participant(self, account: str) -> Participant:
        return Participant.from_tuple(self._call("participant", to_address(account)))

    def has_role(self, role: bytes, account: str) -> bool:
        return bool(self._call("hasRole", role, to_address(account)))

    def register(self, sender: LocalAccount, amount: int) -> TxReceipt:
        """Bond ``amount`` stake tokens (approve the registry first)."""
        return self.chain.transact(self.functions["register"](amount), sender, min_gas=REGISTER_GAS)

    def add_stake(self, sender: LocalAccount, amount: int) -> TxReceipt:
        return self._send(sender, "addStake", amount)

    def request_withdrawal(self, sender: LocalAccount) -> TxReceipt:
        """Leave the active set now; the stake unlocks after ``unbonding_blocks``."""
        return self._send(sender, "requestWithdrawal")

    def withdraw(self, sender: LocalAccount) -> TxReceipt:
        return self._send(sender, "withdraw")

    def slash(self, sender: LocalAccount, account: str, amount: int) -> TxReceipt:
        """Take up to ``amount`` of ``account``'s stake (``SLASHER_ROLE`` only)."""
        return self._send(sender, "slash", to_address(account), amount)

    def set_allowed(self, sender: LocalAccount, account: str, allowed: bool) -> TxReceipt:
        """Admit or bar ``account`` at the allow-list gate (``VERIFIER_ROLE`` only)."""
        return self._send(sender, "setAllowed", to_address(account), allowed)

    def grant_role(self, sender: LocalAccount, role: bytes, account: str) -> TxReceipt:
        return self._send(sender, "grantRole", role, to_address(account))

    def revoke_role(self, sender: LocalAccount, role: bytes, account: str) -> TxReceipt:
        return self._send(sender, "revokeRole", role, to_address(account))


class TrainingTask(ContractWrapper):
    """One federated-learning task: rounds of commit, reveal, attest; rewards and penalties."""

    artifact = "TrainingTask"

    @classmethod
    def deploy_task(
        cls,
        chain: Chain,
        owner: LocalAccount,
        config: TaskParameters,
        registry: str,
        reward_token: str,
        *,
        start: bool = True,
    ) -> TrainingTask:
        """Deploy a task; with ``start`` (default) round 0 opens in the next block, else call
        :meth:`start` once funding and registrations are done."""
        args = (config.as_tuple(), to_address(registry), reward_token, owner.address)
        task = cls.deploy(chain, owner, *args)
        if start:
            task.start(owner)
        return task

    # --- views ----------------------------------------------------------------------------

    def config(self) -> TaskParameters:
        # Immutable after deployment: read once per wrapper (nodes read it every step).
        if not hasattr(self, "_config"):
            self._config = TaskParameters.from_tuple(self._call("config"))
        return self._config

    def registry(self) -> Address:
        return Address(self._call("registry"))

    def reward_token(self) -> Address:
        return Address(self._call("rewardToken"))

    def owner(self) -> Address:
        return Address(self._call("owner"))

    def current_round(self) -> int:
        return int(self._call("currentRound"))

    def phase(self) -> Phase:
        """The current round's phase at the latest block."""
        return Phase(self._call("phase"))

    def round_record(self, round_id: int) -> RoundRecord:
        return RoundRecord.from_tuple(self._call("roundRecord", round_id))

    def attest_deadline(self, round_id: int) -> int:
        return int(self._call("attestDeadline", round_id))

    def commitment_of(self, account: str) -> Commitment:
        return Commitment.from_tuple(self._call("commitmentOf", to_address(account)))

    def is_committee_member(self, round_id: int, account: str) -> bool:
        return bool(self._call("isCommitteeMember", round_id, to_address(account)))

    def committee_indices(self, round_id: int) -> list[int]:
        """Commit indices on the committee of ``round_id`` (empty until the seed is fixed)."""
        return [int(i) for i in self._call("committeeIndices", round_id)]

    def committee(self, round_id: int, since: int = 0) -> list[Address]:
        """The committee's accounts, from :meth:`committee_indices` and the commit events,
        searched for from block ``since`` (give a block at or before the round's start, e.g.
        :func:`~flchain.protocol.rounds.round_start_bound`, to spare the chain a search from
        its first block)."""
        by_index = {e.index: e.account for e in self.events(Committed, since, round=round_id)}
        return [by_index[i] for i in self.committee_indices(round_id)]

    def step_view(self, account: str) -> StepView:
        """Everything a participant node needs for one step, in one call (see :class:`StepView`)."""
        return StepView.from_tuple(self._call("stepView", to_address(account)))

    def step_views(self, accounts: Sequence[str]) -> list[StepView]:
        """:meth:`step_view` of each of ``accounts``, all read at one block in one call
        (``stepViews`` returns them packed: see :func:`unpack_step_views`)."""
        addresses = [to_address(a) for a in accounts]
        shared, packed = self._call("stepViews", addresses)
        return unpack_step_views(shared, packed)

    def effective_quorum(self, commits: int) -> int:
        return int(self._call("effectiveQuorum", commits))

    def vote_of(self, round_id: int, member: str) -> Vote:
        return Vote.from_tuple(self._call("voteOf", round_id, to_address(member)))

    def vote_count(self, round_id: int, result_hash: bytes) -> int:
        return int(self._call("voteCount", round_id, result_hash))

    def is_digest_revealed(self, digest: bytes) -> bool:
        return bool(self._call("isDigestRevealed", digest))

    def commitment_hash(
        self, account: str, round_id: int, digest: bytes, num_samples: int, salt: bytes
    ) -> bytes:
        """The commitment the contract expects (see :mod:`flchain.protocol.commitment`)."""
        args = (to_address(account), round_id, digest, num_samples, salt)
        return bytes(self._call("commitmentHash", *args))

    def hash_result(self, result: Result) -> bytes:
        return bytes(self._call("hashResult", result.as_tuple()))

    def model_digest(self) -> bytes:
        return bytes(self._call("modelDigest"))

    def model_cid(self) -> str:
        return str(self._call("modelCid"))

    def finalized_rounds(self) -> int:
        return int(self._call("finalizedRounds"))

    def reward_round(self) -> int | None:
        """The latest finalized round, the only one ``claim`` accepts (None before any)."""
        if self.finalized_rounds() == 0:
            return None
        return int(self._call("rewardRound"))

    def started(self) -> bool:
        return bool(self._call("started"))

    def pool(self) -> int:
        """Reward tokens neither credited nor reserved for fees."""
        return int(self._call("pool"))

    def fees_reserved(self) -> int:
        return int(self._call("feesReserved"))

    def total_credited(self) -> int:
        return int(self._call("totalCredited"))

    def total_claimed(self) -> int:
        return int(self._call("totalClaimed"))

    def claimed(self, account: str) -> int:
        return int(self._call("claimed", to_address(account)))

    def fees_owed(self, member: str) -> int:
        return int(self._call("feesOwed", to_address(member)))

    # --- transactions ---------------------------------------------------------------------

    def start(self, sender: LocalAccount) -> TxReceipt:
        """Open round 0 now (owner only, once)."""
        return self._send(sender, "start")

    def fund(self, sender: LocalAccount, amount: int) -> TxReceipt:
        """Add ``amount`` to the reward pool (approve the task first)."""
        return self._send(sender, "fund", amount)

    def commit(self, sender: LocalAccount, commitment: bytes) -> TxReceipt:
        """Commit with the fixed :data:`COMMIT_GAS` (no estimate; a revert is still raised as
        its custom error, found by replaying the mined transaction) on a chain with the gas
        schedule it was measured on (:attr:`Chain.prague_gas`), else with an estimate."""
        return self._transact(self.commit_request(sender, commitment))

    def commit_request(self, sender: LocalAccount, commitment: bytes) -> TxRequest:
        """:meth:`commit` as a request, to send with others (:meth:`Chain.transact_each`)."""
        fn = self.functions["commit"](commitment)
        return TxRequest(fn, sender, COMMIT_GAS if self.chain.prague_gas else None)

    def _transact(self, request: TxRequest) -> TxReceipt:
        return self.chain.transact(request.fn, request.sender, gas=request.gas)

    def close_commit_phase(self, sender: LocalAccount) -> TxReceipt:
        return self._send(sender, "closeCommitPhase")

    def reveal(
        self, sender: LocalAccount, digest: bytes, num_samples: int, salt: bytes, cid: str
    ) -> TxReceipt:
        """Reveal with the fixed :data:`REVEAL_GAS` (estimated for an unusually long CID, or on
        a chain with another gas schedule: see :attr:`Chain.prague_gas`)."""
        return self._transact(self.reveal_request(sender, digest, num_samples, salt, cid))

    def reveal_request(
        self, sender: LocalAccount, digest: bytes, num_samples: int, salt: bytes, cid: str
    ) -> TxRequest:
        """:meth:`reveal` as a request, to send with others (:meth:`Chain.transact_each`)."""
        fn = self.functions["reveal"](digest, num_samples, salt, cid)
        fixed = len(cid.encode()) <= FIXED_GAS_MAX_CID and self.chain.prague_gas
        return TxRequest(fn, sender, REVEAL_GAS if fixed else None)

    def attest(self, sender: LocalAccount, round_id: int, result: Result) -> TxReceipt:
        """Attest with the fixed :data:`ATTEST_GAS` (no estimate: three runs of the vote
        become one; a revert is still raised as its custom error), or, for a CID longer than
        :data:`FIXED_GAS_MAX_CID` or on a chain with another gas schedule, with an estimate
        floored at a finalizing vote's cost: any vote may turn out to be the one that reaches
        quorum when other votes land first in the same block."""
        fn = self.functions["attest"](round_id, result.as_tuple())
        cids = (result.model_cid, result.report_cid)
        if self.chain.prague_gas and all(len(c.encode()) <= FIXED_GAS_MAX_CID for c in cids):
            return self.chain.transact(fn, sender, gas=ATTEST_GAS)
        return self.chain.transact(fn, sender, min_gas=ATTEST_MIN_GAS)

    def expire_round(self, sender: LocalAccount) -> TxReceipt:
        return self._send(sender, "expireRound")

    def slash_non_revealer(self, sender: LocalAccount, round_id: int, account: str) -> TxReceipt:
        return self._send(sender, "slashNonRevealer", round_id, to_address(account))

    def settle_committee_member(
        self, sender: LocalAccount, round_id: int, member: str
    ) -> TxReceipt:
        return self._send(sender, "settleCommitteeMember", round_id, to_address(member))

    def withdraw_fees(self, sender: LocalAccount) -> TxReceipt:
        return self._send(sender, "withdrawFees")

    def claim(
        self,
        sender: LocalAccount,
        round_id: int,
        cumulative_amount: int,
        proof: Sequence[bytes],
        previous_amount: int = 0,
        previous_proof: Sequence[bytes] = (),
    ) -> TxReceipt:
        """Pull ``cumulative_amount`` minus what ``sender`` already claimed, proven against the
        reward root of ``round_id``, the latest finalized round (one claim covers any number of
        rounds; an older root is refused with ``StaleRewardRoot``). ``previous_amount`` and its
        proof against the previous finalized root are the baseline above which the round's own
        credit is drawn; leave them out when ``sender`` already claimed that much. Sent with
        the fixed :data:`CLAIM_GAS` (a revert is still raised as its custom error), or with an
        estimate for longer proofs or on a chain with another gas schedule."""
        fn = self.functions["claim"](
            round_id,
            cumulative_amount,
            [bytes(p) for p in proof],
            previous_amount,
            [bytes(p) for p in previous_proof],
        )
        # sent without an estimate (two more runs of the claim) where its ceiling is known
        fixed = (
            self.chain.prague_gas and max(len(proof), len(previous_proof)) <= FIXED_GAS_MAX_PROOF
        )
        return self.chain.transact(fn, sender, gas=CLAIM_GAS if fixed else None)

    def withdraw_surplus(self, sender: LocalAccount, to: str) -> TxReceipt:
        return self._send(sender, "withdrawSurplus", to_address(to))


#: Bits of ``stepViews``' per-account flag word.
_ACTIVE, _MEMBER, _SETTLED, _PREVIOUS_MEMBER, _PREVIOUS_SETTLED = 1, 2, 4, 8, 16
_WORD = (1 << 256) - 1


def unpack_step_views(shared: Sequence[int], packed: Sequence[int]) -> list[StepView]:
    """The :class:`StepView` of each account from ``TrainingTask.stepViews``' packed answer:
    ``shared`` (block, round, phase, attest deadline, previous status, previous attest
    deadline) and four words an account (commitment, flag bits, vote hash, previous vote
    hash; the layout is documented on the Solidity function)."""
    block, round_id, phase, deadline, previous_status, previous_deadline = shared
    views = []
    for i in range(0, len(packed), 4):
        commitment, bits, vote, previous_vote = packed[i : i + 4]
        views.append(
            StepView.from_tuple(
                (
                    block,
                    round_id,
                    phase,
                    bool(bits & _ACTIVE),
                    (
                        (commitment & ((1 << 192) - 1)).to_bytes(24, "big"),
                        (commitment >> 192) & 0xFFFFFFFF,
                        (commitment >> 224) & 0xFFFFFF,
                        commitment >> 248,
                    ),
                    bool(bits & _MEMBER),
                    ((vote & _WORD).to_bytes(32, "big"), bool(bits & _SETTLED)),
                    deadline,
                    previous_status,
                    bool(bits & _PREVIOUS_MEMBER),
                    (previous_vote.to_bytes(32, "big"), bool(bits & _PREVIOUS_SETTLED)),
                    previous_deadline,
                )
            )
        )
    return views
