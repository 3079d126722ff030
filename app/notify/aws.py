"""SNS and SES through boto3, bounded like the EC2 adapter (short timeouts, few attempts).

Endpoints come from boto3 itself (AWS_ENDPOINT_URL_SNS, AWS_ENDPOINT_URL_SES), as for EC2, so moto and the
real services are configured the same way. Credentials are the service's own (IRSA or the environment), so
neither section names a Secret.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.aws.aws_clients import PerRegion, bounded_config
from app.model.settings import Settings
from app.model.spec import SesNotifier, SnsNotifier
from app.notify.message import Message
from app.notify.targets import Channel, Lookup, NotifyError, Problem, Resolved, Target

if TYPE_CHECKING:
    from mypy_boto3_ses import SESClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import PublishInputTypeDef

# SNS subjects: ASCII, no line breaks, under 100 characters.
_SUBJECT_MAX = 99
_BOUNDED = bounded_config(connect_timeout=1, read_timeout=3, max_attempts=2)


@dataclass(frozen=True)
class SnsTarget:
    channel_name: ClassVar[str] = "sns"
    topic_arn: str


@dataclass(frozen=True)
class SesTarget:
    channel_name: ClassVar[str] = "ses"
    sender: str
    recipients: tuple[str, ...]
    region: str


def _resolve_ses(ses: SesNotifier, lookup: Lookup) -> Resolved:
    """SES sends from a region: the section's own, else the builder's (unknown when spec.region is invalid)."""
    region = ses.region or lookup.region
    if not region:
        problem = Problem("NoSESRegion", "spec.notifier.ses.region is required while spec.region is invalid")
        return Resolved(problems=(problem,))
    return Resolved((SesTarget(ses.sender, tuple(dict.fromkeys(ses.to)), region),))


def _config(settings: Settings) -> Config:
    """Bounded by NOTIFY_TIMEOUT_SECONDS like every other sender: a slow AWS endpoint only delays the queue."""
    timeout = settings.notify_timeout_seconds
    return bounded_config(min(settings.aws_connect_timeout, timeout), timeout, settings.aws_max_attempts)


def _failure(service: str, error: Exception) -> NotifyError:
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code") or "Unknown"
        return NotifyError(f"{service}: {code}")
    return NotifyError(f"{service}: {type(error).__name__}")


def sns_subject(message: Message) -> str:
    ascii_only = message.headline.encode("ascii", "replace").decode().replace("\n", " ")
    return ascii_only if len(ascii_only) <= _SUBJECT_MAX else ascii_only[: _SUBJECT_MAX - 3] + "..."


class SnsSender:
    def __init__(self, config: Config = _BOUNDED, session: boto3.session.Session | None = None) -> None:
        boto = session or boto3.session.Session()
        self._client: PerRegion[SNSClient] = PerRegion(
            lambda region: boto.client("sns", region_name=region, config=config)
        )

    def send(self, target: Target, message: Message) -> None:
        if not isinstance(target, SnsTarget):
            raise TypeError(f"not an SNS target: {type(target).__name__}")
        region = target.topic_arn.split(":")[3]
        params: PublishInputTypeDef = {
            "TopicArn": target.topic_arn,
            "Subject": sns_subject(message),
            "Message": message.text(),
        }
        if target.topic_arn.endswith(".fifo"):
            # FIFO topics need a group, and drop a repeated deduplication id for five minutes: that
            # catches the same transition announced by two replicas.
            params["MessageGroupId"] = "packer-builder"
            params["MessageDeduplicationId"] = hashlib.sha256(message.text().encode()).hexdigest()
        try:
            self._client(region).publish(**params)
        except (ClientError, BotoCoreError) as error:
            raise _failure(f"SNS Publish to {target.topic_arn}", error) from None


class SesSender:
    def __init__(self, config: Config = _BOUNDED, session: boto3.session.Session | None = None) -> None:
        boto = session or boto3.session.Session()
        self._client: PerRegion[SESClient] = PerRegion(
            lambda region: boto.client("ses", region_name=region, config=config)
        )

    def send(self, target: Target, message: Message) -> None:
        if not isinstance(target, SesTarget):
            raise TypeError(f"not an SES target: {type(target).__name__}")
        try:
            self._client(target.region).send_email(
                Source=target.sender,
                Destination={"ToAddresses": list(target.recipients)},
                Message={
                    "Subject": {"Data": f"{message.emoji} {message.headline}", "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": message.text(), "Charset": "UTF-8"}},
                },
            )
        except (ClientError, BotoCoreError) as error:
            raise _failure(f"SES SendEmail in {target.region}", error) from None


SNS: Channel[SnsNotifier] = Channel(
    name=SnsTarget.channel_name,
    section=lambda notifier: notifier.sns,
    resolve=lambda sns, _lookup: Resolved((SnsTarget(sns.topicARN),)),
    sender=lambda settings: SnsSender(_config(settings)),
)
SES: Channel[SesNotifier] = Channel(
    name=SesTarget.channel_name,
    section=lambda notifier: notifier.ses,
    resolve=_resolve_ses,
    sender=lambda settings: SesSender(_config(settings)),
)
