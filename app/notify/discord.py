"""Discord through an incoming webhook: one POST with an embed, a 429 honoured once.

The webhook URL is itself the credential, so it lives in the Secret the spec's section names and appears
nowhere but in the request line.
"""

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.error import HTTPError
from urllib.parse import urlsplit

from app.model.spec import DiscordNotifier
from app.notify.message import Message, Tone
from app.notify.targets import Channel, Lookup, NotifyError, Problem, Resolved, Target, secret_value

# The key read from the spec's Discord Secret: a name, not a secret.
_URL_KEY = "webhookURL"

_COLORS = {Tone.info: 0x3B82F6, Tone.good: 0x22C55E, Tone.bad: 0xEF4444}
# Discord's limits for an embed title and a field value.
_TITLE_MAX = 256
_VALUE_MAX = 1024
_USER_AGENT = "packer-builder-hook (notifications)"


@dataclass(frozen=True)
class DiscordTarget:
    channel_name: ClassVar[str] = "discord"
    webhook_url: str = field(repr=False)


def _resolve(discord: DiscordNotifier, lookup: Lookup) -> Resolved:
    """The webhook URL from the Secret; one that is not http(s) is a problem (urlopen would also read files)."""
    url, problem = secret_value(lookup, discord.secret, _URL_KEY)
    if problem is None and not _is_web_url(url):
        problem = Problem("SecretInvalid", f"Secret {discord.secret} key `{_URL_KEY}` is not an http(s) URL")
    if problem is not None:
        return Resolved(problems=(Problem(problem.reason, f"{problem.message}; Discord is off"),))
    return Resolved((DiscordTarget(url),))


def _is_web_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def payload(message: Message) -> dict[str, Any]:
    embed: dict[str, Any] = {
        "title": _cut(message.headline, _TITLE_MAX),
        "color": _COLORS[message.tone],
        "fields": [
            {"name": label, "value": _cut(value, _VALUE_MAX), "inline": len(value) <= 40}
            for label, value in message.facts
        ],
    }
    if message.link is not None:
        embed["url"] = message.link[1]
        embed["description"] = f"[{message.link[0]}]({message.link[1]})"
    return {
        "content": f"{message.emoji} {_cut(message.headline, 1900)}",
        "embeds": [embed],
        # A failure reason quoted from a build must not be able to ping @everyone.
        "allowed_mentions": {"parse": []},
    }


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DiscordSender:
    def __init__(
        self, *, timeout: float = 3, max_retry_after: float = 30, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._timeout = timeout
        self._max_retry_after = max_retry_after
        self._sleep = sleep

    def send(self, target: Target, message: Message) -> None:
        if not isinstance(target, DiscordTarget):
            raise TypeError(f"not a Discord target: {type(target).__name__}")
        body = json.dumps(payload(message)).encode()
        for attempt in range(2):
            request = urllib.request.Request(  # noqa: S310 - the scheme was checked to be http(s)
                target.webhook_url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT},
            )
            try:
                with urllib.request.urlopen(request, timeout=self._timeout):  # noqa: S310
                    return
            except HTTPError as error:
                wait = _retry_after(error)
                if error.code == 429 and attempt == 0 and wait <= self._max_retry_after:
                    self._sleep(wait)
                    continue
                raise NotifyError(f"webhook answered HTTP {error.code}") from None
            except OSError as error:
                # URLError and timeouts; their text may quote the URL, which is the secret.
                raise NotifyError(f"webhook unreachable: {type(error).__name__}") from None
        raise NotifyError("webhook still rate limited")


def _retry_after(error: HTTPError) -> float:
    """Discord puts the wait in the JSON body (`retry_after`, seconds) and in the Retry-After header."""
    try:
        body = json.loads(error.read() or b"{}")
        if isinstance(body, dict) and "retry_after" in body:
            return max(float(body["retry_after"]), 0.0)
    except (ValueError, TypeError, OSError):
        pass
    try:
        return max(float(error.headers.get("Retry-After", "1")), 0.0)
    except (TypeError, ValueError):
        return 1.0


DISCORD: Channel[DiscordNotifier] = Channel(
    name=DiscordTarget.channel_name,
    section=lambda notifier: notifier.discord,
    resolve=_resolve,
    sender=lambda settings: DiscordSender(timeout=settings.notify_timeout_seconds),
    secret=lambda discord: discord.secret,
)
