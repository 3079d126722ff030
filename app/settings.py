"""Service configuration, read once from the environment."""

import os
from dataclasses import dataclass, field


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from exc


def _regions() -> tuple[str, ...]:
    """INDEX_REGIONS (comma-separated), else the hook's own default region, else none."""
    raw = os.environ.get("INDEX_REGIONS", "") or os.environ.get("AWS_REGION", "")
    raw = raw or os.environ.get("AWS_DEFAULT_REGION", "")
    return tuple(region.strip() for region in raw.split(",") if region.strip())


@dataclass(frozen=True)
class Settings:
    log_level: str = "INFO"
    # text (for a terminal) or json (JSON lines, for log pipelines; the chart's default).
    log_format: str = "text"
    # uvicorn's access log; off by default, the hook logs one line per answer itself.
    access_log: bool = False
    # How often a base-image lookup (filters or SSM parameter) is refreshed in the background.
    base_image_cache_seconds: float = 300
    # How often the index of managed AMIs (and published parameters) is refreshed in the background.
    index_refresh_seconds: float = 60
    # Older than this, the index is reported in a condition and a build confirms its base image directly.
    index_stale_after_seconds: float = 300
    # Regions whose index is filled at start-up, before /readyz says ready; others fill on first use.
    index_regions: tuple[str, ...] = ()
    aws_connect_timeout: float = 1
    aws_read_timeout: float = 2
    aws_max_attempts: int = 2
    # Slack Web API base URL; a local server can stand in for Slack (tests, air-gapped clusters).
    slack_api_url: str = "https://slack.com/api/"
    # Used for builders whose spec names no Slack Secret (or a missing one). Kept out of repr and logs.
    slack_bot_token: str = field(default="", repr=False)
    notify_timeout_seconds: int = 3
    # How long a transition is remembered so that retried and stale syncs do not announce it again.
    notify_dedupe_seconds: float = 86400
    notify_queue_size: int = 1000
    # The SSM path the hook's IAM policy lets it publish under (chart: hook.publishParameterPrefix); "" = any.
    publish_parameter_prefix: str = ""

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            log_level=os.environ.get("LOG_LEVEL", "INFO").upper(),
            log_format=os.environ.get("LOG_FORMAT", "text").strip().lower(),
            access_log=os.environ.get("ACCESS_LOG", "").strip().lower() in ("1", "true", "yes"),
            base_image_cache_seconds=_float("BASE_IMAGE_CACHE_SECONDS", cls.base_image_cache_seconds),
            index_refresh_seconds=_float("INDEX_REFRESH_SECONDS", cls.index_refresh_seconds),
            index_stale_after_seconds=_float("INDEX_STALE_AFTER_SECONDS", cls.index_stale_after_seconds),
            index_regions=_regions(),
            aws_connect_timeout=_float("AWS_CONNECT_TIMEOUT_SECONDS", cls.aws_connect_timeout),
            aws_read_timeout=_float("AWS_READ_TIMEOUT_SECONDS", cls.aws_read_timeout),
            aws_max_attempts=int(_float("AWS_MAX_ATTEMPTS", cls.aws_max_attempts)),
            slack_api_url=os.environ.get("SLACK_API_URL", "") or cls.slack_api_url,
            slack_bot_token=os.environ.get("SLACK_BOT_TOKEN", "").strip(),
            notify_timeout_seconds=int(_float("NOTIFY_TIMEOUT_SECONDS", cls.notify_timeout_seconds)),
            notify_dedupe_seconds=_float("NOTIFY_DEDUPE_SECONDS", cls.notify_dedupe_seconds),
            notify_queue_size=int(_float("NOTIFY_QUEUE_SIZE", cls.notify_queue_size)),
            publish_parameter_prefix=os.environ.get("PUBLISH_PARAMETER_PREFIX", "").strip(),
        )
