"""Service configuration, read once from the environment (pydantic-settings): each default lives here only.

Every field is read from the upper-case environment variable of its name (LOG_LEVEL, INDEX_REGIONS, ...),
except where an alias says otherwise; a malformed value stops the service at start with a message naming it.
"""

import os
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SLACK_API = "https://slack.com/api/"


def _default_regions() -> tuple[str, ...]:
    """Without INDEX_REGIONS: the hook's own default region (AWS_REGION, AWS_DEFAULT_REGION), if any."""
    region = os.environ.get("AWS_REGION", "") or os.environ.get("AWS_DEFAULT_REGION", "")
    return (region.strip(),) if region.strip() else ()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, case_sensitive=False, populate_by_name=True)

    log_level: str = "INFO"
    # text (for a terminal) or json (JSON lines, for log pipelines; the chart's default).
    log_format: Literal["text", "json"] = "text"
    # uvicorn's access log; off by default, the hook logs one line per answer itself.
    access_log: bool = False
    # How often a base-image lookup (filters or SSM parameter) is refreshed in the background.
    base_image_cache_seconds: float = Field(default=300, gt=0)
    # How often the index of managed AMIs (and published parameters) is refreshed in the background.
    index_refresh_seconds: float = Field(default=60, gt=0)
    # Older than this, the index is reported in a condition and a build confirms its base image directly.
    index_stale_after_seconds: float = Field(default=300, gt=0)
    # Regions whose index is filled at start-up, before /readyz says ready; others fill on first use.
    index_regions: Annotated[tuple[str, ...], NoDecode] = Field(default_factory=_default_regions)
    aws_connect_timeout: float = Field(
        default=1, gt=0, validation_alias=AliasChoices("aws_connect_timeout_seconds", "aws_connect_timeout")
    )
    aws_read_timeout: float = Field(
        default=2, gt=0, validation_alias=AliasChoices("aws_read_timeout_seconds", "aws_read_timeout")
    )
    aws_max_attempts: int = Field(default=2, ge=1)
    # Slack Web API base URL; a local server can stand in for Slack (tests, air-gapped clusters).
    slack_api_url: str = SLACK_API
    # Used for builders whose spec names no Slack Secret (or a missing one). Kept out of repr and logs.
    slack_bot_token: str = Field(default="", repr=False)
    notify_timeout_seconds: int = Field(default=3, ge=1)
    # How long a transition is remembered so that retried and stale syncs do not announce it again.
    notify_dedupe_seconds: float = Field(default=86400, ge=0)
    notify_queue_size: int = Field(default=1000, ge=1)
    # The SSM path the hook's IAM policy lets it publish under (chart: hook.publishParameterPrefix); "" = any.
    publish_parameter_prefix: str = ""
    # The hook's own image (chart: image.repository/tag/digest): validation Jobs run the boot check in it.
    hook_image: str = ""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("slack_bot_token", "publish_parameter_prefix", "hook_image", mode="before")
    @classmethod
    def _stripped(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("slack_api_url", mode="before")
    @classmethod
    def _url_or_default(cls, value: object) -> object:
        # An empty SLACK_API_URL (a chart value left blank) means Slack's own API.
        return value if value else SLACK_API

    @field_validator("index_regions", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(region.strip() for region in value.split(",") if region.strip())
        return value

    @classmethod
    def from_env(cls) -> "Settings":
        return cls()
