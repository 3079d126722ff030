"""Discord through its webhook, against a local fake webhook server over real HTTP."""

import logging
from collections.abc import Iterator

import pytest

from app.notify.discord import DiscordSender, DiscordTarget
from app.notify.message import console_url, render
from app.notify.targets import NotifyError
from tests.aws import free_port
from tests.events import build_succeeded
from tests.fakes.discord import WEBHOOK_PATH, FakeDiscord, fake_discord, rate_limited
from tests.fakes.server import Reply

BUILT = build_succeeded()


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with fake_discord() as server:
        yield server


def test_the_webhook_gets_one_embed_with_the_ami_link(discord: FakeDiscord) -> None:
    DiscordSender(timeout=1).send(DiscordTarget(discord.webhook_url), render(BUILT))
    (call,) = discord.calls
    assert call.path == WEBHOOK_PATH
    assert call.headers["content-type"] == "application/json"
    assert call.body["content"] == "✅ AMI build succeeded for ami-builds/packer-builder: ami-0built"
    (embed,) = call.body["embeds"]
    assert embed["url"] == console_url("us-west-2", "ami-0built")
    assert {"name": "Duration", "value": "25m07s", "inline": True} in embed["fields"]
    assert call.body["allowed_mentions"] == {"parse": []}


def test_a_429_waits_its_retry_after_once(discord: FakeDiscord) -> None:
    waits: list[float] = []
    discord.then(rate_limited(0.25))
    DiscordSender(timeout=1, sleep=waits.append).send(DiscordTarget(discord.webhook_url), render(BUILT))
    assert len(discord.calls) == 2
    assert waits == [0.25]


def test_rate_limited_twice_gives_up(discord: FakeDiscord) -> None:
    waits: list[float] = []
    discord.then(rate_limited(0.25), rate_limited(0.25))
    with pytest.raises(NotifyError, match="HTTP 429"):
        DiscordSender(timeout=1, sleep=waits.append).send(DiscordTarget(discord.webhook_url), render(BUILT))
    assert len(discord.calls) == 2


def test_a_long_rate_limit_is_not_waited_for(discord: FakeDiscord) -> None:
    discord.then(rate_limited(600))
    with pytest.raises(NotifyError, match="HTTP 429"):
        DiscordSender(timeout=1, max_retry_after=30).send(DiscordTarget(discord.webhook_url), render(BUILT))
    assert len(discord.calls) == 1


@pytest.mark.parametrize(
    ("reply", "expected"),
    [(Reply(500), "webhook answered HTTP 500"), (Reply(204, delay=1.5), "webhook unreachable: TimeoutError")],
    ids=["server error", "timeout"],
)
def test_failures_never_quote_the_webhook_url(
    discord: FakeDiscord, reply: Reply, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    discord.then(reply)
    with pytest.raises(NotifyError) as raised:
        DiscordSender(timeout=1).send(DiscordTarget(discord.webhook_url), render(BUILT))
    assert str(raised.value) == expected
    assert "s3cr3t" not in caplog.text


def test_an_unreachable_webhook_is_a_notify_error_without_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}{WEBHOOK_PATH}"
    with pytest.raises(NotifyError) as raised:
        DiscordSender(timeout=1).send(DiscordTarget(url), render(BUILT))
    assert str(raised.value) == "webhook unreachable: URLError"
