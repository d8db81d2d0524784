"""A federation across hosts: each participant on its own network host with its own Kubo daemon.

A private test network of Linux network namespaces (``ip netns``), one bridge and a veth pair
per host, with no route anywhere else: a chain host (anvil, and the task owner's Kubo) and three
participant hosts, each running ``flchain node run --ipfs-api`` against only its own daemon.
The daemons share a swarm key and are peered with each other; nothing is shared on disk but the
read-only code. The assertions read the chain and the daemons: every round finalizes with every
update accepted, committee members hold the other hosts' updates (fetched over IPFS: they had no
other way to get them), and every host's daemon ends with the final global model.

Needs root, iproute2, anvil and Kubo: skipped without them, failed under CI=true.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
from kubo_daemon import KuboDaemon, find_ipfs, in_netns, new_swarm_key

from flchain.ledger.accounts import DEV_MNEMONIC, account_from_mnemonic
from flchain.ledger.anvil import find_anvil
from flchain.ledger.chain import Chain
from flchain.ledger.contracts import TrainingTask
from flchain.storage import KuboStore

PARTICIPANTS, ROUNDS = 3, 2
SUBNET = "10.77.0"
CHAIN_IP = f"{SUBNET}.1"
RPC_PORT = 8545
SWARM_PORT = 4001
TIMEOUT = 600.0

CONFIG = f"""\
name = "multihost"
[data]
dataset = "digits"
partition = "iid"
[training]
model = "mlp"
epochs = 1
batch_size = 16
lr = 0.1
[aggregation]
rule = "median"
params = {{}}
[ledger]
rounds = {ROUNDS}
committee_size = 3
quorum = 2
commit_blocks = 90    # closes early once all three committed; long for the nodes to start
reveal_blocks = 16
attest_blocks = 24
max_participants = {PARTICIPANTS}
min_reveals = 2
"""

pytestmark = [pytest.mark.anvil, pytest.mark.kubo, pytest.mark.slow]


def _require(ok: bool, reason: str) -> None:
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the multi-host federation")
    pytest.skip(reason)


def flchain(*args: str) -> list[str]:
    return [sys.executable, "-m", "flchain.cli.app", *args]


@dataclass
class Host:
    """One network namespace with an address on the test bridge."""

    netns: str
    ip: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popen(self, command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *command],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.processes.append(proc)
        return proc

    def run(self, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *command],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip


class PrivateNetwork:
    """Namespaces ``<tag>s`` (the switch: a bridge) and one per host, veth pairs between them.

    No host has a default route, so no packet can leave for a public address at all.
    """

    def __init__(self, names: list[str]) -> None:
        self.tag = f"flc{os.getpid() % 0xFFFFF:x}"
        self.switch = f"{self.tag}s"
        self.hosts = {n: Host(f"{self.tag}{n}", f"{SUBNET}.{i + 1}") for i, n in enumerate(names)}

    def __enter__(self) -> PrivateNetwork:
        try:
            self._ip("netns", "add", self.switch)
            self._ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            self._ip("-n", self.switch, "link", "set", "br0", "up")
            for i, host in enumerate(self.hosts.values()):
                port = f"v{self.tag}{i}"[-15:]
                self._ip("netns", "add", host.netns)
                self._ip("-n", host.netns, "link", "set", "lo", "up")
                self._ip("-n", host.netns, "link", "add", "eth0", "type", "veth",
                         "peer", "name", port, "netns", self.switch)  # fmt: skip
                self._ip("-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
                self._ip("-n", host.netns, "link", "set", "eth0", "up")
                self._ip("-n", self.switch, "link", "set", port, "master", "br0")
                self._ip("-n", self.switch, "link", "set", port, "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def __exit__(self, *exc: object) -> None:
        for host in self.hosts.values():
            for proc in host.processes:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        for name in [h.netns for h in self.hosts.values()] + [self.switch]:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@dataclass
class Federation:
    url: str  # the chain, as reached from inside the chain host's namespace
    chain_netns: str
    task: str
    daemons: dict[str, KuboDaemon]  # by host name
    accounts: dict[str, str]  # participant host name -> address
    logs: str


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    _require(os.geteuid() == 0, "network namespaces need root")
    _require(shutil.which("ip") is not None, "iproute2 (ip) is not installed")
    anvil, ipfs = find_anvil(), find_ipfs()
    _require(anvil is not None and anvil.exists(), "anvil not found (npm ci)")
    _require(ipfs is not None and ipfs.exists(), "Kubo not found (scripts/install_tools.sh)")
    assert anvil is not None and ipfs is not None
    work = tmp_path_factory.mktemp("multihost")
    names = ["chain", *(f"p{i}" for i in range(PARTICIPANTS))]
    owner, *members = [account_from_mnemonic(DEV_MNEMONIC, i) for i in range(PARTICIPANTS + 1)]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    for var in ("FLCHAIN_STORE", "FLCHAIN_IPFS_API", "FLCHAIN_TASK", "FLCHAIN_RPC_URL"):
        env.pop(var, None)

    with PrivateNetwork(names) as net:
        chain_host = net.hosts["chain"]
        url = f"http://{CHAIN_IP}:{RPC_PORT}"
        chain_host.popen(
            [str(anvil), "--host", CHAIN_IP, "--port", str(RPC_PORT), "--mnemonic", DEV_MNEMONIC,
             "--accounts", str(PARTICIPANTS + 1), "--block-time", "1", "--silent"],
            work / "anvil.log", env,
        )  # fmt: skip
        _wait_for_chain(chain_host.netns, url)

        key = new_swarm_key()
        daemons = {
            n: KuboDaemon(work / f"ipfs-{n}", h.ip, swarm_key=key, swarm_port=SWARM_PORT,
                          netns=h.netns, binary=ipfs).init()
            for n, h in net.hosts.items()
        }  # fmt: skip
        for n, d in daemons.items():  # every daemon peers with every other one
            d.peers = [(o.peer_id, f"/ip4/{o.host}/tcp/{SWARM_PORT}") for m, o in daemons.items()
                       if m != n]  # fmt: skip
            d.init().start()
        try:
            created = chain_host.run(
                flchain("task", "create", str(_config(work)), "--json",
                        "--rpc-url", url, "--ipfs-api", daemons["chain"].api,
                        *[x for m in members for x in ("--mint-to", m.address)]),
                env | {"FLCHAIN_KEY": owner.key.to_0x_hex()},
            )  # fmt: skip
            assert created.returncode == 0, created.stderr + _logs(work)
            task = json.loads(created.stdout)["task"]
            nodes = []
            for i, account in enumerate(members):
                name = f"p{i}"
                nodes.append(net.hosts[name].popen(
                    flchain("node", "run", "--task", task, "--rpc-url", url,
                            "--ipfs-api", daemons[name].api, "--shard", str(i),
                            "--shards", str(PARTICIPANTS), "--state-dir", str(work / name),
                            "--timeout", str(TIMEOUT)),
                    work / f"node-{name}.log", env | {"FLCHAIN_KEY": account.key.to_0x_hex()},
                ))  # fmt: skip
            keeper = chain_host.popen(
                flchain("task", "keep", "--task", task, "--rpc-url", url,
                        "--timeout", str(TIMEOUT)),
                work / "keeper.log", env | {"FLCHAIN_KEY": owner.key.to_0x_hex()},
            )  # fmt: skip
            deadline = time.monotonic() + TIMEOUT + 60
            codes = []
            for proc in [*nodes, keeper]:
                try:
                    codes.append(proc.wait(max(1.0, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    codes.append(-1)
            assert codes == [0] * (PARTICIPANTS + 1), f"exit codes {codes}\n{_logs(work)}"
            yield Federation(
                url, chain_host.netns, task, daemons,
                {f"p{i}": m.address for i, m in enumerate(members)}, _logs(work),
            )  # fmt: skip
        finally:
            for d in daemons.values():
                d.stop()


def _wait_for_chain(netns: str, url: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    for _ in range(300):
        try:
            with in_netns(netns):
                if requests.post(url, json=body, timeout=1).ok:
                    return
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError(f"anvil did not answer on {url}")


def _config(work: Path) -> Path:
    path = work / "task.toml"
    path.write_text(CONFIG)
    return path


def _logs(work: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted(work.glob("*.log")))  # fmt: skip


def _task(fed: Federation) -> TrainingTask:
    return TrainingTask(Chain.connect(fed.url, accounts=[]), fed.task)


def test_every_round_finalized_with_every_update(federation: Federation) -> None:
    with in_netns(federation.chain_netns):
        task = _task(federation)
        finalized = task.finalized_events()
        reveals = task.revealed_events()
        assert task.finalized_rounds() == ROUNDS == len(finalized), federation.logs
        assert not task.expired_events()
    for r in range(ROUNDS):
        assert {e.account for e in reveals if e.round == r} == set(federation.accounts.values())
    # The reports (fetched through the chain host's daemon) reject nobody: every committee
    # member got every update over IPFS.
    with in_netns(federation.chain_netns), KuboStore(federation.daemons["chain"].api) as store:
        for event in finalized:
            report = store.get(event.report_cid)
            assert b"unavailable" not in report, report


def test_committee_members_fetched_the_other_hosts_updates(federation: Federation) -> None:
    with in_netns(federation.chain_netns):
        task = _task(federation)
        reveals, attested = task.revealed_events(), task.attested_events()
    host_of = {address: name for name, address in federation.accounts.items()}
    checked = 0
    for vote in attested:
        member = host_of[vote.member]
        daemon = federation.daemons[member]
        for reveal in (e for e in reveals if e.round == vote.round and e.account != vote.member):
            # offline: held by the member's own daemon, which could only have fetched it
            stat = daemon.rpc("block/stat", reveal.cid, offline="true")
            assert stat["Key"], (member, reveal.cid)
            checked += 1
    assert checked >= ROUNDS * 2 * (PARTICIPANTS - 1)  # a quorum of two per round, at least


def test_every_host_ends_with_the_final_global_model(federation: Federation) -> None:
    with in_netns(federation.chain_netns):
        task = _task(federation)
        final = task.finalized_events()[-1]
        assert task.model_cid() == final.model_cid
    for name, daemon in federation.daemons.items():
        if name != "chain":  # every participant sits on the committee (3 of 3) and stored it
            assert daemon.rpc("block/stat", final.model_cid, offline="true")["Key"], name
        # ... and any host, the owner's included, reads it through its own daemon.
        with in_netns(daemon.netns), KuboStore(daemon.api, fetch_timeout=30) as store:
            data = store.get(final.model_cid)
        assert hashlib.sha256(data).digest() == bytes(final.model_digest), name


def test_daemons_only_ever_talked_to_test_hosts(federation: Federation) -> None:
    hosts = {d.host for d in federation.daemons.values()}
    ids = {d.peer_id for d in federation.daemons.values()}
    for daemon in federation.daemons.values():
        peers = daemon.rpc("swarm/peers")["Peers"] or []
        assert {p["Peer"] for p in peers} <= ids - {daemon.peer_id}, peers
        assert {p["Addr"].split("/")[2] for p in peers} <= hosts, peers
        known = daemon.rpc("swarm/addrs")["Addrs"] or {}
        assert set(known) <= ids, known
