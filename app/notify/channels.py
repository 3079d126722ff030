"""The four senders, configured from the service settings."""

from app.aws_clients import bounded_config
from app.notify.aws import SesSender, SnsSender
from app.notify.discord import DiscordSender
from app.notify.dispatch import Dispatcher
from app.notify.slack import SlackSender
from app.settings import Settings


def dispatcher_from(settings: Settings) -> Dispatcher:
    timeout = settings.notify_timeout_seconds
    aws = bounded_config(min(settings.aws_connect_timeout, timeout), timeout, settings.aws_max_attempts)
    return Dispatcher(
        {
            "slack": SlackSender(settings.slack_api_url, timeout=timeout),
            "sns": SnsSender(aws),
            "ses": SesSender(aws),
            "discord": DiscordSender(timeout=timeout),
        },
        queue_size=settings.notify_queue_size,
        dedupe_seconds=settings.notify_dedupe_seconds,
    )
