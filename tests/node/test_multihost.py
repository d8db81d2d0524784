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

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from support.tools import require_tool

from flchain.ledger.contracts import Attested, Committed, Revealed, RoundExpired, RoundFinalized

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
from kubo_daemon import KuboDaemon, find_ipfs, in_netns, new_swarm_key

from flchain.ledger.accounts import DEV_MNEMONIC, account_from_mnemonic
from flchain.ledger.anvil import find_anvil
from flchain.ledger.chain import Chain
from flchain.ledger.contracts import TrainingTask
from flchain.storage import KuboStore

PARTICIPANTS, ROUNDS = 3, 2
CHAIN_SUBNET, IPFS_SUBNET = "10.77.0", "10.78.0"
CHAIN_IP = f"{CHAIN_SUBNET}.1"
RPC_PORT = 8545
SWARM_PORT = 4001
API_PORT = 5001
TIMEOUT = 600.0

CONFIG = """\
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
rounds = {rounds}
committee_size = 3
quorum = 2
commit_blocks = 90    # closes early once all three committed; long for the nodes to start
reveal_blocks = 16
attest_blocks = 40    # finalizes at quorum; long for a fetch that runs out of time
max_participants = 3
min_reveals = 2
"""

pytestmark = [pytest.mark.anvil, pytest.mark.kubo, pytest.mark.slow]


def flchain(*args: str) -> list[str]:
    return [sys.executable, "-m", "flchain_node.cli.app", *args]


