"""Chain fixtures shared by every ledger test: one behaviour suite, three backends.

``chain`` is parametrized over the embedded eth-tester chain, ``devchain`` (the embedded chain
served over HTTP from a background thread), a real ``anvil`` process and a real Hardhat
Network (``hardhat node``). The backends are
session-scoped; each test runs between ``evm_snapshot`` and ``evm_revert``, so tests start
from the same state without paying for a fresh chain. Use ``chain``, ``accounts`` and
``deploy`` in contract-integration tests as well.

When anvil is missing, its tests skip with the reason outside CI and FAIL when ``CI=true``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from support.rounds import RoundKit
from support.task import TASK_DEFAULTS, make_task_config
from support.tools import require_tool
from web3.contract import Contract

from flchain.errors import LedgerError
from flchain.ledger.anvil import AnvilProcess
from flchain.ledger.chain import Chain
from flchain.ledger.contracts import SLASHER_ROLE, TrainingTask
from flchain.ledger.deploy import Deployment, deploy_stack, register_all
from flchain.ledger.devchain import DevChain
from flchain.ledger.nodes import GethProcess, HardhatProcess, NodeProcess

FIXTURES = Path(__file__).parent / "fixtures"
NUM_ACCOUNTS = 20
BACKENDS = [
    "embedded",
    "devchain",
    pytest.param("anvil", marks=pytest.mark.anvil),
    pytest.param("hardhat", marks=pytest.mark.hardhat),
    pytest.param("geth", marks=pytest.mark.geth),
]
#: The URL of the session's geth, once started (it is the label of its chains).
GETH_LABEL: dict[str, str] = {}


@pytest.fixture(scope="session")
def fixture_artifact() -> dict[str, Any]:
    """The compiled test-only ``ChainFixture`` contract."""
    return json.loads((FIXTURES / "ChainFixture.json").read_text())


@pytest.fixture(scope="session")
def devchain_url() -> Iterator[str]:
    """URL of a devchain served from a background thread for the whole session."""
    with DevChain(port=0, num_accounts=NUM_ACCOUNTS) as server:
        yield server.url


def _served(process: type[NodeProcess]) -> Iterator[str]:
    """URL of a real node process of this kind for the whole session (skip/fail when its
    binary is missing, as ``require_tool`` says; fail when it does not start)."""
    binary = process.find_binary()
    require_tool(
        binary is not None and binary.exists(), f"{process.name} not found", process.install_hint
    )
    try:
        with process(accounts=NUM_ACCOUNTS) as node:
            yield node.url
    except LedgerError as exc:
        pytest.fail(f"{process.name} did not start: {exc}")


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    """URL of a real anvil process for the whole session."""
    yield from _served(AnvilProcess)


@pytest.fixture(scope="session")
def hardhat_url() -> Iterator[str]:
    """URL of a real Hardhat Network (``hardhat node``) for the whole session."""
    yield from _served(HardhatProcess)


@pytest.fixture(scope="session")
def geth_url() -> Iterator[str]:
    """URL of a real ``geth --dev`` for the whole session (its dev-mnemonic accounts funded)."""
    for url in _served(GethProcess):
        GETH_LABEL["url"] = url
        yield url


@pytest.fixture(scope="session")
def rpc_url(request: pytest.FixtureRequest) -> str:
    """URL of a JSON-RPC backend; parametrize with ``RPC_BACKENDS`` (indirect)."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(scope="session", params=BACKENDS)
def session_chain(request: pytest.FixtureRequest) -> Chain:
    """One long-lived :class:`Chain` per backend."""
    if request.param == "embedded":
        return Chain.embedded(NUM_ACCOUNTS)
    url = request.getfixturevalue(f"{request.param}_url")
    return Chain.connect(url, num_accounts=NUM_ACCOUNTS, receipt_timeout=30)


@pytest.fixture
def chain(session_chain: Chain) -> Iterator[Chain]:
    """The backend's chain, reverted to its state before the test afterwards (geth has no
    snapshots: there tests share one growing chain, each on contracts it deploys itself)."""
    if session_chain.label == GETH_LABEL.get("url"):
        yield session_chain
        return
    snapshot = session_chain.snapshot()
    yield session_chain
    session_chain.set_automine(True)  # in case a test stopped it
    session_chain.revert(snapshot)


@pytest.fixture
def accounts(chain: Chain) -> list[LocalAccount]:
    """The chain's pre-funded local accounts (``accounts[0]`` deploys by default)."""
    return chain.accounts


@pytest.fixture
def deploy(chain: Chain) -> Callable[..., Contract]:
    """``deploy(artifact, *args, sender=None)``: deploy on ``chain`` from ``accounts[0]``."""

    def _deploy(artifact: Any, *args: Any, sender: LocalAccount | None = None) -> Contract:
        return chain.deploy(artifact, sender or chain.accounts[0], *args)

    return _deploy


