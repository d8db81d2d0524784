"""A federation across hosts, built for real: Linux network namespaces, one Kubo daemon per host.

A private network of namespaces (``ip netns``), one bridge per LAN and a veth pair per host,
with no route anywhere else: a chain host (anvil, and the task owner's Kubo) and N participant
hosts, each running ``flchain node run --ipfs-api`` against only its own daemon. The daemons
share a swarm key and are peered with each other; nothing is shared on disk but the read-only
code. :func:`launched` runs a whole task on it and yields once every process ended.

The same federation also runs on one machine with the embedded store (``kubo=False``): the
same processes and task, anvil on 127.0.0.1, every node on one store directory. Shared by
``tests/node/test_multihost.py`` and ``scripts/bench_multihost.py``. Needs root, iproute2, anvil
and Kubo (:func:`missing_tools` says which is absent).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from flchain.ledger.accounts import DEV_MNEMONIC, account_from_mnemonic
from flchain.ledger.anvil import find_anvil
from flchain.ledger.chain import Chain
from flchain.ledger.contracts import TrainingTask
from support.kubo_daemon import KuboDaemon, find_ipfs, in_netns, new_swarm_key
from support.scripts import load_script

CHAIN_SUBNET, IPFS_SUBNET = "10.77.0", "10.78.0"
CHAIN_IP = f"{CHAIN_SUBNET}.1"
RPC_PORT = 8545
SWARM_PORT = 4001
API_PORT = 5001
TIMEOUT = 600.0

_LAUNCH = load_script("launch_federation")
flchain = _LAUNCH.flchain


def task_config(rounds: int, participants: int) -> str:
    """The task: digits, MLP, median, a committee of 3 with a quorum of 2. The commit phase
    gives every node time to start (seconds of imports each, all sharing the cores; it closes
    as soon as all committed); the attest phase is long for a fetch that runs out of time (it
    finalizes at quorum)."""
    return str(
        _LAUNCH.task_config(
            dataset="digits", rule="median", rounds=rounds, participants=participants,
            phase_blocks=(30 * participants, 16, 40), min_reveals=2,
        )
    )  # fmt: skip


@dataclass
class Host:
    """One network namespace with an address on each LAN (``netns`` None: this machine)."""

    netns: str | None
    ip: str  # on the chain LAN
    ipfs_ip: str  # on the IPFS LAN
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _command(self, command: list[str]) -> list[str]:
        return command if self.netns is None else ["ip", "netns", "exec", self.netns, *command]

    def popen(self, command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                self._command(command), env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.processes.append(proc)
        return proc

    def run(self, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._command(command),
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
                assert host.netns is not None
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
        netns = self.hosts[host].netns
        assert netns is not None
        self._ip("-n", netns, "link", "set", dev, "up" if up else "down")

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def __exit__(self, *exc: object) -> None:
        _kill(self.hosts.values())
        for name in [h.netns for h in self.hosts.values()] + [self.switch]:
            if name is not None:
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


class OneMachine:
    """The same hosts, all of them this machine (127.0.0.1): for the embedded-store baseline."""

    def __init__(self, names: list[str]) -> None:
        self.hosts = {n: Host(None, "127.0.0.1", "127.0.0.1") for n in names}

    def __enter__(self) -> OneMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        _kill(self.hosts.values())


def _kill(hosts: Iterable[Host]) -> None:
    for host in hosts:
        for proc in host.processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@dataclass
class Federation:
    url: str  # the chain, as reached from inside the chain host's namespace
    chain_netns: str | None
    task: str
    net: PrivateNetwork | OneMachine
    daemons: dict[str, KuboDaemon]  # by host name (none on one machine)
    accounts: dict[str, str]  # participant host name -> address
    work: Path
    codes: dict[str, int] = field(default_factory=dict)  # exit code by process name

    def chain(self) -> TrainingTask:
        """The task, read from inside the chain host (call within ``in_netns(chain_netns)``)."""
        return TrainingTask(Chain.connect(self.url, accounts=[]), self.task)

    def state_dir(self, name: str) -> Path:
        """Where participant host ``name``'s node keeps its state and metrics files."""
        return self.work / name

    def logs(self) -> str:
        return logs(self.work)


#: Called about twice a second while the federation runs (faults, measurements); returns True
#: once it has nothing more to do.
Script = Callable[[Federation], bool]


