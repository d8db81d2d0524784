"""JSON-RPC over HTTP for :class:`~flchain.ledger.chain.Chain`: retries and answer checks.

:class:`RetryingHTTPProvider` retries transient failures of every method (safe because
:class:`~flchain.ledger.chain.Chain` re-sends the same signed bytes), bounds an answer's size and
total read time, and checks each answer's shape before web3 sees it, so a broken or hostile node
gives a one-line :class:`~flchain.errors.LedgerError` rather than a crash deep in web3.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

import requests
from eth_typing import URI
from web3.providers import HTTPProvider
from web3.types import RPCEndpoint, RPCResponse

from flchain import safejson
from flchain.errors import BadRPCResponse, LedgerError, RPCUnavailable

#: HTTP statuses worth retrying: rate limiting and server-side hiccups.
TRANSIENT_HTTP_STATUS = frozenset({429, 500, 502, 503, 504})
#: Largest JSON-RPC answer read (a full block with its transactions is a few MB).
MAX_RESPONSE_BYTES = 64 << 20
#: Methods whose result is a hex quantity, and reads whose result is an object or null: their
#: answers are checked in the provider, so a broken node gives a LedgerError, not a web3 crash.
_QUANTITY_METHODS = frozenset(
    {
        "eth_chainId",
        "eth_blockNumber",
        "eth_getBalance",
        "eth_getTransactionCount",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_estimateGas",
    }
)
_OBJECT_METHODS = frozenset(
    {"eth_getBlockByNumber", "eth_getTransactionReceipt", "eth_getTransactionByHash"}
)
_HEX_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")


class RetryingHTTPProvider(HTTPProvider):
    """An HTTP provider that retries transient failures of *every* method, then gives up with
    :class:`~flchain.errors.RPCUnavailable`.

    Re-sending ``eth_sendRawTransaction`` is safe here because :class:`Chain` always re-sends
    the same signed bytes and treats "already known" as success.
    """

    def __init__(
        self, url: str, *, timeout: float = 10.0, retries: int = 3, backoff: float = 0.05
    ) -> None:
        super().__init__(
            URI(url), request_kwargs={"timeout": timeout}, exception_retry_configuration=None
        )
        self.url = URI(url)  # endpoint_uri, typed as set (the base class allows None)
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        """Send one request; the decoded answer, checked (else :class:`BadRPCResponse`)."""
        request_data = self.encode_rpc_request(method, params)
        raw = self._make_request(method, request_data)
        return _checked_response(method, json.loads(request_data)["id"], raw, self.url)

    def batch(self, calls: Sequence[tuple[str, Any]]) -> list[RPCResponse]:
        """Send ``calls`` (method, params) as one JSON-RPC batch; the answers in call order,
        each checked as :meth:`make_request` checks one (else :class:`BadRPCResponse`)."""
        if not calls:
            return []
        requests_data = [self.encode_rpc_request(RPCEndpoint(m), p) for m, p in calls]
        ids = [json.loads(r)["id"] for r in requests_data]
        raw = self._make_request("batch", b"[" + b",".join(requests_data) + b"]")
        try:
            answers = safejson.loads(raw)
        except ValueError as exc:
            raise BadRPCResponse(f"{self.url} answered a batch with something not JSON") from exc
        if not isinstance(answers, list) or len(answers) != len(calls):
            # a node that refuses batches answers with one error object
            detail = answers.get("error") if isinstance(answers, dict) else answers
            raise BadRPCResponse(
                f"{self.url} did not answer a batch of {len(calls)} with {len(calls)} answers: "
                f"{detail!r:.200}"
            )
        by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
        return [
            _checked(method, i, by_id.get(i), self.url)
            for (method, _), i in zip(calls, ids, strict=True)
        ]

    def _post(self, request_data: bytes) -> bytes:
        """POST and read the whole answer within ``timeout`` seconds *in total*: requests'
        timeout is per socket read, so a node trickling bytes would otherwise stall us."""
        deadline = time.monotonic() + self.timeout
        session = self._request_session_manager.cache_and_return_session(
            self.url, request_timeout=self.timeout
        )
        kwargs = dict(self.get_request_kwargs())
        with session.post(self.url, data=request_data, stream=True, **kwargs) as resp:
            resp.raise_for_status()
            body = bytearray()
            while chunk := resp.raw.read1(1 << 16, decode_content=True):
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise BadRPCResponse(
                        f"{self.endpoint_uri} sent an answer over {MAX_RESPONSE_BYTES} bytes"
                    )
                if time.monotonic() > deadline:
                    raise requests.Timeout(f"answer took over {self.timeout:g}s")
            return bytes(body)

    def _make_request(self, method: Any, request_data: bytes) -> bytes:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(2.0, self.backoff * 2 ** (attempt - 1)))
            try:
                return self._post(request_data)
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status not in TRANSIENT_HTTP_STATUS:
                    raise RPCUnavailable(f"{self.endpoint_uri} answered HTTP {status}") from exc
                last = exc
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                last = exc
        raise RPCUnavailable(
            f"JSON-RPC endpoint {self.endpoint_uri} unreachable after {self.retries + 1} "
            f"attempts ({type(last).__name__}: {last}). Is the node running? Start one with "
            "`flchain devchain` or `anvil`, or pass another --rpc-url."
        ) from last


def _checked_response(method: str, request_id: Any, raw: bytes, url: str) -> RPCResponse:
    """The JSON-RPC answer in ``raw`` if it is a well-formed answer to request ``request_id``.

    Errors of plain reads are raised here as :class:`LedgerError`; others (calls, gas
    estimates, sends) go on to web3 as ``Web3RPCError``, which :class:`Chain` decodes.
    """
    try:
        response = safejson.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise BadRPCResponse(
            f"{url} answered {method} with something that is not JSON: {raw[:80]!r}"
        ) from exc
    return _checked(method, request_id, response, url)


def _checked(method: str, request_id: Any, response: Any, url: str) -> RPCResponse:
    """``response`` (decoded JSON) if it is a well-formed answer to request ``request_id``."""
    where = f"{url} answered {method}"
    if not isinstance(response, dict):
        raise BadRPCResponse(f"{where} with a JSON {type(response).__name__}, not an object")
    if response.get("jsonrpc") != "2.0":
        raise BadRPCResponse(f'{where} without "jsonrpc": "2.0"')
    if response.get("id") != request_id:
        raise BadRPCResponse(f"{where} with id {response.get('id')!r:.40}, not {request_id}")
    if ("result" in response) == ("error" in response):
        raise BadRPCResponse(f"{where} with neither or both of 'result' and 'error'")
    if "error" in response:
        error = response["error"]
        if not (isinstance(error, dict) and isinstance(error.get("code"), int)):
            raise BadRPCResponse(f"{where} with a malformed error {error!r:.80}")
        if method in _QUANTITY_METHODS - {"eth_estimateGas"} or method in _OBJECT_METHODS:
            raise LedgerError(f"{where} with error {error.get('message', error)!r:.200}")
        return response  # type: ignore[return-value]
    result = response["result"]
    if method in _QUANTITY_METHODS and not (
        isinstance(result, str) and _HEX_QUANTITY.fullmatch(result)
    ):
        raise BadRPCResponse(f"{where} with {result!r:.80}, not a hex quantity")
    if method in _OBJECT_METHODS and not (result is None or isinstance(result, dict)):
        raise BadRPCResponse(f"{where} with {result!r:.80}, not an object or null")
    return response  # type: ignore[return-value]
