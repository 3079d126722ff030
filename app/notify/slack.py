"""Slack through slack_sdk's WebClient: one chat.postMessage per channel, Block Kit with a plain-text fallback.

The spec's section becomes one target per channel ID, with the token from the Secret it names or else the
service's SLACK_BOT_TOKEN.

Retries are few and deliberate: a 429 is retried after its Retry-After (when that is short), a connection that
never got through is retried once, and a 5xx is not retried because Slack may have posted the message anyway.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from app.model.spec import SlackNotifier
from app.notify.message import Message, Tone
from app.notify.targets import Channel, Lookup, NotifyError, Problem, Resolved, Target, secret_value

DEFAULT_API_URL = "https://slack.com/api/"
# The key read from the spec's Slack Secret: a name, not a secret.
_TOKEN_KEY = "token"  # noqa: S105
# Slack's limits for a header text and a section field.
_HEADER_MAX = 150
_FIELD_MAX = 2000
_MAX_FIELDS = 10


@dataclass(frozen=True)
class SlackTarget:
    channel_name: ClassVar[str] = "slack"
    channel: str
    token: str = field(repr=False)


def _resolve(slack: SlackNotifier, lookup: Lookup) -> Resolved:
    """A target per channel ID with the Secret's token, else the service's; a missing Secret is a problem."""
    if not slack.channelIDs:
        return Resolved()
    problems: list[Problem] = []
    token = ""
    if slack.secret:
        token, problem = secret_value(lookup, slack.secret, _TOKEN_KEY)
        if problem is not None:
            fallback = (
                "the service's SLACK_BOT_TOKEN is used" if lookup.fallback_slack_token else "Slack is off"
            )
            problems.append(Problem(problem.reason, f"{problem.message}; {fallback}"))
    token = token or lookup.fallback_slack_token
    if token:
        targets = tuple(SlackTarget(channel, token) for channel in dict.fromkeys(slack.channelIDs))
        return Resolved(targets, tuple(problems))
    if not slack.secret:
        problems.append(
            Problem(
                "NoSlackToken",
                "Slack has channels but no token: set spec.notifier.slack.secret or the service's "
                "SLACK_BOT_TOKEN",
            )
        )
    return Resolved(problems=tuple(problems))


class RetryAfter(RetryHandler):
    """Retry a 429 after exactly its Retry-After seconds, unless that is longer than we are willing to wait."""

    def __init__(self, max_retry_count: int, max_wait: float, sleep: Callable[[float], None]) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait
        self.sleep = sleep

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return (
            response is not None and response.status_code == 429 and _retry_after(response) <= self.max_wait
        )

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        self.sleep(_retry_after(response) if response is not None else 1)
        state.increment_current_attempt()


def _retry_after(response: HttpResponse) -> float:
    for name, value in response.headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                return max(float(str(raw)), 0.0)
            except ValueError:
                break
    return 1.0


class SlackSender:
    def __init__(
        self,
        base_url: str = DEFAULT_API_URL,
        *,
        timeout: int = 3,
        rate_limit_retries: int = 2,
        max_retry_after: float = 30,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._timeout = timeout
        self._retry_handlers: list[RetryHandler] = [
            RetryAfter(rate_limit_retries, max_retry_after, sleep),
            # URLError only: raised while connecting or sending, so Slack never saw the request.
            ConnectionErrorRetryHandler(max_retry_count=1, error_types=[URLError]),
        ]

    def send(self, target: Target, message: Message) -> None:
        if not isinstance(target, SlackTarget):
            raise TypeError(f"not a Slack target: {type(target).__name__}")
        client = WebClient(
            token=target.token,
            base_url=self._base_url,
            timeout=self._timeout,
            retry_handlers=self._retry_handlers,
        )
        try:
            client.chat_postMessage(
                channel=target.channel,
                text=message.text(),
                blocks=blocks(message),
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as error:
            data = error.response.data
            code = str(data.get("error") or "error") if isinstance(data, dict) else "error"
            status = error.response.status_code
            raise NotifyError(f"channel {target.channel}: HTTP {status} {code[:100]}") from None
        except (SlackClientError, OSError) as error:
            # URLError, timeouts and resets are OSErrors; their text can name the proxy, so only the type.
            raise NotifyError(f"channel {target.channel}: {type(error).__name__}") from None


def _escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as markup (links, mentions)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def blocks(message: Message) -> list[dict[str, Any]]:
    """A header, the facts as two-column fields, and a button to the AMI in the EC2 console."""
    headline = f"{message.emoji} {message.headline}"
    rendered: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(headline, _HEADER_MAX), "emoji": True}}
    ]
    fields = [
        {"type": "mrkdwn", "text": _cut(f"*{_escape(label)}*\n{_escape(value)}", _FIELD_MAX)}
        for label, value in message.facts
    ]
    for start in range(0, len(fields), _MAX_FIELDS):
        rendered.append({"type": "section", "fields": fields[start : start + _MAX_FIELDS]})
    if message.link is not None:
        label, url = message.link
        button: dict[str, Any] = {
            "type": "button",
            "text": {"type": "plain_text", "text": _cut(label, 75)},
            "url": url,
        }
        if message.tone is Tone.good:
            button["style"] = "primary"
        rendered.append({"type": "actions", "elements": [button]})
    return rendered


SLACK: Channel[SlackNotifier] = Channel(
    name=SlackTarget.channel_name,
    section=lambda notifier: notifier.slack,
    resolve=_resolve,
    sender=lambda settings: SlackSender(settings.slack_api_url, timeout=settings.notify_timeout_seconds),
    secret=lambda slack: slack.secret,
)
