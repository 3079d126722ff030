"""Where notifications go: the spec's notifier plus the Secrets Metacontroller handed over, resolved into targets.

Pure. Secret values live only inside targets (never in their repr) and are never copied into a problem
message: a problem names the Secret and the key, not what is in it.
"""

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import ValidationError

from app.hooks import RelatedResourceRule
from app.spec import Notifier

# Where Metacontroller puts related Secrets, and the keys read from them: names, not secrets.
SECRET_GROUP = "Secret.v1"  # noqa: S105
SLACK_TOKEN_KEY = "token"  # noqa: S105
DISCORD_URL_KEY = "webhookURL"
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")

SecretData = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class SlackTarget:
    channel_name: ClassVar[str] = "slack"
    channel: str
    token: str = field(repr=False)


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


@dataclass(frozen=True)
class DiscordTarget:
    channel_name: ClassVar[str] = "discord"
    webhook_url: str = field(repr=False)


Target = SlackTarget | SnsTarget | SesTarget | DiscordTarget
CHANNELS = ("slack", "sns", "ses", "discord")


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


@dataclass(frozen=True)
class Resolved:
    targets: tuple[Target, ...] = ()
    problems: tuple[Problem, ...] = ()


def notifier_of(raw_spec: Any) -> tuple[Notifier, str] | None:
    """The notifier and region of a raw spec, read on their own so an otherwise invalid spec still notifies."""
    if not isinstance(raw_spec, dict):
        return None
    try:
        notifier = Notifier.model_validate(raw_spec.get("notifier") or {})
    except ValidationError:
        return None
    region = raw_spec.get("region")
    return notifier, region if isinstance(region, str) and _REGION.fullmatch(region) else ""


def secret_names(notifier: Notifier) -> list[str]:
    names = {
        name
        for name in (
            notifier.slack.secret if notifier.slack else None,
            notifier.discord.secret if notifier.discord else None,
        )
        if name
    }
    return sorted(names)


def secret_rule(namespace: str, raw_spec: Any) -> RelatedResourceRule | None:
    """The customize hook's ask for the notifier's Secrets; it depends on the spec alone (rule 12)."""
    found = notifier_of(raw_spec)
    names = secret_names(found[0]) if found else []
    if not names:
        return None
    return RelatedResourceRule(apiVersion="v1", resource="secrets", namespace=namespace, names=names)


def read_secrets(objects: Iterable[Any], namespace: str) -> dict[str, dict[str, str]]:
    """Secrets by name with their `data` base64-decoded; undecodable values are left out."""
    found: dict[str, dict[str, str]] = {}
    for obj in objects:
        if not isinstance(obj, dict):
            continue
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not isinstance(name, str) or meta.get("namespace", namespace) != namespace:
            continue
        data = obj.get("data") or {}
        decoded: dict[str, str] = {}
        for key, value in data.items() if isinstance(data, dict) else ():
            try:
                decoded[str(key)] = base64.b64decode(str(value), validate=True).decode().strip()
            except (binascii.Error, UnicodeDecodeError):
                continue
        found[name] = decoded
    return found


def resolve(
    notifier: Notifier, namespace: str, region: str, secrets: SecretData, fallback_slack_token: str
) -> Resolved:
    targets: list[Target] = []
    problems: list[Problem] = []

    slack = notifier.slack
    if slack is not None and slack.channelIDs:
        token = ""
        if slack.secret:
            token, problem = _secret_value(secrets, namespace, slack.secret, SLACK_TOKEN_KEY)
            if problem is not None:
                fallback = "the service's SLACK_BOT_TOKEN is used" if fallback_slack_token else "Slack is off"
                problems.append(Problem(problem.reason, f"{problem.message}; {fallback}"))
        token = token or fallback_slack_token
        if token:
            targets += [SlackTarget(channel, token) for channel in dict.fromkeys(slack.channelIDs)]
        elif not slack.secret:
            problems.append(
                Problem(
                    "NoSlackToken",
                    "Slack has channels but no token: set spec.notifier.slack.secret or the service's "
                    "SLACK_BOT_TOKEN",
                )
            )

    if notifier.sns is not None:
        targets.append(SnsTarget(notifier.sns.topicARN))

    ses = notifier.ses
    if ses is not None:
        ses_region = ses.region or region
        if ses_region:
            targets.append(SesTarget(ses.sender, tuple(dict.fromkeys(ses.to)), ses_region))
        else:
            problems.append(
                Problem("NoSESRegion", "spec.notifier.ses.region is required while spec.region is invalid")
            )

    discord = notifier.discord
    if discord is not None:
        url, problem = _secret_value(secrets, namespace, discord.secret, DISCORD_URL_KEY)
        if problem is None and not _is_web_url(url):
            problem = Problem(
                "SecretInvalid", f"Secret {discord.secret} key `{DISCORD_URL_KEY}` is not an http(s) URL"
            )
        if problem is not None:
            problems.append(Problem(problem.reason, f"{problem.message}; Discord is off"))
        else:
            targets.append(DiscordTarget(url))
    return Resolved(tuple(targets), tuple(problems))


def _secret_value(secrets: SecretData, namespace: str, name: str, key: str) -> tuple[str, Problem | None]:
    data = secrets.get(name)
    if data is None:
        return "", Problem("SecretNotFound", f"Secret {name} not found in namespace {namespace}")
    value = data.get(key, "")
    if not value:
        return "", Problem("SecretInvalid", f"Secret {name} has no key `{key}`")
    return value, None


def _is_web_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)
