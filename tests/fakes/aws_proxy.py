"""A counting HTTP proxy in front of the moto server: AWS calls as the hook puts them on the wire.

Point AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL_SSM at `url`. Each call is counted by operation (EC2's `Action`
form field, SSM's `X-Amz-Target`) the moment it arrives, then optionally held (`hold`), delayed (`delay`) or
answered with a 503 instead of being forwarded (`failing`).
"""

import http.client
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

ALL = "*"
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})
_UNAVAILABLE = (
    b"<Response><Errors><Error><Code>Unavailable</Code><Message>the proxy says no</Message></Error>"
    b"</Errors><RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
)


class AwsProxy:
    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self._upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.delay = 0.0
        """Seconds every call waits before it is forwarded (or failed)."""
        self.failing: frozenset[str] = frozenset()
        """Operations answered 503 instead of forwarded; ALL fails every one."""
        self._open = threading.Event()
        self._open.set()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._forms: list[dict[str, list[str]]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def calls(self, operation: str = ALL) -> int:
        """Calls that reached the proxy: of one operation, or all of them."""
        with self._lock:
            return self._seen.total() if operation == ALL else self._seen[operation]

    def failed(self, operation: str) -> int:
        with self._lock:
            return self._failed[operation]

    def by_operation(self) -> dict[str, int]:
        with self._lock:
            return dict(self._seen)

    def forms(self, action: str) -> list[dict[str, list[str]]]:
        """The form fields of every EC2 call of this action, in arrival order."""
        with self._lock:
            return [form for form in self._forms if form.get("Action") == [action]]

    def hold(self) -> None:
        """Calls wait here from now on until `release`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def _arrived(self, operation: str, form: dict[str, list[str]]) -> bool:
        with self._lock:
            self._seen[operation] += 1
            if form:
                self._forms.append(form)
        self._open.wait(60)
        self._closing.wait(self.delay)
        fail = ALL in self.failing or operation in self.failing
        if fail:
            with self._lock:
                self._failed[operation] += 1
        return fail

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                form = {} if target else parse_qs(body.decode(errors="replace"))
                operation = target.rsplit(".", 1)[-1] if target else form.get("Action", ["?"])[0]
                if proxy._arrived(operation, form):
                    status, headers, payload = 503, [("Content-Type", "text/xml")], _UNAVAILABLE
                else:
                    sent = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    status, headers, payload = proxy._forward("POST", self.path, sent, body)
                try:
                    self.send_response(status)
                    for name, value in headers:
                        if name.lower() not in _HOP_BY_HOP:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (read timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[Self]:
        thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._closing.set()
            self._open.set()
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)
