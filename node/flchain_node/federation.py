"""A whole incentivized federation in one process: the task owner, N participant nodes, the
embedded chain and store. This is what ``flchain demo`` runs.

Nothing here shortcuts the protocol: every participant is a :class:`ParticipantNode` that
commits, reveals and (when drawn) recomputes and attests through real transactions, and the
owner's keeper slashes non-revealers and settles committees through the contract like anyone
could. The only thing a single process adds is the clock: when no one has anything left to do,
the runner mines blocks up to the next phase deadline.
"""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from flchain.config import AggregationConfig, DataConfig, LedgerConfig, TaskConfig, TrainingConfig
from flchain.errors import ConfigError, ProtocolError
from flchain.learning.aggregation import aggregator_from_config
from flchain.learning.attacks import attack_named
from flchain.learning.codec import decode_model
from flchain.learning.models import build_model
from flchain.learning.simulation import SimConfig, reference_train_config
from flchain.learning.training import client_seed, evaluate
from flchain.learning.validation import validation_slice
from flchain.ledger.chain import Chain, Outbox
from flchain.ledger.contracts import (
    Committed,
    CommitteeMemberSettled,
    NonRevealerSlashed,
    Phase,
    RoundStatus,
    Settlement,
    TrainingTask,
)
from flchain.ledger.deploy import Deployment, register_all
from flchain.ledger.devchain import BlockPass
from flchain.protocol.committee import SharedRecomputation
from flchain.protocol.rounds import round_start_bound
from flchain.protocol.task import federated_data, train_config
from flchain.storage import CachedStore, ContentStore, LocalStore, WriteBehindStore
from flchain_node.factory import build_participant, shard_trainer, task_model
from flchain_node.owner import Keeper, create_task
from flchain_node.participant import ParticipantNode, StepReport, UpdateSource
from flchain_node.pool import PooledTrainer, TrainingPool, poolable
from flchain_node.trainer import NODE_ATTACKS, Attacker, LocalTrainer

ROLES = ("honest", "attacker", "free_rider", "dropout")
#: The task owner's own node under ``fltrust``: it trains on the root set and earns nothing.
REFERENCE = "reference"
TOKEN = 10**18


