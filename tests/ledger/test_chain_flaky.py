"""Retries through a real, deliberately unreliable HTTP proxy: nothing lost, nothing doubled."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from flchain.ledger.chain import Chain

RPC_BACKENDS = ["devchain", pytest.param("anvil", marks=pytest.mark.anvil)]


class FlakyProxy:
    """Forwards JSON-RPC to ``upstream`` on 127.0.0.1, but on a fixed schedule:

    * every 2nd ``eth_sendRawTransaction`` is forwarded and then its reply is dropped (the
      node has the transaction, the client cannot know);
    * every 5th other request is dropped before forwarding (connection closed);
    * every 7th other request gets an HTTP 503.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.faults: Counter[str] = Counter()
        self._sends = itertools.count(1)
        self._others = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _decide(self, body: bytes) -> str:
        method = json.loads(body).get("method")
        with self._lock:
            if method == "eth_sendRawTransaction":
                return "lose_reply" if next(self._sends) % 2 == 0 else "forward"
            n = next(self._others)
            return "drop" if n % 5 == 0 else "http_503" if n % 7 == 0 else "forward"

    def _forward(self, body: bytes) -> bytes:
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            conn.request("POST", "/", body, {"Content-Type": "application/json"})
            return conn.getresponse().read()
        finally:
            conn.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                action = proxy._decide(body)
                if action != "forward":
                    with proxy._lock:
                        proxy.faults[action] += 1
                if action == "drop":
                    self.close_connection = True
                    return
                if action == "http_503":
                    self.send_error(503, "upstream busy")
                    return
                reply = proxy._forward(body)
                if action == "lose_reply":
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def flaky_chain(rpc_url: str) -> Iterator[tuple[Chain, FlakyProxy]]:
    direct = Chain.connect(rpc_url)
    snapshot = direct.snapshot()
    with FlakyProxy(rpc_url) as proxy:
        yield Chain.connect(proxy.url, retries=8, timeout=5, receipt_timeout=30), proxy
    direct.revert(snapshot)


@pytest.mark.parametrize("rpc_url", RPC_BACKENDS, indirect=True)
def test_transactions_land_exactly_once_through_a_flaky_proxy(
    flaky_chain: tuple[Chain, FlakyProxy],
    fixture_artifact: dict,
    send_concurrently: Any,
    assert_exactly_once: Any,
) -> None:
    chain, proxy = flaky_chain
    contract = chain.deploy(fixture_artifact, chain.accounts[12], 0)
    senders = chain.accounts[13:16]
    start = {a.address: chain.w3.eth.get_transaction_count(a.address) for a in senders}

    receipts = send_concurrently(chain, contract, senders, threads_per_sender=2, each=3)

    assert chain.call(contract.functions.counter()) == len(receipts) == 18
    assert_exactly_once(chain, receipts, start)
    # The schedule really bit: replies to sent transactions were lost and retried.
    assert proxy.faults["lose_reply"] >= 9
    assert proxy.faults["drop"] > 0 and proxy.faults["http_503"] > 0
