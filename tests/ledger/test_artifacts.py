"""The committed contract artifacts: fresh, well-formed, deployable, and behaving as documented.

Uses plain web3 on eth-tester (no FLChain chain layer), so a failure here points at the
contracts or their artifacts, not at the Python wrappers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode
from eth_tester import EthereumTester
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak
from support.task import make_task_config
from support.tools import require_tool
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract

from flchain.errors import ContractRevert
from flchain.ledger import contract_errors, contract_types
from flchain.ledger.abi import CommitmentFlag, Event, Struct, field_name
from flchain.ledger.contract_types import Committed, Phase, RoundStarted, StepView, TaskParameters
from flchain.ledger.merkle import RewardTree

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "flchain" / "ledger" / "artifacts"
DEPLOYABLE = ["FLToken", "ParticipantRegistry", "TrainingTask"]
CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def artifact(name: str) -> dict[str, Any]:
    return json.loads((ARTIFACTS / f"{name}.json").read_text())


# --- freshness and format -------------------------------------------------------------------


def test_committed_artifacts_match_the_sources() -> None:
    require_tool(
        shutil.which("node") is not None and (ROOT / "node_modules" / "solc").is_dir(),
        "node or node_modules/solc missing: cannot recompile the contracts",
        "run `npm ci`",
    )
    script = ROOT / "scripts" / "compile_contracts.py"
    done = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_artifacts_have_the_documented_shape() -> None:
    names = sorted(p.stem for p in ARTIFACTS.glob("*.json"))
    assert set(DEPLOYABLE) | {"IParticipantRegistry", "ITrainingTask"} <= set(names)
    for name in names:
        data = artifact(name)
        assert set(data) == {
            "abi",
            "bytecode",
            "compiler",
            "contractName",
            "deployedBytecode",
            "sourceHash",
            "sourceName",
        }
        assert data["contractName"] == name
        assert data["compiler"]["version"].startswith("0.8.37+")
        assert data["compiler"]["settings"]["evmVersion"] == "prague"
        assert len(bytes.fromhex(data["sourceHash"])) == 32
        is_interface = name.startswith("I") and name[1].isupper()
        assert (data["bytecode"] == "0x") == is_interface
        # Deterministic formatting: the file is exactly what sorted-key json.dumps produces.
        text = (ARTIFACTS / f"{name}.json").read_text()
        assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"


def test_every_abi_error_has_a_registered_exception() -> None:
    seen = 0
    for path in ARTIFACTS.glob("*.json"):
        for item in json.loads(path.read_text())["abi"]:
            if item["type"] != "error":
                continue
            types = ",".join(i["type"] for i in item["inputs"])
            selector = keccak(text=f"{item['name']}({types})")[:4]
            cls = ContractRevert.class_for_selector(selector)
            assert cls is getattr(contract_errors, item["name"])
            assert cls.arg_names == tuple(i["name"] for i in item["inputs"])
            assert cls.arg_types == tuple(i["type"] for i in item["inputs"])
            assert cls.__doc__
            seen += 1
    names = {cls.__name__ for cls in contract_errors.ALL_ERRORS}
    for expected in (
        "ERC20InsufficientBalance",
        "SafeERC20FailedOperation",
        "AccessControlUnauthorizedAccount",
        "ReentrancyGuardReentrantCall",
        "DigestReplayed",
    ):
        assert expected in names
    assert seen > len(names)  # errors shared by several ABIs map to one class


def _struct_params(params: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for param in params:
        if param["type"] == "tuple":
            yield param
            yield from _struct_params(param["components"])


def test_every_abi_event_and_struct_has_a_generated_dataclass() -> None:
    events, structs = set(), set()
    for path in ARTIFACTS.glob("*.json"):
        for item in json.loads(path.read_text())["abi"]:
            if item["type"] == "event":
                cls = getattr(contract_types, item["name"])
                assert issubclass(cls, Event) and cls.name == item["name"]
                names = [f.name for f in fields(cls)]
                assert names[:2] == ["block_number", "transaction_hash"]
                assert names[2:] == [field_name(i["name"]) for i in item["inputs"]]
                events.add(cls)
            for param in _struct_params(item.get("inputs", []) + item.get("outputs", [])):
                short = param["internalType"].split(".")[-1]
                cls = getattr(contract_types, {"TaskConfig": "TaskParameters"}.get(short, short))
                assert issubclass(cls, Struct)
                assert [f.name for f in fields(cls)] == [
                    field_name(c["name"]) for c in param["components"]
                ]
                types = ",".join(c["type"] for c in param["components"])
                if "tuple" not in types:
                    assert cls.abi_type == f"({types})"
                structs.add(cls)
    assert {"Committed", "RoundFinalized", "Transfer", "RoleGranted"} <= {e.name for e in events}
    assert {TaskParameters, StepView} <= structs
    assert set(contract_types.__all__) >= {c.__name__ for c in events | structs}


@pytest.mark.parametrize("name", ["contract_errors", "contract_types"])
def test_generated_module_is_ruff_clean(name: str) -> None:
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed in this environment (pip install -e '.[test]')")
    module = ROOT / "flchain" / "ledger" / f"{name}.py"
    for args in (["check"], ["format", "--check"]):
        done = subprocess.run([str(ruff), *args, str(module)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


# --- deployment on eth-tester ---------------------------------------------------------------


class Env:
    """A fresh eth-tester chain with FLToken, a registry and helpers to send transactions."""

    def __init__(self) -> None:
        self.tester = EthereumTester()
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        self.accounts = list(self.w3.eth.accounts)
        self.owner = self.accounts[0]
        self.token = self.deploy("FLToken", "FLChain Token", "FLC", self.owner)
        self.registry = self.deploy(
            "ParticipantRegistry", self.token.address, 100, 1000, False, self.owner
        )

    def deploy(self, name: str, *args: Any) -> Contract:
        data = artifact(name)
        factory = self.w3.eth.contract(abi=data["abi"], bytecode=data["bytecode"])
        tx = factory.constructor(*args).transact({"from": self.owner})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=data["abi"])

    def send(self, call: Any, sender: str) -> Any:
        receipt = self.w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}))
        assert receipt["status"] == 1
        return receipt

    def register(self, account: str, stake: int = 1000) -> None:
        self.send(self.token.functions.mint(account, stake), self.owner)
        self.send(self.token.functions.approve(self.registry.address, stake), account)
        self.send(self.registry.functions.register(stake), account)

    def mine(self, blocks: int) -> None:
        self.tester.mine_blocks(blocks)


def reverts_with(call: Callable[[], Any], error: type[ContractRevert]) -> dict[str, Any]:
    """Run ``call``; assert it reverts with the custom ``error`` and return its decoded args."""
    with pytest.raises(TransactionFailed) as info:
        call()
    exc: BaseException | None = info.value
    while exc is not None and not (exc.args and isinstance(exc.args[0], bytes)):
        exc = exc.__context__
    assert exc is not None, f"no revert data in {info.value!r}"
    data: bytes = exc.args[0]
    assert ContractRevert.class_for_selector(data[:4]) is error, data[:4].hex()
    values = Web3().codec.decode(list(error.arg_types), data[4:])
    values = [
        Web3.to_checksum_address(v) if t == "address" else v
        for t, v in zip(error.arg_types, values, strict=True)
    ]
    return dict(zip(error.arg_names, values, strict=True))


def task_config(**overrides: Any) -> tuple[Any, ...]:
    """The suite's task as the constructor's ABI tuple (``overrides`` by snake_case field)."""
    return make_task_config(**{"max_participants": 4, "rounds": 2, **overrides}).as_tuple()


@pytest.fixture
def env() -> Env:
    return Env()


def deploy_task(env: Env, **overrides: Any) -> Contract:
    task = env.deploy(
        "TrainingTask", task_config(**overrides), env.registry.address, env.token.address, env.owner
    )
    role = env.registry.functions.SLASHER_ROLE().call()
    env.send(env.registry.functions.grantRole(role, task.address), env.owner)
    env.send(env.token.functions.mint(env.owner, 10**6), env.owner)
    env.send(env.token.functions.approve(task.address, 10**6), env.owner)
    env.send(task.functions.fund(10**6), env.owner)
    env.send(task.functions.start(), env.owner)
    return task


def test_generated_types_decode_what_the_contract_returns_and_logs(env: Env) -> None:
    task = deploy_task(env)
    config = task.functions.config().call()
    assert TaskParameters.from_tuple(config).as_tuple() == tuple(config) == task_config()
    assert TaskParameters.from_tuple(config).round_blocks == 20 + 20 + 10

    account = env.accounts[1]
    env.register(account)
    digest, salt = keccak(text="d"), keccak(text="s")
    value = commitment(env.w3, task, account, 0, digest, 5, salt)
    receipt = env.send(task.functions.commit(value), account)
    (log,) = task.events.Committed().process_receipt(receipt)
    event = Committed.from_log(log)
    assert event == Committed(
        receipt["blockNumber"], receipt["transactionHash"], 0, account, 0, value
    )
    assert type(event.commitment) is bytes and type(event.transaction_hash) is bytes
    (started,) = task.events.RoundStarted().get_logs(from_block=0)
    assert RoundStarted.from_log(started).round == 0

    view = StepView.from_tuple(task.functions.stepView(account).call())
    assert view.phase is Phase.COMMIT and view.round == 0 and view.active
    assert view.commitment.flags == CommitmentFlag.COMMITTED and view.commitment.exists
    assert view.commitment.hash == value[:24]


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_each_contract_deploys_on_eth_tester(env: Env, name: str) -> None:
    contracts = {"FLToken": env.token, "ParticipantRegistry": env.registry}
    contract = contracts[name] if name in contracts else deploy_task(env)
    code = env.w3.eth.get_code(contract.address)
    # Immutables are patched into the runtime code, so only the length is fixed.
    assert len(code) == len(bytes.fromhex(artifact(name)["deployedBytecode"][2:]))
    assert len(code) <= 24_576  # EIP-170 limit, enforced by every real chain


def test_task_constructor_rejects_a_minority_quorum(env: Env) -> None:
    args = reverts_with(
        lambda: deploy_task(env, committee_size=4, quorum=2), contract_errors.InvalidCommittee
    )
    assert args == {"committeeSize": 4, "quorum": 2}


def test_task_constructor_requires_unbonding_to_outlast_a_round_and_an_attest_phase(
    env: Env,
) -> None:
    # commit 970 + reveal 20 + attest 10 = 1000 blocks a round; + 1 + 10 more to slash in.
    args = reverts_with(
        lambda: deploy_task(env, commit_blocks=970), contract_errors.UnbondingTooShort
    )
    assert args == {"unbondingBlocks": 1000, "required": 1011}


# --- one round through every step -------------------------------------------------------------


def commitment(
    w3: Web3, task: Contract, account: str, rnd: int, digest: bytes, n: int, salt: bytes
) -> bytes:
    """The documented commitment formula, computed off-chain."""
    types = ["uint256", "address", "address", "uint256", "bytes32", "uint256", "bytes32"]
    return keccak(encode(types, [w3.eth.chain_id, task.address, account, rnd, digest, n, salt]))


def test_a_round_commits_reveals_finalizes_and_pays(env: Env) -> None:
    task = deploy_task(env)
    parts = env.accounts[1:5]
    for account in parts:
        env.register(account)
    outsider = env.accounts[6]
    reverts_with(
        lambda: task.functions.commit(b"\x00" * 32).transact({"from": outsider}),
        contract_errors.NotActiveParticipant,
    )

    updates = {
        a: (keccak(text=f"update {a}"), 100 + i, keccak(text=f"salt {a}"))
        for i, a in enumerate(parts)
    }
    for account in parts[:3]:
        digest, n, salt = updates[account]
        value = commitment(env.w3, task, account, 0, digest, n, salt)
        assert value == task.functions.commitmentHash(account, 0, digest, n, salt).call()
        env.send(task.functions.commit(value), account)
    assert reverts_with(
        lambda: task.functions.commit(b"\x01" * 32).transact({"from": parts[0]}),
        contract_errors.AlreadyCommitted,
    ) == {"account": parts[0], "round": 0}
    digest, n, salt = updates[parts[3]]
    env.send(
        task.functions.commit(commitment(env.w3, task, parts[3], 0, digest, n, salt)), parts[3]
    )
    assert task.functions.phase().call() in (0, 1)  # maxParticipants reached: closes this block

    # A reveal that does not match is refused; the committer that never reveals is slashed later.
    digest, n, salt = updates[parts[0]]
    reverts_with(
        lambda: task.functions.reveal(digest, n + 1, salt, CID).transact({"from": parts[0]}),
        contract_errors.CommitmentMismatch,
    )
    for account in parts[:3]:
        digest, n, salt = updates[account]
        env.send(task.functions.reveal(digest, n, salt, CID), account)
    record = task.functions.roundRecord(0).call()
    assert tuple(record[2:4]) == (4, 3)  # commits, reveals

    env.mine(20)  # reveal deadline passes for the silent fourth committer
    assert task.functions.phase().call() == 2  # Attest
    stake_before = env.registry.functions.stakeOf(parts[3]).call()
    env.send(task.functions.slashNonRevealer(0, parts[3]), outsider)
    assert env.registry.functions.stakeOf(parts[3]).call() == stake_before - 30

    members = [a for a in parts if task.functions.isCommitteeMember(0, a).call()]
    assert len(members) == 3 == len(set(task.functions.committeeIndices(0).call()))
    credits = {parts[0]: 500, parts[1]: 300, parts[2]: 200}
    tree = RewardTree(credits)
    result = (b"\x05" * 32, "bafymodel", b"\x06" * 32, "bafyreport", tree.root, 1000)
    result_types = ["(bytes32,string,bytes32,string,bytes32,uint256)"]
    result_hash = keccak(encode(result_types, [result]))
    assert task.functions.hashResult(result).call() == result_hash

    non_member = next(a for a in parts if a not in members)
    reverts_with(
        lambda: task.functions.attest(0, result).transact({"from": non_member}),
        contract_errors.NotCommitteeMember,
    )
    env.send(task.functions.attest(0, result), members[0])
    assert task.functions.currentRound().call() == 0
    env.send(task.functions.attest(0, result), members[1])  # quorum 2 of 3: finalizes
    assert task.functions.currentRound().call() == 1
    assert task.functions.modelDigest().call() == b"\x05" * 32
    assert task.functions.totalCredited().call() == 1000
    env.send(task.functions.attest(0, result), members[2])  # late vote still backs the result

    for account, amount in credits.items():
        before = env.token.functions.balanceOf(account).call()
        env.send(task.functions.claim(0, amount, tree.proof(account)), account)
        assert env.token.functions.balanceOf(account).call() == before + amount
    assert reverts_with(
        lambda: task.functions.claim(0, 500, tree.proof(parts[0])).transact({"from": parts[0]}),
        contract_errors.NothingToClaim,
    ) == {"account": parts[0], "cumulativeAmount": 500, "claimed": 500}

    for member in members:
        env.send(task.functions.settleCommitteeMember(0, member), outsider)
    assert task.functions.feesOwed(members[0]).call() == 100
    assert task.functions.feesReserved().call() == 0

    # A replayed digest is refused in the next round even with a fresh commitment.
    digest, n, salt = updates[parts[0]]
    env.send(
        task.functions.commit(commitment(env.w3, task, parts[0], 1, digest, n, salt)), parts[0]
    )
    env.mine(20)
    assert reverts_with(
        lambda: task.functions.reveal(digest, n, salt, CID).transact({"from": parts[0]}),
        contract_errors.DigestReplayed,
    ) == {"digest": digest}


def test_a_round_without_enough_reveals_expires_and_keeps_the_model(env: Env) -> None:
    task = deploy_task(env)
    account = env.accounts[1]
    env.register(account)
    digest, salt = keccak(text="d"), keccak(text="s")
    env.send(task.functions.commit(commitment(env.w3, task, account, 0, digest, 5, salt)), account)
    reverts_with(
        lambda: task.functions.expireRound().transact({"from": account}),
        contract_errors.RoundNotExpirable,
    )
    env.mine(20)
    env.send(task.functions.reveal(digest, 5, salt, CID), account)  # 1 reveal < minReveals (2)
    env.send(task.functions.expireRound(), env.owner)
    assert task.functions.currentRound().call() == 1
    assert task.functions.finalizedRounds().call() == 0
    assert task.functions.modelDigest().call() == b"\x04" * 32
    assert task.functions.roundRecord(0).call()[5] == 2  # Expired
