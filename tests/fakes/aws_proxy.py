"""A counting HTTP proxy in front of an AWS endpoint (moto): AWS calls as the hook puts them on the wire.

Used by the integration tests (tests/integration/test_index_hook.py) and by the benchmark
(scripts/bench_sync.py, which puts the repository root on sys.path to import it).

Point AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL_SSM at `url`. Every request is counted the moment it arrives
by API as `service:Operation`:

- the service (and the region) is the one the request was signed for (the credential scope of its
  `Authorization` header);
- the operation is the `Action` form field (EC2's query protocol, whose forms are kept: `forms`) or the
  part of the `X-Amz-Target` header after the dot (SSM's JSON protocol, `AmazonSSM.GetParameter`).

Then the call may wait: while the proxy is held (`hold` until `release`), and for the delay of its service
(`slow`). `held` says how many calls are waiting now, `held_total` how many ever waited, `held_spans` when.
Then it is answered with a 503 if its operation is `failing` (in one of the `failing_regions`, when
that is set), else forwarded to the upstream endpoint as it
came, over a kept-alive connection per proxy thread (a 502 if the upstream cannot be reached). An operation
with an entry in `answers` is answered by it instead: it gets the request body and a function that forwards
the request and returns upstream's answer, so it can change that answer, hold the call, or not forward at all.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

ALL = "*"
"""Every operation (`calls`, `failing`) or every service (`slow`)."""
UNKNOWN = "?"
HOLD_SECONDS = 60.0
"""The longest a call waits for `release`."""

# Not forwarded: they describe one hop, and the body is forwarded whole with its own Content-Length.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
)
_UNAVAILABLE = (
    b"<Response><Errors><Error><Code>Unavailable</Code><Message>the proxy says no</Message></Error>"
    b"</Errors><RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
)

Form = dict[str, list[str]]
Answer = tuple[int, str, list[tuple[str, str]], bytes]
"""Status, reason, headers and body of an answer."""
Answerer = Callable[[bytes, Callable[[], Answer]], Answer]
"""Answers one request: its body, and a function that forwards it upstream and returns upstream's answer."""


def _identify(headers: Any, body: bytes) -> tuple[str, str, str, Form]:
    """The region, service and operation of one AWS request (`?` for a part that cannot be told), and its
    form."""
    region = service = UNKNOWN
    authorization = headers.get("Authorization", "") or ""
    if "Credential=" in authorization:
        scope = authorization.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 4:
            region, service = scope[2], scope[3]
    target = headers.get("X-Amz-Target", "") or ""
    if target:
        return region, service, target.rsplit(".", 1)[-1], {}
    form = parse_qs(body.decode("utf-8", "replace"))
    return region, service, form.get("Action", [UNKNOWN])[0], form


def _operation_of(api: str) -> str:
    return api.split(":", 1)[-1]


class AwsProxy:
    """Forwards to `upstream` (an http:// URL) from a loopback port of its own; counts, may hold, delay or fail.

    Run it with `with proxy.running():`, or `start()` and `stop()`.
    """

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"upstream must be an http:// URL, not {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.failing: frozenset[str] = frozenset()
        """Operations answered 503 instead of forwarded; ALL fails every one."""
        self.failing_regions: frozenset[str] = frozenset()
        """Where the `failing` operations fail; empty: in every region."""
        self.answers: dict[str, Answerer] = {}
        """Operations answered by a function of the test's instead of forwarded as they came."""
        self.held = 0
        self.held_total = 0
        self.held_spans: list[tuple[float, float]] = []
        """(start, end) of every held call, on `time.perf_counter`'s clock."""
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._forms: list[Form] = []
        self._delays: dict[str, float] = {}
        self._open = threading.Event()
        self._open.set()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="aws-proxy", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; calls still held or delayed are let go at once."""
        self._closing.set()
        self._open.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @contextmanager
    def running(self) -> Iterator[Self]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    # -- what was seen ----------------------------------------------------------------------------------------

    def counts(self) -> Counter[str]:
        """Calls so far by API, `service:Operation` (a copy)."""
        with self._lock:
            return Counter(self._counts)

    def by_operation(self) -> dict[str, int]:
        """Calls so far by operation, whatever the service."""
        by: Counter[str] = Counter()
        for api, count in self.counts().items():
            by[_operation_of(api)] += count
        return dict(by)

    def calls(self, operation: str = ALL) -> int:
        """Calls that reached the proxy: of one operation, or all of them."""
        if operation == ALL:
            return self.counts().total()
        return self.by_operation().get(operation, 0)

    def failed(self, operation: str) -> int:
        """Calls of this operation answered 503 (`failing`)."""
        with self._lock:
            return self._failed[operation]

    def forms(self, action: str) -> list[Form]:
        """The form fields of every EC2 call of this action, in arrival order."""
        with self._lock:
            return [form for form in self._forms if form.get("Action") == [action]]

    def reset(self) -> Counter[str]:
        """The counts so far by API, and start again from zero (counts, failures and forms)."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
            self._failed.clear()
            self._forms.clear()
            return counts

    # -- what happens to calls --------------------------------------------------------------------------------

    def hold(self) -> None:
        """Calls wait here from now on until `release` (HOLD_SECONDS at the most)."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def slow(self, service: str, seconds: float) -> None:
        """Delay every later call to `service` (`ec2`, `ssm`, ALL) this long; 0 turns it off.

        Calls waiting at that moment finish their wait.
        """
        with self._lock:
            if seconds > 0:
                self._delays[service] = seconds
            else:
                self._delays.pop(service, None)

    def _arrived(self, region: str, service: str, operation: str, form: Form) -> bool:
        """Count the call, hold it as told; whether to fail it (with a 503)."""
        with self._lock:
            self._counts[f"{service}:{operation}"] += 1
            if form:
                self._forms.append(form)
            delay = self._delays.get(service, self._delays.get(ALL, 0.0))
            waits = bool(delay) or not self._open.is_set()
            if waits:
                self.held += 1
                self.held_total += 1
        if waits:
            since = time.perf_counter()
            try:
                self._open.wait(HOLD_SECONDS)
                self._closing.wait(delay)
            finally:
                with self._lock:
                    self.held -= 1
                    self.held_spans.append((since, time.perf_counter()))
        fail = (ALL in self.failing or operation in self.failing) and (
            not self.failing_regions or region in self.failing_regions
        )
        if fail:
            with self._lock:
                self._failed[operation] += 1
        return fail


def _handler_for(proxy: AwsProxy) -> type[BaseHTTPRequestHandler]:
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
            region, service, operation, form = _identify(self.headers, body)
            if proxy._arrived(region, service, operation, form):
                status, reason = 503, "Service Unavailable"
                answer_headers, answer = [("Content-Type", "text/xml")], _UNAVAILABLE
            else:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}

                def forward() -> Answer:
                    try:
                        return self._exchange(headers, body)
                    except (OSError, http.client.HTTPException) as error:
                        forget_upstream()
                        return 502, "Bad Gateway", [], f"proxy: upstream failed: {error}".encode()

                answerer = proxy.answers.get(operation)
                status, reason, answer_headers, answer = answerer(body, forward) if answerer else forward()
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

        def _exchange(self, headers: dict[str, str], body: bytes) -> Answer:
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
