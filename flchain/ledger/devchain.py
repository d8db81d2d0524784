"""The embedded chain's web3 provider and ``devchain``, which serves it over JSON-RPC.

The chain itself (eth-tester + py-evm, with its read caches) is in
:mod:`flchain.ledger.embedded`; its names are re-exported here.

:class:`EmbeddedProvider` is a web3 provider around one in-process eth-tester chain. Unlike
web3's stock ``EthereumTesterProvider`` it behaves like a node: it is thread-safe, reports
reverts as ``{"code": 3, "message": "execution reverted", "data": "0x..."}`` with the raw revert
data (so custom errors survive), words nonce errors the way geth does, and answers the
``evm_*``/``anvil_*`` test methods. :class:`DevChain` serves such a provider on 127.0.0.1 like
``anvil`` or ``hardhat node``, so several processes can share one chain.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from eth.exceptions import Revert as EVMRevert
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester
from hexbytes import HexBytes
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.providers.eth_tester.defaults import API_ENDPOINTS
from web3.providers.eth_tester.middleware import (
    DefaultTransactionFieldsMiddleware,
    ethereum_tester_middleware,
)
from web3.types import RPCEndpoint, RPCResponse

from flchain.errors import LedgerError
from flchain.ledger.accounts import dev_accounts
from flchain.ledger.embedded import (
    DEV_BALANCE_WEI,
    EMBEDDED_CHAIN_ID,
    EmbeddedTester,
    _Reverted,
    estimate_gas_like_geth,
    make_tester,
)
from flchain.ledger.reverts import RevertedWithReason, decode_revert

__all__ = [
    "DEV_BALANCE_WEI",
    "EMBEDDED_CHAIN_ID",
    "BlockPass",
    "DevChain",
    "EmbeddedProvider",
    "EmbeddedTester",
    "estimate_gas_like_geth",
    "make_tester",
    "to_json_rpc",
]


def _revert_data(exc: BaseException) -> bytes | None:
    """Raw revert data from an eth-tester failure, following ``raise ... from`` chains."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _Reverted):
            return seen.data
        if isinstance(seen, EVMRevert):
            return bytes(seen.args[0]) if seen.args else b""
        seen = seen.__cause__ or seen.__context__
    return None


_NONCE_RE = re.compile(r"Expected (\d+), but got (\d+)")


def _node_message(exc: BaseException) -> str:
    """An eth-tester/py-evm failure worded like geth and anvil word it."""
    text = str(exc) or type(exc).__name__
    if match := _NONCE_RE.search(text):
        expected, got = int(match[1]), int(match[2])
        kind = "nonce too low" if got < expected else "nonce too high"
        return f"{kind}: next nonce {expected}, tx nonce {got}"
    return text


def _block_number(tester: EthereumTester, params: Any) -> int:
    """``eth_blockNumber``; the stock endpoint serialises the whole latest block to read it
    (a node polls it every step: at 50 participants a block of ~50 transactions each time)."""
    if isinstance(tester, EmbeddedTester):
        return tester.latest_block_number()
    return int(tester.get_block_by_number("latest")["number"])


def _evm_mine(tester: EthereumTester, params: Any) -> str:
    tester.mine_blocks(1)  # hardhat/anvil mine one block; a timestamp argument is ignored
    return "0x0"


def _anvil_mine(tester: EthereumTester, params: Any) -> None:
    count = params[0] if params and params[0] is not None else 1
    tester.mine_blocks(int(count, 16) if isinstance(count, str) else int(count))


def _set_automine(tester: EthereumTester, params: Any) -> None:
    if params and params[0]:
        tester.enable_auto_mine_transactions()
    else:
        tester.disable_auto_mine_transactions()


def _trace_transaction(tester: EthereumTester, params: Any) -> dict[str, Any]:
    """``debug_traceTransaction`` with the call tracer's answer, whatever tracer is asked for
    (a caller reading revert data wants its ``output``; struct logs are not kept)."""
    trace = getattr(tester.backend, "trace_transaction", None)
    if trace is None:  # a stock eth-tester backend
        raise NotImplementedError("debug_traceTransaction")
    result: dict[str, Any] = trace(bytes.fromhex(str(params[0]).removeprefix("0x")))
    return result


def _revert(tester: EthereumTester, params: Any) -> bool:
    tester.revert_to_snapshot(params[0])
    return True


