"""The hook as the chart runs it, under uvicorn on a fixed port, with every call Metacontroller makes recorded.

`HookServer` serves `app.main.create_app` with the given settings (as the chart runs it: its AMI index filled
from EC2, here moto, in the background) on one loopback port for as long as the CompositeController points there. `down()` stops it for a while and then
starts a new app on the same port, as a restarted Pod would be: nothing survives but what EC2 holds. Its clock is the
real one plus an offset a test may set (`Clock.jump_to`), to let a backoff pass without waiting
for it.

`Calls` keeps each request and answer, in order, and `Calls.wait()` blocks until a call matches, so a test
waits for what Metacontroller sends instead of for time to pass.
"""

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.main import create_app
from app.model.settings import Settings
from tests.http import serve
from tests.kube.cluster import JsonObject


@dataclass
class Clock:
    """UTC now, plus `offset`."""

    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def jump_to(self, moment: datetime) -> None:
        """From now on the clock reads `moment` now, and runs on from there."""
        self.offset = moment - datetime.now(UTC)


@dataclass(frozen=True)
class Call:
    """One hook call: its path, the request and the answer as JSON, when it was answered (monotonic)."""

    path: str
    status: int
    request: JsonObject
    answer: JsonObject
    at: float

    @property
    def parent(self) -> JsonObject:
        parent: JsonObject = self.request["parent"]
        return parent

    def of(self, namespace: str, name: str) -> bool:
        metadata = self.parent["metadata"]
        return bool(metadata.get("namespace") == namespace and metadata.get("name") == name)


@dataclass
class Calls:
    """Every call so far, in order; thread-safe (uvicorn serves in its own thread)."""

    _calls: list[Call] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def add(self, call: Call) -> None:
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()

    def all(self) -> list[Call]:
        with self._changed:
            return list(self._calls)

    def wait(self, predicate: Callable[[Call], bool], *, timeout: float, what: str, after: int = 0) -> Call:
        """The first call from index `after` on for which `predicate` holds, once it came; TimeoutError
        naming `what` and the last call otherwise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for call in self._calls[after:]:
                    if predicate(call):
                        return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    last = json.dumps(self._calls[-1].answer)[:3000] if self._calls else "no call at all"
                    raise TimeoutError(f"no hook call {what} within {timeout:.0f} s; last answer: {last}")
                self._changed.wait(remaining)


class _Recording:
    """ASGI middleware: records each POST with a JSON body and a JSON answer into `calls`."""

    def __init__(self, app: ASGIApp, calls: Calls) -> None:
        self.app = app
        self.calls = calls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = bytearray()
        answer = bytearray()
        status = 0

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
            return message

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                answer.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receiving, sending)
        with contextlib.suppress(ValueError):
            self.calls.add(
                Call(scope["path"], status, json.loads(body), json.loads(answer), time.monotonic())
            )


class HookServer:
    """The hook on `port`; see the module docstring. Use as a context manager."""

    def __init__(self, port: int, settings: Settings, clock: Clock) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.settings = settings
        self.clock = clock
        self.calls = Calls()
        self._serving: contextlib.ExitStack | None = None

    def start(self) -> None:
        app = create_app(self.settings, clock=self.clock)
        app.add_middleware(_Recording, calls=self.calls)
        self._serving = contextlib.ExitStack()
        self._serving.enter_context(serve(app, self.port))

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.close()
            self._serving = None

    def __enter__(self) -> "HookServer":
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """The hook stopped for the block, then started again as a new app (a restarted Pod)."""
        self.stop()
        try:
            yield
        finally:
            self.start()
