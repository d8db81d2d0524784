"""``RPCProxy``: the one fault-injecting HTTP proxy the tests put in front of a JSON-RPC endpoint
(a ``DevChain``, anvil), so the chain layer's retries meet real dropped connections, lost
replies, 503s and outages rather than mocks."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

#: What the proxy does with one request: ``forward`` it; ``drop`` it unanswered (connection
#: closed); forward it and ``lose_reply``; forward it, lose the reply and ``go_down`` (for
#: :attr:`RPCProxy.down_for` seconds, or until :meth:`RPCProxy.up`); or answer ``http_503``
#: without forwarding.
Action = Literal["forward", "drop", "lose_reply", "go_down", "http_503"]
#: Picks a request's action from its JSON-RPC method (``batch:<method>`` for a batch, after its
#: first request's method) and the 1-based count of that method (called under the proxy's
#: lock, so a stateful schedule needs no lock of its own).
Schedule = Callable[[str, int], Action]


def forward_all(method: str, n: int) -> Action:
    return "forward"


class RPCProxy:
    """A JSON-RPC proxy on 127.0.0.1, listening from construction until :meth:`close` (or the
    end of a ``with`` block). ``seen`` counts requests by method, ``faults`` the actions other
    than ``forward``. Every reply closes its connection, so after :meth:`down` no kept-alive
    connection is still served: clients get "connection refused" until :meth:`up` listens
    again on the same port."""

    def __init__(self, upstream: str, decide: Schedule = forward_all) -> None:
        #: Where requests go; reassign (``urlsplit(url)``) to move the proxy to another node.
        self.upstream = urlsplit(upstream)
        self.decide = decide
        self.seen: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.down_for: float | None = None  # None: a "go_down" lasts until up()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def up(self) -> None:
        """Listen (again, on the same port)."""
        server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler())
        server.daemon_threads = True
        self._server, self._port = server, server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop listening; connections are refused."""
        with self._lock:
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def close(self) -> None:
        self.down()

    def __enter__(self) -> RPCProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _go_down(self) -> None:
        # From a handler thread: shutdown() waits for serve_forever, which runs elsewhere.
        threading.Thread(target=self._outage, daemon=True).start()

    def _outage(self) -> None:
        self.down()
        if self.down_for is not None:
            time.sleep(self.down_for)
            self.up()

    def _forward(self, body: bytes) -> bytes:
        host, port = self.upstream.hostname, self.upstream.port
        conn = http.client.HTTPConnection(host, port, timeout=30)
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
                request = json.loads(body)
                if isinstance(request, list):  # a batch: named after its first method
                    method = f"batch:{request[0].get('method') if request else ''}"
                else:
                    method = str(request.get("method"))
                with proxy._lock:
                    proxy.seen[method] += 1
                    action = proxy.decide(method, proxy.seen[method])
                    if action != "forward":
                        proxy.faults[action] += 1
                self.close_connection = True
                if action == "drop":
                    return
                if action == "http_503":
                    self.send_error(503, "upstream busy")
                    return
                reply = proxy._forward(body)
                if action == "lose_reply":
                    return
                if action == "go_down":
                    proxy._go_down()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