#: The stock endpoints plus the anvil/hardhat test methods ``Chain`` relies on.
ENDPOINTS: dict[str, dict[str, Callable[..., Any]]] = {
    **API_ENDPOINTS,
    "eth": {**API_ENDPOINTS["eth"], "blockNumber": _block_number},
    "evm": {
        **API_ENDPOINTS["evm"],
        "mine": _evm_mine,
        "revert": _revert,
        "setAutomine": _set_automine,
    },
    "anvil": {"mine": _anvil_mine, "setAutomine": _set_automine},
    "debug": {"traceTransaction": _trace_transaction},
}


#: The methods whose missing ``from`` web3's eth-tester middleware fills with the first account.
_FROM_DEFAULTED = frozenset(
    {"eth_call", "eth_estimateGas", "eth_sendTransaction", "eth_createAccessList"}
)


class _DefaultFrom(DefaultTransactionFieldsMiddleware):
    """web3's default-``from`` middleware without its three ``eth_accounts`` round trips.

    The stock one asks ``w3.eth.accounts`` three times for every call that has no ``from`` (a
    plain view call), and eth-tester derives every funded account's public key each time: at
    100 accounts that is most of a view call. This fills in the same first account, read once
    from :class:`EmbeddedTester`'s cached list.
    """

    def request_processor(self, method: RPCEndpoint, params: Any) -> Any:
        tester = getattr(self._w3.provider, "ethereum_tester", None)
        if not getattr(tester, "caching", False):
            return super().request_processor(method, params)
        wants_from = method in _FROM_DEFAULTED and params and isinstance(params[0], Mapping)
        if wants_from and params[0].get("from") is None:
            accounts = tester.get_accounts()  # type: ignore[union-attr]
            params = [{**params[0], "from": accounts[0] if accounts else None}, *params[1:]]
        return method, params


class EmbeddedProvider(EthereumTesterProvider):
    """A thread-safe web3 provider over one in-process eth-tester chain, answering like a node.

    Args:
        tester: the chain; by default a fresh one funding ``num_accounts`` dev accounts.
        num_accounts: how many mnemonic accounts the default chain funds.
    """

    _middleware = (_DefaultFrom, ethereum_tester_middleware)

    def __init__(self, tester: EthereumTester | None = None, num_accounts: int = 20) -> None:
        super().__init__(tester or make_tester(num_accounts), ENDPOINTS)
        self.lock = threading.RLock()
        #: The :class:`BlockPass` running, if any: its jobs wait in it for their blocks.
        self.block_pass: BlockPass | None = None

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        namespace, _, endpoint = method.partition("_")
        delegate = ENDPOINTS.get(namespace, {}).get(endpoint)
        if delegate is None:
            return _error(-32601, f"Method not found: {method}")
        if method == "eth_estimateGas" and len(params) > 1 and params[1] == "pending":
            params = params[:1]  # eth-tester estimates in its pending block anyway
        while method == "eth_getTransactionReceipt" and self._held(params[0]):
            # Like a node, no receipt before the transaction is mined; a job of the running
            # pass waits there for its block (other callers poll, as on a node).
            running = self.block_pass
            if running is None or not running.park():
                return {"jsonrpc": "2.0", "id": 0, "result": None}
        try:
            with self.lock:
                result = delegate(self.ethereum_tester, params)
        except NotImplementedError:
            return _error(-32601, f"Method not supported by the embedded chain: {method}")
        except Exception as exc:  # a node reports every failure as a JSON-RPC error
            data = _revert_data(exc)
            if data is None:
                return _error(-32000, _node_message(exc))
            return _error(3, _revert_message(data), "0x" + data.hex())
        return {"jsonrpc": "2.0", "id": 0, "result": result}

    def latest_block_hash(self) -> bytes | None:
        """The latest mined block's hash, read without a request (None when the chain's read
        caches are off, so that reads go the stock way: see ``EmbeddedTester.caching``)."""
        tester = self.ethereum_tester
        if not isinstance(tester, EmbeddedTester) or not tester.caching:
            return None
        with self.lock:
            return bytes(tester.backend.chain.header.parent_hash)

    def _held(self, transaction_hash: Any) -> bool:
        """Whether the transaction waits, unmined, in a holding chain's pending block."""
        tester = self.ethereum_tester
        if not isinstance(tester, EmbeddedTester) or not tester.holding:
            return False
        try:
            raw = bytes(HexBytes(transaction_hash))
        except (TypeError, ValueError):
            return False  # eth-tester answers the malformed hash
        with self.lock:
            return bool(tester.pending_transaction(raw))


T = TypeVar("T")


