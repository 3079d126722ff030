"""A fake Discord webhook endpoint: POSTs recorded, answered 204 like Discord (or as scripted)."""

from collections.abc import Iterator
from contextlib import contextmanager

from tests.fakes.server import RecordingServer, Reply

WEBHOOK_PATH = "/api/webhooks/123456789012345678/s3cr3t-w3bh00k-t0k3n"


class FakeDiscord(RecordingServer):
    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"


def rate_limited(retry_after: float) -> Reply:
    return Reply(429, {"message": "You are being rate limited.", "retry_after": retry_after, "global": False})


@contextmanager
def fake_discord() -> Iterator[FakeDiscord]:
    with FakeDiscord(Reply(204)).running() as server:
        yield server
