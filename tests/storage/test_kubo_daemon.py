"""The test daemons are private (never dial a public address), and private networks work:
daemons sharing a swarm key fetch each other's content through KuboStore; one without the key
cannot even connect."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support.kubo_daemon import KuboDaemon, new_swarm_key

from flchain.errors import ContentNotFound
from flchain.storage import KuboStore, cid_for, kubo
from flchain.storage.unixfs import CHUNK_SIZE

pytestmark = pytest.mark.kubo


def _hosts_of(multiaddrs: list[str]) -> set[str]:
    """The IP addresses in ``/ip4/A/...`` or ``/ip6/A/...`` multiaddrs."""
    return {m.split("/")[2] for m in multiaddrs if m.split("/")[1] in ("ip4", "ip6")}


def test_config_has_no_way_out(kubo_daemon: KuboDaemon) -> None:
    config = kubo_daemon.rpc("config/show")
    assert config["Bootstrap"] == []
    assert config["Peering"]["Peers"] in (None, [])
    assert config["Discovery"]["MDNS"]["Enabled"] is False
    assert config["Routing"]["Type"] == "none"
    assert config["Routing"]["DelegatedRouters"] == []
    assert config["Routing"].get("Routers") in (None, {})
    assert config["Ipns"]["DelegatedPublishers"] == []
    assert config["AutoConf"]["Enabled"] is False
    assert config["AutoTLS"]["Enabled"] is False
    assert config["AutoNAT"]["ServiceMode"] == "disabled"
    assert config["Swarm"]["DisableNatPortMap"] is True
    assert config["Swarm"]["RelayClient"]["Enabled"] is False
    assert config["Swarm"]["RelayService"]["Enabled"] is False
    assert config["HTTPRetrieval"]["Enabled"] is False
    assert config["Plugins"]["Plugins"]["telemetry"]["Disabled"] is True
    listen = [config["Addresses"]["API"], config["Addresses"]["Gateway"]]
    listen += config["Addresses"]["Swarm"]
    assert _hosts_of(listen) == {"127.0.0.1"}, listen
    assert kubo_daemon.rpc("bootstrap/list")["Peers"] in (None, [])


def test_daemon_knows_and_reaches_no_one(kubo_daemon: KuboDaemon) -> None:
    # Ask for content nobody has: a daemon with any way out would now look for it.
    with KuboStore(kubo_daemon.api, fetch_timeout=1) as store, pytest.raises(ContentNotFound):
        store.get(cid_for(b"flchain: asked for, so the daemon looks everywhere it can"))
    assert kubo_daemon.rpc("swarm/peers")["Peers"] in (None, [])
    # The peerstore: every address the daemon has learnt for any peer (bootstrap, DHT, mDNS).
    known = kubo_daemon.rpc("swarm/addrs")["Addrs"] or {}
    assert set(known) <= {kubo_daemon.peer_id}, known
    assert _hosts_of(kubo_daemon.rpc("swarm/addrs/listen")["Strings"]) == {"127.0.0.1"}


def test_big_fetches_log_their_progress(
    kubo_daemon: KuboDaemon, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kubo, "PROGRESS_STEP", CHUNK_SIZE)  # a "big" file of three chunks
    data = bytes(range(256)) * (3 * CHUNK_SIZE // 256)
    with KuboStore(kubo_daemon.api) as store, caplog.at_level(logging.INFO, kubo.__name__):
        assert store.get(store.put(data)) == data
    lines = [r.getMessage() for r in caplog.records if r.name == kubo.__name__]
    assert [line.split(" of ")[0] for line in lines] == [
        "fetched 0.2 MiB",
        "fetched 0.5 MiB",
        "fetched 0.8 MiB",
    ]


@pytest.fixture
def private_network(kubo_binary: Path, tmp_path: Path) -> Iterator[list[KuboDaemon]]:
    """Three daemons on 127.0.0.1 sharing a swarm key, each peered with the first."""
    key = new_swarm_key()
    first = KuboDaemon(tmp_path / "a", swarm_key=key, binary=kubo_binary).start()
    daemons = [first]
    try:
        peer = (first.peer_id, first.swarm_addr())
        for name in ("b", "c"):
            daemon = KuboDaemon(tmp_path / name, swarm_key=key, peers=[peer], binary=kubo_binary)
            daemons.append(daemon.start())
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()


def _wait_connected(daemon: KuboDaemon, peer_id: str) -> None:
    """Peering dials at start and then with a backoff; on a loaded machine that takes a while."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        peers = daemon.rpc("swarm/peers")["Peers"] or []
        if any(p["Peer"] == peer_id for p in peers):
            return
        time.sleep(0.2)
    raise AssertionError(f"{daemon.peer_id} never connected to {peer_id}:\n{daemon.log_text()}")


def test_private_network_moves_content_between_daemons(
    private_network: list[KuboDaemon], tmp_path: Path
) -> None:
    a, b, c = private_network
    _wait_connected(b, a.peer_id)
    _wait_connected(c, a.peer_id)
    data = bytes(range(256)) * 5000  # 1.28 MB: five chunks and a root
    with KuboStore(b.api, fetch_timeout=20) as at_b, KuboStore(c.api, fetch_timeout=20) as at_c:
        cid = at_b.put(data)
        # c fetches b's blocks through a (bitswap asks every connected peer; a relays nothing,
        # so a must fetch first): the path a committee member's fetch of an update takes.
        with KuboStore(a.api, fetch_timeout=20) as at_a:
            assert at_a.get(cid) == data
        assert at_c.get(cid) == data
    swarm = {d.peer_id: d for d in private_network}
    for daemon in private_network:
        peers = daemon.rpc("swarm/peers")["Peers"] or []
        assert {p["Peer"] for p in peers} <= set(swarm) - {daemon.peer_id}, peers
        assert _hosts_of([p["Addr"] for p in peers]) <= {"127.0.0.1"}, peers

    # A daemon outside the network (no key) cannot connect, so cannot fetch either.
    with KuboDaemon(tmp_path / "outsider", binary=a.binary) as outsider:
        answer = requests.post(
            f"{outsider.http_url}/api/v0/swarm/connect",
            params={"arg": f"{a.swarm_addr()}/p2p/{a.peer_id}", "timeout": "5s"},
            timeout=15,
        )
        assert not answer.ok, answer.text
        with KuboStore(outsider.api, fetch_timeout=1) as there, pytest.raises(ContentNotFound):
            there.get(cid)