@dataclass(frozen=True)
class DemoConfig:
    """A demo federation: who takes part and how they behave.

    Participants ``0 .. attackers-1`` attack, the next ``free_riders`` send the global model
    back (an empty update), the next ``dropouts`` commit and never reveal; the rest are honest.
    """

    participants: int = 10
    rounds: int = 5
    rule: str = "centered_clip"
    rule_params: dict[str, float] = field(default_factory=dict)
    attackers: int = 2
    attack: str = "sign_flip"
    free_riders: int = 1
    dropouts: int = 1
    dataset: str = "mnist"
    partition: str = "iid"
    model: str = "mlp"
    committee_size: int = 3
    quorum: int = 2
    epochs: int = 2
    batch_size: int = 16
    lr: float = 0.1
    seed: int = 0
    #: ``[training] server_optimizer`` and ``server_lr`` (the lr only with an optimizer).
    server_optimizer: str = "none"
    server_lr: float = 1.0
    #: ``[training] algorithm`` ("fedavg", "fedprox", "scaffold").
    algorithm: str = "fedavg"
    #: ``[aggregation] validation_per_class``: the task's public validation set (0: none).
    validation_per_class: int = 0
    #: ``fltrust``: the owner's root data set, this many held-out samples of each class (after
    #: the validation set's); the owner runs one more, honest node on it, whose address is the
    #: task's ``aggregation.reference_account``.
    root_per_class: int = 10
    #: ``[training] codec`` and ``topk_fraction`` (how updates are encoded).
    codec: str = "int32"
    topk_fraction: float = 0.0
    #: ``[training] dp`` (client-level differential privacy; empty: off).
    dp: dict[str, float] = field(default_factory=dict)
    #: Worker processes that train honest participants ahead of their steps (0: each node
    #: trains in its own step). Not part of the task: the updates are the same either way.
    workers: int = 0

    @classmethod
    def honest_fedavg(cls, participants: int, rounds: int, **overrides: Any) -> DemoConfig:
        """Every participant honest, plain FedAvg: the federation benchmarks compare with
        other systems (the demo's defaults otherwise, e.g. MNIST-5k and its training)."""
        return cls(
            participants=participants,
            rounds=rounds,
            rule="fedavg",
            rule_params={},
            attackers=0,
            free_riders=0,
            dropouts=0,
            **overrides,
        )

    def roles(self) -> list[str]:
        bad = self.attackers + self.free_riders + self.dropouts
        if bad >= self.participants:
            raise ConfigError(
                f"{bad} attackers, free-riders and dropouts leave no honest participant among "
                f"{self.participants}"
            )
        attack_named(self.attack, NODE_ATTACKS)  # raises ConfigError naming the known ones
        if self.algorithm == "scaffold" and (self.attackers or self.free_riders):
            raise ConfigError(
                "a scaffold demo runs without attackers and free-riders "
                "(--attackers 0 --free-riders 0): they do not send control variates"
            )
        if self.rule == "fltrust" and self.root_per_class < 1:
            raise ConfigError("fltrust needs the owner's root data set: root_per_class >= 1")
        needed = aggregator_from_config(self.rule, self.rule_params).min_inputs()
        valid = self.participants - self.free_riders - self.dropouts
        if valid < needed:
            raise ConfigError(
                f"{self.rule} needs {needed} valid updates a round, but only {valid} of "
                f"{self.participants} participants send one (free-riders and dropouts do not)"
            )
        counts = (self.attackers, self.free_riders, self.dropouts)
        roles = [r for r, n in zip(ROLES[1:], counts, strict=True) for _ in range(n)]
        return roles + ["honest"] * (self.participants - len(roles))

    @property
    def reference(self) -> bool:
        """Whether the owner runs a reference node (the rule is ``fltrust``)."""
        return self.rule == "fltrust"

    def task_config(self, reference_account: str = "") -> TaskConfig:
        """The task; ``reference_account`` is the owner's reference node (``fltrust``)."""
        n = self.participants + self.reference
        return TaskConfig(
            name="flchain-demo",
            data=DataConfig(dataset=self.dataset, partition=self.partition, seed=self.seed),
            training=TrainingConfig(
                model=self.model,
                algorithm=self.algorithm,
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=self.lr,
                seed=self.seed,
                codec=self.codec,
                topk_fraction=self.topk_fraction,
                dp=dict(self.dp),
                **(
                    {}
                    if self.server_optimizer == "none"
                    else {"server_optimizer": self.server_optimizer, "server_lr": self.server_lr}
                ),
            ),
            aggregation=AggregationConfig(
                rule=self.rule,
                params=dict(self.rule_params),
                validation_per_class=self.validation_per_class,
                reference_account=reference_account,
            ),
            ledger=LedgerConfig(
                rounds=self.rounds,
                committee_size=min(self.committee_size, n),
                quorum=min(self.quorum, n),
                max_participants=n,
                min_reveals=max(1, (n - self.dropouts) // 2),
                commit_blocks=4 * n + 20,
                reveal_blocks=4 * n + 20,
                attest_blocks=4 * n + 20,
            ),
        ).validate()


@dataclass
class RoundRow:
    """One round of the demo as the report and plots show it."""

    round: int
    status: str
    accuracy: float | None
    loss: float | None
    accepted: list[str]
    rejected: dict[str, str]
    rewards: dict[str, int]
    slashes: dict[str, int]
    gas: dict[str, int]
    seconds: dict[str, float]
    model_cid: str = ""


#: Phases whose due nodes step in one ``BlockPass`` on the embedded chain.
_PASS_PHASES = (Phase.COMMIT, Phase.REVEAL, Phase.ATTEST)


@dataclass
class FederationResult:
    config: DemoConfig
    roles: dict[str, str]
    addresses: dict[str, str]
    rounds: list[RoundRow]
    claimed: dict[str, int]
    stakes: dict[str, int]
    initial_accuracy: float
    wall_seconds: float
    store_dir: str

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class Federation:
    """Sets up the chain, store, contracts and nodes of a :class:`DemoConfig`, then runs it."""

    def __init__(
        self,
        demo: DemoConfig,
        *,
        chain: Chain | None = None,
        store: ContentStore | None = None,
        work_dir: Path | None = None,
    ) -> None:
        self.demo = demo
        accounts = demo.participants + 1  # the owner, participants
        self.chain = chain or Chain.embedded(num_accounts=accounts)
        if len(self.chain.accounts) < accounts:
            raise ConfigError(f"the chain has {len(self.chain.accounts)} accounts; need {accounts}")
        self._own_dir = work_dir is None and store is None
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="flchain-demo-"))
        # Every node, the owner and the committee share this store in this one process: what
        # one put or got is served to the others from memory (see CachedStore). Its own
        # scratch store also writes behind the round, in a process of its own (see
        # WriteBehindStore): it is flushed before a CID it holds reaches the chain (the task's
        # creation, a reveal, a vote) or a row, so no one elsewhere is told of content not
        # yet there. A store given may have other readers: it is written at once.
        if store is None:
            store = LocalStore(self.work_dir / "store", durable=False)
            if "fork" in multiprocessing.get_all_start_methods():  # its writer is forked
                store = WriteBehindStore(store)
        self.store = CachedStore(store)
        self.owner: LocalAccount = self.chain.accounts[0]
        # fltrust: the owner's own node sends the reference update (the protocol refuses a
        # reference account that is not the task's owner), so it registers like the others
        owner_node = [self.owner] if demo.reference else []
        self.accounts: list[LocalAccount] = list(self.chain.accounts[1:accounts]) + owner_node
        reference = self.owner.address if demo.reference else ""
        self.config = demo.task_config(reference)  # config errors first, then the roles'
        self.roles = demo.roles() + [REFERENCE] * demo.reference
        self.fed = federated_data(self.config.data, demo.participants)
        # On the embedded chain a phase's transactions share blocks (see _pass), and so do
        # set-up's batches (mints, approvals, registrations: one block each, not one per
        # transaction).
        self.block_pass = BlockPass.on(self.chain.w3.provider)
        if self.block_pass is not None:
            self.deployment = self.block_pass.run([self._deploy])[0]
        else:
            self.deployment = self._deploy()
        # On a JSON-RPC chain a phase's commits (reveals) go out together instead: each node
        # queues its transaction here, and the pass over the nodes ends with one flush (one
        # JSON-RPC batch; the node mines many per block). A list of node steps run one by one
        # would wait for one receipt, and on anvil one block, per transaction.
        self.outbox = Outbox(self.chain) if self.block_pass is None else None
        sources = [self._source(i) for i in range(len(self.roles))]
        self.store.flush()  # no write in flight while the pool's workers fork
        self.pool = self._pool(sources)
        # The members are in this process and read this store: a round's outcome is computed
        # once for all of them (each still reads its inputs from the chain; see the class).
        self.recomputation = SharedRecomputation()
        self._prefetched: set[int] = set()
        self._committees: dict[int, set[str]] = {}
        #: Round -> every node's commit index in it, read by the reveal pass's step views.
        self._commit_indices: dict[int, dict[str, int]] = {}
        self.nodes = [self._node(i, a, sources[i]) for i, a in enumerate(self.accounts)]
        self.role_of = {n.address: r for n, r in zip(self.nodes, self.roles, strict=True)}

    def _deploy(self) -> Deployment:
        created = create_task(
            self.chain,
            self.owner,
            self.config,
            self.store,
            mint_to=[a.address for a in self.accounts],
        )
        self.manifest = created.manifest
        self.initial_model = build_model(
            self.config.training.model, self.config.data.dataset, seed=self.config.training.seed
        )
        register_all(created.deployment, self.accounts)
        self.keeper = Keeper(created.deployment.task, self.owner)
        return created.deployment

    def _source(self, i: int) -> UpdateSource:
        """What participant ``i`` sends: its shard's honest training, or its role's behaviour."""
        role = self.roles[i]
        if role == REFERENCE:
            source: UpdateSource = self._reference_trainer()
        else:
            honest = shard_trainer(self.config, i, self.demo.participants, data=self.fed)
            source = honest
        if role == "attacker":
            sim = SimConfig(
                rounds=1, train=honest.config, attack=self.demo.attack,
                num_attackers=self.demo.attackers,
            )  # fmt: skip
            source = Attacker(honest, self.demo.attack, sim, participants=self.demo.participants)
        elif role == "free_rider":
            source = Attacker(honest, "free_rider")
        return source

    def _pool(self, sources: list[UpdateSource]) -> TrainingPool | None:
        """Worker processes for the participants whose training can run ahead (see
        :mod:`flchain_node.pool`), when ``workers`` asks for them. Not with client sampling
        (workers would train participants the round leaves out) or SCAFFOLD."""
        training = self.config.training
        if (
            self.demo.workers < 1
            or training.client_fraction < 1
            or training.algorithm == "scaffold"
            or "fork" not in multiprocessing.get_all_start_methods()  # e.g. Windows
        ):
            return None
        trainers = {
            i: s for i, s in enumerate(sources) if isinstance(s, LocalTrainer) and poolable(s)
        }
        if not trainers:
            return None
        pool = TrainingPool(trainers, self.manifest.spec, self.demo.workers, self.store.cid_version)
        for i, trainer in trainers.items():
            sources[i] = PooledTrainer(trainer, pool, i)
        return pool

    def _prefetch(self, round_id: int) -> None:
        """Start round ``round_id``'s pooled training from the model it trains from (what each
        node reads for itself in its step; a node whose model differs trains there)."""
        if self.pool is not None and round_id not in self._prefetched:
            self._prefetched.add(round_id)
            cid = self.nodes[0].view.global_model_cid(round_id)
            self.pool.prefetch(round_id, self.store.get(cid))

    def _may_attest(self, node: ParticipantNode, now: tuple[int, Phase]) -> bool:
        """False for a node outside the committee during the attest phase, which has nothing
        to do there (its late vote on the previous round, if any, came with its first step
        of this round); true otherwise. Saves a view call per non-member and round."""
        round_id, phase = now
        if phase != Phase.ATTEST:
            return True
        members = self._committees.get(round_id)
        if members is None:
            task = self.deployment.task
            indices = task.committee_indices(round_id)
            known = self._commit_indices.get(round_id)
            if known is not None:  # no need to decode the round's commit events
                members = {account for account, index in known.items() if index in indices}
            else:
                since = round_start_bound(self.nodes[0].view.params, task.round_record(round_id))
                events = task.events(Committed, since, round=round_id)
                by_index = {e.index: e.account for e in events}
                members = {by_index[i] for i in indices}
            self._committees[round_id] = members
        return node.address in members

    def _node(self, i: int, account: LocalAccount, source: UpdateSource) -> ParticipantNode:
        dropout = self.roles[i] == "dropout"
        return build_participant(
            self.deployment.task,
            self.store,
            account,
            source,
            manifest=self.manifest,
            reveal=not dropout,
            attest=not dropout,
            recompute=self.recomputation,
            outbox=self.outbox,
        )

    def _reference_trainer(self) -> LocalTrainer:
        """The owner's honest trainer on its root set, with as many local steps as an average
        participant (:func:`~flchain.learning.simulation.reference_train_config`)."""
        demo = self.demo
        root = validation_slice(self.fed.test, demo.root_per_class, demo.validation_per_class)
        assert root is not None  # roles() checked root_per_class >= 1
        cfg = reference_train_config(
            train_config(self.config), [len(c) for c in self.fed.clients], len(root)
        )
        seed = client_seed(self.config.training.seed, self.demo.participants)
        return LocalTrainer(task_model(self.config), root, cfg, seed)

    # --- running ----------------------------------------------------------------------------

    def run(self, on_round: Callable[[RoundRow], None] | None = None) -> FederationResult:
        started = time.perf_counter()
        task = self.deployment.task
        initial_accuracy = evaluate(self.initial_model, self.fed.test).accuracy
        rows: list[RoundRow] = []
        pending = self._fresh_pending()
        round_id = task.current_round()
        # Event-driven: a node is stepped when the task moved to a round or phase in which it
        # has not yet done its part; stepping it again before that would only read the chain
        # to find nothing to do (each step is a view call; at 50 participants a quarter of all
        # steps were such empty ones). ``settled[i]``: the (round, phase) node i is done with.
        settled: dict[int, tuple[int, Phase]] = {}
        now = (round_id, task.phase())
        while True:
            if now[1] == Phase.COMMIT:
                self._prefetch(now[0])
            batched = self.block_pass is not None and now[1] in _PASS_PHASES
            steps = self._pass(now, settled, pending) if batched else []
            if batched and self.pool is not None and now[1] == Phase.ATTEST:
                # the votes may have finalized the round: the next one's training can start
                upcoming = task.current_round()
                if upcoming > now[0] and task.phase() == Phase.COMMIT:
                    self._prefetch(upcoming)
            for i, node in enumerate(self.nodes):
                if batched or settled.get(i) == now or not self._may_attest(node, now):
                    continue
                step = node.step()
                if settles(step):
                    settled[i] = (step.round, step.phase)
                if self.pool is not None and "attest" in step.actions:
                    # the vote may have finalized the round: the next one's training can start
                    # before the rest of this pass steps into it
                    upcoming = task.current_round()
                    if upcoming > step.round and task.phase() == Phase.COMMIT:
                        self._prefetch(upcoming)
                steps.append(step)
            if self.outbox is not None:
                self.outbox.flush()  # before the steps are booked (their gas) or the chain read
            for step in steps:
                self._book(pending, step)
            acted = any(map(did_something, steps)) | self._keeper(pending)
            current = task.current_round()
            if current - len([r for r in rows if r.status == "finalized"]) > 2 * self.demo.rounds:
                raise ProtocolError(
                    f"{current} rounds started but only "
                    f"{sum(r.status == 'finalized' for r in rows)} finalized: the federation "
                    "cannot make progress (too few valid updates or active participants)"
                )
            while round_id < current:  # a round finalized or expired since the last pass
                self.store.flush()  # a row names CIDs: what it names is in the store
                row = self._row(round_id, pending)
                rows.append(row)
                if on_round:
                    on_round(row)
                pending = self._fresh_pending()
                round_id += 1
            now = (current, task.phase())
            if now[1] == Phase.COMPLETED:
                break
            if not acted:
                advance_clock(task)
                now = (current, task.phase())  # a deadline passed: the round cannot change
        # settle the last rounds' committees once their windows have passed
        self.chain.mine(self.config.ledger.attest_blocks + 1)
        self._keeper(pending)
        slashes = self._slashes()
        for row in rows:  # committee settlements land a window after their round's row
            row.slashes = slashes.get(row.round, {})
        # Claims are independent of each other: on the embedded chain they share a block.
        if self.block_pass is not None:
            claims = self.block_pass.run([n.claim for n in self.nodes])
        else:
            claims = [n.claim() for n in self.nodes]
        claimed = {n.address: c for n, c in zip(self.nodes, claims, strict=True)}
        self.store.flush()  # the result names the store's directory: all of it is written
        return FederationResult(
            config=self.demo,
            roles=self.role_of,
            addresses=self.deployment.addresses(),
            rounds=rows,
            claimed=claimed,
            stakes={n.address: self.deployment.registry.stake_of(n.address) for n in self.nodes},
            initial_accuracy=initial_accuracy,
            wall_seconds=time.perf_counter() - started,
            store_dir=str(self.work_dir / "store"),
        )

    def _pass(
        self,
        now: tuple[int, Phase],
        settled: dict[int, tuple[int, Phase]],
        pending: dict[str, Any],
    ) -> list[StepReport]:
        """Steps every node still due in the commit, reveal or attest phase ``now`` (in the
        attest phase: the committee's members), their transactions sharing blocks (see
        :class:`~flchain.ledger.devchain.BlockPass`); the same steps in the same order as one
        by one, with one block for the whole phase instead of one per transaction (and the
        same block, so the same state, for all their reads). Each step's chain time leaves
        out the time it waited for the others.

        The nodes' step views are read in one call (``stepViews``) instead of one each: no
        block is mined before every job has run up to its first receipt wait, so the block
        that call reads is the latest block at each node's step (which each node checks).

        In the attest phase every member votes on that block's state, as members in their own
        processes do when their votes land in one block: a vote after the one that reaches
        quorum lands as a late vote on the finalized round (accepted within its window, as
        when the member votes in the next round's first step)."""
        assert self.block_pass is not None
        due = [
            i
            for i, node in enumerate(self.nodes)
            if settled.get(i) != now and self._may_attest(node, now)
        ]
        if not due:  # everyone did its part of the phase (it waits for its deadline)
            return []
        views = self.deployment.task.step_views([self.nodes[i].address for i in due])
        if now[1] == Phase.REVEAL and len(due) == len(self.nodes):
            # Every node's commitment as the reveal phase starts: which commit index each has
            # in this round, all _may_attest needs to tell the committee's members.
            self._commit_indices[now[0]] = {
                self.nodes[i].address: view.commitment.index
                for i, view in zip(due, views, strict=True)
                if view.commitment.exists and view.commitment.round == now[0]
            }
        jobs = [partial(self.nodes[i].step, view) for i, view in zip(due, views, strict=True)]
        steps = self.block_pass.run(jobs)
        for i, step, parked in zip(due, steps, self.block_pass.parked_seconds, strict=True):
            if "chain" in step.seconds:
                step.seconds["chain"] = max(0.0, step.seconds["chain"] - parked)
            if settles(step):
                settled[i] = (step.round, step.phase)
        pending["seconds"]["chain"] += self.block_pass.mining_seconds
        return steps

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        self.store.close()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    @staticmethod
    def _fresh_pending() -> dict[str, Any]:
        return {"gas": defaultdict(int), "seconds": defaultdict(float), "started": time.time()}

    @staticmethod
    def _book(pending: dict[str, Any], step: StepReport) -> None:
        for action, gas in step.gas.items():
            pending["gas"][action] += gas
        for what, seconds in step.seconds.items():
            pending["seconds"][what] += seconds

    def _keeper(self, pending: dict[str, Any]) -> bool:
        """The owner's upkeep (slashing non-revealers, settling committees); books its gas."""
        gas = self.keeper.step()
        for action, used in gas.items():
            pending["gas"][action] += used
        return bool(gas)

    def _row(self, round_id: int, pending: dict[str, Any]) -> RoundRow:
        task = self.deployment.task
        record = task.round_record(round_id)
        since = round_start_bound(self.nodes[0].view.params, record)
        slashes = self._slashes(since).get(round_id, {})
        seconds = dict(pending["seconds"])
        seconds["wall"] = time.time() - pending["started"]
        if record.status != RoundStatus.FINALIZED:
            return RoundRow(
                round_id, "expired", None, None, [], {}, {}, slashes, dict(pending["gas"]), seconds
            )
        report = self.nodes[0].report_of(round_id)
        state = decode_model(self.store.get(report.model_cid), self.manifest.spec)
        model = task_model(self.config)
        model.load_state_dict(state)
        ev = evaluate(model, self.fed.test)
        return RoundRow(
            round=round_id,
            status="finalized",
            accuracy=ev.accuracy,
            loss=ev.loss,
            accepted=[o.participant for o in report.outcomes if o.accepted],
            rejected={o.participant: o.reason for o in report.outcomes if not o.accepted},
            rewards={o.participant: o.reward for o in report.outcomes if o.reward},
            slashes=slashes,
            gas=dict(pending["gas"]),
            seconds=seconds,
            model_cid=report.model_cid,
        )

    def _slashes(self, since: int = 0) -> dict[int, dict[str, int]]:
        """Stake taken per round and account (non-revealers and failed committee members), in
        events from block ``since`` on."""
        task = self.deployment.task
        out: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for e in task.events(NonRevealerSlashed, from_block=since):
            out[e.round][e.account] += e.amount
        for s in task.events(CommitteeMemberSettled, from_block=since):
            if s.outcome != Settlement.FEE_CREDITED:
                out[s.round][s.member] += s.amount
        return {r: dict(v) for r, v in out.items()}