def missing_tools() -> tuple[str, str] | None:
    """``(what is missing, how to get it)`` for the first tool a private network lacks."""
    if os.geteuid() != 0:
        return "network namespaces need root", "run as root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed", "apt-get install iproute2"
    anvil, ipfs = find_anvil(), find_ipfs()
    if anvil is None or not anvil.exists():
        return "anvil not found", "npm ci"
    if ipfs is None or not ipfs.exists():
        return "Kubo not found", "scripts/install_tools.sh"
    return None


@contextlib.contextmanager
def launched(
    work: Path,
    rounds: int,
    script: Script | None = None,
    *,
    participants: int = 3,
    kubo: bool = True,
    timeout: float = TIMEOUT,
) -> Iterator[Federation]:
    """Run a whole federation (a fresh private network with a Kubo daemon per host; with
    ``kubo=False`` this machine and one store directory); yield it once every process ended."""
    anvil, ipfs = find_anvil(), find_ipfs()
    assert anvil is not None and (ipfs is not None or not kubo), missing_tools()
    names = ["chain", *(f"p{i}" for i in range(participants))]
    owner, *members = [account_from_mnemonic(DEV_MNEMONIC, i) for i in range(participants + 1)]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    for var in ("FLCHAIN_STORE", "FLCHAIN_IPFS_API", "FLCHAIN_TASK", "FLCHAIN_RPC_URL"):
        env.pop(var, None)

    with PrivateNetwork(names) if kubo else OneMachine(names) as net:
        chain_host = net.hosts["chain"]
        port = RPC_PORT if kubo else _free_port()
        url = f"http://{chain_host.ip}:{port}"
        chain_host.popen(
            [str(anvil), "--host", chain_host.ip, "--port", str(port), "--mnemonic", DEV_MNEMONIC,
             "--accounts", str(participants + 1), "--block-time", "1", "--silent",
             "--cache-path", str(work / "anvil-cache")],
            work / "anvil.log", env,
        )  # fmt: skip
        _wait_for_chain(chain_host.netns, url)

        daemons: dict[str, KuboDaemon] = {}
        if kubo:
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

        def store(name: str) -> list[str]:
            return ["--ipfs-api", daemons[name].api] if kubo else ["--store", str(work / "store")]

        try:
            task_file = work / "task.toml"
            task_file.write_text(task_config(rounds, participants))
            created = chain_host.run(
                flchain("task", "create", str(task_file), "--json", "--rpc-url", url,
                        *store("chain"), *[x for m in members for x in ("--mint-to", m.address)]),
                env | {"FLCHAIN_KEY": owner.key.to_0x_hex()},
            )  # fmt: skip
            assert created.returncode == 0, created.stderr + logs(work)
            fed = Federation(
                url, chain_host.netns, json.loads(created.stdout)["task"], net, daemons,
                {f"p{i}": m.address for i, m in enumerate(members)}, work,
            )  # fmt: skip
            procs = {}
            for i, account in enumerate(members):
                name = f"p{i}"
                procs[name] = net.hosts[name].popen(
                    flchain("node", "run", "--task", fed.task, "--rpc-url", url, *store(name),
                            "--shard", str(i), "--shards", str(participants),
                            "--state-dir", str(fed.state_dir(name)), "--timeout", str(timeout)),
                    work / f"node-{name}.log", env | {"FLCHAIN_KEY": account.key.to_0x_hex()},
                )  # fmt: skip
            procs["keeper"] = chain_host.popen(
                flchain("task", "keep", "--task", fed.task, "--rpc-url", url,
                        "--timeout", str(timeout)),
                work / "keeper.log", env | {"FLCHAIN_KEY": owner.key.to_0x_hex()},
            )  # fmt: skip
            deadline = time.monotonic() + timeout + 60
            while time.monotonic() < deadline and any(p.poll() is None for p in procs.values()):
                if script is not None and script(fed):
                    script = None
                time.sleep(0.5)
            fed.codes = {n: (-1 if p.poll() is None else p.returncode) for n, p in procs.items()}
            yield fed
        finally:
            for d in daemons.values():
                d.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_chain(netns: str | None, url: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    for _ in range(300):
        try:
            with in_netns(netns):
                if requests.post(url, json=body, timeout=1).ok:
                    return
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError(f"anvil did not answer on {url}")


def logs(work: Path) -> str:
    """The tail of every process's log in ``work``."""
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted(work.glob("*.log")))  # fmt: skip
