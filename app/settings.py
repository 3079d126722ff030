"""Service configuration, read once from the environment."""

import os
from dataclasses import dataclass


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from exc


@dataclass(frozen=True)
class Settings:
    log_level: str = "INFO"
    base_image_cache_seconds: float = 300
    aws_connect_timeout: float = 1
    aws_read_timeout: float = 2
    aws_max_attempts: int = 2

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            log_level=os.environ.get("LOG_LEVEL", "INFO").upper(),
            base_image_cache_seconds=_float("BASE_IMAGE_CACHE_SECONDS", cls.base_image_cache_seconds),
            aws_connect_timeout=_float("AWS_CONNECT_TIMEOUT_SECONDS", cls.aws_connect_timeout),
            aws_read_timeout=_float("AWS_READ_TIMEOUT_SECONDS", cls.aws_read_timeout),
            aws_max_attempts=int(_float("AWS_MAX_ATTEMPTS", cls.aws_max_attempts)),
        )
