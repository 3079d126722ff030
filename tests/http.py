"""Run an ASGI app under a real uvicorn server on a free loopback port, for tests over real HTTP."""

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from tests.aws import free_port

# Loopback only: a proxy from the environment must not get in the way.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


START_DEADLINE = 60.0


@contextmanager
def serve(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """The app's base URL while uvicorn serves it on `port` (default: a free one)."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    # Start-up imports and builds the app on a busy CI core: seen taking over 10 s at a load average of 4.5.
    deadline = time.monotonic() + START_DEADLINE
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def post(url: str, body: Any, raw: bytes | None = None) -> tuple[int, Any]:
    """POST JSON (or raw bytes); returns the status code and the decoded JSON answer."""
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with _DIRECT.open(request, timeout=30) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return int(error.code), json.loads(text or b"null")
        except ValueError:  # a 500's plain "Internal Server Error", shown as it came
            return int(error.code), text.decode(errors="replace")


def get(url: str) -> tuple[int, bytes]:
    with _DIRECT.open(url, timeout=10) as response:
        return int(response.status), bytes(response.read())
