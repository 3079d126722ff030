"""boto3 clients as the hook needs them: bounded in time, one per region, shared between threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from botocore.config import Config

ClientT = TypeVar("ClientT")


def bounded_config(connect_timeout: float, read_timeout: float, max_attempts: int) -> Config:
    """A hook answers Metacontroller within seconds, so no AWS call may use botocore's 60 s defaults."""
    return Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
    )


class PerRegion(Generic[ClientT]):
    """One client per region, made on first use: boto3 clients are thread-safe, creating them is not."""

    def __init__(self, make: Callable[[str], ClientT]) -> None:
        self._make = make
        self._clients: dict[str, ClientT] = {}
        self._lock = threading.Lock()

    def __call__(self, region: str) -> ClientT:
        with self._lock:
            if region not in self._clients:
                self._clients[region] = self._make(region)
            return self._clients[region]
