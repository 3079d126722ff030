"""SNS and SES through boto3 against a real moto server; SNS messages are read back from a subscribed SQS queue."""

import json
import urllib.request
from typing import Any

import boto3
import pytest

from app.notify.aws import SesSender, SesTarget, SnsSender, SnsTarget
from app.notify.message import console_url, render
from app.notify.targets import NotifyError
from tests.aws import REGION
from tests.events import build_succeeded

BUILT = build_succeeded(REGION)
SENDER = "ami-builds@example.com"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def point_at_moto(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Only the environment, as an operator would configure it: boto3 reads AWS_ENDPOINT_URL_<SERVICE>."""
    for service in ("SNS", "SES", "SQS"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", url)


@pytest.fixture
def moto(ec2_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    point_at_moto(monkeypatch, ec2_env)
    return ec2_env


def subscribed_queue(topic_arn: str, name: str = "notifications") -> tuple[Any, str]:
    sqs = boto3.client("sqs", region_name=REGION)
    attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    queue_url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    boto3.client("sns", region_name=REGION).subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return sqs, queue_url


def received(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def ses_outbox(moto: str) -> list[dict[str, Any]]:
    with _DIRECT.open(f"{moto}/moto-api/data.json", timeout=5) as response:
        data = json.loads(response.read())
    return list(data.get("ses", {}).get("Message", []))


def test_sns_publishes_subject_and_plain_text(moto: str) -> None:
    topic = boto3.client("sns", region_name=REGION).create_topic(Name="ami-builds")["TopicArn"]
    sqs, queue = subscribed_queue(topic)
    SnsSender().send(SnsTarget(topic), render(BUILT))
    (message,) = received(sqs, queue)
    assert message["Subject"] == "AMI build succeeded for ami-builds/packer-builder: ami-0built"
    assert "Built AMI: ami-0built" in message["Message"]
    assert "Duration: 25m07s" in message["Message"]
    assert console_url(REGION, "ami-0built") in message["Message"]


def test_sns_fifo_topics_get_a_group_and_a_deduplication_id(moto: str) -> None:
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="ami-builds.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    sqs, queue = subscribed_queue(topic, "notifications.fifo")
    SnsSender().send(SnsTarget(topic), render(BUILT))
    (message,) = received(sqs, queue)
    assert message["Subject"].startswith("AMI build succeeded")


def test_sns_to_a_missing_topic_is_a_notify_error(moto: str) -> None:
    missing = f"arn:aws:sns:{REGION}:123456789012:not-there"
    with pytest.raises(NotifyError, match=f"SNS Publish to {missing}: NotFound"):
        SnsSender().send(SnsTarget(missing), render(BUILT))


def test_ses_sends_one_email_to_every_recipient(moto: str) -> None:
    boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress=SENDER)
    target = SesTarget(SENDER, ("ops@example.com", "security@example.com"), REGION)
    SesSender().send(target, render(BUILT))
    (mail,) = ses_outbox(moto)
    assert mail["source"] == SENDER
    assert mail["destinations"]["ToAddresses"] == ["ops@example.com", "security@example.com"]
    assert mail["subject"] == "✅ AMI build succeeded for ami-builds/packer-builder: ami-0built"
    assert "Base AMI: ami-0base" in mail["body"]


def test_ses_from_an_unverified_sender_is_a_notify_error(moto: str) -> None:
    with pytest.raises(NotifyError, match=f"SES SendEmail in {REGION}: MessageRejected"):
        SesSender().send(SesTarget("nobody@example.com", ("ops@example.com",), REGION), render(BUILT))
    assert ses_outbox(moto) == []
