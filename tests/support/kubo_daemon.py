"""A real, fully private Kubo daemon for tests: ``with KuboDaemon(tmp) as d: KuboStore(d.api)``.

The binary is ``$FLCHAIN_IPFS_BIN``, else ``.tools/bin/ipfs`` (built by scripts/install_tools.sh),
else ``ipfs`` on PATH. The repo is made with ``ipfs init --profile test`` (Kubo 0.43.1: API,
gateway and swarm on 127.0.0.1 port 0, no bootstrap peers, mDNS, AutoConf and AutoTLS off, NAT
port mapping off, no delegated routers or publishers, no DNS resolvers) and then closed further
(:data:`PRIVATE_CONFIG`): no routing at all, no AutoNAT service, no relays or hole punching,
no HTTP retrieval, no providing, TCP as the only transport, and the telemetry plugin disabled.
So the daemon only ever talks to peers a test connects it to: a normal online daemon, never
``--offline``, that has nobody to dial. ``tests/storage/test_kubo_daemon.py`` checks this on a
running one.

For several hosts, give each daemon the same ``swarm_key`` (a libp2p private network: peers
without the key cannot even complete a handshake) and the others' addresses in ``peers``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBO_VERSION = "0.43.1"

#: Set on top of ``--profile test``; the dotted keys are Kubo config paths (docs/config.md).
PRIVATE_CONFIG: dict[str, Any] = {
    "Bootstrap": [],
    "Discovery.MDNS.Enabled": False,
    "AutoConf.Enabled": False,
    "AutoTLS.Enabled": False,
    "Routing.Type": "none",  # no DHT, no HTTP routers: peers are connected explicitly
    "Routing.DelegatedRouters": [],
    "Ipns.DelegatedPublishers": [],
    "Provide.Enabled": False,  # nothing to announce to without routing
    "HTTPRetrieval.Enabled": False,  # would fetch from HTTP providers found by routing
    "AutoNAT.ServiceMode": "disabled",
    "Swarm.DisableNatPortMap": True,
    "Swarm.RelayClient.Enabled": False,
    "Swarm.RelayService.Enabled": False,
    "Swarm.EnableHolePunching": False,
    # TCP only: the listen address is TCP, and libp2p private networks (swarm.key) refuse QUIC,
    # WebTransport and WebRTC, which bring their own encryption.
    "Swarm.Transports.Network.QUIC": False,
    "Swarm.Transports.Network.WebTransport": False,
    "Swarm.Transports.Network.WebRTCDirect": False,
    "Swarm.Transports.Network.Websocket": False,
    "Plugins.Plugins.telemetry.Disabled": True,
    "Version.SwarmCheckEnabled": False,
}


_CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the block with this thread in network namespace ``name`` (``ip netns``; None: stay).

    Sockets opened inside keep that namespace; the thread returns to its own afterwards. So the
    test process can talk to a host of a private test network without any route to it.
    """
    if name is None:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net") as here, open(f"/run/netns/{name}") as there:
        if libc.setns(there.fileno(), _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into network namespace {name} failed")
        try:
            yield
        finally:
            if libc.setns(here.fileno(), _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the test's namespace failed")


class KuboMissing(RuntimeError):
    """No Kubo binary of the pinned version is installed."""


def find_ipfs() -> Path | None:
    """The ipfs binary to use, or None if there is none."""
    if env := os.environ.get("FLCHAIN_IPFS_BIN"):
        return Path(env)
    candidate = REPO_ROOT / ".tools" / "bin" / "ipfs"
    if candidate.exists():
        return candidate
    found = shutil.which("ipfs")
    return Path(found) if found else None


def new_swarm_key() -> str:
    """The text of a libp2p private-network key file (``swarm.key``)."""
    return f"/key/swarm/psk/1.0.0/\n/base16/\n{secrets.token_hex(32)}\n"


def _set(config: dict[str, Any], dotted: str, value: object) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[leaf] = value


class KuboDaemon:
    """An ``ipfs daemon`` on a fresh private repo, started and stopped.

    Args:
        repo: the IPFS_PATH to create (must not exist yet, or hold a repo made by this class).
        host: the IPv4 address API, gateway and swarm listen on (a test host's own address).
        swarm_key: text of a ``swarm.key``: the daemon then joins only that private network.
        peers: ``(peer_id, multiaddr)`` of daemons to keep connected (``Peering.Peers``).
        swarm_port, api_port: fixed ports (0: any free one; the gateway always takes any).
        api_host: where the RPC API and gateway listen, if not on ``host`` (e.g. 127.0.0.1).
        netns: run the daemon inside this network namespace (``ip netns exec``).
        binary: the ipfs executable; by default :func:`find_ipfs`.
    """

    def __init__(
        self,
        repo: Path,
        host: str = "127.0.0.1",
        *,
        swarm_key: str | None = None,
        peers: list[tuple[str, str]] | None = None,
        swarm_port: int = 0,
        api_port: int = 0,
        api_host: str | None = None,
        netns: str | None = None,
        binary: Path | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.repo = repo
        self.host = host
        self.swarm_key = swarm_key
        self.peers = list(peers or [])
        self.swarm_port = swarm_port
        self.api_port = api_port  # fixed, so a restarted daemon is where its client expects it
        self.api_host = api_host or host
        self.netns = netns
        self.binary = binary or find_ipfs()
        self.startup_timeout = startup_timeout
        self.peer_id = ""
        self.api = ""  # e.g. /ip4/127.0.0.1/tcp/40123, once started
        self._process: subprocess.Popen[bytes] | None = None
        self._log = repo.parent / f"{repo.name}.daemon.log"

    # --- set-up ---------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ, IPFS_PATH=str(self.repo))
        # Belt and braces with the disabled plugin: both switch Kubo's telemetry off.
        env.update(IPFS_TELEMETRY="off", DO_NOT_TRACK="1")
        if self.swarm_key is not None:
            # Refuse to start at all if the key file were missing: never fall back to public.
            env["LIBP2P_FORCE_PNET"] = "1"
        return env

    def _command(self, *args: str) -> list[str]:
        assert self.binary is not None
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*prefix, str(self.binary), *args]

    def init(self) -> KuboDaemon:
        """``ipfs init --profile test`` and the private config; returns self."""
        if self.binary is None or not self.binary.exists():
            raise KuboMissing(
                "Kubo (ipfs) not found: run scripts/install_tools.sh (builds .tools/bin/ipfs), "
                "or set FLCHAIN_IPFS_BIN"
            )
        if not (self.repo / "config").exists():
            subprocess.run(
                self._command("init", "--profile", "test", "--empty-repo"),
                env=self._env(), check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        config_path = self.repo / "config"
        config = json.loads(config_path.read_text())
        settings = dict(PRIVATE_CONFIG)
        settings["Addresses.API"] = f"/ip4/{self.api_host}/tcp/{self.api_port}"
        settings["Addresses.Gateway"] = f"/ip4/{self.api_host}/tcp/0"
        settings["Addresses.Swarm"] = [f"/ip4/{self.host}/tcp/{self.swarm_port}"]
        settings["Peering.Peers"] = [{"ID": pid, "Addrs": [addr]} for pid, addr in self.peers]
        for key, value in settings.items():
            _set(config, key, value)
        # The daemon is not running: editing the file is what `ipfs config` would do, in one go.
        config_path.write_text(json.dumps(config, indent=2))
        self.peer_id = str(config["Identity"]["PeerID"])
        if self.swarm_key is not None:
            (self.repo / "swarm.key").write_text(self.swarm_key)
        return self

    # --- run ------------------------------------------------------------------------------

    def start(self) -> KuboDaemon:
        """Start ``ipfs daemon`` and wait until its RPC API answers; returns self."""
        if not (self.repo / "config").exists():
            self.init()
        (self.repo / "api").unlink(missing_ok=True)  # left by a killed daemon
        log = open(self._log, "ab")  # noqa: SIM115 - the daemon writes to it while it runs
        self._process = subprocess.Popen(
            self._command("daemon"), env=self._env(), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"ipfs daemon exited with {self._process.returncode}:\n{self.log_text()}"
                )
            api_file = self.repo / "api"
            if api_file.exists() and (api := api_file.read_text().strip()):
                self.api = api
                with contextlib.suppress(requests.RequestException), in_netns(self.netns):
                    if requests.post(f"{self.http_url}/api/v0/version", timeout=2).ok:
                        return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"ipfs daemon did not answer within {self.startup_timeout}s")

    @property
    def http_url(self) -> str:
        """The RPC API as an http URL (from the ``/ip4/A/tcp/P`` multiaddr)."""
        parts = self.api.split("/")
        return f"http://{parts[2]}:{parts[4]}"

    def rpc(self, command: str, *args: str, **opts: str) -> Any:
        """Call the RPC API directly (``rpc("swarm/peers")``); raises on an error answer."""
        params: list[tuple[str, str]] = [("arg", a) for a in args] + list(opts.items())
        with in_netns(self.netns):
            answer = requests.post(f"{self.http_url}/api/v0/{command}", params=params, timeout=30)
        answer.raise_for_status()
        lines = [json.loads(line) for line in answer.text.splitlines() if line.strip()]
        return lines[0] if len(lines) == 1 else lines

    def swarm_addr(self) -> str:
        """The swarm multiaddr other daemons dial, ``/ip4/HOST/tcp/PORT`` (port as bound)."""
        for addr in self.rpc("id")["Addresses"] or []:
            if addr.startswith(f"/ip4/{self.host}/tcp/"):
                return str(addr).split("/p2p/")[0]
        raise RuntimeError(f"daemon at {self.api} listens on no TCP address of {self.host}")

    def log_text(self) -> str:
        """What the daemon printed so far."""
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL if it lingers)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> KuboDaemon:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