@pytest.fixture
def fixture_contract(deploy: Callable[..., Contract], fixture_artifact: dict[str, Any]) -> Contract:
    """A fresh ``ChainFixture`` with ``counter == 5``, deployed by ``accounts[0]``."""
    return deploy(fixture_artifact, 5)


# --- concurrency helpers (factories as fixtures, so any test module here can use them) -------


def _send_concurrently_impl(
    chain: Chain, contract: Contract, senders: list[Any], threads_per_sender: int, each: int
) -> list[Any]:
    receipts: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(account: Any) -> None:
        try:
            for _ in range(each):
                receipt = chain.transact(contract.functions.increment(1), account)
                with lock:
                    receipts.append(receipt)
        except BaseException as exc:  # surfaced below, with the thread's traceback
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(account,))
        for account in senders
        for _ in range(threads_per_sender)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return receipts


def _assert_exactly_once_impl(chain: Chain, receipts: list[Any], start: dict[str, int]) -> None:
    by_sender: dict[str, list[int]] = {}
    for receipt in receipts:
        tx = chain.w3.eth.get_transaction(receipt["transactionHash"])
        by_sender.setdefault(tx["from"], []).append(tx["nonce"])
    for sender, nonces in by_sender.items():
        assert sorted(nonces) == list(range(start[sender], start[sender] + len(nonces)))
        # Exactly these transactions, no duplicates and nothing extra, reached the chain.
        assert chain.w3.eth.get_transaction_count(sender) == start[sender] + len(nonces)


@pytest.fixture
def send_concurrently() -> Callable[..., list[Any]]:
    """``send_concurrently(chain, contract, senders, threads_per_sender, each)``: receipts of
    ``increment(1)`` sent from several threads per account."""
    return _send_concurrently_impl


@pytest.fixture
def assert_exactly_once() -> Callable[..., None]:
    """``assert_exactly_once(chain, receipts, start_nonces)``: per sender, the receipts' nonces
    are consecutive from the start nonce and no other transaction reached the chain."""
    return _assert_exactly_once_impl


# --- contract-suite fixtures: a deployed FLChain stack and round-driving helpers ---------------

MIN_STAKE = 1_000
UNBONDING_BLOCKS = 61  # the minimum the suite task accepts: a round + 1 + an attest phase


class TaskKit(RoundKit):
    """A deployed stack with registered participants, plus the round moves of
    :class:`~support.rounds.RoundKit` (sent through the task wrapper).

    ``participants`` are registered with ``MIN_STAKE``; ``outsider`` is funded but not
    registered; ``admin`` deployed everything and owns the task. Test modules reach the
    suite's constants through it (``kit.defaults``...), never by importing conftest.
    """

    defaults = TASK_DEFAULTS
    min_stake = MIN_STAKE
    unbonding_blocks = UNBONDING_BLOCKS
    make_config = staticmethod(make_task_config)

    def __init__(self, chain: Chain, stack: Deployment, participants: list[LocalAccount]) -> None:
        super().__init__(chain, stack.task, participants)
        self.stack = stack
        self.token, self.registry = stack.token, stack.registry
        self.admin = stack.admin
        self.participants: list[LocalAccount] = participants
        self.config = self.task.config()

    def with_task(self, fund: int | None = None, **overrides: Any) -> TaskKit:
        """The same token, registry and participants with a fresh task funded with ``fund``
        (default: every round's budget)."""
        config = make_task_config(**overrides)
        task = TrainingTask.deploy_task(
            self.chain, self.admin, config, self.registry.address, self.token.address
        )
        self.registry.grant_role(self.admin, SLASHER_ROLE, task.address)
        funding = config.round_budget * config.rounds if fund is None else fund
        self.token.mint(self.admin, self.admin.address, funding)
        self.token.approve(self.admin, task.address, funding)
        task.fund(self.admin, funding)
        stack = Deployment(self.token, self.registry, task, self.admin)
        return TaskKit(self.chain, stack, self.participants)


@pytest.fixture(scope="session")
def task_session() -> TaskKit:
    """One embedded chain with a stack, ten registered participants and a task whose round 0
    has just started (deployed after the registrations, so its commit phase is all ahead)."""
    chain = Chain.embedded(NUM_ACCOUNTS)
    admin, participants = chain.accounts[0], chain.accounts[1:11]
    stack = deploy_stack(
        chain,
        admin,
        config=make_task_config(),
        min_stake=MIN_STAKE,
        unbonding_blocks=UNBONDING_BLOCKS,
        mint_to=[a.address for a in [*participants, chain.accounts[-1]]],
    )
    register_all(stack, participants)
    return TaskKit(chain, stack, participants).with_task()


@pytest.fixture
def kit(task_session: TaskKit) -> Iterator[TaskKit]:
    """The session's :class:`TaskKit` on the embedded chain, reverted after the test."""
    snapshot = task_session.chain.snapshot()
    yield task_session
    task_session.chain.revert(snapshot)