class BlockPass:
    """Runs jobs (each node's step of one phase) one after the other, in order, such that the
    transactions they send share blocks instead of getting one block each, as on a node that
    mines at intervals.

    Each job runs in a thread of its own, but only one thread runs at a time: a job runs until
    it finishes or asks for the receipt of a transaction it sent, then the next job runs. Once
    every job has finished or waits, one block is mined with every transaction sent so far, in
    the order they were sent, and the waiting jobs resume in job order. So everything happens
    in one order fixed by the jobs (the same inputs give the same chain), and nothing is left
    out: every transaction is signed by its sender, executed by py-evm when sent (a refused one
    is refused at once), mined, and its receipt read and checked by its sender.

    What it saves on the embedded chain: the per-block work (mining, a state per block for
    the views) once per pass instead of once per transaction, and the views of a pass all
    read one block, whose state (and answers) the chain keeps.
    """

    def __init__(self, provider: EmbeddedProvider) -> None:
        tester = provider.ethereum_tester
        if not isinstance(tester, EmbeddedTester):
            raise LedgerError("a BlockPass needs the embedded chain's own tester (make_tester)")
        self.provider, self.tester = provider, tester
        # The baton: job i runs while it holds _go[i]; it hands back by releasing _back.
        # (One semaphore per job: waking only the job whose turn it is.)
        self._go: list[threading.Semaphore] = []
        self._back = threading.Semaphore(0)
        self._jobs: dict[int, int] = {}  # thread id -> job
        self._parked: list[int] = []
        #: Seconds each job of the last :meth:`run` spent parked (waiting for other jobs and
        #: for its block): what its own wall time must not be charged with.
        self.parked_seconds: list[float] = []
        #: Blocks the last :meth:`run` mined, and the seconds that took.
        self.blocks, self.mining_seconds = 0, 0.0

    @classmethod
    def on(cls, provider: Any) -> BlockPass | None:
        """A pass for ``provider`` when it is an embedded chain's (None for any other)."""
        if isinstance(provider, EmbeddedProvider) and isinstance(
            provider.ethereum_tester, EmbeddedTester
        ):
            return cls(provider)
        return None

    def run(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """Every job's result, in order; the first job's error (in job order) is raised once
        every job has ended."""
        if self.provider.block_pass is not None:
            raise LedgerError("a BlockPass is already running on this chain")
        results: list[Any] = [None] * len(jobs)
        errors: list[BaseException | None] = [None] * len(jobs)
        self.parked_seconds, self.blocks, self.mining_seconds = [0.0] * len(jobs), 0, 0.0
        self._go = [threading.Semaphore(0) for _ in jobs]
        threads = [
            threading.Thread(target=self._job, args=(i, job, results, errors), daemon=True)
            for i, job in enumerate(jobs)
        ]
        with self.provider.lock:
            self.tester.holding = True
        self.provider.block_pass = self
        try:
            for thread in threads:
                thread.start()
            for i in range(len(jobs)):
                self._hand_to(i)
            while self._parked:
                self._mine()
                parked, self._parked = sorted(self._parked), []
                for i in parked:
                    self._hand_to(i)
        finally:
            self.provider.block_pass = None
            with self.provider.lock:
                self.tester.holding = False
                if self.tester.backend.held():
                    self._mine()  # sent by a job that failed before its receipt
        for thread in threads:  # all ended (if mining failed above, parked ones never resume)
            thread.join()
        for error in errors:
            if error is not None:
                raise error
        return results

    def park(self) -> bool:
        """Called by a job waiting for a receipt: yields to the pass until the next block is
        mined. False when the caller is not a job of this pass (it polls instead)."""
        job = self._jobs.get(threading.get_ident())
        if job is None:
            return False
        started = time.perf_counter()
        self._parked.append(job)
        self._back.release()
        self._go[job].acquire()
        self.parked_seconds[job] += time.perf_counter() - started
        return True

    def _job(
        self,
        i: int,
        job: Callable[[], Any],
        results: list[Any],
        errors: list[BaseException | None],
    ) -> None:
        self._jobs[threading.get_ident()] = i
        self._go[i].acquire()
        try:
            results[i] = job()
        except BaseException as exc:  # handed to run(), which raises it
            errors[i] = exc
        finally:
            del self._jobs[threading.get_ident()]
            self._back.release()

    def _hand_to(self, i: int) -> None:
        """Let job ``i`` run until it ends or parks."""
        self._go[i].release()
        self._back.acquire()

    def _mine(self) -> None:
        started = time.perf_counter()
        with self.provider.lock:
            self.tester.mine_blocks(1)
        self.blocks += 1
        self.mining_seconds += time.perf_counter() - started


def _revert_message(data: bytes) -> str:
    decoded = decode_revert(data)
    reason = decoded.reason if isinstance(decoded, RevertedWithReason) else ""
    return f"execution reverted: {reason}" if reason else "execution reverted"


def _error(code: int, message: str, data: str | None = None) -> RPCResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": 0, "error": error}  # type: ignore[typeddict-item]


def to_json_rpc(value: Any, key: str = "") -> Any:
    """A provider result in JSON-RPC wire form: quantities and bytes as ``0x`` hex."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        # eth-tester keeps the logs bloom as an int; on the wire it is 256 bytes of data.
        return "0x" + value.to_bytes(256).hex() if key == "logsBloom" else hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {k: to_json_rpc(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_rpc(v, key) for v in value]
    raise LedgerError(f"cannot encode {type(value).__name__} in a JSON-RPC response")


class DevChain:
    """The embedded chain served as JSON-RPC over HTTP (single and batch requests).

    Args:
        host: interface to bind; keep the default 127.0.0.1 (no authentication).
        port: TCP port; 0 picks a free one (read :attr:`url` after :meth:`start`).
        num_accounts: how many dev-mnemonic accounts genesis funds.
        block_time: if set, mine an empty block every ``block_time`` seconds, so block-based
            deadlines pass while every node waits.
        provider: serve this provider instead of a fresh chain.

    Use as a context manager, or ``start()``/``stop()``, or ``serve_forever()`` in the CLI.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8545,
        num_accounts: int = 20,
        block_time: float | None = None,
        provider: EmbeddedProvider | None = None,
    ) -> None:
        if block_time is not None and block_time <= 0:
            raise LedgerError(f"block_time must be > 0 seconds, got {block_time}")
        self.provider = provider or EmbeddedProvider(num_accounts=num_accounts)
        self.accounts: list[LocalAccount] = dev_accounts(num_accounts)
        self.block_time = block_time
        # No client-side middleware: requests arrive already formed, and only the provider's
        # own eth-tester translation should touch them.
        w3 = Web3(self.provider, middleware=[])
        self._request = self.provider.request_func(w3, w3.middleware_onion)
        try:
            self._server = ThreadingHTTPServer((host, port), self._handler_class())
        except (OSError, OverflowError, TypeError, UnicodeError) as exc:  # bad port or host
            raise LedgerError(f"cannot listen on {host}:{port}: {exc}") from exc
        self._server.daemon_threads = True
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """The JSON-RPC URL, e.g. ``http://127.0.0.1:8545``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"  # an AF_INET address: host is text already

    def handle(self, request: Any) -> dict[str, Any]:
        """Answer one JSON-RPC request object (already parsed)."""
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return _wire(None, _error(-32600, "Invalid Request"))
        params = request.get("params") or []
        try:
            response = self._request(RPCEndpoint(request["method"]), params)
        except Exception as exc:  # malformed params rejected by the formatters
            response = _error(-32602, f"Invalid params: {exc}")
        return _wire(request.get("id"), response)

    def start(self) -> DevChain:
        """Serve in background threads; returns self."""
        self._spawn(self._server.serve_forever, "devchain-http")
        if self.block_time:
            self._spawn(self._mine_periodically, "devchain-blocks")
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`stop` or KeyboardInterrupt."""
        if self.block_time:
            self._spawn(self._mine_periodically, "devchain-blocks")
        try:
            self._server.serve_forever()
        finally:
            self._stop.set()
            self._server.server_close()

    def stop(self) -> None:
        """Stop serving and mining, close the socket, join the threads."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> DevChain:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _mine_periodically(self) -> None:
        assert self.block_time is not None
        while not self._stop.wait(self.block_time):
            with self.provider.lock:
                tester = self.provider.ethereum_tester
                assert tester is not None  # set at construction
                tester.mine_blocks(1)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        chain = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection
            # Headers and body go out as two writes; with Nagle on, the body waits for the
            # client's delayed ACK (~40 ms a request).
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError:
                    reply: Any = _wire(None, _error(-32700, "Parse error"))
                else:
                    if isinstance(body, list):
                        reply = [chain.handle(item) for item in body]
                    else:
                        reply = chain.handle(body)
                payload = json.dumps(reply).encode()
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per request would drown the CLI's output

        return Handler


def _wire(request_id: Any, response: Mapping[str, Any]) -> dict[str, Any]:
    reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
    if "error" in response:
        reply["error"] = response["error"]
    else:
        reply["result"] = to_json_rpc(response.get("result"))
    return reply