def with_overrides(demo: DemoConfig, **changes: Any) -> DemoConfig:
    """``demo`` with the given fields changed (``None`` values are ignored)."""
    return replace(demo, **{k: v for k, v in changes.items() if v is not None})


def did_something(step: StepReport) -> bool:
    """Whether a node's step acted (rather than found nothing to do, or its key inactive)."""
    return bool(set(step.actions) - {"inactive"})


#: Per phase, the actions after which a node owes nothing more in that phase of that round.
#: In the attest phase (and once the task completed) a single step always does everything the
#: node can do there: membership is fixed when the reveal phase fixes the seed, and only the
#: member itself votes. An expire that did not happen (another node's came first, or it
#: reverted) leaves the node due: the round only moves on when someone expires it.
DUTIES = {
    Phase.COMMIT: {"commit", "not-sampled", "skipped-privacy", "missed-commit-deadline"},
    Phase.REVEAL: {"reveal", "reveal-refused"},
    Phase.EXPIRABLE: {"expire"},
}


def settles(step: StepReport) -> bool:
    """Whether a node that took ``step`` has nothing left to do until the task's round or
    phase changes (a node that found nothing to do, e.g. a reveal that must wait for the
    commit phase to close, is stepped again)."""
    if step.phase in (Phase.ATTEST, Phase.COMPLETED):
        return True
    return bool(DUTIES.get(step.phase, set()) & set(step.actions))


def advance_clock(task: TrainingTask) -> None:
    """Mine up to just past the current round's next deadline: on a chain that only mines on
    demand (the embedded one), this is the clock when nobody has anything left to do."""
    chain, round_id = task.chain, task.current_round()
    block, record = chain.block_number, task.round_record(round_id)
    deadlines = [record.commit_end, record.reveal_end, task.attest_deadline(round_id)]
    target = min((d for d in deadlines if d >= block), default=block)
    chain.mine(max(1, target - block + 1))
