"""Slack through slack_sdk against a local fake Slack Web API, driven by the service's /sync over real HTTP."""

import base64
import copy
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.main import create_app
from app.model.settings import Settings
from app.notify.dispatch import Dispatcher
from app.notify.slack import SlackSender
from tests.builders import NAMESPACE, T0, parent, request, running
from tests.fakes.ec2 import NoAmis
from tests.fakes.slack import FakeSlack, fake_slack, headline, rate_limited, server_error, slow
from tests.http import get, post, serve
from tests.seed import SEED_SPEC

TOKEN = "xoxb-4242-s3cr3t-t0k3n"
CHANNELS = ["C0AMIBUILD", "C0PLATFORM"]
SPEC = copy.deepcopy(SEED_SPEC) | {"notifier": {"slack": {"channelIDs": CHANNELS, "secret": "slack-token"}}}
TIMEOUT = 1


@dataclass
class Hook:
    url: str
    slack: FakeSlack
    dispatcher: Dispatcher
    waits: list[float] = field(default_factory=list)

    def sync(self, body: dict[str, Any]) -> dict[str, Any]:
        code, answer = post(f"{self.url}/sync", body)
        assert code == 200, answer
        return dict(answer)

    def posts_after_flush(self) -> list[Any]:
        assert self.dispatcher.flush(10)
        return self.slack.posts()


def slack_secret(token: str = TOKEN) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "slack-token", "namespace": NAMESPACE},
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }


def with_secret(body: dict[str, Any]) -> dict[str, Any]:
    body["related"]["Secret.v1"] = {"slack-token": slack_secret()}
    return body


@pytest.fixture
def hook() -> Iterator[Hook]:
    waits: list[float] = []
    with fake_slack() as slack:
        dispatcher = Dispatcher({"slack": SlackSender(slack.url, timeout=TIMEOUT, sleep=waits.append)})
        settings = Settings(slack_api_url=slack.url)
        with serve(create_app(settings, images=NoAmis(), clock=lambda: T0, notifier=dispatcher)) as url:
            yield Hook(url, slack, dispatcher, waits)


def test_a_new_build_is_announced_once_in_every_channel(hook: Hook) -> None:
    first = hook.sync(with_secret(request(parent(SPEC))))
    posts = hook.posts_after_flush()
    assert FakeSlack.channels(posts) == CHANNELS
    for call in posts:
        assert call.headers["authorization"] == f"Bearer {TOKEN}"
        assert headline(call) == "🔨 AMI build started for ami-builds/packer-builder-local"
        assert call.body["text"].startswith("AMI build started for ami-builds/packer-builder-local")
        assert f"Job: {first['status']['jobName']}" in call.body["text"]
        assert "Source: https://github.com/ibeify/eks-node-group-ami-refresh@main" in call.body["text"]
    ready = next(c for c in first["status"]["conditions"] if c["type"] == "NotifierReady")
    assert ready["status"] == "True"


def test_repeated_syncs_and_a_stale_status_replay_announce_nothing_more(hook: Hook) -> None:
    first = hook.sync(with_secret(request(parent(SPEC))))
    job = running(first["children"][0], T0)
    again = hook.sync(with_secret(request(parent(SPEC, status=first["status"]), [job])))
    hook.sync(with_secret(request(parent(SPEC, status=again["status"]), [job])))
    # Metacontroller hands over the status from before the build started, with the build already running.
    hook.sync(with_secret(request(parent(SPEC), [job])))
    assert len(hook.posts_after_flush()) == len(CHANNELS)
    assert hook.dispatcher.counters.suppressed == 1


def test_a_rate_limited_post_is_retried_after_its_retry_after(hook: Hook) -> None:
    hook.slack.then(rate_limited(retry_after=7))
    hook.sync(with_secret(request(parent(SPEC))))
    posts = hook.posts_after_flush()
    assert FakeSlack.channels(posts) == [CHANNELS[0], CHANNELS[0], CHANNELS[1]]
    assert hook.waits == [7.0]
    assert hook.dispatcher.counters.get("slack", "sent") == 2


@pytest.mark.parametrize(
    "trouble", [server_error(), slow(TIMEOUT + 1)], ids=["500 from Slack", "Slack times out"]
)
def test_a_slack_failure_never_fails_or_delays_the_sync(
    hook: Hook, trouble: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hook.slack.then(trouble)
    started = time.monotonic()
    answer = hook.sync(with_secret(request(parent(SPEC))))
    assert time.monotonic() - started < TIMEOUT
    assert len(answer["children"]) == 1
    posts = hook.posts_after_flush()
    # Not retried: after a 5xx or a timeout Slack may have posted the message anyway.
    assert FakeSlack.channels(posts) == CHANNELS
    assert hook.dispatcher.counters.get("slack", "failed") == 1
    assert hook.dispatcher.counters.get("slack", "sent") == 1
    assert f"channel {CHANNELS[0]}" in caplog.text
    assert TOKEN not in caplog.text
    code, metrics = get(f"{hook.url}/metrics")
    assert code == 200
    assert b'packer_builder_notifications_total{channel="slack",outcome="failed"} 1' in metrics
    assert TOKEN.encode() not in metrics


def test_a_missing_secret_is_a_condition_and_sends_nothing(hook: Hook) -> None:
    answer = hook.sync(request(parent(SPEC)))
    assert len(answer["children"]) == 1
    ready = next(c for c in answer["status"]["conditions"] if c["type"] == "NotifierReady")
    assert (ready["status"], ready["reason"]) == ("False", "SecretNotFound")
    assert "slack-token" in ready["message"]
    assert hook.posts_after_flush() == []


def test_the_services_own_token_is_the_fallback() -> None:
    spec = copy.deepcopy(SEED_SPEC) | {"notifier": {"slack": {"channelIDs": ["C0FALLBACK"]}}}
    with fake_slack() as slack:
        settings = Settings(slack_api_url=slack.url, slack_bot_token="xoxb-service-wide")
        dispatcher = Dispatcher({"slack": SlackSender(slack.url, timeout=TIMEOUT)})
        with serve(create_app(settings, images=NoAmis(), clock=lambda: T0, notifier=dispatcher)) as url:
            code, _ = post(f"{url}/sync", request(parent(spec)))
            assert code == 200
            assert dispatcher.flush(10)
        (call,) = slack.posts()
    assert call.body["channel"] == "C0FALLBACK"
    assert call.headers["authorization"] == "Bearer xoxb-service-wide"


def test_slack_api_url_from_the_environment_reaches_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_slack() as slack:
        monkeypatch.setenv("SLACK_API_URL", slack.url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-env")
        settings = Settings.from_env()
        assert "xoxb-from-env" not in repr(settings)
        app = create_app(settings, images=NoAmis(), clock=lambda: T0)
        with serve(app) as url:
            spec = copy.deepcopy(SEED_SPEC) | {"notifier": {"slack": {"channelIDs": ["C0ENV"]}}}
            assert post(f"{url}/sync", request(parent(spec)))[0] == 200
            (call,) = slack.wait_for(1)
    assert call.headers["authorization"] == "Bearer xoxb-from-env"
