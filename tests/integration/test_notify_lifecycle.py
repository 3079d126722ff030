"""The whole life of a PackerBuilder over real HTTP (the service, moto for EC2/SNS/SES, fake Slack and Discord),
counting exactly the messages each channel receives."""

import base64
import copy
import json
import logging
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from app.aws.ec2 import Ec2
from app.main import create_app
from app.model.settings import Settings
from app.notify.dispatch import Dispatcher, dispatcher_from
from tests.aws import NEWEST_EKS_130_X86, REGION, ec2_client, register_built_ami
from tests.builders import NAMESPACE, build_pod, fail_each_build, parent, request, running, succeeded
from tests.fakes.discord import FakeDiscord, fake_discord
from tests.fakes.slack import FakeSlack, fake_slack
from tests.http import get, post, serve
from tests.seed import SEED_SPEC

TOKEN = "xoxb-9999-lifecycle-s3cr3t"
CHANNELS = ["C0AMIBUILD", "C0PLATFORM"]
SENDER = "ami-builds@example.com"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class World:
    hook: str
    moto: str
    slack: FakeSlack
    discord: FakeDiscord
    dispatcher: Dispatcher
    spec: dict[str, Any]
    sqs: Any
    queue_url: str
    # SQS hands a message out once: what was read stays here.
    sns_seen: list[str] = field(default_factory=list)

    def sync(
        self,
        status: dict[str, Any] | None,
        jobs: list[dict[str, Any]] | None = None,
        pods: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        body = request(parent(self.spec, status=status), jobs, pods)
        body["related"]["Secret.v1"] = {
            "slack-token": secret("slack-token", {"token": TOKEN}),
            "discord-hook": secret("discord-hook", {"webhookURL": self.discord.webhook_url}),
        }
        code, answer = post(f"{self.hook}/sync", body)
        assert code == 200, answer
        return dict(answer)

    def delivered(self) -> dict[str, list[str]]:
        """The headline of every message each channel received, in order."""
        assert self.dispatcher.flush(10)
        sns = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        self.sns_seen += [json.loads(m["Body"])["Subject"] for m in sns]
        with _DIRECT.open(f"{self.moto}/moto-api/data.json", timeout=5) as response:
            emails = json.loads(response.read()).get("ses", {}).get("Message", [])
        return {
            "slack": [f"{c.body['channel']}: {c.body['text'].splitlines()[0]}" for c in self.slack.posts()],
            "discord": [c.body["embeds"][0]["title"] for c in self.discord.calls],
            "sns": list(self.sns_seen),
            "ses": [e["subject"].split(" ", 1)[1] for e in emails],
        }


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": encoded,
    }


@pytest.fixture
def world(ec2_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for service in ("SNS", "SES", "SQS"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", ec2_env)
    topic = boto3.client("sns", region_name=REGION).create_topic(Name="ami-builds")["TopicArn"]
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="ami-builds")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    boto3.client("sns", region_name=REGION).subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress=SENDER)
    spec = copy.deepcopy(SEED_SPEC) | {
        "notifier": {
            "slack": {"channelIDs": CHANNELS, "secret": "slack-token"},
            "sns": {"topicARN": topic},
            "ses": {"from": SENDER, "to": ["ops@example.com"]},
            "discord": {"secret": "discord-hook"},
        }
    }
    with fake_slack() as slack, fake_discord() as discord:
        settings = Settings(slack_api_url=slack.url)
        dispatcher = dispatcher_from(settings)
        with serve(create_app(settings, images=Ec2(), notifier=dispatcher)) as hook:
            yield World(hook, ec2_env, slack, discord, dispatcher, spec, sqs, queue_url)


def every_channel(world: World, headlines: list[str]) -> None:
    got = world.delivered()
    assert got["slack"] == [f"{channel}: {h}" for h in headlines for channel in CHANNELS]
    assert got["discord"] == headlines
    assert got["sns"] == headlines
    assert got["ses"] == headlines


def test_new_started_succeeded_is_two_messages_per_channel(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    now = datetime.now(UTC)
    who = "ami-builds/packer-builder-local"

    first = world.sync(None)
    job = first["children"][0]
    following = world.sync(first["status"], [running(job, now - timedelta(minutes=20))])
    world.sync(following["status"], [running(job, now - timedelta(minutes=20))])
    every_channel(world, [f"AMI build started for {who}"])

    built = register_built_ami(ec2_client(world.moto), "opsy-generic-fips-1")
    done = succeeded(job, now - timedelta(minutes=20), now - timedelta(minutes=1))
    pod = build_pod(done, f"{REGION}:{built}")
    recorded = world.sync(following["status"], [done], [pod])
    settled = world.sync(recorded["status"], [done], [pod])
    world.sync(settled["status"])
    # A stale replay of the status from before the success.
    world.sync(following["status"], [done], [pod])
    every_channel(world, [f"AMI build started for {who}", f"AMI build succeeded for {who}: {built}"])

    success = world.slack.posts()[-1].body["text"]
    assert f"Base AMI: {NEWEST_EKS_130_X86}" in success
    assert "Duration: 19m00s" in success
    assert f"#ImageDetails:imageId={built}" in success

    code, metrics = get(f"{world.hook}/metrics")
    assert code == 200
    for channel, sent in (("slack", 4), ("discord", 2), ("sns", 2), ("ses", 2)):
        assert (
            f'packer_builder_notifications_total{{channel="{channel}",outcome="sent"}} {sent}'.encode()
            in metrics
        )
    for answer in (first, following, recorded, settled):
        assert TOKEN not in json.dumps(answer)
        assert world.discord.webhook_url not in json.dumps(answer)
    assert TOKEN not in caplog.text
    assert world.discord.webhook_url not in caplog.text


def test_failures_up_to_the_retry_limit(world: World) -> None:
    world.spec["maxNumberOfJobs"] = 2
    who = "ami-builds/packer-builder-local"
    answer, jobs = fail_each_build(world.sync(None), 2, world.sync)
    again = world.sync(answer["status"], jobs)
    assert again["status"]["state"] == "MaxFailedJobsReached"
    every_channel(
        world,
        [
            f"AMI build started for {who}",
            f"AMI build failed for {who} (attempt 1 of 2)",
            f"AMI build started for {who}",
            f"AMI build failed for {who} (attempt 2 of 2)",
            f"AMI builds stopped for {who}: 2 of 2 failed",
        ],
    )
    failure = world.discord.calls[1].body["embeds"][0]["fields"]
    assert {
        "name": "Reason",
        "value": "BackoffLimitExceeded: Job has reached the specified backoff limit",
        "inline": False,
    } in failure
