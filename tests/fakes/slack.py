"""A fake Slack Web API: `chat.postMessage` calls recorded, answered like Slack (or as scripted)."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.fakes.server import Call, RecordingServer, Reply

OK = Reply(200, {"ok": True, "channel": "C0", "ts": "1700000000.000100"})


class FakeSlack(RecordingServer):
    @property
    def url(self) -> str:
        """The base URL to give slack_sdk (and SLACK_API_URL)."""
        return f"http://127.0.0.1:{self.port}/api/"

    def posts(self) -> list[Call]:
        return [c for c in self.calls if c.path == "/api/chat.postMessage"]

    @staticmethod
    def channels(calls: list[Call]) -> list[str]:
        return [str(c.body["channel"]) for c in calls]

    @staticmethod
    def texts(calls: list[Call]) -> list[str]:
        return [str(c.body["text"]) for c in calls]


def rate_limited(retry_after: int) -> Reply:
    return Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})


def server_error() -> Reply:
    return Reply(500, {"ok": False, "error": "internal_error"})


def slow(seconds: float) -> Reply:
    return Reply(200, OK.body, delay=seconds)


@contextmanager
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack(OK).running() as server:
        yield server


def headline(call: Call) -> Any:
    """The header block's text of a posted message."""
    return call.body["blocks"][0]["text"]["text"]
