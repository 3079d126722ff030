"""A counting, optionally slow HTTP proxy in front of an AWS endpoint (moto), for scripts/bench_sync.py.

The process under test is pointed at the proxy (`AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL_SSM`); every
request is forwarded to the upstream endpoint as it came and counted by API as `service:Operation`:

- the service is the one the request was signed for (the credential scope of its `Authorization` header);
- the operation is the `Action` form field (EC2's query protocol) or the part of the `X-Amz-Target` header
  after the dot (SSM's JSON protocol, `AmazonSSM.GetParameter`).

`slow(service, seconds)` makes every later call to that service wait that long before it is forwarded (an
overloaded or distant endpoint); `slow(service, 0)` turns it off. Calls waiting at that moment finish their
wait. `held` says how many calls are waiting now, `held_total` how many ever waited, `held_spans` when.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Not forwarded: they describe one hop, and the body is forwarded whole with its own Content-Length.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
)
UNKNOWN = "?"


def api_of(headers: Any, body: bytes) -> str:
    """`service:Operation` of one AWS request (`?` for a part that cannot be told)."""
    service = UNKNOWN
    authorization = headers.get("Authorization", "") or ""
    if "Credential=" in authorization:
        scope = authorization.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 4:
            service = scope[3]
    target = headers.get("X-Amz-Target", "") or ""
    if target:
        operation = target.rsplit(".", 1)[-1]
    else:
        form = parse_qs(body.decode("utf-8", "replace"))
        operation = form.get("Action", [UNKNOWN])[0]
    return f"{service}:{operation}"


class CountingProxy:
    """Forwards to `upstream` (an http:// URL) from a loopback port of its own; counts and may delay."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"upstream must be an http:// URL, not {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._delays: dict[str, float] = {}
        self.held = 0
        self.held_total = 0
        self.held_spans: list[tuple[float, float]] = []
        """(start, end) of every held call, on `time.perf_counter`'s clock."""
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="aws-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def counts(self) -> Counter[str]:
        """Calls so far by API (a copy)."""
        with self._lock:
            return Counter(self._counts)

    def reset(self) -> Counter[str]:
        """The counts so far, and start again from zero."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
            return counts

    def slow(self, service: str, seconds: float) -> None:
        """Hold every later call to `service` (`ec2`, `ssm`) this long before forwarding it; 0 turns it off."""
        with self._lock:
            if seconds > 0:
                self._delays[service] = seconds
            else:
                self._delays.pop(service, None)

    def _arrived(self, api: str) -> float:
        """Count the call; the seconds to hold it."""
        with self._lock:
            self._counts[api] += 1
            delay = self._delays.get(api.split(":", 1)[0], 0.0)
            if delay:
                self.held += 1
                self.held_total += 1
            return delay

    def _released(self, since: float) -> None:
        with self._lock:
            self.held -= 1
            self.held_spans.append((since, time.perf_counter()))


def _handler_for(proxy: CountingProxy) -> type[BaseHTTPRequestHandler]:
    local = threading.local()

    def upstream() -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
            local.connection = connection
        return connection

    def forget_upstream() -> None:
        connection: http.client.HTTPConnection | None = getattr(local, "connection", None)
        if connection is not None:
            connection.close()
            local.connection = None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects

        def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per call is noise
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length", "0") or 0)
            body = self.rfile.read(length) if length else b""
            delay = proxy._arrived(api_of(self.headers, body))
            if delay:
                since = time.perf_counter()
                try:
                    time.sleep(delay)
                finally:
                    proxy._released(since)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            try:
                status, reason, answer_headers, answer = self._exchange(headers, body)
            except (OSError, http.client.HTTPException) as error:
                forget_upstream()
                message = f"proxy: upstream failed: {error}".encode()
                status, reason, answer_headers, answer = 502, "Bad Gateway", [], message
            try:
                self.send_response(status, reason)
                for key, value in answer_headers:
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:  # the caller gave up (its read timeout) while the call was held
                self.close_connection = True

        def _exchange(
            self, headers: dict[str, str], body: bytes
        ) -> tuple[int, str, list[tuple[str, str]], bytes]:
            for attempt in range(2):  # a kept-alive upstream connection may have been closed meanwhile
                connection = upstream()
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    return response.status, response.reason, response.getheaders(), response.read()
                except (OSError, http.client.HTTPException):
                    forget_upstream()
                    if attempt:
                        raise
            raise AssertionError("unreachable")

        do_GET = _forward
        do_POST = _forward
        do_PUT = _forward
        do_DELETE = _forward
        do_HEAD = _forward

    return Handler