@dataclass
class Host:
    """One network namespace with an address on the test bridge."""

    netns: str
    ip: str  # on the chain LAN
    ipfs_ip: str  # on the IPFS LAN
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
    """Namespaces ``<tag>s`` (the switch) and one per host. Two LANs, each a bridge in the
    switch with a veth pair to every host: ``eth0`` on 10.77.0.0/24 carries the chain's JSON-RPC,
    ``eth1`` on 10.78.0.0/24 the IPFS swarm, so a fault can cut one and keep the other.

    No host has a default route, so no packet can leave for a public address at all.
    """

    LANS = (("eth0", "br0", CHAIN_SUBNET), ("eth1", "br1", IPFS_SUBNET))

    _count = itertools.count()

    def __init__(self, names: list[str]) -> None:
        # Unique per network: namespace and interface names are global to the machine.
        self.tag = f"flc{os.getpid() % 0xFFFF:x}{next(self._count) % 10}"
        self.switch = f"{self.tag}s"
        self.hosts = {n: Host(f"{self.tag}{n}", f"{CHAIN_SUBNET}.{i + 1}", f"{IPFS_SUBNET}.{i + 1}")
                      for i, n in enumerate(names)}  # fmt: skip

    def __enter__(self) -> PrivateNetwork:
        try:
            self._ip("netns", "add", self.switch)
            for _, bridge, _ in self.LANS:
                self._ip("-n", self.switch, "link", "add", bridge, "type", "bridge")
                self._ip("-n", self.switch, "link", "set", bridge, "up")
            for i, host in enumerate(self.hosts.values()):
                self._ip("netns", "add", host.netns)
                self._ip("-n", host.netns, "link", "set", "lo", "up")
                for dev, bridge, subnet in self.LANS:
                    port = f"{dev[-1]}{self.tag}{i}"[-15:]
                    self._ip("-n", host.netns, "link", "add", dev, "type", "veth",
                             "peer", "name", port, "netns", self.switch)  # fmt: skip
                    self._ip("-n", host.netns, "addr", "add", f"{subnet}.{i + 1}/24", "dev", dev)
                    self._ip("-n", host.netns, "link", "set", dev, "up")
                    self._ip("-n", self.switch, "link", "set", port, "master", bridge)
                    self._ip("-n", self.switch, "link", "set", port, "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def set_link(self, host: str, dev: str, up: bool) -> None:
        """Unplug (or plug back) one host's cable to one LAN."""
        self._ip("-n", self.hosts[host].netns, "link", "set", dev, "up" if up else "down")

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
    net: PrivateNetwork
    daemons: dict[str, KuboDaemon]  # by host name
    accounts: dict[str, str]  # participant host name -> address
    work: Path
    codes: dict[str, int] = field(default_factory=dict)  # exit code by process name

    def chain(self) -> TrainingTask:
        """The task, read from inside the chain host (call within ``in_netns(chain_netns)``)."""
        return TrainingTask(Chain.connect(self.url, accounts=[]), self.task)

    def logs(self) -> str:
        return _logs(self.work)


#: Called about twice a second while the federation runs; returns True once it is done.
FaultScript = Callable[[Federation], bool]


def _require_tools() -> tuple[Path, Path]:
    require_tool(os.geteuid() == 0, "network namespaces need root", "run as root")
    require_tool(shutil.which("ip") is not None, "iproute2 (ip) is not installed",
                 "apt-get install iproute2")  # fmt: skip
    anvil, ipfs = find_anvil(), find_ipfs()
    require_tool(anvil is not None and anvil.exists(), "anvil not found", "npm ci")
    require_tool(ipfs is not None and ipfs.exists(), "Kubo not found",
                 "scripts/install_tools.sh")  # fmt: skip
    assert anvil is not None and ipfs is not None
    return anvil, ipfs


@contextlib.contextmanager
def launched(work: Path, rounds: int, faults: FaultScript | None = None) -> Iterator[Federation]:
    """Run a whole federation on a fresh private network; yield it once every process ended."""
    anvil, ipfs = _require_tools()
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
            n: KuboDaemon(work / f"ipfs-{n}", h.ipfs_ip, swarm_key=key, swarm_port=SWARM_PORT,
                          api_port=API_PORT, api_host="127.0.0.1", netns=h.netns,
                          binary=ipfs).init()
            for n, h in net.hosts.items()
        }  # fmt: skip
        for n, d in daemons.items():  # every daemon peers with every other one
            d.peers = [(o.peer_id, f"/ip4/{o.host}/tcp/{SWARM_PORT}") for m, o in daemons.items()
                       if m != n]  # fmt: skip
            d.init().start()
        try:
            created = chain_host.run(
                flchain("task", "create", str(_config(work, rounds)), "--json",
                        "--rpc-url", url, "--ipfs-api", daemons["chain"].api,
                        *[x for m in members for x in ("--mint-to", m.address)]),
                env | {"FLCHAIN_KEY": owner.key.to_0x_hex()},
            )  # fmt: skip
            assert created.returncode == 0, created.stderr + _logs(work)
            fed = Federation(
                url, chain_host.netns, json.loads(created.stdout)["task"], net, daemons,
                {f"p{i}": m.address for i, m in enumerate(members)}, work,
            )  # fmt: skip
            procs = {}
            for i, account in enumerate(members):
                name = f"p{i}"
                procs[name] = net.hosts[name].popen(
                    flchain("node", "run", "--task", fed.task, "--rpc-url", url,
                            "--ipfs-api", daemons[name].api, "--shard", str(i),
                            "--shards", str(PARTICIPANTS), "--state-dir", str(work / name),
                            "--timeout", str(TIMEOUT)),
                    work / f"node-{name}.log", env | {"FLCHAIN_KEY": account.key.to_0x_hex()},
                )  # fmt: skip
            procs["keeper"] = chain_host.popen(
                flchain("task", "keep", "--task", fed.task, "--rpc-url", url,
                        "--timeout", str(TIMEOUT)),
                work / "keeper.log", env | {"FLCHAIN_KEY": owner.key.to_0x_hex()},
            )  # fmt: skip
            deadline = time.monotonic() + TIMEOUT + 60
            while time.monotonic() < deadline and any(p.poll() is None for p in procs.values()):
                if faults is not None and faults(fed):
                    faults = None
                time.sleep(0.5)
            fed.codes = {n: (-1 if p.poll() is None else p.returncode) for n, p in procs.items()}
            yield fed
        finally:
            for d in daemons.values():
                d.stop()


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with launched(tmp_path_factory.mktemp("multihost"), ROUNDS) as fed:
        assert set(fed.codes.values()) == {0}, f"exit codes {fed.codes}\n{fed.logs()}"
        yield fed


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


def _config(work: Path, rounds: int) -> Path:
    path = work / "task.toml"
    path.write_text(CONFIG.format(rounds=rounds))
    return path


def _logs(work: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted(work.glob("*.log")))  # fmt: skip


def test_every_round_finalized_with_every_update(federation: Federation) -> None:
    with in_netns(federation.chain_netns):
        task = federation.chain()
        finalized = task.events(RoundFinalized)
        reveals = task.events(Revealed)
        assert task.finalized_rounds() == ROUNDS == len(finalized), federation.logs()
        assert not task.events(RoundExpired)
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
        task = federation.chain()
        reveals, attested = task.events(Revealed), task.events(Attested)
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
        task = federation.chain()
        final = task.events(RoundFinalized)[-1]
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


