"""KuboStore without a daemon: unreachable addresses and the version check.

The full behaviour suite runs against a real private daemon in test_store_behaviour.py
(TestKuboStore; the daemon comes from tests/support/kubo_daemon.py). Here a minimal HTTP server
answers only ``/api/v0/version``, to check that a daemon too old for us is refused with a clear
message before anything else.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from flchain.errors import ConfigError, StoreUnavailable
from flchain.storage import KuboStore, open_store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_daemon_after_retries() -> None:
    start = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        KuboStore(f"/ip4/127.0.0.1/tcp/{_free_port()}", timeout=2, retries=2)
    assert time.monotonic() - start >= 0.6  # two backoffs: 0.2 s + 0.4 s


def test_bad_address() -> None:
    with pytest.raises(StoreUnavailable, match="invalid IPFS API address"):
        KuboStore("localhost:5001")


@pytest.mark.parametrize("kwargs", [{"timeout": 0}, {"fetch_timeout": -1}, {"retries": -1}])
def test_bad_timeouts_are_refused_before_dialing(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        KuboStore(f"/ip4/127.0.0.1/tcp/{_free_port()}", **kwargs)  # type: ignore[arg-type]


def test_open_store_picks_kubo_for_an_api_address() -> None:
    with pytest.raises(StoreUnavailable):
        open_store(ipfs_api=f"/ip4/127.0.0.1/tcp/{_free_port()}")


@pytest.fixture
def version_server() -> Iterator[tuple[int, list[str]]]:
    """An HTTP server whose /api/v0/version reports the version in ``versions[0]``."""
    versions = ["0.4.23"]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.startswith("/api/v0/version"):
                body = json.dumps({"Version": versions[0], "Commit": "", "Repo": "15"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], versions
    server.shutdown()
    server.server_close()


def test_old_daemon_is_refused(version_server: tuple[int, list[str]]) -> None:
    port, versions = version_server
    with pytest.raises(StoreUnavailable, match=r"version 0\.4\.23; FLChain needs Kubo >= 0\.19"):
        KuboStore(f"/ip4/127.0.0.1/tcp/{port}", timeout=5, retries=0)
    # Newer than ipfshttpclient.connect() would accept: fine for us.
    versions[0] = "0.39.0"
    store = KuboStore(f"/ip4/127.0.0.1/tcp/{port}", timeout=5, retries=0)
    assert store.daemon_version == "0.39.0"
    store.close()
