"""The background dispatcher: repeats suppressed, never blocking the hook, failures counted and never raised."""

import logging
import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from app.notify.aws import SnsTarget
from app.notify.discord import DiscordTarget
from app.notify.dispatch import Dispatcher
from app.notify.events import Event, Kind
from app.notify.message import Message
from app.notify.slack import SlackTarget
from app.notify.targets import NotifyError, Target

STARTED = Event(Kind.started, "pb", "ami-builds", "uid-1", "build-1", region="us-west-2", job_name="pb-1")
SUCCEEDED = Event(
    Kind.succeeded, "pb", "ami-builds", "uid-1", "build-1", region="us-west-2", image_id="ami-1"
)
TOKEN = "xoxb-s3cr3t"
SLACK_A = SlackTarget("C0A", TOKEN)
SLACK_B = SlackTarget("C0B", TOKEN)
SNS = SnsTarget("arn:aws:sns:us-west-2:123456789012:builds")


class Recorder:
    """A sender that records what it was asked to deliver; optionally fails or holds the worker."""

    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[tuple[Target, str]] = []
        self.error = error
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def send(self, target: Target, message: Message) -> None:
        self.entered.set()
        self.release.wait(5)
        if self.error is not None:
            raise self.error
        self.sent.append((target, message.headline))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_event_goes_to_every_target_once() -> None:
    slack, sns = Recorder(), Recorder()
    dispatcher = Dispatcher({"slack": slack, "sns": sns})
    dispatcher.submit([STARTED, SUCCEEDED], [SLACK_A, SLACK_B, SNS])
    assert dispatcher.flush(5)
    assert [t for t, _ in slack.sent] == [SLACK_A, SLACK_B, SLACK_A, SLACK_B]
    assert [h for _, h in sns.sent] == [
        "AMI build started for ami-builds/pb",
        "AMI build succeeded for ami-builds/pb: ami-1",
    ]
    assert dispatcher.counters.get("slack", "sent") == 4
    assert dispatcher.counters.get("sns", "sent") == 2


def test_a_repeat_is_suppressed_until_the_dedupe_window_ends() -> None:
    slack, clock = Recorder(), Clock()
    dispatcher = Dispatcher({"slack": slack}, dedupe_seconds=600, clock=clock)
    dispatcher.submit([STARTED], [SLACK_A])
    dispatcher.submit([STARTED], [SLACK_A])
    clock.now = 599
    dispatcher.submit([STARTED], [SLACK_A])
    assert dispatcher.flush(5)
    assert len(slack.sent) == 1
    assert dispatcher.counters.suppressed == 2
    clock.now = 601
    dispatcher.submit([STARTED], [SLACK_A])
    assert dispatcher.flush(5)
    assert len(slack.sent) == 2


def test_submit_returns_while_a_sender_hangs_and_flush_times_out() -> None:
    slack = Recorder()
    slack.release.clear()
    dispatcher = Dispatcher({"slack": slack})
    dispatcher.submit([STARTED], [SLACK_A])
    assert slack.entered.wait(5)
    assert not dispatcher.flush(0.05)
    slack.release.set()
    assert dispatcher.flush(5)
    assert len(slack.sent) == 1


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    slack = Recorder()
    slack.release.clear()
    dispatcher = Dispatcher({"slack": slack}, queue_size=1)
    dispatcher.submit([STARTED], [SLACK_A])
    assert slack.entered.wait(5)  # the worker holds the first delivery; the queue is empty again
    dispatcher.submit([SUCCEEDED], [SLACK_A, SLACK_B])
    assert dispatcher.counters.get("slack", "dropped") == 1
    slack.release.set()
    assert dispatcher.flush(5)
    assert [t for t, _ in slack.sent] == [SLACK_A, SLACK_A]


@pytest.mark.parametrize(
    "error",
    [NotifyError("channel C0A: HTTP 500 internal_error"), RuntimeError(f"boom with Bearer {TOKEN}")],
    ids=["expected failure", "unexpected error"],
)
def test_a_failing_channel_is_counted_logged_without_secrets_and_others_still_deliver(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    slack, sns = Recorder(error), Recorder()
    dispatcher = Dispatcher({"slack": slack, "sns": sns})
    dispatcher.submit([STARTED], [SLACK_A, SNS])
    assert dispatcher.flush(5)
    assert dispatcher.counters.get("slack", "failed") == 1
    assert dispatcher.counters.get("sns", "sent") == 1
    assert "slack notification BuildStarted for ami-builds/pb failed" in caplog.text
    assert TOKEN not in caplog.text


def test_a_channel_without_a_sender_fails_that_delivery_only() -> None:
    dispatcher = Dispatcher({"slack": Recorder()})
    dispatcher.submit([STARTED], [DiscordTarget("https://discord.example/hook"), SLACK_A])
    assert dispatcher.flush(5)
    assert dispatcher.counters.get("discord", "failed") == 1
    assert dispatcher.counters.get("slack", "sent") == 1


def test_metrics_are_prometheus_text_without_targets() -> None:
    dispatcher = Dispatcher({"slack": Recorder(NotifyError("no"))})
    dispatcher.submit([STARTED], [SLACK_A])
    dispatcher.submit([STARTED], [SLACK_A])
    assert dispatcher.flush(5)
    registry = CollectorRegistry()
    registry.register(dispatcher.counters)
    text = generate_latest(registry).decode()
    assert "# TYPE packer_builder_notifications_total counter" in text
    assert 'packer_builder_notifications_total{channel="slack",outcome="failed"} 1.0' in text
    assert 'packer_builder_notifications_total{channel="discord",outcome="sent"} 0.0' in text
    assert "packer_builder_notification_repeats_suppressed_total 1.0" in text
    assert "C0A" not in text
    assert TOKEN not in text