def test_store_gc_releases_what_the_task_no_longer_needs(federation: Federation) -> None:
    """Last of this federation's tests: it unpins and collects on p0's daemon."""
    with in_netns(federation.chain_netns):
        task = federation.chain()
        final = task.events(RoundFinalized)[-1]
        mine = [e.cid for e in task.events(Revealed) if e.account == federation.accounts["p0"]]
    daemon = federation.daemons["p0"]
    gc = federation.net.hosts["p0"].run(
        flchain("store", "gc", "--task", federation.task, "--rpc-url", federation.url,
                "--ipfs-api", daemon.api, "--retention", "0"),
        dict(os.environ),
    )  # fmt: skip
    assert gc.returncode == 0, gc.stderr
    # retention 0: both rounds are past it; only the newest model and report stay pinned
    assert {f"unpin {cid}" for cid in mine} <= set(gc.stdout.splitlines()), gc.stdout
    assert "removed " in gc.stdout and "unpinned " in gc.stdout, gc.stdout
    pins = set(daemon.rpc("pin/ls", type="recursive")["Keys"])
    assert final.model_cid in pins and final.report_cid in pins
    assert not pins & set(mine)
    assert daemon.rpc("block/stat", final.model_cid, offline="true")["Key"]
    with pytest.raises(requests.HTTPError):  # collected: the daemon no longer holds it
        daemon.rpc("block/stat", mine[0], offline="true")


class CutOffThenRestart:
    """Round 0: p2's IPFS cable is unplugged once p2 has committed (nobody can know its update's
    CID before the reveal, so for the committee this is a host gone right after its reveal; its
    chain cable stays, so it does reveal) and plugged back once the round is closed.
    Round 1: p0's Kubo daemon is restarted right after p0 committed."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self._task: TrainingTask | None = None

    def __call__(self, fed: Federation) -> bool:
        with in_netns(fed.chain_netns):
            task = self._task = self._task or fed.chain()
            step = len(self.done)
            if step == 0 and _did(task.events(Committed, round=0), fed.accounts["p2"]):
                fed.net.set_link("p2", "eth1", up=False)
                self.done.append("p2's IPFS link down after its round-0 commit")
            elif step == 1 and (
                task.events(RoundFinalized, round=0) or task.events(RoundExpired, round=0)
            ):
                fed.net.set_link("p2", "eth1", up=True)
                self.done.append("p2's IPFS link up after round 0 closed")
            elif step == 2 and _did(task.events(Committed, round=1), fed.accounts["p0"]):
                fed.daemons["p0"].stop()
                fed.daemons["p0"].start()
                self.done.append("p0's Kubo daemon restarted after its round-1 commit")
        return len(self.done) == 3


def _did(events: list[Any], account: str) -> bool:
    return any(e.account == account for e in events)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, list[str]]]:
    script = CutOffThenRestart()
    with launched(tmp_path_factory.mktemp("multihost-faults"), 2, script) as fed:
        yield fed, script.done


def _outcomes(fed: Federation, round_id: int) -> dict[str, dict[str, Any]]:
    """The round's report, read through the chain host's daemon: outcome by participant."""
    with in_netns(fed.chain_netns):
        event = fed.chain().events(RoundFinalized, round=round_id)
        assert event, f"round {round_id} did not finalize\n{fed.logs()}"
        with KuboStore(fed.daemons["chain"].api) as store:
            report = json.loads(store.get(event[0].report_cid))
    return {o["participant"]: o for o in report["outcomes"]}


def test_faults_happened_and_nobody_stalled(faulty: tuple[Federation, list[str]]) -> None:
    fed, done = faulty
    assert len(done) == 3, f"{done}\n{fed.logs()}"
    assert set(fed.codes.values()) == {0}, f"exit codes {fed.codes}\n{fed.logs()}"
    with in_netns(fed.chain_netns):
        task = fed.chain()
        assert task.finalized_rounds() == 2 and not task.events(RoundExpired), fed.logs()


def test_an_unreachable_update_is_reported_missing(faulty: tuple[Federation, list[str]]) -> None:
    fed, _ = faulty
    outcomes = _outcomes(fed, 0)
    cut = outcomes[fed.accounts["p2"]]
    assert not cut["accepted"] and "unavailable" in cut["reason"], cut
    assert outcomes[fed.accounts["p0"]]["accepted"] and outcomes[fed.accounts["p1"]]["accepted"]


def test_a_restarted_daemon_serves_its_update(faulty: tuple[Federation, list[str]]) -> None:
    fed, _ = faulty
    outcomes = _outcomes(fed, 1)
    assert all(o["accepted"] for o in outcomes.values()), outcomes  # p2 back, p0's daemon too
    assert set(outcomes) == set(fed.accounts.values())
